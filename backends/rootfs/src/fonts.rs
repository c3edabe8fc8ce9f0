//! matplotlib's font cache, built once into the tree so a session's first plot does not
//! scan fonts.
//!
//! matplotlib keeps its font list (`fontlist-v*.json`) in its cache directory, and reads
//! it only from a directory it can write to (else it makes a temporary one and scans every
//! font again). The sandbox root is read-only, so the guest runtime, just before user code
//! first imports matplotlib, makes `/tmp/matplotlib` its config dir and copies the list made
//! here, under [`FONT_CACHE_DIR`], into it (`figures.py` in the runtime; a test checks the
//! two agree on the path). Sessions that never plot pay nothing.
//!
//! The list is made by matplotlib itself, run by the tree's interpreter inside the tree:
//! `chroot` as the sandbox's unprivileged user (`65534:65534`), in a network namespace of
//! its own (`unshare --net`), with an environment of our own. So the only code from the
//! wheels that ever runs on the host runs unprivileged, without network, seeing only the
//! tree. The directory is handed back to root and made read-only afterwards.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::process::Command;

use crate::stack::run;
use crate::{RootfsError, io_error};

/// Where the tree keeps matplotlib's prebuilt font list (absolute, inside the tree).
pub const FONT_CACHE_DIR: &str = "/usr/share/mcp-sandbox/matplotlib";
/// The sandbox's unprivileged user and group.
const NOBODY: u32 = 65_534;

/// Build matplotlib's font list under [`FONT_CACHE_DIR`] in `tree`.
pub(crate) async fn build_font_cache(tree: &Path) -> Result<(), RootfsError> {
    let dir = tree.join(FONT_CACHE_DIR.trim_start_matches('/'));
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(io_error("cannot create", &dir))?;
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY))
        .map_err(io_error("cannot hand to the sandbox user", &dir))?;
    let mut command = Command::new("unshare");
    command
        .args(["--net", "--fork", "chroot", "--userspec=65534:65534"])
        .arg(tree)
        .args([
            "/usr/bin/python3",
            "-I",
            "-S",
            "-c",
            "import matplotlib.font_manager",
        ])
        .env_clear()
        // `chroot` is in sbin.
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("MPLBACKEND", "Agg")
        .env("MPLCONFIGDIR", FONT_CACHE_DIR);
    let outcome = run(command, "matplotlib's font cache").await;
    // Back to root and read-only whatever happened, so nothing stays the sandbox user's.
    let mut entries = tokio::fs::read_dir(&dir)
        .await
        .map_err(io_error("cannot read", &dir))?;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(io_error("cannot read", &dir))?
    {
        let path = entry.path();
        std::os::unix::fs::chown(&path, Some(0), Some(0))
            .map_err(io_error("cannot hand back to root", &path))?;
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .await
            .map_err(io_error("cannot set the mode of", &path))?;
    }
    std::os::unix::fs::chown(&dir, Some(0), Some(0))
        .map_err(io_error("cannot hand back to root", &dir))?;
    tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .await
        .map_err(io_error("cannot set the mode of", &dir))?;
    outcome?;
    if !has_font_list(&dir) {
        return Err(RootfsError::NoFontCache { dir });
    }
    Ok(())
}

/// True when `dir` holds a matplotlib font list.
fn has_font_list(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("fontlist-v") && name.ends_with(".json")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_runtime_copies_the_list_from_where_it_is_built() {
        let line = format!("MATPLOTLIB_PREBUILT_CACHE = \"{FONT_CACHE_DIR}\"");
        assert!(
            sandbox_core::guest::RUNTIME_SOURCE.contains(&line),
            "the runtime's figures.py must read the list at {FONT_CACHE_DIR}"
        );
    }
}
