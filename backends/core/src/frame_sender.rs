//! Writing host frames to the guest's stdin without ever blocking the session on it.
//!
//! A frame is written at once, by the caller, when the guest's input takes it whole: the
//! common case, and it wakes nothing but the guest. What the input does not take (a guest
//! that is not reading, a full pipe) is queued and written by a task of its own, so the
//! session never waits to write while the guest waits to be read (a deadlock between two
//! full pipes). Frames are written in the order they were sent.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker, ready};

use tokio::io::AsyncWrite;
use tokio::sync::Notify;

use crate::error::SandboxError;
use crate::sandbox::GuestWriter;

/// Sends host frames to a guest's stdin. Dropping it stops its writer task.
pub(crate) struct FrameSender {
    outbox: Arc<Mutex<Outbox>>,
    queued: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl FrameSender {
    /// A sender writing to `stdin`; its writer task runs on the current tokio runtime.
    pub(crate) fn spawn(stdin: GuestWriter) -> Self {
        let outbox = Arc::new(Mutex::new(Outbox {
            writer: stdin,
            queue: VecDeque::new(),
            written: 0,
            needs_flush: false,
            broken: false,
        }));
        let queued = Arc::new(Notify::new());
        let task = tokio::spawn(write_queued(outbox.clone(), queued.clone()));
        Self {
            outbox,
            queued,
            task,
        }
    }

    /// Sends `frame`: written now if the guest's input takes it, else queued for the writer
    /// task. Fails once a write has failed (the guest stopped reading).
    pub(crate) fn send(&self, frame: Vec<u8>) -> Result<(), SandboxError> {
        let mut outbox = lock(&self.outbox);
        if outbox.broken {
            return Err(gone());
        }
        outbox.queue.push_back(frame);
        if outbox.queue.len() > 1 {
            return Ok(()); // behind queued frames, which the task is writing
        }
        let mut cx = Context::from_waker(Waker::noop());
        match outbox.poll_drain(&mut cx) {
            Poll::Ready(Ok(())) => Ok(()),
            Poll::Ready(Err(_)) => {
                outbox.broken = true;
                Err(gone())
            }
            Poll::Pending => {
                drop(outbox);
                self.queued.notify_one();
                Ok(())
            }
        }
    }
}

impl Drop for FrameSender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The writer task: writes what `send` queued, each time it is told there is some.
async fn write_queued(outbox: Arc<Mutex<Outbox>>, queued: Arc<Notify>) {
    loop {
        queued.notified().await;
        let drained = std::future::poll_fn(|cx| lock(&outbox).poll_drain(cx)).await;
        if drained.is_err() {
            lock(&outbox).broken = true;
            return;
        }
    }
}

/// The guest's input and what is still to be written to it.
struct Outbox {
    writer: GuestWriter,
    /// Frames not yet written, oldest first; the first is written up to `written`.
    queue: VecDeque<Vec<u8>>,
    written: usize,
    /// Bytes were written since the last flush.
    needs_flush: bool,
    /// A write failed: nothing more is sent.
    broken: bool,
}

impl Outbox {
    /// Writes and flushes everything queued. Pending when the input is full (`cx`'s waker
    /// is woken when it can take more).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(front) = self.queue.front() {
            let written =
                ready!(Pin::new(&mut self.writer).poll_write(cx, &front[self.written..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += written;
            self.needs_flush = true;
            if self.written == front.len() {
                self.queue.pop_front();
                self.written = 0;
            }
        }
        if self.needs_flush {
            ready!(Pin::new(&mut self.writer).poll_flush(cx))?;
            self.needs_flush = false;
        }
        Poll::Ready(Ok(()))
    }
}

fn lock(outbox: &Mutex<Outbox>) -> MutexGuard<'_, Outbox> {
    outbox.lock().unwrap_or_else(PoisonError::into_inner)
}

fn gone() -> SandboxError {
    SandboxError::GuestGone("the sandbox stopped reading its input".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn frames_that_fit_are_written_by_the_caller_in_order() {
        let (writer, mut reader) = tokio::io::duplex(1024);
        let sender = FrameSender::spawn(Box::pin(writer));
        sender.send(b"one ".to_vec()).unwrap();
        sender.send(b"two".to_vec()).unwrap();
        assert!(
            lock(&sender.outbox).queue.is_empty(),
            "both frames were written at once"
        );
        let mut read = vec![0; 7];
        reader.read_exact(&mut read).await.unwrap();
        assert_eq!(read, b"one two");
    }

    #[tokio::test]
    async fn what_the_input_cannot_take_is_written_once_the_guest_reads() {
        let (writer, mut reader) = tokio::io::duplex(8);
        let sender = FrameSender::spawn(Box::pin(writer));
        let frames: Vec<Vec<u8>> = (0..20_u8).map(|i| vec![b'a' + i; 100]).collect();
        for frame in &frames {
            sender.send(frame.clone()).unwrap();
        }
        let mut read = vec![0; 2000];
        reader.read_exact(&mut read).await.unwrap();
        assert_eq!(read, frames.concat());
    }

    #[tokio::test]
    async fn a_guest_that_stopped_reading_makes_sends_fail() {
        let (writer, reader) = tokio::io::duplex(8);
        let sender = FrameSender::spawn(Box::pin(writer));
        drop(reader);
        let mut failed = false;
        for _ in 0..100 {
            if sender.send(vec![0; 16]).is_err() {
                failed = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(failed, "sends kept succeeding to a closed input");
    }
}
