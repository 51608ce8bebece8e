//! Stream analytics over predictions: tumbling event-time windows, counts by segment, score
//! drift against training, and live model quality from records that carry their outcome.
//!
//! Each stream partition is aggregated on its own and published as a *partial* window whose
//! numbers all add up across partitions (counts, sums, histograms). Readers merge partials, so
//! any number of processors can share the partitions without double counting, and a window
//! revised by a late record simply replaces its earlier revision.
//!
//! Nothing read from a topic is trusted: readers `validate` a partial before merging it, merging
//! itself never indexes past what a partial holds, and a record stamped far in the future counts
//! at the wall clock instead of closing every window at once.
//!
//! `aggregator` is the window state machine a processor runs per partition, `partial` the stats
//! message it publishes, `summary` what readers merge partials into, `drift` the comparison of
//! live scores with training; `counts` holds the sums they share.

mod aggregator;
mod counts;
mod drift;
mod partial;
mod summary;
#[cfg(test)]
mod tests;

pub use aggregator::{
    Source, WindowAggregator, FUTURE_TOLERANCE_MS, REMEMBERED, REMEMBER_FOR_MS, WAITING,
    WAIT_FOR_PREDICTION_MS,
};
pub use drift::{psi, DriftReference, MIN_DRIFT_SAMPLE, PSI_DRIFT_THRESHOLD};
pub use partial::{
    MalformedPartial, QualityCounts, Scored, SegmentCounts, WindowPartial, EXTRAPOLATED,
    QUALITY_BINS,
};
pub use summary::{binned_auc, DriftSummary, QualitySummary, SegmentSummary, Totals};
