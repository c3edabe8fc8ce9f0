//! `sandbox-rootfs`: the root filesystem the container backends run the guest in.
//!
//! No container registry is reachable on the machines we target, so the image is made here:
//! `debootstrap --variant=minbase --include=python3,fonts-dejavu-core` builds a minimal
//! Debian tree from the ordinary Debian package archive; the scientific stack is added from
//! pinned wheels ([`stack`]) and matplotlib's font list is built into it ([`fonts`]); the
//! tree is then trimmed (package caches, documentation) and published with an atomic
//! rename. The Podman/Docker backend imports the directory as
//! a local image; the direct OCI backend uses it as its root as it is.
//!
//! A finished tree is never modified again: its directory name carries [`ROOTFS_VERSION`],
//! so a change to what goes in makes a new directory rather than editing one in use.
#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sandbox_core::host::is_root;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tracing::info;

pub mod fonts;
pub mod stack;

/// Version of the tree's recipe; part of its directory and image names. 3: the scientific
/// stack and matplotlib's font list; 4: pip, for installs through the network proxy.
pub const ROOTFS_VERSION: &str = "4";
/// Debian release the tree is built from.
pub const SUITE: &str = "bookworm";
/// File inside a finished tree that names its recipe.
const RELEASE_FILE: &str = "etc/mcp-sandbox-release";
/// Debian packages debootstrap adds to its minimal base.
const INCLUDE: &str = "--include=python3,fonts-dejavu-core";

/// The guest's whole environment in the container and OCI backends (what a spec grants
/// comes on top). matplotlib draws without a display (`Agg`) and keeps its cache on the
/// writable scratch `/tmp`, since the root is read-only.
pub const GUEST_ENV: [&str; 3] = [
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "LANG=C.UTF-8",
    "PYTHONDONTWRITEBYTECODE=1",
];

/// Why a root filesystem could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// debootstrap is not installed.
    #[error(
        "debootstrap is not installed: install the Debian package `debootstrap` (apt-get install debootstrap)"
    )]
    NoDebootstrap,
    /// Building needs root (debootstrap creates device nodes and chowns files).
    #[error(
        "building the root filesystem needs root (debootstrap); run `mcp-server-code-execution-mode image build` as root once"
    )]
    NotRoot,
    /// A step of the build (debootstrap, pip, a program run in the tree) ran and failed.
    #[error("{what} failed ({status}); last output: {tail}")]
    Step {
        /// Which step.
        what: &'static str,
        /// Its exit status.
        status: String,
        /// Its last lines of output.
        tail: String,
    },
    /// The tree has no CPython of the version the stack's wheels are for.
    #[error("the tree has no CPython standard library at {expected}; the stack's wheels are for Python {py}", py = stack::TREE_PYTHON)]
    NoTreePython {
        /// Where it should be.
        expected: PathBuf,
    },
    /// A wheel would overwrite a file of the tree's standard library.
    #[error("installing the stack would shadow {path}, already in the tree")]
    Shadows {
        /// The path already there.
        path: PathBuf,
    },
    /// matplotlib ran but wrote no font list.
    #[error("matplotlib wrote no font list into {dir}")]
    NoFontCache {
        /// Where it should be.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("{what} {path}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError {
    let path = path.to_path_buf();
    move |source| RootfsError::Io { what, path, source }
}

/// Where the tree lives and how it is built.
#[derive(Debug, Clone)]
pub struct Rootfs {
    dir: PathBuf,
    /// The Debian mirror debootstrap builds from (`None`: debootstrap's own default).
    mirror: Option<String>,
    /// The Python whose pip installs the stack's wheels.
    pip_python: PathBuf,
}

impl Rootfs {
    /// The tree under `cache_dir` (normally `~/.cache/mcp-server-code-execution-mode`).
    pub fn in_cache(cache_dir: &Path) -> Self {
        Self {
            dir: cache_dir
                .join("rootfs")
                .join(format!("debian-{SUITE}-python3-v{ROOTFS_VERSION}")),
            mirror: None,
            pip_python: PathBuf::from("python3"),
        }
    }

    /// A tree at `dir`, built elsewhere (by root, for a rootless user).
    pub fn at(dir: PathBuf) -> Self {
        Self {
            dir,
            mirror: None,
            pip_python: PathBuf::from("python3"),
        }
    }

    /// Install the stack's wheels with `python -m pip` (default `python3`).
    #[must_use]
    pub fn with_pip_python(mut self, python: impl Into<PathBuf>) -> Self {
        self.pip_python = python.into();
        self
    }

    /// Build from the Debian mirror `mirror` instead of debootstrap's default.
    #[must_use]
    pub fn with_mirror(mut self, mirror: Option<String>) -> Self {
        self.mirror = mirror;
        self
    }

    /// The tree's directory (present only once built).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when a finished tree is present.
    pub fn is_built(&self) -> bool {
        self.dir.join(RELEASE_FILE).is_file()
    }

    /// The tree, built first if it is missing. Progress goes to the log (stderr). Concurrent
    /// callers, in this process or others, build it once: the others wait on a lock file.
    pub async fn ensure(&self) -> Result<&Path, RootfsError> {
        if self.is_built() {
            return Ok(&self.dir);
        }
        let parent = self.dir.parent().expect("the tree has a parent directory");
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io_error("cannot create", parent))?;
        let lock_path = self.dir.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error("cannot open", &lock_path))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .expect("the lock task does not panic")
            .map_err(io_error("cannot lock", &lock_path))?;
        let outcome = if self.is_built() {
            Ok(())
        } else {
            self.build().await
        };
        drop(lock);
        outcome.map(|()| self.dir.as_path())
    }

    async fn build(&self) -> Result<(), RootfsError> {
        if !is_root() {
            return Err(RootfsError::NotRoot);
        }
        let debootstrap = find_debootstrap().ok_or(RootfsError::NoDebootstrap)?;
        let partial = self
            .dir
            .with_extension(format!("partial-{}", std::process::id()));
        remove_dir_if_present(&partial).await?;
        info!(dir = %self.dir.display(), "building the sandbox root filesystem with debootstrap and the stack's wheels (a few minutes)");
        let started = std::time::Instant::now();
        let outcome = self.fill(debootstrap, &partial).await;
        if outcome.is_err() {
            let _ = tokio::fs::remove_dir_all(&partial).await;
        }
        outcome?;
        // Mount points of the scratch tmpfs, world-writable and sticky like `/tmp`: podman
        // gives a tmpfs mounted over an image directory that directory's mode.
        for mount_point in ["workspace", "tmp"] {
            let path = partial.join(mount_point);
            tokio::fs::create_dir_all(&path)
                .await
                .map_err(io_error("cannot create", &path))?;
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o1777))
                .await
                .map_err(io_error("cannot set the mode of", &path))?;
        }
        // Where granted host directories are mounted (`/data/<name>`): the OCI backend
        // mounts a tmpfs here to hold their mount points, as the root stays read-only.
        let data = partial.join("data");
        tokio::fs::create_dir_all(&data)
            .await
            .map_err(io_error("cannot create", &data))?;
        let release = partial.join(RELEASE_FILE);
        tokio::fs::write(
            &release,
            format!("debian-{SUITE}-python3 recipe v{ROOTFS_VERSION}\n"),
        )
        .await
        .map_err(io_error("cannot write", &release))?;
        tokio::fs::rename(&partial, &self.dir)
            .await
            .map_err(io_error("cannot publish", &self.dir))?;
        info!(
            seconds = started.elapsed().as_secs_f64(),
            dir = %self.dir.display(),
            "sandbox root filesystem ready"
        );
        Ok(())
    }

    /// debootstrap into `partial`, then the stack, the font list and the trim.
    async fn fill(&self, debootstrap: PathBuf, partial: &Path) -> Result<(), RootfsError> {
        let mut command = Command::new(debootstrap);
        command
            .args(["--variant=minbase", INCLUDE, SUITE])
            .arg(partial);
        if let Some(mirror) = &self.mirror {
            command.arg(mirror);
        }
        stack::run(command, "debootstrap").await?;
        stack::install(partial, &self.pip_python).await?;
        fonts::build_font_cache(partial).await?;
        trim(partial).await
    }
}

/// Forward a child's output lines to the log, tagged with `what`; return its last lines.
async fn relay(stream: impl tokio::io::AsyncRead + Unpin, what: &str) -> String {
    let mut lines = BufReader::new(stream).lines();
    let mut tail = std::collections::VecDeque::with_capacity(5);
    while let Ok(Some(line)) = lines.next_line().await {
        info!(step = what, "{line}");
        if tail.len() == 5 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    Vec::from(tail).join(" / ")
}

/// Remove what the sandbox never needs: package caches and lists, documentation.
async fn trim(tree: &Path) -> Result<(), RootfsError> {
    for relative in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
    ] {
        let path = tree.join(relative);
        remove_dir_if_present(&path).await?;
    }
    Ok(())
}

async fn remove_dir_if_present(path: &Path) -> Result<(), RootfsError> {
    match tokio::fs::remove_dir_all(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_error("cannot remove", path)(e))
        }
        _ => Ok(()),
    }
}

fn find_debootstrap() -> Option<PathBuf> {
    ["/usr/sbin/debootstrap", "/usr/bin/debootstrap"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_is_named_by_its_recipe() {
        let rootfs = Rootfs::in_cache(Path::new("/cache"));
        assert_eq!(
            rootfs.dir(),
            Path::new("/cache/rootfs/debian-bookworm-python3-v4")
        );
        assert!(!rootfs.is_built());
    }

    #[test]
    fn a_tree_counts_as_built_only_with_its_release_file() {
        let cache = tempfile::tempdir().unwrap();
        let rootfs = Rootfs::in_cache(cache.path());
        std::fs::create_dir_all(rootfs.dir().join("etc")).unwrap();
        assert!(!rootfs.is_built());
        std::fs::write(rootfs.dir().join(RELEASE_FILE), "x").unwrap();
        assert!(rootfs.is_built());
    }
}
