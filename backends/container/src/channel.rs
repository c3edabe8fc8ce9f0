//! The guest's standard streams over unix sockets, not the engine's attach stream.
//!
//! Podman relays an attached stream through conmon and its API service, which costs a
//! couple of milliseconds per round trip; a unix socket costs what a pipe does. Per session
//! the host makes a directory (mode 0711, inside a per-process directory of mode 0700, so no
//! other host user can reach it) holding two listening sockets, bind-mounts it read-only
//! into the container at [`GUEST_DIR`], and the guest's bootstrap connects to both and puts
//! them on its fds 0/1 and 2. Each socket accepts one connection, then its file is removed:
//! nothing is left to connect to.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

/// Where the guest sees the socket directory.
pub(crate) const GUEST_DIR: &str = "/run/mcp";
/// The stdin/stdout socket's name.
const IO_SOCKET: &str = "io.sock";
/// The stderr socket's name.
const ERR_SOCKET: &str = "err.sock";

/// Prefix of the per-process directory under the temp dir.
const PROCESS_DIR_PREFIX: &str = "mcp-container-";

/// The per-process directory holding every session's socket directory.
pub(crate) fn process_dir() -> PathBuf {
    std::env::temp_dir().join(format!("{PROCESS_DIR_PREFIX}{}", std::process::id()))
}

/// [`process_dir`], made private (mode 0700) if it is not there yet.
pub(crate) fn private_process_dir() -> std::io::Result<PathBuf> {
    let dir = process_dir();
    if !dir.exists() {
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(dir)
}

/// Remove the socket directories of bridge processes that no longer run.
pub(crate) fn remove_orphaned_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PROCESS_DIR_PREFIX))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// One session's listening sockets.
#[derive(Debug)]
pub(crate) struct Channel {
    dir: PathBuf,
    io: UnixListener,
    err: UnixListener,
}

/// The guest's connected streams.
#[derive(Debug)]
pub(crate) struct Connected {
    /// stdin (host writes) and stdout (host reads).
    pub(crate) io: UnixStream,
    /// stderr (host reads).
    pub(crate) err: UnixStream,
}

impl Channel {
    /// Make a fresh socket directory and listen on both sockets.
    pub(crate) fn open() -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = private_process_dir()?;
        let dir = parent.join(format!("s{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
        let listen = |name: &str| -> std::io::Result<UnixListener> {
            let path = dir.join(name);
            let listener = UnixListener::bind(&path)?;
            // The sandbox user is not us: it may connect, nobody else can reach the dir.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
            Ok(listener)
        };
        let io = listen(IO_SOCKET)?;
        let err = listen(ERR_SOCKET)?;
        Ok(Self { dir, io, err })
    }

    /// The host directory to bind-mount at [`GUEST_DIR`].
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wait for the guest to connect both sockets. The directory is removed when the
    /// channel is dropped.
    pub(crate) async fn accept(&self, within: Duration) -> std::io::Result<Connected> {
        let accepted = tokio::time::timeout(within, async {
            let (io, _) = self.io.accept().await?;
            let (err, _) = self.err.accept().await?;
            Ok::<_, std::io::Error>(Connected { io, err })
        })
        .await;
        match accepted {
            Ok(connected) => connected,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the guest did not connect within {within:?}"),
            )),
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Arguments after the bootstrap that make it connect to the channel.
pub(crate) fn bootstrap_args() -> [&'static str; 2] {
    ["--connect", GUEST_DIR]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_guest_connects_both_streams_and_the_dir_is_removed() {
        let channel = Channel::open().unwrap();
        let dir = channel.dir().to_path_buf();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o711);
        let guest = {
            let dir = dir.clone();
            tokio::spawn(async move {
                let mut io = UnixStream::connect(dir.join(IO_SOCKET)).await.unwrap();
                let mut err = UnixStream::connect(dir.join(ERR_SOCKET)).await.unwrap();
                io.write_all(b"out").await.unwrap();
                err.write_all(b"err").await.unwrap();
            })
        };
        let mut connected = channel.accept(Duration::from_secs(5)).await.unwrap();
        drop(channel);
        guest.await.unwrap();
        let mut text = String::new();
        connected.io.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "out");
        text.clear();
        connected.err.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "err");
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn a_guest_that_never_connects_times_out() {
        let channel = Channel::open().unwrap();
        let dir = channel.dir().to_path_buf();
        let e = channel.accept(Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        drop(channel);
        assert!(!dir.exists());
    }
}
