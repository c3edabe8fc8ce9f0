//! The audit log: one JSON line per proxied tool call (and, later, per network connection) in
//! `<state dir>/audit.jsonl`, rotated by size.
//!
//! # What it trusts and what it promises
//!
//! - **It never slows a call down.** [`Audit::record`] stamps the time and puts the event in a
//!   bounded queue ([`QUEUE_LINES`]); a thread of its own writes the lines. When the queue is
//!   full the line is dropped, counted, and a warning says how many were lost (the count is
//!   also written to the log file once the writer catches up).
//! - **It never records values.** An event carries names (session, server, tool or host),
//!   the decision and its reason, sizes in bytes and durations: never arguments, results or
//!   header values. The reason is the bridge's own sentence, which names a policy key or the
//!   client's answer, never an argument.
//! - **Its files are private and bounded.** `audit.jsonl` is created 0600 in the state
//!   directory (0700); once writing a line would take it past the limit, it becomes
//!   `audit.jsonl.1` (the older ones move up to `.2`, `.3`; the oldest is deleted), so the log
//!   takes at most `(ROTATED_FILES + 1) × limit` bytes.
//! - **A broken disk costs the log, not the bridge.** A file that cannot be opened or
//!   written is reported once as a warning; calls go on.
//!
//! Events are [`Event`]s: [`ToolCall`] now; a network connection (host, port, bytes up and
//! down, decision, reason, duration) is meant to be one more variant of the same enum, with
//! the same [`Decision`] words.

mod event;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use tracing::warn;

pub use self::event::{Decision, Event, Outcome, ToolCall, json_size};
use self::writer::{Message, Writer};

/// The log's file name in the state directory.
pub const FILE_NAME: &str = "audit.jsonl";
/// How many rotated files are kept (`audit.jsonl.1` is the newest).
pub const ROTATED_FILES: usize = 3;
/// Lines the queue holds before new ones are dropped.
pub const QUEUE_LINES: usize = 4096;
/// How long [`Audit::flush`] waits for the writer.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// The audit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSettings {
    /// Whether lines are written.
    pub enabled: bool,
    /// Size at which `audit.jsonl` is rotated.
    pub limit: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            limit: 10 << 20,
        }
    }
}

/// Where audit lines go: a handle to the writer thread, or nowhere. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl Audit {
    /// An audit that records nothing.
    pub fn off() -> Self {
        Self::default()
    }

    /// Write to `<dir>/audit.jsonl`, rotating past `limit` bytes. The file is opened by the
    /// writer thread when the first line comes, so an unusable directory is reported then.
    pub fn start(dir: &Path, limit: u64) -> Self {
        let dropped = Arc::new(AtomicU64::new(0));
        let queue = Writer::spawn(dir, limit, ROTATED_FILES, dropped.clone());
        match queue {
            Ok(queue) => Self {
                inner: Some(Arc::new(Inner { queue, dropped })),
            },
            Err(e) => {
                warn!("the audit log is off: its writer thread did not start: {e}");
                Self::off()
            }
        }
    }

    /// Whether lines are written anywhere.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Record one event, stamped now, for the run of `session` in `scope`. Never blocks: a
    /// full queue drops the line and counts it.
    pub fn record(&self, session: &str, scope: &str, event: Event) {
        let Some(inner) = &self.inner else { return };
        let line = writer::Line {
            time: SystemTime::now(),
            session: session.to_owned(),
            scope: scope.to_owned(),
            event,
        };
        match inner.queue.try_send(Message::Line(Box::new(line))) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                let before = inner.dropped.fetch_add(1, Ordering::Relaxed);
                // Warn on the first loss and then at each power of two, not on every line.
                if (before + 1).is_power_of_two() {
                    warn!(
                        dropped = before + 1,
                        "the audit log's queue is full; lines are being dropped"
                    );
                }
            }
        }
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |inner| inner.dropped.load(Ordering::Relaxed))
    }

    /// Wait (a little) until every line recorded so far is written. Blocking: call it from a
    /// blocking context (at exit, in tests).
    pub fn flush(&self) {
        let Some(inner) = &self.inner else { return };
        let (done, wait) = std::sync::mpsc::channel();
        if inner.queue.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(FLUSH_WAIT);
        }
    }
}
