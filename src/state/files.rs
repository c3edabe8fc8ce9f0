//! What both stores share on disk: private folders, atomic writes, listing the files a store
//! holds (skipping hidden ones, such as the atomic writes' temporary files), and the lock
//! that serialises a store's writers.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use sandbox_core::atomic_file::{Mode, write_atomic as replace_file};

use super::error::{StateError, io_error};

/// Serialises the writers of one store in this process: each checks a size total, then
/// writes.
#[derive(Debug, Default)]
pub(super) struct WriteLock(Mutex<()>);

impl WriteLock {
    /// Wait for the other writers; the returned guard lets the next one in when dropped.
    pub(super) fn hold(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic while holding it left nothing half-updated.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Create `dir` (and missing parents) with mode 0700 if it does not exist.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("create the folder", dir))
}

/// Write `bytes` to `path` atomically, mode 0600 (see `sandbox_core::atomic_file`): the
/// temporary file is hidden, so listings skip it.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    replace_file(path, bytes, Mode::Masked(0o600)).map_err(io_error("write", path))
}

/// Whether a directory entry name is one of our temporary files or otherwise hidden.
fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// `(stem, size)` of each `*<ext>` file in `dir` whose stem passes `valid`, sorted.
pub(super) fn list_files(
    dir: &Path,
    ext: &str,
    valid: impl Fn(&str) -> bool,
) -> Result<Vec<(String, u64)>, StateError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_hidden(name) {
            continue;
        }
        let Some(stem) = name.strip_suffix(ext) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() && valid(stem) {
            out.push((stem.to_string(), meta.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// Every file under `dir`, relative, sorted (for tests that check what was written).
#[cfg(test)]
pub(super) fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}
