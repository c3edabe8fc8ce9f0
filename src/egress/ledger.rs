//! What one session's network use has been: the connections it made or was refused, and
//! the budget of bytes and open connections it draws on.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::audit::{Audit, Event};
use crate::metrics::Metrics;

/// A session's caps (`MCP_BRIDGE_EGRESS_BYTES`, `MCP_BRIDGE_EGRESS_CONNECTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes up and down together, over the session's life.
    pub bytes: u64,
    /// Connections open at once.
    pub connections: usize,
}

/// One connection the sandbox asked for, as the reply and the audit log show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Connection {
    /// How it was asked for: `connect` (an HTTPS tunnel), `http` (a plain request through
    /// the proxy) or `fetch` (`mcp.runtime.fetch`).
    pub via: &'static str,
    /// The host the request named.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The address connected to, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Whether it was let through.
    pub allowed: bool,
    /// Why it was refused or ended early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes from the sandbox to the host it reached.
    pub bytes_up: u64,
    /// Bytes from that host to the sandbox.
    pub bytes_down: u64,
    /// How long it was open, in milliseconds (in all, for several alike).
    pub duration_ms: f64,
    /// How many connections alike this stands for (a reply merges them; 1 in the log).
    pub count: u64,
}

impl Connection {
    /// A connection asked for `via` a way to `host:port`, not yet made or refused.
    pub fn asked(via: &'static str, host: String, port: u16) -> Self {
        Self {
            via,
            host,
            port,
            address: None,
            allowed: false,
            reason: None,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0.0,
            count: 1,
        }
    }

    /// What connections alike share: all but their sizes and duration.
    fn kind(&self) -> ConnectionKind {
        (
            self.via,
            self.host.clone(),
            self.port,
            self.address.clone(),
            self.allowed,
            self.reason.clone(),
        )
    }
}

/// The bytes a request's head takes on the wire, near enough: its request line (`method`
/// and `target`) and each header's name, value, separator and line end.
pub fn head_bytes(method: &str, target: &str, headers: &http::HeaderMap) -> u64 {
    let line = method.len() + target.len() + " HTTP/1.1\r\n ".len();
    let fields: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (line + fields + 2) as u64
}

/// What connections alike share (see [`Connection::kind`]).
type ConnectionKind = (
    &'static str,
    String,
    u16,
    Option<String>,
    bool,
    Option<String>,
);

/// What a reply shows of a run's connections: those alike merged, at most a cap of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The connections, alike ones merged (`count`), in the order each first happened.
    pub connections: Vec<Connection>,
    /// Kinds of connection left out past the cap (the log and `audit.jsonl` have them).
    pub omitted: usize,
}

/// Why the budget refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverBudget {
    /// Too many connections open at once.
    #[error("this session already has {0} connections open (MCP_BRIDGE_EGRESS_CONNECTIONS)")]
    Connections(usize),
    /// The session used its bytes.
    #[error("this session has used its {0} bytes of network (MCP_BRIDGE_EGRESS_BYTES)")]
    Bytes(u64),
}

/// A session's connections and budget, shared by its proxy and its `fetch` calls.
#[derive(Debug)]
pub struct Ledger {
    limits: Limits,
    open: AtomicUsize,
    bytes: AtomicU64,
    finished: Mutex<Vec<Connection>>,
    /// Where each connection is also told (set once the session has a name).
    witnesses: OnceLock<Witnesses>,
}

/// Where a session's connections are told besides its ledger: the audit log, as `session`
/// of `scope`, and the metrics, under `tenant`.
#[derive(Debug)]
pub struct Witnesses {
    /// The audit log.
    pub audit: Audit,
    /// The metrics.
    pub metrics: Metrics,
    /// The session's name.
    pub session: String,
    /// Its client's scope, as the audit log writes it.
    pub scope: String,
    /// Its client's tenant.
    pub tenant: String,
}

impl Ledger {
    /// An empty ledger under `limits`.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            finished: Mutex::new(Vec::new()),
            witnesses: OnceLock::new(),
        })
    }

    /// From now on, also tells every connection to `witnesses`. A ledger belongs to one
    /// session: only the first call counts.
    pub fn report_to(&self, witnesses: Witnesses) {
        let _ = self.witnesses.set(witnesses);
    }

    /// The caps this ledger enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes one connection slot, if the budget has one and bytes are left.
    pub fn open(self: &Arc<Self>) -> Result<Slot, OverBudget> {
        if self.bytes.load(Ordering::Relaxed) >= self.limits.bytes {
            return Err(OverBudget::Bytes(self.limits.bytes));
        }
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        if open >= self.limits.connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(OverBudget::Connections(self.limits.connections));
        }
        Ok(Slot {
            ledger: Arc::clone(self),
            started: Instant::now(),
            up: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Records a connection (a refusal, or one that ended).
    pub fn record(&self, connection: Connection) {
        tracing::info!(
            via = connection.via,
            host = %connection.host,
            port = connection.port,
            allowed = connection.allowed,
            reason = connection.reason.as_deref().unwrap_or(""),
            bytes_up = connection.bytes_up,
            bytes_down = connection.bytes_down,
            "sandbox network connection"
        );
        if let Some(w) = self.witnesses.get() {
            w.metrics.network_connection(
                &w.tenant,
                connection.allowed,
                connection.bytes_up,
                connection.bytes_down,
            );
            w.audit
                .record(&w.session, &w.scope, Event::Network(connection.clone()));
        }
        if let Ok(mut finished) = self.finished.lock() {
            // A session that never asks for its report keeps at most this many.
            if finished.len() < 10_000 {
                finished.push(connection);
            }
        }
    }

    /// The connections recorded since the last call, alike ones merged, at most `cap` of
    /// them: what a run's reply lists.
    pub fn take(&self, cap: usize) -> Summary {
        let finished = self
            .finished
            .lock()
            .map(|mut finished| std::mem::take(&mut *finished))
            .unwrap_or_default();
        let mut summary = Summary::default();
        let mut shown: HashMap<ConnectionKind, usize> = HashMap::new();
        let mut left_out: HashSet<ConnectionKind> = HashSet::new();
        for connection in finished {
            let kind = connection.kind();
            if let Some(&at) = shown.get(&kind) {
                let same = &mut summary.connections[at];
                same.count += connection.count;
                same.bytes_up += connection.bytes_up;
                same.bytes_down += connection.bytes_down;
                same.duration_ms += connection.duration_ms;
            } else if summary.connections.len() < cap {
                shown.insert(kind, summary.connections.len());
                summary.connections.push(connection);
            } else {
                left_out.insert(kind);
            }
        }
        summary.omitted = left_out.len();
        summary
    }

    fn charge(&self, bytes: u64) -> bool {
        self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes <= self.limits.bytes
    }
}

/// One open connection's place in the budget, and its byte counts. Dropping it frees the
/// place.
#[derive(Debug)]
pub struct Slot {
    ledger: Arc<Ledger>,
    started: Instant,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl Slot {
    /// Wraps the sandbox's side of a connection: what is read from it counts up, what is
    /// read from the far side counts down (see [`Slot::far`]).
    pub fn near<T>(&self, io: T) -> Metered<T> {
        Metered::new(io, Arc::clone(&self.ledger), Arc::clone(&self.up))
    }

    /// Wraps the far side of a connection.
    pub fn far<T>(&self, io: T) -> Metered<T> {
        Metered::new(io, Arc::clone(&self.ledger), Arc::clone(&self.down))
    }

    /// Counts `bytes` sent up (for requests sent whole, such as `fetch`'s), false when
    /// that went over the budget.
    pub fn count_up(&self, bytes: u64) -> bool {
        self.up.fetch_add(bytes, Ordering::Relaxed);
        self.ledger.charge(bytes)
    }

    /// Counts `bytes` received, false when that went over the budget.
    pub fn count_down(&self, bytes: u64) -> bool {
        self.down.fetch_add(bytes, Ordering::Relaxed);
        self.ledger.charge(bytes)
    }

    /// The record of this connection, now.
    pub fn finish(&self, mut connection: Connection) -> Connection {
        connection.bytes_up = self.up.load(Ordering::Relaxed);
        connection.bytes_down = self.down.load(Ordering::Relaxed);
        connection.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        connection
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.ledger.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream whose reads count against a session's budget; a read past the budget fails.
#[derive(Debug)]
pub struct Metered<T> {
    inner: T,
    ledger: Arc<Ledger>,
    count: Arc<AtomicU64>,
}

impl<T> Metered<T> {
    fn new(inner: T, ledger: Arc<Ledger>, count: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            ledger,
            count,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            self.count.fetch_add(read, Ordering::Relaxed);
            if !self.ledger.charge(read) {
                return Poll::Ready(Err(std::io::Error::other(OverBudget::Bytes(
                    self.ledger.limits.bytes,
                ))));
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn connections_and_bytes_are_capped() {
        let ledger = Ledger::new(Limits {
            bytes: 10,
            connections: 1,
        });
        let slot = ledger.open().unwrap();
        assert_eq!(ledger.open().unwrap_err(), OverBudget::Connections(1));
        let mut near = slot.near(&b"0123456789abc"[..]);
        let mut buf = [0_u8; 8];
        assert_eq!(near.read(&mut buf).await.unwrap(), 8);
        let error = near.read(&mut buf).await.unwrap_err();
        assert!(
            error.to_string().contains("MCP_BRIDGE_EGRESS_BYTES"),
            "{error}"
        );
        drop(slot);
        assert_eq!(ledger.open().unwrap_err(), OverBudget::Bytes(10));
    }

    #[test]
    fn a_reply_merges_connections_alike_and_caps_the_kinds() {
        let ledger = Ledger::new(Limits {
            bytes: 1 << 30,
            connections: 16,
        });
        for _ in 0..500 {
            ledger.record(Connection {
                allowed: true,
                bytes_up: 10,
                bytes_down: 100,
                ..Connection::asked("http", "example.com".into(), 80)
            });
        }
        for port in 1..=120 {
            ledger.record(Connection {
                reason: Some("not on the list".into()),
                ..Connection::asked("connect", "10.0.0.1".into(), port)
            });
        }
        let summary = ledger.take(50);
        assert_eq!(summary.connections.len(), 50);
        let first = &summary.connections[0];
        assert_eq!(
            (first.count, first.bytes_up, first.bytes_down),
            (500, 5000, 50_000)
        );
        assert_eq!(summary.connections[1].port, 1);
        assert_eq!(summary.omitted, 71);
        assert_eq!(ledger.take(50), Summary::default(), "taken once");
    }

    #[test]
    fn a_head_counts_its_line_and_fields() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", http::HeaderValue::from_static("example.com"));
        // "GET / HTTP/1.1\r\n" (16) + "host: example.com\r\n" (19) + "\r\n" (2)
        assert_eq!(head_bytes("GET", "/", &headers), 37);
    }
}
