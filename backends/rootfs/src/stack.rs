//! The scientific stack inside the tree: pinned binary wheels, installed by the host's pip
//! without running anything from them on the host.
//!
//! Why wheels rather than Debian's packages: bookworm packages numpy 1.24 and pandas 1.5,
//! two major versions behind the WASI interpreter's numpy 2 and pandas 3, so the same user
//! code would behave differently per backend (pandas 3's copy-on-write and string dtype,
//! numpy 2's scalar repr and removed aliases). PyPI still publishes manylinux wheels for
//! CPython 3.11 (bookworm's python3) of numpy 2, pandas 3 and the rest, so the containers
//! get the same major versions.
//!
//! What it trusts and guarantees:
//! - `stack/requirements.lock` (committed, made by `stack/lock.py`) pins every
//!   distribution of the stack's closure to one version and the sha256 of each wheel;
//!   pip runs with `--require-hashes --no-deps --only-binary=:all:`, so it installs
//!   exactly those files or fails. No sdist is ever fetched, so no build script runs.
//! - Wheels are unpacked for the tree's interpreter (`--python-version`, `--platform` for
//!   the host's architecture, `--abi cp311`), not for the host's Python, with
//!   `--no-compile`: nothing of them is imported on the host.
//! - They land in the tree's standard library directory, because the guest runs
//!   `python3 -I -S`, whose path holds no site directory (as the WASI interpreter keeps its
//!   stack in its standard library archive). A name that would shadow a file of the
//!   standard library fails the build instead.
//! - pip itself is in the stack, so code in a sandbox with the package index allowed can
//!   install more through the bridge's proxy; `/usr/bin/pip` runs `python3 -m pip`.
//! - Bytecode is then compiled by the tree's own interpreter (`chroot`; compiling does not
//!   run the modules), so imports under the read-only root never recompile.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;
use tracing::info;

use crate::{RootfsError, io_error, relay};

/// The tree's CPython version (Debian bookworm's `python3`).
pub const TREE_PYTHON: &str = "3.11";
/// The lock: each distribution of the stack, its version and its wheels' sha256.
pub const LOCK: &str = include_str!("../stack/requirements.lock");
/// manylinux tags the tree's glibc (2.36) runs, as pip wants them listed.
const MANYLINUX: [&str; 9] = [
    "manylinux1",
    "manylinux2014",
    "manylinux_2_5",
    "manylinux_2_17",
    "manylinux_2_24",
    "manylinux_2_26",
    "manylinux_2_27",
    "manylinux_2_28",
    "manylinux_2_34",
];

/// The tree's standard library directory, relative to the tree.
pub fn stdlib_dir() -> PathBuf {
    Path::new("usr/lib").join(format!("python{TREE_PYTHON}"))
}

/// Names of the top-level distributions in the lock with their versions, in lock order.
pub fn locked() -> impl Iterator<Item = (&'static str, &'static str)> {
    LOCK.lines()
        .filter(|line| !line.starts_with([' ', '#']))
        .filter_map(|line| line.split_whitespace().next()?.split_once("=="))
}

/// Install the locked stack into `tree` with `pip_python -m pip`, then compile it with the
/// tree's interpreter.
pub(crate) async fn install(tree: &Path, pip_python: &Path) -> Result<(), RootfsError> {
    let stdlib = tree.join(stdlib_dir());
    if !stdlib.join("os.py").is_file() {
        return Err(RootfsError::NoTreePython { expected: stdlib });
    }
    let staging = tree.join("var/tmp/mcp-stack");
    let lock_path = tree.join("var/tmp/mcp-stack.lock");
    tokio::fs::write(&lock_path, LOCK)
        .await
        .map_err(io_error("cannot write", &lock_path))?;
    let arch = std::env::consts::ARCH;
    info!(
        distributions = locked().count(),
        arch, "installing the scientific stack's pinned wheels with pip"
    );
    let started = std::time::Instant::now();
    let mut pip = Command::new(pip_python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
    ])
    .args([
        "--only-binary=:all:",
        "--no-deps",
        "--require-hashes",
        "--no-compile",
    ])
    .args([
        "--python-version",
        TREE_PYTHON,
        "--implementation",
        "cp",
        "--abi",
        "cp311",
    ])
    .args(
        MANYLINUX
            .iter()
            .flat_map(|tag| ["--platform".to_string(), format!("{tag}_{arch}")]),
    )
    .arg("--target")
    .arg(&staging)
    .arg("--requirement")
    .arg(&lock_path);
    run(pip, "pip install").await?;
    move_into(&staging, &stdlib).await?;
    write_pip_commands(tree).await?;
    for leftover in [&staging, &lock_path] {
        let _ = tokio::fs::remove_dir_all(leftover).await;
        let _ = tokio::fs::remove_file(leftover).await;
    }
    info!(
        seconds = started.elapsed().as_secs_f64(),
        "wheels installed; compiling their bytecode with the tree's python"
    );
    let mut compile = Command::new("chroot");
    compile
        .arg(tree)
        .args([
            "/usr/bin/python3",
            "-I",
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
        ])
        .args(["--invalidation-mode", "unchecked-hash"])
        .arg(Path::new("/").join(stdlib_dir()));
    run(compile, "compileall in the tree").await
}

/// Move each top-level entry pip wrote (packages, modules, `.dist-info`) into `stdlib`,
/// refusing one that is already there. Console scripts (`bin/`) are left out: their
/// interpreter line names the host's Python and the guest never runs them.
async fn move_into(staging: &Path, stdlib: &Path) -> Result<(), RootfsError> {
    let mut entries = tokio::fs::read_dir(staging)
        .await
        .map_err(io_error("cannot read", staging))?;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(io_error("cannot read", staging))?
    {
        let name = entry.file_name();
        if name == "bin" {
            continue;
        }
        let destination = stdlib.join(&name);
        if tokio::fs::symlink_metadata(&destination).await.is_ok() {
            return Err(RootfsError::Shadows { path: destination });
        }
        tokio::fs::rename(entry.path(), &destination)
            .await
            .map_err(io_error("cannot move into the tree", &destination))?;
    }
    Ok(())
}

/// `pip` and `pip3` in the tree's `/usr/bin`, running the tree's `python3 -m pip` (the
/// console scripts pip's wheel brings name the host's Python, so they are left out).
async fn write_pip_commands(tree: &Path) -> Result<(), RootfsError> {
    use std::os::unix::fs::PermissionsExt;
    let bin = tree.join("usr/bin");
    tokio::fs::create_dir_all(&bin)
        .await
        .map_err(io_error("cannot create", &bin))?;
    for name in ["pip", "pip3"] {
        let path = bin.join(name);
        tokio::fs::write(&path, "#!/bin/sh\nexec /usr/bin/python3 -m pip \"$@\"\n")
            .await
            .map_err(io_error("cannot write", &path))?;
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .await
            .map_err(io_error("cannot make executable", &path))?;
    }
    Ok(())
}

/// Run `command` to completion, its output relayed to the log; a failure names `what`.
pub(crate) async fn run(mut command: Command, what: &'static str) -> Result<(), RootfsError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(io_error("cannot run", Path::new(what)))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let (tail_out, tail_err) = tokio::join!(relay(stdout, what), relay(stderr, what));
    let status = child
        .wait()
        .await
        .map_err(io_error("cannot wait for", Path::new(what)))?;
    if status.success() {
        Ok(())
    } else {
        Err(RootfsError::Step {
            what,
            status: status.to_string(),
            tail: [tail_out, tail_err].join(" | "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_pins_the_stack_with_hashes() {
        let names: Vec<&str> = locked().map(|(name, _)| name).collect();
        for wanted in [
            "numpy",
            "pandas",
            "scipy",
            "scikit-learn",
            "matplotlib",
            "pyyaml",
        ] {
            assert!(names.contains(&wanted), "{wanted} is not in the lock");
        }
        let numpy = locked().find(|(name, _)| *name == "numpy").unwrap().1;
        assert!(
            numpy.starts_with("2."),
            "numpy {numpy} is not the WASI stack's major"
        );
        let entries = LOCK
            .split("\\\n")
            .filter(|l| l.trim_start().starts_with("--hash=sha256:"));
        assert!(
            entries.count() >= names.len(),
            "every distribution carries a hash"
        );
    }
}
