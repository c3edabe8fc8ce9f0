//! The guest's standard streams over unix sockets, not the engine's attach stream.
//!
//! Podman relays an attached stream through conmon and its API service, which costs a
//! couple of milliseconds per round trip; a unix socket costs what a pipe does. Per session
//! the host makes a directory (mode 0711, inside a per-process directory of mode 0700, so no
//! other host user can reach it) holding two listening sockets, bind-mounts it read-only
//! into the container at [`GUEST_DIR`], and the guest's bootstrap connects to both and puts
//! them on its fds 0/1 and 2. Each socket accepts one connection, then its file is removed:
//! nothing is left to connect to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sandbox_core::socket_dir::{self, SocketDir};
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
    socket_dir::process_dir(PROCESS_DIR_PREFIX)
}

/// The engine mounts as us: nobody else need pass through the per-process directory.
const PROCESS_DIR_MODE: u32 = 0o700;

/// [`process_dir`], made private (mode 0700) if it is not there yet.
pub(crate) fn private_process_dir() -> std::io::Result<PathBuf> {
    socket_dir::private_process_dir(PROCESS_DIR_PREFIX, PROCESS_DIR_MODE)
}

/// Remove the socket directories of bridge processes that no longer run.
pub(crate) fn remove_orphaned_dirs() {
    socket_dir::remove_orphaned(PROCESS_DIR_PREFIX);
}

/// One session's listening sockets.
#[derive(Debug)]
pub(crate) struct Channel {
    dir: SocketDir,
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
        let dir = SocketDir::open(PROCESS_DIR_PREFIX, PROCESS_DIR_MODE)?;
        let io = dir.listen(IO_SOCKET)?;
        let err = dir.listen(ERR_SOCKET)?;
        Ok(Self { dir, io, err })
    }

    /// The host directory to bind-mount at [`GUEST_DIR`].
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
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

/// Arguments after the bootstrap that make it connect to the channel.
pub(crate) fn bootstrap_args() -> [&'static str; 2] {
    ["--connect", GUEST_DIR]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
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
