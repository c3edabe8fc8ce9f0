//! What can go wrong when reaching an upstream server, and the `rpc` error kind of each.
//!
//! A message names the server, the step or the tool once; what the step ran into (the OS,
//! the HTTP client, rmcp) is its [`source`](std::error::Error::source), told once by
//! [`sandbox_core::error_chain`] where the error becomes text: the reply to the guest, the
//! log, `servers --check`.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::ErrorData;

use super::client_error::McpClientError;

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
    #[error("MCP server `{server}` failed to start{}", attempt_note(*attempt))]
    Start {
        /// The server.
        server: String,
        /// Consecutive failures of this server so far, this one included.
        attempt: u32,
        /// What failed: the spawn error, or the handshake error with the process's exit status
        /// and last lines of stderr.
        #[source]
        source: StartError,
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
    #[error("{} of MCP server `{server}` failed", operation(tool.as_deref()))]
    Request {
        /// The server.
        server: String,
        /// The tool called; `None` for listing tools.
        tool: Option<String>,
        /// The server's error, or why the request could not be sent.
        #[source]
        source: RequestFailure,
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

/// Why an upstream server could not be started: spawned or connected, initialised, and its
/// tools listed. The message names the step; what it ran into is the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The spec's command is empty.
    #[error("the command is empty")]
    EmptyCommand,
    /// A command with a `/` names no executable file.
    #[error("`{}` does not exist or is not executable", path.display())]
    NotExecutable {
        /// The path, joined to the spec's working directory when relative.
        path: PathBuf,
    },
    /// A command name was found in no directory of the child's `PATH`.
    #[error("`{program}` was not found on PATH ({searched})")]
    NotFound {
        /// The command.
        program: String,
        /// The `PATH` searched.
        searched: String,
    },
    /// The spec's working directory does not exist.
    #[error("the working directory `{}` does not exist", cwd.display())]
    NoWorkingDirectory {
        /// The directory.
        cwd: PathBuf,
    },
    /// The OS could not start the program.
    #[error("cannot run `{}`", program.display())]
    Spawn {
        /// The resolved program.
        program: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The task that spawns the program failed (it panicked or was cancelled).
    #[error("the spawning task failed")]
    SpawnTask(#[source] tokio::task::JoinError),
    /// The process exited before its id could be read.
    #[error("the process exited before it could be watched")]
    ExitedAtOnce,
    /// The process came without the piped stdio asked for.
    #[error("the process has no piped stdio")]
    NoPipes,
    /// The MCP handshake over the process's stdio failed; when the process ended, how it
    /// ended is the last cause.
    #[error("the MCP handshake failed")]
    Handshake(#[source] McpClientError),
    /// A header name of the spec is not a valid HTTP header name.
    #[error("invalid header name `{name}`")]
    HeaderName {
        /// The name.
        name: String,
        /// What the HTTP library said.
        #[source]
        source: http::header::InvalidHeaderName,
    },
    /// A header value of the spec is not a valid HTTP header value (the value is never told).
    #[error("invalid value for header `{name}`")]
    HeaderValue {
        /// The header's name.
        name: String,
        /// What the HTTP library said.
        #[source]
        source: http::header::InvalidHeaderValue,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The server at the URL did not open an MCP session.
    #[error("cannot open an MCP session at {url}")]
    OpenSession {
        /// The server's URL.
        url: String,
        /// What the MCP client ran into.
        #[source]
        source: McpClientError,
    },
    /// The server started but listing its tools failed.
    #[error("it started but listing its tools failed")]
    ListTools(#[source] RequestFailure),
    /// Spawning or connecting plus the handshake took longer than the start timeout.
    #[error("no answer within {}", human(*after))]
    Timeout {
        /// The start timeout.
        after: Duration,
    },
}

/// Why a request to a running server got no result, before it is named with its server and
/// tool ([`UpstreamError::Crashed`], [`UpstreamError::Timeout`] or
/// [`UpstreamError::Request`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailure {
    /// The server is gone: how it ended (exit status and last lines of stderr, or why its
    /// connection closed).
    #[error("{how}")]
    Ended {
        /// How it ended.
        how: Arc<str>,
    },
    /// No answer within the timeout.
    #[error("no answer within {}", human(*after))]
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// The server answered with an error; its message is told.
    #[error("{}", .0.message)]
    Refused(Box<ErrorData>),
    /// The request could not be sent, or its answer not read, on a live connection.
    #[error(transparent)]
    Client(McpClientError),
}

impl RequestFailure {
    /// The failure as an [`UpstreamError`] of `server`, for a call of `tool` (`None`: listing
    /// the tools).
    pub(super) fn into_error(self, server: &str, tool: Option<&str>) -> UpstreamError {
        let server = server.to_owned();
        match self {
            Self::Ended { how } => {
                let detail = match tool {
                    Some(tool) => format!("{how} (while tool `{tool}` was running)"),
                    None => format!("{how} (while listing its tools)"),
                };
                UpstreamError::Crashed { server, detail }
            }
            Self::Timeout { after } => UpstreamError::Timeout {
                server,
                tool: tool.map(str::to_owned),
                after,
            },
            source @ (Self::Refused(_) | Self::Client(_)) => UpstreamError::Request {
                server,
                tool: tool.map(str::to_owned),
                source,
            },
        }
    }
}

/// `1.5 s`, `250 ms`: durations as people read them in error messages.
fn human(duration: Duration) -> String {
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

    #[test]
    fn a_start_failure_names_server_and_program_once_and_the_os_error_once() {
        let error = UpstreamError::Start {
            server: "files".into(),
            attempt: 1,
            source: StartError::Spawn {
                program: "/opt/files/server".into(),
                source: io::Error::from_raw_os_error(13),
            },
        };
        assert_eq!(error.to_string(), "MCP server `files` failed to start");
        let text = sandbox_core::error_chain(&error);
        let os = io::Error::from_raw_os_error(13).to_string();
        assert_eq!(
            text,
            format!("MCP server `files` failed to start: cannot run `/opt/files/server`: {os}")
        );
        assert_eq!(text.matches(&os).count(), 1, "{text}");
        assert_eq!(text.matches("/opt/files/server").count(), 1, "{text}");
        assert_eq!(error.kind(), "upstream");
    }

    #[test]
    fn a_failed_first_listing_tells_the_step_then_its_cause() {
        let error = UpstreamError::Start {
            server: "time".into(),
            attempt: 2,
            source: StartError::ListTools(RequestFailure::Timeout {
                after: Duration::from_secs(1),
            }),
        };
        let text = sandbox_core::error_chain(&error);
        assert_eq!(
            text,
            "MCP server `time` failed to start (2 failures in a row): it started but listing \
             its tools failed: no answer within 1 s"
        );
        assert_eq!(text.matches("`time`").count(), 1, "{text}");
    }

    #[test]
    fn a_bad_header_names_the_header_and_the_parse_error_once() {
        let source = http::HeaderName::try_from("bad name").unwrap_err();
        let parse = source.to_string();
        let error = StartError::HeaderName {
            name: "bad name".into(),
            source,
        };
        assert_eq!(
            sandbox_core::error_chain(&error),
            format!("invalid header name `bad name`: {parse}")
        );
    }

    #[test]
    fn request_failures_become_errors_naming_server_and_tool() {
        let refused = RequestFailure::Refused(Box::new(ErrorData::invalid_params(
            "`message` is required",
            None,
        )))
        .into_error("everything", Some("echo"));
        assert!(
            matches!(refused, UpstreamError::Request { .. }),
            "{refused}"
        );
        assert_eq!(
            sandbox_core::error_chain(&refused),
            "tool `echo` of MCP server `everything` failed: `message` is required"
        );
        let ended = RequestFailure::Ended {
            how: "the process exited with status 3".into(),
        }
        .into_error("crashy", None);
        assert_eq!(
            sandbox_core::error_chain(&ended),
            "MCP server `crashy` crashed: the process exited with status 3 (while listing its \
             tools)"
        );
        let timeout = RequestFailure::Timeout {
            after: Duration::from_millis(250),
        }
        .into_error("slow", Some("nap"));
        assert_eq!(
            sandbox_core::error_chain(&timeout),
            "tool `nap` of MCP server `slow` timed out after 250 ms"
        );
    }
}
