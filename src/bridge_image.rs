//! The bridge's own container image (`image build --bridge`), for people who deploy MCP
//! servers as containers: the sandbox root filesystem, this binary, and the WASI
//! interpreter already provisioned and compiled, serving streamable HTTP as `nobody`.
//!
//! Nothing in it needs privileges: sessions run on the WASI backend, inside the bridge's
//! own process, so the image runs in an ordinary pod (non-root, read-only root filesystem,
//! all capabilities dropped). It is imported into the local engine, never pulled.
//!
//! Layout of what is laid over the root filesystem:
//!
//! ```text
//! /usr/local/bin/mcp-server-code-execution-mode   this binary
//! /opt/mcp-bridge/cache/python-wasm/...           the interpreters (MCP_BRIDGE_CACHE_DIR)
//! /opt/mcp-bridge/cache/modules/*.cwasm           compiled for this machine, with snapshots
//! /var/lib/mcp-bridge/                            saved sessions and tools (0700, nobody)
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sandbox_container::ImageSettings;

use crate::mcp::http::DEFAULT_LISTEN;

/// Repository of the bridge image; the tag is this build's version.
pub const REPOSITORY: &str = "localhost/mcp-server-code-execution-mode";

/// Where the binary is in the image.
pub const BINARY: &str = "/usr/local/bin/mcp-server-code-execution-mode";

/// The image's cache directory (`MCP_BRIDGE_CACHE_DIR`): read-only at run time.
pub const CACHE_DIR: &str = "/opt/mcp-bridge/cache";

/// The image's state directory (`MCP_BRIDGE_STATE_DIR`): mount a volume here to keep
/// sessions across restarts, or share one between replicas.
pub const STATE_DIR: &str = "/var/lib/mcp-bridge";

/// The user the bridge runs as (`nobody`, which every Debian tree has).
pub const USER_ID: u32 = 65534;

/// The parts of the cache the image carries: the interpreters and their compiled modules.
const CACHE_PARTS: [&str; 2] = ["python-wasm", "modules"];

/// Why the image could not be staged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeImageError {
    /// A file could not be copied or a directory made.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The cache has no provisioned interpreter to put in the image.
    #[error(
        "the cache {0} has no provisioned WASI interpreter; run `provision` (the image build \
         does it first)"
    )]
    NotProvisioned(PathBuf),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BridgeImageError {
    let path = path.to_path_buf();
    move |source| BridgeImageError::Io {
        action,
        path,
        source,
    }
}

/// The image's name: [`REPOSITORY`] tagged with this build's version.
pub fn image_name() -> String {
    format!("{REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

/// The image's settings: `nobody`, the WASI backend, the cache and state directories
/// above, and `run --transport http` on all interfaces (a token is then required: the
/// server refuses to start without `MCP_BRIDGE_HTTP_TOKEN`).
pub fn settings() -> ImageSettings {
    let port = DEFAULT_LISTEN
        .parse::<std::net::SocketAddr>()
        .expect("the default address parses")
        .port();
    ImageSettings {
        user: format!("{USER_ID}:{USER_ID}"),
        working_dir: "/tmp".to_owned(),
        env: vec![
            "PATH=/usr/local/bin:/usr/bin:/bin".to_owned(),
            "HOME=/tmp".to_owned(),
            "MCP_BRIDGE_BACKEND=wasi".to_owned(),
            format!("MCP_BRIDGE_CACHE_DIR={CACHE_DIR}"),
            format!("MCP_BRIDGE_STATE_DIR={STATE_DIR}"),
        ],
        exposed_ports: vec![format!("{port}/tcp")],
        entrypoint: vec![BINARY.to_owned()],
        cmd: ["run", "--transport", "http", "--listen"]
            .into_iter()
            .map(str::to_owned)
            .chain([format!("0.0.0.0:{port}")])
            .collect(),
    }
}

/// Lays out in `staging` what goes over the root filesystem: `exe` as [`BINARY`], the
/// interpreters of `cache` under [`CACHE_DIR`] (lock files left out; everything readable by
/// the bridge's user, nothing writable by it), and [`STATE_DIR`] owned by [`USER_ID`] when
/// this process may give it away (as root), else open to it.
pub fn stage(staging: &Path, exe: &Path, cache: &Path) -> Result<(), BridgeImageError> {
    if !cache.join("python-wasm").is_dir() || !cache.join("modules").is_dir() {
        return Err(BridgeImageError::NotProvisioned(cache.to_path_buf()));
    }
    let binary = staging.join(BINARY.trim_start_matches('/'));
    make_dir(binary.parent().expect("the binary's path has a directory"))?;
    fs::copy(exe, &binary).map_err(io_error("copy the binary to", &binary))?;
    set_mode(&binary, 0o755)?;
    let cache_to = staging.join(CACHE_DIR.trim_start_matches('/'));
    for part in CACHE_PARTS {
        copy_tree(&cache.join(part), &cache_to.join(part))?;
    }
    let state = staging.join(STATE_DIR.trim_start_matches('/'));
    make_dir(&state)?;
    if std::os::unix::fs::chown(&state, Some(USER_ID), Some(USER_ID)).is_ok() {
        set_mode(&state, 0o700)?;
    } else {
        set_mode(&state, 0o1777)?;
    }
    Ok(())
}

fn make_dir(path: &Path) -> Result<(), BridgeImageError> {
    fs::create_dir_all(path).map_err(io_error("create", path))?;
    set_mode(path, 0o755)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BridgeImageError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_error("set the mode of", path))
}

/// Copies the directory `from` to `to`: directories 0755, files 0644, lock files and
/// anything but plain files and directories (a half-written file's temporary name is a
/// plain file, but never one a reader opens) left out.
fn copy_tree(from: &Path, to: &Path) -> Result<(), BridgeImageError> {
    make_dir(to)?;
    for entry in fs::read_dir(from).map_err(io_error("read", from))? {
        let entry = entry.map_err(io_error("read", from))?;
        let kind = entry.file_type().map_err(io_error("read", &entry.path()))?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file()
            && entry
                .path()
                .extension()
                .is_none_or(|extension| extension != "lock")
        {
            fs::copy(entry.path(), &target).map_err(io_error("copy", &entry.path()))?;
            set_mode(&target, 0o644)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_lays_out_the_binary_the_interpreters_and_the_state_directory() {
        let cache = tempfile::tempdir().unwrap();
        fs::create_dir_all(cache.path().join("python-wasm/3.15.0-x/lib")).unwrap();
        fs::write(
            cache.path().join("python-wasm/3.15.0-x/python.wasm"),
            b"wasm",
        )
        .unwrap();
        fs::write(cache.path().join("python-wasm/3.15.0-x.lock"), b"").unwrap();
        fs::create_dir_all(cache.path().join("modules")).unwrap();
        fs::write(cache.path().join("modules/python-a.cwasm"), b"native").unwrap();
        fs::create_dir_all(cache.path().join("rootfs/big")).unwrap();
        let exe = cache.path().join("exe");
        fs::write(&exe, b"\x7fELF").unwrap();

        let staging = tempfile::tempdir().unwrap();
        stage(staging.path(), &exe, cache.path()).unwrap();
        let at = |p: &str| staging.path().join(p.trim_start_matches('/'));
        assert_eq!(fs::read(at(BINARY)).unwrap(), b"\x7fELF");
        let cached = at(CACHE_DIR);
        assert_eq!(
            fs::read(cached.join("python-wasm/3.15.0-x/python.wasm")).unwrap(),
            b"wasm"
        );
        assert!(cached.join("modules/python-a.cwasm").is_file());
        assert!(!cached.join("python-wasm/3.15.0-x.lock").exists());
        assert!(
            !cached.join("rootfs").exists(),
            "only the interpreters go in"
        );
        assert!(at(STATE_DIR).is_dir());
    }

    #[test]
    fn an_unprovisioned_cache_is_refused() {
        let cache = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        let error = stage(staging.path(), Path::new("/bin/true"), cache.path()).unwrap_err();
        assert!(matches!(error, BridgeImageError::NotProvisioned(_)));
    }

    #[test]
    fn the_image_serves_http_as_nobody_on_the_wasi_backend() {
        let settings = settings();
        assert_eq!(settings.user, "65534:65534");
        assert!(settings.env.contains(&"MCP_BRIDGE_BACKEND=wasi".to_owned()));
        assert_eq!(settings.cmd[..3], ["run", "--transport", "http"]);
        assert_eq!(settings.exposed_ports, ["8765/tcp"]);
        assert!(image_name().starts_with("localhost/mcp-server-code-execution-mode:"));
    }
}
