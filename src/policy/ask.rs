//! Asking the client's user about a call: the [`Asker`] a run gets from its client, and the
//! question, which shows the arguments short and safe.

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

/// Most characters of the arguments a question shows.
pub const SHOWN_ARGUMENT_CHARS: usize = 400;
/// Most characters of a server or tool name a question shows.
const SHOWN_NAME_CHARS: usize = 80;

/// What the user answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Go ahead.
    Accepted,
    /// Do not.
    Declined,
    /// Dismissed without a choice.
    Cancelled,
    /// No answer in time.
    TimedOut,
    /// The request itself failed; why.
    Failed(String),
}

/// The client of a run, as far as asking its user goes.
#[async_trait]
pub trait Asker: Send + Sync + std::fmt::Debug {
    /// Whether the client said it can ask its user (MCP elicitation, form mode).
    fn can_ask(&self) -> bool;
    /// Ask `message`, waiting at most `timeout` for the answer.
    async fn ask(&self, message: String, timeout: Duration) -> Answer;
}

/// The question put to the user about a call of `tool` of `server` with `arguments`.
pub fn question(server: &str, tool: &str, arguments: &Map<String, Value>) -> String {
    let mut text = format!(
        "Allow the sandboxed code to call the tool `{}` of the MCP server `{}`?",
        safe(tool, SHOWN_NAME_CHARS),
        safe(server, SHOWN_NAME_CHARS)
    );
    if arguments.is_empty() {
        text.push_str("\nNo arguments.");
    } else {
        let json = serde_json::to_string(arguments).unwrap_or_default();
        let _ = write!(text, "\nArguments: {}", safe(&json, SHOWN_ARGUMENT_CHARS));
    }
    text
}

/// `text` cut to `limit` characters (the cut said, with the full size), with control and
/// invisible formatting characters (bidirectional overrides, zero-width ones) written as
/// `\u{…}` so what the user reads is what is there.
pub fn safe(text: &str, limit: usize) -> String {
    let mut out = String::with_capacity(text.len().min(limit * 2));
    for (shown, c) in text.chars().enumerate() {
        if shown == limit {
            let _ = write!(out, "… (cut; {} bytes in all)", text.len());
            break;
        }
        if c.is_control() || is_invisible_format(c) {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that change how text around them is shown, or show nothing.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
            | '\u{061c}'
            | '\u{00ad}'
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_question_names_server_tool_and_arguments() {
        let args = json!({"path": "/tmp/a.txt", "content": "hi"});
        let q = question("files", "write_file", args.as_object().unwrap());
        assert!(q.contains("`write_file`") && q.contains("`files`"), "{q}");
        assert!(q.contains(r#""path":"/tmp/a.txt""#), "{q}");
    }

    #[test]
    fn long_arguments_are_cut_and_controls_escaped() {
        let long = "x".repeat(5000);
        let args = json!({"content": long});
        let q = question("s", "t", args.as_object().unwrap());
        assert!(q.len() < 700, "{}", q.len());
        assert!(q.contains("cut;"), "{q}");
        let shown = safe("a\u{202e}b\u{7}c\u{85}", 100);
        assert_eq!(shown, "a\\u{202e}b\\u{0007}c\\u{0085}");
        assert_eq!(safe("tool\nname", 100), "tool\\u{000a}name");
    }
}
