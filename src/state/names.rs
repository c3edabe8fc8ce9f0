//! The names that become file names: memory keys and saved tools' names, checked against
//! an allow-list before they touch a path.

use super::error::{StateError, clip};
use crate::proxy::alias::is_python_keyword;

/// Longest saved tool name, in characters.
pub const MAX_TOOL_NAME_CHARS: usize = 100;
/// Longest memory key, in characters.
pub const MAX_KEY_CHARS: usize = 128;

/// Check a memory key: 1..=128 characters of `[A-Za-z0-9_.-]`, not starting with `.`
/// (which also rules out `.` and `..`).
pub fn validate_key(key: &str) -> Result<(), StateError> {
    let invalid = |why| {
        Err(StateError::InvalidKey {
            key: clip(key),
            why,
        })
    };
    if key.is_empty() {
        return invalid("it is empty");
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return invalid("it is longer than 128 characters");
    }
    if key.contains(['/', '\\']) {
        return invalid("it contains a path separator");
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return invalid("it contains a character outside letters, digits, `_`, `.` and `-`");
    }
    if key.starts_with('.') {
        return invalid("it starts with `.`");
    }
    Ok(())
}

/// Check a saved tool's name: an ASCII Python identifier of at most 100 characters, not a
/// keyword, not a `__dunder__` name.
pub fn validate_tool_name(name: &str) -> Result<(), StateError> {
    let invalid = |why| {
        Err(StateError::InvalidToolName {
            name: clip(name),
            why,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.chars().count() > MAX_TOOL_NAME_CHARS {
        return invalid("it is longer than 100 characters");
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return invalid("it is not a Python identifier");
    }
    if is_python_keyword(name) {
        return invalid("it is a Python keyword");
    }
    if name.len() >= 4 && name.starts_with("__") && name.ends_with("__") {
        return invalid("it is a __dunder__ name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_are_checked() {
        for good in [
            "f",
            "_private",
            "fetch_json2",
            "Match",
            "match",
            "type",
            "a".repeat(100).as_str(),
        ] {
            validate_tool_name(good).unwrap();
        }
        let long = "a".repeat(101);
        for bad in [
            "",
            "2f",
            "a-b",
            "a b",
            "é",
            "class",
            "None",
            "async",
            "__init__",
            "__x__",
            "../f",
            "f/g",
            ".f",
            long.as_str(),
        ] {
            let err = validate_tool_name(bad).unwrap_err();
            assert_eq!(err.kind(), "invalid_params", "{bad:?}");
        }
    }
}
