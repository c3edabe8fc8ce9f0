//! The error type every backend and the session engine return, and how errors are told.
//!
//! An error's own message names the operation and the object once; what it ran into is its
//! [`source`](std::error::Error::source), never repeated in the message. [`chain`] writes an
//! error with its causes, for the places that turn an error into text (tool results, probe
//! reasons); the binary's edge does the same with `anyhow`'s `{:#}`.

use std::error::Error;
use std::fmt;
use std::io;

/// A boxed error from a layer below a backend (an engine client, the OS, libcontainer).
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// An error and each of its causes, outermost first, joined by `": "`.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// One step of starting a guest that failed, and what it ran into (if that was an error of
/// its own): the [`SandboxError::StartGuest`] source backends build.
#[derive(Debug)]
pub struct StartFailure {
    step: String,
    cause: Option<BoxError>,
}

impl StartFailure {
    /// The step failed for a reason told in its own words (`step` says it all).
    pub fn new(step: impl Into<String>) -> Self {
        Self {
            step: step.into(),
            cause: None,
        }
    }

    /// The step (`"making the scratch directory"`) ran into `cause`.
    pub fn because(step: impl Into<String>, cause: impl Into<BoxError>) -> Self {
        Self {
            step: step.into(),
            cause: Some(cause.into()),
        }
    }
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.step)
    }
}

impl Error for StartFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn Error + 'static))
    }
}

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
    /// Starting the guest interpreter failed; the source says at which step and why.
    #[error("the {backend} sandbox did not start")]
    StartGuest {
        /// Backend name.
        backend: &'static str,
        /// The step that failed and its cause (often a [`StartFailure`]).
        #[source]
        source: BoxError,
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
    #[error("the sandbox broke the protocol")]
    Protocol(#[from] crate::frame::FrameError),
    /// The guest went away (exited, crashed, was killed) while we needed it; the reason is
    /// told in words, as no error value says it.
    #[error("the sandbox stopped: {0}")]
    GuestGone(String),
    /// Interrupting the running code failed; the source says why.
    #[error("interrupting the {backend} sandbox failed")]
    Interrupt {
        /// Backend name.
        backend: &'static str,
        /// What the interrupt ran into (an engine client's error, the OS).
        #[source]
        source: BoxError,
    },
    /// The guest did not become ready in time.
    #[error("the sandbox did not become ready within {0:?}")]
    StartTimeout(std::time::Duration),
    /// I/O with the guest failed.
    #[error("talking to the sandbox failed")]
    Io(#[from] io::Error),
    /// The sandbox spec asks for something impossible.
    #[error("invalid sandbox spec: {0}")]
    Spec(String),
}

impl SandboxError {
    /// Starting a `backend` guest failed with `error` (a [`StartFailure`], or a backend's own
    /// error type).
    pub fn start(backend: &'static str, error: impl Into<BoxError>) -> Self {
        Self::StartGuest {
            backend,
            source: error.into(),
        }
    }

    /// Interrupting a `backend` guest failed with `error`.
    pub fn interrupt(backend: &'static str, error: impl Into<BoxError>) -> Self {
        Self::Interrupt {
            backend,
            source: error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_told_once_after_the_step() {
        let io = io::Error::new(io::ErrorKind::StorageFull, "no space left on device");
        let error = SandboxError::start(
            "wasi",
            StartFailure::because("making the scratch directory", io),
        );
        assert_eq!(
            chain(&error),
            "the wasi sandbox did not start: making the scratch directory: no space left on \
             device"
        );
        let plain = SandboxError::start("oci", StartFailure::new("the shim exited"));
        assert_eq!(
            chain(&plain),
            "the oci sandbox did not start: the shim exited"
        );
    }

    #[test]
    fn a_failed_interrupt_names_the_backend_then_its_cause_once() {
        let os = io::Error::from_raw_os_error(32);
        let os_text = os.to_string();
        let error = SandboxError::interrupt("oci", os);
        let told = chain(&error);
        assert_eq!(
            told,
            format!("interrupting the oci sandbox failed: {os_text}")
        );
        assert_eq!(told.matches(&os_text).count(), 1, "{told}");
    }
}
