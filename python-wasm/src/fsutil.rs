//! File helpers: private directories, cross-process locks, atomic writes, hashing.
//!
//! The cache never holds a half-written file: everything is written to a temporary file in
//! the destination directory, synced, and renamed over the final name
//! (`sandbox_core::atomic_file`). A crash leaves at most a stray hidden `.<name>.*.tmp` file,
//! never a truncated `python.wasm` or `.cwasm`.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::Path;

use sandbox_core::atomic_file::{AtomicFile, Mode};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::error::ProvisionError;

/// Creates `path` and its missing parents with mode 0700, and takes group and other write
/// access away from `path` itself if it already existed with it.
pub(crate) fn ensure_private_dir(path: &Path) -> Result<(), ProvisionError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(path)
        .map_err(ProvisionError::not_writable(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(ProvisionError::not_writable(path))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(ProvisionError::not_writable(path))?;
        }
    }
    Ok(())
}

/// Takes an exclusive lock on `path` (created if needed), waiting for other processes that
/// hold it. The lock is released when the returned file is dropped. Lock files are never
/// deleted: deleting one while another process waits on it would let a third lock a new
/// file of the same name.
pub(crate) fn lock(path: &Path, waiting_for: &str) -> Result<File, ProvisionError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(ProvisionError::not_writable(path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            info!(lock = %path.display(), "another process is {waiting_for}; waiting for it");
            file.lock().map_err(ProvisionError::io("lock", path))?;
        }
        Err(TryLockError::Error(source)) => {
            return Err(ProvisionError::Io {
                action: "lock",
                path: path.into(),
                source,
            });
        }
    }
    Ok(file)
}

/// Writes a new temporary file beside `dest` with `fill` (see `sandbox_core::atomic_file`).
/// Nothing is visible under `dest` until [`commit`]; if `fill` fails, or the result is
/// dropped, the temporary file is removed.
pub(crate) fn stage(
    dest: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), ProvisionError>,
) -> Result<AtomicFile, ProvisionError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut staged =
        AtomicFile::create(dest, Mode::Masked(0o600)).map_err(ProvisionError::not_writable(dir))?;
    fill(staged.file())?;
    Ok(staged)
}

/// Syncs a file from [`stage`] and renames it over its destination, then syncs the
/// directory so the rename itself is durable.
pub(crate) fn commit(staged: AtomicFile) -> Result<(), ProvisionError> {
    let dest = staged.dest().to_path_buf();
    staged.commit().map_err(ProvisionError::io("write", dest))
}

/// Writes to `inner` while hashing and counting what passes through.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The number of bytes written and their sha256 in lowercase hex.
    pub(crate) fn finish(self) -> (u64, String) {
        (self.written, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The sha256 of everything `reader` yields, in lowercase hex.
pub(crate) fn sha256_reader(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut reader, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// The sha256 of the bytes in memory, in lowercase hex.
pub(crate) fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_no_partial_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let result = stage(&dir.path().join("python.wasm"), |file| {
            file.write_all(b"half of a module")
                .map_err(ProvisionError::io("write", "x"))?;
            Err(ProvisionError::SizeMismatch {
                what: "test".into(),
                expected: 2,
                actual: 1,
            })
        });
        assert!(matches!(result, Err(ProvisionError::SizeMismatch { .. })));
        let left: Vec<_> = fs::read_dir(dir.path()).expect("read dir").collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn committed_write_replaces_the_destination_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dest = dir.path().join("python.wasm");
        fs::write(&dest, b"old").expect("write old");
        let staged = stage(&dest, |file| {
            file.write_all(b"new contents")
                .map_err(ProvisionError::io("write", "x"))
        })
        .expect("staged");
        assert_eq!(
            fs::read(&dest).expect("read"),
            b"old",
            "not visible before commit"
        );
        commit(staged).expect("committed");
        assert_eq!(fs::read(&dest).expect("read"), b"new contents");
        assert_eq!(fs::read_dir(dir.path()).expect("read dir").count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn private_dirs_lose_group_and_other_write() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let fresh = dir.path().join("a/b");
        ensure_private_dir(&fresh).expect("created");
        let mode = fs::metadata(&fresh).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "fresh dir mode {mode:o}");
        let open = dir.path().join("open");
        fs::create_dir(&open).expect("mkdir");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
        ensure_private_dir(&open).expect("tightened");
        let mode = fs::metadata(&open).expect("meta").permissions().mode();
        assert_eq!(mode & 0o022, 0, "tightened dir mode {mode:o}");
    }

    #[test]
    fn hashing_writer_counts_and_hashes() {
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"abc").expect("write");
        let (n, hex) = writer.finish();
        assert_eq!(n, 3);
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_bytes(b"abc"), hex);
        assert_eq!(sha256_reader(&b"abc"[..]).expect("hash"), hex);
    }
}
