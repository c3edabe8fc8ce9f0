//! A cap on one message from a stdio server, checked as its bytes arrive.
//!
//! rmcp's line reader drops a line longer than its limit and carries on, so the request that
//! line answered is never answered: the caller waits out its timeout and learns nothing. This
//! reader sits below rmcp's, passes every whole message under the cap through unchanged, and
//! at the first byte past the cap reports it (once) and fails the stream, which ends the
//! session at once; the connection then fails the calls in flight with that report.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

/// Largest message accepted from a stdio server, newline included: rmcp's own line limit,
/// so that this cap, not rmcp's silent drop, is the one that acts.
pub(super) const MAX_MESSAGE_BYTES: usize = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;

/// Reads a server's stdout, failing once a message (a line) grows past the cap.
pub(super) struct MessageCap<R> {
    inner: R,
    limit: usize,
    /// Bytes of the current, unfinished line passed through so far.
    line: usize,
    /// Called once when the cap is crossed.
    on_oversize: Option<Box<dyn FnOnce() + Send>>,
    /// Set once the cap was crossed: every later read fails.
    tripped: bool,
}

impl<R> MessageCap<R> {
    /// Cap the lines of `inner` at `limit` bytes; `on_oversize` runs when one is longer.
    pub(super) fn new(inner: R, limit: usize, on_oversize: impl FnOnce() + Send + 'static) -> Self {
        Self {
            inner,
            limit,
            line: 0,
            on_oversize: Some(Box::new(on_oversize)),
            tripped: false,
        }
    }

    fn oversize_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message was longer than {} bytes", self.limit),
        )
    }

    /// Scan `new` bytes; returns how many may pass (all, or up to the end of the last whole
    /// line before the cap was crossed).
    fn scan(&mut self, new: &[u8]) -> usize {
        let mut at = 0;
        while at < new.len() {
            let rest = &new[at..];
            let (take, ends_line) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (rest.len(), false),
            };
            if self.line + take > self.limit {
                self.tripped = true;
                return at;
            }
            at += take;
            self.line = if ends_line { 0 } else { self.line + take };
        }
        at
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for MessageCap<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.tripped {
            return Poll::Ready(Err(this.oversize_error()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        let pass = this.scan(&buf.filled()[before..]);
        if pass == read {
            return Poll::Ready(Ok(()));
        }
        buf.set_filled(before + pass);
        if let Some(report) = this.on_oversize.take() {
            report();
        }
        if pass > 0 {
            // Hand over the whole messages first; the next read fails.
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(this.oversize_error()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::AsyncReadExt as _;

    use super::*;

    async fn read_all(input: &[u8], limit: usize) -> (Vec<u8>, Option<io::Error>, usize) {
        let reports = Arc::new(AtomicUsize::new(0));
        let counted = reports.clone();
        let mut reader = MessageCap::new(input, limit, move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let mut out = Vec::new();
        let mut chunk = [0u8; 7];
        let error = loop {
            match reader.read(&mut chunk).await {
                Ok(0) => break None,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) => break Some(e),
            }
        };
        (out, error, reports.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn lines_up_to_the_cap_pass_unchanged() {
        let input = b"0123456789\nabc\n0123456789\n";
        let (out, error, reports) = read_all(input, 11).await;
        assert_eq!(out, input);
        assert!(error.is_none());
        assert_eq!(reports, 0);
    }

    #[tokio::test]
    async fn a_longer_line_fails_the_stream_after_the_whole_lines_before_it() {
        let input = b"ok\nthis line is far too long\nnever read\n";
        let (out, error, reports) = read_all(input, 11).await;
        // Whole lines before it pass; of the long line, at most the cap's worth (its reader
        // then fails the stream, so a partial line is never taken for a message).
        assert!(
            out.starts_with(b"ok\n") && input.starts_with(&out),
            "{out:?}"
        );
        assert!(out.len() <= 3 + 11, "{} bytes passed", out.len());
        let error = error.expect("the stream fails");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(reports, 1);
    }

    #[tokio::test]
    async fn an_unterminated_line_counts_too() {
        let (out, error, reports) = read_all(&[b'x'; 40], 16).await;
        assert!(out.len() <= 16, "{} bytes passed", out.len());
        assert!(error.is_some());
        assert_eq!(reports, 1);
    }
}
