//! Workloads of the backend comparison beyond single calls: throughput and tail latency
//! under concurrent sessions, CPU-bound Python against the host's own CPython, and the cost
//! of output as it grows.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rmcp::RoleClient;
use rmcp::service::Peer;
use serde::Serialize;
use serde_json::json;

use crate::client;
use crate::stats::Summary;

/// Concurrent sessions measured in a full run.
pub(crate) const CONCURRENCY: [usize; 6] = [1, 2, 4, 8, 16, 64];
/// Concurrent sessions measured in a smoke run (few iterations).
pub(crate) const SMOKE_CONCURRENCY: [usize; 2] = [1, 4];

/// Calls per second and latency with `sessions` sessions called at once.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Throughput {
    pub(crate) sessions: usize,
    pub(crate) calls: usize,
    pub(crate) calls_per_sec: f64,
    pub(crate) latency: Summary,
}

/// One CPU-bound program: milliseconds inside the sandbox and on the host's CPython.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CpuResult {
    pub(crate) program: &'static str,
    pub(crate) sandbox_ms: f64,
    pub(crate) host_ms: Option<f64>,
}

/// Round trip of a call printing `bytes` of stdout.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OutputCost {
    pub(crate) bytes: usize,
    pub(crate) round_trip: Summary,
}

/// The classic programs, each timed from inside the interpreter.
pub(crate) const PROGRAMS: [(&str, &str); 3] = [
    ("n-body (20k steps)", NBODY),
    ("JSON round trip (2 MB)", JSON_ROUND_TRIP),
    ("regex (findall over 1 MB)", REGEX),
];

const NBODY: &str = r"
PI = 3.14159265358979323
SOLAR_MASS = 4 * PI * PI
DAYS_PER_YEAR = 365.24
BODIES = [
    ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], SOLAR_MASS),
    ([4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01],
     [1.66007664274403694e-03 * DAYS_PER_YEAR, 7.69901118419740425e-03 * DAYS_PER_YEAR,
      -6.90460016972063023e-05 * DAYS_PER_YEAR], 9.54791938424326609e-04 * SOLAR_MASS),
    ([8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01],
     [-2.76742510726862411e-03 * DAYS_PER_YEAR, 4.99852801234917238e-03 * DAYS_PER_YEAR,
      2.30417297573763929e-05 * DAYS_PER_YEAR], 2.85885980666130812e-04 * SOLAR_MASS),
    ([1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01],
     [2.96460137564761618e-03 * DAYS_PER_YEAR, 2.37847173959480950e-03 * DAYS_PER_YEAR,
      -2.96589568540237556e-05 * DAYS_PER_YEAR], 4.36624404335156298e-05 * SOLAR_MASS),
    ([1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01],
     [2.68067772490389322e-03 * DAYS_PER_YEAR, 1.62824170038242295e-03 * DAYS_PER_YEAR,
      -9.51592254519715870e-05 * DAYS_PER_YEAR], 5.15138902046611451e-05 * SOLAR_MASS),
]
PAIRS = [(BODIES[i], BODIES[j]) for i in range(5) for j in range(i + 1, 5)]
def advance(dt, steps):
    for _ in range(steps):
        for ((x1, y1, z1), v1, m1), ((x2, y2, z2), v2, m2) in PAIRS:
            dx, dy, dz = x1 - x2, y1 - y2, z1 - z2
            mag = dt * ((dx * dx + dy * dy + dz * dz) ** -1.5)
            b1, b2 = m1 * mag, m2 * mag
            v1[0] -= dx * b2; v1[1] -= dy * b2; v1[2] -= dz * b2
            v2[0] += dx * b1; v2[1] += dy * b1; v2[2] += dz * b1
        for (r, [vx, vy, vz], m) in BODIES:
            r[0] += dt * vx; r[1] += dt * vy; r[2] += dt * vz
advance(0.01, 20000)
";

const JSON_ROUND_TRIP: &str = r"
import json
records = [{'id': i, 'name': f'item {i}', 'tags': ['a', 'b', 'c'], 'price': i * 1.25,
            'nested': {'ok': i % 2 == 0, 'values': list(range(10))}} for i in range(10000)]
for _ in range(3):
    assert json.loads(json.dumps(records)) == records
";

const REGEX: &str = r"
import re
text = ' '.join(f'user{i}@example{i % 7}.org called +1-555-{i % 10000:04d} on 2026-11-{i % 28 + 1:02d}'
                for i in range(15000))
for _ in range(3):
    emails = re.findall(r'[\w.]+@[\w.]+\.\w+', text)
    phones = re.findall(r'\+\d-\d{3}-\d{4}', text)
    dates = re.findall(r'\d{4}-\d{2}-\d{2}', text)
assert len(emails) == len(phones) == len(dates) == 15000
";

/// The program wrapped so it prints its own run time in milliseconds.
pub(crate) fn timed(program: &str) -> String {
    format!(
        "import time as _bench_time\n_bench_t0 = _bench_time.perf_counter()\n{program}\n\
         print((_bench_time.perf_counter() - _bench_t0) * 1000)"
    )
}

/// Call `run_python` on `session`; an error result is an error. Returns the run's stdout.
pub(crate) async fn run(peer: &Peer<RoleClient>, code: &str, session: &str) -> Result<String> {
    let arguments = json!({"code": code, "session": session, "timeout": 120});
    let result = client::run_python_ok(peer, arguments).await?;
    Ok(client::stdout_of(&result))
}

/// `sessions` sessions, each making `calls_each` `pass` calls, all at once.
pub(crate) async fn throughput(
    peer: &Peer<RoleClient>,
    sessions: usize,
    calls_each: usize,
) -> Result<Throughput> {
    let mut warming = tokio::task::JoinSet::new();
    for i in 0..sessions {
        let peer = peer.clone();
        warming.spawn(async move { run(&peer, "pass", &format!("load{i}")).await });
    }
    while let Some(done) = warming.join_next().await {
        done??;
    }
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..sessions {
        let peer = peer.clone();
        workers.spawn(async move {
            let mut samples = Vec::with_capacity(calls_each);
            for _ in 0..calls_each {
                let call_started = Instant::now();
                run(&peer, "pass", &format!("load{i}")).await?;
                samples.push(call_started.elapsed());
            }
            Ok::<_, anyhow::Error>(samples)
        });
    }
    let mut samples: Vec<Duration> = Vec::new();
    while let Some(done) = workers.join_next().await {
        samples.extend(done??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "call counts are small")]
    let calls_per_sec = samples.len() as f64 / elapsed;
    Ok(Throughput {
        sessions,
        calls: samples.len(),
        calls_per_sec,
        latency: Summary::of(samples),
    })
}

/// Each CPU-bound program in the sandbox and, for the ratio, in the host's `host_python`.
pub(crate) async fn cpu(peer: &Peer<RoleClient>, host_python: &Path) -> Result<Vec<CpuResult>> {
    let mut results = Vec::new();
    for (name, program) in PROGRAMS {
        let code = timed(program);
        let sandbox_ms: f64 = run(peer, &code, "cpu").await?.trim().parse()?;
        results.push(CpuResult {
            program: name,
            sandbox_ms,
            // Pure Python: the standard library alone, no site-packages.
            host_ms: host_ms(host_python, &["-I", "-S"], &code).await,
        });
    }
    Ok(results)
}

/// Run `code` in a fresh process of the host's `python` with `flags` (matplotlib, if it
/// loads, draws with Agg); the milliseconds it printed, or `None` when it could not run
/// there.
pub(crate) async fn host_ms(python: &Path, flags: &[&str], code: &str) -> Option<f64> {
    let output = tokio::process::Command::new(python)
        .args(flags)
        .args(["-c", code])
        .env("MPLBACKEND", "Agg")
        .output()
        .await
        .ok()
        .filter(|out| out.status.success())?;
    parse_ms(&String::from_utf8_lossy(&output.stdout)).ok()
}

/// The milliseconds a timed program printed: its last line.
pub(crate) fn parse_ms(stdout: &str) -> Result<f64> {
    let Some(last) = stdout.lines().last() else {
        bail!("the timed program printed nothing");
    };
    last.trim()
        .parse()
        .with_context(|| format!("the timed program printed {last:?}, not milliseconds"))
}

/// Round trips of calls printing 1 KB, 100 KB and 10 MB.
pub(crate) async fn output_scaling(
    peer: &Peer<RoleClient>,
    repeats: usize,
) -> Result<Vec<OutputCost>> {
    run(peer, "pass", "output").await?; // start the session outside the timing
    let mut costs = Vec::new();
    for bytes in [1_000, 100_000, 10_000_000] {
        let code = format!("import sys\nsys.stdout.write('x' * {bytes})");
        let mut samples = Vec::new();
        for _ in 0..repeats {
            let started = Instant::now();
            run(peer, &code, "output").await?;
            samples.push(started.elapsed());
        }
        costs.push(OutputCost {
            bytes,
            round_trip: Summary::of(samples),
        });
    }
    Ok(costs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_printed_line_is_the_figure() {
        assert!((parse_ms("warning\n12.5\n").unwrap() - 12.5).abs() < 1e-9);
        assert!(parse_ms("").is_err());
        assert!(parse_ms("oops").is_err());
    }
}
