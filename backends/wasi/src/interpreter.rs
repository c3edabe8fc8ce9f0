//! One interpreter's process-wide, costly half: provisioned, compiled, pre-linked, once.
//!
//! An [`Interpreter`] turns a [`Provisioner`] into a [`Loaded`] interpreter on first use
//! (download, verify, compile or load the cached module, link) and keeps it. A failure is
//! returned to the caller and retried by the next one, so fixing its cause (the network,
//! pip) needs no restart.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use python_wasm::{Provisioner, PythonWasm};
use tokio::sync::OnceCell;
use tracing::info;
use wasmtime::{Config, Engine, InstancePre, Linker};
use wasmtime_wasi::p1;

use crate::GuestState;
use crate::compiled;
use crate::entry::{self, Entry};
use crate::error::LoadError;
use crate::tuning::EngineTuning;

/// The deepest the guest's wasm stack may grow. CPython's own recursion limit stops Python
/// code well before; the scientific build's C extensions (numpy, scipy) need more than
/// wasmtime's default of 512 KiB.
const MAX_WASM_STACK: usize = 8 << 20;
/// The host stack each guest runs on: the wasm stack plus room for host calls.
const ASYNC_STACK: usize = MAX_WASM_STACK + (1 << 20);

/// An interpreter, loaded on first use and kept.
#[derive(Debug)]
pub(crate) struct Interpreter {
    provisioner: Provisioner,
    tuning: EngineTuning,
    loaded: OnceCell<Arc<Loaded>>,
}

/// A loaded interpreter: engine, pre-linked module, how to start it, and what it is.
pub(crate) struct Loaded {
    pub(crate) engine: Engine,
    pub(crate) pre: InstancePre<GuestState>,
    pub(crate) entry: Entry,
    pub(crate) wasm: PythonWasm,
    pub(crate) compiled_runtime: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("wasm", &self.wasm)
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}

impl Loaded {
    /// True when the interpreter runs code in `turn`s (`host_alloc`, `turn`, `memory`), so
    /// it can be snapshotted after a warm-up.
    pub(crate) fn takes_turns(&self) -> bool {
        let module = self.pre.module();
        self.entry == Entry::Reactor
            && ["turn", "host_alloc", "memory"]
                .iter()
                .all(|name| module.get_export(name).is_some())
    }
}

impl Interpreter {
    /// An interpreter that `provisioner` fetches, run with `tuning`; nothing happens until
    /// first use.
    pub(crate) fn new(provisioner: Provisioner, tuning: EngineTuning) -> Self {
        Self {
            provisioner,
            tuning,
            loaded: OnceCell::new(),
        }
    }

    /// The provisioner this interpreter comes from.
    pub(crate) fn provisioner(&self) -> &Provisioner {
        &self.provisioner
    }

    /// The same interpreter, not yet loaded, run with `tuning`.
    pub(crate) fn with_tuning(&self, tuning: EngineTuning) -> Self {
        Self::new(self.provisioner.clone(), tuning)
    }

    /// The engine settings this interpreter runs with.
    pub(crate) fn tuning(&self) -> EngineTuning {
        self.tuning
    }

    /// The interpreter, if it has been loaded.
    pub(crate) fn get(&self) -> Option<&Arc<Loaded>> {
        self.loaded.get()
    }

    /// True when loading would take well under a second: it is loaded, or it is in the
    /// cache and compiled for this build's engine configuration.
    pub(crate) fn is_ready(&self) -> bool {
        self.loaded.initialized()
            || Engine::new(&engine_config(&self.tuning))
                .is_ok_and(|engine| self.provisioner.is_ready(&engine))
    }

    /// The interpreter, loaded now if it is not yet (blocking work runs off the runtime).
    pub(crate) async fn load(&self) -> Result<Arc<Loaded>, LoadError> {
        self.loaded
            .get_or_try_init(|| async {
                let provisioner = self.provisioner.clone();
                let tuning = self.tuning;
                let cache_dir = provisioner.cache_dir().to_path_buf();
                let mut loaded = tokio::task::spawn_blocking(move || load(&provisioner, tuning))
                    .await
                    .unwrap_or_else(|e| Err(LoadError::Panicked(e)))?;
                let compiler = compiled::Compiler {
                    pre: &loaded.pre,
                    entry: loaded.entry,
                    wasm: &loaded.wasm,
                };
                loaded.compiled_runtime = compiled::runtime(compiler, Path::new(&cache_dir)).await;
                Ok(Arc::new(loaded))
            })
            .await
            .cloned()
    }
}

fn load(provisioner: &Provisioner, tuning: EngineTuning) -> Result<Loaded, LoadError> {
    let started = Instant::now();
    let wasm = provisioner.provision()?;
    let engine = Engine::new(&engine_config(&tuning)).map_err(|e| LoadError::Engine(e.into()))?;
    let compiling = !provisioner.is_ready(&engine);
    if compiling {
        info!(
            interpreter = %wasm.description,
            "compiling the interpreter for this machine, once: {}",
            compile_estimate(&wasm.path)
        );
    }
    let module = provisioner.load_module(&engine, &wasm)?;
    let entry = Entry::of(&module)?;
    let linker = linker(&engine).map_err(|e| LoadError::LinkWasi(e.into()))?;
    let pre = linker
        .instantiate_pre(&module)
        .map_err(|e| LoadError::Instantiate(e.into()))?;
    spawn_epoch_ticker(&engine, tuning.epoch_tick);
    info!(elapsed = ?started.elapsed(), interpreter = %wasm.description, engine = %tuning, "WASI interpreter loaded");
    Ok(Loaded {
        engine,
        pre,
        entry,
        wasm,
        compiled_runtime: None,
    })
}

/// A linker with WASI preview 1 and the host functions an interpreter may import.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<GuestState>> {
    let mut linker: Linker<GuestState> = Linker::new(engine);
    p1::add_to_linker_async(&mut linker, |state: &mut GuestState| &mut state.wasi)?;
    entry::define_host_imports(&mut linker)?;
    Ok(linker)
}

/// How long compiling the module at `path` takes, roughly, from its size: about 1.2
/// CPU-seconds per MB in a release build (measured: the 99 MB full interpreter in 56 s on
/// 2 cores), spread over the machine's cores.
pub(crate) fn compile_estimate(path: &Path) -> String {
    let megabytes = std::fs::metadata(path).map_or(0, |meta| meta.len() >> 20);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let seconds = (megabytes * 12 / 10 / cores as u64).max(1);
    if seconds < 90 {
        format!("about {seconds} s")
    } else {
        format!("about {} min", seconds.div_ceil(60))
    }
}

/// The engine configuration with `tuning`. It is part of the precompiled-module cache key,
/// so any change here invalidates cached modules (which is what we want).
pub(crate) fn engine_config(tuning: &EngineTuning) -> Config {
    let mut config = Config::new();
    tuning.apply(&mut config);
    config.epoch_interruption(true);
    // The scientific build uses wasm exception handling (C++ exceptions in its extensions).
    config.wasm_exceptions(true);
    config.max_wasm_stack(MAX_WASM_STACK);
    config.async_stack_size(ASYNC_STACK);
    config
}

/// Advance the engine's epoch every `tick` until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine, tick: Duration) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("wasi-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        })
        .expect("spawning the epoch thread");
}
