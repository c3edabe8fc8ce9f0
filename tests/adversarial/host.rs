//! The host side of attacks: secrets planted where the sandbox must not reach, and
//! listeners that tell whether anything from the sandbox arrived.

use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};

/// A token no other run and no file on the machine contains.
pub(crate) fn unique_token(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("adv-{what}-{}-{nanos:x}", std::process::id())
}

/// Marker files with unique content: one in a fresh temp dir of the build tree, one
/// directly in the host's `/tmp`. Removed when dropped.
pub(crate) struct Marker {
    /// What the files hold.
    pub(crate) content: String,
    /// The temp dir holding the first file.
    pub(crate) dir: tempfile::TempDir,
    /// Both files.
    pub(crate) paths: Vec<PathBuf>,
}

impl Marker {
    pub(crate) fn plant() -> Result<Self> {
        let content = unique_token("marker");
        let dir = tempfile::Builder::new()
            .prefix("adv-marker-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
        let in_dir = dir.path().join("secret.txt");
        let in_tmp = PathBuf::from("/tmp").join(format!("{}.txt", unique_token("name")));
        for path in [&in_dir, &in_tmp] {
            std::fs::write(path, &content)?;
        }
        Ok(Self {
            content,
            dir,
            paths: vec![in_dir, in_tmp],
        })
    }

    /// The paths as a Python list literal.
    pub(crate) fn py_paths(&self) -> String {
        let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        serde_json::to_string(&paths).expect("paths serialise")
    }

    /// `text` does not contain the marker's content.
    pub(crate) fn absent_from(&self, text: &str) -> Result<()> {
        ensure!(
            !text.contains(&self.content),
            "the host marker leaked: {text}"
        );
        Ok(())
    }

    /// Names of the marker's temp dir and files, which the sandbox must not see either.
    pub(crate) fn names(&self) -> Vec<String> {
        std::iter::once(self.dir.path())
            .chain(self.paths.iter().map(PathBuf::as_path))
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    /// The marker files are still there, unchanged.
    pub(crate) fn intact(&self) -> Result<()> {
        for path in &self.paths {
            let now = std::fs::read_to_string(path)
                .with_context(|| format!("the marker {} is gone", path.display()))?;
            ensure!(now == self.content, "the marker {} changed", path.display());
        }
        Ok(())
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// This machine's first non-loopback IPv4 address, if it has one (found from the route a
/// UDP socket would take; nothing is sent).
pub(crate) fn host_address() -> Option<IpAddr> {
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    probe.connect((Ipv4Addr::new(10, 255, 255, 254), 9)).ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Addresses of this host the sandbox might try: loopback, and the outward one if any.
pub(crate) fn host_addresses() -> Vec<IpAddr> {
    let mut all = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    all.extend(host_address());
    all
}

/// A non-blocking accept or receive on a trap found nothing.
fn nothing_arrived<T>(polled: std::io::Result<(T, std::net::SocketAddr)>) -> Result<()> {
    match polled {
        Ok((_, from)) => anyhow::bail!("something reached the host's trap from {from}"),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e).context("checking the trap"),
    }
}

/// A TCP listener on every address of the host, which must never see a connection.
pub(crate) struct TcpTrap(TcpListener);

impl TcpTrap {
    pub(crate) fn open() -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        listener.set_nonblocking(true)?;
        Ok(Self(listener))
    }

    pub(crate) fn port(&self) -> Result<u16> {
        Ok(self.0.local_addr()?.port())
    }

    /// Nothing connected.
    pub(crate) fn untouched(&self) -> Result<()> {
        nothing_arrived(self.0.accept())
    }
}

/// A UDP socket on every address of the host, which must never receive a datagram.
pub(crate) struct UdpTrap(UdpSocket);

impl UdpTrap {
    pub(crate) fn open() -> Result<Self> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_nonblocking(true)?;
        Ok(Self(socket))
    }

    pub(crate) fn port(&self) -> Result<u16> {
        Ok(self.0.local_addr()?.port())
    }

    /// Nothing arrived.
    pub(crate) fn untouched(&self) -> Result<()> {
        nothing_arrived(self.0.recv_from(&mut [0u8; 64]))
    }
}

/// The host's name.
pub(crate) fn host_name() -> Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_string())
}

/// The name of the user running the suite (and the bridge).
pub(crate) fn host_user() -> Result<String> {
    let out = std::process::Command::new("id").arg("-un").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
