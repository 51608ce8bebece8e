//! Sums of the counts partial windows carry: totals that detect or survive overflow, and the
//! check that a probability sum fits its count.

/// Whether `sum` can be the sum of `n` probabilities. The tolerance covers float rounding: each
/// addition errs by at most 2^-53 relative, far below 1e-9 for any count a window holds.
pub(super) fn probability_sum_fits(sum: f64, n: u64) -> bool {
    sum.is_finite() && sum >= 0.0 && sum <= n as f64 * (1.0 + 1e-9)
}

/// The sum of counts, or `None` when it overflows (only a forged message gets there).
pub(super) fn checked_total(counts: &[u64]) -> Option<u64> {
    counts
        .iter()
        .try_fold(0u64, |total, &n| total.checked_add(n))
}

/// The sum of counts, at most u64::MAX: merged totals stay total whatever they were fed.
pub(super) fn saturating_total(counts: &[u64]) -> u64 {
    counts.iter().fold(0, |total, &n| total.saturating_add(n))
}

/// Adds `more` into `total` bin by bin; bins only one side has are left as they are.
pub(super) fn add_bins(total: &mut [u64], more: &[u64]) {
    for (t, n) in total.iter_mut().zip(more) {
        *t = t.saturating_add(*n);
    }
}
