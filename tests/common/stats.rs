//! Order statistics of test measurements, one copy for every suite that prints or checks
//! them (`#[path = "../common/stats.rs"] mod stats;`). Nearest rank, no interpolation: each
//! figure is a value that was measured. Each takes at least one value.

/// The middle value (the upper of the two middles of an even count).
pub(crate) fn median<T: Ord + Copy>(mut values: Vec<T>) -> T {
    values.sort_unstable();
    values[values.len() / 2]
}

/// The value below which `percent` % of `values` lie (nearest rank, rounded down).
pub(crate) fn percentile<T: Ord + Copy>(values: &[T], percent: usize) -> T {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[(sorted.len() - 1) * percent / 100]
}
