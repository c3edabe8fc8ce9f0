//! matplotlib's font cache, built once into the tree so a session's first plot does not
//! scan fonts.
//!
//! matplotlib keeps its font list (`fontlist-v*.json`) in its cache directory, and reads
//! it only from a directory it can write to (else it makes a temporary one and scans every
//! font again). The sandbox root is read-only, so the guest's `MPLCONFIGDIR` is on its
//! scratch `/tmp` ([`crate::GUEST_ENV`]), empty when a session starts. The backends
//! therefore start the interpreter through [`SEED_THEN_EXEC`]: a shell that copies the list
//! made here, under [`FONT_CACHE_DIR`], to `MPLCONFIGDIR` (one `cp` of a few kilobytes),
//! then replaces itself with the interpreter.
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
/// The guest's matplotlib directory, on the scratch `/tmp` (the `MPLCONFIGDIR` of
/// [`crate::GUEST_ENV`]).
pub const MPL_CONFIG_DIR: &str = "/tmp/matplotlib";
/// Put before the interpreter's command line (in a tree of ours): copy [`FONT_CACHE_DIR`]
/// to [`MPL_CONFIG_DIR`], then `exec` the rest (`"$0" "$@"`). A tree without the list
/// (an older or foreign one) just starts the interpreter. The shell's own `PWD` is dropped:
/// the guest's environment stays exactly [`crate::GUEST_ENV`] and what a spec grants.
pub const SEED_THEN_EXEC: [&str; 3] = [
    "/bin/sh",
    "-c",
    "cp -R /usr/share/mcp-sandbox/matplotlib /tmp/matplotlib 2>/dev/null; unset PWD; exec \"$0\" \"$@\"",
];
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
    fn the_seed_copies_the_tree_list_to_the_guest_config_dir() {
        let script = SEED_THEN_EXEC[2];
        assert!(script.starts_with(&format!("cp -R {FONT_CACHE_DIR} {MPL_CONFIG_DIR} ")));
        assert!(crate::GUEST_ENV.contains(&format!("MPLCONFIGDIR={MPL_CONFIG_DIR}").as_str()));
    }

    #[test]
    fn the_seed_runs_the_program_after_it_with_its_arguments() {
        let out = std::process::Command::new(SEED_THEN_EXEC[0])
            .args(&SEED_THEN_EXEC[1..])
            .args(["printf", "%s|", "a b", "c"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|c|");
    }

    #[test]
    fn the_seed_adds_nothing_to_the_environment() {
        let out = std::process::Command::new(SEED_THEN_EXEC[0])
            .args(&SEED_THEN_EXEC[1..])
            .arg("/usr/bin/env")
            .env_clear()
            .env("KEPT", "1")
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "KEPT=1\n");
    }
}
