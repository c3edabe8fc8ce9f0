//! The error type every backend and the session engine return.

use std::io;

/// What went wrong below the MCP layer: starting a guest, talking to it, or the guest itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The backend cannot run on this host; the reason names what is missing.
    #[error("the {backend} backend is unavailable: {reason}")]
    Unavailable {
        /// Backend name (`wasi`, `podman`, ...).
        backend: &'static str,
        /// Why, in words a user can act on.
        reason: String,
    },
    /// Starting the guest interpreter failed.
    #[error("starting a {backend} sandbox failed: {message}")]
    StartGuest {
        /// Backend name.
        backend: &'static str,
        /// What failed.
        message: String,
    },
    /// The backend does not support this operation (for example a soft interrupt).
    #[error("the {backend} backend does not support {operation}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// The operation asked for.
        operation: &'static str,
    },
    /// The guest broke the frame protocol; the session is ended.
    #[error("the sandbox broke the protocol: {0}")]
    Protocol(#[from] crate::frame::FrameError),
    /// The guest went away (exited, crashed, was killed) while we needed it.
    #[error("the sandbox stopped: {0}")]
    GuestGone(String),
    /// The guest did not become ready in time.
    #[error("the sandbox did not become ready within {0:?}")]
    StartTimeout(std::time::Duration),
    /// I/O with the guest failed.
    #[error("talking to the sandbox failed: {0}")]
    Io(#[from] io::Error),
    /// The sandbox spec asks for something impossible.
    #[error("invalid sandbox spec: {0}")]
    Spec(String),
}
