//! Why the interpreter could not be loaded, or its runtime precompiled.
//!
//! Each message names the step that failed; what it ran into (the provisioner's error,
//! wasmtime's) is the [`source`](std::error::Error::source), told once by
//! [`sandbox_core::error_chain`] where the error becomes text.

use python_wasm::ProvisionError;
use sandbox_core::BoxError;

/// Why the process-wide half of the backend (engine, pre-linked interpreter) could not be
/// built. The backend reports it as [`SandboxError::Unavailable`](sandbox_core::SandboxError)
/// and tries again on the next use.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// Provisioning the interpreter or loading its compiled module failed; the provisioner's
    /// message already says what failed and what to do.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// wasmtime refused the engine configuration.
    #[error("wasmtime could not create its engine")]
    Engine(#[source] BoxError),
    /// WASI preview 1 could not be added to the linker.
    #[error("linking WASI failed")]
    LinkWasi(#[source] BoxError),
    /// The interpreter module needs an import that WASI preview 1 does not provide.
    #[error("the interpreter module does not link")]
    Instantiate(#[source] BoxError),
    /// The module is not an interpreter we know how to start.
    #[error(transparent)]
    Entry(#[from] crate::entry::EntryError),
    /// The blocking task that loads the interpreter panicked.
    #[error("loading the interpreter panicked")]
    Panicked(#[source] tokio::task::JoinError),
}

/// Why the guest runtime could not be precompiled to bytecode (sessions then compile it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CompileError {
    /// The compiling interpreter could not be instantiated.
    #[error("instantiating the compiling interpreter failed")]
    Instantiate(#[source] BoxError),
    /// The compiling interpreter trapped (it did not exit with a status).
    #[error("the compiling interpreter stopped abnormally")]
    Trapped(#[source] BoxError),
    /// The compiling interpreter ran and failed; what it wrote to stderr.
    #[error("the compiling interpreter failed: {stderr}")]
    Failed {
        /// The interpreter's stderr, trimmed.
        stderr: String,
    },
    /// The compiling interpreter exited cleanly but wrote no bytecode.
    #[error("the compiling interpreter wrote nothing")]
    Empty,
}

/// Why a snapshot of the interpreter could not be made (sessions then start the plain way).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    /// The interpreter's file could not be read.
    #[error("reading the interpreter failed")]
    ReadInterpreter(#[source] std::io::Error),
    /// wizer refused the module.
    #[error("instrumenting the interpreter for a snapshot failed")]
    Instrument(#[source] BoxError),
    /// wasmtime could not compile the instrumented module.
    #[error("compiling the instrumented interpreter failed")]
    Compile(#[source] BoxError),
    /// The warm-up's own async runtime could not start.
    #[error("starting the warm-up's runtime failed")]
    Runtime(#[source] std::io::Error),
    /// The warm-up's scratch directory could not be made.
    #[error("making the warm-up's scratch directory failed")]
    Scratch(#[source] std::io::Error),
    /// The directories given do not match the layout's paths.
    #[error("the warm-up's directories do not match the layout")]
    LayoutMismatch,
    /// A directory could not be preopened.
    #[error("preopening a directory for the warm-up failed")]
    Preopen(#[source] BoxError),
    /// The instrumented module could not be linked or instantiated.
    #[error("instantiating the instrumented interpreter failed")]
    Link(#[source] BoxError),
    /// The warm-up trapped.
    #[error("the warm-up stopped abnormally")]
    Trapped(#[source] BoxError),
    /// The warm-up ran and failed; what it wrote to stderr.
    #[error("the warm-up exited with status {status}: {stderr}")]
    WarmUpFailed {
        /// Its exit status.
        status: i32,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// wizer could not write the snapshot.
    #[error("writing the snapshot failed")]
    Rewrite(#[source] BoxError),
    /// Compiling or caching the snapshot failed.
    #[error(transparent)]
    Cache(#[from] ProvisionError),
    /// The snapshot's module could not be pre-linked.
    #[error("linking the snapshot failed")]
    LinkSnapshot(#[source] BoxError),
    /// The blocking task that makes the snapshot panicked.
    #[error("making the snapshot panicked")]
    Panicked(#[source] tokio::task::JoinError),
}

#[cfg(test)]
mod tests {
    use std::io;

    use sandbox_core::error_chain;

    use super::*;

    fn wasmtime_error(text: &'static str) -> BoxError {
        wasmtime::Error::msg(text).into()
    }

    #[test]
    fn a_wasmtime_cause_is_told_once_after_the_step() {
        let link = LoadError::Instantiate(wasmtime_error("unknown import: `env::foo`"));
        assert_eq!(
            error_chain(&link),
            "the interpreter module does not link: unknown import: `env::foo`"
        );
        let engine = LoadError::Engine(wasmtime_error("unsupported feature"));
        assert_eq!(
            error_chain(&engine),
            "wasmtime could not create its engine: unsupported feature"
        );
        let compile = CompileError::Trapped(wasmtime_error("wasm trap: unreachable"));
        assert_eq!(
            error_chain(&compile),
            "the compiling interpreter stopped abnormally: wasm trap: unreachable"
        );
    }

    #[test]
    fn a_provisioning_error_keeps_its_message_and_names_the_os_error_once() {
        let os = io::Error::new(io::ErrorKind::NotFound, "No such file or directory");
        let error = LoadError::from(ProvisionError::PythonNotRunnable {
            python: "python3".into(),
            source: os,
        });
        let text = error_chain(&error);
        assert!(
            text.starts_with("could not run `python3` to download the CPython WASI interpreter"),
            "{text}"
        );
        assert!(
            text.ends_with(": No such file or directory"),
            "the OS error is the last part: {text}"
        );
        assert_eq!(
            text.matches("No such file or directory").count(),
            1,
            "{text}"
        );
    }
}
