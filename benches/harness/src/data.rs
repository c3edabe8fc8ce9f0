//! The data workloads: what an analyst's first calls cost on a backend with the scientific
//! stack. A pandas group-by over a million rows, a 500×500 matrix product and one
//! matplotlib figure rendered to PNG, each timed inside the interpreter and, for the ratio,
//! on the host's own Python where it has the same libraries; and a new session's first
//! `import` of numpy, pandas and pyplot, from the pool and cold, with the host memory an
//! idle session holding them costs.
//!
//! Trusts the server to run what it is sent. Guarantees a backend without the stack gets
//! the reason instead of figures, and never stops the rest of the comparison.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use rmcp::RoleClient;
use rmcp::service::Peer;
use serde::Serialize;

use crate::client;
use crate::memory::{host_pss_kib, newest_child_pid, pss_kib};
use crate::stats::Summary;
use crate::workloads::{host_ms, parse_ms, run};

/// One data program: set-up (not timed), then the timed body, run `repeats` times; the
/// figure is milliseconds per repeat.
struct DataProgram {
    name: &'static str,
    setup: &'static str,
    body: &'static str,
    repeats: u32,
}

const PROGRAMS: [DataProgram; 3] = [
    DataProgram {
        name: "pandas group-by (1M rows, 1,000 keys)",
        setup: "import numpy as np, pandas as pd\n\
                rng = np.random.default_rng(0)\n\
                frame = pd.DataFrame({'key': rng.integers(0, 1000, 1_000_000), \
                'value': rng.random(1_000_000)})",
        body: "summary = frame.groupby('key')['value'].agg(['mean', 'sum', 'count'])\n\
               assert len(summary) == 1000",
        repeats: 3,
    },
    DataProgram {
        name: "numpy matmul (500×500 float64)",
        setup: "import numpy as np\n\
                rng = np.random.default_rng(0)\n\
                a, b = rng.random((500, 500)), rng.random((500, 500))",
        body: "c = a @ b",
        repeats: 10,
    },
    DataProgram {
        name: "matplotlib figure → PNG",
        setup: "import io\n\
                import matplotlib.pyplot as plt\n\
                def draw():\n    \
                    fig, ax = plt.subplots()\n    \
                    ax.plot(range(1000), [i * i for i in range(1000)], label='squares')\n    \
                    ax.set_title('bench'); ax.legend()\n    \
                    fig.savefig(io.BytesIO(), format='png', dpi=100)\n    \
                    plt.close(fig)\n\
                draw()",
        body: "draw()",
        repeats: 3,
    },
];

/// What a fresh session's first import loads: the stack an analysis starts with.
const FIRST_IMPORT: &str = "import numpy, pandas, matplotlib.pyplot";
/// Modules the data workloads need; a backend without them is reported, not measured.
const PROBE: &str = "import numpy, pandas, matplotlib";
/// The host's Python runs the programs isolated from the user's environment, with its
/// site-packages (where numpy, pandas and matplotlib are).
const HOST_FLAGS: &[&str] = &["-I"];
/// Sessions started (and kept idle) per way of starting one.
const FRESH_SESSIONS: usize = 4;

/// One data program's milliseconds in the sandbox and on the host.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DataResult {
    pub(crate) program: &'static str,
    pub(crate) sandbox_ms: f64,
    pub(crate) host_ms: Option<f64>,
}

/// A new session's first import of the stack.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FirstImport {
    /// Round trip of a call naming a new session (served from the pool) that imports it.
    pub(crate) pool_round_trip: Summary,
    /// The import itself, timed inside those sessions.
    pub(crate) pool_import: Summary,
    /// Round trip of a call naming a new session without the pool that imports it.
    pub(crate) cold_round_trip: Summary,
    /// Growth of the bridge process's PSS per idle session holding the imported stack, in
    /// MiB: all of a WASI session's memory, none of a container's.
    pub(crate) idle_bridge_mib: Option<f64>,
    /// Growth of the host's PSS (every process) per such session, in MiB; noisy on a
    /// machine doing other work.
    pub(crate) idle_host_mib: Option<f64>,
    /// The same import in a fresh process of the host's Python, in ms.
    pub(crate) host_ms: Option<f64>,
}

/// The data workloads of one backend, or why there are none.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct DataReport {
    /// Why the workloads did not run (the backend has no stack, or one failed).
    pub(crate) skipped: Option<String>,
    pub(crate) programs: Vec<DataResult>,
    pub(crate) first_import: Option<FirstImport>,
}

/// The Python wrapping `setup` and `body` so it prints the body's milliseconds per repeat.
fn timed(setup: &str, body: &str, repeats: u32) -> String {
    let body = body.replace('\n', "\n    ");
    format!(
        "{setup}\nimport time as _bench_time\n_bench_t0 = _bench_time.perf_counter()\n\
         for _bench_i in range({repeats}):\n    {body}\n\
         print((_bench_time.perf_counter() - _bench_t0) * 1000 / {repeats})"
    )
}

/// The data workloads on `backend` through `server`, on `peer` (a bridge already running
/// on it) and on two bridges of their own (pool and cold); `host_python` for the ratios.
pub(crate) async fn measure(
    server: &Path,
    backend: &str,
    peer: &Peer<RoleClient>,
    host_python: &Path,
) -> DataReport {
    if let Err(e) = run(peer, PROBE, "data").await {
        return DataReport {
            skipped: Some(format!("no data stack here ({e:#})")),
            ..DataReport::default()
        };
    }
    let mut report = DataReport::default();
    let outcome = async {
        for program in &PROGRAMS {
            let code = timed(program.setup, program.body, program.repeats);
            let sandbox_ms = parse_ms(&run(peer, &code, "data").await?)?;
            report.programs.push(DataResult {
                program: program.name,
                sandbox_ms,
                host_ms: host_ms(host_python, HOST_FLAGS, &code).await,
            });
        }
        report.first_import = Some(first_import(server, backend, host_python).await?);
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if let Err(e) = outcome {
        report.skipped = Some(format!("{e:#}"));
    }
    report
}

/// New sessions importing the stack: from the pool (the pool refills between calls), then
/// cold, with the host memory the cold ones hold once idle.
async fn first_import(server: &Path, backend: &str, host_python: &Path) -> Result<FirstImport> {
    let flags = ["--backend".to_string(), backend.to_string()];
    let code = timed("", FIRST_IMPORT, 1);

    let (client, _) = client::start(server, &flags, &[("MCP_BRIDGE_POOL_SIZE", "1")]).await?;
    run(client.peer(), "pass", "data-warm").await?;
    let mut pool_round_trip = Vec::new();
    let mut pool_import = Vec::new();
    for i in 0..FRESH_SESSIONS {
        // Time for the pool to refill with a fully started session.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let started = Instant::now();
        let stdout = run(client.peer(), &code, &format!("data-pool{i}")).await?;
        pool_round_trip.push(started.elapsed());
        pool_import.push(Duration::from_secs_f64(parse_ms(&stdout)? / 1000.0));
    }
    client.cancel().await.ok();

    let (client, _) = client::start(server, &flags, &[("MCP_BRIDGE_POOL_SIZE", "0")]).await?;
    let bridge = newest_child_pid();
    run(client.peer(), "pass", "data-warm").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bridge_before = bridge.and_then(pss_kib);
    let before = host_pss_kib();
    let mut cold_round_trip = Vec::new();
    for i in 0..FRESH_SESSIONS {
        let started = Instant::now();
        run(client.peer(), &code, &format!("data-cold{i}")).await?;
        cold_round_trip.push(started.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = host_pss_kib();
    let bridge_after = bridge.and_then(pss_kib);
    client.cancel().await.ok();
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let per_session = |before: Option<u64>, after: Option<u64>| {
        before.zip(after).map(|(before, after)| {
            after.saturating_sub(before) as f64 / FRESH_SESSIONS as f64 / 1024.0
        })
    };

    Ok(FirstImport {
        pool_round_trip: Summary::of(pool_round_trip),
        pool_import: Summary::of(pool_import),
        cold_round_trip: Summary::of(cold_round_trip),
        idle_bridge_mib: per_session(bridge_before, bridge_after),
        idle_host_mib: per_session(before, after),
        host_ms: host_ms(host_python, HOST_FLAGS, &code).await,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_program_runs_its_body_in_the_loop_and_prints_per_repeat() {
        let code = timed("x = 1", "y = x + 1\nassert y == 2", 4);
        assert!(code.starts_with("x = 1\n"), "{code}");
        assert!(
            code.contains("for _bench_i in range(4):\n    y = x + 1\n    assert y == 2\n"),
            "{code}"
        );
        assert!(code.ends_with("* 1000 / 4)"), "{code}");
    }
}
