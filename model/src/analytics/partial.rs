//! The stats message: one window of one partition, in numbers that add up across partitions
//! (counts, sums, histograms); how a prediction or an outcome is added to it; and the checks a
//! reader runs before trusting one read from the topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::message::Prediction;
use crate::quality::Confusion;
use crate::record::truncate_utf8;

use super::counts::{add_bins, checked_total, probability_sum_fits};
use super::drift::DriftReference;

/// Probability bins used to estimate ROC-AUC and calibration from mergeable histograms.
pub const QUALITY_BINS: usize = 20;

/// Most drift bins a partial may carry: the reference has deciles (10 bins); this leaves room
/// for finer references while keeping a hostile message from allocating without bound.
const MAX_DRIFT_BINS: usize = 1_000;

/// Most records one partial may count: 2^40, about 10^12, a million records a second for 12
/// days in one window. Real windows are far below; a forged count near u64::MAX is refused, so
/// sums over the windows a reader keeps cannot overflow.
const MAX_WINDOW_COUNT: u64 = 1 << 40;

/// The segment of predictions with an input outside their model's training range
/// (`Prediction::extrapolated`): counted like any segment, so it adds up across partitions and
/// shows its own churn rate.
pub const EXTRAPOLATED: &str = "extrapolated";

/// Most model versions whose live quality one window counts.
const MAX_VERSIONS_PER_WINDOW: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentCounts {
    pub count: u64,
    pub churn_predicted: u64,
    pub sum_probability: f64,
}

impl SegmentCounts {
    /// Whether these numbers could come from `count` predictions with probabilities in [0, 1].
    fn is_consistent(&self) -> bool {
        self.count <= MAX_WINDOW_COUNT
            && self.churn_predicted <= self.count
            && probability_sum_fits(self.sum_probability, self.count)
    }
}

/// Outcome-labelled predictions of one model version, in summable form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityCounts {
    pub confusion: Confusion,
    /// Predicted-probability histograms of churners and stayers (QUALITY_BINS equal bins).
    pub churner_bins: Vec<u64>,
    pub stayer_bins: Vec<u64>,
    /// Sum of predicted probabilities per bin, for calibration.
    pub predicted_sum_bins: Vec<f64>,
}

impl Default for QualityCounts {
    fn default() -> Self {
        QualityCounts {
            confusion: Confusion::default(),
            churner_bins: vec![0; QUALITY_BINS],
            stayer_bins: vec![0; QUALITY_BINS],
            predicted_sum_bins: vec![0.0; QUALITY_BINS],
        }
    }
}

impl QualityCounts {
    /// What is wrong with these counts, if anything: every labelled prediction sits in exactly
    /// one confusion cell and one probability bin, so the two must agree.
    fn problem(&self) -> Option<&'static str> {
        if [
            self.churner_bins.len(),
            self.stayer_bins.len(),
            self.predicted_sum_bins.len(),
        ] != [QUALITY_BINS; 3]
        {
            return Some("probability bins are not QUALITY_BINS long");
        }
        let c = &self.confusion;
        let churners = (c.true_positive as u64).checked_add(c.false_negative as u64);
        let stayers = (c.false_positive as u64).checked_add(c.true_negative as u64);
        if churners != checked_total(&self.churner_bins)
            || stayers != checked_total(&self.stayer_bins)
        {
            return Some("the confusion matrix does not match the probability bins");
        }
        if churners
            .zip(stayers)
            .and_then(|(c, s)| c.checked_add(s))
            .is_none_or(|n| n > MAX_WINDOW_COUNT)
        {
            return Some("more outcomes than a window can hold");
        }
        let bins = self
            .churner_bins
            .iter()
            .zip(&self.stayer_bins)
            .zip(&self.predicted_sum_bins);
        for ((&churners, &stayers), &sum) in bins {
            // Cannot overflow: the totals above were checked.
            if !probability_sum_fits(sum, churners + stayers) {
                return Some("a bin's probability sum does not fit its count");
            }
        }
        None
    }

    pub(super) fn add(&mut self, more: &QualityCounts) {
        let (t, c) = (&mut self.confusion, &more.confusion);
        t.true_positive = t.true_positive.saturating_add(c.true_positive);
        t.false_positive = t.false_positive.saturating_add(c.false_positive);
        t.true_negative = t.true_negative.saturating_add(c.true_negative);
        t.false_negative = t.false_negative.saturating_add(c.false_negative);
        add_bins(&mut self.churner_bins, &more.churner_bins);
        add_bins(&mut self.stayer_bins, &more.stayer_bins);
        for (t, s) in self
            .predicted_sum_bins
            .iter_mut()
            .zip(&more.predicted_sum_bins)
        {
            *t += s;
        }
    }
}

pub(super) fn quality_bin(p: f64) -> usize {
    ((p * QUALITY_BINS as f64) as usize).min(QUALITY_BINS - 1)
}

/// Why a stats message cannot be merged: its numbers could not have come from a processor, and
/// adding them would corrupt every total they join.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MalformedPartial {
    #[error("window length {0} ms is not positive")]
    WindowLength(i64),
    #[error("window start {start} ms is not a multiple of the window length {length} ms")]
    Misaligned { start: i64, length: i64 },
    #[error("negative partition {0}")]
    Partition(i32),
    #[error("segment {0:?}: more churners than records, or a probability sum outside [0, count]")]
    Segment(String),
    #[error("drift bins: {0}")]
    Drift(&'static str),
    #[error("quality of model {version:?}: {problem}")]
    Quality {
        version: String,
        problem: &'static str,
    },
}

/// One window of one partition. Every number adds up across partitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowPartial {
    pub window_start_ms: i64,
    pub window_ms: i64,
    pub partition: i32,
    /// Bumped each time a late record revises an already published window.
    pub revision: u32,
    pub segments: BTreeMap<String, SegmentCounts>,
    /// Model version whose training score deciles `drift_bins` counts against.
    pub drift_version: Option<String>,
    pub drift_bins: Vec<u64>,
    /// Live quality per model version, from records that carried their true label.
    pub quality: BTreeMap<String, QualityCounts>,
}

/// A name from a message, short enough for an error message or a log line.
fn shown(name: &str) -> String {
    truncate_utf8(name, 64).into_owned()
}

impl WindowPartial {
    pub(super) fn new(
        window_start_ms: i64,
        window_ms: i64,
        partition: i32,
        drift: &Option<DriftReference>,
    ) -> Self {
        WindowPartial {
            window_start_ms,
            window_ms,
            partition,
            revision: 0,
            segments: BTreeMap::new(),
            drift_version: drift.as_ref().map(|d| d.version.clone()),
            drift_bins: drift
                .as_ref()
                .map(|d| vec![0; d.edges.len() + 1])
                .unwrap_or_default(),
            quality: BTreeMap::new(),
        }
    }

    /// Checks everything a reader relies on, so that a short, forged or corrupted message on the
    /// stats topic is skipped instead of merged. Whatever a `WindowAggregator` publishes passes.
    pub fn validate(&self) -> Result<(), MalformedPartial> {
        if self.window_ms <= 0 {
            return Err(MalformedPartial::WindowLength(self.window_ms));
        }
        if self.window_start_ms.rem_euclid(self.window_ms) != 0 {
            return Err(MalformedPartial::Misaligned {
                start: self.window_start_ms,
                length: self.window_ms,
            });
        }
        if self.partition < 0 {
            return Err(MalformedPartial::Partition(self.partition));
        }
        if let Some((key, _)) = self.segments.iter().find(|(_, c)| !c.is_consistent()) {
            return Err(MalformedPartial::Segment(shown(key)));
        }
        self.drift_problem()
            .map_or(Ok(()), |problem| Err(MalformedPartial::Drift(problem)))?;
        for (version, q) in &self.quality {
            if let Some(problem) = q.problem() {
                return Err(MalformedPartial::Quality {
                    version: shown(version),
                    problem,
                });
            }
        }
        Ok(())
    }

    fn drift_problem(&self) -> Option<&'static str> {
        match (&self.drift_version, self.drift_bins.len()) {
            (None, 0) => None,
            (None, _) => Some("bins without a model version"),
            (Some(_), 0) => Some("a model version without bins"),
            (Some(_), n) if n > MAX_DRIFT_BINS => Some("more bins than any reference has"),
            // Each prediction counted in drift also counted in the "all" segment.
            _ => match checked_total(&self.drift_bins) {
                Some(scored) if scored <= self.segments.get("all").map_or(0, |c| c.count) => None,
                _ => Some("more predictions binned than counted"),
            },
        }
    }

    pub(super) fn add(&mut self, prediction: &Prediction, drift: &Option<DriftReference>) {
        let mut keys = prediction.segments.keys();
        if !prediction.extrapolated.is_empty() {
            keys.push(EXTRAPOLATED.to_owned());
        }
        for key in keys {
            let counts = self.segments.entry(key).or_default();
            counts.count += 1;
            counts.churn_predicted += u64::from(prediction.churn);
            counts.sum_probability += prediction.churn_probability;
        }
        // Only against the reference this window's bins were made for: a new model arriving
        // while the window is open (or closed and revised) must not mix two references' bins.
        let reference = drift.as_ref().filter(|d| {
            d.version == prediction.model_version && self.drift_version.as_ref() == Some(&d.version)
        });
        if let Some(reference) = reference {
            if let Some(slot) = self
                .drift_bins
                .get_mut(reference.bin(prediction.churn_probability))
            {
                *slot += 1;
            }
        }
        if let Some(actual) = prediction.actual_churn {
            self.add_outcome(&Scored::of(prediction), actual);
        }
    }

    /// Counts a true outcome against the prediction that was made for it.
    pub(super) fn add_outcome(&mut self, scored: &Scored, actual: bool) {
        // A window's quality counts are one entry per model version (a champion and a few
        // predecessors in practice); forged versions beyond the bound are not counted, so that a
        // window always stays small enough to publish (~1 KB per version).
        if self.quality.len() >= MAX_VERSIONS_PER_WINDOW
            && !self.quality.contains_key(&*scored.model_version)
        {
            return;
        }
        let q = self
            .quality
            .entry(scored.model_version.to_string())
            .or_default();
        let bin = quality_bin(scored.probability);
        q.confusion.count(scored.churn, actual);
        if actual {
            q.churner_bins[bin] += 1;
        } else {
            q.stayer_bins[bin] += 1;
        }
        q.predicted_sum_bins[bin] += scored.probability;
    }

    /// Stable message key: the same window and partition always overwrite each other.
    pub fn key(&self) -> String {
        format!("{}/p{}", self.window_start_ms, self.partition)
    }
}

/// What an outcome is judged against: the prediction made for the same record. Kept for
/// hundreds of thousands of predictions (`aggregator::REMEMBERED`), so small: the version is
/// shared with every other prediction of that model.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub model_version: Arc<str>,
    pub probability: f64,
    pub churn: bool,
}

impl Scored {
    pub fn of(prediction: &Prediction) -> Self {
        Self::with_version(prediction, prediction.model_version.as_str().into())
    }

    /// With the model version given (shared), rather than copied from the prediction.
    pub fn with_version(prediction: &Prediction, model_version: Arc<str>) -> Self {
        Scored {
            model_version,
            probability: prediction.churn_probability,
            churn: prediction.churn,
        }
    }
}
