//! Summaries of timed samples: the one place the bench turns durations into figures.
//!
//! Trusts nothing about its input but that a summary is asked of at least one sample (a
//! measurement with no samples is a bug in the caller, and panics). Guarantees every figure
//! is one of the samples (nearest rank, no interpolation), so a median is a time that was
//! measured.

use std::time::Duration;

use serde::Serialize;

/// Latency summary of repeated measurements, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    /// How many measurements.
    pub(crate) samples: usize,
    /// The fastest.
    pub(crate) min_ms: f64,
    /// The middle one (the upper of the two middles of an even count).
    pub(crate) median_ms: f64,
    /// The 95th percentile.
    pub(crate) p95_ms: f64,
    /// The 99th percentile.
    pub(crate) p99_ms: f64,
    /// The slowest.
    pub(crate) max_ms: f64,
}

impl Summary {
    /// Summarise `samples`; at least one.
    pub(crate) fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self {
            samples: samples.len(),
            min_ms: ms(samples[0]),
            median_ms: ms(quantile(&samples, 0.5)),
            p95_ms: ms(quantile(&samples, 0.95)),
            p99_ms: ms(quantile(&samples, 0.99)),
            max_ms: ms(samples[samples.len() - 1]),
        }
    }
}

/// The middle sample (the upper of the two middles of an even count); at least one.
pub(crate) fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    quantile(&samples, 0.5)
}

/// A duration in milliseconds, for reports.
pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The sample at quantile `q` (0 to 1) of `sorted`, by nearest rank.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "indices of small vectors"
    )]
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn median_of_an_even_count_is_the_upper_middle() {
        assert_eq!(median(millis(&[4, 1, 3, 2])), Duration::from_millis(3));
        assert_eq!(median(millis(&[3, 1, 2])), Duration::from_millis(2));
        assert_eq!(median(millis(&[7])), Duration::from_millis(7));
    }

    #[test]
    fn summary_figures_are_measured_samples() {
        let summary = Summary::of(millis(&(1..=100).rev().collect::<Vec<_>>()));
        assert_eq!(summary.samples, 100);
        assert!((summary.min_ms - 1.0).abs() < 1e-9);
        assert!((summary.median_ms - 51.0).abs() < 1e-9);
        assert!((summary.p95_ms - 95.0).abs() < 1e-9);
        assert!((summary.p99_ms - 99.0).abs() < 1e-9);
        assert!((summary.max_ms - 100.0).abs() < 1e-9);
    }

    #[test]
    fn summary_median_agrees_with_median() {
        for count in 1..20 {
            let samples = millis(&(0..count).map(|i| i * 7 % 13).collect::<Vec<_>>());
            let summary = Summary::of(samples.clone());
            assert!((summary.median_ms - ms(median(samples))).abs() < 1e-9);
        }
    }
}
