//! `sandbox-container`: the Podman and Docker backends, through the engines'
//! Docker-compatible API (bollard).
//!
//! Each session is one long-lived, locked-down container (see [`create`] for the flags)
//! running the shared guest runtime, its standard streams on unix sockets the host listens
//! on ([`channel`]), so a call costs a frame round trip, never a container start or an
//! engine relay. Containers run our own seccomp profile ([`seccomp`]) and the bootstrap's own
//! init as PID 1. A deadline first sends SIGINT (the init forwards it; the code sees
//! `KeyboardInterrupt`, the runtime ends the sandbox's other processes and the session keeps
//! its state), and the session engine then kills the container if the code ignores it. Killing removes the
//! container. Every container carries an owner label; the containers of a bridge that
//! crashed are removed by the next bridge that connects, and [`Sandbox::shutdown`] removes
//! what this one created.
//!
//! With no registry reachable, the image is built locally from a debootstrapped Debian root
//! filesystem ([`sandbox_rootfs`]) and imported into the engine.
#![forbid(unsafe_code)]

mod channel;
mod create;
mod engine;
mod engine_kind;
mod error;
mod guest;
mod image;
mod owner;
mod seccomp;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use sandbox_core::host::HostEnvironment;
use sandbox_core::{Probe, Sandbox, SandboxError, SandboxSpec, StartFailure, StartedGuest};
use sandbox_rootfs::Rootfs;
use tokio::sync::OnceCell;
use tracing::{debug, info};

pub use create::OWNER_LABEL;
pub use engine_kind::{BACKEND_NAMES, EngineKind};
pub use error::{ConnectError, ContainerError, ImageError};
pub use image::{ImageSettings, LOCAL_REPOSITORY, local_image};

use crate::channel::Channel;
use crate::create::{CreateOptions, container_body};
use crate::engine::{Engine, EngineAddress};
use crate::guest::Live;

/// How the container backend is set up.
#[derive(Debug, Clone)]
pub struct ContainerOptions {
    /// Which engine.
    pub engine: EngineKind,
    /// The image asked for (`MCP_BRIDGE_IMAGE`); `None` runs the locally built image.
    pub image: Option<String>,
    /// The OCI runtime the engine should run containers with (`runsc` for gVisor).
    pub oci_runtime: Option<String>,
    /// Where the root filesystem for the local image is built.
    pub rootfs: Rootfs,
    /// The engine's API socket the user named (`DOCKER_HOST` for docker, `CONTAINER_HOST`
    /// for podman); `None` tries the default sockets.
    pub api_socket: Option<PathBuf>,
    /// The runtime directory and program search path.
    pub host: HostEnvironment,
}

/// The Podman or Docker backend. Cheap to construct; it connects on first use.
#[derive(Debug)]
pub struct ContainerSandbox {
    options: ContainerOptions,
    owner: String,
    engine: OnceCell<Arc<Engine>>,
    image: OnceCell<String>,
    live: Arc<Live>,
}

impl ContainerSandbox {
    /// A backend with these options.
    pub fn new(options: ContainerOptions) -> Self {
        Self {
            options,
            owner: owner::this_process(),
            engine: OnceCell::new(),
            image: OnceCell::new(),
            live: Arc::new(Live::default()),
        }
    }

    /// Which engine this backend drives.
    pub fn engine_kind(&self) -> EngineKind {
        self.options.engine
    }

    fn backend(&self) -> &'static str {
        BACKEND_NAMES[self.options.engine as usize]
    }

    /// True when containers run under gVisor's runsc.
    fn is_gvisor(&self) -> bool {
        self.options
            .oci_runtime
            .as_deref()
            .is_some_and(|runtime| runtime.ends_with("runsc"))
    }

    /// Connected engine; the first connection also removes orphans of crashed bridges.
    async fn engine(&self) -> Result<&Arc<Engine>, ContainerError> {
        self.engine
            .get_or_try_init(|| async {
                let podman_args = match &self.options.oci_runtime {
                    Some(runtime) if self.options.engine == EngineKind::Podman => {
                        runtime_flags(runtime)
                    }
                    _ => Vec::new(),
                };
                let address = EngineAddress {
                    socket: self.options.api_socket.as_deref(),
                    host: &self.options.host,
                };
                let engine = Engine::connect(self.options.engine, &address, &podman_args).await?;
                owner::remove_orphans(&engine.client, &engine.socket).await;
                channel::remove_orphaned_dirs();
                Ok(Arc::new(engine))
            })
            .await
    }

    /// The image sessions run, imported or pulled first if needed.
    pub async fn ensure_image(&self) -> Result<String, SandboxError> {
        let kind = self.options.engine;
        let engine = self.engine().await.map_err(|e| e.into_sandbox(kind))?;
        self.image
            .get_or_try_init(|| async {
                image::ensure(
                    &engine.client,
                    self.options.image.as_deref(),
                    &self.options.rootfs,
                )
                .await
            })
            .await
            .cloned()
            .map_err(|e| e.into_sandbox(kind))
    }

    /// Rebuild the local image from the root filesystem (built first if missing).
    pub async fn build_image(&self) -> Result<String, SandboxError> {
        let kind = self.options.engine;
        let engine = self.engine().await.map_err(|e| e.into_sandbox(kind))?;
        image::build(&engine.client, &self.options.rootfs)
            .await
            .map_err(|e| e.into_sandbox(kind))?;
        Ok(local_image())
    }

    /// Import an image of this project's own (the bridge's, say) named `image`: the root
    /// filesystem (built first if missing) with what `extra` adds laid over it, and
    /// `settings` (user, environment, program).
    pub async fn import_over_rootfs(
        &self,
        image: &str,
        extra: &std::path::Path,
        settings: &ImageSettings,
    ) -> Result<(), SandboxError> {
        let kind = self.options.engine;
        let fail = |source: ImageError| {
            ContainerError::Image {
                image: image.to_owned(),
                source,
            }
            .into_sandbox(kind)
        };
        let engine = self.engine().await.map_err(|e| e.into_sandbox(kind))?;
        let rootfs = self
            .options
            .rootfs
            .ensure()
            .await
            .map_err(|e| fail(ImageError::Rootfs(e)))?;
        image::import(&engine.client, image, rootfs, Some(extra), Some(settings))
            .await
            .map_err(fail)
    }

    async fn probe_inner(&self) -> Result<String, ContainerError> {
        if let Some(runtime) = &self.options.oci_runtime
            && self.options.engine == EngineKind::Podman
            && !runtime.contains('/')
            && self.options.host.find_program(runtime).is_none()
        {
            return Err(ContainerError::Unenforceable(format!(
                "the OCI runtime {runtime:?} is not installed{}",
                if runtime == "runsc" {
                    " (gVisor: apt-get install runsc)"
                } else {
                    ""
                }
            )));
        }
        let engine = self.engine().await?;
        let info = engine
            .client
            .info()
            .await
            .map_err(|source| ContainerError::Api {
                engine: engine.kind,
                source,
            })?;
        let cgroup = info.cgroup_version.map(|v| v.to_string());
        let cgroup = cgroup.as_deref().unwrap_or("unknown");
        let rootless = info
            .security_options
            .iter()
            .flatten()
            .any(|option| option.contains("rootless"));
        if rootless && cgroup == "1" {
            return Err(ContainerError::Unenforceable(format!(
                "rootless {} on cgroup v1 cannot enforce the memory, pids and CPU caps on this host; \
                 run it as root, or on a cgroup v2 host with delegated controllers",
                engine.kind
            )));
        }
        if let Some(wanted) = &self.options.oci_runtime
            && engine.kind == EngineKind::Docker
            && !info
                .runtimes
                .as_ref()
                .is_some_and(|r| r.contains_key(wanted))
        {
            return Err(ContainerError::Unenforceable(format!(
                "docker has no OCI runtime named {wanted:?}; register it in /etc/docker/daemon.json \
                 (for gVisor: \"runtimes\": {{\"runsc\": {{\"path\": \"/usr/bin/runsc\", \
                 \"runtimeArgs\": [\"--network=none\", \"--platform=ptrace\", \"--host-uds=open\", \"--oci-seccomp\"]}}}}) \
                 and restart dockerd"
            )));
        }
        let runtime = self
            .options
            .oci_runtime
            .clone()
            .or(info.default_runtime)
            .unwrap_or_else(|| "default".into());
        let image = if let Some(image) = self.image.get() {
            format!("image {image}")
        } else {
            let wanted = self.options.image.clone().unwrap_or_else(local_image);
            if image::is_present(&engine.client, &wanted).await {
                format!("image {wanted}")
            } else {
                format!("image {wanted} is not present yet and is made on first use")
            }
        };
        let service = if engine.service_is_ours().await {
            " (private API service started by the bridge)"
        } else {
            ""
        };
        Ok(format!(
            "{} {} at {}{service}, OCI runtime {runtime}, cgroup v{cgroup}{}, {image}",
            engine.kind,
            engine.version,
            engine.socket.display(),
            if rootless { ", rootless" } else { ", rootful" },
        ))
    }

    /// Remove every container this process created and stop the podman service we started.
    /// Sessions should be shut down first; this catches whatever is left.
    async fn remove_all(&self) {
        let Some(engine) = self.engine.get() else {
            return;
        };
        let ids = self.live.take_all();
        let removals = ids.iter().map(|id| guest::remove(&engine.client, id));
        futures_util::future::join_all(removals).await;
        if !ids.is_empty() {
            info!(removed = ids.len(), "removed the remaining containers");
        }
        engine.stop_service().await;
        let _ = std::fs::remove_dir_all(channel::process_dir());
    }
}

/// Host threads gVisor's own processes need in the container's pids cgroup.
const GVISOR_PIDS_HEADROOM: i64 = 128;

/// Global podman flags for an OCI runtime; gVisor needs its network off and the ptrace
/// platform on hosts like ours.
fn runtime_flags(runtime: &str) -> Vec<String> {
    let mut flags = vec!["--runtime".to_string(), runtime.to_string()];
    if runtime.ends_with("runsc") {
        // No network of its own, the ptrace platform (this build's systrap is too new for
        // such hosts), the host unix sockets the guest's streams use, and the container's
        // seccomp profile applied by gVisor's kernel (runsc ignores it otherwise).
        for flag in [
            "network=none",
            "platform=ptrace",
            "host-uds=open",
            "oci-seccomp",
        ] {
            flags.extend(["--runtime-flag".to_string(), flag.to_string()]);
        }
    }
    flags
}

#[async_trait]
impl Sandbox for ContainerSandbox {
    fn name(&self) -> &'static str {
        self.backend()
    }

    fn has_sockets(&self) -> bool {
        true // its own network namespace with loopback, and bind mounts
    }

    async fn is_prepared(&self) -> bool {
        if self.image.get().is_some() {
            return true;
        }
        let Ok(engine) = self.engine().await else {
            return false;
        };
        let wanted = self.options.image.clone().unwrap_or_else(local_image);
        image::is_present(&engine.client, &wanted).await
    }

    async fn probe(&self) -> Probe {
        match self.probe_inner().await {
            Ok(detail) => Probe::Available { detail },
            Err(e) => Probe::Unavailable {
                reason: sandbox_core::error_chain(&e),
            },
        }
    }

    async fn shutdown(&self) {
        self.remove_all().await;
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<StartedGuest, SandboxError> {
        let kind = self.options.engine;
        let image = self.ensure_image().await?;
        let engine = self.engine().await.map_err(|e| e.into_sandbox(kind))?;
        let seccomp = seccomp::security_option(kind, self.is_gvisor()).map_err(|e| {
            SandboxError::start(
                self.backend(),
                StartFailure::because("writing the seccomp profile", e),
            )
        })?;
        let create_options = CreateOptions {
            seccomp,
            // Podman gets the runtime as a flag of the service we start.
            oci_runtime: self
                .options
                .oci_runtime
                .clone()
                .filter(|_| kind == EngineKind::Docker),
            pids_headroom: if self.is_gvisor() {
                GVISOR_PIDS_HEADROOM
            } else {
                0
            },
        };
        let channel = Channel::open().map_err(|e| {
            SandboxError::start(
                self.backend(),
                StartFailure::because("making the session's socket directory", e),
            )
        })?;
        let body = container_body(spec, &image, &self.owner, channel.dir(), &create_options);
        let started = std::time::Instant::now();
        let created = engine
            .client
            .create_container(None, body)
            .await
            .map_err(|source| {
                ContainerError::Api {
                    engine: kind,
                    source,
                }
                .into_sandbox(kind)
            })?;
        debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "container created"
        );
        guest::start(&engine.client, kind, created.id, channel, self.live.clone()).await
    }
}
