//! Reading: partials merged into totals, and the summaries people look at (the web server sends
//! them to the browser).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::counts::{add_bins, saturating_total};
use super::drift::{psi, MIN_DRIFT_SAMPLE, PSI_DRIFT_THRESHOLD};
use super::partial::{QualityCounts, SegmentCounts, WindowPartial, EXTRAPOLATED};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentSummary {
    pub count: u64,
    pub churn_predicted: u64,
    pub churn_rate: f64,
    pub mean_probability: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftSummary {
    pub version: String,
    pub psi: f64,
    /// PSI above the threshold over at least MIN_DRIFT_SAMPLE scores.
    pub drifting: bool,
    pub scored: u64,
}

impl DriftSummary {
    /// Whether there are enough scores to judge drift at all (`MIN_DRIFT_SAMPLE`).
    pub fn enough_scores(&self) -> bool {
        self.scored >= MIN_DRIFT_SAMPLE
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualitySummary {
    pub labelled: u64,
    pub roc_auc: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    /// (mean predicted, observed churn rate, count) per non-empty probability bin.
    pub calibration: Vec<(f64, f64, u64)>,
}

/// Counts, drift and quality over any set of partial windows (one window, or many).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub segments: BTreeMap<String, SegmentCounts>,
    pub drift_version: Option<String>,
    pub drift_bins: Vec<u64>,
    pub quality: BTreeMap<String, QualityCounts>,
}

impl Totals {
    /// Adds a partial in. Total for any input (bins one side lacks are skipped, counts
    /// saturate) though readers `validate` first: a bad message must never take a reader down.
    pub fn add(&mut self, partial: &WindowPartial) {
        for (key, c) in &partial.segments {
            let t = self.segments.entry(key.clone()).or_default();
            t.count = t.count.saturating_add(c.count);
            t.churn_predicted = t.churn_predicted.saturating_add(c.churn_predicted);
            t.sum_probability += c.sum_probability;
        }
        if partial.drift_version.is_some() {
            if self.drift_version != partial.drift_version {
                // A new model: drift is measured against the newest reference only.
                self.drift_version = partial.drift_version.clone();
                self.drift_bins = vec![0; partial.drift_bins.len()];
            }
            add_bins(&mut self.drift_bins, &partial.drift_bins);
        }
        for (version, q) in &partial.quality {
            self.quality.entry(version.clone()).or_default().add(q);
        }
    }

    /// Predictions with an input outside their model's training range.
    pub fn extrapolated(&self) -> SegmentSummary {
        self.segment(EXTRAPOLATED)
    }

    pub fn segment(&self, key: &str) -> SegmentSummary {
        let c = self.segments.get(key).cloned().unwrap_or_default();
        let n = c.count.max(1) as f64;
        SegmentSummary {
            count: c.count,
            churn_predicted: c.churn_predicted,
            churn_rate: c.churn_predicted as f64 / n,
            mean_probability: c.sum_probability / n,
        }
    }

    pub fn drift(&self) -> Option<DriftSummary> {
        let version = self.drift_version.clone()?;
        let scored = saturating_total(&self.drift_bins);
        (scored > 0).then(|| {
            let psi = psi(&self.drift_bins);
            DriftSummary {
                version,
                psi,
                drifting: psi > PSI_DRIFT_THRESHOLD && scored >= MIN_DRIFT_SAMPLE,
                scored,
            }
        })
    }

    pub fn quality(&self) -> BTreeMap<String, QualitySummary> {
        self.quality
            .iter()
            .map(|(version, q)| {
                let bins = q
                    .churner_bins
                    .iter()
                    .zip(&q.stayer_bins)
                    .zip(&q.predicted_sum_bins);
                let calibration = bins
                    .filter_map(|((&churners, &stayers), &sum)| {
                        let n = churners.saturating_add(stayers);
                        (n > 0).then(|| (sum / n as f64, churners as f64 / n as f64, n))
                    })
                    .collect();
                let summary = QualitySummary {
                    labelled: q.confusion.total() as u64,
                    roc_auc: binned_auc(&q.churner_bins, &q.stayer_bins),
                    accuracy: q.confusion.accuracy(),
                    precision: q.confusion.precision(),
                    recall: q.confusion.recall(),
                    calibration,
                };
                (version.clone(), summary)
            })
            .collect()
    }
}

/// ROC-AUC from probability histograms: pairs in different bins count by order, pairs in the same
/// bin count half (exact when scores are distinct within bins).
pub fn binned_auc(churners: &[u64], stayers: &[u64]) -> f64 {
    let (p, n) = (saturating_total(churners), saturating_total(stayers));
    if p == 0 || n == 0 {
        return f64::NAN;
    }
    let mut stayers_below = 0u64;
    let mut wins = 0.0;
    for (c, s) in churners.iter().zip(stayers) {
        wins += *c as f64 * (stayers_below as f64 + *s as f64 / 2.0);
        stayers_below = stayers_below.saturating_add(*s);
    }
    wins / (p as f64 * n as f64)
}
