//! Container ids that name the bridge process owning them, so the next bridge can tell
//! which containers a crashed one left behind.
//!
//! An id is `mcp-<pid>-<start time>-<n>`: the pid and the kernel's start time (in clock
//! ticks since boot) of the bridge, so a reused pid is not mistaken for the owner.

use std::sync::atomic::{AtomicU64, Ordering};

use sandbox_core::host::process_start_time as start_time;

/// Prefix of every container id this backend makes.
const PREFIX: &str = "mcp-";

/// This process's owner tag: `<pid>-<start time>`.
pub(crate) fn this_process() -> String {
    let pid = std::process::id();
    format!("{pid}-{}", start_time(pid).unwrap_or(0))
}

/// A fresh container id owned by this process.
pub(crate) fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{PREFIX}{}-{}",
        this_process(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// True when `id` is one of ours and its owner no longer runs.
pub(crate) fn is_orphan(id: &str) -> bool {
    id.strip_prefix(PREFIX).is_some_and(|tag| !is_alive(tag))
}

/// True when the process named by the owner tag `<pid>-<start time>[-...]` still runs.
/// A malformed tag counts as alive: never remove what might not be ours to remove.
pub(crate) fn is_alive(tag: &str) -> bool {
    let mut fields = tag.split('-');
    let (Some(pid), Some(started)) = (fields.next(), fields.next()) else {
        return true;
    };
    let (Ok(pid), Ok(started)) = (pid.parse::<u32>(), started.parse::<u64>()) else {
        return true;
    };
    start_time(pid) == Some(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_ids_are_not_orphans_and_a_dead_owners_are() {
        let id = new_id();
        assert!(id.starts_with("mcp-"));
        assert!(!is_orphan(&id));
        let pid = std::process::id();
        assert!(
            is_orphan(&format!("mcp-{pid}-1-0")),
            "a different start time"
        );
        assert!(!is_orphan("someone-else"));
        assert!(!is_orphan("mcp-garbage"));
        assert!(is_alive(&this_process()));
    }
}
