//! Which container engine: a leaf type the rest of the crate names, so that the engine
//! connection and the errors that mention an engine need not import each other.

use std::fmt;

/// Backend names, indexed by [`EngineKind`].
pub const BACKEND_NAMES: [&str; 2] = ["podman", "docker"];

/// A container engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// Podman (rootful or rootless).
    Podman = 0,
    /// Docker.
    Docker = 1,
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(BACKEND_NAMES[*self as usize])
    }
}
