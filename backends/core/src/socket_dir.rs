//! Directories of listening unix sockets that one sandbox reaches through a read-only bind
//! mount, and nobody else on the host can.
//!
//! Per bridge process there is one directory under the temp dir, named by a prefix and the
//! process id, that nobody else may list: mode 0700 where the engine mounts as us (podman,
//! docker), 0711 where the runtime mounts as the sandbox's shifted root and must pass through
//! it (libcontainer). Each [`SocketDir`] is a fresh directory inside it with a random 128-bit
//! name, so no one who cannot list the parent finds it, mode 0711, whose sockets are mode
//! 0666: the sandbox's user, who is not us, connects to them once the directory is mounted. The mount point inside the sandbox is the
//! directory itself. The directory is removed when its [`SocketDir`] is dropped;
//! [`remove_orphaned`] removes those of bridge processes that died without doing so.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// The per-process directory of `prefix`: `<temp dir>/<prefix><pid>`.
pub fn process_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}{}", std::process::id()))
}

/// [`process_dir`], made if it is not there yet, with `mode`.
pub fn private_process_dir(prefix: &str, mode: u32) -> std::io::Result<PathBuf> {
    let dir = process_dir(prefix);
    if !dir.exists() {
        std::fs::create_dir_all(&dir)?;
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
    Ok(dir)
}

/// Removes the per-process directories of `prefix` whose bridge process no longer runs.
pub fn remove_orphaned(prefix: &str) {
    remove_orphaned_in(&std::env::temp_dir(), prefix);
}

/// Removes the directories `<base>/<prefix><pid>` whose process no longer runs (a bridge
/// killed with SIGKILL cannot remove its own). Only this user's directories are touched;
/// names that carry no pid are left alone.
pub fn remove_orphaned_in(base: &Path, prefix: &str) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let uid = std::fs::metadata("/proc/self").map(|meta| meta.uid()).ok();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let ours = entry
            .metadata()
            .is_ok_and(|meta| meta.is_dir() && Some(meta.uid()) == uid);
        if ours && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// One sandbox's socket directory, removed when dropped.
#[derive(Debug)]
pub struct SocketDir {
    dir: PathBuf,
}

impl SocketDir {
    /// A fresh, empty directory, under a random name, in the per-process directory of
    /// `prefix`, which gets `parent_mode` (0700 or 0711).
    pub fn open(prefix: &str, parent_mode: u32) -> std::io::Result<Self> {
        let parent = private_process_dir(prefix, parent_mode)?;
        let dir = parent.join(format!("s{:032x}", rand::random::<u128>()));
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
        Ok(Self { dir })
    }

    /// Listens on the socket `name` in this directory, which any user who reaches the
    /// directory may connect to (the sandbox's user is not us).
    pub fn listen(&self, name: &str) -> std::io::Result<UnixListener> {
        let path = self.dir.join(name);
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        Ok(listener)
    }

    /// The host directory, to bind-mount into the sandbox.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "sandbox-core-socket-dir-test-";

    #[tokio::test]
    async fn a_socket_dir_is_unlisted_passable_and_removed_on_drop() {
        let dir = SocketDir::open(PREFIX, 0o711).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&process_dir(PREFIX)), 0o711);
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(name.len(), 33, "{name}");
        assert_eq!(mode(dir.path()), 0o711);
        let _listener = dir.listen("a.sock").unwrap();
        let socket = dir.path().join("a.sock");
        assert_eq!(mode(&socket), 0o666);
        tokio::net::UnixStream::connect(&socket).await.unwrap();
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
        let other = SocketDir::open(PREFIX, 0o711).unwrap();
        assert_ne!(other.path(), path);
    }

    #[test]
    fn directories_of_dead_processes_are_removed_and_ours_kept() {
        let ours = private_process_dir(PREFIX, 0o711).unwrap();
        // Pids beyond the kernel's maximum (4194304) never run.
        let dead = std::env::temp_dir().join(format!("{PREFIX}4294967295"));
        std::fs::create_dir_all(&dead).unwrap();
        remove_orphaned(PREFIX);
        assert!(!dead.exists());
        assert!(ours.exists());
    }

    #[test]
    fn any_directory_can_be_swept_and_names_without_a_pid_are_kept() {
        let base = tempfile::tempdir().unwrap();
        let live = base.path().join(format!("{PREFIX}{}", std::process::id()));
        let dead = base.path().join(format!("{PREFIX}4294967295"));
        let other = base.path().join(format!("{PREFIX}notapid"));
        for dir in [&live, &dead, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        std::fs::write(dead.join("podman.sock"), b"").unwrap();
        remove_orphaned_in(base.path(), PREFIX);
        assert!(live.exists(), "a running process's directory was removed");
        assert!(!dead.exists(), "a dead process's directory is still there");
        assert!(other.exists(), "a directory that names no pid was removed");
    }
}
