//! Which bridge process owns a container, and removing the containers of dead bridges.
//!
//! Every container carries [`OWNER_LABEL`](crate::create::OWNER_LABEL) =
//! `host:pid:start-time`. A container whose owner is on this host but no longer running (the
//! pid is gone, or reused by a process that started at another time) is an orphan of a
//! crash, and the next bridge to connect removes it. Containers of live bridges and of other
//! hosts sharing the engine are left alone.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use tracing::{info, warn};

use crate::create::OWNER_LABEL;

/// This process's owner label value.
pub(crate) fn this_process() -> String {
    owner_of(std::process::id())
        .unwrap_or_else(|| format!("{}:{}:0", hostname(), std::process::id()))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

/// The owner label a live process `pid` would carry, if it exists.
fn owner_of(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at `)`; the start
    // time is field 22 of the whole line, the 20th after the `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let start_time = after_name.split_whitespace().nth(19)?;
    Some(format!("{}:{pid}:{start_time}", hostname()))
}

/// True when `owner` names a bridge on this host that is no longer running.
fn is_orphaned(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(_start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return false;
    }
    match pid.parse::<u32>() {
        Ok(pid) => owner_of(pid).as_deref() != Some(owner),
        Err(_) => false,
    }
}

/// Remove every container whose owner is a dead bridge on this host. Returns how many.
pub(crate) async fn remove_orphans(client: &Docker) -> usize {
    let filters = HashMap::from([("label".to_string(), vec![OWNER_LABEL.to_string()])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = match client.list_containers(Some(options)).await {
        Ok(containers) => containers,
        Err(e) => {
            warn!(error = %e, "cannot list containers to remove orphans");
            return 0;
        }
    };
    let mut removed = 0;
    for container in containers {
        let owner = container
            .labels
            .as_ref()
            .and_then(|labels| labels.get(OWNER_LABEL))
            .cloned()
            .unwrap_or_default();
        let Some(id) = container.id else { continue };
        if !is_orphaned(&owner) {
            continue;
        }
        let force = RemoveContainerOptionsBuilder::default().force(true).build();
        match client.remove_container(&id, Some(force)).await {
            Ok(()) => removed += 1,
            Err(e) => warn!(container = %id, error = %e, "cannot remove an orphaned container"),
        }
    }
    if removed > 0 {
        info!(
            removed,
            "removed containers left behind by a bridge that crashed"
        );
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_not_an_orphan() {
        let me = this_process();
        assert!(me.starts_with(&hostname()));
        assert!(!is_orphaned(&me));
    }

    #[test]
    fn a_dead_or_reused_pid_is_an_orphan() {
        let me = this_process();
        let (prefix, _) = me.rsplit_once(':').unwrap();
        assert!(
            is_orphaned(&format!("{prefix}:1")),
            "same pid, other start time"
        );
        assert!(is_orphaned(&format!("{}:{}:5", hostname(), u32::MAX)));
    }

    #[test]
    fn other_hosts_and_garbage_are_left_alone() {
        assert!(!is_orphaned("some-other-host:1:1"));
        assert!(!is_orphaned("garbage"));
        assert!(!is_orphaned(""));
    }
}
