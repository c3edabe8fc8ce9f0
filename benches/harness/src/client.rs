//! The bench's MCP client: start the server binary as a child speaking MCP over stdio, and
//! call its `run_python` tool, as a client would.
//!
//! Trusts the server binary it is given to be this project's server (it is started with
//! `run` and flags of `run`). Guarantees every figure timed through it includes the protocol
//! cost a client pays; the server's stderr goes to ours, at level warn.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{Peer, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;

/// A running server, driven by rmcp's client.
pub(crate) type Client = RunningService<RoleClient, ()>;

/// Start `server run FLAGS` with `env` added to its environment, and initialise MCP; returns
/// the client and the time from spawning to the end of `initialize`. Unless `env` names
/// one, the server gets a new, empty state directory: no server resumes a session another
/// one saved, and the user's own state directory is neither read nor written.
pub(crate) async fn start(
    server: &Path,
    flags: &[String],
    env: &[(&str, &str)],
) -> Result<(Client, Duration)> {
    let mut command = tokio::process::Command::new(server);
    command
        .arg("run")
        .args(flags)
        .env("MCP_BRIDGE_LOG_LEVEL", "warn");
    if !env.iter().any(|(key, _)| *key == STATE_DIR_VARIABLE) {
        command.env(STATE_DIR_VARIABLE, fresh_state_dir()?);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let started = Instant::now();
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the server {}", server.display()))?;
    let client = ().serve(transport).await.context("initialising the server")?;
    Ok((client, started.elapsed()))
}

/// The variable naming the server's state directory (saved sessions, memory, configs).
const STATE_DIR_VARIABLE: &str = "MCP_BRIDGE_STATE_DIR";

/// The folder holding the servers' state directories; removed by [`remove_state_dirs`].
static STATE_DIRS: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// A new, empty state directory.
pub(crate) fn fresh_state_dir() -> Result<std::path::PathBuf> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let base = if let Some(base) = STATE_DIRS.get() {
        base.clone()
    } else {
        let made = tempfile::Builder::new()
            .prefix("bench-state-")
            .tempdir()?
            .keep();
        STATE_DIRS.get_or_init(|| made).clone()
    };
    let dir = base.join(
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_string(),
    );
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Remove the servers' state directories (once every server has stopped).
pub(crate) fn remove_state_dirs() {
    if let Some(base) = STATE_DIRS.get() {
        let _ = std::fs::remove_dir_all(base);
    }
}

/// Call `run_python` with `arguments` (a JSON object: `code`, and optionally `session`,
/// `timeout`, `servers`). A run that failed is a result, not an error.
pub(crate) async fn run_python(
    peer: &Peer<RoleClient>,
    arguments: Value,
) -> Result<CallToolResult> {
    let Value::Object(arguments) = arguments else {
        bail!("run_python arguments must be a JSON object, not {arguments}");
    };
    let params = CallToolRequestParams::new("run_python").with_arguments(arguments);
    peer.call_tool(params)
        .await
        .context("run_python call failed")
}

/// Call `run_python` like [`run_python`]; a run that failed is an error naming its output.
pub(crate) async fn run_python_ok(
    peer: &Peer<RoleClient>,
    arguments: Value,
) -> Result<CallToolResult> {
    let result = run_python(peer, arguments).await?;
    if result.is_error == Some(true) {
        bail!("the run failed: {}", text_of(&result));
    }
    Ok(result)
}

/// The run's stdout, from a result's structured content (empty when it has none).
pub(crate) fn stdout_of(result: &CallToolResult) -> String {
    result
        .structured_content
        .as_ref()
        .and_then(|s| s["stdout"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The text content of a tool result, one block per line.
pub(crate) fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}
