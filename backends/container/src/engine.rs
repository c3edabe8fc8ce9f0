//! Finding and connecting to a container engine's Docker-compatible API.
//!
//! Docker: the socket the user named (`DOCKER_HOST`, read by the binary) or the default one.
//! Podman: the named socket (`CONTAINER_HOST`), else the system or user API socket if one
//! answers, else we start `podman system service --time=0` on a private socket as a child of
//! the bridge and stop it when the bridge exits.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bollard::{ClientVersion, Docker};
use tokio::process::{Child, Command};
use tracing::{debug, info, warn};

use sandbox_core::host::{HostEnvironment, is_root};

use crate::engine_kind::EngineKind;
use crate::error::{ConnectError, ContainerError};

/// The API version we speak: the newest both Debian's podman 4.3 and docker 20.10 serve.
const API_VERSION: &ClientVersion = &ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// Seconds bollard waits for one API request.
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// How long a podman API service we started may take to answer.
const SERVICE_START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a socket may take to tell the engine's version.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// A live connection to an engine.
pub(crate) struct Engine {
    pub(crate) kind: EngineKind,
    pub(crate) client: Docker,
    /// Where the API socket is.
    pub(crate) socket: PathBuf,
    /// The engine's version, as it reports it.
    pub(crate) version: String,
    /// The podman API service we started, if we did.
    service: tokio::sync::Mutex<Option<ManagedService>>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("kind", &self.kind)
            .field("socket", &self.socket)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

struct ManagedService {
    child: Child,
    dir: PathBuf,
}

impl Engine {
    /// Connect to `kind`, starting a private podman service if no socket answers.
    /// `podman_args` go before `system service` (for example `--runtime runsc`).
    pub(crate) async fn connect(
        kind: EngineKind,
        address: &EngineAddress<'_>,
        podman_args: &[String],
    ) -> Result<Self, ContainerError> {
        let mut tried = Vec::new();
        // Global podman flags (an OCI runtime) only apply to a service we start ourselves.
        let sockets = if podman_args.is_empty() {
            candidate_sockets(kind, address)
        } else {
            Vec::new()
        };
        for socket in sockets {
            match try_socket(&socket).await {
                Ok((client, version)) => {
                    debug!(engine = %kind, socket = %socket.display(), %version, "engine found");
                    return Ok(Self::new(kind, client, socket, version, None));
                }
                Err(why) => tried.push(why),
            }
        }
        if kind == EngineKind::Podman {
            match start_podman_service(address.host, podman_args).await {
                Ok((service, socket, client, version)) => {
                    return Ok(Self::new(kind, client, socket, version, Some(service)));
                }
                Err(why) => tried.push(why),
            }
        }
        Err(ContainerError::NoEngine {
            engine: kind,
            tried,
        })
    }

    fn new(
        kind: EngineKind,
        client: Docker,
        socket: PathBuf,
        version: String,
        service: Option<ManagedService>,
    ) -> Self {
        Self {
            kind,
            client,
            socket,
            version,
            service: tokio::sync::Mutex::new(service),
        }
    }

    /// True when the API is served by a podman service this process started.
    pub(crate) async fn service_is_ours(&self) -> bool {
        self.service.lock().await.is_some()
    }

    /// Stop the podman service we started (if any). Idempotent.
    pub(crate) async fn stop_service(&self) {
        if let Some(mut service) = self.service.lock().await.take() {
            let _ = service.child.start_kill();
            let _ = service.child.wait().await;
            let _ = tokio::fs::remove_dir_all(&service.dir).await;
            debug!("stopped the podman API service");
        }
    }
}

/// Where to look for an engine: the socket the user named, and the host facts the default
/// sockets and a private service depend on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineAddress<'a> {
    /// The API socket the user named, if any.
    pub(crate) socket: Option<&'a Path>,
    /// The runtime directory and program search path.
    pub(crate) host: &'a HostEnvironment,
}

/// Sockets to try, in order.
fn candidate_sockets(kind: EngineKind, address: &EngineAddress<'_>) -> Vec<PathBuf> {
    if let Some(socket) = address.socket {
        return vec![socket.to_path_buf()];
    }
    match kind {
        EngineKind::Docker => vec![PathBuf::from("/var/run/docker.sock")],
        EngineKind::Podman if is_root() => vec![PathBuf::from("/run/podman/podman.sock")],
        EngineKind::Podman => address
            .host
            .runtime_dir
            .iter()
            .map(|dir| dir.join("podman/podman.sock"))
            .collect(),
    }
}

async fn try_socket(socket: &Path) -> Result<(Docker, String), ConnectError> {
    if !socket.exists() {
        return Err(ConnectError::NoSocket {
            socket: socket.to_path_buf(),
        });
    }
    let client =
        Docker::connect_with_unix(&socket.to_string_lossy(), REQUEST_TIMEOUT_SECS, API_VERSION)
            .map_err(|source| ConnectError::Connect {
                socket: socket.to_path_buf(),
                source,
            })?;
    let version = tokio::time::timeout(VERSION_TIMEOUT, client.version())
        .await
        .map_err(|_| ConnectError::NoAnswer {
            socket: socket.to_path_buf(),
            within: VERSION_TIMEOUT,
        })?
        .map_err(|source| ConnectError::Version {
            permission_hint: matches!(
                source,
                bollard::errors::Error::HyperResponseError { .. }
                    | bollard::errors::Error::IOError { .. }
            ) && std::fs::metadata(socket).is_ok(),
            socket: socket.to_path_buf(),
            source,
        })?;
    Ok((client, version.version.unwrap_or_else(|| "unknown".into())))
}

async fn start_podman_service(
    host: &HostEnvironment,
    podman_args: &[String],
) -> Result<(ManagedService, PathBuf, Docker, String), ConnectError> {
    let podman = host.find_program("podman").ok_or(ConnectError::NoPodman)?;
    let base = host
        .runtime_dir
        .clone()
        .filter(|_| !is_root())
        .unwrap_or_else(std::env::temp_dir);
    // A bridge killed with SIGKILL leaves its directory (its service died with it).
    sandbox_core::socket_dir::remove_orphaned_in(&base, SERVICE_DIR_PREFIX);
    let dir = base.join(format!("{SERVICE_DIR_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).map_err(|source| ConnectError::ServiceDir {
        dir: dir.clone(),
        source,
    })?;
    set_private(&dir);
    let socket = dir.join("podman.sock");
    // The service dies with us (pdeathsig where util-linux's setpriv exists).
    let mut command = match host.find_program("setpriv") {
        Some(setpriv) => {
            let mut command = Command::new(setpriv);
            command.args(["--pdeathsig", "KILL", "--"]).arg(&podman);
            command
        }
        None => Command::new(&podman),
    };
    command
        .args(podman_args)
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(ConnectError::StartService)?;
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                debug!(target: "podman-service", "{line}");
            }
        });
    }
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ConnectError::ServiceExited(status));
        }
        if let Ok((client, version)) = try_socket(&socket).await {
            info!(socket = %socket.display(), %version, ms = started.elapsed().as_millis(), "started a private podman API service");
            return Ok((ManagedService { child, dir }, socket, client, version));
        }
        if started.elapsed() > SERVICE_START_TIMEOUT {
            let _ = child.start_kill();
            let _ = std::fs::remove_dir_all(&dir);
            warn!("the podman API service did not answer");
            return Err(ConnectError::ServiceSilent(SERVICE_START_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Names the private service's directory: the prefix, then the bridge's pid.
const SERVICE_DIR_PREFIX: &str = "mcp-podman-";

fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_socket_is_the_only_one_tried() {
        let host = HostEnvironment::default();
        let named = EngineAddress {
            socket: Some(Path::new("/tmp/engine.sock")),
            host: &host,
        };
        for kind in [EngineKind::Docker, EngineKind::Podman] {
            assert_eq!(
                candidate_sockets(kind, &named),
                [PathBuf::from("/tmp/engine.sock")]
            );
        }
    }

    #[test]
    fn default_sockets_follow_the_user_and_runtime_dir() {
        let host = HostEnvironment {
            runtime_dir: Some(PathBuf::from("/run/user/1000")),
            program_path: Vec::new(),
        };
        let address = EngineAddress {
            socket: None,
            host: &host,
        };
        assert_eq!(
            candidate_sockets(EngineKind::Docker, &address),
            [PathBuf::from("/var/run/docker.sock")]
        );
        let podman = if is_root() {
            PathBuf::from("/run/podman/podman.sock")
        } else {
            PathBuf::from("/run/user/1000/podman/podman.sock")
        };
        assert_eq!(candidate_sockets(EngineKind::Podman, &address), [podman]);
    }
}
