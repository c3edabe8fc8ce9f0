//! The host's pip, asked to resolve and fetch wheels for the sandbox's platform.
//!
//! What it guarantees: pip is always run with `--only-binary=:all:` and the target's
//! platform options, so it never builds an sdist and no build script runs on the host;
//! resolution is a `--dry-run` that installs nothing; downloads are pinned to the exact
//! files the resolution reported, by sha256. Every run is bounded by a timeout and killed
//! with its caller.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use super::target::Target;

/// Longest one pip run may take.
const PIP_TIMEOUT: Duration = Duration::from_mins(3);

/// The Python whose pip is used.
#[derive(Debug, Clone)]
pub struct Pip {
    python: PathBuf,
}

/// How a pip run ended badly.
#[derive(Debug, thiserror::Error)]
pub enum PipError {
    /// pip could not be started.
    #[error("cannot run `{python} -m pip`")]
    Spawn {
        /// The Python.
        python: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// pip took too long.
    #[error("pip did not finish within {} s", PIP_TIMEOUT.as_secs())]
    Timeout,
    /// pip failed.
    #[error("pip failed ({status}): {tail}")]
    Failed {
        /// Its exit status.
        status: String,
        /// The last lines of its error output.
        tail: String,
    },
    /// pip's report could not be read.
    #[error("cannot read pip's report")]
    Report(#[source] std::io::Error),
    /// pip's report is not what pip writes.
    #[error("pip's report is malformed")]
    ReportFormat(#[source] serde_json::Error),
}

/// One wheel a resolution picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    /// Project name as its metadata spells it.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Where pip found it.
    pub url: String,
    /// Its sha256, lowercase hex.
    pub sha256: String,
}

#[derive(Deserialize)]
struct Report {
    install: Vec<ReportItem>,
}

#[derive(Deserialize)]
struct ReportItem {
    metadata: ReportMetadata,
    download_info: DownloadInfo,
}

#[derive(Deserialize)]
struct ReportMetadata {
    name: String,
    version: String,
}

#[derive(Deserialize)]
struct DownloadInfo {
    url: String,
    #[serde(default)]
    archive_info: Option<ArchiveInfo>,
}

#[derive(Deserialize)]
struct ArchiveInfo {
    #[serde(default)]
    hashes: std::collections::HashMap<String, String>,
    #[serde(default)]
    hash: Option<String>,
}

impl Pip {
    /// pip of `python`.
    pub fn new(python: PathBuf) -> Self {
        Self { python }
    }

    /// Resolve `requirements` for `target` without installing anything: the wheels pip
    /// would install. `find_links` and `constraints` describe what the sandbox already has.
    pub async fn resolve(
        &self,
        target: &Target,
        requirements: &[String],
        find_links: &Path,
        constraints: &Path,
        work: &Path,
    ) -> Result<Vec<Picked>, PipError> {
        let report = work.join("report.json");
        let mut args: Vec<OsString> = vec![
            "install".into(),
            "--dry-run".into(),
            "--ignore-installed".into(),
            "--report".into(),
            report.clone().into(),
            "--target".into(),
            work.join("target").into(),
            "--find-links".into(),
            find_links.into(),
            "--constraint".into(),
            constraints.into(),
        ];
        args.extend(target.pip_args().into_iter().map(OsString::from));
        args.extend(requirements.iter().map(OsString::from));
        self.run(&args).await?;
        let text = std::fs::read(&report).map_err(PipError::Report)?;
        let report: Report = serde_json::from_slice(&text).map_err(PipError::ReportFormat)?;
        Ok(report
            .install
            .into_iter()
            .map(|item| {
                let archive = item.download_info.archive_info;
                let sha256 = archive
                    .as_ref()
                    .and_then(|a| a.hashes.get("sha256").cloned())
                    .or_else(|| {
                        archive
                            .and_then(|a| a.hash)
                            .and_then(|h| h.strip_prefix("sha256=").map(str::to_string))
                    })
                    .unwrap_or_default();
                Picked {
                    name: item.metadata.name,
                    version: item.metadata.version,
                    url: item.download_info.url,
                    sha256,
                }
            })
            .collect())
    }

    /// Download exactly `wheels` (each pinned by its sha256) into `dest`.
    pub async fn download(
        &self,
        target: &Target,
        wheels: &[&Picked],
        work: &Path,
        dest: &Path,
    ) -> Result<(), PipError> {
        let pins = work.join("pins.txt");
        let text = wheels.iter().fold(String::new(), |mut text, w| {
            let _ = writeln!(text, "{}=={} --hash=sha256:{}", w.name, w.version, w.sha256);
            text
        });
        std::fs::write(&pins, text).map_err(PipError::Report)?;
        let mut args: Vec<OsString> = vec![
            "download".into(),
            "--no-deps".into(),
            "--require-hashes".into(),
            "--dest".into(),
            dest.into(),
            "--requirement".into(),
            pins.into(),
        ];
        args.extend(target.pip_args().into_iter().map(OsString::from));
        self.run(&args).await
    }

    /// Whether the index knows `name` at all, and whether it has any wheel of it for a
    /// broad set of platforms (for the host's Python version, else `target`'s):
    /// `(exists, has_wheels)`. When pip cannot say (the index is unreachable), it exists.
    /// Nothing is downloaded but metadata: the wheel check is a `--dry-run` too. (A
    /// project with wheels for none of these platforms and no sdist reads as missing.)
    pub async fn what_the_index_has(
        &self,
        name: &str,
        target: &Target,
        work: &Path,
    ) -> (bool, bool) {
        let mut wheels: Vec<OsString> = vec![
            "install".into(),
            "--dry-run".into(),
            "--no-deps".into(),
            "--ignore-installed".into(),
            "--target".into(),
            work.join("probe").into(),
            "--only-binary=:all:".into(),
        ];
        for platform in [
            "any",
            "manylinux_2_39_x86_64",
            "manylinux_2_39_aarch64",
            "musllinux_1_2_x86_64",
            "win_amd64",
            "win32",
            "macosx_14_0_arm64",
            "macosx_14_0_x86_64",
        ] {
            wheels.push(format!("--platform={platform}").into());
        }
        let mut for_target = wheels.clone();
        wheels.push(name.into());
        if self.run(&wheels).await.is_ok() {
            return (true, true);
        }
        let (major, minor) = target.python;
        for_target.push(format!("--python-version={major}.{minor}").into());
        for_target.push(name.into());
        if self.run(&for_target).await.is_ok() {
            return (true, true);
        }
        // No wheels: `index versions` counts sdists too (it ignores `--only-binary`), for
        // this host, so it says whether the project exists at all.
        let exists: Vec<OsString> = vec!["index".into(), "versions".into(), name.into()];
        match self.run(&exists).await {
            Err(PipError::Failed { tail, .. }) if unmatched_project(&tail).is_some() => {
                (false, false)
            }
            _ => (true, false),
        }
    }

    async fn run(&self, args: &[OsString]) -> Result<(), PipError> {
        // One pip at a time in this process: sessions restored at once each ask for the same
        // package, and concurrent pips share a cache, and through a version manager's shims
        // (pyenv rehashes after every pip) fail each other.
        static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _turn = ONE_AT_A_TIME.lock().await;
        let mut command = Command::new(&self.python);
        command
            .args([
                "-m",
                "pip",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
            ])
            .args(args)
            .env("PIP_NO_INPUT", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command.spawn().map_err(|source| PipError::Spawn {
            python: self.python.display().to_string(),
            source,
        })?;
        let output = tokio::time::timeout(PIP_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| PipError::Timeout)?
            .map_err(|source| PipError::Spawn {
                python: self.python.display().to_string(),
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(PipError::Failed {
            status: output.status.to_string(),
            tail: error_lines(&String::from_utf8_lossy(&output.stderr)),
        })
    }
}

/// pip's `ERROR:` lines (else its last lines), joined, at most 1,000 bytes.
fn error_lines(stderr: &str) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ERROR:"))
        .map(|l| l.trim_start_matches("ERROR:").trim())
        .collect();
    let lines = if errors.is_empty() {
        let all: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(4)..].to_vec()
    } else {
        errors
    };
    let mut text = lines.join(" ");
    if text.len() > 1000 {
        let mut cut = 1000;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The project pip names in "No matching distribution found for X", if it said that.
pub fn unmatched_project(tail: &str) -> Option<String> {
    let after = tail.split("No matching distribution found for ").nth(1)?;
    let name: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pips_error_lines_are_kept_and_the_unmatched_project_found() {
        let stderr = "WARNING: something\nERROR: Could not find a version that satisfies the \
                      requirement orjson (from versions: none)\nERROR: No matching \
                      distribution found for orjson\n";
        let tail = error_lines(stderr);
        assert!(tail.starts_with("Could not find a version"));
        assert_eq!(unmatched_project(&tail).as_deref(), Some("orjson"));
        assert_eq!(unmatched_project("ResolutionImpossible"), None);
    }
}
