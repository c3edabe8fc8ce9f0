//! What can go wrong when reaching an upstream server, and the `rpc` error kind of each.

use std::fmt::Write as _;
use std::time::Duration;

/// Why a call to an upstream server did not produce a result.
///
/// A tool that ran and failed is not an error here: it is a `CallToolResult` with `isError`.
/// Every variant names the server, and the tool when there was one; [`Self::kind`] gives the
/// error kind of `backends/core/docs/frames.md` ("Calls to the host").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No configured server has this name.
    #[error("unknown MCP server `{server}`{}", known_servers(known))]
    UnknownServer {
        /// The name asked for.
        server: String,
        /// Some configured names (all of them when there are few).
        known: Vec<String>,
    },
    /// The server does not offer this tool.
    #[error("MCP server `{server}` has no tool `{tool}`{}", similar_tools(similar, *total))]
    UnknownTool {
        /// The server.
        server: String,
        /// The tool asked for.
        tool: String,
        /// The known tools closest to the name asked for, best first (at most five).
        similar: Vec<String>,
        /// How many tools the server has.
        total: usize,
    },
    /// The server's transport is one this bridge cannot speak.
    #[error("MCP server `{server}`: {detail}")]
    Unsupported {
        /// The server.
        server: String,
        /// What is unsupported, and what to do instead.
        detail: String,
    },
    /// The server could not be started (spawned, connected or initialised).
    #[error("MCP server `{server}` failed to start{}: {detail}", attempt_note(*attempt))]
    Start {
        /// The server.
        server: String,
        /// Consecutive failures of this server so far, this one included.
        attempt: u32,
        /// What failed: the spawn error, or the handshake error with the process's exit status
        /// and last lines of stderr.
        detail: String,
    },
    /// The server keeps failing; the next start is held back for a while.
    #[error(
        "MCP server `{server}` keeps failing ({failures} times in a row); next attempt in {}; \
         last error: {last_error}",
        human(*retry_in)
    )]
    Backoff {
        /// The server.
        server: String,
        /// Consecutive failures (start failures and crashes).
        failures: u32,
        /// Time until the next start is attempted.
        retry_in: Duration,
        /// The last failure.
        last_error: String,
    },
    /// The server died (its process exited, or its connection closed) while the call was in
    /// flight. The next call starts it again.
    #[error("MCP server `{server}` crashed: {detail}")]
    Crashed {
        /// The server.
        server: String,
        /// Which call was in flight, the exit status, and the last lines of stderr.
        detail: String,
    },
    /// The server did not answer in time (the request was cancelled).
    #[error("{} of MCP server `{server}` timed out after {}", operation(tool.as_deref()), human(*after))]
    Timeout {
        /// The server.
        server: String,
        /// The tool called; `None` for listing tools.
        tool: Option<String>,
        /// The timeout that expired.
        after: Duration,
    },
    /// The server answered with a protocol error, or the request could not be sent.
    #[error("{} of MCP server `{server}` failed: {detail}", operation(tool.as_deref()))]
    Request {
        /// The server.
        server: String,
        /// The tool called; `None` for listing tools.
        tool: Option<String>,
        /// The server's error message.
        detail: String,
    },
    /// [`Upstreams::shutdown`](super::Upstreams::shutdown) has run; no server starts again.
    #[error("MCP server `{server}` is not available: the bridge is shutting down")]
    ShutDown {
        /// The server.
        server: String,
    },
}

impl UpstreamError {
    /// The `rpc_result` error kind: `unknown_server`, `unknown_tool` or `upstream`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownServer { .. } => "unknown_server",
            Self::UnknownTool { .. } => "unknown_tool",
            Self::Unsupported { .. }
            | Self::Start { .. }
            | Self::Backoff { .. }
            | Self::Crashed { .. }
            | Self::Timeout { .. }
            | Self::Request { .. }
            | Self::ShutDown { .. } => "upstream",
        }
    }

    /// The server the error is about.
    pub fn server(&self) -> &str {
        match self {
            Self::UnknownServer { server, .. }
            | Self::UnknownTool { server, .. }
            | Self::Unsupported { server, .. }
            | Self::Start { server, .. }
            | Self::Backoff { server, .. }
            | Self::Crashed { server, .. }
            | Self::Timeout { server, .. }
            | Self::Request { server, .. }
            | Self::ShutDown { server } => server,
        }
    }
}

/// `1.5 s`, `250 ms`: durations as people read them in error messages.
pub(super) fn human(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

fn operation(tool: Option<&str>) -> String {
    match tool {
        Some(tool) => format!("tool `{tool}`"),
        None => "listing the tools".to_owned(),
    }
}

fn attempt_note(attempt: u32) -> String {
    if attempt > 1 {
        format!(" ({attempt} failures in a row)")
    } else {
        String::new()
    }
}

fn known_servers(known: &[String]) -> String {
    if known.is_empty() {
        return "; no MCP servers are configured".to_owned();
    }
    format!("; known servers: {}", backticked(known))
}

fn similar_tools(similar: &[String], total: usize) -> String {
    if total == 0 {
        return " (it lists no tools)".to_owned();
    }
    let mut text = format!(
        "; {} ",
        if similar.len() == total {
            "its tools:"
        } else {
            "closest:"
        }
    );
    text.push_str(&backticked(similar));
    if similar.len() < total {
        let _ = write!(text, " (of {total})");
    }
    text
}

fn backticked(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_server_tool_and_duration() {
        let timeout = UpstreamError::Timeout {
            server: "time".into(),
            tool: Some("get_current_time".into()),
            after: Duration::from_millis(1500),
        };
        assert_eq!(
            timeout.to_string(),
            "tool `get_current_time` of MCP server `time` timed out after 1.5 s"
        );
        assert_eq!(timeout.kind(), "upstream");
        let unknown = UpstreamError::UnknownTool {
            server: "time".into(),
            tool: "get_time".into(),
            similar: vec!["get_current_time".into()],
            total: 2,
        };
        assert_eq!(
            unknown.to_string(),
            "MCP server `time` has no tool `get_time`; closest: `get_current_time` (of 2)"
        );
        assert_eq!(unknown.kind(), "unknown_tool");
        let server = UpstreamError::UnknownServer {
            server: "x".into(),
            known: vec![],
        };
        assert_eq!(server.kind(), "unknown_server");
        assert!(server.to_string().contains("no MCP servers are configured"));
    }
}
