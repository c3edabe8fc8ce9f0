//! `bench`: measure backends through the real server, over MCP, as a client would.
//!
//! Every figure includes the protocol cost a client pays: the server is this binary started as
//! a child process, driven by rmcp's client over stdio.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde::Serialize;
use serde_json::json;

use mcp_server_code_execution_mode::cli::{BenchArgs, BenchFocus, ConfigArgs};
use mcp_server_code_execution_mode::{config, settings};

use crate::bench_charts::{self as charts, LatencyRow, ThroughputRow};
use crate::bench_workloads::{
    self as workloads, CONCURRENCY, CpuResult, OutputCost, SMOKE_CONCURRENCY, Throughput,
};

const BACKENDS: [&str; 3] = ["wasi", "podman", "docker"];
/// Idle sessions started to measure memory per session.
const IDLE_SESSIONS: u32 = 8;

/// Latency summary of repeated measurements, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) samples: usize,
    pub(crate) min_ms: f64,
    pub(crate) median_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Summary {
    pub(crate) fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "indices of small vectors"
            )]
            let i = ((samples.len() - 1) as f64 * q).round() as usize;
            ms(samples[i])
        };
        Self {
            samples: samples.len(),
            min_ms: ms(samples[0]),
            median_ms: at(0.5),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: ms(samples[samples.len() - 1]),
        }
    }
}

/// Everything measured for one backend.
#[derive(Debug, Clone, Serialize)]
struct BackendReport {
    backend: String,
    available: bool,
    reason: Option<String>,
    /// What the backend runs on (versions, runtime), as its probe says.
    detail: Option<String>,
    start_to_initialize: Option<Summary>,
    cold_session: Option<Summary>,
    pool_session: Option<Summary>,
    warm_pass: Option<Summary>,
    /// Growth of the bridge process's RSS per idle session.
    idle_session_rss_mib: Option<f64>,
    /// Growth of the host's memory (PSS summed over every process: the bridge, guests,
    /// engine helpers such as conmon or containerd-shim) per idle session.
    idle_session_host_mib: Option<f64>,
    /// A fresh `<engine> run --rm <image> python3 -c pass`: what the reference pays per call.
    engine_run_per_call: Option<Summary>,
    /// Calls per second and latency by number of sessions called at once.
    throughput: Vec<Throughput>,
    /// CPU-bound programs, in the sandbox and on the host.
    cpu: Vec<CpuResult>,
    /// Round trips by output size.
    output: Vec<OutputCost>,
    /// One proxied call (with `--proxy`): medians in ms of the upstream alone, and of what
    /// the proxy path adds to it.
    proxy_upstream_ms: Option<f64>,
    proxy_overhead_ms: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
struct Report {
    date: String,
    machine: Machine,
    version: String,
    iterations: usize,
    backends: Vec<BackendReport>,
}

#[derive(Debug, Clone, Serialize)]
struct Machine {
    cores: usize,
    memory_gib: f64,
    kernel: String,
}

type Client = RunningService<RoleClient, ()>;

/// Run the benchmark and print the report.
pub(crate) async fn run(args: &BenchArgs) -> Result<()> {
    match &args.focus {
        Some(BenchFocus::Tokens(config)) => {
            return print_report(&crate::bench_focus::tokens_report(config).await?);
        }
        Some(BenchFocus::Proxy(proxy)) => {
            return print_report(&crate::bench_focus::proxy_report(proxy).await?);
        }
        None => {}
    }
    let server = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("locating this executable")?,
    };
    let wanted: Vec<String> = if args.backend == "all" {
        BACKENDS.iter().map(ToString::to_string).collect()
    } else {
        args.backend
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    };
    let iterations = args.iterations.max(5);
    let mut backends = Vec::new();
    for backend in &wanted {
        let mut report = bench_backend(&server, backend, iterations).await;
        if report.available
            && let Some(target) = &args.proxy
        {
            match proxied_call(args, target, backend, iterations).await {
                Ok(medians) => {
                    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                    report.proxy_upstream_ms = Some(ms(medians.direct));
                    report.proxy_overhead_ms = Some(ms(medians.overhead()));
                }
                Err(e) => {
                    tracing::warn!(backend, error = %e, "the proxied call could not be timed");
                }
            }
        }
        backends.push(report);
    }
    let report = Report {
        date: today(),
        machine: machine(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        iterations,
        backends,
    };
    let markdown = markdown(&report);
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(dir) = &args.out {
        write_outputs(dir, &markdown, &json)?;
        match charts::write(dir, &latency_rows(&report), &throughput_rows(&report)) {
            Ok(files) => {
                for file in files {
                    tracing::info!(chart = %file.display(), "chart written");
                }
            }
            Err(reason) => tracing::warn!(%reason, "no charts"),
        }
    }
    let mut stdout = std::io::stdout().lock();
    let text = if args.json { &json } else { &markdown };
    std::io::Write::write_all(&mut stdout, format!("{text}\n").as_bytes())?;
    Ok(())
}

fn print_report(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, format!("{text}\n").as_bytes())?;
    Ok(())
}

fn write_outputs(dir: &Path, markdown: &str, json: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("bench.md"), markdown)?;
    std::fs::write(dir.join("bench.json"), json)?;
    Ok(())
}

async fn bench_backend(server: &Path, backend: &str, iterations: usize) -> BackendReport {
    let mut report = BackendReport {
        backend: backend.to_string(),
        available: false,
        reason: None,
        detail: probe_detail(backend).await,
        idle_session_host_mib: None,
        engine_run_per_call: None,
        throughput: Vec::new(),
        cpu: Vec::new(),
        output: Vec::new(),
        proxy_upstream_ms: None,
        proxy_overhead_ms: None,
        start_to_initialize: None,
        cold_session: None,
        pool_session: None,
        warm_pass: None,
        idle_session_rss_mib: None,
    };
    if let Err(e) = measure(server, backend, iterations, &mut report).await {
        report.reason = Some(format!("{e:#}"));
    }
    report
}

async fn measure(
    server: &Path,
    backend: &str,
    iterations: usize,
    report: &mut BackendReport,
) -> Result<()> {
    // Warm-up: provision and compile once, outside any timing, and learn availability.
    {
        let (client, _) = connect(server, backend, &[]).await?;
        let first = call(&client, "print('ready')", None).await?;
        if first.is_error == Some(true) {
            bail!("the backend cannot run: {}", text_of(&first));
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
    let pid = client_pid(&client);
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

    // Pool sessions: a warm session waits; each call names a new session.
    let (client, _) = connect(server, backend, &[("MCP_BRIDGE_POOL_SIZE", "1")]).await?;
    call(&client, "pass", None).await?;
    let mut pooled = Vec::new();
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let started = Instant::now();
        call(&client, "pass", Some(&format!("pool{i}"))).await?;
        pooled.push(started.elapsed());
    }
    client.cancel().await.ok();
    report.pool_session = Some(Summary::of(pooled));

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
    report.cpu = workloads::cpu(client.peer()).await?;
    report.output = workloads::output_scaling(client.peer(), if smoke { 2 } else { 5 }).await?;
    client.cancel().await.ok();
    if matches!(backend, "podman" | "docker") {
        report.engine_run_per_call = engine_run(backend).await;
    }
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

/// Proportional set size of every process we can read, in KiB: shared pages are split
/// among the processes sharing them, so the sum is the host's real memory use.
fn host_pss_kib() -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(rollup) = std::fs::read_to_string(entry.path().join("smaps_rollup")) else {
            continue;
        };
        total += rollup
            .lines()
            .find(|l| l.starts_with("Pss:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

async fn time_calls(client: &Client, iterations: usize, session: Option<&str>) -> Result<Summary> {
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        call(client, "pass", session).await?;
        samples.push(started.elapsed());
    }
    Ok(Summary::of(samples))
}

async fn connect(server: &Path, backend: &str, env: &[(&str, &str)]) -> Result<(Client, Duration)> {
    let mut command = tokio::process::Command::new(server);
    command
        .arg("run")
        .arg("--backend")
        .arg(backend)
        .env("MCP_BRIDGE_LOG_LEVEL", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    let started = Instant::now();
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .context("starting the server")?;
    let client = ().serve(transport).await.context("initialising the server")?;
    Ok((client, started.elapsed()))
}

fn client_pid(_client: &Client) -> Option<u32> {
    // The transport owns the child; find it as our newest child process instead.
    let me = std::process::id();
    let children = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .max()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn call(client: &Client, code: &str, session: Option<&str>) -> Result<CallToolResult> {
    let mut args = json!({"code": code});
    if let Some(session) = session {
        args["session"] = json!(session);
    }
    let serde_json::Value::Object(args) = args else {
        unreachable!()
    };
    let params = CallToolRequestParams::new("run_python").with_arguments(args as JsonObject);
    let result = client
        .call_tool(params)
        .await
        .context("run_python call failed")?;
    if result.is_error == Some(true) && code == "pass" {
        bail!("`pass` failed: {}", text_of(&result));
    }
    Ok(result)
}

pub(crate) fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn machine() -> Machine {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let memory_gib = mem_kib as f64 / 1024.0 / 1024.0;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Machine {
        cores,
        memory_gib,
        kernel,
    }
}

fn today() -> String {
    let output = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output();
    output
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn fmt_summary(summary: Option<&Summary>) -> String {
    summary.map_or_else(
        || "–".into(),
        |s| {
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2}",
                s.min_ms, s.median_ms, s.p95_ms, s.p99_ms
            )
        },
    )
}

fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(
        out,
        "## Backend benchmark ({}; {} cores, {:.0} GiB, Linux {}; v{}; {} warm iterations)\n",
        report.date, m.cores, m.memory_gib, m.kernel, report.version, report.iterations
    );
    let _ = writeln!(
        out,
        "Times in ms as min / median / p95 / p99, through MCP over stdio.\n"
    );
    let _ = writeln!(
        out,
        "| backend | start → initialize | cold session | session from pool | warm `pass` | idle session: bridge RSS / host PSS |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for b in &report.backends {
        if !b.available {
            let _ = writeln!(
                out,
                "| {} | unavailable: {} | | | | |",
                b.backend,
                b.reason.as_deref().unwrap_or("unknown")
            );
            continue;
        }
        let mib = |value: Option<f64>| value.map_or_else(|| "–".into(), |r| format!("{r:.1} MiB"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} / {} |",
            b.backend,
            fmt_summary(b.start_to_initialize.as_ref()),
            fmt_summary(b.cold_session.as_ref()),
            fmt_summary(b.pool_session.as_ref()),
            fmt_summary(b.warm_pass.as_ref()),
            mib(b.idle_session_rss_mib),
            mib(b.idle_session_host_mib),
        );
    }
    let details: Vec<String> = report
        .backends
        .iter()
        .filter_map(|b| Some(format!("- {}: {}", b.backend, b.detail.as_ref()?)))
        .collect();
    if !details.is_empty() {
        let _ = writeln!(out, "\nVersions:\n{}", details.join("\n"));
    }
    let proxied: Vec<String> = report
        .backends
        .iter()
        .filter_map(|b| Some(format!("{} {:.2} ms", b.backend, b.proxy_overhead_ms?)))
        .collect();
    if let Some(upstream) = report.backends.iter().find_map(|b| b.proxy_upstream_ms) {
        let _ = writeln!(
            out,
            "\nOne proxied tool call: the upstream alone takes {upstream:.2} ms (median, host \
             client); the proxy path (sandbox, host, upstream and back) adds {}.",
            proxied.join(", ")
        );
    }
    workload_tables(report, &mut out);
    advice(report, &mut out);
    for b in &report.backends {
        if let (Some(run), Some(warm)) = (&b.engine_run_per_call, &b.warm_pass) {
            let _ = writeln!(
                out,
                "\n{}: a fresh `{} run --rm … python3 -c pass` (what the reference pays per call) \
                 takes {:.1} ms median; a warm call here takes {:.2} ms: {:.0}× faster.",
                b.backend,
                b.backend,
                run.median_ms,
                warm.median_ms,
                run.median_ms / warm.median_ms
            );
        }
    }
    let available: Vec<&BackendReport> = report.backends.iter().filter(|b| b.available).collect();
    if available.len() > 1 {
        let base = available[0];
        let _ = writeln!(out, "\nWarm `pass` median relative to {}:", base.backend);
        for b in &available {
            if let (Some(x), Some(y)) = (&b.warm_pass, &base.warm_pass) {
                let _ = writeln!(out, "- {}: {:.2}×", b.backend, x.median_ms / y.median_ms);
            }
        }
    }
    if let Some(reason) = report.backends.iter().find_map(|b| b.reason.as_ref()) {
        let _ = writeln!(out, "\nNote: {reason}");
    }
    out
}

/// The throughput, CPU and output tables of the report.
fn workload_tables(report: &Report, out: &mut String) {
    let measured: Vec<&BackendReport> = report
        .backends
        .iter()
        .filter(|b| b.available && !b.throughput.is_empty())
        .collect();
    let Some(first) = measured.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "\nThroughput with N sessions called at once (calls/s, and p99 latency in ms):\n"
    );
    let levels: Vec<usize> = first.throughput.iter().map(|t| t.sessions).collect();
    let header: Vec<String> = levels.iter().map(|n| format!("N={n}")).collect();
    let _ = writeln!(out, "| backend | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(levels.len()));
    for b in &measured {
        let cells: Vec<String> = b
            .throughput
            .iter()
            .map(|t| format!("{:.0} ({:.1})", t.calls_per_sec, t.latency.p99_ms))
            .collect();
        let _ = writeln!(out, "| {} | {} |", b.backend, cells.join(" | "));
    }
    let _ = writeln!(
        out,
        "\nCPU-bound Python, ms inside the sandbox (× the host's own `python3`):\n"
    );
    let names: Vec<&str> = measured.iter().map(|b| b.backend.as_str()).collect();
    let _ = writeln!(out, "| program | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(names.len()));
    for (i, program) in first.cpu.iter().enumerate() {
        let cells: Vec<String> = measured
            .iter()
            .map(|b| match b.cpu.get(i) {
                Some(CpuResult {
                    sandbox_ms,
                    host_ms: Some(host),
                    ..
                }) => format!("{sandbox_ms:.0} ({:.2}×)", sandbox_ms / host),
                Some(result) => format!("{:.0}", result.sandbox_ms),
                None => "–".into(),
            })
            .collect();
        let _ = writeln!(out, "| {} | {} |", program.program, cells.join(" | "));
    }
    let _ = writeln!(
        out,
        "\nOutput size, median round trip in ms (the cap keeps 64 KiB):\n"
    );
    let _ = writeln!(out, "| stdout | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(names.len()));
    for (i, cost) in first.output.iter().enumerate() {
        let cells: Vec<String> = measured
            .iter()
            .map(|b| {
                b.output.get(i).map_or_else(
                    || "–".into(),
                    |c: &OutputCost| format!("{:.2}", c.round_trip.median_ms),
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} |",
            human_size(cost.bytes),
            cells.join(" | ")
        );
    }
    let fits: Vec<String> = measured
        .iter()
        .filter_map(|b| {
            let mib = b.idle_session_host_mib.filter(|m| *m > 0.1)?;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "display"
            )]
            let sessions = (4096.0 / mib).floor() as u64;
            Some(format!("{} {sessions}", b.backend))
        })
        .collect();
    if !fits.is_empty() {
        let _ = writeln!(
            out,
            "\nIdle sessions that fit in 4 GiB (host PSS): {}.",
            fits.join(", ")
        );
    }
}

fn human_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{} MB", b / 1_000_000),
        b if b >= 1_000 => format!("{} KB", b / 1_000),
        b => format!("{b} B"),
    }
}

/// Time `--proxy SERVER.TOOL` through a bridge on `backend`.
async fn proxied_call(
    args: &BenchArgs,
    target: &str,
    backend: &str,
    iterations: usize,
) -> Result<crate::bench_focus::ProxyMedians> {
    let (server, tool) = target
        .split_once('.')
        .context("--proxy takes SERVER.TOOL, e.g. time.get_current_time")?;
    let proxy_args = mcp_server_code_execution_mode::cli::ProxyBenchArgs {
        server: server.to_string(),
        tool: tool.to_string(),
        arguments: args.proxy_arguments.clone(),
        iterations: iterations.clamp(5, 100),
        config: args.servers_config.iter().fold(
            ConfigArgs::default().with(&settings::BACKEND, backend),
            |config, file| config.with(&settings::SERVERS_CONFIG, file.display().to_string()),
        ),
    };
    crate::bench_focus::proxy_medians(&proxy_args).await
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

/// Medians for the latency chart, for backends that ran.
fn latency_rows(report: &Report) -> Vec<LatencyRow> {
    report
        .backends
        .iter()
        .filter_map(|b| {
            Some(LatencyRow {
                backend: b.backend.clone(),
                cold_ms: b.cold_session.as_ref()?.median_ms,
                pool_ms: b.pool_session.as_ref()?.median_ms,
                warm_ms: b.warm_pass.as_ref()?.median_ms,
            })
        })
        .collect()
}

/// Points for the throughput chart.
fn throughput_rows(report: &Report) -> Vec<ThroughputRow> {
    report
        .backends
        .iter()
        .filter(|b| !b.throughput.is_empty())
        .map(|b| ThroughputRow {
            backend: b.backend.clone(),
            points: b
                .throughput
                .iter()
                .map(|t| (t.sessions, t.calls_per_sec))
                .collect(),
        })
        .collect()
}

/// Which backend wins what on this machine, from the figures above, and what they cannot
/// show.
fn advice(report: &Report, out: &mut String) {
    let ran: Vec<&BackendReport> = report.backends.iter().filter(|b| b.available).collect();
    if ran.len() < 2 {
        return;
    }
    let best = |value: &dyn Fn(&BackendReport) -> Option<f64>, lowest: bool| {
        ran.iter()
            .filter_map(|b| Some((b.backend.as_str(), value(b)?)))
            .min_by(|a, b| {
                let order = a.1.total_cmp(&b.1);
                if lowest { order } else { order.reverse() }
            })
    };
    let mut lines = Vec::new();
    if let Some((name, ms)) = best(&|b| Some(b.warm_pass.as_ref()?.median_ms), true) {
        lines.push(format!("fastest warm call: {name} ({ms:.2} ms median)"));
    }
    if let Some((name, ms)) = best(&|b| Some(b.cold_session.as_ref()?.median_ms), true) {
        lines.push(format!(
            "fastest new session without the pool: {name} ({ms:.0} ms)"
        ));
    }
    if let Some((name, rate)) = best(
        &|b| {
            b.throughput
                .iter()
                .map(|t| t.calls_per_sec)
                .reduce(f64::max)
        },
        false,
    ) {
        lines.push(format!("most calls per second: {name} ({rate:.0}/s)"));
    }
    if let Some((name, mib)) = best(&|b| b.idle_session_host_mib.filter(|m| *m > 0.1), true) {
        lines.push(format!(
            "least memory per idle session: {name} ({mib:.1} MiB)"
        ));
    }
    let cpu = |b: &BackendReport| {
        let ratios: Vec<f64> = b
            .cpu
            .iter()
            .filter_map(|c| Some(c.sandbox_ms / c.host_ms?))
            .collect();
        #[allow(clippy::cast_precision_loss, reason = "three programs")]
        let count = ratios.len() as f64;
        (!ratios.is_empty()).then(|| ratios.iter().map(|r| r.ln()).sum::<f64>() / count)
    };
    if let Some((name, log_ratio)) = best(&cpu, true) {
        lines.push(format!(
            "fastest Python: {name} ({:.2}× the host's CPython, geometric mean)",
            log_ratio.exp()
        ));
    }
    let _ = writeln!(out, "\nOn this machine:\n");
    for line in lines {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(
        out,
        "\nWhat the figures do not show: `wasi` needs no container engine and no root, has no \
         network or processes by construction, and runs pure-Python code slower; `podman` and \
         `docker` run native CPython (C extensions, threads, subprocesses) under cgroup caps, \
         need an engine, and take `--oci-runtime runsc` for gVisor's kernel between the code \
         and the host."
    );
}
