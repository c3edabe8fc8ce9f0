//! Rootless: the shim's own user namespace.
//!
//! Rootless, the shim (as rootless podman does with its pause process) first makes a user
//! namespace of its own, mapped over the caller's subordinate ids by `newuidmap` and
//! `newgidmap`, and runs libcontainer inside it; the spec asks for no user namespace, so the
//! container stays in the shim's. Being root there, the shim can make the container's
//! network namespace itself and bring its loopback up ([`crate::loopback`]).
//!
//! libcontainer puts every container in cgroups. On cgroup v1 it cannot be told not to, and
//! an unprivileged user may create none unless root delegated some, so container creation
//! would fail. Its cgroup v2 manager, on the other hand, leaves a rootless container in its
//! parent's cgroup when it may not make one. So where this user has no cgroup delegated,
//! the shim also makes a mount and cgroup namespace in which a fresh cgroup2 filesystem
//! covers `/sys/fs/cgroup`, and libcontainer takes its rootless v2 path. The memory, pids and CPU caps are then not enforced
//! by a cgroup; the rlimits stand in where they can, and the probe and every reply say so.

use std::io::{self, BufRead, Write};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use crate::mode::{CGROUP_ROOT, IdMap};
use crate::protocol::{SHIM_SUBCOMMAND, ShimRequest};

/// Why the shim could not make its own namespaces.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NamespaceError {
    /// The shim's own binary, which runs the id-map helper, cannot be found.
    #[error("cannot find the shim's own binary")]
    FindShim(#[source] io::Error),
    /// The id-map helper could not be started.
    #[error("cannot start the id-map helper")]
    StartHelper(#[source] io::Error),
    /// Waiting for the id-map helper failed.
    #[error("cannot wait for the id-map helper")]
    WaitHelper(#[source] io::Error),
    /// `unshare(CLONE_NEWUSER)` failed.
    #[error("cannot make a user namespace")]
    UserNamespace(#[source] Errno),
    /// The helper could not map the ids; `helper` is what it wrote on its error output.
    #[error("cannot map the user namespace's ids: {helper}")]
    MapIds {
        /// The helper's own account (a rendered [`MapError`]).
        helper: String,
    },
    /// `unshare(CLONE_NEWNS | CLONE_NEWCGROUP)` failed.
    #[error("cannot make the shim's mount and cgroup namespaces")]
    MountNamespace(#[source] Errno),
    /// Making `/` a private mount failed.
    #[error("cannot make the shim's mounts private")]
    PrivateMounts(#[source] Errno),
    /// Mounting a fresh cgroup2 failed.
    #[error("cannot mount cgroup2 at {CGROUP_ROOT}")]
    MountCgroup(#[source] Errno),
}

/// Why the id-map helper could not write the shim's maps.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MapError {
    /// The shim's word never came.
    #[error("cannot read the shim's word")]
    Word(#[source] io::Error),
    /// `newuidmap` or `newgidmap` could not be run.
    #[error("cannot run {tool} (Debian's uidmap package)")]
    Run {
        /// The tool.
        tool: &'static str,
        /// Why it could not run.
        #[source]
        source: io::Error,
    },
    /// `newuidmap` or `newgidmap` refused; `stderr` is what it said.
    #[error("{tool} {pid} {ranges}: {stderr}")]
    Refused {
        /// The tool.
        tool: &'static str,
        /// The shim whose maps it wrote.
        pid: i32,
        /// Its ranges, as given.
        ranges: String,
        /// Its error output.
        stderr: String,
    },
}

/// In the (single-threaded) shim: make the user namespace with `map`; with
/// `hide_host_cgroups`, then the mount and cgroup namespaces with a fresh cgroup2 at
/// [`CGROUP_ROOT`].
pub(crate) fn enter(map: &IdMap, hide_host_cgroups: bool) -> Result<(), NamespaceError> {
    let request = ShimRequest::MapIds {
        pid: i32::try_from(std::process::id()).expect("a Linux pid fits an i32"),
        id_map: map.clone(),
    };
    let request = serde_json::to_string(&request).expect("a request serialises");
    let program = std::env::current_exe().map_err(NamespaceError::FindShim)?;
    // The helper starts outside the new namespace (newuidmap must run from the parent
    // namespace) and waits for the word.
    let mut helper = Command::new(program)
        .arg(SHIM_SUBCOMMAND)
        .arg(request)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NamespaceError::StartHelper)?;
    let unshared = unshare(CloneFlags::CLONE_NEWUSER);
    if let Some(mut stdin) = helper.stdin.take() {
        // Told to go whatever happened: a failed unshare shows up as a failed map.
        let _ = stdin.write_all(b"go\n");
    }
    let output = helper
        .wait_with_output()
        .map_err(NamespaceError::WaitHelper)?;
    unshared.map_err(NamespaceError::UserNamespace)?;
    if !output.status.success() {
        return Err(NamespaceError::MapIds {
            helper: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    if !hide_host_cgroups {
        return Ok(());
    }
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP)
        .map_err(NamespaceError::MountNamespace)?;
    let none = None::<&str>;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(NamespaceError::PrivateMounts)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("cgroup2"), CGROUP_ROOT, Some("cgroup2"), flags, none)
        .map_err(NamespaceError::MountCgroup)
}

/// In the helper: wait for the shim's word, then write its maps.
pub(crate) fn write_maps(pid: i32, map: &IdMap) -> Result<(), MapError> {
    let mut word = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut word)
        .map_err(MapError::Word)?;
    for (tool, ranges) in [("newuidmap", map.uid_args()), ("newgidmap", map.gid_args())] {
        let output = Command::new(tool)
            .arg(pid.to_string())
            .args(&ranges)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| MapError::Run { tool, source })?;
        if !output.status.success() {
            return Err(MapError::Refused {
                tool,
                pid,
                ranges: ranges.join(" "),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_map_tool_is_named_once_with_the_os_error_once() {
        let os = io::Error::from_raw_os_error(2);
        let os_text = os.to_string();
        let told = sandbox_core::error_chain(&MapError::Run {
            tool: "newuidmap",
            source: os,
        });
        assert_eq!(
            told,
            format!("cannot run newuidmap (Debian's uidmap package): {os_text}")
        );
        assert_eq!(told.matches(&os_text).count(), 1, "{told}");
        assert_eq!(told.matches("newuidmap").count(), 1, "{told}");
    }

    #[test]
    fn a_failed_namespace_step_tells_the_errno_once() {
        let told = sandbox_core::error_chain(&NamespaceError::MountCgroup(Errno::EPERM));
        let errno = Errno::EPERM.to_string();
        assert_eq!(
            told,
            format!("cannot mount cgroup2 at {CGROUP_ROOT}: {errno}")
        );
        assert_eq!(told.matches(&errno).count(), 1, "{told}");
    }
}
