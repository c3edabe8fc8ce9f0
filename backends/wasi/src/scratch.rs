//! The private, per-session scratch directory behind the guest's `/tmp` and `/workspace`.

use std::io;
use std::path::{Path, PathBuf};

/// A fresh directory with `tmp/` and `workspace/` inside; removed, with everything the guest
/// wrote, when dropped.
#[derive(Debug)]
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
    tmp: PathBuf,
    workspace: PathBuf,
}

impl Scratch {
    /// Create it under the system temp dir, readable by this user only.
    pub(crate) fn create() -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("mcp-wasi-").tempdir()?;
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
        [(&self.tmp, "/tmp"), (&self.workspace, "/workspace")]
    }

    /// The root of the scratch directory on the host.
    #[allow(dead_code, reason = "used by the scratch quota watchdog and tests")]
    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
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
}
