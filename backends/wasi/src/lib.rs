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
#![forbid(unsafe_code)]

mod compiled;
mod error;
mod scratch;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use python_wasm::{Provisioner, PythonWasm};
use sandbox_core::guest::interpreter_args;
use sandbox_core::{
    GuestControl, GuestExit, Probe, ResourceUsage, Sandbox, SandboxError, SandboxSpec,
    StartFailure, StartedGuest,
};
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info};
use wasmtime::{
    Config, Engine, InstancePre, Linker, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder,
    UpdateDeadline,
};
use wasmtime_wasi::cli::{AsyncStdinStream, AsyncStdoutStream};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::error::LoadError;
use crate::scratch::Scratch;

const BACKEND: &str = "wasi";
/// How often the epoch advances; also the granularity of the guest's yields.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Size of the in-memory pipes between host and guest.
const PIPE_BYTES: usize = 256 * 1024;
/// How often a session's scratch space is measured against its quota.
const SCRATCH_POLL: Duration = Duration::from_millis(250);
/// Most files and directories a session's scratch space may hold.
const SCRATCH_MAX_ENTRIES: u64 = 10_000;

/// The WASI backend. Cheap to construct; the interpreter is provisioned and compiled on first
/// use (or by [`WasiSandbox::prepare`]).
#[derive(Debug)]
pub struct WasiSandbox {
    provisioner: Provisioner,
    /// Set once loading succeeds; a failure is reported and retried by the next caller, so
    /// fixing the cause (network, pip) needs no restart.
    loaded: OnceCell<Arc<Loaded>>,
}

/// The process-wide, costly half: engine, pre-linked module, interpreter facts.
struct Loaded {
    engine: Engine,
    pre: InstancePre<GuestState>,
    wasm: PythonWasm,
    compiled_runtime: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("wasm", &self.wasm)
            .finish_non_exhaustive()
    }
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
            provisioner,
            loaded: OnceCell::new(),
        }
    }

    /// Provision the interpreter and load its module now, so the first session does not pay
    /// for it. Safe to call more than once.
    pub async fn prepare(&self) -> Result<(), SandboxError> {
        self.loaded().await.map(|_| ())
    }

    /// The interpreter in use, once prepared.
    pub fn python_wasm(&self) -> Option<&PythonWasm> {
        self.loaded.get().map(|loaded| &loaded.wasm)
    }

    async fn loaded(&self) -> Result<Arc<Loaded>, SandboxError> {
        let provisioner = self.provisioner.clone();
        self.loaded
            .get_or_try_init(|| async move {
                let cache_dir = provisioner.cache_dir().to_path_buf();
                let mut loaded = tokio::task::spawn_blocking(move || load(&provisioner))
                    .await
                    .unwrap_or_else(|e| Err(LoadError::Panicked(e)))?;
                loaded.compiled_runtime = compiled::runtime(&loaded, &cache_dir).await;
                Ok(Arc::new(loaded))
            })
            .await
            .cloned()
            .map_err(|error: LoadError| SandboxError::Unavailable {
                backend: BACKEND,
                reason: sandbox_core::error_chain(&error),
            })
    }
}

fn load(provisioner: &Provisioner) -> Result<Loaded, LoadError> {
    let started = std::time::Instant::now();
    let wasm = provisioner.provision()?;
    let engine = Engine::new(&engine_config()).map_err(|e| LoadError::Engine(e.into()))?;
    let module = provisioner.load_module(&engine, &wasm)?;
    let mut linker: Linker<GuestState> = Linker::new(&engine);
    p1::add_to_linker_async(&mut linker, |state: &mut GuestState| &mut state.wasi)
        .map_err(|e| LoadError::LinkWasi(e.into()))?;
    let pre = linker
        .instantiate_pre(&module)
        .map_err(|e| LoadError::Instantiate(e.into()))?;
    spawn_epoch_ticker(&engine);
    info!(elapsed = ?started.elapsed(), interpreter = %wasm.description, "WASI interpreter loaded");
    Ok(Loaded {
        engine,
        pre,
        wasm,
        compiled_runtime: None,
    })
}

/// The engine configuration. It is part of the precompiled-module cache key, so any change
/// here invalidates cached modules (which is what we want).
fn engine_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config
}

/// Advance the engine's epoch every tick until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("wasi-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

#[async_trait]
impl Sandbox for WasiSandbox {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn probe(&self) -> Probe {
        match self.loaded().await {
            Ok(loaded) => Probe::Available {
                detail: format!(
                    "{} at {} (sha256 {})",
                    loaded.wasm.description,
                    loaded.wasm.path.display(),
                    &loaded.wasm.sha256[..16]
                ),
            },
            Err(SandboxError::Unavailable { reason, .. }) => Probe::Unavailable { reason },
            Err(other) => Probe::Unavailable {
                reason: other.to_string(),
            },
        }
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<StartedGuest, SandboxError> {
        let loaded = self.loaded().await?;
        start_guest(&loaded, spec)
    }

    fn compiled_runtime(&self) -> Option<Arc<[u8]>> {
        self.loaded
            .get()
            .and_then(|loaded| loaded.compiled_runtime.clone())
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

fn start_guest(loaded: &Arc<Loaded>, spec: &SandboxSpec) -> Result<StartedGuest, SandboxError> {
    let scratch = Scratch::create().map_err(|e| start_error("making the scratch directory", e))?;
    let (host_stdin, guest_stdin) = tokio::io::duplex(PIPE_BYTES);
    let (guest_stdout, host_stdout) = tokio::io::duplex(PIPE_BYTES);
    let (guest_stderr, host_stderr) = tokio::io::duplex(PIPE_BYTES);

    let mut args = vec!["python"];
    args.extend(interpreter_args());
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdin(AsyncStdinStream::new(guest_stdin))
        .stdout(AsyncStdoutStream::new(PIPE_BYTES, guest_stdout))
        .stderr(AsyncStdoutStream::new(PIPE_BYTES, guest_stderr))
        .args(&args)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    for (key, value) in spec.env() {
        wasi.env(key, value);
    }
    for (dir, guest) in scratch.preopens() {
        wasi.preopened_dir(dir, guest, FsPerms::ReadWrite)
            .map_err(|e| start_error(format!("preopening {guest}"), e))?;
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
    let pre = loaded.pre.clone();
    let guest_exit = exit_tx.clone();
    let task = tokio::spawn(async move {
        let exit = run_guest(&pre, store).await;
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

async fn run_guest(pre: &InstancePre<GuestState>, mut store: Store<GuestState>) -> GuestExit {
    let instance = match pre.instantiate_async(&mut store).await {
        Ok(instance) => instance,
        Err(e) => return GuestExit::Crashed(format!("instantiation failed: {e}")),
    };
    let start = match instance.get_typed_func::<(), ()>(&mut store, "_start") {
        Ok(start) => start,
        Err(e) => return GuestExit::Crashed(format!("the module has no `_start`: {e}")),
    };
    match start.call_async(&mut store, ()).await {
        Ok(()) => GuestExit::Exited(0),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                GuestExit::Exited(exit.0)
            } else if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
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
