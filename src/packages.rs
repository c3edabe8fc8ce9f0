//! Packages on demand: wheels resolved and fetched on the host, for the sandbox's own
//! interpreter, and shown to one session read-only.
//!
//! A session gets a directory of its own on the host ([`SessionPackages`]), which its sandbox
//! sees read-only at [`GUEST_DIR`]. `mcp.runtime.install(...)` sends an `install` call with
//! the requirements and what the interpreter says of itself (Python version, machine, C
//! library, the distributions it already has); the host asks its own pip for a `--dry-run`
//! resolution restricted to wheels for that platform, downloads exactly the wheels reported
//! (pinned by sha256) into a content-addressed cache ([`cache`]), unpacks them into a fresh
//! directory beside the session's and renames it into place as the next numbered entry,
//! which the guest then puts on `sys.path`. The sandbox itself never reaches a network.
//!
//! What is trusted: nothing the guest sends. Requirements are a strict subset of PEP 508
//! ([`requirement`]); platform facts are checked and bounded by the backend's family
//! ([`target`]); the distributions the guest says it has only steer which wheels are left
//! out. What it guarantees: pip is always run with `--only-binary=:all:`, so no sdist is
//! built and no build script runs on the host ([`pip`]); a wheel enters the cache only
//! under its own sha256; unpacking checks every path and counts every byte ([`unpack`]); an
//! install either appears whole under a new name or not at all; installs of one session are
//! serialised; a session's directory is removed with the session, and directories of a
//! bridge that died are removed by the next one.

pub mod cache;
pub mod pip;
pub mod requirement;
pub mod target;
pub mod unpack;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use sandbox_core::{RpcError, RpcHandler};
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use cache::{CacheError, WheelCache};
use pip::{Picked, Pip, PipError};
use requirement::{Requirement, canonical_name, check_name, check_version};
use target::{Family, GuestFacts, Target};
use unpack::UnpackError;

/// Where a session's sandbox sees its packages directory: `/mnt`, empty in every Debian
/// tree and image, because a mount point must already exist in a read-only root (OCI).
pub const GUEST_DIR: &str = "/mnt";
/// Most requirements one install may name.
const MAX_REQUIREMENTS: usize = 32;
/// Most distributions the guest may say it has.
const MAX_PROVIDED: usize = 5000;

/// Why an install failed; [`PackageError::kind`] is what the guest's `MCPError` carries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// The feature is off.
    #[error(
        "package installs are turned off on this bridge (MCP_BRIDGE_PACKAGE_INSTALL=off); \
         ask its user to turn them on or to add the package to MCP_BRIDGE_PACKAGES"
    )]
    Disabled,
    /// The call itself is malformed.
    #[error("install: {0}")]
    Invalid(String),
    /// The index has no project of that name.
    #[error("cannot install `{name}`: no such project on the package index")]
    NotFound {
        /// The project.
        name: String,
    },
    /// The project has wheels, none for this sandbox.
    #[error(
        "cannot install `{name}`: it has no wheel for this sandbox's platform, {target}; \
         only wheels are installed, never built"
    )]
    NoWheel {
        /// The project.
        name: String,
        /// The sandbox's platform.
        target: String,
    },
    /// The project publishes only source distributions.
    #[error(
        "cannot install `{name}`: it is published only as a source distribution (sdist), and \
         the bridge installs wheels only (it never runs a package's build on the host)"
    )]
    SdistOnly {
        /// The project.
        name: String,
    },
    /// The wheels are larger than the cache may hold.
    #[error(
        "cannot install {what}: it needs {needed} bytes, over the package cache cap of {cap} \
         bytes (MCP_BRIDGE_PACKAGE_CACHE)"
    )]
    TooLarge {
        /// The requirements.
        what: String,
        /// What they need.
        needed: u64,
        /// The cap.
        cap: u64,
    },
    /// pip could not resolve or fetch them.
    #[error("cannot install {what}")]
    Pip {
        /// The requirements.
        what: String,
        /// pip's failure.
        source: PipError,
    },
    /// The cache refused a wheel.
    #[error("cannot cache the wheels of {what}")]
    Cache {
        /// The requirements.
        what: String,
        /// Why.
        source: CacheError,
    },
    /// A wheel could not be unpacked.
    #[error("cannot unpack the wheel of `{name}`")]
    Unpack {
        /// The project.
        name: String,
        /// Why.
        source: UnpackError,
    },
    /// The host's directories could not be used.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl PackageError {
    /// The kind the guest sees (`MCPError.kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Invalid(_) => "invalid_params",
            Self::NotFound { .. } => "not_found",
            Self::NoWheel { .. } => "no_wheel",
            Self::SdistOnly { .. } => "sdist_only",
            Self::TooLarge { .. } => "too_large",
            Self::Pip { .. } => "install_failed",
            Self::Cache { .. } | Self::Unpack { .. } | Self::Io { .. } => "internal",
        }
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PackageError {
    let path = path.to_path_buf();
    move |source| PackageError::Io {
        action,
        path,
        source,
    }
}

/// What the packages feature is configured with.
#[derive(Debug, Clone)]
pub struct PackageSettings {
    /// Installs are allowed.
    pub enabled: bool,
    /// Requirements installed in every session at its start.
    pub startup: Vec<String>,
    /// Size cap of the wheel cache, and of what one install may unpack.
    pub cache_bytes: u64,
    /// The bridge's cache directory (wheels go under `packages/`); `None`: no cache.
    pub cache_dir: Option<PathBuf>,
    /// Where sessions' package directories are made: a directory every backend can mount
    /// from, which a private home is not (OCI resolves mount sources as the container's
    /// shifted root); [`default_sessions_root`] by default.
    pub sessions_root: PathBuf,
    /// The Python whose pip resolves and downloads.
    pub pip_python: PathBuf,
}

/// The packages service of one bridge.
#[derive(Debug)]
pub struct Packages {
    /// Sessions' directories (`sessions/`) and installs being built (`work/`), one file
    /// system so that an install is renamed into place.
    root: PathBuf,
    family: Family,
    startup: Vec<String>,
    cache: WheelCache,
    pip: Pip,
    next_session: AtomicU64,
}

impl Packages {
    /// The service for sessions of `backend`, or `None` when installs are off (or there is
    /// no cache directory to keep them in).
    pub fn new(settings: &PackageSettings, backend: &str) -> Option<Arc<Self>> {
        if !settings.enabled {
            return None;
        }
        let Some(cache_dir) = &settings.cache_dir else {
            warn!("package installs are unavailable: there is no cache directory");
            return None;
        };
        let root = settings.sessions_root.clone();
        if let Err(e) = prepare_sessions_root(&root) {
            warn!(
                "package installs are unavailable: {}",
                sandbox_core::error_chain(&e)
            );
            return None;
        }
        sweep_dead_sessions(&root.join("sessions"));
        Some(Arc::new(Self {
            cache: WheelCache::new(
                cache_dir.join("packages").join("wheels"),
                settings.cache_bytes,
            ),
            root,
            family: Family::of_backend(backend),
            startup: settings.startup.clone(),
            pip: Pip::new(settings.pip_python.clone()),
            next_session: AtomicU64::new(1),
        }))
    }

    /// Python that installs the startup requirements, run in each new session before it is
    /// handed out; `None` when there are none.
    pub fn startup_code(&self) -> Option<String> {
        if self.startup.is_empty() {
            return None;
        }
        let list = serde_json::to_string(&self.startup).expect("strings encode");
        Some(format!(
            "await __import__('mcp.runtime', fromlist=['install']).install(*{list})"
        ))
    }

    /// A new, empty packages directory for one session.
    pub fn open_session(self: &Arc<Self>) -> Result<SessionPackages, PackageError> {
        let sessions = self.root.join("sessions");
        fs::create_dir_all(&sessions).map_err(io_error("create", &sessions))?;
        let n = self.next_session.fetch_add(1, Ordering::Relaxed);
        let dir = sessions.join(format!("{}-{n}", std::process::id()));
        fs::create_dir(&dir).map_err(io_error("create", &dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .map_err(io_error("set the mode of", &dir))?;
        Ok(SessionPackages {
            packages: self.clone(),
            dir,
            installs: tokio::sync::Mutex::new(0),
        })
    }

    /// Resolve, fetch and unpack `requirements` for `target` into a new directory, which is
    /// returned (inside `work`) with the wheels in it; the caller renames it into place.
    async fn build(
        &self,
        requirements: &[Requirement],
        target: &Target,
        provided: &[(String, String)],
        work: &Path,
    ) -> Result<(PathBuf, Vec<Picked>, Vec<String>), PackageError> {
        let what = requirements
            .iter()
            .map(|r| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let links = work.join("provided");
        let constraints = work.join("constraints.txt");
        write_provided(&links, &constraints, provided)?;
        let texts: Vec<String> = requirements
            .iter()
            .map(|r| r.as_str().to_string())
            .collect();
        let picked = match self
            .pip
            .resolve(target, &texts, &links, &constraints, work)
            .await
        {
            Ok(picked) => picked,
            Err(source) => return Err(self.explain(source, &what, target, work).await),
        };
        let provided_names: HashSet<String> = provided
            .iter()
            .map(|(name, _)| canonical_name(name))
            .collect();
        let (already, wanted): (Vec<Picked>, Vec<Picked>) = picked
            .into_iter()
            .partition(|p| provided_names.contains(&canonical_name(&p.name)));
        let already: Vec<String> = already
            .into_iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect();
        for wheel in &wanted {
            let file = wheel.url.rsplit('/').next().unwrap_or_default();
            let is_wheel = Path::new(file)
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("whl"));
            if !is_wheel || wheel.sha256.is_empty() {
                return Err(PackageError::Invalid(format!(
                    "pip picked {} for `{}`, not a wheel with a sha256",
                    file, wheel.name
                )));
            }
        }
        let missing: Vec<&Picked> = wanted
            .iter()
            .filter(|w| self.cache.get(&w.sha256).is_none())
            .collect();
        if !missing.is_empty() {
            let dest = work.join("download");
            fs::create_dir_all(&dest).map_err(io_error("create", &dest))?;
            self.pip
                .download(target, &missing, work, &dest)
                .await
                .map_err(|source| PackageError::Pip {
                    what: what.clone(),
                    source,
                })?;
            let mut needed = 0;
            let mut files = Vec::new();
            for entry in fs::read_dir(&dest).map_err(io_error("read", &dest))? {
                let path = entry.map_err(io_error("read", &dest))?.path();
                needed += fs::metadata(&path).map_or(0, |m| m.len());
                files.push(path);
            }
            if needed > self.cache.cap_bytes() {
                return Err(PackageError::TooLarge {
                    what,
                    needed,
                    cap: self.cache.cap_bytes(),
                });
            }
            for wheel in &missing {
                let file = wheel.url.rsplit('/').next().unwrap_or_default();
                let path = dest.join(percent_decode(file));
                self.cache
                    .add(&path, &wheel.sha256)
                    .map_err(|source| PackageError::Cache {
                        what: what.clone(),
                        source,
                    })?;
            }
        }
        let site = work.join("site");
        fs::create_dir(&site).map_err(io_error("create", &site))?;
        let mut budget = self.cache.cap_bytes();
        for wheel in &wanted {
            let cached = self
                .cache
                .get(&wheel.sha256)
                .ok_or_else(|| PackageError::Io {
                    action: "find the cached wheel of",
                    path: PathBuf::from(&wheel.name),
                    source: std::io::ErrorKind::NotFound.into(),
                })?;
            let written =
                unpack::unpack_wheel(&cached, &site, budget).map_err(|source| match source {
                    UnpackError::TooLarge { .. } => PackageError::TooLarge {
                        what: what.clone(),
                        needed: budget.saturating_add(1),
                        cap: self.cache.cap_bytes(),
                    },
                    source => PackageError::Unpack {
                        name: wheel.name.clone(),
                        source,
                    },
                })?;
            budget -= written;
        }
        open_for_reading(&site)?;
        if let Err(e) = self.cache.evict() {
            warn!("evicting old wheels: {}", sandbox_core::error_chain(&e));
        }
        Ok((site, wanted, already))
    }

    /// Turn pip's failure into the reason a user can act on.
    async fn explain(
        &self,
        source: PipError,
        what: &str,
        target: &Target,
        work: &Path,
    ) -> PackageError {
        let PipError::Failed { tail, .. } = &source else {
            return PackageError::Pip {
                what: what.to_string(),
                source,
            };
        };
        let Some(name) = pip::unmatched_project(tail) else {
            return PackageError::Pip {
                what: what.to_string(),
                source,
            };
        };
        match self.pip.what_the_index_has(&name, target, work).await {
            (false, _) => PackageError::NotFound { name },
            (true, false) => PackageError::SdistOnly { name },
            (true, true) => PackageError::NoWheel {
                name,
                target: target.to_string(),
            },
        }
    }
}

/// One session's packages directory; removed when dropped.
#[derive(Debug)]
pub struct SessionPackages {
    packages: Arc<Packages>,
    dir: PathBuf,
    /// Installs done so far (each is a numbered directory); held during an install.
    installs: tokio::sync::Mutex<u32>,
}

impl Drop for SessionPackages {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl SessionPackages {
    /// The host directory to mount read-only at [`GUEST_DIR`].
    pub fn host_dir(&self) -> &Path {
        &self.dir
    }

    /// Serve one `install` call: check it, install, and say what happened.
    pub async fn install(&self, params: &Map<String, Value>) -> Result<Value, PackageError> {
        let request = InstallRequest::parse(params, self.packages.family)?;
        let mut installs = self.installs.lock().await;
        let work_root = self.packages.root.join("work");
        fs::create_dir_all(&work_root).map_err(io_error("create", &work_root))?;
        let work = tempfile::Builder::new()
            .prefix("install-")
            .tempdir_in(&work_root)
            .map_err(io_error("create a directory in", &work_root))?;
        let (site, wanted, already) = self
            .packages
            .build(
                &request.requirements,
                &request.target,
                &request.provided,
                work.path(),
            )
            .await?;
        let installed: Vec<Value> = wanted
            .iter()
            .map(|w| json!({"name": w.name, "version": w.version}))
            .collect();
        let path = if wanted.is_empty() {
            Value::Null
        } else {
            let number = *installs + 1;
            let into = self.dir.join(number.to_string());
            fs::rename(&site, &into).map_err(io_error("move into place", &into))?;
            *installs = number;
            Value::String(format!("{GUEST_DIR}/{number}"))
        };
        info!(
            installed = ?wanted.iter().map(|w| format!("{} {}", w.name, w.version)).collect::<Vec<_>>(),
            "installed packages for a session"
        );
        Ok(json!({"path": path, "installed": installed, "provided": already}))
    }
}

/// The parts of an `install` call, checked.
struct InstallRequest {
    requirements: Vec<Requirement>,
    target: Target,
    provided: Vec<(String, String)>,
}

impl InstallRequest {
    fn parse(params: &Map<String, Value>, family: Family) -> Result<Self, PackageError> {
        let invalid = |why: &str| PackageError::Invalid(why.to_string());
        let Some(Value::Array(texts)) = params.get("requirements") else {
            return Err(invalid("`requirements` must be a list of strings"));
        };
        if texts.is_empty() || texts.len() > MAX_REQUIREMENTS {
            return Err(invalid("name 1 to 32 requirements"));
        }
        let requirements = texts
            .iter()
            .map(|text| {
                text.as_str()
                    .ok_or_else(|| invalid("`requirements` must be a list of strings"))
                    .and_then(|t| {
                        Requirement::parse(t)
                            .map_err(|why| PackageError::Invalid(format!("not accepted: {why}")))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let text = |name: &str| params.get(name).and_then(Value::as_str);
        let facts = GuestFacts {
            python: text("python").unwrap_or_default(),
            machine: text("machine"),
            libc: text("libc"),
        };
        let target = Target::new(family, &facts).map_err(PackageError::Invalid)?;
        let provided = match params.get("provided") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() <= MAX_PROVIDED => items
                .iter()
                .filter_map(|item| {
                    let pair = item.as_array()?;
                    let [name, version] = pair.as_slice() else {
                        return None;
                    };
                    let (name, version) = (name.as_str()?, version.as_str()?);
                    // What cannot be pinned is left out (pip then resolves it itself).
                    let plain = !version.contains(['-', '_']);
                    (check_name(name).is_ok() && check_version(version).is_ok() && plain)
                        .then(|| (name.to_string(), version.to_string()))
                })
                .collect(),
            Some(_) => {
                return Err(invalid(
                    "`provided` must be at most 5000 [name, version] pairs",
                ));
            }
        };
        Ok(Self {
            requirements,
            target,
            provided,
        })
    }
}

/// Serves only `install`, for a session's startup requirements.
#[derive(Debug)]
pub struct InstallCalls(pub Arc<SessionPackages>);

#[async_trait]
impl RpcHandler for InstallCalls {
    async fn call(&self, method: &str, params: Map<String, Value>) -> Result<Value, RpcError> {
        if method != "install" {
            return Err(RpcError::new(
                "not_allowed",
                format!("`{method}` is not available here"),
            ));
        }
        self.0.install(&params).await.map_err(|e| rpc_error(&e))
    }
}

/// A failed install as the guest sees it.
pub fn rpc_error(error: &PackageError) -> RpcError {
    RpcError::new(error.kind(), sandbox_core::error_chain(error))
}

/// What the sandbox already has, as pip reads it: an empty wheel per distribution in
/// `links` (so pip finds them for any platform) and a constraint pinning each to its version
/// (so the resolution keeps them).
fn write_provided(
    links: &Path,
    constraints: &Path,
    provided: &[(String, String)],
) -> Result<(), PackageError> {
    fs::create_dir_all(links).map_err(io_error("create", links))?;
    let mut pins = String::new();
    let mut seen = HashSet::new();
    for (name, version) in provided {
        if !seen.insert(canonical_name(name)) {
            continue;
        }
        let _ = writeln!(pins, "{name}=={version}");
        let stem = format!("{}-{version}", name.replace(['-', '.'], "_"));
        let path = links.join(format!("{stem}-py3-none-any.whl"));
        let file = fs::File::create(&path).map_err(io_error("create", &path))?;
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default();
        let write = |zip: &mut zip::ZipWriter<fs::File>, member: String, body: String| {
            zip.start_file(member, options)
                .map_err(std::io::Error::other)
                .and_then(|()| zip.write_all(body.as_bytes()))
        };
        write(
            &mut zip,
            format!("{stem}.dist-info/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
        )
        .and_then(|()| {
            write(
                &mut zip,
                format!("{stem}.dist-info/WHEEL"),
                "Wheel-Version: 1.0\nGenerator: mcp-bridge\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                    .to_string(),
            )
        })
        .and_then(|()| write(&mut zip, format!("{stem}.dist-info/RECORD"), String::new()))
        .and_then(|()| zip.finish().map(drop).map_err(std::io::Error::other))
        .map_err(io_error("write", &path))?;
    }
    fs::write(constraints, pins).map_err(io_error("write", constraints))
}

/// Directories 0755 and files 0644 under `dir`, so the sandbox's user can read them.
fn open_for_reading(dir: &Path) -> Result<(), PackageError> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(io_error("set the mode of", dir))?;
    for entry in fs::read_dir(dir).map_err(io_error("read", dir))? {
        let entry = entry.map_err(io_error("read", dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io_error("read", &path))?.is_dir() {
            open_for_reading(&path)?;
        } else {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
                .map_err(io_error("set the mode of", &path))?;
        }
    }
    Ok(())
}

/// `%2B` and friends in a file name from a URL.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where sessions' package directories are made by default: a directory of this user's in
/// the temporary directory (`TMPDIR`), which every backend can mount from.
pub fn default_sessions_root() -> PathBuf {
    let uid = nix::unistd::geteuid().as_raw();
    std::env::temp_dir().join(format!("mcp-bridge-packages-{uid}"))
}

/// Make `root` (if missing) and check that it is this user's own directory, not a link
/// someone else planted in a shared temporary directory; mode 711: sandboxes pass through
/// it, nobody else lists it.
fn prepare_sessions_root(root: &Path) -> Result<(), PackageError> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    match fs::DirBuilder::new().mode(0o711).create(root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error("create", root)(e)),
    }
    let meta = fs::symlink_metadata(root).map_err(io_error("inspect", root))?;
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != uid {
        return Err(io_error("use", root)(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("it is not a directory owned by uid {uid}"),
        )));
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o711))
        .map_err(io_error("set the mode of", root))
}

/// Remove the session directories of bridges that are no longer running.
fn sweep_dead_sessions(sessions: &Path) {
    let Ok(entries) = fs::read_dir(sessions) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<i32>().ok());
        let alive = pid.is_some_and(|pid| {
            pid > 0
                && pid != i32::try_from(std::process::id()).unwrap_or(0)
                && !matches!(
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                    Err(nix::errno::Errno::ESRCH)
                )
        });
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests;
