//! How many warm sessions the pool should hold: the configured floor, plus what demand has
//! shown the floor is too small for.
//!
//! Each new session the pool could not serve warm (a miss) raises the target by one, up to
//! [`POOL_MAX`]; each [`DECAY`] without a miss halves what it holds above the floor. A
//! bridge whose calls come one at a time stays at the floor (the refill keeps up); an agent
//! that starts eight sessions at once finds eight warm the next time, and the extra
//! sessions are shut down within minutes once such bursts stop (8 extra: 4, 2, 1, 0 at 2,
//! 4, 6 and 8 minutes), so their memory is not held for long. A floor of 0 turns the pool
//! off.
//!
//! Time is passed in, so the rule is tested without waiting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most warm sessions the pool ever holds, whatever the demand (the floor's own limit).
pub(crate) const POOL_MAX: usize = crate::settings::MAX_POOL_SIZE as usize;

/// How long without a miss halves the target's part above the floor.
pub(crate) const DECAY: Duration = Duration::from_mins(2);

/// The pool's target size, from the floor and the misses seen.
#[derive(Debug)]
pub(crate) struct Demand {
    floor: usize,
    state: Mutex<Extra>,
}

/// Warm sessions wanted above the floor, and when that last changed.
#[derive(Debug)]
struct Extra {
    sessions: usize,
    since: Instant,
}

impl Extra {
    /// Halve the count for each whole [`DECAY`] since it last changed.
    fn settle(&mut self, now: Instant) {
        let steps = now.saturating_duration_since(self.since).as_secs() / DECAY.as_secs();
        if steps == 0 {
            return;
        }
        let steps = u32::try_from(steps).unwrap_or(u32::MAX);
        self.sessions = self.sessions.checked_shr(steps).unwrap_or(0);
        self.since = if self.sessions == 0 {
            now
        } else {
            self.since + DECAY * steps
        };
    }
}

impl Demand {
    /// A target that starts at `floor` (at most [`POOL_MAX`]); 0 keeps no pool at all.
    pub(crate) fn new(floor: usize, now: Instant) -> Self {
        Self {
            floor: floor.min(POOL_MAX),
            state: Mutex::new(Extra {
                sessions: 0,
                since: now,
            }),
        }
    }

    /// A new session had to start cold at `now`: the pool was empty.
    pub(crate) fn missed(&self, now: Instant) {
        if self.floor == 0 {
            return;
        }
        let mut extra = self.state.lock().expect("demand lock");
        extra.settle(now);
        extra.sessions = (extra.sessions + 1).min(POOL_MAX - self.floor);
        extra.since = now;
    }

    /// How many warm sessions the pool should hold at `now`.
    pub(crate) fn target(&self, now: Instant) -> usize {
        if self.floor == 0 {
            return 0;
        }
        let mut extra = self.state.lock().expect("demand lock");
        extra.settle(now);
        self.floor + extra.sessions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second short of one decay period.
    const JUST_BEFORE: Duration = Duration::from_secs(DECAY.as_secs() - 1);

    #[test]
    fn the_target_starts_at_the_floor_and_grows_by_one_per_miss() {
        let start = Instant::now();
        let demand = Demand::new(1, start);
        assert_eq!(demand.target(start), 1);
        for _ in 0..7 {
            demand.missed(start);
        }
        assert_eq!(demand.target(start), 8);
    }

    #[test]
    fn it_never_passes_the_pool_maximum() {
        let start = Instant::now();
        let demand = Demand::new(3, start);
        for _ in 0..100 {
            demand.missed(start);
        }
        assert_eq!(demand.target(start), POOL_MAX);
        assert_eq!(Demand::new(99, start).target(start), POOL_MAX);
    }

    #[test]
    fn each_quiet_decay_period_halves_what_is_above_the_floor() {
        let start = Instant::now();
        let demand = Demand::new(2, start);
        for _ in 0..8 {
            demand.missed(start);
        }
        assert_eq!(demand.target(start + JUST_BEFORE), 10);
        assert_eq!(demand.target(start + DECAY), 6);
        assert_eq!(demand.target(start + DECAY * 2 + Duration::from_secs(1)), 4);
        assert_eq!(demand.target(start + DECAY * 3), 3);
        assert_eq!(demand.target(start + DECAY * 4), 2);
        assert_eq!(demand.target(start + DECAY * 100), 2);
    }

    #[test]
    fn a_long_quiet_settles_in_one_step() {
        let start = Instant::now();
        let demand = Demand::new(1, start);
        for _ in 0..15 {
            demand.missed(start);
        }
        assert_eq!(demand.target(start + DECAY * 2), 1 + 3);
        assert_eq!(demand.target(start + DECAY * 1000), 1);
    }

    #[test]
    fn a_miss_restarts_the_decay() {
        let start = Instant::now();
        let demand = Demand::new(1, start);
        demand.missed(start);
        demand.missed(start);
        let later = start + DECAY + DECAY / 2;
        assert_eq!(demand.target(later), 2, "one period passed: 2 extra halved");
        demand.missed(later);
        assert_eq!(demand.target(later + JUST_BEFORE), 3);
        assert_eq!(demand.target(later + DECAY), 2);
    }

    #[test]
    fn a_floor_of_zero_keeps_no_pool_whatever_the_demand() {
        let start = Instant::now();
        let demand = Demand::new(0, start);
        for _ in 0..5 {
            demand.missed(start);
        }
        assert_eq!(demand.target(start), 0);
    }
}
