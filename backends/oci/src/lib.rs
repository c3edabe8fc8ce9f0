//! `sandbox-oci`: the direct OCI backend. Each session is one container made with youki's
//! libcontainer, with no container engine or daemon in between.
//!
//! libcontainer forks, so it never runs inside the bridge's async runtime: for each
//! container the bridge re-executes its own binary as a small shim ([`shim::main`], under
//! the hidden subcommand [`SHIM_SUBCOMMAND`]), which creates and starts the container from a
//! spec built in code ([`bundle`]) and supervises it. The guest's standard streams are the
//! shim's pipes, inherited by the container, so a call is a frame round trip over a pipe.
//!
//! As root, containers get cgroup memory, pids and CPU limits. Rootless, they get a user
//! namespace mapping the caller's subordinate ids, and whatever limits cannot be enforced
//! are named by [`Sandbox::unenforced_limits`], in the probe and in every reply.
#![forbid(unsafe_code)]

mod bundle;
mod error;
mod guest;
mod loopback;
mod mode;
mod own_namespace;
mod owner;
mod protocol;
pub mod shim;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sandbox_core::host::HostEnvironment;
use sandbox_core::{Probe, Sandbox, SandboxError, SandboxSpec, StartedGuest};
use sandbox_rootfs::Rootfs;
use tokio::net::UnixListener;
use tokio::sync::OnceCell;
use tracing::debug;

pub use error::OciError;
pub use protocol::SHIM_SUBCOMMAND;

use crate::bundle::Plan;
use crate::mode::Mode;
use crate::protocol::ShimRequest;

/// The backend's name.
pub const BACKEND_NAME: &str = "oci";

/// How the OCI backend is set up.
#[derive(Debug, Clone)]
pub struct OciOptions {
    /// The binary to re-execute as the shim (normally the bridge's own).
    pub shim: PathBuf,
    /// The Debian root filesystem the containers run.
    pub rootfs: Rootfs,
    /// The runtime directory, where a rootless user's container state lives.
    pub host: HostEnvironment,
}

/// The direct OCI backend.
#[derive(Debug)]
pub struct OciSandbox {
    options: OciOptions,
    mode: Mode,
    state_root: PathBuf,
    swept: OnceCell<()>,
    compiled: OnceCell<Option<Arc<[u8]>>>,
}

impl OciSandbox {
    /// A backend with these options; it looks at the host now and touches nothing until used.
    pub fn new(options: OciOptions) -> Self {
        let mode = Mode::detect();
        let state_root = mode::state_root(mode.root, options.host.runtime_dir.as_deref());
        Self {
            options,
            mode,
            state_root,
            swept: OnceCell::new(),
            compiled: OnceCell::new(),
        }
    }

    /// The root filesystem, built first when missing (as root only).
    pub async fn ensure_rootfs(&self) -> Result<PathBuf, OciError> {
        let rootfs = &self.options.rootfs;
        if rootfs.is_built() || self.mode.root {
            return Ok(rootfs.ensure().await?.to_path_buf());
        }
        Err(OciError::NoRootfs(rootfs.dir().to_path_buf()))
    }

    /// The state directory, made private to this user, with the containers of crashed
    /// bridges removed (once per process).
    async fn prepare_state(&self) -> Result<(), OciError> {
        self.swept
            .get_or_try_init(|| async {
                let bundles = self.state_root.join(shim::BUNDLES);
                std::fs::create_dir_all(&bundles)
                    .map_err(|e| OciError::io("cannot create", &bundles, e))?;
                // As root, the containers' shifted ids pass through to their bundles;
                // nobody else lists or enters anything.
                let mode = if self.mode.root { 0o711 } else { 0o700 };
                for dir in [&self.state_root, &bundles] {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                        .map_err(|e| OciError::io("cannot restrict", dir, e))?;
                }
                let sweep = ShimRequest::Sweep {
                    state_root: self.state_root.clone(),
                };
                let status = tokio::process::Command::new(&self.options.shim)
                    .arg(SHIM_SUBCOMMAND)
                    .arg(serde_json::to_string(&sweep).expect("a request serialises"))
                    .env_clear()
                    .stdin(std::process::Stdio::null())
                    .status()
                    .await;
                debug!(?status, "swept the containers of crashed bridges");
                Ok::<(), OciError>(())
            })
            .await?;
        Ok(())
    }

    fn plan(
        &self,
        rootfs: PathBuf,
        (id, bundle): (&str, &Path),
        spec: &SandboxSpec,
        args: Vec<String>,
    ) -> Plan {
        // Without a subordinate range only container root is mapped; it has no capabilities
        // either way.
        let user = if self.mode.id_map.maps(spec.user().0) {
            spec.user()
        } else {
            (0, 0)
        };
        Plan {
            // As root, the shim binds the root filesystem into the bundle: the container's
            // shifted ids could not pass through root's private home on the way to it.
            rootfs: if self.mode.root {
                bundle.join(shim::ROOTFS_MOUNT)
            } else {
                rootfs
            },
            args,
            id_map: self.mode.root.then(|| self.mode.id_map.clone()),
            cgroup_resources: self.mode.root,
            user,
            limits: self.mode.limits,
            cgroups_path: self
                .mode
                .cgroup_parent
                .as_ref()
                .map(|parent| format!("/{parent}/{id}")),
            bundle: bundle.to_path_buf(),
        }
    }

    /// The memory cgroup directory of container `id`, for the OOM-kill count.
    fn memory_cgroup(&self, id: &str) -> Option<PathBuf> {
        let parent = self
            .mode
            .cgroup_parent
            .as_ref()
            .filter(|_| self.mode.limits.memory)?;
        let root = Path::new(mode::CGROUP_ROOT);
        Some(match self.mode.cgroup_version {
            "v1" => root.join("memory").join(parent).join(id),
            _ => root.join(parent).join(id),
        })
    }

    /// The cgroup v1 files a rootless container's shim writes to set its limits.
    fn limit_files(&self, id: &str, spec: &SandboxSpec) -> Vec<(PathBuf, String)> {
        let Some(parent) = self.mode.cgroup_parent.as_ref() else {
            return Vec::new();
        };
        if self.mode.root || self.mode.cgroup_version != "v1" {
            return Vec::new();
        }
        let controller_dir = |controller: &str| Path::new(mode::CGROUP_ROOT).join(controller);
        let dir = |controller: &str| controller_dir(controller).join(parent).join(id);
        let memory = spec.memory_bytes().to_string();
        let mut files = vec![
            (dir("memory").join("memory.limit_in_bytes"), memory.clone()),
            (dir("pids").join("pids.max"), spec.pids().to_string()),
        ];
        let swap_accounted = controller_dir("memory")
            .join(parent)
            .join("memory.memsw.limit_in_bytes")
            .exists();
        if swap_accounted {
            files.push((dir("memory").join("memory.memsw.limit_in_bytes"), memory));
        }
        if let Some(quota) = bundle::cpu_quota(spec) {
            files.push((
                dir("cpu").join("cpu.cfs_period_us"),
                bundle::CPU_PERIOD_US.to_string(),
            ));
            files.push((dir("cpu").join("cpu.cfs_quota_us"), quota.to_string()));
        }
        files
    }

    fn probe_detail(&self) -> Result<String, OciError> {
        if !self.options.shim.is_file() {
            return Err(OciError::NoShim(self.options.shim.clone()));
        }
        let rootfs = &self.options.rootfs;
        let rootfs_state = if rootfs.is_built() {
            format!("root filesystem {}", rootfs.dir().display())
        } else if self.mode.root {
            format!(
                "root filesystem {} is built with debootstrap on first use",
                rootfs.dir().display()
            )
        } else {
            return Err(OciError::NoRootfs(rootfs.dir().to_path_buf()));
        };
        let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok());
        if userns == Some(0) {
            return Err(OciError::NoUserNamespaces);
        }
        let who = if self.mode.root {
            format!(
                "root, user namespace on host uids {}",
                self.mode.id_map.describe_uids()
            )
        } else if self.mode.id_map.maps(65534) {
            format!(
                "rootless, the shim's own user namespace on host uids {}",
                self.mode.id_map.describe_uids()
            )
        } else {
            "rootless, user namespace mapping only this user (no /etc/subuid range)".to_string()
        };
        let limits = if self.mode.unenforced.is_empty() {
            format!(
                "memory, pids and CPU limits enforced under the cgroup {}",
                self.mode.cgroup_parent.as_deref().unwrap_or_default()
            )
        } else {
            let remedy = self
                .mode
                .remedy
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!("NOT enforced: {}{remedy}", self.mode.unenforced.join("; "))
        };
        Ok(format!(
            "libcontainer 0.7 ({who}), cgroup {}, seccomp denies {} syscalls, {limits}, {rootfs_state}",
            self.mode.cgroup_version,
            sandbox_core::seccomp::refused_count(),
        ))
    }
}

#[async_trait]
impl Sandbox for OciSandbox {
    fn name(&self) -> &'static str {
        BACKEND_NAME
    }

    fn has_sockets(&self) -> bool {
        true // its own network namespace with loopback, and bind mounts
    }

    async fn is_prepared(&self) -> bool {
        self.options.rootfs.is_built()
    }

    async fn probe(&self) -> Probe {
        match self.probe_detail() {
            Ok(detail) => Probe::Available { detail },
            Err(e) => Probe::Unavailable {
                reason: sandbox_core::error_chain(&e),
            },
        }
    }

    fn unenforced_limits(&self) -> Vec<String> {
        self.mode.unenforced.clone()
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<StartedGuest, SandboxError> {
        let rootfs = self.ensure_rootfs().await.map_err(OciError::into_sandbox)?;
        self.prepare_state().await.map_err(OciError::into_sandbox)?;
        self.compiled
            .get_or_init(|| self.compile_runtime(&rootfs, spec))
            .await;
        let args = sandbox_core::guest::interpreter_args()
            .iter()
            .map(ToString::to_string)
            .chain(std::iter::once("--init".to_string()))
            .collect();
        self.launch(rootfs, spec, args).await
    }
}

impl OciSandbox {
    /// Start one container running the interpreter with `args`.
    async fn launch(
        &self,
        rootfs: PathBuf,
        spec: &SandboxSpec,
        args: Vec<String>,
    ) -> Result<StartedGuest, SandboxError> {
        let id = owner::new_id();
        let bundle_dir = shim::bundle_dir(&self.state_root, &id);
        let rootfs_bind = self.mode.root.then(|| rootfs.clone());
        let config = bundle::config(spec, &self.plan(rootfs, (&id, &bundle_dir), spec, args));
        let control = bundle_dir.join("control.sock");
        let listener = (|| {
            std::fs::create_dir(&bundle_dir)?;
            // The container's ids pass through to the bound root filesystem and the
            // identity files; nobody lists the bundle.
            std::fs::set_permissions(&bundle_dir, std::fs::Permissions::from_mode(0o711))?;
            bundle::write(&bundle_dir, &config)?;
            bundle::write_identity(&bundle_dir)?;
            UnixListener::bind(&control)
        })()
        .map_err(|e| OciError::io("cannot prepare the bundle", &bundle_dir, e).into_sandbox())?;
        let request = ShimRequest::Run {
            memory_cgroup: self.memory_cgroup(&id),
            limit_files: self.limit_files(&id, spec),
            rootfs_bind,
            user_namespace: (!self.mode.root).then(|| self.mode.id_map.clone()),
            hide_host_cgroups: self.mode.hide_host_cgroups,
            id,
            state_root: self.state_root.clone(),
            bundle: bundle_dir.clone(),
            control,
        };
        let started = guest::start(&self.options.shim, &request, listener).await;
        if started.is_err() {
            let _ = std::fs::remove_dir_all(&bundle_dir);
        }
        started.map(|guest| StartedGuest {
            compiled_runtime: self.compiled.get().cloned().flatten(),
            ..guest
        })
    }

    /// The guest runtime compiled by the container's own interpreter (one short-lived
    /// container), so sessions skip compiling its 100 KB of source. `None` (sessions then
    /// send the source) if that fails.
    async fn compile_runtime(&self, rootfs: &Path, spec: &SandboxSpec) -> Option<Arc<[u8]>> {
        use sandbox_core::guest::{COMPILE_RUNTIME_SOURCE, RUNTIME_SOURCE};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let args = ["-I", "-S", "-c", COMPILE_RUNTIME_SOURCE]
            .map(ToString::to_string)
            .to_vec();
        let compiling = async {
            let mut guest = self.launch(rootfs.to_path_buf(), spec, args).await.ok()?;
            guest
                .stdin
                .write_all(RUNTIME_SOURCE.as_bytes())
                .await
                .ok()?;
            guest.stdin.shutdown().await.ok()?;
            drop(guest.stdin);
            let mut bytecode = Vec::new();
            guest.stdout.read_to_end(&mut bytecode).await.ok()?;
            let exit = guest.control.wait().await;
            (exit == sandbox_core::GuestExit::Exited(0) && !bytecode.is_empty())
                .then(|| Arc::from(bytecode))
        };
        let compiled = tokio::time::timeout(std::time::Duration::from_secs(30), compiling)
            .await
            .ok()
            .flatten();
        debug!(
            bytes = compiled.as_ref().map(|c: &Arc<[u8]>| c.len()),
            "compiled the guest runtime"
        );
        compiled
    }
}
