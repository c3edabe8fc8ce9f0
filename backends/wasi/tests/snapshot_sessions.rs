//! Sessions of the full interpreter started from its snapshot against started the plain way:
//! what they can do, that they share nothing, and what they cost (printed, never asserted).
//!
//! Needs the full interpreter provisioned in `MCP_BRIDGE_CACHE_DIR` (`provision`) and a
//! release build (the module cache is keyed on the build's engine configuration); the first
//! run makes the snapshot (minutes). Run with
//! `cargo test --release -p sandbox-wasi --test snapshot_sessions -- --ignored --nocapture`.
#![allow(
    clippy::print_stderr,
    reason = "the test prints its measurements and why it skips"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use python_wasm::{Flavour, Provisioner, WasmSource};
use sandbox_core::{NoCalls, RunRequest, RunStatus, Sandbox, SandboxSpec, Session, SessionConfig};
use sandbox_wasi::WasiSandbox;

const TIMEOUT: Duration = Duration::from_mins(2);
/// Idle sessions held at once to measure their memory.
const IDLE_SESSIONS: usize = 6;

fn cache_dir() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("MCP_BRIDGE_CACHE_DIR") else {
        eprintln!("SKIP: MCP_BRIDGE_CACHE_DIR is not set");
        return None;
    };
    Some(PathBuf::from(dir))
}

async fn run(session: &Session, code: &str) -> (String, Duration) {
    let started = Instant::now();
    let outcome = session
        .run(&RunRequest::code(code, TIMEOUT), Arc::new(NoCalls))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(
        outcome.status,
        RunStatus::Completed,
        "{code}: {:?} {}",
        outcome.error,
        outcome.stderr.text
    );
    (outcome.stdout.text.trim().to_owned(), elapsed)
}

/// The proportional set size of this process, in KiB.
fn pss_kib() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").expect("smaps_rollup");
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a Pss line")
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Start `count` sessions one after another; the median start and the median first
/// `import pandas` (a run on a session that is ready, as one taken from the pool is).
async fn measure(sandbox: &WasiSandbox, spec: &SandboxSpec, label: &str, count: usize) {
    let config = SessionConfig::default();
    let (mut starts, mut imports) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let started = Instant::now();
        let session = Session::start(sandbox, spec, &config)
            .await
            .expect("session starts");
        starts.push(started.elapsed());
        let (_, import) = run(&session, "import pandas, numpy, matplotlib.pyplot").await;
        imports.push(import);
        session.shutdown().await;
    }
    eprintln!(
        "{label}: start to ready median {:?} (all {starts:?}); first `import pandas, numpy, \
         matplotlib.pyplot` median {:?} (all {imports:?})",
        median(starts.clone()),
        median(imports.clone())
    );
    let before = pss_kib();
    let mut idle = Vec::new();
    for _ in 0..IDLE_SESSIONS {
        let session = Session::start(sandbox, spec, &config)
            .await
            .expect("session starts");
        run(&session, "import pandas; x = 1").await;
        idle.push(session);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = pss_kib();
    let added = after.saturating_sub(before);
    eprintln!(
        "{label}: {IDLE_SESSIONS} idle sessions with pandas imported add {} MiB of PSS, {} \
         KiB each",
        added / 1024,
        added / IDLE_SESSIONS as u64
    );
    for session in idle {
        session.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the full interpreter provisioned and a release build; minutes on first run"]
async fn snapshot_sessions_start_warm_and_share_nothing() {
    let Some(cache) = cache_dir() else { return };
    let provisioner = Provisioner::new(cache, WasmSource::Pinned(Flavour::Full));
    // The layout sessions get with installs on (the default): a packages directory at /mnt.
    let packages = tempfile::tempdir().expect("tempdir");
    let spec = SandboxSpec::default()
        .with_read_only_mount(packages.path(), "/mnt")
        .expect("spec");

    let plain = WasiSandbox::new(provisioner.clone()).without_snapshots();
    plain
        .prepare(&spec)
        .await
        .expect("the full interpreter loads");
    measure(&plain, &spec, "plain", 3).await;
    drop(plain);

    let warm = WasiSandbox::new(provisioner);
    let started = Instant::now();
    warm.prepare(&spec)
        .await
        .expect("the snapshot is made or loaded");
    eprintln!("snapshot made or loaded in {:?}", started.elapsed());
    measure(&warm, &spec, "snapshot", 5).await;

    // Sessions share nothing: not globals, not random state.
    let config = SessionConfig::default();
    let first = Session::start(&warm, &spec, &config).await.expect("starts");
    let draws = "import random, numpy\nprint(random.random(), numpy.random.rand())";
    let (first_draws, _) = run(&first, &format!("secret = 42\n{draws}")).await;
    run(&first, "random.seed(1); numpy.random.seed(1)").await;
    let second = Session::start(&warm, &spec, &config).await.expect("starts");
    let (seen, _) = run(&second, "print('secret' in globals())").await;
    assert_eq!(seen, "False");
    let (second_draws, _) = run(&second, draws).await;
    assert_ne!(first_draws, second_draws, "sessions draw different numbers");
    let (seeded, _) = run(&first, "print(random.random(), numpy.random.rand())").await;
    let (again, _) = run(
        &second,
        "random.seed(1); numpy.random.seed(1)\nprint(random.random(), numpy.random.rand())",
    )
    .await;
    assert_eq!(
        seeded, again,
        "an explicit seed still makes runs repeatable"
    );
}

/// Sessions started on `spec`: whether the stack was in memory before any code ran (it came
/// from a snapshot) and what the guest sees under `dir`.
async fn started_warm_and_sees(sandbox: &WasiSandbox, spec: &SandboxSpec, dir: &str) -> String {
    let session = Session::start(sandbox, spec, &SessionConfig::default())
        .await
        .expect("session starts");
    let (out, _) = run(
        &session,
        &format!(
            "import sys, os\nwarm = 'pandas' in sys.modules\n\
             print(warm, sorted(os.listdir({dir:?})) if os.path.isdir({dir:?}) else None)"
        ),
    )
    .await;
    session.shutdown().await;
    out
}

/// A directory holding one empty file called `name`.
fn dir_with(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(name), b"").expect("write");
    dir
}

/// A snapshot serves only sessions with its layout (the guest paths of their preopens, and
/// their environment), and brings none of the directories it was made with: each session
/// sees its own grants. A session of a layout with no snapshot starts the plain way (its
/// snapshot is then made in the background, which this test leaves unfinished).
#[test]
#[ignore = "needs the full interpreter provisioned and a release build; minutes on first run"]
fn a_snapshot_serves_only_its_own_layout_and_grants_nothing() {
    let Some(cache) = cache_dir() else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let provisioner = Provisioner::new(cache, WasmSource::Pinned(Flavour::Full));
        let sandbox = WasiSandbox::new(provisioner);
        // The layout `provision` prepares with installs on: a packages directory at /mnt.
        let (first, second, data) = (dir_with("a.txt"), dir_with("b.txt"), dir_with("d.txt"));
        let with_mnt = |dir: &tempfile::TempDir| {
            SandboxSpec::default()
                .with_read_only_mount(dir.path(), "/mnt")
                .expect("spec")
        };
        let started = Instant::now();
        sandbox
            .prepare(&with_mnt(&first))
            .await
            .expect("the snapshot is made or loaded");
        eprintln!(
            "snapshot of the /mnt layout made or loaded in {:?}",
            started.elapsed()
        );

        assert_eq!(
            started_warm_and_sees(&sandbox, &with_mnt(&first), "/mnt").await,
            "True ['a.txt']"
        );
        assert_eq!(
            started_warm_and_sees(&sandbox, &with_mnt(&second), "/mnt").await,
            "True ['b.txt']",
            "a session of the layout sees its own directory, not the first's"
        );
        // One more preopen, or one fewer: other layouts, started the plain way. (A variable
        // set to this run's own value keeps them from matching a snapshot an earlier run
        // may have left in the cache.)
        let unique = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
            .to_string();
        let more = with_mnt(&second)
            .to_builder()
            .read_only_mount(data.path(), "/data/d")
            .env("LAYOUT_UNDER_TEST", &unique)
            .build()
            .expect("spec");
        assert_eq!(
            started_warm_and_sees(&sandbox, &more, "/data/d").await,
            "False ['d.txt']"
        );
        let fewer = SandboxSpec::builder()
            .env("LAYOUT_UNDER_TEST", &unique)
            .build()
            .expect("spec");
        assert_eq!(
            started_warm_and_sees(&sandbox, &fewer, "/mnt").await,
            "False None",
            "no /mnt granted, none seen"
        );
        let session = Session::start(&sandbox, &more, &SessionConfig::default())
            .await
            .expect("session starts");
        let (out, _) = run(
            &session,
            "import pandas; print(pandas.Series([1, 2]).sum())",
        )
        .await;
        assert_eq!(out, "3", "a plain session imports the stack itself");
        session.shutdown().await;
    });
    // The background snapshots of the other layouts are not waited for.
    runtime.shutdown_background();
}
