//! Load on one bridge: many runs over many sessions at once, each reply checked against what
//! its code printed, and a soak that watches the memory of the bridge and its sandboxes.
//!
//! Every run prints a token made of its session and sequence number, the session's counter
//! (which each run bumps), and bulk derived from the token; the reply must be exactly that, so
//! a lost, swapped, garbled or duplicated output, or a run that saw another session's state or
//! a lost state, fails the test. The numbers (runs/s, p50/p99 latency, memory at the start and
//! the end) are printed for the record, never compared with a target.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use futures::future::join_all;
use serde_json::json;

use crate::faults::status_kib;
use crate::support::{TestBackend, TestBridge, container_cgroups};

#[path = "../common/stats.rs"]
mod stats;
use stats::median;

/// The code of run `seq` (from 0) of session `session`.
fn run_code(session: usize, seq: usize) -> String {
    format!(
        "n = globals().get('n', 0) + 1\ntoken = 's{session}-r{seq}'\nprint(token, n)\n\
         print((token + ':') * 100)"
    )
}

/// Exactly what [`run_code`] prints.
fn expected(session: usize, seq: usize) -> String {
    let token = format!("s{session}-r{seq}");
    format!("{token} {}\n{}\n", seq + 1, format!("{token}:").repeat(100))
}

/// How a batch of runs went.
struct Batch {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Batch {
    /// The latency below which `percent` % of the runs finished (nearest rank).
    fn percentile(&self, percent: usize) -> Duration {
        stats::percentile(&self.latencies, percent)
    }

    fn summary(&self) -> String {
        #[allow(clippy::cast_precision_loss, reason = "a few thousand runs")]
        let rate = self.latencies.len() as f64 / self.elapsed.as_secs_f64();
        format!(
            "{} runs in {:.2} s: {rate:.0} runs/s, p50 {:.2} ms, p99 {:.2} ms",
            self.latencies.len(),
            self.elapsed.as_secs_f64(),
            self.percentile(50).as_secs_f64() * 1e3,
            self.percentile(99).as_secs_f64() * 1e3
        )
    }
}

/// Run `total` runs spread over `sessions` sessions, all sessions at once, each session's
/// runs in order from sequence number `first` (the runs its session had before); every reply
/// is checked. `done` counts finished runs.
async fn drive(
    bridge: &TestBridge,
    prefix: &str,
    sessions: usize,
    (total, first): (usize, usize),
    done: &AtomicUsize,
) -> Result<Batch> {
    let started = Instant::now();
    let workers = (0..sessions).map(|session| async move {
        let name = format!("{prefix}-{session}");
        // Runs of this session: every `sessions`-th of the total, the first ones taking the rest.
        let runs = total / sessions + usize::from(session < total % sessions);
        let mut latencies = Vec::with_capacity(runs);
        for seq in first..first + runs {
            let sent = Instant::now();
            let reply = bridge
                .call(json!({"code": run_code(session, seq), "session": name}))
                .await
                .with_context(|| format!("run {seq} of session {name}"))?;
            latencies.push(sent.elapsed());
            ensure!(
                !reply.is_error,
                "run {seq} of {name} failed: {}",
                reply.text
            );
            ensure!(
                reply.structured["session"] == json!(name),
                "run {seq} of {name} answered for {}",
                reply.structured["session"]
            );
            let want = expected(session, seq);
            ensure!(
                reply.stdout() == want,
                "run {seq} of {name}: expected {:?}…, got {:?}…",
                want.lines().next(),
                reply.stdout().lines().next()
            );
            done.fetch_add(1, Ordering::Relaxed);
        }
        anyhow::Ok(latencies)
    });
    let mut latencies = Vec::with_capacity(total);
    for worker in join_all(workers).await {
        latencies.extend(worker?);
    }
    ensure!(
        latencies.len() == total,
        "{} of {total} runs",
        latencies.len()
    );
    Ok(Batch {
        latencies,
        elapsed: started.elapsed(),
    })
}

#[allow(clippy::print_stderr, reason = "the numbers are reported")]
fn report(b: &TestBackend, what: &str, text: &str) {
    eprintln!("LOAD {} {what}: {text}", b.name);
}

pub(crate) async fn sixteen_sessions_share_a_thousand_runs(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let done = AtomicUsize::new(0);
    let batch = drive(&bridge, "load", 16, (1000, 0), &done).await?;
    report(b, "1000 runs over 16 sessions", &batch.summary());
    // Each session's counter went up by exactly one per run, and nothing leaked across.
    for session in 0..16 {
        let runs = 1000 / 16 + usize::from(session < 1000 % 16);
        let out = bridge
            .call(json!({"code": "print(n, token)", "session": format!("load-{session}")}))
            .await?;
        let want = format!("{runs} s{session}-r{}\n", runs - 1);
        ensure!(
            out.stdout() == want,
            "session {session}: {:?}",
            out.stdout()
        );
    }
    Ok(())
}

/// Memory of a bridge and its sandboxes, in KiB.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Finished runs when it was taken.
    runs: usize,
    /// The bridge's resident set (`VmRSS`).
    bridge: u64,
    /// Proportional set size of every process in the bridge's containers (0 for WASI, whose
    /// sandboxes live in the bridge).
    sandboxes: u64,
}

/// Proportional set size of a process, in KiB (0 once it is gone).
fn pss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|rollup| {
            rollup
                .lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn sample(bridge_pid: u32, cgroups: &[std::path::PathBuf], runs: usize) -> Result<Sample> {
    let mut sandboxes = 0;
    for dir in cgroups {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs"))
            .with_context(|| format!("{}: the sandbox is gone", dir.display()))?;
        sandboxes += procs.lines().map(pss_kib).sum::<u64>();
    }
    Ok(Sample {
        runs,
        bridge: status_kib(bridge_pid, "VmRSS:")?,
        sandboxes,
    })
}

/// No sustained growth: the median of the last quarter's samples (by runs done) is within
/// 5 % + `slack_kib` of the second quarter's. The first quarter is left out: it holds the
/// warm-up (sessions starting, allocator pools and caches filling). Medians of a quarter
/// ignore a few outliers (a collection in flight, a sample between two frees), so one spike
/// does not fail the test, while a leak of a few KiB per run over the ~2,500 runs between
/// the two quarters does.
fn check_flat(
    samples: &[Sample],
    total: usize,
    slack_kib: u64,
    pick: fn(&Sample) -> u64,
) -> Result<(u64, u64)> {
    let quarter = |q: usize| -> Vec<u64> {
        samples
            .iter()
            .filter(|s| s.runs * 4 / total == q || (q == 3 && s.runs == total))
            .map(pick)
            .collect()
    };
    let (second, last) = (quarter(1), quarter(3));
    ensure!(
        !second.is_empty() && !last.is_empty(),
        "too few samples: {samples:?}"
    );
    let (second, last) = (median(second), median(last));
    ensure!(
        last <= second + second / 20 + slack_kib,
        "memory grew from {second} KiB (second quarter) to {last} KiB (last quarter)"
    );
    Ok((second, last))
}

pub(crate) async fn a_long_soak_keeps_memory_flat(b: &TestBackend) -> Result<()> {
    const TOTAL: usize = 5000;
    const SESSIONS: usize = 4;
    const SAMPLES: usize = 50;
    // No warm pool: its refill waits for a quiet moment (up to 2 s under load) and would land
    // a whole new sandbox in the middle of the samples.
    let bridge = b.bridge_with(&[("MCP_BRIDGE_POOL_SIZE", "0")]).await?;
    // Start the sessions, so that their sandboxes can be found and watched.
    let warm = AtomicUsize::new(0);
    drive(&bridge, "soak", SESSIONS, (SESSIONS, 0), &warm).await?;
    // Backends without a cgroup per sandbox (rootless without one) are watched through the
    // bridge's own memory only.
    let cgroups = if b.is_container() && bridge.unenforced("memory").await?.is_none() {
        let dirs = container_cgroups(b, bridge.pid, "memory")?;
        ensure!(dirs.len() >= SESSIONS, "{} sandboxes: {dirs:?}", dirs.len());
        dirs
    } else {
        Vec::new()
    };
    let samples = Mutex::new(vec![sample(bridge.pid, &cgroups, 0)?]);
    let done = AtomicUsize::new(0);
    let watcher = async {
        let mut next = TOTAL / SAMPLES;
        while next <= TOTAL {
            let runs = done.load(Ordering::Relaxed).min(TOTAL);
            if runs >= next {
                let taken = sample(bridge.pid, &cgroups, runs)?;
                samples.lock().expect("samples").push(taken);
                next = runs + TOTAL / SAMPLES;
            } else {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        anyhow::Ok(())
    };
    let soak = async {
        // The warm sessions go on: each had its run 0.
        let batch = drive(&bridge, "soak", SESSIONS, (TOTAL, 1), &done).await;
        // Let the watcher take its last sample even if the batch failed early.
        done.store(TOTAL, Ordering::Relaxed);
        batch
    };
    let (batch, sampling) = tokio::join!(soak, watcher);
    let batch = batch?;
    sampling?;
    let mut samples = samples.into_inner().expect("samples");
    samples.push(sample(bridge.pid, &cgroups, TOTAL)?);
    report(b, "soak of 5000 runs over 4 sessions", &batch.summary());
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let (bridge_q2, bridge_q4) = check_flat(&samples, TOTAL, 4 << 10, |s| s.bridge)?;
    report(
        b,
        "soak memory",
        &format!(
            "{} samples; bridge RSS {:.1} → {:.1} MiB (median of 2nd quarter {:.1}, of last {:.1})",
            samples.len(),
            mib(first.bridge),
            mib(last.bridge),
            mib(bridge_q2),
            mib(bridge_q4)
        ),
    );
    if b.is_container() {
        // gVisor's Sentry holds the guest's memory in a file of its own and gives freed
        // pages back lazily, and its Go heap grows towards its collector's target, so its
        // PSS drifts by tens of MiB under load with no leak of ours (the same guest runtime
        // under runc is held to the tight slack).
        let slack = if b.name == "podman_gvisor" {
            32 << 10
        } else {
            8 << 10
        };
        let (q2, q4) = check_flat(&samples, TOTAL, slack, |s| s.sandboxes)?;
        report(
            b,
            "soak memory",
            &format!(
                "sandboxes' PSS {:.1} → {:.1} MiB (median of 2nd quarter {:.1}, of last {:.1})",
                mib(first.sandboxes),
                mib(last.sandboxes),
                mib(q2),
                mib(q4)
            ),
        );
    }
    Ok(())
}

#[allow(clippy::cast_precision_loss, reason = "memory figures for a report")]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
