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

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use crate::mode::{CGROUP_ROOT, IdMap};
use crate::protocol::{SHIM_SUBCOMMAND, ShimRequest};

/// In the (single-threaded) shim: make the user namespace with `map`; with
/// `hide_host_cgroups`, then the mount and cgroup namespaces with a fresh cgroup2 at
/// [`CGROUP_ROOT`].
pub(crate) fn enter(map: &IdMap, hide_host_cgroups: bool) -> Result<(), String> {
    let request = ShimRequest::MapIds {
        pid: i32::try_from(std::process::id()).map_err(|e| e.to_string())?,
        id_map: map.clone(),
    };
    let request = serde_json::to_string(&request).map_err(|e| e.to_string())?;
    let program = std::env::current_exe().map_err(|e| format!("cannot find the shim: {e}"))?;
    // The helper starts outside the new namespace (newuidmap must run from the parent
    // namespace) and waits for the word.
    let mut helper = Command::new(program)
        .arg(SHIM_SUBCOMMAND)
        .arg(request)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the id-map helper: {e}"))?;
    let unshared = unshare(CloneFlags::CLONE_NEWUSER);
    if let Some(mut stdin) = helper.stdin.take() {
        // Told to go whatever happened: a failed unshare shows up as a failed map.
        let _ = stdin.write_all(b"go\n");
    }
    let output = helper
        .wait_with_output()
        .map_err(|e| format!("the id-map helper: {e}"))?;
    unshared.map_err(|e| format!("cannot make a user namespace: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cannot map the user namespace's ids: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    if !hide_host_cgroups {
        return Ok(());
    }
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| format!("cannot make the shim's mount and cgroup namespaces: {e}"))?;
    let none = None::<&str>;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("cannot make the shim's mounts private: {e}"))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("cgroup2"), CGROUP_ROOT, Some("cgroup2"), flags, none)
        .map_err(|e| format!("cannot mount cgroup2 at {CGROUP_ROOT}: {e}"))
}

/// In the helper: wait for the shim's word, then write its maps.
pub(crate) fn write_maps(pid: i32, map: &IdMap) -> Result<(), String> {
    let mut word = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut word)
        .map_err(|e| e.to_string())?;
    for (tool, ranges) in [("newuidmap", map.uid_args()), ("newgidmap", map.gid_args())] {
        let output = Command::new(tool)
            .arg(pid.to_string())
            .args(&ranges)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {tool} (Debian's uidmap package): {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{tool} {pid} {}: {}",
                ranges.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    Ok(())
}
