//! Bytes in, text out: a config file read under a size cap, and JSONC made plain JSON.

use std::io::Read as _;
use std::path::Path;

/// Config files larger than this are reported as broken instead of read.
const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// The file's text, `None` when it does not exist; errors are reasons for the user.
pub(super) fn read_capped(path: &Path) -> Result<Option<String>, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    if meta.is_dir() {
        return Err("it is a folder, not a file".into());
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "it is {} bytes, more than the {MAX_CONFIG_BYTES} we read",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "it is more than the {MAX_CONFIG_BYTES} bytes we read"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
    Ok(Some(
        text.strip_prefix('\u{feff}')
            .map_or_else(|| text.clone(), str::to_string),
    ))
}

/// Remove `//` and `/* */` comments and trailing commas from JSON text (VS Code's JSONC),
/// leaving strings alone. Comments become spaces, so line and column numbers in parse errors
/// still point at the original text.
pub fn strip_jsonc(text: &str) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Code,
        Str,
        Escape,
        Line,
        Block,
    }
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut state = State::Code;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match state {
            State::Code => match (b, next) {
                (b'"', _) => {
                    state = State::Str;
                    out.push(b);
                }
                (b'/', Some(b'/')) => {
                    state = State::Line;
                    out.extend_from_slice(b"  ");
                    i += 1;
                }
                (b'/', Some(b'*')) => {
                    state = State::Block;
                    out.extend_from_slice(b"  ");
                    i += 1;
                }
                _ => out.push(b),
            },
            State::Str => {
                match b {
                    b'\\' => state = State::Escape,
                    b'"' => state = State::Code,
                    _ => {}
                }
                out.push(b);
            }
            State::Escape => {
                state = State::Str;
                out.push(b);
            }
            State::Line => {
                if b == b'\n' {
                    state = State::Code;
                    out.push(b);
                } else {
                    out.push(b' ');
                }
            }
            State::Block => {
                if b == b'*' && next == Some(b'/') {
                    state = State::Code;
                    out.extend_from_slice(b"  ");
                    i += 1;
                } else {
                    out.push(if b == b'\n' { b'\n' } else { b' ' });
                }
            }
        }
        i += 1;
    }
    // Trailing commas: a comma followed (after whitespace) by `}` or `]`, outside strings.
    let mut in_string = false;
    let mut escaped = false;
    for i in 0..out.len() {
        let b = out[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' => {
                let following = out[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
                if matches!(following, Some(b'}' | b']')) {
                    out[i] = b' ';
                }
            }
            _ => {}
        }
    }
    // Only ASCII bytes were replaced, and whole multi-byte characters at that.
    String::from_utf8(out).expect("stripping comments keeps UTF-8 valid")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn jsonc_stripping_keeps_strings_and_positions() {
        let text =
            "{\n // c\n \"a\": \"//not\", /* b\n */ \"b\": [1, 2,],\n \"c\": \"\\\"/*x*/\",\n}";
        let stripped = strip_jsonc(text);
        assert_eq!(stripped.lines().count(), text.lines().count());
        let value: Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(value, json!({"a": "//not", "b": [1, 2], "c": "\"/*x*/"}));
        // Valid JSON is unchanged.
        let plain = r#"{"a": [1, {"b": "c,}"}], "d": "\\"}"#;
        assert_eq!(strip_jsonc(plain), plain);
        // Non-ASCII inside comments and strings survives.
        let unicode = "{\"é\": \"ü\" // ☃ comment\n}";
        assert_eq!(
            serde_json::from_str::<Value>(&strip_jsonc(unicode)).unwrap(),
            json!({"é": "ü"})
        );
    }
}
