//! The writer thread: lines from the queue to `audit.jsonl`, rotated by size.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, sync_channel};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::warn;

use super::{Event, FILE_NAME, QUEUE_LINES};
use crate::units::utc_fields;

/// What the queue carries.
pub(super) enum Message {
    /// A line to write.
    Line(Box<Line>),
    /// Answer once everything before this is written.
    Flush(Sender<()>),
}

/// One event with its time and the run it belongs to.
#[derive(Debug)]
pub(super) struct Line {
    pub(super) time: SystemTime,
    pub(super) session: String,
    pub(super) scope: String,
    pub(super) event: Event,
}

/// A line as written: `time`, `session`, `scope`, then the event's own fields.
#[derive(Serialize)]
struct Rendered<'a> {
    time: String,
    session: &'a str,
    scope: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC).
pub(super) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let [year, month, day, hour, minute, second] = utc_fields(since.as_secs());
    let millis = since.subsec_millis();
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

/// The writing end: the file, its size, and what it has told about lost lines.
pub(super) struct Writer {
    path: PathBuf,
    limit: u64,
    keep: usize,
    file: Option<File>,
    size: u64,
    dropped: Arc<AtomicU64>,
    dropped_written: u64,
    warned: bool,
}

impl Writer {
    /// Start the thread; the sender is the queue.
    pub(super) fn spawn(
        dir: &Path,
        limit: u64,
        keep: usize,
        dropped: Arc<AtomicU64>,
    ) -> std::io::Result<SyncSender<Message>> {
        let (queue, lines) = sync_channel(QUEUE_LINES);
        let writer = Self::new(dir, limit, keep, dropped);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer.run(&lines))?;
        Ok(queue)
    }

    fn new(dir: &Path, limit: u64, keep: usize, dropped: Arc<AtomicU64>) -> Self {
        Self {
            path: dir.join(FILE_NAME),
            limit,
            keep,
            file: None,
            size: 0,
            dropped,
            dropped_written: 0,
            warned: false,
        }
    }

    fn run(mut self, lines: &Receiver<Message>) {
        for message in lines {
            match message {
                Message::Line(line) => self.write_line(&line),
                Message::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    fn write_line(&mut self, line: &Line) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > self.dropped_written {
            let note = serde_json::json!({
                "time": rfc3339(line.time),
                "event": "dropped",
                "lines": dropped - self.dropped_written,
            });
            self.dropped_written = dropped;
            self.write_json(&note);
        }
        self.write_json(&Rendered {
            time: rfc3339(line.time),
            session: &line.session,
            scope: &line.scope,
            event: &line.event,
        });
    }

    fn write_json(&mut self, value: &impl Serialize) {
        let mut text = match serde_json::to_vec(value) {
            Ok(text) => text,
            Err(e) => return self.warn_once(&format!("a line could not be encoded: {e}")),
        };
        text.push(b'\n');
        if let Err(e) = self.append(&text) {
            self.file = None;
            self.warn_once(&format!("{}: {e}", self.path.display()));
        }
    }

    fn append(&mut self, text: &[u8]) -> std::io::Result<()> {
        let len = text.len() as u64;
        if self.file.is_some() && self.size > 0 && self.size + len > self.limit {
            self.file = None;
            self.rotate()?;
        }
        if self.file.is_none() {
            let (file, size) = open(&self.path)?;
            self.size = size;
            if size > 0 && size + len > self.limit {
                drop(file);
                self.rotate()?;
                let (file, size) = open(&self.path)?;
                self.size = size;
                self.file = Some(file);
            } else {
                self.file = Some(file);
            }
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(text)?;
        self.size += len;
        Ok(())
    }

    /// `audit.jsonl.{k-1}` → `.k`, …, `audit.jsonl` → `.1`; the oldest is replaced.
    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        for n in (1..self.keep).rev() {
            match std::fs::rename(numbered(n), numbered(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        std::fs::rename(&self.path, numbered(1))
    }

    fn warn_once(&mut self, what: &str) {
        if !self.warned {
            self.warned = true;
            warn!("the audit log cannot be written (calls go on): {what}");
        }
    }
}

/// Open the log for appending, 0600 (in a 0700 directory made if missing); its size.
fn open(path: &Path) -> std::io::Result<(File, u64)> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let metadata = file.metadata()?;
    if metadata.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok((file, metadata.len()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use super::*;
    use crate::audit::{Audit, Decision, Outcome, ToolCall};

    fn call(tool: &str) -> Event {
        Event::ToolCall(ToolCall {
            server: "files".into(),
            tool: tool.into(),
            decision: Decision::Allowed,
            reason: None,
            outcome: Outcome::Ok,
            duration_ms: 1.5,
            argument_bytes: 12,
            result_bytes: 34,
        })
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    #[test]
    fn a_line_has_the_time_the_run_and_the_call_but_no_values() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::start(dir.path(), 1 << 20);
        audit.record("default", "0", call("read_file"));
        audit.flush();
        let written = lines(&dir.path().join(FILE_NAME));
        assert_eq!(written.len(), 1);
        let line = &written[0];
        assert_eq!(line["event"], "tool_call");
        assert_eq!(line["session"], "default");
        assert_eq!(line["scope"], "0");
        assert_eq!(line["server"], "files");
        assert_eq!(line["tool"], "read_file");
        assert_eq!(line["decision"], "allowed");
        assert_eq!(line["outcome"], "ok");
        assert_eq!(line["argument_bytes"], 12);
        assert_eq!(line["result_bytes"], 34);
        assert!(line.get("reason").is_none());
        let time = line["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-01-01T00:00:00.000Z".len(), "{time}");
        assert!(time.ends_with('Z'), "{time}");
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_log_rotates_by_size_and_keeps_a_few_files() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::start(dir.path(), 600);
        for n in 0..40 {
            audit.record("s", "0", call(&format!("tool_{n:02}")));
        }
        audit.flush();
        let path = dir.path().join(FILE_NAME);
        let mut total = lines(&path).len();
        for n in 1..=crate::audit::ROTATED_FILES {
            let rotated = PathBuf::from(format!("{}.{n}", path.display()));
            let size = std::fs::metadata(&rotated).expect("rotated file").len();
            assert!(size <= 600, "{size}");
            total += lines(&rotated).len();
        }
        let beyond = format!("{}.{}", path.display(), crate::audit::ROTATED_FILES + 1);
        assert!(!Path::new(&beyond).exists());
        assert!(std::fs::metadata(&path).unwrap().len() <= 600);
        // The newest lines are kept, the oldest are gone.
        assert!(total < 40, "{total}");
        let last = lines(&path);
        assert_eq!(last.last().unwrap()["tool"], "tool_39");
    }

    #[test]
    fn rfc3339_stamps_are_utc_with_milliseconds() {
        let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(time), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn an_unwritable_directory_costs_the_log_not_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let audit = Audit::start(&blocker, 1 << 20);
        audit.record("s", "0", call("x"));
        audit.flush();
        assert!(audit.is_on());
    }
}
