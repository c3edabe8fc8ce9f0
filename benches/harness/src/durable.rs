//! Durable sessions on one backend: how long saving and resuming take and how large a
//! checkpoint is, for an empty session, one holding 1,000 small objects and one holding a
//! 100 MB numpy array; and what 1,000 saved sessions on disk cost the server's start-up.
//!
//! Saving is timed inside the sandbox around `mcp.runtime.checkpoint()` (serialising, the
//! transfer to the host and the atomic write). Resuming is timed as the client sees it: the
//! first call to a fork of the session (a pooled session, then the restore, then the code)
//! against the first call to a new session name (a pooled session, then the code).
//!
//! Every server gets a state directory of its own, so nothing is resumed from another run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{self, Client};
use crate::stats::Summary;

/// Saves timed per session kind (the 100 MB array: fewer).
const SAVES: usize = 10;
/// Resumes timed per session kind.
const RESUMES: usize = 6;
/// Saved sessions on disk for the start-up figure.
const ON_DISK: usize = 1_000;

/// One kind of session: its name and the code that builds it.
const KINDS: [(&str, &str); 3] = [
    ("empty", "pass"),
    (
        "1,000 small objects",
        "class Item:\n    def __init__(self, i):\n        self.i, self.name = i, f'item-{i}'\n\
         items = [Item(i) for i in range(1000)]",
    ),
    (
        "100 MB numpy array",
        "import numpy as np\narray = np.random.default_rng(0).random(100 * 2**20 // 8)",
    ),
];

/// The durable-session figures of one backend.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct DurableReport {
    /// Per kind of session: save and resume times, checkpoint size.
    pub(crate) kinds: Vec<DurableKind>,
    /// The first call to a new session name, for the resume comparison.
    pub(crate) fresh_first_call: Option<Summary>,
    /// Spawn to `initialize` with an empty state directory.
    pub(crate) start_empty: Option<Summary>,
    /// Spawn to `initialize` with 1,000 saved sessions in the state directory.
    pub(crate) start_with_saved: Option<Summary>,
    /// Why the figures are missing, when they are.
    pub(crate) reason: Option<String>,
}

/// The figures of one kind of session.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DurableKind {
    /// What the session holds.
    pub(crate) kind: String,
    /// Checkpoint payload bytes.
    pub(crate) bytes: u64,
    /// `mcp.runtime.checkpoint()`, timed in the sandbox.
    pub(crate) save: Summary,
    /// The first call to a fork of the session, as the client sees it.
    pub(crate) resume_first_call: Summary,
}

/// Measure `backend`; a failure is reported in the result, never aborts the bench.
pub(crate) async fn measure(server: &Path, backend: &str, smoke: bool) -> DurableReport {
    match try_measure(server, backend, smoke).await {
        Ok(report) => report,
        Err(e) => DurableReport {
            reason: Some(format!("{e:#}")),
            ..DurableReport::default()
        },
    }
}

async fn try_measure(server: &Path, backend: &str, smoke: bool) -> Result<DurableReport> {
    let state = tempfile::Builder::new()
        .prefix("bench-durable-")
        .tempdir()
        .context("a state directory")?;
    let mut report = DurableReport::default();
    let client = connect(server, backend, state.path()).await?.0;
    let kinds = if smoke { &KINDS[..2] } else { &KINDS[..] };
    let mut fresh = Vec::new();
    for (kind, code) in kinds {
        let session = kind.replace([' ', ','], "-");
        run(&client, &session, code).await?;
        let rounds = if kind.contains("numpy") { 3 } else { SAVES };
        let mut save_times = Vec::new();
        let mut bytes = 0;
        for _ in 0..rounds {
            let timed = run(&client, &session, SAVE_TIMED).await?;
            save_times.push(Duration::from_secs_f64(
                timed["ms"].as_f64().unwrap_or(0.0) / 1e3,
            ));
            bytes = timed["bytes"].as_u64().unwrap_or(0);
        }
        let resumes = if kind.contains("numpy") { 3 } else { RESUMES };
        let mut resume_times = Vec::new();
        for i in 0..resumes {
            let copy = format!("{session}-copy-{i}");
            run(
                &client,
                &session,
                &format!("import mcp.runtime as r\nr.fork_session({copy:?})"),
            )
            .await?;
            resume_times.push(first_call(&client, &copy).await?);
            fresh.push(first_call(&client, &format!("{session}-fresh-{i}")).await?);
        }
        report.kinds.push(DurableKind {
            kind: (*kind).to_string(),
            bytes,
            save: Summary::of(save_times),
            resume_first_call: Summary::of(resume_times),
        });
    }
    report.fresh_first_call = Some(Summary::of(fresh));
    client.cancel().await.ok();

    // Start-up: an empty state directory, then one holding 1,000 saved sessions.
    let empty = tempfile::tempdir()?;
    report.start_empty = Some(starts(server, backend, empty.path()).await?);
    let crowded = tempfile::tempdir()?;
    fill_with_saved_sessions(state.path(), crowded.path())?;
    report.start_with_saved = Some(starts(server, backend, crowded.path()).await?);
    Ok(report)
}

/// Code that saves its session and prints `{"ms": ..., "bytes": ...}`.
const SAVE_TIMED: &str = "import json as _j, time as _t, mcp.runtime as _r\n\
_s = _t.perf_counter()\n_saved = _r.checkpoint()\n\
print(_j.dumps({'ms': (_t.perf_counter() - _s) * 1000, 'bytes': _saved['bytes']}))\n\
del _j, _t, _r, _s, _saved";

/// The time of the first call (`pass`) to `session`, after the pool had time to refill.
async fn first_call(client: &Client, session: &str) -> Result<Duration> {
    tokio::time::sleep(Duration::from_millis(400)).await;
    let started = Instant::now();
    let result = client::run_python(client, json!({"session": session, "code": "pass"})).await?;
    let elapsed = started.elapsed();
    if result.is_error == Some(true) {
        bail!(
            "the first call to {session} failed: {}",
            client::text_of(&result)
        );
    }
    Ok(elapsed)
}

/// Run `code` in `session`; its stdout parsed as JSON when it is JSON.
async fn run(client: &Client, session: &str, code: &str) -> Result<Value> {
    let result = client::run_python_ok(
        client,
        json!({"session": session, "code": code, "timeout": 120}),
    )
    .await?;
    let stdout = client::stdout_of(&result);
    Ok(serde_json::from_str(&stdout).unwrap_or(Value::Null))
}

/// Spawn-to-`initialize` times of five servers on `state`.
async fn starts(server: &Path, backend: &str, state: &Path) -> Result<Summary> {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let (client, elapsed) = connect(server, backend, state).await?;
        samples.push(elapsed);
        client.cancel().await.ok();
    }
    Ok(Summary::of(samples))
}

/// Copy one checkpoint of `from` into `to` under 1,000 session names.
fn fill_with_saved_sessions(from: &Path, to: &Path) -> Result<()> {
    let sample = find_checkpoint(&from.join("checkpoints")).context("no checkpoint was saved")?;
    let scope = to.join("checkpoints").join(
        sample
            .parent()
            .and_then(Path::file_name)
            .context("a scope folder")?,
    );
    std::fs::create_dir_all(&scope)?;
    for i in 0..ON_DISK {
        std::fs::copy(&sample, scope.join(format!("saved-{i}.ckpt")))?;
    }
    Ok(())
}

/// The smallest checkpoint file under `dir`.
fn find_checkpoint(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for scope in std::fs::read_dir(dir).ok()?.flatten() {
        for file in std::fs::read_dir(scope.path()).ok()?.flatten() {
            let size = file.metadata().ok()?.len();
            found.push((size, file.path()));
        }
    }
    found.into_iter().min().map(|(_, path)| path)
}

async fn connect(server: &Path, backend: &str, state: &Path) -> Result<(Client, Duration)> {
    let state = state.display().to_string();
    client::start(
        server,
        &["--backend".to_string(), backend.to_string()],
        &[("MCP_BRIDGE_STATE_DIR", state.as_str())],
    )
    .await
}
