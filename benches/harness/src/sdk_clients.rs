//! `bench clients`: warm calls as clients built on the official Python MCP SDK see them,
//! next to the bench's own rmcp client.
//!
//! The SDK side is `benches/sdk_clients.py`, embedded here and run by each `--python` given
//! (an interpreter with the SDK, 1.x or 2.x): through the bridge with and without the SDK's
//! validation of `structuredContent`, and through an unsandboxed in-process Python server.
//! A Python that cannot run it gets a row saying why; the other rows still come.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::client;
use crate::stats::Summary;

/// The SDK side of the measurement.
const SCRIPT: &str = include_str!("../../sdk_clients.py");

/// Warm calls through `server` on each backend, by the rmcp client and by the SDK of each
/// interpreter in `pythons`; `calls` timed per way.
pub(crate) async fn report(
    server: &Path,
    backends: &[&str],
    pythons: &[PathBuf],
    calls: usize,
) -> Result<String> {
    let dir = tempfile::tempdir().context("a directory for the SDK script")?;
    let script = dir.path().join("sdk_clients.py");
    std::fs::write(&script, SCRIPT).context("writing the SDK script")?;
    let mut out = format!(
        "## Warm `run_python(\"pass\")` by client ({calls} calls each, ms)\n\n\
         | client | through | min | median | p95 | p99 |\n|---|---|---|---|---|---|\n"
    );
    for backend in backends {
        match rmcp_warm(server, backend, calls).await {
            Ok(summary) => {
                let _ = writeln!(
                    out,
                    "| rmcp (this bench) | the bridge ({backend}) | {:.3} | {:.3} | {:.3} | {:.3} |",
                    summary.min_ms, summary.median_ms, summary.p95_ms, summary.p99_ms
                );
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| rmcp (this bench) | the bridge ({backend}) | failed: {e:#} | | | |"
                );
            }
        }
        for python in pythons {
            match sdk_rows(python, &script, server, backend, calls).await {
                Ok(rows) => out.push_str(&rows),
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "| {} | the bridge ({backend}) | failed: {e:#} | | | |",
                        python.display()
                    );
                }
            }
        }
    }
    Ok(out)
}

/// `calls` warm `pass` runs by the bench's rmcp client.
async fn rmcp_warm(server: &Path, backend: &str, calls: usize) -> Result<Summary> {
    let flags = ["--backend".to_string(), backend.to_string()];
    let (bridge, _) = client::start(server, &flags, &[]).await?;
    let pass = json!({"code": "pass"});
    for _ in 0..20 {
        client::run_python_ok(&bridge, pass.clone()).await?;
    }
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        client::run_python_ok(&bridge, pass.clone()).await?;
        times.push(started.elapsed());
    }
    bridge.cancel().await.ok();
    Ok(Summary::of(times))
}

/// The Markdown rows `python` prints running the SDK script.
async fn sdk_rows(
    python: &Path,
    script: &Path,
    server: &Path,
    backend: &str,
    calls: usize,
) -> Result<String> {
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(server)
        .arg(backend)
        .arg(calls.to_string())
        // The bridges the script starts keep their sessions away from the user's.
        .env("MCP_BRIDGE_STATE_DIR", client::fresh_state_dir()?)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", python.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("no message");
        bail!("{} ({last})", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
