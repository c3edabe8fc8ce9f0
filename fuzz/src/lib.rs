//! Helpers shared by the fuzz targets in `fuzz_targets/`: scratch folders and file listings.
//!
//! Targets that go through the file system (server discovery, saved tools and memory) work
//! in one scratch folder per process, on a RAM file system when there is one, so that the
//! `fsync` of every atomic write costs nothing and a long run does not wear a disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A folder that lives as long as the fuzzing process (removed when it exits normally).
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let builder = {
            let mut b = tempfile::Builder::new();
            b.prefix("mcp-bridge-fuzz-");
            b
        };
        if shm.is_dir() {
            builder.tempdir_in(shm)
        } else {
            builder.tempdir()
        }
        .expect("a scratch folder for the fuzz target")
    })
    .path()
}

/// Every file (not folder) under `dir`, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .expect("listed under dir")
                        .to_path_buf(),
                );
            }
        }
    }
    out.sort();
    out
}

/// Remove every file under `dir`, keeping the folders.
pub fn clear_files(dir: &Path) {
    for file in files_under(dir) {
        fs::remove_file(dir.join(file)).expect("a scratch file can be removed");
    }
}

/// Write `bytes` to `path`, creating its folder.
pub fn write_file(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().expect("a file in a folder")).expect("create a folder");
    fs::write(path, bytes).expect("write a scratch file");
}
