//! Concept drift, synthetic: a labelled stream whose relationship between the features and
//! churn changes midway, for tests and demonstrations of continuous training (`churn retrain`).
//!
//! The customers look the same before and after the change (same feature distributions); only
//! who churns changes, from [`crate::synth::HIDDEN_TRUTH`] to [`DRIFTED_TRUTH`]. So a champion
//! trained before the change keeps scoring in range, with no extrapolation flag and no PSI
//! drift on its inputs, while its ranking quietly stops meaning anything: only labelled outcomes
//! show it, which is why retraining reads them back.

#[cfg(test)]
mod tests;

use crate::features::Feature;
use crate::schema::Customer;
use crate::synth::{generate_customers, generate_customers_under, GenerateOptions, HiddenTruth};

/// The world after the change: sites barely matter any more, an account manager now goes with
/// churn, big spenders and long-tenured customers leave, older ones stay. Its churn rate is
/// close to the original's (~18%), so the change is not visible in the base rate either.
pub const DRIFTED_TRUTH: HiddenTruth = HiddenTruth {
    coefficients: [
        (Feature::Age, -0.5),
        (Feature::TotalPurchase, 0.8),
        (Feature::AccountManager, 0.9),
        (Feature::Years, -0.4),
        (Feature::NumSites, 0.4),
        (Feature::TenureYears, 0.6),
    ],
    intercept: -2.0,
};

/// `options.rows` customers in stream order: the first `change_at` labelled by the original
/// truth, the rest by [`DRIFTED_TRUTH`] (drawn with another seed, so no customer repeats).
/// Deterministic by seed.
pub fn stream_with_drift(options: &GenerateOptions, change_at: usize) -> Vec<Customer> {
    let before = change_at.min(options.rows);
    let mut stream = generate_customers(&GenerateOptions {
        rows: before,
        ..options.clone()
    });
    stream.extend(generate_customers_under(
        &GenerateOptions {
            rows: options.rows - before,
            seed: options.seed ^ 0x64_72_69_66_74,
            ..options.clone()
        },
        &DRIFTED_TRUTH,
    ));
    stream
}
