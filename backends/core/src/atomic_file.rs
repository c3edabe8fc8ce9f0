//! Replacing a file whole: the one way this workspace writes a file that something else may
//! read while it changes (saved tools and memory, MCP client configs, the cached interpreter,
//! its compiled module and the guest runtime's bytecode).
//!
//! # Trust
//!
//! The destination's folder may be shared with a process that would like to redirect the
//! write (an MCP client's config holds its tokens). So nothing is opened by a name that can
//! be guessed: the temporary file's name is random, and it is created with
//! `O_CREAT | O_EXCL`, so a file or symlink planted under any name is never opened, written
//! or followed (a name that exists is skipped for another random one). The destination is
//! then replaced with `rename(2)`, which replaces a symlink found there instead of writing
//! through it.
//!
//! # Guarantees
//!
//! - The temporary file is in the destination's folder, so the rename never crosses file
//!   systems, and it is named `.<file name>.<random>.tmp`: hidden by its leading dot, and
//!   left out by anything that lists `*.json`, `*.py` or the like.
//! - Its permissions are the caller's [`Mode`], set before any byte is written.
//! - Its data is flushed to disk (`fsync`) before the rename, and the folder is flushed after
//!   it, so once [`AtomicFile::commit`] returns the new content survives a power loss.
//! - Readers see the old file or the new one, never a mix or a truncated file.
//! - A failure, or dropping an [`AtomicFile`] without committing it, removes the temporary
//!   file; a crash leaves at most that one stray temporary file, never a partial destination.
//! - Flushing the folder is best effort: failing to only weakens durability across a power
//!   loss, not atomicity, and is not reported.
//!
//! Errors are the OS's [`io::Error`] without the path, so that the caller names the file
//! once, in its own words. Every call blocks on file I/O.

use std::ffi::OsString;
use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// The permissions a replaced file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// These permission bits less the process umask, as `open(2)` gives a new file: for a
    /// file that is new, or whose old permissions do not matter (`0o600` for private data).
    Masked(u32),
    /// Exactly these permission bits, whatever the umask: for keeping those of the file being
    /// replaced. The temporary file is private (`0o600`) until they are set.
    Exact(u32),
}

/// A file being written under a temporary name, that replaces its destination in one step
/// when committed (see the [module docs](self) for the guarantees). Dropping it without
/// committing removes the temporary file and leaves the destination as it was.
#[derive(Debug)]
pub struct AtomicFile {
    temp: NamedTempFile,
    dest: PathBuf,
}

impl AtomicFile {
    /// Start replacing `dest`: create a new temporary file beside it with `mode`.
    pub fn create(dest: impl Into<PathBuf>, mode: Mode) -> io::Result<Self> {
        let dest = dest.into();
        let name = dest.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name")
        })?;
        let mut prefix = OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let at_creation = match mode {
            Mode::Masked(bits) => bits,
            Mode::Exact(_) => 0o600,
        };
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .permissions(Permissions::from_mode(at_creation))
            .tempfile_in(folder_of(&dest))?;
        if let Mode::Exact(bits) = mode {
            // fchmod on the open file: the umask does not apply, and no path is followed.
            temp.as_file()
                .set_permissions(Permissions::from_mode(bits & 0o7777))?;
        }
        Ok(Self { temp, dest })
    }

    /// The temporary file, to write the new content into.
    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// The file this one replaces when committed.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flush the content to disk, rename it over the destination, then flush the folder.
    /// On failure the temporary file is removed and the destination is left as it was.
    pub fn commit(self) -> io::Result<()> {
        self.temp.as_file().sync_all()?;
        let Self { temp, dest } = self;
        temp.persist(&dest).map_err(|e| e.error)?;
        if let Ok(folder) = File::open(folder_of(&dest)) {
            let _ = folder.sync_all();
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

/// Replace `dest` with `bytes` in one step, with `mode` (see [`AtomicFile`]).
pub fn write_atomic(dest: &Path, bytes: &[u8], mode: Mode) -> io::Result<()> {
    let mut file = AtomicFile::create(dest, mode)?;
    file.write_all(bytes)?;
    file.commit()
}

/// The folder `path` is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn replaces_the_destination_whole_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dest = dir.path().join("value.json");
        fs::write(&dest, b"old").expect("write old");
        let mut file = AtomicFile::create(&dest, Mode::Masked(0o600)).expect("create");
        file.write_all(b"new contents").expect("write");
        assert_eq!(
            fs::read(&dest).expect("read"),
            b"old",
            "not visible before commit"
        );
        let names = names_in(dir.path());
        assert_eq!(names.len(), 2, "{names:?}");
        let temp = names.iter().find(|n| *n != "value.json").expect("a temp");
        let random = temp
            .strip_prefix(".value.json.")
            .and_then(|rest| rest.strip_suffix(".tmp"));
        assert!(random.is_some_and(|r| !r.is_empty()), "{temp}");
        file.commit().expect("commit");
        assert_eq!(fs::read(&dest).expect("read"), b"new contents");
        assert_eq!(names_in(dir.path()), ["value.json"]);
        write_atomic(&dest, b"again", Mode::Masked(0o600)).expect("write_atomic");
        assert_eq!(fs::read(&dest).expect("read"), b"again");
        assert_eq!(names_in(dir.path()), ["value.json"]);
    }

    #[test]
    fn dropping_without_commit_leaves_the_destination_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dest = dir.path().join("python.wasm");
        fs::write(&dest, b"old").expect("write old");
        let mut file = AtomicFile::create(&dest, Mode::Masked(0o600)).expect("create");
        file.write_all(b"half of a module").expect("write");
        drop(file);
        assert_eq!(fs::read(&dest).expect("read"), b"old");
        assert_eq!(names_in(dir.path()), ["python.wasm"]);
    }

    #[test]
    fn a_failed_rename_removes_the_temporary_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A non-empty folder where the file should go makes the rename fail.
        let dest = dir.path().join("blocked");
        fs::create_dir(&dest).expect("mkdir");
        fs::write(dest.join("inside"), b"x").expect("write");
        assert!(write_atomic(&dest, b"x", Mode::Masked(0o600)).is_err());
        assert_eq!(names_in(dir.path()), ["blocked"]);
    }

    #[test]
    fn temporary_names_are_random_not_derived_from_the_process() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dest = dir.path().join("config.json");
        let first = AtomicFile::create(&dest, Mode::Masked(0o600)).expect("first");
        let second = AtomicFile::create(&dest, Mode::Masked(0o600)).expect("second");
        assert_ne!(first.temp.path(), second.temp.path());
        let pid = std::process::id().to_string();
        for name in names_in(dir.path()) {
            assert!(!name.contains(&pid), "{name} names the process");
        }
    }

    #[test]
    fn planted_files_and_symlinks_are_never_written_through() {
        let dir = tempfile::tempdir().expect("temp dir");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").expect("write victim");
        let dest = dir.path().join("config.json");
        // Symlinks under every name a guesser might try, including the file's own name.
        for name in [".config.json.tmp", "config.json.tmp", "config.tmp"] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).expect("symlink");
        }
        std::os::unix::fs::symlink(&victim, &dest).expect("symlink");
        write_atomic(&dest, b"new", Mode::Masked(0o600)).expect("write");
        assert_eq!(fs::read(&victim).expect("read"), b"precious");
        assert!(!fs::symlink_metadata(&dest).expect("stat").is_symlink());
        assert_eq!(fs::read(&dest).expect("read"), b"new");
    }

    #[test]
    fn modes_are_masked_or_exact_as_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let private = dir.path().join("private");
        write_atomic(&private, b"x", Mode::Masked(0o600)).expect("write");
        assert_eq!(mode_of(&private), 0o600);
        // Bits a usual umask (022, 077) would take away are kept when exact.
        let exact = dir.path().join("exact");
        write_atomic(&exact, b"x", Mode::Exact(0o100_666)).expect("write");
        assert_eq!(mode_of(&exact), 0o666);
        write_atomic(&exact, b"x", Mode::Exact(0o604)).expect("write");
        assert_eq!(mode_of(&exact), 0o604);
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let err = AtomicFile::create("/", Mode::Masked(0o600)).expect_err("no file name");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
