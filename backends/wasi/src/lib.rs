//! `sandbox-wasi`: `CPython` compiled to WASI, run in wasmtime.
//!
//! The isolation comes from WebAssembly itself: the guest sees only what the WASI context
//! grants. Here that is its three standard streams (in-memory pipes to the host), a private
//! scratch directory per session preopened as `/tmp` and `/workspace` (removed when the
//! session ends), an empty environment, and no sockets. Memory is capped per store
//! ([`StoreLimits`]); time is enforced by epoch interruption (the guest yields to the executor
//! every tick, so a spinning guest never starves other sessions) and by the host dropping the
//! guest's task, which also stops a guest blocked in a host call such as `time.sleep`.
//!
//! Costs are split the wasmtime way: one [`Engine`] and one pre-linked [`InstancePre`] per
//! process (built once, from the cached precompiled module), one [`Store`] per session.
//!
//! An interpreter that runs code in `turn`s (the full one) is also snapshotted: once per
//! machine and per preopen layout, a module whose memory already holds numpy, pandas and
//! matplotlib imported is made and cached (`snapshot.rs` says what it freezes); sessions
//! then start from it, copy-on-write, and a layout without one starts the plain way while
//! it is made in the background (`snapshots.rs`).
#![forbid(unsafe_code)]

mod compiled;
mod entry;
mod error;
mod interpreter;
mod scratch;
mod snapshot;
mod snapshots;
mod tuning;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use python_wasm::{Provisioner, PythonWasm};
use sandbox_core::{
    GuestControl, GuestExit, Probe, ResourceUsage, Sandbox, SandboxError, SandboxSpec,
    StartFailure, StartedGuest,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use wasmtime::{
    Engine, InstancePre, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::cli::{AsyncStdinStream, AsyncStdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::entry::Entry;
use crate::error::LoadError;
use crate::interpreter::{Interpreter, Loaded};
use crate::scratch::Scratch;
use crate::snapshot::{Grant, Layout};
use crate::snapshots::Snapshots;
pub use crate::tuning::{Bounds, EngineTuning, OptLevel, TuningError};

const BACKEND: &str = "wasi";
/// Size of the in-memory pipes between host and guest.
const PIPE_BYTES: usize = 256 * 1024;
/// How often a session's scratch space is measured against its quota.
const SCRATCH_POLL: Duration = Duration::from_millis(250);
/// Most files and directories a session's scratch space may hold.
const SCRATCH_MAX_ENTRIES: u64 = 10_000;

/// The WASI backend. Cheap to construct; the interpreter is provisioned and compiled on first
/// use (or by [`Sandbox::prepare`]).
///
/// With a stand-in (the slim interpreter, when the full one is configured), a session asked
/// for before the configured interpreter is ready on this machine runs on the stand-in,
/// with a notice saying so, while the configured one is downloaded and compiled in the
/// background: a first call never waits minutes for a compile.
#[derive(Debug)]
pub struct WasiSandbox {
    configured: Arc<Interpreter>,
    stand_in: Option<Arc<Interpreter>>,
    /// Set while the configured interpreter is being prepared in the background.
    preparing: Arc<AtomicBool>,
    /// Snapshots of the configured interpreter, by layout; `None` when turned off.
    snapshots: Option<Arc<Snapshots>>,
}

/// Per-store state: the WASI context and the memory limiter.
struct GuestState {
    wasi: WasiP1Ctx,
    limits: MemoryLimiter,
}

/// [`StoreLimits`] plus a record of the guest's current linear memory size.
struct MemoryLimiter {
    limits: StoreLimits,
    memory: Arc<AtomicU64>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory.store(desired as u64, Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}

impl WasiSandbox {
    /// A backend that provisions its interpreter with `provisioner`.
    pub fn new(provisioner: Provisioner) -> Self {
        scratch::remove_orphans(&std::env::temp_dir());
        Self {
            configured: Arc::new(Interpreter::new(provisioner, EngineTuning::default())),
            stand_in: None,
            preparing: Arc::new(AtomicBool::new(false)),
            snapshots: Some(Arc::new(Snapshots::default())),
        }
    }

    /// Serve sessions from the interpreter `provisioner` fetches (a lighter one) while the
    /// configured one is not yet ready on this machine.
    #[must_use]
    pub fn with_stand_in(mut self, provisioner: Provisioner) -> Self {
        let tuning = self.configured.tuning();
        self.stand_in = Some(Arc::new(Interpreter::new(provisioner, tuning)));
        self
    }

    /// Run the interpreters with the engine settings `tuning` instead of the default ones.
    #[must_use]
    pub fn with_engine(mut self, tuning: EngineTuning) -> Self {
        self.configured = Arc::new(self.configured.with_tuning(tuning));
        self.stand_in = self
            .stand_in
            .as_deref()
            .map(|stand_in| Arc::new(stand_in.with_tuning(tuning)));
        self
    }

    /// Start every session the plain way, never from a snapshot: each session then pays
    /// its own imports, and gets its own hash seed.
    #[must_use]
    pub fn without_snapshots(mut self) -> Self {
        self.snapshots = None;
        self
    }

    /// The configured interpreter, once prepared.
    pub fn python_wasm(&self) -> Option<&PythonWasm> {
        self.configured.get().map(|loaded| &loaded.wasm)
    }

    /// The stand-in, when there is one and the configured interpreter is not ready yet.
    fn stand_in_needed(&self) -> Option<&Arc<Interpreter>> {
        self.stand_in
            .as_ref()
            .filter(|_| !self.configured.is_ready())
    }

    /// The interpreter a new session runs on, and what its replies must say about it: the
    /// configured one when it is ready (or there is no stand-in), else the stand-in while
    /// the configured one is prepared in the background.
    async fn interpreter(&self) -> Result<(Arc<Loaded>, Option<String>), SandboxError> {
        let Some(stand_in) = self.stand_in_needed() else {
            let loaded = self.configured.load().await.map_err(|e| unavailable(&e))?;
            return Ok((loaded, None));
        };
        self.prepare_in_background(stand_in.clone());
        let loaded = stand_in.load().await.map_err(|e| unavailable(&e))?;
        Ok((loaded, Some(stand_in_notice(&self.configured))))
    }

    /// How a session of the configured interpreter `loaded` with `spec` starts: from its
    /// layout's snapshot when there is one now, else the plain way (and the snapshot is
    /// made in the background).
    fn entry_for(
        &self,
        loaded: &Arc<Loaded>,
        spec: &SandboxSpec,
    ) -> (InstancePre<GuestState>, Entry) {
        let Some(snapshots) = self.snapshots.as_ref().filter(|_| loaded.takes_turns()) else {
            return (loaded.pre.clone(), loaded.entry);
        };
        let (layout, read_only) = layout_of(&loaded.wasm, spec);
        let source = snapshots::Source {
            loaded: loaded.clone(),
            provisioner: self.configured.provisioner().clone(),
        };
        match snapshots.ready(&source, &layout, &read_only) {
            Some(pre) => (pre, Entry::Snapshot),
            None => (loaded.pre.clone(), loaded.entry),
        }
    }

    /// Load the configured interpreter in a background task, after the stand-in so the
    /// stand-in's own compile does not compete with it. One task at a time; after a failure
    /// the next session start tries again.
    fn prepare_in_background(&self, stand_in: Arc<Interpreter>) {
        if self.preparing.swap(true, Ordering::AcqRel) {
            return;
        }
        let configured = self.configured.clone();
        let preparing = self.preparing.clone();
        tokio::spawn(async move {
            let _ = stand_in.load().await;
            let started = std::time::Instant::now();
            match configured.load().await {
                Ok(loaded) => info!(
                    elapsed = ?started.elapsed(),
                    interpreter = %loaded.wasm.description,
                    "the configured interpreter is ready; new sessions run on it"
                ),
                Err(e) => {
                    warn!(
                        error = %sandbox_core::error_chain(&e),
                        "preparing the configured interpreter failed; sessions keep running \
                         on the stand-in, and the next session start tries again"
                    );
                    preparing.store(false, Ordering::Release);
                }
            }
        });
    }
}

/// What a session on the stand-in tells the agent.
fn stand_in_notice(configured: &Interpreter) -> String {
    let pin = configured.provisioner().pin();
    format!(
        "This session runs the slim interpreter (CPython 3.12, standard library only: no \
         numpy, pandas or matplotlib) while the full one (CPython {} with the scientific \
         stack) is prepared on this machine, once: a download of the {} wheel and a compile \
         of a few minutes. Sessions started after that run on it; pass reset=true then to \
         restart this one on it.",
        pin.python_version, pin.package
    )
}

fn unavailable(error: &LoadError) -> SandboxError {
    SandboxError::Unavailable {
        backend: BACKEND,
        reason: sandbox_core::error_chain(error),
    }
}

#[async_trait]
impl Sandbox for WasiSandbox {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn is_prepared(&self) -> bool {
        self.configured.is_ready()
    }

    async fn probe(&self) -> Probe {
        // A probe starts nothing in the background (`doctor` exits right after it).
        let stand_in = self.stand_in_needed();
        match stand_in.unwrap_or(&self.configured).load().await {
            Ok(loaded) => Probe::Available {
                detail: format!(
                    "{} at {} (sha256 {}){}",
                    loaded.wasm.description,
                    loaded.wasm.path.display(),
                    &loaded.wasm.sha256[..16],
                    if stand_in.is_some() {
                        "; a stand-in: the configured interpreter is prepared on first use, \
                         or now by `provision`"
                    } else {
                        ""
                    }
                ),
            },
            Err(e) => Probe::Unavailable {
                reason: sandbox_core::error_chain(&e),
            },
        }
    }

    /// Provision the configured interpreter and load its module now, so no session has to
    /// wait for it or run on the stand-in. Safe to call more than once.
    /// With an interpreter that takes turns, the snapshot of `spec`'s layout (its mounts'
    /// guest paths and its environment) is made too.
    async fn prepare(&self, spec: &SandboxSpec) -> Result<(), SandboxError> {
        let loaded = self.configured.load().await.map_err(|e| unavailable(&e))?;
        if let Some(snapshots) = self.snapshots.as_ref().filter(|_| loaded.takes_turns()) {
            let (layout, read_only) = layout_of(&loaded.wasm, spec);
            let source = snapshots::Source {
                loaded: loaded.clone(),
                provisioner: self.configured.provisioner().clone(),
            };
            snapshots
                .ensure(&source, &layout, &read_only)
                .await
                .map_err(|e| SandboxError::Unavailable {
                    backend: BACKEND,
                    reason: sandbox_core::error_chain(&e),
                })?;
        }
        Ok(())
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<StartedGuest, SandboxError> {
        let (loaded, notice) = self.interpreter().await?;
        let (pre, entry) = if notice.is_none() {
            self.entry_for(&loaded, spec)
        } else {
            (loaded.pre.clone(), loaded.entry)
        };
        let mut guest = start_guest(&loaded, pre, entry, spec)?;
        guest.notice = notice;
        Ok(guest)
    }
}

fn start_error(step: impl Into<String>, cause: impl Into<sandbox_core::BoxError>) -> SandboxError {
    SandboxError::start(BACKEND, StartFailure::because(step, cause))
}

/// A store for one guest: memory capped at `memory_bytes`, yielding to the executor every
/// epoch tick, and trapping at the next tick once `killed` is set.
fn new_store(
    engine: &Engine,
    wasi: WasiP1Ctx,
    memory_bytes: u64,
    killed: &Arc<AtomicBool>,
) -> (Store<GuestState>, Arc<AtomicU64>) {
    let memory = Arc::new(AtomicU64::new(0));
    let limits = StoreLimitsBuilder::new()
        .memory_size(usize::try_from(memory_bytes).unwrap_or(usize::MAX))
        .instances(1)
        .trap_on_grow_failure(false)
        .build();
    let state = GuestState {
        wasi,
        limits: MemoryLimiter {
            limits,
            memory: memory.clone(),
        },
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    let killed = killed.clone();
    store.epoch_deadline_callback(move |_| {
        if killed.load(Ordering::Relaxed) {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
    (store, memory)
}

/// The layout of a session of `wasm` with `spec` (the guest paths of its preopens, in the
/// order [`start_guest`] grants them, and its environment), and its read-only directories.
fn layout_of(wasm: &PythonWasm, spec: &SandboxSpec) -> (Layout, Vec<Grant>) {
    let read_only: Vec<Grant> = wasm
        .read_only_dirs
        .iter()
        .map(|dir| Grant {
            host: Some(dir.host.clone()),
            guest: dir.guest.clone(),
        })
        .chain(spec.read_only_mounts().iter().map(|mount| Grant {
            host: None,
            guest: mount.guest.clone(),
        }))
        .collect();
    let guests = scratch::GUEST_PATHS
        .into_iter()
        .chain(read_only.iter().map(|grant| grant.guest.as_str()));
    (Layout::new(guests, spec.env()), read_only)
}

fn start_guest(
    loaded: &Arc<Loaded>,
    pre: InstancePre<GuestState>,
    entry: Entry,
    spec: &SandboxSpec,
) -> Result<StartedGuest, SandboxError> {
    let scratch = Scratch::create().map_err(|e| start_error("making the scratch directory", e))?;
    let (host_stdin, guest_stdin) = tokio::io::duplex(PIPE_BYTES);
    let (guest_stdout, host_stdout) = tokio::io::duplex(PIPE_BYTES);
    let (guest_stderr, host_stderr) = tokio::io::duplex(PIPE_BYTES);

    let args = entry.session_args();
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdin(AsyncStdinStream::new(guest_stdin))
        .stdout(AsyncStdoutStream::new(PIPE_BYTES, guest_stdout))
        .stderr(AsyncStdoutStream::new(PIPE_BYTES, guest_stderr))
        .args(&args)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        // File operations run on the guest's own thread, not through tokio's blocking pool:
        // a `stat` costs ~2 µs instead of ~90 µs of thread hops, and the guest's thread is
        // busy with the guest anyway (it gives way at epoch ticks, not at I/O).
        .allow_blocking_current_thread(true);
    for (key, value) in spec.env() {
        wasi.env(key, value);
    }
    for (dir, guest) in scratch.preopens() {
        wasi.preopened_dir(dir, guest, FsPerms::ReadWrite)
            .map_err(|e| start_error(format!("preopening {guest}"), e))?;
    }
    for dir in &loaded.wasm.read_only_dirs {
        wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
            .map_err(|e| start_error(format!("granting {}", dir.guest), e))?;
    }
    for mount in spec.read_only_mounts() {
        wasi.preopened_dir(&mount.host, &mount.guest, FsPerms::ReadOnly)
            .map_err(|e| start_error(format!("mounting {}", mount.guest), e))?;
    }
    let killed = Arc::new(AtomicBool::new(false));
    let (store, memory) = new_store(
        &loaded.engine,
        wasi.build_p1(),
        spec.memory_bytes(),
        &killed,
    );

    let (exit_tx, exit_rx) = watch::channel(None);
    let exit_tx = Arc::new(exit_tx);
    let scratch_root = scratch.root().to_path_buf();
    let guest_exit = exit_tx.clone();
    let task = tokio::spawn(async move {
        let exit = run_guest(&pre, entry, store).await;
        debug!(%exit, "WASI guest ended");
        // The scratch directory goes only after the store (and its open files) are gone.
        drop(scratch);
        record_exit(&guest_exit, exit);
    });
    let quota = ScratchQuota {
        root: scratch_root,
        max_bytes: spec.scratch_bytes().saturating_mul(2),
        killed: killed.clone(),
        exit: exit_tx,
        guest: task.abort_handle(),
    };
    tokio::spawn(quota.enforce());
    let control = WasiControl {
        abort: task.abort_handle(),
        task: std::sync::Mutex::new(Some(task)),
        killed,
        exit: exit_rx,
        memory,
    };
    Ok(StartedGuest {
        stdin: Box::pin(host_stdin),
        stdout: Box::pin(host_stdout),
        stderr: Box::pin(host_stderr),
        control: Box::new(control),
        notice: None,
        compiled_runtime: loaded.compiled_runtime.clone(),
    })
}

/// Keep the first reason a guest ended for.
fn record_exit(exit: &watch::Sender<Option<GuestExit>>, reason: GuestExit) {
    exit.send_if_modified(|slot| {
        if slot.is_none() {
            *slot = Some(reason);
            true
        } else {
            false
        }
    });
}

/// Stops a guest whose scratch space (`/tmp` plus `/workspace`) grows past its quota. WASI
/// has no disk quotas, so this polls: a guest can overshoot by what it writes in one poll
/// interval before it is stopped.
struct ScratchQuota {
    root: std::path::PathBuf,
    max_bytes: u64,
    killed: Arc<AtomicBool>,
    exit: Arc<watch::Sender<Option<GuestExit>>>,
    guest: tokio::task::AbortHandle,
}

impl ScratchQuota {
    async fn enforce(self) {
        let mut tick = tokio::time::interval(SCRATCH_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.exit.borrow().is_some() || self.guest.is_finished() {
                return;
            }
            let root = self.root.clone();
            let measured =
                tokio::task::spawn_blocking(move || scratch::usage(&root, SCRATCH_MAX_ENTRIES))
                    .await;
            let Ok(Ok(used)) = measured else { return };
            let over = if used.bytes > self.max_bytes {
                Some(format!(
                    "it wrote more than {} MiB to /tmp and /workspace",
                    self.max_bytes / (1024 * 1024)
                ))
            } else if used.entries > SCRATCH_MAX_ENTRIES {
                Some(format!(
                    "it created more than {SCRATCH_MAX_ENTRIES} files in /tmp and /workspace"
                ))
            } else {
                None
            };
            if let Some(reason) = over {
                tracing::warn!(%reason, "stopping a WASI guest over its scratch quota");
                self.killed.store(true, Ordering::Relaxed);
                record_exit(&self.exit, GuestExit::LimitExceeded(reason));
                self.guest.abort();
                return;
            }
        }
    }
}

async fn run_guest(
    pre: &InstancePre<GuestState>,
    entry: Entry,
    mut store: Store<GuestState>,
) -> GuestExit {
    let instance = match pre.instantiate_async(&mut store).await {
        Ok(instance) => instance,
        Err(e) => return GuestExit::Crashed(format!("instantiation failed: {e}")),
    };
    match entry.run(&instance, &mut store).await {
        Ok(status) => GuestExit::Exited(status),
        Err(e) => {
            if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
                match trap {
                    wasmtime::Trap::Interrupt => GuestExit::Killed,
                    other => GuestExit::Crashed(format!("trap: {other}")),
                }
            } else {
                // Never pass a host error's debug form (it may carry a backtrace) to users.
                GuestExit::Crashed(format!("{e}"))
            }
        }
    }
}

/// Controls of one WASI guest. Dropping it kills the guest.
#[derive(Debug)]
struct WasiControl {
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    abort: tokio::task::AbortHandle,
    killed: Arc<AtomicBool>,
    exit: watch::Receiver<Option<GuestExit>>,
    memory: Arc<AtomicU64>,
}

#[async_trait]
impl GuestControl for WasiControl {
    async fn interrupt(&self) -> Result<(), SandboxError> {
        // CPython on WASI has no signals and no thread to raise KeyboardInterrupt from; the
        // only way to stop running code is to stop the instance.
        Err(SandboxError::Unsupported {
            backend: BACKEND,
            operation: "soft interrupt",
        })
    }

    fn can_interrupt(&self) -> bool {
        false
    }

    async fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        self.abort.abort();
        let task = self.task.lock().expect("task lock").take();
        if let Some(task) = task {
            // The task ends at its next await point, at the latest at the next epoch tick;
            // when it has, the store and the scratch directory are gone.
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    async fn wait(&self) -> GuestExit {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(exit) => exit.clone().unwrap_or(GuestExit::Killed),
            Err(_) => GuestExit::Killed,
        }
    }

    fn usage(&self) -> ResourceUsage {
        ResourceUsage {
            memory_bytes: Some(self.memory.load(Ordering::Relaxed)),
        }
    }
}

impl Drop for WasiControl {
    fn drop(&mut self) {
        self.killed.store(true, Ordering::Relaxed);
        self.abort.abort();
    }
}
