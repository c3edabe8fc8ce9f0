//! The report of the backend comparison: what was measured per backend, rendered as Markdown
//! (the tables, the advice) or JSON, and the rows the charts are drawn from.
//!
//! Trusts the figures it is given; computes only ratios and rankings from them. Guarantees a
//! backend that did not run still gets a row saying why.

use std::fmt::Write as _;

use serde::Serialize;

use crate::charts::{LatencyRow, ThroughputRow};
use crate::data::{DataReport, DataResult};
use crate::stats::Summary;
use crate::workloads::{CpuResult, OutputCost, Throughput};

/// Everything measured for one backend.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BackendReport {
    /// The backend's name.
    pub(crate) backend: String,
    /// Whether it ran; if not, `reason` says why.
    pub(crate) available: bool,
    /// Why the backend could not run, or where its measurement stopped.
    pub(crate) reason: Option<String>,
    /// What the backend runs on (versions, runtime), as its probe says.
    pub(crate) detail: Option<String>,
    /// From spawning the server to the end of `initialize`.
    pub(crate) start_to_initialize: Option<Summary>,
    /// A call naming a new session, without the pool.
    pub(crate) cold_session: Option<Summary>,
    /// A call naming a new session, served from the pool.
    pub(crate) pool_session: Option<Summary>,
    /// A `pass` on a session that is already running.
    pub(crate) warm_pass: Option<Summary>,
    /// A `pass` on a running session after the same idle gap as each pool call: what the
    /// pool is measured against.
    pub(crate) warm_after_idle: Option<Summary>,
    /// Growth of the bridge process's RSS per idle session.
    pub(crate) idle_session_rss_mib: Option<f64>,
    /// Growth of the host's memory (PSS summed over every process: the bridge, guests,
    /// engine helpers such as conmon or containerd-shim) per idle session.
    pub(crate) idle_session_host_mib: Option<f64>,
    /// A fresh `<engine> run --rm <image> python3 -c pass`: what the reference pays per call.
    pub(crate) engine_run_per_call: Option<Summary>,
    /// Calls per second and latency by number of sessions called at once.
    pub(crate) throughput: Vec<Throughput>,
    /// CPU-bound programs, in the sandbox and on the host.
    pub(crate) cpu: Vec<CpuResult>,
    /// Round trips by output size.
    pub(crate) output: Vec<OutputCost>,
    /// The data workloads (numpy, pandas, matplotlib), or why there are none.
    pub(crate) data: DataReport,
    /// One proxied call (with `--proxy`): median in ms of the upstream alone.
    pub(crate) proxy_upstream_ms: Option<f64>,
    /// One proxied call (with `--proxy`): median in ms of what the proxy path adds to it.
    pub(crate) proxy_overhead_ms: Option<f64>,
    /// With `--proxy`: median in ms per call of a run gathering 50 proxied calls (less an
    /// empty run), against one awaited call's share of a run.
    pub(crate) proxy_gather_per_call_ms: Option<(f64, f64)>,
    /// Durable sessions: saving, resuming, checkpoint sizes, start-up with saved sessions.
    pub(crate) durable: crate::durable::DurableReport,
}

impl BackendReport {
    /// A backend with nothing measured yet.
    pub(crate) fn unmeasured(backend: &str) -> Self {
        Self {
            backend: backend.to_string(),
            available: false,
            reason: None,
            detail: None,
            start_to_initialize: None,
            cold_session: None,
            pool_session: None,
            warm_after_idle: None,
            warm_pass: None,
            idle_session_rss_mib: None,
            idle_session_host_mib: None,
            engine_run_per_call: None,
            throughput: Vec::new(),
            cpu: Vec::new(),
            output: Vec::new(),
            data: crate::data::DataReport::default(),
            proxy_upstream_ms: None,
            proxy_overhead_ms: None,
            proxy_gather_per_call_ms: None,
            durable: crate::durable::DurableReport::default(),
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    date: String,
    machine: Machine,
    version: String,
    iterations: usize,
    backends: Vec<BackendReport>,
}

impl Report {
    /// The report of `backends`, measured with `iterations` warm round trips, dated now and
    /// on this machine.
    pub(crate) fn new(iterations: usize, backends: Vec<BackendReport>) -> Self {
        Self {
            date: today(),
            machine: machine(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            iterations,
            backends,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Machine {
    cores: usize,
    memory_gib: f64,
    kernel: String,
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

/// The report as Markdown: the tables, then which backend wins what.
pub(crate) fn markdown(report: &Report) -> String {
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
    let pooled: Vec<String> = report
        .backends
        .iter()
        .filter_map(|b| {
            let (pool, warm) = (b.pool_session.as_ref()?, b.warm_after_idle.as_ref()?);
            Some(format!(
                "{} {:.2} against {:.2} ms ({:.2}×)",
                b.backend,
                pool.median_ms,
                warm.median_ms,
                pool.median_ms / warm.median_ms.max(f64::MIN_POSITIVE)
            ))
        })
        .collect();
    if !pooled.is_empty() {
        let _ = writeln!(
            out,
            "\nA session from the pool comes after {} ms idle; a call to a running session \
             after the same idle takes (medians) {}.",
            crate::measure::POOL_GAP.as_millis(),
            pooled.join(", ")
        );
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
        let gathered: Vec<String> = report
            .backends
            .iter()
            .filter_map(|b| {
                let (each, one) = b.proxy_gather_per_call_ms?;
                Some(format!("{} {each:.2} ms (one alone: {one:.2})", b.backend))
            })
            .collect();
        let _ = writeln!(
            out,
            "In an `asyncio.gather` of {}, each call takes {}.",
            crate::focus::GATHERED,
            gathered.join(", ")
        );
    }
    workload_tables(report, &mut out);
    data_table(report, &mut out);
    durable_table(report, &mut out);
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

/// The data workloads: ms per backend, with the ratio to the host's Python where it has
/// the libraries; backends without the stack say why below the table.
fn data_table(report: &Report, out: &mut String) {
    let ran: Vec<&BackendReport> = report.backends.iter().filter(|b| b.available).collect();
    let measured: Vec<&BackendReport> = ran
        .iter()
        .copied()
        .filter(|b| !b.data.programs.is_empty())
        .collect();
    if let Some(first) = measured.first() {
        let names: Vec<&str> = measured.iter().map(|b| b.backend.as_str()).collect();
        let _ = writeln!(
            out,
            "\nData workloads, ms inside the sandbox (× the host's own Python with the same \
             libraries, where it has them):\n"
        );
        let _ = writeln!(out, "| workload | {} |", names.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(names.len()));
        let ratio = |ms: f64, host: Option<f64>| match host {
            Some(host) if host > 0.0 => format!("{ms:.1} ({:.2}×)", ms / host),
            _ => format!("{ms:.1}"),
        };
        for (i, program) in first.data.programs.iter().enumerate() {
            let cells: Vec<String> = measured
                .iter()
                .map(|b| {
                    b.data.programs.get(i).map_or_else(
                        || "–".into(),
                        |r: &DataResult| ratio(r.sandbox_ms, r.host_ms),
                    )
                })
                .collect();
            let _ = writeln!(out, "| {} | {} |", program.program, cells.join(" | "));
        }
        let imports = |label: &str, cell: &dyn Fn(&crate::data::FirstImport) -> String| {
            let cells: Vec<String> = measured
                .iter()
                .map(|b| {
                    b.data
                        .first_import
                        .as_ref()
                        .map_or_else(|| "–".into(), cell)
                })
                .collect();
            format!("| {label} | {} |", cells.join(" | "))
        };
        let rows = [
            imports(
                "new session from the pool: first `import numpy, pandas, matplotlib.pyplot`, inside",
                &|f| ratio(f.pool_import.median_ms, f.host_ms),
            ),
            imports(
                "… the whole call (new session from the pool + that import)",
                &|f| format!("{:.1}", f.pool_round_trip.median_ms),
            ),
            imports("… the whole call, cold (no pool)", &|f| {
                format!("{:.1}", f.cold_round_trip.median_ms)
            }),
            imports(
                "idle session holding that stack: bridge PSS / host PSS, MiB",
                &|f| {
                    let mib = |m: Option<f64>| m.map_or_else(|| "–".into(), |m| format!("{m:.1}"));
                    format!("{} / {}", mib(f.idle_bridge_mib), mib(f.idle_host_mib))
                },
            ),
        ];
        for row in rows {
            let _ = writeln!(out, "{row}");
        }
    }
    for b in ran {
        if let Some(reason) = &b.data.skipped {
            let _ = writeln!(out, "\n{}: no data workloads: {reason}", b.backend);
        }
    }
}

/// Durable sessions: save and resume times and checkpoint sizes per kind of session, and
/// start-up with 1,000 saved sessions on disk.
fn durable_table(report: &Report, out: &mut String) {
    let measured: Vec<&BackendReport> = report
        .backends
        .iter()
        .filter(|b| b.available && (!b.durable.kinds.is_empty() || b.durable.reason.is_some()))
        .collect();
    if measured.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "
### Durable sessions

Save: `mcp.runtime.checkpoint()` timed in the sandbox \
         (serialise, send to the host, write). Resume: the first call to a fork of the \
         session, as the client sees it, and what it costs beyond the first call to a new \
         session (both from the pool). Times in ms as min / median / p95 / p99.\n"
    );
    let _ = writeln!(
        out,
        "| backend | session | checkpoint | save | first call, resumed | beyond a new session (median) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for b in &measured {
        let d = &b.durable;
        if let Some(reason) = &d.reason {
            let _ = writeln!(out, "| {} | not measured: {reason} | | | | |", b.backend);
            continue;
        }
        let fresh = d.fresh_first_call.as_ref().map_or(0.0, |s| s.median_ms);
        for kind in &d.kinds {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.1} ms |",
                b.backend,
                kind.kind,
                human_size(usize::try_from(kind.bytes).unwrap_or(usize::MAX)),
                fmt_summary(Some(&kind.save)),
                fmt_summary(Some(&kind.resume_first_call)),
                kind.resume_first_call.median_ms - fresh,
            );
        }
    }
    let starts: Vec<String> = measured
        .iter()
        .filter_map(|b| {
            let (empty, saved) = (
                b.durable.start_empty.as_ref()?,
                b.durable.start_with_saved.as_ref()?,
            );
            Some(format!(
                "{} {:.1} ms with none, {:.1} ms with 1,000 ({:+.1} ms)",
                b.backend,
                empty.median_ms,
                saved.median_ms,
                saved.median_ms - empty.median_ms
            ))
        })
        .collect();
    if !starts.is_empty() {
        let _ = writeln!(
            out,
            "
Start → initialize (median) with saved sessions on disk: {}. A saved session \
             holds no process and no sandbox: it is one file until a call names it.",
            starts.join("; ")
        );
    }
}

/// The durable-session table of one backend alone (`bench durable`).
pub(crate) fn durable_markdown(backend: &str, durable: &crate::durable::DurableReport) -> String {
    let report = Report::new(
        0,
        vec![BackendReport {
            backend: backend.to_string(),
            available: true,
            durable: durable.clone(),
            ..BackendReport::unmeasured(backend)
        }],
    );
    let mut out = String::new();
    durable_table(&report, &mut out);
    out
}

fn human_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{} MB", b / 1_000_000),
        b if b >= 1_000 => format!("{} KB", b / 1_000),
        b => format!("{b} B"),
    }
}

/// Medians for the latency chart, for backends that ran.
pub(crate) fn latency_rows(report: &Report) -> Vec<LatencyRow> {
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
pub(crate) fn throughput_rows(report: &Report) -> Vec<ThroughputRow> {
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
