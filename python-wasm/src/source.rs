//! Where the interpreter comes from. The caller chooses; this crate reads no environment.

use std::fmt;
use std::path::PathBuf;

/// Where the CPython WASI interpreter comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmSource {
    /// The [`PINNED`](crate::PINNED) build, downloaded once with pip, verified, and cached.
    Pinned,
    /// A `python.wasm` the user supplies; used as is, identified by its own sha256 (it is
    /// the user's: hashed, not checked against the pin).
    LocalFile(PathBuf),
}

impl WasmSource {
    /// [`WasmSource::LocalFile`] for a given file, else [`WasmSource::Pinned`].
    pub fn local_or_pinned(local: Option<PathBuf>) -> Self {
        local.map_or(Self::Pinned, Self::LocalFile)
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
    fn no_local_file_means_pinned() {
        assert_eq!(WasmSource::local_or_pinned(None), WasmSource::Pinned);
        assert_eq!(
            WasmSource::local_or_pinned(Some("/x/python.wasm".into())),
            WasmSource::LocalFile("/x/python.wasm".into())
        );
    }
}
