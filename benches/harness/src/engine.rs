//! `bench engine`: the WASI backend under each engine setting (`MCP_BRIDGE_WASI_ENGINE`),
//! so the defaults are chosen by numbers: how long the interpreter takes to prepare (compile
//! and snapshot), a warm `pass`, and the CPU-bound programs against the host's `CPython`.
//!
//! Every setting runs in one cache directory of its own (by default a temporary one, removed
//! at the end), so the user's cache is neither used nor filled with modules compiled for
//! settings they do not run. Settings that compile alike (the tick) reuse what the one
//! before them compiled there. Trusts the server binary to be this project's server.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cli::EngineBenchArgs;
use crate::client;
use crate::stats::{Summary, median};
use crate::workloads::{self, PROGRAMS};

/// The settings compared when none are named: wasmtime's defaults first, then one change
/// each.
pub(crate) const DEFAULT_TUNINGS: [&str; 6] = [
    "opt=speed,bounds=guard,tick=10ms",
    "opt=speed_and_size",
    "opt=none",
    "bounds=checked",
    "tick=1ms",
    "tick=100ms",
];

/// What `bench engine` measures with one engine setting.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EngineRun {
    /// The setting, as given.
    pub(crate) tuning: String,
    /// `provision` from this cache: compiling the interpreter and its snapshot for these
    /// settings (or only loading them, when an earlier setting compiled alike).
    pub(crate) prepare_s: f64,
    /// Warm `pass` round trips.
    pub(crate) warm_pass: Summary,
    /// Each CPU-bound program's median milliseconds inside the sandbox, in
    /// [`PROGRAMS`]' order.
    pub(crate) cpu_ms: Vec<f64>,
}

/// How a `bench engine` run is set up.
#[derive(Debug, Clone)]
pub(crate) struct EnginePlan<'a> {
    /// The server binary.
    pub(crate) server: &'a Path,
    /// The cache directory every setting uses.
    pub(crate) cache_dir: &'a Path,
    /// `full` or `slim`.
    pub(crate) wasi_python: &'a str,
    /// Warm `pass` calls to time.
    pub(crate) iterations: usize,
    /// Times each CPU-bound program runs; the median counts.
    pub(crate) repeats: usize,
}

/// The flags `provision` and `run` both take for one setting.
fn flags(plan: &EnginePlan<'_>, tuning: &str) -> Vec<String> {
    vec![
        "--backend".into(),
        "wasi".into(),
        "--cache-dir".into(),
        plan.cache_dir.display().to_string(),
        "--wasi-python".into(),
        plan.wasi_python.into(),
        "--wasi-engine".into(),
        tuning.into(),
    ]
}

/// The server's flags for one setting: without a warm session filling in the background
/// while the figures are taken.
fn run_flags(plan: &EnginePlan<'_>, tuning: &str) -> Vec<String> {
    let mut flags = flags(plan, tuning);
    flags.extend(["--pool-size".into(), "0".into()]);
    flags
}

/// Prepare the interpreter for `tuning` with the server's `provision`; how long it took.
async fn provision(plan: &EnginePlan<'_>, tuning: &str) -> Result<Duration> {
    let started = Instant::now();
    let output = tokio::process::Command::new(plan.server)
        .arg("provision")
        .args(flags(plan, tuning))
        .env("MCP_BRIDGE_LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {} provision", plan.server.display()))?;
    if !output.status.success() {
        bail!(
            "provision with {tuning:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(started.elapsed())
}

/// Measure the WASI backend with the engine setting `tuning`.
pub(crate) async fn measure(plan: &EnginePlan<'_>, tuning: &str) -> Result<EngineRun> {
    let prepare = provision(plan, tuning).await?;
    let (client, _) = client::start(plan.server, &run_flags(plan, tuning), &[]).await?;
    let peer = client.peer().clone();
    workloads::run(&peer, "pass", "engine").await?;
    let mut passes = Vec::with_capacity(plan.iterations);
    for _ in 0..plan.iterations {
        let started = Instant::now();
        workloads::run(&peer, "pass", "engine").await?;
        passes.push(started.elapsed());
    }
    let mut cpu_ms = Vec::new();
    for (_, program) in PROGRAMS {
        let mut samples = Vec::with_capacity(plan.repeats);
        for _ in 0..plan.repeats.max(1) {
            let printed = workloads::run(&peer, &workloads::timed(program), "engine").await?;
            samples.push(Duration::from_secs_f64(
                workloads::parse_ms(&printed)? / 1000.0,
            ));
        }
        cpu_ms.push(crate::stats::ms(median(samples)));
    }
    client.cancel().await.context("stopping the server")?;
    Ok(EngineRun {
        tuning: tuning.to_string(),
        prepare_s: prepare.as_secs_f64(),
        warm_pass: Summary::of(passes),
        cpu_ms,
    })
}

/// Each CPU-bound program's median milliseconds on the host's `python` (standard library
/// only), `None` where it could not run.
pub(crate) async fn host_cpu_ms(python: &Path, repeats: usize) -> Vec<Option<f64>> {
    let mut host = Vec::new();
    for (_, program) in PROGRAMS {
        let code = workloads::timed(program);
        let mut samples = Vec::new();
        for _ in 0..repeats.max(1) {
            if let Some(ms) = workloads::host_ms(python, &["-I", "-S"], &code).await {
                samples.push(Duration::from_secs_f64(ms / 1000.0));
            }
        }
        host.push((!samples.is_empty()).then(|| crate::stats::ms(median(samples))));
    }
    host
}

/// The comparison as a Markdown table: one row per setting, each program's time with its
/// ratio to the host's.
pub(crate) fn markdown(runs: &[EngineRun], host: &[Option<f64>], wasi_python: &str) -> String {
    let mut out = format!(
        "WASI engine settings (`MCP_BRIDGE_WASI_ENGINE`), the `{wasi_python}` interpreter; \
         CPU-bound programs in ms inside the sandbox (× the host's own `python3`), median of \
         the repeats:\n\n| settings | prepare (s) | warm `pass` median (ms) |"
    );
    for (name, _) in PROGRAMS {
        let _ = write!(out, " {name} |");
    }
    out.push_str("\n|---|---|---|");
    out.push_str(&"---|".repeat(PROGRAMS.len()));
    out.push('\n');
    for run in runs {
        let _ = write!(
            out,
            "| `{}` | {:.1} | {:.3} |",
            run.tuning, run.prepare_s, run.warm_pass.median_ms
        );
        for (sandbox, host) in run.cpu_ms.iter().zip(host) {
            let _ = match host {
                Some(host) => write!(out, " {sandbox:.0} ({:.2}×) |", sandbox / host),
                None => write!(out, " {sandbox:.0} |"),
            };
        }
        out.push('\n');
    }
    out
}

/// `bench engine`: every setting of `args` (or [`DEFAULT_TUNINGS`]) measured in turn, and
/// the table.
pub(crate) async fn report(
    server: &Path,
    args: &EngineBenchArgs,
    iterations: usize,
    host_python: &Path,
) -> Result<String> {
    let temporary = match &args.cache_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("making the bench's cache directory")?),
    };
    let cache_dir = args
        .cache_dir
        .as_deref()
        .or(temporary.as_ref().map(tempfile::TempDir::path))
        .context("no cache directory")?;
    let plan = EnginePlan {
        server,
        cache_dir,
        wasi_python: &args.wasi_python,
        iterations,
        repeats: args.repeats,
    };
    let tunings: Vec<String> = if args.tuning.is_empty() {
        DEFAULT_TUNINGS.map(String::from).to_vec()
    } else {
        args.tuning.clone()
    };
    let mut runs = Vec::new();
    for tuning in &tunings {
        tracing::info!(%tuning, "measuring the WASI engine");
        runs.push(measure(&plan, tuning).await?);
    }
    let host = host_cpu_ms(host_python, args.repeats).await;
    Ok(markdown(&runs, &host, &args.wasi_python))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(ms: u64) -> Summary {
        Summary::of(vec![Duration::from_millis(ms)])
    }

    #[test]
    fn the_table_has_a_row_per_setting_with_ratios_where_the_host_ran() {
        let runs = [EngineRun {
            tuning: "opt=none".into(),
            prepare_s: 12.34,
            warm_pass: summary(1),
            cpu_ms: vec![300.0, 200.0, 100.0],
        }];
        let table = markdown(&runs, &[Some(100.0), None, Some(50.0)], "slim");
        let row = table.lines().last().unwrap();
        assert_eq!(
            row,
            "| `opt=none` | 12.3 | 1.000 | 300 (3.00×) | 200 | 100 (2.00×) |"
        );
        let header_cells = table.lines().nth(2).unwrap().matches('|').count();
        assert_eq!(row.matches('|').count(), header_cells);
        assert!(table.contains("`slim` interpreter"));
    }

    #[test]
    fn the_server_is_started_without_a_pool_and_provisioned_with_the_same_settings() {
        let plan = EnginePlan {
            server: Path::new("/bin/server"),
            cache_dir: Path::new("/tmp/cache"),
            wasi_python: "slim",
            iterations: 1,
            repeats: 1,
        };
        let run = run_flags(&plan, "tick=1ms");
        assert!(run.ends_with(&["--pool-size".to_string(), "0".to_string()]));
        assert!(
            run.windows(2)
                .any(|pair| pair == ["--wasi-engine", "tick=1ms"])
        );
        let provision = flags(&plan, "tick=1ms");
        assert!(
            run.starts_with(&provision),
            "provision and run share the settings"
        );
        assert!(!provision.contains(&"--pool-size".to_string()));
    }
}
