//! Memory of processes, read from `/proc`: the server's RSS and the host's PSS.
//!
//! A leaf of plain readers; each returns `None` where `/proc` does not say (another OS, a
//! process gone), and the report shows a dash.

/// Proportional set size of every process we can read, in KiB: shared pages are split
/// among the processes sharing them, so the sum is the host's real memory use.
pub(crate) fn host_pss_kib() -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        total += pss_kib(pid).unwrap_or(0);
    }
    Some(total)
}

/// Proportional set size of process `pid`, in KiB.
pub(crate) fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = rollup.lines().find(|l| l.starts_with("Pss:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Our newest child process: the server just started (its transport owns the child and
/// does not say its pid).
pub(crate) fn newest_child_pid() -> Option<u32> {
    let me = std::process::id();
    let children = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .max()
}

/// Resident set size of process `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
