//! Whether runs are going on, so background work (refilling the warm pool) can wait for a
//! quiet moment instead of taking CPU from a live call and its reply.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Runs in flight, and when the last one ended.
#[derive(Debug)]
pub(crate) struct Activity {
    running: AtomicUsize,
    last_end: Mutex<Instant>,
}

/// One run in flight; dropping it ends it.
#[derive(Debug)]
pub struct Running<'a>(&'a Activity);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        *self.0.last_end.lock().expect("activity lock") = Instant::now();
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            running: AtomicUsize::new(0),
            last_end: Mutex::new(Instant::now()),
        }
    }

    /// Counts a run until the returned guard is dropped.
    pub(crate) fn start(&self) -> Running<'_> {
        self.running.fetch_add(1, Ordering::AcqRel);
        Running(self)
    }

    /// No run in flight, and none ended within `quiet`.
    pub(crate) fn is_quiet(&self, quiet: Duration) -> bool {
        self.running.load(Ordering::Acquire) == 0
            && self.last_end.lock().expect("activity lock").elapsed() >= quiet
    }

    /// Waits until [`Activity::is_quiet`], or `at_most` (a busy bridge still gets its
    /// background work done).
    pub(crate) async fn until_quiet(&self, quiet: Duration, at_most: Duration) {
        let deadline = Instant::now() + at_most;
        while !self.is_quiet(quiet) && Instant::now() < deadline {
            tokio::time::sleep(quiet / 2).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_millis(20);

    #[tokio::test(start_paused = true)]
    async fn quiet_only_a_while_after_the_last_run_ended() {
        let activity = Activity::new();
        tokio::time::advance(QUIET).await;
        assert!(activity.is_quiet(QUIET));
        let running = activity.start();
        tokio::time::advance(QUIET * 10).await;
        assert!(!activity.is_quiet(QUIET), "a run is in flight");
        drop(running);
        assert!(!activity.is_quiet(QUIET), "a run just ended");
        tokio::time::advance(QUIET).await;
        assert!(activity.is_quiet(QUIET));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_quiet_ends_when_it_comes_or_at_the_bound() {
        let activity = Activity::new();
        let started = Instant::now();
        activity.until_quiet(QUIET, Duration::from_secs(1)).await;
        assert!(started.elapsed() <= QUIET, "{:?}", started.elapsed());

        let _running = activity.start();
        let started = Instant::now();
        activity.until_quiet(QUIET, Duration::from_secs(1)).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(1) + QUIET,
            "{waited:?}"
        );
    }
}
