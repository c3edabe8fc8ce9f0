//! Where the interpreter comes from. The caller chooses; this crate reads no environment.

use std::fmt;
use std::path::PathBuf;

use crate::pin::Flavour;

/// Where the CPython WASI interpreter comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmSource {
    /// A pinned build ([`SLIM`](crate::SLIM) or [`FULL`](crate::FULL)), downloaded once
    /// with pip, verified, and cached.
    Pinned(Flavour),
    /// A `python.wasm` the user supplies; used as is, identified by its own sha256 (it is
    /// the user's: hashed, not checked against the pin).
    LocalFile(PathBuf),
}

impl WasmSource {
    /// [`WasmSource::LocalFile`] for a given file, else the pinned `flavour`.
    pub fn local_or_pinned(local: Option<PathBuf>, flavour: Flavour) -> Self {
        local.map_or(Self::Pinned(flavour), Self::LocalFile)
    }
}

impl fmt::Display for WasmSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pinned(flavour) => write!(f, "the pinned {flavour} interpreter"),
            Self::LocalFile(path) => write!(f, "the local file {}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_local_file_means_pinned() {
        assert_eq!(
            WasmSource::local_or_pinned(None, Flavour::Full),
            WasmSource::Pinned(Flavour::Full)
        );
        assert_eq!(
            WasmSource::local_or_pinned(Some("/x/python.wasm".into()), Flavour::Full),
            WasmSource::LocalFile("/x/python.wasm".into())
        );
    }
}
