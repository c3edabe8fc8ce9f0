//! Starting an interpreter module, whichever shape it has.
//!
//! The slim interpreter is a WASI command: its `_start` runs `main` with the WASI
//! arguments. The full one is a reactor: `_initialize` sets up the C runtime, then `run`
//! runs CPython's `main` with the same arguments and returns its exit code. The full build
//! also imports one host function, `host.call` (its own embedder's tool door, which our
//! guests never use): it is defined to answer "no host" (-1), so a guest that calls it gets
//! an error and nothing on the host runs.
//!
//! The two builds also differ in their flags: the full one is built isolated, without
//! `site` and ignoring `PYTHON*` variables, and refuses `-S`; the slim one is given `-I -S`.
//!
//! The full build also runs code in a live interpreter: `host_alloc(len)` returns guest
//! memory for `len` bytes of UTF-8 source, and `turn(pointer, len)` runs it and returns to
//! the host (its exit status in the low byte). A snapshot of it (see `snapshot.rs`) has
//! been initialised and warmed up already: a session starts it with one `turn` of the
//! bootstrap, which serves frames for the session's life.

use sandbox_core::guest::BOOTSTRAP_SOURCE;
use wasmtime::{AsContextMut, Instance, Linker, Module};
use wasmtime_wasi::I32Exit;

/// What the full build's `host.call` answers when no embedder serves it.
const NO_HOST: i32 = -1;

/// How an interpreter module is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A WASI command: `_start`.
    Command,
    /// A WASI reactor: `_initialize` (when exported), then `run() -> i32`.
    Reactor,
    /// A snapshot of a reactor, already initialised: `turn` of the bootstrap.
    Snapshot,
}

/// The arguments a snapshot is made with (`sys.argv` is frozen in it).
pub(crate) const SNAPSHOT_ARGS: [&str; 1] = ["python"];

/// Why a module cannot be started as an interpreter.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryError {
    /// The module exports neither `_start` nor `run`.
    #[error("the interpreter module exports neither `_start` nor `run`")]
    NoEntry,
    /// The module imports a host function other than the ones we know.
    #[error("the interpreter module imports {module}.{name}, which this bridge does not provide")]
    UnknownImport {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
    },
}

impl Entry {
    /// The entry `module` has, checking that every import outside WASI is one we define.
    pub(crate) fn of(module: &Module) -> Result<Self, EntryError> {
        for import in module.imports() {
            let known = import.module() == "wasi_snapshot_preview1"
                || (import.module() == "host" && import.name() == "call");
            if !known {
                return Err(EntryError::UnknownImport {
                    module: import.module().to_owned(),
                    name: import.name().to_owned(),
                });
            }
        }
        let exports = |name| module.get_export(name).is_some();
        if exports("_start") {
            Ok(Self::Command)
        } else if exports("run") {
            Ok(Self::Reactor)
        } else {
            Err(EntryError::NoEntry)
        }
    }

    /// The interpreter's arguments, its name first, to run `-c program`.
    pub(crate) fn args(self, program: &str) -> Vec<&str> {
        match self {
            Self::Command => vec!["python", "-I", "-S", "-c", program],
            Self::Reactor => vec!["python", "-c", program],
            Self::Snapshot => SNAPSHOT_ARGS.to_vec(),
        }
    }

    /// The arguments that start a session: the bootstrap, which reads the runtime from stdin.
    pub(crate) fn session_args(self) -> Vec<&'static str> {
        self.args(BOOTSTRAP_SOURCE)
    }

    /// Run the interpreter in `instance` to its end and return its exit code. A trap (a
    /// kill, a crash) is the error; `proc_exit` is an exit code like any other.
    pub(crate) async fn run<T: Send>(
        self,
        instance: &Instance,
        mut store: impl AsContextMut<Data = T>,
    ) -> wasmtime::Result<i32> {
        let outcome = match self {
            Self::Command => {
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                start.call_async(&mut store, ()).await.map(|()| 0)
            }
            Self::Reactor => {
                if let Ok(initialize) = instance.get_typed_func::<(), ()>(&mut store, "_initialize")
                {
                    initialize.call_async(&mut store, ()).await?;
                }
                let run = instance.get_typed_func::<(), i32>(&mut store, "run")?;
                run.call_async(&mut store, ()).await
            }
            Self::Snapshot => turn(instance, &mut store, BOOTSTRAP_SOURCE).await,
        };
        match outcome {
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(e),
            },
            ok => ok,
        }
    }
}

/// Run `source` in the live interpreter of `instance` and return the exit status `turn`
/// reports (its low byte; the interpreter stays alive).
async fn turn<T: Send>(
    instance: &Instance,
    mut store: impl AsContextMut<Data = T>,
    source: &str,
) -> wasmtime::Result<i32> {
    let len = i32::try_from(source.len()).map_err(|_| wasmtime::Error::msg("source too long"))?;
    let alloc = instance.get_typed_func::<i32, i32>(&mut store, "host_alloc")?;
    let turn = instance.get_typed_func::<(i32, i32), i32>(&mut store, "turn")?;
    let memory = instance
        .get_memory(&mut store, "memory")
        .ok_or_else(|| wasmtime::Error::msg("the interpreter exports no memory"))?;
    let pointer = alloc.call_async(&mut store, len).await?;
    let offset = usize::try_from(pointer.cast_unsigned()).unwrap_or(usize::MAX);
    if pointer == 0 {
        return Err(wasmtime::Error::msg(
            "the interpreter could not allocate the source",
        ));
    }
    memory.write(&mut store, offset, source.as_bytes())?;
    let status = turn.call_async(&mut store, (pointer, len)).await?;
    Ok(status & 0xFF)
}

/// Start a fresh reactor instance (`_initialize`) and run `source` in one `turn`: how a
/// snapshot is warmed up. Returns the turn's exit status.
pub(crate) async fn initialize_and_turn<T: Send>(
    instance: &Instance,
    mut store: impl AsContextMut<Data = T>,
    source: &str,
) -> wasmtime::Result<i32> {
    if let Ok(initialize) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
        initialize.call_async(&mut store, ()).await?;
    }
    match turn(instance, &mut store, source).await {
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(e),
        },
        ok => ok,
    }
}

/// Define the host functions a reactor build imports besides WASI.
pub(crate) fn define_host_imports<T: 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "host",
        "call",
        |_request: i32, _request_len: i32, _response: i32, _response_len: i32| NO_HOST,
    )?;
    Ok(())
}
