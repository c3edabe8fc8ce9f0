//! What a tenant uses now (runs in flight, runs in the last minute) and the refusals.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Tenant;

/// The window `runs_per_minute` counts over.
const MINUTE: Duration = Duration::from_mins(1);

/// A tenant's current use.
#[derive(Debug, Default)]
pub(super) struct Usage {
    running: AtomicUsize,
    started: Mutex<VecDeque<Instant>>,
}

/// Why a tenant's request was refused: the limit, named as in the tokens file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaRefusal {
    /// As many runs as `max_concurrent_runs` are running.
    #[error(
        "tenant {tenant} already has {max} runs in progress (its limit, max_concurrent_runs); \
         try again when one has finished"
    )]
    ConcurrentRuns {
        /// The tenant.
        tenant: String,
        /// The limit.
        max: usize,
    },
    /// `runs_per_minute` runs started in the last minute.
    #[error(
        "tenant {tenant} has started {max} runs in the last minute (its limit, \
         runs_per_minute); try again in {retry_after_s} s"
    )]
    RunsPerMinute {
        /// The tenant.
        tenant: String,
        /// The limit.
        max: usize,
        /// Seconds until the oldest of those runs leaves the window.
        retry_after_s: u64,
    },
    /// `max_sessions` sessions are alive.
    #[error(
        "tenant {tenant} has {max} live sessions (its limit, max_sessions); end one (a call \
         with reset, or a client that disconnects) or reuse a session name"
    )]
    Sessions {
        /// The tenant.
        tenant: String,
        /// The limit.
        max: usize,
    },
}

/// One admitted run of a tenant; it stops counting as running when dropped.
#[derive(Debug)]
pub struct RunPermit {
    tenant: Arc<Tenant>,
}

impl Drop for RunPermit {
    fn drop(&mut self) {
        self.tenant.usage.running.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) fn start_run(tenant: &Arc<Tenant>) -> Result<RunPermit, QuotaRefusal> {
    start_run_at(tenant, Instant::now())
}

fn start_run_at(tenant: &Arc<Tenant>, now: Instant) -> Result<RunPermit, QuotaRefusal> {
    let usage = &tenant.usage;
    let running = usage.running.fetch_add(1, Ordering::AcqRel);
    // From here on the permit gives the slot back, whatever refuses the run below.
    let permit = RunPermit {
        tenant: tenant.clone(),
    };
    if let Some(max) = tenant.limits.max_concurrent_runs
        && running >= max
    {
        return Err(QuotaRefusal::ConcurrentRuns {
            tenant: tenant.name.clone(),
            max,
        });
    }
    if let Some(max) = tenant.limits.runs_per_minute {
        let mut started = usage
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while started
            .front()
            .is_some_and(|first| now.saturating_duration_since(*first) >= MINUTE)
        {
            started.pop_front();
        }
        if started.len() >= max {
            let oldest = *started.front().expect("max is at least 1");
            let wait = MINUTE.saturating_sub(now.saturating_duration_since(oldest));
            return Err(QuotaRefusal::RunsPerMinute {
                tenant: tenant.name.clone(),
                max,
                retry_after_s: wait.as_secs().max(1),
            });
        }
        started.push_back(now);
    }
    Ok(permit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::Limits;

    fn tenant(limits: Limits) -> Arc<Tenant> {
        Arc::new(Tenant::new("team", limits))
    }

    #[test]
    fn concurrent_runs_are_capped_and_a_finished_run_frees_its_slot() {
        let tenant = tenant(Limits {
            max_concurrent_runs: Some(2),
            ..Limits::default()
        });
        let first = tenant.start_run().unwrap();
        let _second = tenant.start_run().unwrap();
        let refused = tenant.start_run().unwrap_err();
        assert_eq!(
            refused,
            QuotaRefusal::ConcurrentRuns {
                tenant: "team".into(),
                max: 2
            }
        );
        assert!(refused.to_string().contains("max_concurrent_runs"));
        drop(first);
        assert!(tenant.start_run().is_ok(), "the refused run took no slot");
    }

    #[test]
    fn runs_per_minute_count_over_a_sliding_minute() {
        let tenant = tenant(Limits {
            runs_per_minute: Some(3),
            ..Limits::default()
        });
        let start = Instant::now();
        for second in 0..3 {
            drop(start_run_at(&tenant, start + Duration::from_secs(second)).unwrap());
        }
        let refused = start_run_at(&tenant, start + Duration::from_secs(30)).unwrap_err();
        assert_eq!(
            refused,
            QuotaRefusal::RunsPerMinute {
                tenant: "team".into(),
                max: 3,
                retry_after_s: 30
            }
        );
        // The first run leaves the window a minute after it started.
        assert!(start_run_at(&tenant, start + Duration::from_mins(1)).is_ok());
        assert!(start_run_at(&tenant, start + Duration::from_mins(1)).is_err());
    }

    #[test]
    fn without_limits_nothing_is_refused() {
        let tenant = tenant(Limits::default());
        let permits: Vec<_> = (0..1000).map(|_| tenant.start_run().unwrap()).collect();
        assert_eq!(permits.len(), 1000);
    }
}
