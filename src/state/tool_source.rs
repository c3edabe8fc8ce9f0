//! A saved tool's source: checked to be one function of the tool's name, and normalised
//! (dedented, without leading blank lines, ending in one newline). Only the shape is
//! checked; that the source parses is the guest's check.

use super::error::{StateError, clip};

/// Largest saved tool source, in bytes.
pub const MAX_TOOL_BYTES: usize = 64 << 10;

/// Remove the whitespace prefix every non-blank line shares (like `textwrap.dedent`).
fn dedent(source: &str) -> String {
    let prefix = source
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| &line[..line.len() - line.trim_start().len()])
        .reduce(|a, b| {
            // Compare characters, not bytes: two different multi-byte spaces share leading
            // bytes, and a byte count would cut inside a character.
            let common: usize = a
                .chars()
                .zip(b.chars())
                .take_while(|(x, y)| x == y)
                .map(|(c, _)| c.len_utf8())
                .sum();
            &a[..common]
        })
        .unwrap_or("");
    source
        .lines()
        .map(|line| {
            line.strip_prefix(prefix)
                .unwrap_or_else(|| line.trim_start())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `line` starts `def name(` or `async def name(` (any spacing Python allows).
fn defines(line: &str, name: &str) -> bool {
    let mut rest = line;
    if let Some(after) = rest.strip_prefix("async")
        && after.starts_with([' ', '\t'])
    {
        rest = after.trim_start_matches([' ', '\t']);
    }
    let Some(after) = rest.strip_prefix("def") else {
        return false;
    };
    if !after.starts_with([' ', '\t']) {
        return false;
    }
    let after = after.trim_start_matches([' ', '\t']);
    after
        .strip_prefix(name)
        .is_some_and(|tail| tail.trim_start_matches([' ', '\t']).starts_with('('))
}

/// Check a saved tool's source and normalise it: dedented, without leading blank lines,
/// ending in one newline.
pub fn normalize_tool_source(name: &str, source: &str) -> Result<String, StateError> {
    let invalid = |why: String| {
        Err(StateError::InvalidToolSource {
            name: name.to_string(),
            why,
        })
    };
    if source.len() > MAX_TOOL_BYTES {
        return invalid(format!(
            "it is {} bytes, more than the {MAX_TOOL_BYTES} allowed",
            source.len()
        ));
    }
    if source.contains('\0') {
        return invalid("it contains a NUL character".into());
    }
    let dedented = dedent(&source.replace("\r\n", "\n"));
    let lines: Vec<&str> = dedented
        .lines()
        .skip_while(|line| line.trim().is_empty())
        .collect();
    let body = lines.join("\n");
    let Some(first) = lines.first() else {
        return invalid("it is empty".into());
    };
    if !defines(first, name) {
        return invalid(format!(
            "it must start with `def {name}(` or `async def {name}(` (no decorators), but it \
             starts with {:?}",
            clip(first)
        ));
    }
    Ok(format!("{}\n", body.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_sources_are_checked_and_normalised() {
        let ok = |name: &str, src: &str| normalize_tool_source(name, src).unwrap();
        assert_eq!(
            ok("f", "def f(x):\n    return x"),
            "def f(x):\n    return x\n"
        );
        assert_eq!(
            ok("f", "\n\n    async def f():\n        await g()\n\n"),
            "async def f():\n    await g()\n"
        );
        assert_eq!(
            ok("f", "async  def\tf (a=1):\r\n  pass\r\n"),
            "async  def\tf (a=1):\n  pass\n"
        );
        // Indented bodies with blank lines keep their relative indentation.
        assert_eq!(
            ok("f", "  def f():\n\n      x = 1\n      return x\n"),
            "def f():\n\n    x = 1\n    return x\n"
        );
        let bad = [
            ("f", "def g():\n    pass"),
            ("f", "def fx():\n    pass"),
            ("f", "@decorator\ndef f():\n    pass"),
            ("f", "class f:\n    pass"),
            ("f", "f = lambda: 1"),
            ("f", "asyncdef f():\n    pass"),
            ("f", "deff():\n    pass"),
            ("f", ""),
            ("f", "   \n\n"),
            ("f", "def f():\0"),
        ];
        for (name, src) in bad {
            let err = normalize_tool_source(name, src).unwrap_err();
            assert!(
                matches!(err, StateError::InvalidToolSource { .. }),
                "{src:?}"
            );
        }
        let huge = format!("def f():\n    return {:?}\n", "x".repeat(MAX_TOOL_BYTES));
        assert!(
            normalize_tool_source("f", &huge)
                .unwrap_err()
                .to_string()
                .contains("bytes")
        );
    }

    #[test]
    fn different_multibyte_indents_share_no_prefix() {
        // A guest's `save_tool` made the host panic: U+2003 and U+2002 share their first
        // two bytes, and dedent cut the common prefix inside a character.
        let err = normalize_tool_source("f", "\u{2003}def f():\n\u{2002}    pass\n").unwrap_err();
        assert!(matches!(err, StateError::InvalidToolSource { .. }), "{err}");
        assert_eq!(
            normalize_tool_source("f", "\u{2003}def f():\n\u{2003}\u{2002}pass").unwrap(),
            "def f():\n\u{2002}pass\n"
        );
    }
}
