//! The shim: a small synchronous process that creates one container with libcontainer,
//! starts it, and supervises it until it ends.
//!
//! libcontainer forks and clones; doing that inside the bridge's multi-threaded async
//! runtime is unsound, so the bridge re-executes its own binary as the shim for every
//! container. The shim is a child subreaper, so the container's init (whose parent, a
//! short-lived intermediate process, exits at once) becomes its child and can be waited for.
//! It hands its standard streams to the container and then lets go of them, so the guest's
//! streams go straight to the bridge. See [`crate::protocol`] for the control messages.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::mode::IdMap;
use crate::protocol::{Ended, ShimMessage, ShimRequest};
use crate::{loopback, own_namespace, owner};

mod error;

pub(crate) use error::ShimError;

/// Run the shim for `request` (JSON, made by the bridge). The exit code is 0 when the request was carried out.
pub fn main(request: &str) -> ExitCode {
    match serde_json::from_str::<ShimRequest>(request) {
        Ok(ShimRequest::Run {
            id,
            state_root,
            bundle,
            control,
            memory_cgroup,
            limit_files,
            rootfs_bind,
            user_namespace,
            hide_host_cgroups,
        }) => run(
            &id,
            (&state_root, &bundle),
            &control,
            (memory_cgroup.as_deref(), &limit_files),
            rootfs_bind.as_deref(),
            user_namespace.as_ref().map(|map| (map, hide_host_cgroups)),
        ),
        Ok(ShimRequest::MapIds { pid, id_map }) => match own_namespace::write_maps(pid, &id_map) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                // The shim that started this helper reports it.
                let _ = writeln!(std::io::stderr(), "{}", sandbox_core::error_chain(&why));
                ExitCode::FAILURE
            }
        },
        Ok(ShimRequest::Sweep { state_root }) => {
            sweep(&state_root);
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("oci-shim: bad request: {e}");
            ExitCode::FAILURE
        }
    }
}

fn send(control: &mut UnixStream, message: &ShimMessage) {
    let _ = writeln!(control, "{}", message.to_line());
}

fn run(
    id: &str,
    (state_root, bundle): (&Path, &Path),
    control_path: &Path,
    (memory_cgroup, limit_files): (Option<&Path>, &[(PathBuf, String)]),
    rootfs_bind: Option<&Path>,
    user_namespace: Option<(&IdMap, bool)>,
) -> ExitCode {
    let Ok(mut control) = UnixStream::connect(control_path) else {
        tracing::error!(
            "oci-shim: cannot reach the bridge at {}",
            control_path.display()
        );
        return ExitCode::FAILURE;
    };
    // The next bridge's sweep leaves this container to us while we run.
    let _ = std::fs::write(bundle.join(SHIM_PID_FILE), owner::this_process());
    let (mut container, pid, bound) = match set_up(
        id,
        (state_root, bundle),
        limit_files,
        rootfs_bind,
        user_namespace,
    ) {
        Ok(running) => running,
        Err(why) => {
            send(&mut control, &ShimMessage::failed(&why));
            return ExitCode::FAILURE;
        }
    };
    send(&mut control, &ShimMessage::Started(pid.as_raw()));
    release_standard_streams();
    watch_control(&control, pid);
    let ended = wait_for(pid);
    let ended = match ended {
        Ended::Signaled(signal, _) => Ended::Signaled(signal, oom_kills(memory_cgroup)),
        // The guest's init exits 128 + N when the interpreter died of signal N.
        Ended::Exited(status @ 129..=159) => {
            Ended::Signaled(status - 128, oom_kills(memory_cgroup))
        }
        exited @ Ended::Exited(_) => exited,
    };
    if let Err(e) = container.delete(true) {
        send(
            &mut control,
            &ShimMessage::Log(format!(
                "cannot delete container {id}: {}",
                sandbox_core::error_chain(&e)
            )),
        );
    }
    remove_bundle(bundle, bound);
    send(&mut control, &ShimMessage::Ended(ended));
    ExitCode::SUCCESS
}

/// Everything before the container runs: the shim's namespaces, the bound root
/// filesystem, the container created and started. On failure, whatever was made is removed.
fn set_up(
    id: &str,
    (state_root, bundle): (&Path, &Path),
    limit_files: &[(PathBuf, String)],
    rootfs_bind: Option<&Path>,
    user_namespace: Option<(&IdMap, bool)>,
) -> Result<(Container, Pid, Option<BoundRootfs>), ShimError> {
    nix::sys::prctl::set_child_subreaper(true).map_err(ShimError::Subreaper)?;
    let bound = user_namespace
        .map(|(map, hide_host_cgroups)| own_namespace::enter(map, hide_host_cgroups))
        .transpose()
        .map_err(ShimError::from)
        .and_then(|_| {
            rootfs_bind
                .map(|source| BoundRootfs::bind(source, bundle))
                .transpose()
        });
    let bound = match bound {
        Ok(bound) => bound,
        Err(why) => {
            remove_leftovers(id, state_root, bundle);
            return Err(why);
        }
    };
    let running = loopback::enter_new_network_namespace()
        .map_err(ShimError::from)
        .and_then(|()| create_and_start(id, (state_root, bundle), limit_files))
        .and_then(|container| {
            let pid = container.pid().ok_or(ShimError::NoProcess)?;
            Ok((container, pid))
        });
    match running {
        Ok((container, pid)) => Ok((container, pid, bound)),
        Err(why) => {
            remove_container(id, state_root);
            remove_bundle(bundle, bound);
            Err(why)
        }
    }
}

fn create_and_start(
    id: &str,
    (state_root, bundle): (&Path, &Path),
    limit_files: &[(PathBuf, String)],
) -> Result<Container, ShimError> {
    let mut container = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
        .with_root_path(state_root)
        .and_then(|builder| builder.with_executor(SpecEnvExecutor).validate_id())
        .and_then(|builder| {
            builder
                .as_init(bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
        })
        .map_err(ShimError::Create)?;
    let started = limit_files
        .iter()
        .try_for_each(|(file, value)| {
            std::fs::write(file, value).map_err(|source| ShimError::Limit {
                file: file.clone(),
                source,
            })
        })
        .and_then(|()| container.start().map_err(ShimError::Start));
    if let Err(why) = started {
        // The created container's init waits for a start that will not come; libcontainer's
        // delete cannot always reach it (rootless, with no cgroup to kill through).
        if let Some(pid) = container.pid() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        return Err(why);
    }
    Ok(container)
}

/// Runs the workload with exactly the spec's environment. (libcontainer's default executor
/// adds `HOME` when the spec has none.)
#[derive(Debug, Clone)]
struct SpecEnvExecutor;

impl Executor for SpecEnvExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let process = spec.process().as_ref().ok_or(ExecutorError::InvalidArg)?;
        let strings = |items: &[String]| -> Result<Vec<CString>, ExecutorError> {
            items
                .iter()
                .map(|item| CString::new(item.as_bytes()).map_err(|_| ExecutorError::InvalidArg))
                .collect()
        };
        let args = strings(process.args().as_deref().unwrap_or_default())?;
        let env = strings(process.env().as_deref().unwrap_or_default())?;
        let program = args.first().ok_or(ExecutorError::InvalidArg)?;
        let Err(errno) = nix::unistd::execve(program, &args, &env);
        Err(ExecutorError::Execution(
            format!("cannot execute {program:?}: {errno}").into(),
        ))
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Point the shim's own standard streams at `/dev/null`: the container holds the real ones,
/// and the bridge sees end-of-file exactly when the guest is gone.
fn release_standard_streams() {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    for fd in 0..=2 {
        let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
    }
}

/// Carry out the bridge's control messages on a thread. When the bridge's end closes,
/// kill the container.
fn watch_control(control: &UnixStream, pid: Pid) {
    let Ok(reader) = control.try_clone() else {
        let _ = kill(pid, Signal::SIGKILL);
        return;
    };
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            match line.as_deref() {
                Ok("interrupt") => {
                    let _ = kill(pid, Signal::SIGINT);
                }
                Ok("kill") | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = kill(pid, Signal::SIGKILL);
    });
}

/// Wait for the container's init to end.
fn wait_for(pid: Pid) -> Ended {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, status)) => return Ended::Exited(status),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ended::Signaled(signal as i32, 0),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Ended::Signaled(Signal::SIGKILL as i32, 0),
        }
    }
}

/// OOM kills recorded in the container's memory cgroup (v1 `memory.oom_control`, v2
/// `memory.events`), read before the cgroup is deleted.
fn oom_kills(cgroup: Option<&Path>) -> u64 {
    let Some(cgroup) = cgroup else { return 0 };
    ["memory.oom_control", "memory.events"]
        .iter()
        .filter_map(|file| std::fs::read_to_string(cgroup.join(file)).ok())
        .find_map(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The shared root filesystem bound (read-only) into a bundle, in a mount namespace of
/// the shim's own, so it vanishes with the shim whatever happens.
///
/// As root, the container's user namespace shifts its ids to unprivileged host ids, which
/// cannot pass through root's private home (where the root filesystem is cached) on the
/// way to it. The bundle, under the state root, is a path they can pass through.
struct BoundRootfs(PathBuf);

impl BoundRootfs {
    fn bind(source: &Path, bundle: &Path) -> Result<Self, ShimError> {
        use nix::mount::{MsFlags, mount};
        let none = None::<&str>;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(ShimError::MountNamespace)?;
        // Nothing mounted here propagates back to the host.
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
            .map_err(ShimError::PrivateMounts)?;
        let target = bundle.join(ROOTFS_MOUNT);
        std::fs::create_dir(&target).map_err(|e| ShimError::MountPoint {
            path: target.clone(),
            source: e,
        })?;
        mount(Some(source), &target, none, MsFlags::MS_BIND, none).map_err(|e| {
            ShimError::Bind {
                path: source.to_path_buf(),
                source: e,
            }
        })?;
        let bound = Self(target);
        // Read-only here too, so nothing removing the bundle can reach the shared tree.
        let read_only = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(none, &bound.0, none, read_only, none).map_err(ShimError::ReadOnly)?;
        Ok(bound)
    }

    /// Detach the bind; true when the bundle no longer holds the root filesystem.
    fn release(self) -> bool {
        match nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => true,
            Err(e) => {
                tracing::error!("cannot unmount {}: {e}", self.0.display());
                false
            }
        }
    }
}

/// Remove the bundle, never through a root filesystem still bound into it.
fn remove_bundle(bundle: &Path, bound: Option<BoundRootfs>) {
    if bound.is_none_or(BoundRootfs::release) {
        let _ = std::fs::remove_dir_all(bundle);
    }
}

/// Delete whatever libcontainer left of container `id`.
fn remove_container(id: &str, state_root: &Path) {
    let state = state_root.join(id);
    if state.join("state.json").is_file()
        && let Ok(mut container) = Container::load(state)
    {
        let _ = container.delete(true);
    }
    let _ = std::fs::remove_dir_all(state_root.join(id));
}

/// After a failed start, or a crashed bridge: delete the container and its bundle. (Only
/// ever in a mount namespace where nothing is bound into the bundle.)
fn remove_leftovers(id: &str, state_root: &Path, bundle: &Path) {
    remove_container(id, state_root);
    let _ = std::fs::remove_dir_all(bundle);
}

/// Delete the containers and bundles whose owning bridge no longer runs.
fn sweep(state_root: &Path) {
    let Ok(entries) = std::fs::read_dir(state_root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let bundle = bundle_dir(state_root, &name);
        let shim_alive = std::fs::read_to_string(bundle.join(SHIM_PID_FILE))
            .is_ok_and(|tag| owner::is_alive(&tag));
        if owner::is_orphan(&name) && !shim_alive {
            tracing::info!(container = %name, "removing the container of a bridge that crashed");
            remove_leftovers(&name, state_root, &bundle);
        }
    }
    if let Ok(bundles) = std::fs::read_dir(state_root.join(BUNDLES)) {
        for entry in bundles.flatten() {
            if owner::is_orphan(&entry.file_name().to_string_lossy()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// The file in a bundle naming the shim that supervises it (`<pid>-<start time>`).
const SHIM_PID_FILE: &str = "shim.pid";

/// Where, in a bundle, the shim binds the root filesystem (root mode).
pub(crate) const ROOTFS_MOUNT: &str = "rootfs";

/// Directory of bundles under the state root.
pub(crate) const BUNDLES: &str = "bundles";

/// The bundle directory of container `id`.
pub(crate) fn bundle_dir(state_root: &Path, id: &str) -> PathBuf {
    state_root.join(BUNDLES).join(id)
}
