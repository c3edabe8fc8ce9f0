//! The container backend's own errors, turned into [`SandboxError`] at the trait boundary.
//!
//! Each message names what failed and on what; the error it ran into is its source, told
//! once by [`sandbox_core::error_chain`].

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use sandbox_core::SandboxError;
use sandbox_rootfs::RootfsError;

use crate::engine_kind::{BACKEND_NAMES, EngineKind};

/// What went wrong talking to a container engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// No engine answers; the message says what was tried and how to fix it.
    #[error("{}", no_engine(*engine, tried))]
    NoEngine {
        /// The engine asked for.
        engine: EngineKind,
        /// Every way of reaching it that was tried, in order.
        tried: Vec<ConnectError>,
    },
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
    #[error("image {image}")]
    Image {
        /// The image asked for.
        image: String,
        /// What failed.
        #[source]
        source: ImageError,
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
            Self::Unenforceable(reason) => SandboxError::Unavailable { backend, reason },
            no_engine @ Self::NoEngine { .. } => SandboxError::Unavailable {
                backend,
                reason: sandbox_core::error_chain(&no_engine),
            },
            other => SandboxError::start(backend, other),
        }
    }
}

/// The text of [`ContainerError::NoEngine`]: each attempt with its cause, then the fix.
fn no_engine(engine: EngineKind, tried: &[ConnectError]) -> String {
    let tried = tried
        .iter()
        .map(|attempt| sandbox_core::error_chain(attempt))
        .collect::<Vec<_>>()
        .join("; ");
    match engine {
        EngineKind::Docker => format!(
            "no Docker engine answers ({tried}); start dockerd or set DOCKER_HOST to its unix:// \
             socket"
        ),
        EngineKind::Podman => format!(
            "no podman API could be reached or started ({tried}); install podman (apt-get \
             install podman)"
        ),
    }
}

/// One way of reaching an engine's API that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Nothing exists at the socket's path.
    #[error("{}: no such socket", socket.display())]
    NoSocket {
        /// The socket tried.
        socket: PathBuf,
    },
    /// A client for the socket could not be made.
    #[error("cannot connect to {}", socket.display())]
    Connect {
        /// The socket tried.
        socket: PathBuf,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The socket took no request within the time allowed.
    #[error("{}: no answer within {within:?}", socket.display())]
    NoAnswer {
        /// The socket tried.
        socket: PathBuf,
        /// How long it was given.
        within: Duration,
    },
    /// Asking the engine for its version failed.
    #[error(
        "asking {} for the engine's version failed{}",
        socket.display(),
        if *permission_hint { " (is the socket's permission granted to this user?)" } else { "" }
    )]
    Version {
        /// The socket tried.
        socket: PathBuf,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
        /// The socket exists and the connection failed, which is most often its permission.
        permission_hint: bool,
    },
    /// No `podman` program on the search path, so no service can be started.
    #[error("podman is not installed")]
    NoPodman,
    /// The private service's directory could not be made.
    #[error("cannot create {}", dir.display())]
    ServiceDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `podman system service` could not be run.
    #[error("cannot start `podman system service`")]
    StartService(#[source] io::Error),
    /// `podman system service` ended before it answered.
    #[error("`podman system service` exited at once ({0})")]
    ServiceExited(ExitStatus),
    /// `podman system service` did not answer in time (and was stopped).
    #[error("`podman system service` did not answer within {0:?}")]
    ServiceSilent(Duration),
}

/// Why the image could not be pulled or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The engine could not pull it.
    #[error("cannot pull it")]
    Pull(#[source] bollard::errors::Error),
    /// The root filesystem it is made from could not be built (its error says so).
    #[error(transparent)]
    Rootfs(RootfsError),
    /// `tar` could not be run to stream the root filesystem.
    #[error("cannot run tar")]
    SpawnTar(#[source] io::Error),
    /// The engine refused to make the image's settings (a container of it, its commit).
    #[error("cannot give the image its settings")]
    Configure(#[source] bollard::errors::Error),
    /// What goes over the root filesystem could not be listed, or clashes with it.
    #[error("cannot lay the overlay over the root filesystem")]
    Overlay(#[source] io::Error),
    /// The engine refused the import.
    #[error("the import failed")]
    Import(#[source] bollard::errors::Error),
    /// Waiting for `tar` failed.
    #[error("cannot wait for tar")]
    WaitTar(#[source] io::Error),
    /// `tar` failed.
    #[error("tar failed ({0})")]
    TarStatus(ExitStatus),
    /// The import seemed to work, yet the engine does not list the image.
    #[error("the engine accepted the import but has no such image")]
    Missing,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os_error() -> (io::Error, String) {
        let os = io::Error::from_raw_os_error(13);
        let text = os.to_string();
        (os, text)
    }

    #[test]
    fn no_engine_tells_each_attempt_with_its_cause_once_and_the_fix() {
        let (os, os_text) = os_error();
        let error = ContainerError::NoEngine {
            engine: EngineKind::Podman,
            tried: vec![
                ConnectError::NoSocket {
                    socket: "/run/user/1000/podman/podman.sock".into(),
                },
                ConnectError::ServiceDir {
                    dir: "/run/user/1000/mcp-podman-7".into(),
                    source: os,
                },
            ],
        };
        let told = sandbox_core::error_chain(&error);
        assert_eq!(
            told,
            format!(
                "no podman API could be reached or started (/run/user/1000/podman/podman.sock: \
                 no such socket; cannot create /run/user/1000/mcp-podman-7: {os_text}); install \
                 podman (apt-get install podman)"
            )
        );
        assert_eq!(told.matches(&os_text).count(), 1, "{told}");
        let SandboxError::Unavailable { backend, reason } = error.into_sandbox(EngineKind::Podman)
        else {
            panic!("no engine is an unavailable backend");
        };
        assert_eq!((backend, reason), ("podman", told));
    }

    #[test]
    fn no_docker_says_how_to_start_one() {
        let error = ContainerError::NoEngine {
            engine: EngineKind::Docker,
            tried: vec![ConnectError::NoAnswer {
                socket: "/var/run/docker.sock".into(),
                within: Duration::from_secs(5),
            }],
        };
        assert_eq!(
            error.to_string(),
            "no Docker engine answers (/var/run/docker.sock: no answer within 5s); start dockerd \
             or set DOCKER_HOST to its unix:// socket"
        );
    }

    #[test]
    fn a_refused_version_request_hints_at_the_permission_before_its_cause() {
        let (os, os_text) = os_error();
        let error = ConnectError::Version {
            socket: "/var/run/docker.sock".into(),
            source: bollard::errors::Error::from(os),
            permission_hint: true,
        };
        let told = sandbox_core::error_chain(&error);
        assert_eq!(
            told,
            format!(
                "asking /var/run/docker.sock for the engine's version failed (is the socket's \
                 permission granted to this user?): {os_text}"
            )
        );
        assert_eq!(told.matches(&os_text).count(), 1, "{told}");
    }

    #[test]
    fn an_image_failure_names_the_image_and_step_then_the_cause_once() {
        let (os, os_text) = os_error();
        let error = ContainerError::Image {
            image: "localhost/mcp-sandbox-python:x".into(),
            source: ImageError::SpawnTar(os),
        };
        let told = sandbox_core::error_chain(&error);
        assert_eq!(
            told,
            format!("image localhost/mcp-sandbox-python:x: cannot run tar: {os_text}")
        );
        assert_eq!(told.matches(&os_text).count(), 1, "{told}");
        assert_eq!(told.matches("localhost/mcp-sandbox-python").count(), 1);
    }
}
