//! The container backend's own errors, turned into [`SandboxError`] at the trait boundary.

use sandbox_core::SandboxError;

use crate::engine_kind::{BACKEND_NAMES, EngineKind};

/// What went wrong talking to a container engine.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No engine answers; the text says what was tried and how to fix it.
    #[error("{0}")]
    NoEngine(String),
    /// The engine answered with an error.
    #[error("{engine} API")]
    Api {
        /// Which engine.
        engine: EngineKind,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The image is missing and could not be made.
    #[error("image {image}: {message}")]
    Image {
        /// The image asked for.
        image: String,
        /// What failed.
        message: String,
    },
    /// The host cannot enforce what the spec asks for with this engine.
    #[error("{0}")]
    Unenforceable(String),
}

impl ContainerError {
    /// The error as the trait reports it.
    pub(crate) fn into_sandbox(self, engine: EngineKind) -> SandboxError {
        let backend = BACKEND_NAMES[engine as usize];
        match self {
            Self::NoEngine(reason) | Self::Unenforceable(reason) => {
                SandboxError::Unavailable { backend, reason }
            }
            other => SandboxError::start(backend, other),
        }
    }
}
