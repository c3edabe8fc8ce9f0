//! What `doctor` and `sessions` show of sessions: the live ones of every running bridge and
//! the saved (suspended) ones, with their sizes.
//!
//! A running bridge publishes its live sessions in `<checkpoints>/live/<pid>.json` (written
//! atomically when a session starts or ends, removed at exit); a reader skips the file of a
//! process that is gone. Saved sessions are read from the store's headers.

use std::fmt::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sandbox_core::atomic_file::{Mode, write_atomic};
use serde::{Deserialize, Serialize};

use super::store::{Store, Stored};
use crate::units::{format_duration, format_utc};

/// One live session, as its bridge publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSession {
    /// The durable identity of its scope (`stdio:<client>`), or empty when it has none.
    pub scope: String,
    /// The session's name.
    pub session: String,
    /// The backend it runs on.
    pub backend: String,
    /// When it was last used, seconds since the Unix epoch.
    pub last_used_unix: u64,
    /// The guest's memory, when the backend reports it and the session was not busy.
    pub memory_bytes: Option<u64>,
}

/// The live sessions of one bridge process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveFile {
    /// The bridge's process id.
    pub pid: u32,
    /// Its live sessions.
    pub sessions: Vec<LiveSession>,
}

/// The folder of the live files under a store.
fn live_dir(store: &Store) -> PathBuf {
    store.root().join("live")
}

/// Publish this process's live sessions (an empty list removes its file).
pub fn publish(store: &Store, sessions: Vec<LiveSession>) -> std::io::Result<()> {
    let dir = live_dir(store);
    let path = dir.join(format!("{}.json", std::process::id()));
    if sessions.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let file = LiveFile {
        pid: std::process::id(),
        sessions,
    };
    let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    write_atomic(&path, &json, Mode::Masked(0o600))
}

/// The live sessions of every bridge still running on this state directory.
pub fn live(store: &Store) -> Vec<LiveFile> {
    let Ok(entries) = std::fs::read_dir(live_dir(store)) else {
        return Vec::new();
    };
    let mut files: Vec<LiveFile> = entries
        .flatten()
        .filter_map(|entry| {
            let bytes = std::fs::read(entry.path()).ok()?;
            let file: LiveFile = serde_json::from_slice(&bytes).ok()?;
            Path::new("/proc")
                .join(file.pid.to_string())
                .exists()
                .then_some(file)
        })
        .collect();
    files.sort_by_key(|file| file.pid);
    files
}

/// The saved sessions and the live ones, as text (`doctor`, `sessions`).
pub fn render(saved: &[Stored], live: &[LiveFile]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ago = |unix: u64| format_duration(std::time::Duration::from_secs(now.saturating_sub(unix)));
    let mut out = String::new();
    let count: usize = live.iter().map(|file| file.sessions.len()).sum();
    let _ = writeln!(out, "Live sessions ({count}):");
    for file in live {
        for s in &file.sessions {
            let memory = s.memory_bytes.map_or_else(
                || "memory unknown".to_string(),
                |b| format!("{} in memory", mb(b)),
            );
            let _ = writeln!(
                out,
                "  {:<28} {:<20} {:<7} {memory}, used {} ago (bridge pid {})",
                or_dash(&s.scope),
                s.session,
                s.backend,
                ago(s.last_used_unix),
                file.pid
            );
        }
    }
    let total: u64 = saved.iter().map(|s| s.bytes).sum();
    let _ = writeln!(
        out,
        "Saved sessions ({}, {} on disk):",
        saved.len(),
        mb(total)
    );
    for s in saved {
        let _ = writeln!(
            out,
            "  {:<28} {:<20} {:<7} {}, saved {} ({} ago), {} names{}",
            or_dash(&s.header.scope),
            s.session,
            s.header.backend,
            mb(s.bytes),
            format_utc(s.header.created_at_unix),
            ago(s.header.created_at_unix),
            s.header.names.len(),
            if s.header.unsaveable.is_empty() {
                String::new()
            } else {
                format!(", {} not saved", s.header.unsaveable.len())
            }
        );
    }
    out
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// A size in MB with one decimal.
fn mb(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let value = bytes as f64 / 1e6;
    format!("{value:.1} MB")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoints::format::Header;

    #[test]
    fn a_bridge_publishes_its_live_sessions_and_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_path_buf(), 1 << 20);
        let one = LiveSession {
            scope: "stdio:claude".into(),
            session: "default".into(),
            backend: "wasi".into(),
            last_used_unix: 0,
            memory_bytes: Some(12_000_000),
        };
        publish(&store, vec![one.clone()]).unwrap();
        let found = live(&store);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].sessions, vec![one]);
        let header = Header {
            created_at_unix: 0,
            scope: "stdio:claude".into(),
            interpreter: "i".into(),
            backend: "wasi".into(),
            runtime: "r".into(),
            names: vec!["df".into()],
            unsaveable: vec!["f: an open file".into()],
            payload_bytes: 0,
            payload_sha256: String::new(),
        };
        store
            .save("stdio:claude", "work", header, b"payload")
            .unwrap();
        let text = render(&store.list_all().unwrap(), &found);
        assert!(text.contains("Live sessions (1):"), "{text}");
        assert!(text.contains("12.0 MB in memory"), "{text}");
        assert!(text.contains("Saved sessions (1,"), "{text}");
        assert!(text.contains("work"), "{text}");
        assert!(text.contains("1 names, 1 not saved"), "{text}");
        publish(&store, Vec::new()).unwrap();
        assert!(live(&store).is_empty());
    }
}
