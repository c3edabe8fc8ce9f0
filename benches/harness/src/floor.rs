//! Where a warm call's time goes, against the floors this machine allows.
//!
//! For each backend, with the same rmcp client over stdio:
//! - **floor**: a warm `tools/call` of an rmcp server that does nothing but answer, with
//!   the very bytes the bridge answered `pass` with (this binary, run as `floor-server`):
//!   the protocol's own cost, client, framing, pipes and rmcp on both sides;
//! - **warm**: `run_python("pass")` through the bridge;
//! - **engine**: what the bridge itself reports of those calls (`duration_ms`: from the run
//!   frame sent to the guest to its result frame read), so `warm − floor − engine` is the
//!   bridge's handling around the sandbox (arguments, sessions, the reply);
//! - **exec**: `exec("pass")` timed inside the guest (compile included), so
//!   `engine − exec` is the hop to the guest and back and the guest runtime's loop;
//! - **bare guest**: the same warm calls once the session's run handler is swapped for a
//!   bare one that only compiles and execs the code and sends a fixed quiet result (no
//!   capture, no result assembly, no output directory check). That is what any guest
//!   runtime would cost on the same transport and interpreter, so `warm − bare` is our
//!   runtime's own share of a call.
//!
//! Every figure is a median of the same number of calls, measured in one run, so the
//! ratios hold on a noisy machine even where the absolute numbers drift.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::TokioChildProcess;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};

use crate::bare;
use crate::client::{self, Client};
use crate::stats::Summary;

/// Calls made before timing starts.
const WARM_UP: usize = 30;
/// `exec("pass")` calls timed in the guest.
const GUEST_EXECS: usize = 2000;

/// The floor server's tool name.
const NOOP: &str = "noop";

/// The figures of one backend.
#[derive(Debug, Clone, Default)]
pub(crate) struct FloorReport {
    /// The rmcp round trip with the same answer.
    pub(crate) floor: Option<Summary>,
    /// `run_python("pass")` through the bridge.
    pub(crate) warm: Option<Summary>,
    /// The bridge's own `duration_ms` of those calls.
    pub(crate) engine: Option<Summary>,
    /// One `exec("pass")` in the guest, in milliseconds (a mean over many).
    pub(crate) exec_ms: Option<f64>,
    /// `run_python("pass")` with the bare run handler.
    pub(crate) bare: Option<Summary>,
    /// The bridge's own `duration_ms` of those calls.
    pub(crate) bare_engine: Option<Summary>,
    /// Why figures are missing.
    pub(crate) reason: Option<String>,
}

/// Measure `backend` through `server`, `iterations` calls each way; `floor_server` is this
/// binary.
pub(crate) async fn measure(
    server: &Path,
    floor_server: &Path,
    backend: &str,
    iterations: usize,
) -> FloorReport {
    match try_measure(server, floor_server, backend, iterations).await {
        Ok(report) => report,
        Err(e) => FloorReport {
            reason: Some(format!("{e:#}")),
            ..FloorReport::default()
        },
    }
}

async fn try_measure(
    server: &Path,
    floor_server: &Path,
    backend: &str,
    iterations: usize,
) -> Result<FloorReport> {
    let state = tempfile::Builder::new()
        .prefix("bench-floor-")
        .tempdir()
        .context("a state directory")?;
    let state_dir = state.path().display().to_string();
    let (bridge, _) = client::start(
        server,
        &["--backend".to_string(), backend.to_string()],
        &[("MCP_BRIDGE_STATE_DIR", state_dir.as_str())],
    )
    .await?;
    let pass = json!({"code": "pass"});
    let mut answer = None;
    for _ in 0..WARM_UP {
        answer = Some(client::run_python_ok(&bridge, pass.clone()).await?);
    }
    let answer = answer.context("no warm-up call")?;
    let (warm, engine) = time_bridge(&bridge, iterations).await?;
    let exec_ms = guest_exec_ms(&bridge).await?;
    let (bare, bare_engine) = time_bare(&bridge, iterations).await?;
    bridge.cancel().await.ok();
    let floor = time_floor(floor_server, &answer, iterations).await?;
    Ok(FloorReport {
        floor: Some(floor),
        warm: Some(warm),
        engine: Some(engine),
        exec_ms: Some(exec_ms),
        bare: Some(bare),
        bare_engine: Some(bare_engine),
        reason: None,
    })
}

/// `iterations` warm `pass` calls: as the client saw them, and as the bridge reported them.
async fn time_bridge(bridge: &Client, iterations: usize) -> Result<(Summary, Summary)> {
    let mut seen = Vec::with_capacity(iterations);
    let mut reported = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        let result = client::run_python_ok(bridge, json!({"code": "pass"})).await?;
        seen.push(started.elapsed());
        let engine_ms = result
            .structured_content
            .as_ref()
            .and_then(|s| s["duration_ms"].as_f64())
            .context("a result without duration_ms")?;
        reported.push(Duration::from_secs_f64(engine_ms / 1e3));
    }
    Ok((Summary::of(seen), Summary::of(reported)))
}

/// One `exec("pass")` in the guest, in milliseconds, as the guest's clock has it.
async fn guest_exec_ms(bridge: &Client) -> Result<f64> {
    let code = format!(
        "import time\nt = time.perf_counter()\nfor _ in range({GUEST_EXECS}):\n    \
         exec('pass', {{}})\nprint((time.perf_counter() - t) * 1000 / {GUEST_EXECS})"
    );
    let result = client::run_python_ok(bridge, json!({"code": code, "timeout": 120})).await?;
    let stdout = client::stdout_of(&result);
    stdout
        .trim()
        .parse()
        .with_context(|| format!("the guest printed {stdout:?}"))
}

/// `iterations` warm `pass` calls with the bare run handler in place, as in
/// [`time_bridge`]; the real handler is back afterwards.
async fn time_bare(bridge: &Client, iterations: usize) -> Result<(Summary, Summary)> {
    bare::install(bridge, None).await?;
    for _ in 0..WARM_UP {
        client::run_python_ok(bridge, json!({"code": "pass"})).await?;
    }
    let timed = time_bridge(bridge, iterations).await?;
    bare::remove(bridge, WARM_UP + iterations).await?;
    Ok(timed)
}

/// `iterations` warm calls of the floor server answering with `answer`.
async fn time_floor(
    floor_server: &Path,
    answer: &CallToolResult,
    iterations: usize,
) -> Result<Summary> {
    let mut command = tokio::process::Command::new(floor_server);
    command
        .arg("floor-server")
        .arg(serde_json::to_string(answer).context("the answer as JSON")?);
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {} floor-server", floor_server.display()))?;
    let floor = ().serve(transport).await.context("initialising the floor server")?;
    let call = || {
        let params = CallToolRequestParams::new(NOOP).with_arguments(
            json!({"code": "pass"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        floor.call_tool(params)
    };
    for _ in 0..WARM_UP {
        call().await.context("calling the floor server")?;
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        call().await.context("calling the floor server")?;
        times.push(started.elapsed());
    }
    floor.cancel().await.ok();
    Ok(Summary::of(times))
}

/// The floor server: one tool, answering every call with the same result at once.
#[derive(Debug, Clone)]
struct Echo {
    answer: CallToolResult,
    tools: Vec<Tool>,
}

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.clone()))
    }

    async fn call_tool(
        &self,
        _request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        Ok(self.answer.clone().into())
    }
}

/// `floor-server ANSWER`: serve MCP over stdio, answering every call with `answer` (a
/// `CallToolResult` as JSON), until the client goes away.
pub(crate) async fn serve_floor(answer: &str) -> Result<()> {
    let answer: CallToolResult =
        serde_json::from_str(answer).context("the answer is not a CallToolResult")?;
    let Value::Object(schema) = json!({"type": "object"}) else {
        bail!("a schema is an object")
    };
    let tools = vec![Tool::new(NOOP, "Answers at once.", schema)];
    let service = Echo { answer, tools }
        .serve(rmcp::transport::stdio())
        .await
        .context("serving the floor")?;
    service.waiting().await.context("the floor server")?;
    Ok(())
}

/// The Markdown table of `rows`.
pub(crate) fn markdown(rows: &[(String, FloorReport)]) -> String {
    let mut out = String::from(
        "### Where a warm call goes\n\n\
         Medians in ms of the same number of calls, one run. floor: an rmcp server answering \
         the same bytes at once (the protocol's own cost). engine: the bridge's own \
         `duration_ms` (run frame out, result frame in). exec: `exec(\"pass\")` inside the \
         guest. bare guest: the same calls with the guest's run handler swapped for one that \
         only compiles, execs and sends a fixed result (any guest runtime's cost on this \
         transport); runtime's share: warm − bare.\n\n\
         | backend | floor | warm `pass` (p95, p99) | warm / floor | above floor | around the sandbox | engine | of it, exec | hop and guest loop | bare guest (engine) | bare / floor | runtime's share |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (backend, report) in rows {
        let (Some(floor), Some(warm), Some(engine), Some(exec), Some(bare), Some(bare_engine)) = (
            &report.floor,
            &report.warm,
            &report.engine,
            report.exec_ms,
            &report.bare,
            &report.bare_engine,
        ) else {
            let why = report.reason.as_deref().unwrap_or("not measured");
            let _ = writeln!(out, "| {backend} | {} ||||||||||", why.replace('|', "/"));
            continue;
        };
        let around = warm.median_ms - floor.median_ms - engine.median_ms;
        let _ = writeln!(
            out,
            "| {backend} | {:.3} | {:.3} ({:.3}, {:.3}) | {:.1}× | {:.3} | {around:.3} | {:.3} | {exec:.3} | {:.3} | {:.3} ({:.3}) | {:.1}× | {:.3} |",
            floor.median_ms,
            warm.median_ms,
            warm.p95_ms,
            warm.p99_ms,
            warm.median_ms / floor.median_ms,
            warm.median_ms - floor.median_ms,
            engine.median_ms,
            engine.median_ms - exec,
            bare.median_ms,
            bare_engine.median_ms,
            bare.median_ms / floor.median_ms,
            warm.median_ms - bare.median_ms,
        );
    }
    out
}
