//! The backend comparison for one backend: start-up, cold, pooled and warm calls, memory per
//! idle session, then the workloads, all through the server over MCP.
//!
//! Trusts the server binary to be this project's server. Guarantees a backend that cannot run
//! is reported with the reason, never aborts the comparison of the others.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use mcp_server_code_execution_mode::cli::ConfigArgs;
use mcp_server_code_execution_mode::config;
use rmcp::model::CallToolResult;
use serde_json::json;

use crate::client::{self, Client};
use crate::data;
use crate::memory::{host_pss_kib, newest_child_pid, rss_kib};
use crate::report::BackendReport;
use crate::stats::Summary;
use crate::workloads::{self, CONCURRENCY, SMOKE_CONCURRENCY};

/// The idle gap before each call naming a new session (the pool refills meanwhile).
pub(crate) const POOL_GAP: Duration = Duration::from_millis(400);

/// Idle sessions started to measure memory per session.
const IDLE_SESSIONS: u32 = 8;

/// Everything measured for `backend` through the server binary `server`, or why it could not
/// be measured.
pub(crate) async fn bench_backend(
    server: &Path,
    backend: &str,
    iterations: usize,
    host_python: &Path,
) -> BackendReport {
    let mut report = BackendReport {
        detail: probe_detail(backend).await,
        ..BackendReport::unmeasured(backend)
    };
    if let Err(e) = measure(server, backend, iterations, host_python, &mut report).await {
        report.reason = Some(format!("{e:#}"));
    }
    report
}

async fn measure(
    server: &Path,
    backend: &str,
    iterations: usize,
    host_python: &Path,
    report: &mut BackendReport,
) -> Result<()> {
    // Warm-up: provision and compile once, outside any timing, and learn availability.
    {
        let (client, _) = connect(server, backend, &[]).await?;
        let first = call(&client, "print('ready')", None).await?;
        if first.is_error == Some(true) {
            bail!("the backend cannot run: {}", client::text_of(&first));
        }
        client.cancel().await.ok();
    }
    report.available = true;

    let mut starts = Vec::new();
    for _ in 0..5 {
        let (client, elapsed) = connect(server, backend, &[("MCP_BRIDGE_POOL_SIZE", "0")]).await?;
        starts.push(elapsed);
        client.cancel().await.ok();
    }
    report.start_to_initialize = Some(Summary::of(starts));

    // Cold sessions: no pool, each call names a new session.
    let (client, _) = connect(server, backend, &[("MCP_BRIDGE_POOL_SIZE", "0")]).await?;
    call(&client, "pass", None).await?;
    let warm = time_calls(&client, iterations, None).await?;
    let mut cold = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        call(&client, "pass", Some(&format!("cold{i}"))).await?;
        cold.push(started.elapsed());
    }
    let pid = newest_child_pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = pid.and_then(rss_kib);
    let host_before = host_pss_kib();
    let extra = IDLE_SESSIONS;
    for i in 0..extra {
        call(
            &client,
            "import re, json, asyncio",
            Some(&format!("idle{i}")),
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = pid.and_then(rss_kib);
    let host_after = host_pss_kib();
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let per_session =
        |before: u64, after: u64| after.saturating_sub(before) as f64 / f64::from(extra) / 1024.0;
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        report.idle_session_rss_mib = Some(per_session(before, after));
    }
    if let (Some(before), Some(after)) = (host_before, host_after) {
        report.idle_session_host_mib = Some(per_session(before, after));
    }
    client.cancel().await.ok();
    report.warm_pass = Some(warm);
    report.cold_session = Some(Summary::of(cold));

    // Pool sessions: a warm session waits; each call names a new session. Each comes after
    // an idle gap (for the pool to refill), and an idle machine answers its next call
    // slower, whatever answers it: so a call to a running session after the same gap is
    // timed alongside, the figure the pool is measured against.
    let (client, _) = connect(server, backend, &[("MCP_BRIDGE_POOL_SIZE", "1")]).await?;
    call(&client, "pass", None).await?;
    let mut pooled = Vec::new();
    let mut warm_after_idle = Vec::new();
    for i in 0..10 {
        tokio::time::sleep(POOL_GAP).await;
        let started = Instant::now();
        call(&client, "pass", Some(&format!("pool{i}"))).await?;
        pooled.push(started.elapsed());
        tokio::time::sleep(POOL_GAP).await;
        let started = Instant::now();
        call(&client, "pass", None).await?;
        warm_after_idle.push(started.elapsed());
    }
    client.cancel().await.ok();
    report.pool_session = Some(Summary::of(pooled));
    report.warm_after_idle = Some(Summary::of(warm_after_idle));

    // Load, CPU and output size, on one bridge with room for every session.
    let smoke = iterations < 50;
    let (client, _) = connect(
        server,
        backend,
        &[
            ("MCP_BRIDGE_POOL_SIZE", "0"),
            ("MCP_BRIDGE_MAX_SESSIONS", "128"),
        ],
    )
    .await?;
    let levels: &[usize] = if smoke {
        &SMOKE_CONCURRENCY
    } else {
        &CONCURRENCY
    };
    for &sessions in levels {
        let calls_each = (iterations / sessions).max(5);
        report
            .throughput
            .push(workloads::throughput(client.peer(), sessions, calls_each).await?);
    }
    report.cpu = workloads::cpu(client.peer(), host_python).await?;
    report.output = workloads::output_scaling(client.peer(), if smoke { 2 } else { 5 }).await?;
    report.data = data::measure(server, backend, client.peer(), host_python).await;
    client.cancel().await.ok();
    if config::BackendKind::parse(backend).is_ok_and(config::BackendKind::is_container_engine) {
        report.engine_run_per_call = engine_run(backend).await;
    }
    report.durable = crate::durable::measure(server, backend, smoke).await;
    Ok(())
}

/// Time `<engine> run --rm` of `python3 -c pass` in the sandbox image, as the reference
/// does for every call. `None` when the engine's CLI cannot run it.
async fn engine_run(engine: &str) -> Option<Summary> {
    let image = mcp_server_code_execution_mode::backend::local_container_image()?;
    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let status = tokio::process::Command::new(engine)
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                &image,
                "python3",
                "-c",
                "pass",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .ok()?;
        if !status.success() {
            return None;
        }
        samples.push(started.elapsed());
    }
    Some(Summary::of(samples))
}

/// Time `iterations` calls of `pass`.
async fn time_calls(client: &Client, iterations: usize, session: Option<&str>) -> Result<Summary> {
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        call(client, "pass", session).await?;
        samples.push(started.elapsed());
    }
    Ok(Summary::of(samples))
}

/// Start the server on `backend`, with `env` added to its environment (and, as every server
/// the bench starts, a state directory of its own).
async fn connect(server: &Path, backend: &str, env: &[(&str, &str)]) -> Result<(Client, Duration)> {
    client::start(server, &["--backend".to_string(), backend.to_string()], env).await
}

/// Run `code`, on `session` if named; a failed `pass` is an error, other failures are results.
async fn call(client: &Client, code: &str, session: Option<&str>) -> Result<CallToolResult> {
    let mut arguments = json!({"code": code});
    if let Some(session) = session {
        arguments["session"] = json!(session);
    }
    let result = client::run_python(client, arguments).await?;
    if result.is_error == Some(true) && code == "pass" {
        bail!("`pass` failed: {}", client::text_of(&result));
    }
    Ok(result)
}

/// The backend's probe, for the report's versions line.
async fn probe_detail(backend: &str) -> Option<String> {
    let kind = config::BackendKind::parse(backend).ok()?;
    let config = config::resolve(&ConfigArgs::default()).ok()?;
    let sandbox = mcp_server_code_execution_mode::backend::build_kind(&config, kind).ok()?;
    let probe = sandbox.probe().await;
    sandbox.shutdown().await;
    match probe {
        sandbox_core::Probe::Available { detail } => Some(detail),
        sandbox_core::Probe::Unavailable { .. } => None,
    }
}
