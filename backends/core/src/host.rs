//! Facts about processes on this host that more than one backend needs.

/// True when this process runs as root (`/proc/self` is owned by the effective uid).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The start time of process `pid` (clock ticks since boot, field 22 of
/// `/proc/<pid>/stat`), or `None` when it does not run. A pid and its start time name one
/// process for good: a reused pid has another start time.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    start_time_field(&stat)
}

/// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so fields resume after the last `)`; the start time is the 20th after it.
fn start_time_field(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_start_time() {
        assert!(process_start_time(std::process::id()).is_some());
        assert_eq!(process_start_time(u32::MAX), None);
    }

    #[test]
    fn command_names_with_spaces_and_parentheses_are_skipped() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000";
        assert_eq!(start_time_field(stat), Some(98765));
        assert_eq!(start_time_field("garbage"), None);
    }
}
