//! Which processes run, one copy for every suite that checks what is left running
//! (`#[path = "../common/procs.rs"] mod procs;`).

use std::path::Path;

/// Command lines of the running processes that name `dir` (a server started from a script in
/// `dir`, or with `dir` as an argument).
pub(crate) fn processes_naming(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if line.contains(dir.as_ref()) {
            found.push(line);
        }
    }
    found
}
