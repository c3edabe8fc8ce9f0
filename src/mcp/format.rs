//! Results, formatted once: the structured report and its text forms (compact, toon, json).

use std::fmt::Write as _;

use sandbox_core::{Captured, RunOutcome, RunStatus};
use serde::Serialize;
use serde_json::Value;

use crate::config::OutputMode;
use crate::mcp::files::{FileReport, OUT_DIR};
use crate::mcp::terminal;
use crate::units::human_bytes;

/// Kinds of connection a reply's `network` lists at most (alike ones are merged first).
pub const NETWORK_KINDS: usize = 50;

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if"
)]
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The structured result of one `run_python` call (`structuredContent`).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// True when the code ran to the end without raising.
    pub ok: bool,
    /// `completed`, `raised`, `timed_out` or `sandbox_failed`.
    pub status: String,
    /// What the code printed, with a marker where output was cut.
    pub stdout: String,
    /// What the code wrote to stderr, with a marker where output was cut.
    pub stderr: String,
    /// The exception, when the code raised one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    /// Servers loaded for this run.
    pub servers: Vec<String>,
    /// The session the code ran in.
    pub session: String,
    /// True when the session's variables and imports did not survive this call.
    pub state_lost: bool,
    /// Bytes of output cut by the output cap, per stream.
    pub cut_bytes: CutBytes,
    /// Wall-clock time of the run on the host, in milliseconds.
    pub duration_ms: f64,
    /// What the caller should know beyond the output (timeouts, lost state, saved output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// Files the code wrote under `/workspace/out/`, and how each came back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileReport>,
    /// Where the whole output of a stream cut by the cap was saved, per stream.
    #[serde(skip_serializing_if = "SavedOutput::is_empty")]
    pub saved_output: SavedOutput,
    /// Limits the sandbox could not enforce on this host, each with what applies instead.
    /// Absent when every limit holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unenforced: Vec<String>,
    /// The network connections the session asked for that ended (or were refused) during
    /// this run: host, port, allowed or not and why, bytes; alike ones merged (`count`), at
    /// most [`NETWORK_KINDS`] of them. Absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<crate::egress::ledger::Connection>,
    /// Kinds of connection left out of `network` past its cap. Absent when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub network_omitted: usize,
    /// The session was restored from its checkpoint before this run: when it was taken and
    /// what came back. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored: Option<RestoredReport>,
}

/// What came back when a session was restored from its checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredReport {
    /// When the checkpoint was taken (RFC 3339, UTC).
    pub checkpoint_at: String,
    /// The names restored.
    pub names: Vec<String>,
    /// Names the checkpoint could not save, each with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_saved: Vec<String>,
    /// Names that could not be restored, each with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_restored: Vec<String>,
}

impl RestoredReport {
    /// The report of a restored session.
    pub fn of(restored: &crate::checkpoints::durable::Restored) -> Self {
        Self {
            checkpoint_at: crate::units::format_utc(restored.created_at_unix),
            names: restored.names.clone(),
            not_saved: restored.unsaveable.clone(),
            not_restored: restored.failed.clone(),
        }
    }
}

/// Files in the sandbox holding the whole output of streams the cap cut.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SavedOutput {
    /// The whole stdout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// The whole stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
}

impl SavedOutput {
    fn is_empty(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }
}

/// An exception raised by the code.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    /// Exception type, e.g. `ZeroDivisionError`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Exception message.
    pub message: String,
    /// Traceback through the caller's code only.
    pub traceback: String,
}

/// Output bytes cut per stream.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CutBytes {
    /// Bytes of stdout cut.
    pub stdout: u64,
    /// Bytes of stderr cut.
    pub stderr: u64,
}

fn render(captured: &Captured, stream: &str) -> String {
    captured.render(|bytes| {
        format!(
            "\n… {} of {stream} cut (output limit reached) …\n",
            human_bytes(bytes)
        )
    })
}

/// What a notice of a stopped sandbox says of the output: the run's output is shown when
/// it printed anything before the stop (kept as it was written, on backends that can only
/// kill).
fn kept_before_stop(outcome: &RunOutcome) -> &'static str {
    if outcome.stdout.text.is_empty() && outcome.stderr.text.is_empty() {
        ""
    } else {
        "; what the code printed before the stop is in the output"
    }
}

impl RunReport {
    /// Build the report of a run.
    pub fn new(
        outcome: &RunOutcome,
        session: &str,
        servers: Vec<String>,
        timeout_secs: f64,
    ) -> Self {
        let status = outcome.status.kind().name();
        let notice = match &outcome.status {
            RunStatus::Completed | RunStatus::Raised => None,
            RunStatus::TimedOut { state_lost: false } => Some(format!(
                "Timed out after {timeout_secs} s; the code was interrupted \
                 (KeyboardInterrupt) and the session kept its state."
            )),
            RunStatus::TimedOut { state_lost: true } => Some(format!(
                "Timed out after {timeout_secs} s; the sandbox was stopped and this \
                     session's state (variables, imports, files) was lost{}. Saved tools \
                     and memory (save_tool, save_memory) survive; the next call starts a \
                     fresh session.",
                kept_before_stop(outcome)
            )),
            RunStatus::Cancelled { state_lost } => Some(if *state_lost {
                format!(
                    "Cancelled by the client; the sandbox was stopped and this session's \
                         state was lost{}. Saved tools and memory survive; the next call \
                         starts a fresh session.",
                    kept_before_stop(outcome)
                )
            } else {
                "Cancelled by the client; the code was interrupted and the session kept \
                     its state."
                    .to_string()
            }),
            RunStatus::SandboxFailed { reason } => {
                Some(format!("{reason}. The next call starts a fresh session."))
            }
        };
        // Saved output lives in the session: say where only while the session lives.
        let saved_output = if outcome.state_lost() {
            SavedOutput::default()
        } else {
            SavedOutput {
                stdout: outcome
                    .stdout_saved
                    .clone()
                    .filter(|p| p.starts_with(OUT_DIR)),
                stderr: outcome
                    .stderr_saved
                    .clone()
                    .filter(|p| p.starts_with(OUT_DIR)),
            }
        };
        let mut report_notice = Notice(notice);
        for (stream, path, captured) in [
            ("stdout", &saved_output.stdout, &outcome.stdout),
            ("stderr", &saved_output.stderr, &outcome.stderr),
        ] {
            let escaped = terminal::needs_neutralising(&captured.text);
            let saved = match (path, captured.cut_bytes()) {
                (Some(path), 0) => format!(
                    "The {stream} held terminal control characters, shown escaped here \
                     (\\x1b); its exact bytes are saved in the sandbox at {path}."
                ),
                (Some(path), cut) => format!(
                    "The whole {stream} ({} cut here{}) is saved in the sandbox at {path}; \
                     read it from code in this session when you need it.",
                    human_bytes(cut),
                    if escaped {
                        ", control characters shown escaped"
                    } else {
                        ""
                    }
                ),
                (None, _) if escaped => format!(
                    "The {stream} held terminal control characters, shown escaped here \
                     (\\x1b)."
                ),
                (None, _) => continue,
            };
            report_notice.add(&saved);
        }
        Self {
            ok: !outcome.is_error(),
            status: status.to_string(),
            stdout: render(&outcome.stdout, "stdout"),
            stderr: render(&outcome.stderr, "stderr"),
            error: outcome.error.as_ref().map(|e| ErrorReport {
                kind: e.kind.clone(),
                message: e.message.clone(),
                traceback: e.traceback.clone(),
            }),
            servers,
            session: session.to_string(),
            state_lost: outcome.state_lost(),
            cut_bytes: CutBytes {
                stdout: outcome.stdout.cut_bytes(),
                stderr: outcome.stderr.cut_bytes(),
            },
            duration_ms: outcome.elapsed.as_secs_f64() * 1000.0,
            notice: report_notice.0,
            files: Vec::new(),
            unenforced: Vec::new(),
            restored: None,
            network: Vec::new(),
            network_omitted: 0,
            saved_output,
        }
    }

    /// Add a line to the report's notice (after what it already says).
    pub fn add_notice(&mut self, text: &str) {
        let mut notice = Notice(self.notice.take());
        notice.add(text);
        self.notice = notice.0;
    }

    /// The report as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("reports always serialise")
    }

    /// The text form for `mode`.
    pub fn text(&self, mode: OutputMode) -> String {
        match mode {
            OutputMode::Compact => self.compact(),
            OutputMode::Toon => toon(&self.to_value()),
            OutputMode::Json => serde_json::to_string(&self.to_value()).expect("serialises"),
        }
    }

    /// Plain text: stdout, then stderr, the error and notices under short headers.
    fn compact(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.stdout);
        let mut section = |title: &str, body: &str| {
            if body.is_empty() {
                return;
            }
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            let _ = write!(out, "[{title}]\n{body}");
        };
        section("stderr", &self.stderr);
        if let Some(error) = &self.error {
            let body = if error.traceback.is_empty() {
                format!("{}: {}", error.kind, error.message)
            } else {
                error.traceback.clone()
            };
            section("error", &body);
        }
        if !self.network.is_empty() {
            section(
                "network",
                &network_lines(&self.network, self.network_omitted),
            );
        }
        if let Some(notice) = &self.notice {
            section("notice", notice);
        }
        if out.is_empty() {
            out.push_str("(no output)");
        }
        out
    }
}

/// One line per connection: what was reached and how much moved, or what was refused and
/// why.
fn network_lines(connections: &[crate::egress::ledger::Connection], omitted: usize) -> String {
    let mut out = String::new();
    for c in connections {
        let times = if c.count > 1 {
            format!(" ×{}", c.count)
        } else {
            String::new()
        };
        let _ = if c.allowed {
            write!(
                out,
                "{} {}:{}{times} sent {} received {}",
                c.via,
                c.host,
                c.port,
                human_bytes(c.bytes_up),
                human_bytes(c.bytes_down)
            )
        } else {
            write!(out, "refused {} {}:{}{times}", c.via, c.host, c.port)
        };
        if let Some(reason) = &c.reason {
            let _ = write!(out, ": {reason}");
        }
        out.push('\n');
    }
    if omitted > 0 {
        let _ = writeln!(
            out,
            "… and {omitted} more kinds of connection (the log and audit.jsonl list them all)"
        );
    }
    out
}

/// Token-Oriented Object Notation of a JSON value: `key: value` lines, two-space nesting,
/// `key[N]: a,b` for arrays of primitives, `- ` items otherwise.
pub fn toon(value: &Value) -> String {
    let mut out = String::new();
    toon_value(value, 0, &mut out);
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

fn toon_value(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                toon_field(key, v, indent, out);
            }
        }
        Value::Array(items) => toon_items(items, indent, out),
        scalar => {
            out.push_str(&toon_scalar(scalar));
            out.push('\n');
        }
    }
}

fn toon_field(key: &str, value: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    let key = toon_key(key);
    match value {
        Value::Object(map) if map.is_empty() => {
            let _ = writeln!(out, "{pad}{key}: {{}}");
        }
        Value::Object(_) => {
            let _ = writeln!(out, "{pad}{key}:");
            toon_value(value, indent + 1, out);
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let row: Vec<String> = items.iter().map(toon_scalar).collect();
            let _ = writeln!(out, "{pad}{key}[{}]: {}", items.len(), row.join(","));
        }
        Value::Array(items) => {
            let _ = writeln!(out, "{pad}{key}[{}]:", items.len());
            toon_items(items, indent + 1, out);
        }
        scalar => {
            let _ = writeln!(out, "{pad}{key}: {}", toon_scalar(scalar));
        }
    }
}

fn toon_items(items: &[Value], indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    for item in items {
        match item {
            Value::Object(_) | Value::Array(_) => {
                let _ = writeln!(out, "{pad}-");
                toon_value(item, indent + 1, out);
            }
            scalar => {
                let _ = writeln!(out, "{pad}- {}", toon_scalar(scalar));
            }
        }
    }
}

fn toon_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if bare { key.to_string() } else { quote(key) }
}

fn toon_scalar(value: &Value) -> String {
    match value {
        Value::String(s) => {
            let needs_quotes = s.is_empty()
                || s.trim() != s
                || s.starts_with('-')
                || matches!(s.as_str(), "true" | "false" | "null")
                || s.parse::<f64>().is_ok()
                || s.contains(|c: char| {
                    matches!(c, ':' | ',' | '"' | '\\' | '[' | ']' | '{' | '}') || c.is_control()
                });
            if needs_quotes { quote(s) } else { s.clone() }
        }
        other => other.to_string(),
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// A notice built up line by line.
struct Notice(Option<String>);

impl Notice {
    fn add(&mut self, line: &str) {
        self.0 = Some(match self.0.take() {
            Some(text) => format!("{text}\n{line}"),
            None => line.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn toon_writes_nested_objects_and_arrays() {
        let value = json!({
            "ok": false,
            "stdout": "line one\nline two",
            "servers": ["time", "git"],
            "error": {"type": "ValueError", "message": "bad: value"},
            "empty": "",
        });
        let text = toon(&value);
        assert!(text.contains("ok: false"), "{text}");
        assert!(text.contains("stdout: \"line one\\nline two\""), "{text}");
        assert!(text.contains("servers[2]: time,git"), "{text}");
        assert!(
            text.contains("error:\n  type: ValueError\n  message: \"bad: value\""),
            "{text}"
        );
        assert!(text.contains("empty: \"\""), "{text}");
    }
}
