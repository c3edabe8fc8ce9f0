//! Text that reaches the client cannot drive a terminal.
//!
//! Clients such as terminal agents print tool results as they come. A run's output, a
//! traceback, an upstream server's answer echoed back or a file's name could carry escape
//! sequences: OSC 52 writes the user's clipboard, OSC 8 makes a link say one thing and open
//! another, OSC 0 retitles the window, a C1 CSI (U+009B) starts a sequence without ESC, a
//! lone carriage return overwrites the line already shown. Every text the bridge sends is
//! passed through [`neutralise`] once, at the edge ([`neutralise_result`]): each C0 and C1
//! control character except newline and tab, DEL, and the bidirectional overrides and
//! isolates are written visibly as `\xNN` or `\uNNNN`, so an escape sequence becomes
//! harmless text that still shows what was there. Colour codes go the same way: an agent
//! reads text, not colours. A `\r\n` line end becomes `\n`.
//!
//! The exact bytes stay reachable on purpose: the guest saves a stream that held such
//! characters to its saved-output file, which the reply names.

use std::borrow::Cow;
use std::fmt::Write as _;

use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use serde_json::Value;

/// True when `c` is written escaped: C0 controls other than newline and tab, DEL, C1
/// controls, and the bidirectional embeddings, overrides and isolates.
pub fn is_escaped(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// True when [`neutralise`] would change `text`.
pub fn needs_neutralising(text: &str) -> bool {
    // Every escaped character starts with one of these bytes in UTF-8: below 0x20, DEL,
    // 0xC2 (U+0080..U+00BF) or 0xE2 (U+2000..U+2FFF). Scan bytes, then look closer.
    text.bytes()
        .any(|b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f || b == 0xc2 || b == 0xe2)
        && text.chars().any(is_escaped)
}

/// `text` with every control character written visibly (`\x1b`, `\x9b`, `\u202e`) and
/// `\r\n` as `\n`. Borrows when there is nothing to change, which is the common case.
pub fn neutralise(text: &str) -> Cow<'_, str> {
    if !needs_neutralising(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        if !is_escaped(c) {
            out.push(c);
        } else if u32::from(c) < 0x100 {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// Neutralises `text` in place.
pub fn neutralise_in_place(text: &mut String) {
    if let Cow::Owned(clean) = neutralise(text) {
        *text = clean;
    }
}

/// Neutralises every string of a JSON value, keys included.
pub fn neutralise_value(value: &mut Value) {
    match value {
        Value::String(text) => neutralise_in_place(text),
        Value::Array(items) => items.iter_mut().for_each(neutralise_value),
        Value::Object(map) => {
            if map.keys().any(|key| needs_neutralising(key)) {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    neutralise_value(&mut item);
                    map.insert(neutralise(&key).into_owned(), item);
                }
            } else {
                map.values_mut().for_each(neutralise_value);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Neutralises everything a tool result shows as text: text blocks, embedded text
/// resources, resource names and links, and the structured content. Images and blobs are
/// data, not text, and pass unchanged.
pub fn neutralise_result(result: &mut CallToolResult) {
    for block in &mut result.content {
        match block {
            ContentBlock::Text(text) => neutralise_in_place(&mut text.text),
            ContentBlock::Resource(embedded) => match &mut embedded.resource {
                ResourceContents::TextResourceContents { uri, text, .. } => {
                    neutralise_in_place(uri);
                    neutralise_in_place(text);
                }
                ResourceContents::BlobResourceContents { uri, .. } => neutralise_in_place(uri),
                _ => {}
            },
            ContentBlock::ResourceLink(link) => {
                neutralise_in_place(&mut link.uri);
                neutralise_in_place(&mut link.name);
                if let Some(title) = &mut link.title {
                    neutralise_in_place(title);
                }
                if let Some(description) = &mut link.description {
                    neutralise_in_place(description);
                }
            }
            // Images, audio and what a newer protocol adds carry data, not text to print.
            _ => {}
        }
    }
    if let Some(structured) = &mut result.structured_content {
        neutralise_value(structured);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for text in [
            "",
            "hello\n\tworld",
            "naïve café — 日本語 ✓",
            "path\\x1b literal",
        ] {
            assert!(
                matches!(neutralise(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
    }

    #[test]
    fn escape_sequences_become_visible_text() {
        let cases = [
            // OSC 52: write the clipboard.
            ("\x1b]52;c;ZWNobyBoaQ==\x07", "\\x1b]52;c;ZWNobyBoaQ==\\x07"),
            // OSC 8: a disguised link, with the ST terminator.
            (
                "\x1b]8;;https://evil\x1b\\click\x1b]8;;\x1b\\",
                "\\x1b]8;;https://evil\\x1b\\click\\x1b]8;;\\x1b\\",
            ),
            // OSC 0: retitle the window.
            ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
            // C1 CSI without ESC, and C1 OSC.
            (
                "\u{9b}31m red \u{9d}0;t\u{9c}",
                "\\x9b31m red \\x9d0;t\\x9c",
            ),
            // Colours.
            ("\x1b[1;31merror\x1b[0m", "\\x1b[1;31merror\\x1b[0m"),
            // A lone carriage return overwrites the line; CRLF is a line end.
            ("safe\rEVIL\r\nnext", "safe\\x0dEVIL\nnext"),
            // NUL, backspace, DEL, bell.
            ("a\0b\x08c\x7fd\x07", "a\\x00b\\x08c\\x7fd\\x07"),
            // Bidirectional override and isolate.
            (
                "abc\u{202e}fed\u{2066}x\u{2069}",
                "abc\\u202efed\\u2066x\\u2069",
            ),
        ];
        for (raw, shown) in cases {
            assert_eq!(neutralise(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn every_control_character_is_caught_and_nothing_else() {
        for code in 0..=0x3000_u32 {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let text = c.to_string();
            let changed = matches!(neutralise(&text), Cow::Owned(_));
            let expected = c != '\n' && c != '\t' && (c.is_control() || is_escaped(c));
            assert_eq!(changed, expected, "U+{code:04X}");
            assert!(!neutralise(&text).chars().any(is_escaped), "U+{code:04X}");
        }
    }

    #[test]
    fn values_are_neutralised_keys_and_all() {
        let mut value = json!({
            "stdout": "\x1b[2J",
            "list": ["ok", "\u{9b}x"],
            "n": 1,
            "k\x1bey": "v",
        });
        neutralise_value(&mut value);
        assert_eq!(
            value,
            json!({"stdout": "\\x1b[2J", "list": ["ok", "\\x9bx"], "n": 1, "k\\x1bey": "v"})
        );
    }

    #[test]
    fn results_are_neutralised_text_structured_and_links() {
        let mut result = CallToolResult::structured(json!({"stdout": "\x1b]0;t\x07"}));
        result.content = vec![
            ContentBlock::text("\x1b[31mred"),
            ContentBlock::resource(ResourceContents::TextResourceContents {
                uri: "file:///workspace/out/a\x1b.txt".into(),
                mime_type: None,
                text: "x\u{9b}y".into(),
                meta: None,
            }),
        ];
        neutralise_result(&mut result);
        let shown = serde_json::to_string(&result).unwrap();
        assert!(
            !shown.contains("\\u001b") && !shown.contains('\u{9b}'),
            "{shown}"
        );
        assert!(shown.contains("\\\\x1b[31mred"), "{shown}");
    }
}
