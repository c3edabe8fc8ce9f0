//! Facts about processes on this host that more than one backend needs, and the parts of
//! the host's environment they use (read by the binary, handed in as values).

use std::path::PathBuf;

/// What the backends need to know from the host's environment. The binary reads it once;
/// backend crates read no environment variables of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostEnvironment {
    /// The user's runtime directory (`XDG_RUNTIME_DIR`), where per-user sockets and
    /// container state live; `None` when unset.
    pub runtime_dir: Option<PathBuf>,
    /// The directories searched for programs (`PATH`), in order.
    pub program_path: Vec<PathBuf>,
}

impl HostEnvironment {
    /// The directories searched after [`Self::program_path`], where system tools live even
    /// when a service's `PATH` leaves them out.
    const SYSTEM_DIRS: [&'static str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

    /// The program `name` on the search path or in the system directories.
    pub fn find_program(&self, name: &str) -> Option<PathBuf> {
        self.program_path
            .iter()
            .cloned()
            .chain(Self::SYSTEM_DIRS.map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    }
}

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
    fn programs_are_found_on_the_path_then_in_system_dirs() {
        let dir = std::env::temp_dir().join(format!("host-env-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("only-here"), b"").unwrap();
        let host = HostEnvironment {
            runtime_dir: None,
            program_path: vec![dir.clone()],
        };
        assert_eq!(host.find_program("only-here"), Some(dir.join("only-here")));
        // With no search path, the system directories still count.
        assert!(HostEnvironment::default().find_program("sh").is_some());
        assert_eq!(host.find_program("no-such-program-anywhere"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

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
