//! The private, per-session scratch directory behind the guest's `/tmp` and `/workspace`.
//!
//! Directories are named `mcp-wasi-<pid>-<random>` under the system temp dir, so a bridge
//! that was killed before it could clean up leaves directories the next bridge recognises
//! and removes ([`remove_orphans`]).

use std::io;
use std::path::{Path, PathBuf};

const PREFIX: &str = "mcp-wasi-";
/// Where the guest sees the scratch directories, in the order [`Scratch::preopens`] lists them.
pub(crate) const GUEST_PATHS: [&str; 2] = ["/tmp", "/workspace"];

/// A fresh directory with `tmp/` and `workspace/` inside; removed, with everything the guest
/// wrote, when dropped.
#[derive(Debug)]
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
    tmp: PathBuf,
    workspace: PathBuf,
}

/// How much a scratch directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Bytes in regular files.
    pub(crate) bytes: u64,
    /// Files and directories.
    pub(crate) entries: u64,
}

impl Scratch {
    /// Create it under the system temp dir, readable by this user only.
    pub(crate) fn create() -> io::Result<Self> {
        let prefix = format!("{PREFIX}{}-", std::process::id());
        let dir = tempfile::Builder::new().prefix(&prefix).tempdir()?;
        let tmp = dir.path().join("tmp");
        let workspace = dir.path().join("workspace");
        std::fs::create_dir(&tmp)?;
        std::fs::create_dir(&workspace)?;
        Ok(Self {
            dir,
            tmp,
            workspace,
        })
    }

    /// Host directories and the guest paths they appear at.
    pub(crate) fn preopens(&self) -> [(&Path, &'static str); 2] {
        [
            (&self.tmp, GUEST_PATHS[0]),
            (&self.workspace, GUEST_PATHS[1]),
        ]
    }

    /// The root of the scratch directory on the host.
    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// Measure a scratch directory, stopping early once `max_entries` entries were seen.
/// Symlinks are counted, never followed.
pub(crate) fn usage(root: &Path, max_entries: u64) -> io::Result<Usage> {
    let mut usage = Usage {
        bytes: 0,
        entries: 0,
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            usage.entries += 1;
            if usage.entries > max_entries {
                return Ok(usage);
            }
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                usage.bytes += meta.len();
            }
        }
    }
    Ok(usage)
}

/// Remove scratch directories left by bridges that no longer run.
pub(crate) fn remove_orphans(temp: &Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(dir = %entry.path().display(), "removing a crashed bridge's scratch");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_removed_on_drop() {
        let scratch = Scratch::create().unwrap();
        let root = scratch.root().to_path_buf();
        std::fs::write(scratch.preopens()[0].0.join("f"), b"x").unwrap();
        assert!(root.exists());
        drop(scratch);
        assert!(!root.exists());
    }

    #[test]
    fn usage_counts_bytes_and_entries() {
        let scratch = Scratch::create().unwrap();
        std::fs::write(scratch.preopens()[0].0.join("a"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir(scratch.preopens()[1].0.join("d")).unwrap();
        std::fs::write(scratch.preopens()[1].0.join("d/b"), vec![0u8; 24]).unwrap();
        let used = usage(scratch.root(), 100).unwrap();
        assert_eq!(used.bytes, 1024);
        assert_eq!(used.entries, 5);
        assert_eq!(usage(scratch.root(), 2).unwrap().entries, 3);
    }

    #[test]
    fn orphans_of_dead_bridges_are_removed() {
        let temp = tempfile::tempdir().unwrap();
        let dead = temp.path().join(format!("{PREFIX}999999999-abc"));
        let mine = temp
            .path()
            .join(format!("{PREFIX}{}-abc", std::process::id()));
        let other = temp.path().join("unrelated");
        for dir in [&dead, &mine, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        remove_orphans(temp.path());
        assert!(!dead.exists());
        assert!(mine.exists() && other.exists());
    }
}
