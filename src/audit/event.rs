//! What one audit line says: the event, its decision, and sizes instead of values.

use serde::Serialize;

/// One thing that happened, as an audit line records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A proxied tool call from a run.
    ToolCall(ToolCall),
    /// A network connection a sandbox asked for (through the proxy or `fetch`), allowed
    /// or refused, with its bytes; never a header or a body.
    Network(crate::egress::ledger::Connection),
}

/// A proxied tool call: who asked for what, what the policy decided, how it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// The upstream server's name.
    pub server: String,
    /// The tool's name.
    pub tool: String,
    /// What was decided.
    pub decision: Decision,
    /// Why, when it was not a plain allow: the policy key, the client's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What became of the call.
    pub outcome: Outcome,
    /// From the call's arrival to its answer, including any wait for approval.
    pub duration_ms: f64,
    /// Size of the arguments as JSON.
    pub argument_bytes: u64,
    /// Size of the result as JSON (0 when there is none).
    pub result_bytes: u64,
}

/// What the policy decided about a call (or, later, a connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Allowed without asking.
    Allowed,
    /// Refused without asking: the policy says deny, or it says ask and the client cannot.
    Denied,
    /// The user was asked and declined or cancelled.
    Declined,
    /// The user was asked and accepted.
    AskedAccepted,
    /// The user was asked and did not answer in time.
    Timeout,
    /// Asking failed (the client answered with an error).
    Error,
    /// The run ended (deadline, cancellation) while the call was being decided or made.
    Cancelled,
}

/// What became of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not made: refused, or the run ended first.
    NotRun,
    /// Made; the tool answered.
    Ok,
    /// Made; the tool answered with `isError`.
    ToolError,
    /// Made, and it failed (the server crashed, timed out, was unknown).
    Failed,
    /// The run ended (deadline, cancellation) before the answer came.
    Abandoned,
}

/// Bytes `value` takes as compact JSON, counted without building the text.
pub fn json_size(value: &impl Serialize) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len() as u64;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sizes_are_those_of_compact_json() {
        let value = json!({"path": "/tmp/x", "n": [1, 2, 3]});
        assert_eq!(
            json_size(&value),
            serde_json::to_vec(&value).unwrap().len() as u64
        );
    }

    #[test]
    fn decisions_are_written_as_the_docs_spell_them() {
        let words: Vec<String> = [
            Decision::Allowed,
            Decision::Denied,
            Decision::Declined,
            Decision::AskedAccepted,
            Decision::Timeout,
            Decision::Error,
            Decision::Cancelled,
        ]
        .iter()
        .map(|d| {
            serde_json::to_value(d)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
        assert_eq!(
            words,
            [
                "allowed",
                "denied",
                "declined",
                "asked-accepted",
                "timeout",
                "error",
                "cancelled"
            ]
        );
    }
}
