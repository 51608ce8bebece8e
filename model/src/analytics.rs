//! Stream analytics over predictions: tumbling event-time windows, counts by segment, score
//! drift against training, and live model quality from records that carry their outcome.
//!
//! Each stream partition is aggregated on its own and published as a *partial* window whose
//! numbers all add up across partitions (counts, sums, histograms). Readers merge partials, so
//! any number of processors can share the partitions without double counting, and a window
//! revised by a late record simply replaces its earlier revision.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::message::Prediction;
use crate::metrics::Confusion;

/// Population stability index above which scores count as drifting. Industry convention:
/// below 0.1 stable, 0.1–0.2 a moderate shift, above 0.2 a significant one.
pub const PSI_DRIFT_THRESHOLD: f64 = 0.2;
/// Probability bins used to estimate ROC-AUC and calibration from mergeable histograms.
pub const QUALITY_BINS: usize = 20;
/// Closed windows kept to absorb late records.
const KEEP_CLOSED: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentCounts {
    pub count: u64,
    pub churn_predicted: u64,
    pub sum_probability: f64,
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

fn quality_bin(p: f64) -> usize {
    ((p * QUALITY_BINS as f64) as usize).min(QUALITY_BINS - 1)
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

impl WindowPartial {
    fn new(window_start_ms: i64, window_ms: i64, partition: i32, drift: &Option<DriftReference>) -> Self {
        WindowPartial {
            window_start_ms,
            window_ms,
            partition,
            revision: 0,
            segments: BTreeMap::new(),
            drift_version: drift.as_ref().map(|d| d.version.clone()),
            drift_bins: drift.as_ref().map(|d| vec![0; d.edges.len() + 1]).unwrap_or_default(),
            quality: BTreeMap::new(),
        }
    }

    fn add(&mut self, prediction: &Prediction, drift: &Option<DriftReference>) {
        for key in prediction.segments.keys() {
            let counts = self.segments.entry(key).or_default();
            counts.count += 1;
            counts.churn_predicted += u64::from(prediction.churn);
            counts.sum_probability += prediction.churn_probability;
        }
        if let Some(reference) = drift.as_ref().filter(|d| d.version == prediction.model_version) {
            let bin = reference.edges.iter().filter(|&&edge| prediction.churn_probability >= edge).count();
            if let Some(slot) = self.drift_bins.get_mut(bin) {
                *slot += 1;
            }
        }
        if let Some(actual) = prediction.actual_churn {
            self.add_outcome(&Scored::of(prediction), actual);
        }
    }

    /// Counts a true outcome against the prediction that was made for it.
    fn add_outcome(&mut self, scored: &Scored, actual: bool) {
        let q = self.quality.entry(scored.model_version.clone()).or_default();
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

/// What an outcome is judged against: the prediction made for the same record.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub model_version: String,
    pub probability: f64,
    pub churn: bool,
}

impl Scored {
    pub fn of(prediction: &Prediction) -> Self {
        Scored {
            model_version: prediction.model_version.clone(),
            probability: prediction.churn_probability,
            churn: prediction.churn,
        }
    }
}

/// Which input topic a record came from; each has its own offsets to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Predictions = 0,
    Outcomes = 1,
}

/// Predictions remembered per partition for joining outcomes that arrive later.
const REMEMBERED: usize = 200_000;
/// Outcomes kept while their prediction has not been seen yet.
const WAITING: usize = 100_000;

/// The training score distribution a model is compared against.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReference {
    pub version: String,
    /// Inner decile edges of the training scores (9 for deciles).
    pub edges: Vec<f64>,
}

struct OpenWindow {
    partial: WindowPartial,
    /// What the window already counted ("p:" predictions, "o:" outcomes), to count each once.
    ids: HashSet<String>,
    /// First offset per source that the window holds (i64::MAX for none).
    first_offsets: [i64; 2],
}

/// Tumbling event-time windows for one partition.
pub struct WindowAggregator {
    window_ms: i64,
    lateness_ms: i64,
    partition: i32,
    open: BTreeMap<i64, OpenWindow>,
    closed: BTreeMap<i64, (WindowPartial, HashSet<String>)>,
    watermark: i64,
    drift: Option<DriftReference>,
    /// Predictions by record id, oldest first for eviction.
    remembered: HashMap<String, Scored>,
    remembered_order: VecDeque<String>,
    /// Outcomes whose prediction has not arrived yet: id -> (offset, timestamp, outcome).
    waiting: HashMap<String, (i64, i64, bool)>,
    /// Records too late even for the kept closed windows.
    pub dropped_late: u64,
    pub duplicates: u64,
}

impl WindowAggregator {
    pub fn new(window_ms: i64, lateness_ms: i64, partition: i32) -> Self {
        WindowAggregator {
            window_ms: window_ms.max(1),
            lateness_ms: lateness_ms.max(0),
            partition,
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            watermark: i64::MIN,
            drift: None,
            remembered: Default::default(),
            remembered_order: Default::default(),
            waiting: Default::default(),
            dropped_late: 0,
            duplicates: 0,
        }
    }

    /// Sets the model the score drift is measured against (applies to windows opened after).
    pub fn set_drift_reference(&mut self, reference: Option<DriftReference>) {
        self.drift = reference;
    }

    fn start_of(&self, timestamp_ms: i64) -> i64 {
        timestamp_ms.div_euclid(self.window_ms) * self.window_ms
    }

    /// Counts one record into the window of `timestamp_ms`. Returns the revised window when a
    /// late record changed one that was already closed (to publish again); a `key` already
    /// counted in that window counts once.
    fn count(
        &mut self,
        source: Source,
        offset: i64,
        timestamp_ms: i64,
        key: String,
        apply: impl FnOnce(&mut WindowPartial, &Option<DriftReference>),
    ) -> Option<WindowPartial> {
        let start = self.start_of(timestamp_ms);
        self.watermark = self.watermark.max(timestamp_ms);
        if let Some((partial, ids)) = self.closed.get_mut(&start) {
            if !ids.insert(key) {
                self.duplicates += 1;
                return None;
            }
            apply(partial, &self.drift);
            partial.revision += 1;
            return Some(partial.clone());
        }
        if self.open.get(&start).is_none() && self.closed.keys().next().is_some_and(|&oldest| start < oldest) {
            self.dropped_late += 1;
            return None;
        }
        let (window_ms, partition, drift) = (self.window_ms, self.partition, self.drift.clone());
        let window = self.open.entry(start).or_insert_with(|| OpenWindow {
            partial: WindowPartial::new(start, window_ms, partition, &drift),
            ids: HashSet::new(),
            first_offsets: [i64::MAX; 2],
        });
        if !window.ids.insert(key) {
            self.duplicates += 1;
            return None;
        }
        let first = &mut window.first_offsets[source as usize];
        *first = (*first).min(offset);
        apply(&mut window.partial, &self.drift);
        None
    }

    /// Remembers a prediction so that an outcome arriving later can be joined to it.
    pub fn remember(&mut self, prediction: &Prediction) {
        if self.remembered.insert(prediction.id.clone(), Scored::of(prediction)).is_none() {
            self.remembered_order.push_back(prediction.id.clone());
            while self.remembered_order.len() > REMEMBERED {
                if let Some(old) = self.remembered_order.pop_front() {
                    self.remembered.remove(&old);
                }
            }
        }
    }

    /// Counts one prediction. Returns a revised window when a late record changed one that was
    /// already closed (to publish again); duplicates of an id within a window count once. An
    /// outcome that arrived before its prediction is counted with it.
    pub fn observe(&mut self, offset: i64, timestamp_ms: i64, prediction: &Prediction) -> Option<WindowPartial> {
        self.remember(prediction);
        let early_outcome = self.waiting.remove(&prediction.id).map(|(_, _, actual)| actual);
        let scored = Scored::of(prediction);
        self.count(Source::Predictions, offset, timestamp_ms, format!("p:{}", prediction.id), |w, drift| {
            w.add(prediction, drift);
            if let (Some(actual), None) = (early_outcome, prediction.actual_churn) {
                w.add_outcome(&scored, actual);
            }
        })
    }

    /// Counts a true outcome that arrived on its own (from a labels topic), joined by record id
    /// to the prediction made earlier, in the window of its arrival. Until that prediction is
    /// seen the outcome waits (bounded).
    pub fn observe_outcome(&mut self, offset: i64, timestamp_ms: i64, id: &str, actual: bool) -> Option<WindowPartial> {
        let Some(scored) = self.remembered.get(id).cloned() else {
            if self.waiting.len() < WAITING {
                self.waiting.insert(id.to_owned(), (offset, timestamp_ms, actual));
            } else {
                self.dropped_late += 1;
            }
            return None;
        };
        self.count(Source::Outcomes, offset, timestamp_ms, format!("o:{id}"), |w, _| w.add_outcome(&scored, actual))
    }

    /// Closes the windows whose end plus the allowed lateness has passed, by the stream's own
    /// time or by the wall clock (so a quiet stream still publishes its last window).
    pub fn close_due(&mut self, now_ms: i64) -> Vec<WindowPartial> {
        let time = self.watermark.max(now_ms);
        let due: Vec<i64> = self
            .open
            .keys()
            .copied()
            .filter(|&start| start + self.window_ms + self.lateness_ms <= time)
            .collect();
        let mut closed = Vec::new();
        for start in due {
            let window = self.open.remove(&start).expect("listed above");
            closed.push(window.partial.clone());
            self.closed.insert(start, (window.partial, window.ids));
        }
        while self.closed.len() > KEEP_CLOSED {
            self.closed.pop_first();
        }
        closed
    }

    /// The offset of `source` safe to commit: the first record still held in an open window or
    /// waiting for its prediction (it and what follows are re-read after a restart, rebuilding
    /// that state), or `None` when nothing is held (everything read so far is published).
    pub fn commit_offset(&self, source: Source) -> Option<i64> {
        let waiting = match source {
            Source::Outcomes => self.waiting.values().map(|(offset, _, _)| *offset).min(),
            Source::Predictions => None,
        };
        self.open
            .values()
            .map(|w| w.first_offsets[source as usize])
            .chain(waiting)
            .filter(|&o| o != i64::MAX)
            .min()
    }
}

// ---- Reading: merging partials into what people look at ----

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
    pub drifting: bool,
    pub scored: u64,
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
    pub fn add(&mut self, partial: &WindowPartial) {
        for (key, c) in &partial.segments {
            let t = self.segments.entry(key.clone()).or_default();
            t.count += c.count;
            t.churn_predicted += c.churn_predicted;
            t.sum_probability += c.sum_probability;
        }
        if partial.drift_version.is_some() {
            if self.drift_version != partial.drift_version {
                // A new model: drift is measured against the newest reference only.
                self.drift_version = partial.drift_version.clone();
                self.drift_bins = vec![0; partial.drift_bins.len()];
            }
            for (t, c) in self.drift_bins.iter_mut().zip(&partial.drift_bins) {
                *t += c;
            }
        }
        for (version, q) in &partial.quality {
            let t = self.quality.entry(version.clone()).or_default();
            t.confusion.true_positive += q.confusion.true_positive;
            t.confusion.false_positive += q.confusion.false_positive;
            t.confusion.true_negative += q.confusion.true_negative;
            t.confusion.false_negative += q.confusion.false_negative;
            for i in 0..QUALITY_BINS {
                t.churner_bins[i] += q.churner_bins[i];
                t.stayer_bins[i] += q.stayer_bins[i];
                t.predicted_sum_bins[i] += q.predicted_sum_bins[i];
            }
        }
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
        let scored: u64 = self.drift_bins.iter().sum();
        (scored > 0).then(|| {
            let psi = psi(&self.drift_bins);
            DriftSummary { version, psi, drifting: psi > PSI_DRIFT_THRESHOLD, scored }
        })
    }

    pub fn quality(&self) -> BTreeMap<String, QualitySummary> {
        self.quality
            .iter()
            .map(|(version, q)| {
                let calibration = (0..QUALITY_BINS)
                    .filter_map(|i| {
                        let n = q.churner_bins[i] + q.stayer_bins[i];
                        (n > 0).then(|| (q.predicted_sum_bins[i] / n as f64, q.churner_bins[i] as f64 / n as f64, n))
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

/// Population stability index of observed counts against equal expected shares (the training
/// deciles put 10% of training scores in each bin).
pub fn psi(observed: &[u64]) -> f64 {
    let total: u64 = observed.iter().sum();
    if total == 0 || observed.is_empty() {
        return 0.0;
    }
    let expected = 1.0 / observed.len() as f64;
    observed
        .iter()
        .map(|&n| {
            // A small floor keeps empty bins finite, as is customary.
            let actual = (n as f64 / total as f64).max(1e-4);
            (actual - expected) * (actual / expected).ln()
        })
        .sum()
}

/// ROC-AUC from probability histograms: pairs in different bins count by order, pairs in the same
/// bin count half (exact when scores are distinct within bins).
pub fn binned_auc(churners: &[u64], stayers: &[u64]) -> f64 {
    let (p, n): (u64, u64) = (churners.iter().sum(), stayers.iter().sum());
    if p == 0 || n == 0 {
        return f64::NAN;
    }
    let mut stayers_below = 0u64;
    let mut wins = 0.0;
    for (c, s) in churners.iter().zip(stayers) {
        wins += *c as f64 * (stayers_below as f64 + *s as f64 / 2.0);
        stayers_below += s;
    }
    wins / (p as f64 * n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::Segments;

    fn prediction(id: &str, p: f64, churn: bool, actual: Option<bool>, manager: bool) -> Prediction {
        Prediction {
            id: id.into(),
            name: "x".into(),
            churn_probability: p,
            churn,
            threshold: 0.5,
            model_version: "m-a".into(),
            scored_at: String::new(),
            top_factors: vec![],
            actual_churn: actual,
            segments: Segments {
                account_manager: manager,
                tenure: "2-5y".into(),
                sites: "7-9".into(),
                state: Some("AK".into()),
            },
        }
    }

    #[test]
    fn records_land_in_their_tumbling_window_and_windows_close_after_the_lateness() {
        let mut agg = WindowAggregator::new(10_000, 2_000, 0);
        agg.observe(1, 10_000, &prediction("a", 0.9, true, None, true)); // window [10s, 20s)
        agg.observe(2, 19_999, &prediction("b", 0.1, false, None, false));
        agg.observe(3, 20_000, &prediction("c", 0.2, false, None, false)); // window [20s, 30s)
        assert!(agg.close_due(0).is_empty(), "20s + 2s lateness not reached by the stream");
        assert_eq!(agg.commit_offset(Source::Predictions), Some(1));
        agg.observe(4, 22_000, &prediction("d", 0.3, false, None, false));
        let closed = agg.close_due(0);
        assert_eq!(closed.len(), 1);
        let w = &closed[0];
        assert_eq!(w.window_start_ms, 10_000);
        assert_eq!(w.segments["all"], SegmentCounts { count: 2, churn_predicted: 1, sum_probability: 1.0 });
        assert_eq!(w.segments["account_manager=yes"].count, 1);
        assert_eq!(w.segments["state=AK"].count, 2);
        assert_eq!(agg.commit_offset(Source::Predictions), Some(3), "the open window's first record");
    }

    #[test]
    fn the_wall_clock_closes_a_quiet_stream_and_empty_windows_are_not_published() {
        let mut agg = WindowAggregator::new(10_000, 2_000, 0);
        agg.observe(1, 5_000, &prediction("a", 0.9, true, None, true));
        assert_eq!(agg.close_due(11_999).len(), 0);
        assert_eq!(agg.close_due(12_000).len(), 1);
        assert!(agg.close_due(100_000).is_empty(), "no records, no windows");
        assert_eq!(agg.commit_offset(Source::Predictions), None);
    }

    #[test]
    fn a_late_record_revises_its_closed_window_and_duplicates_count_once() {
        let mut agg = WindowAggregator::new(10_000, 0, 3);
        agg.observe(1, 1_000, &prediction("a", 0.9, true, None, true));
        let first = agg.close_due(10_000).remove(0);
        assert_eq!(first.revision, 0);
        let revised = agg.observe(2, 2_000, &prediction("b", 0.4, false, None, true)).expect("revised");
        assert_eq!((revised.revision, revised.segments["all"].count), (1, 2));
        assert_eq!(revised.key(), first.key(), "the revision replaces the first publication");
        assert!(agg.observe(3, 3_000, &prediction("b", 0.4, false, None, true)).is_none());
        assert_eq!(agg.duplicates, 1);
        agg.observe(4, 15_000, &prediction("c", 0.1, false, None, true));
        assert_eq!(agg.close_due(20_000)[0].segments["all"].count, 1);
    }

    #[test]
    fn after_a_restart_re_reading_from_the_commit_offset_rebuilds_the_open_window() {
        let stream: Vec<(i64, i64, Prediction)> = (0..6)
            .map(|i| (i, i * 4_000, prediction(&format!("r{i}"), 0.1 * i as f64, i % 2 == 0, None, false)))
            .collect();
        let mut before = WindowAggregator::new(10_000, 0, 0);
        let mut published = Vec::new();
        for (offset, ts, p) in &stream[..4] {
            before.observe(*offset, *ts, p);
            published.extend(before.close_due(0));
        }
        let resume = before.commit_offset(Source::Predictions).unwrap();
        // Crash: the open window is lost; a new aggregator re-reads from the committed offset.
        let mut after = WindowAggregator::new(10_000, 0, 0);
        for (offset, ts, p) in stream.iter().filter(|(o, _, _)| *o >= resume) {
            after.observe(*offset, *ts, p);
            published.extend(after.close_due(0));
        }
        published.extend(after.close_due(i64::MAX / 2));
        let mut totals = Totals::default();
        published.iter().for_each(|w| totals.add(w));
        assert_eq!(totals.segment("all").count, 6, "every record counted exactly once");
    }

    #[test]
    fn partials_of_several_partitions_merge_into_exact_totals() {
        let mut a = WindowAggregator::new(10_000, 0, 0);
        let mut b = WindowAggregator::new(10_000, 0, 1);
        a.observe(1, 1_000, &prediction("x", 0.8, true, Some(true), true));
        b.observe(1, 2_000, &prediction("y", 0.2, false, Some(false), false));
        b.observe(2, 3_000, &prediction("z", 0.6, true, Some(false), false));
        let mut totals = Totals::default();
        for w in a.close_due(10_000).iter().chain(&b.close_due(10_000)) {
            totals.add(w);
        }
        let all = totals.segment("all");
        assert_eq!((all.count, all.churn_predicted), (3, 2));
        assert!((all.mean_probability - 1.6 / 3.0).abs() < 1e-12);
        let q = &totals.quality()["m-a"];
        assert_eq!(q.labelled, 3);
        assert!((q.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(q.roc_auc, 1.0, "the churner outscored both stayers");
    }

    #[test]
    fn outcomes_from_a_labels_topic_join_their_prediction_by_id_in_either_order() {
        let mut agg = WindowAggregator::new(10_000, 0, 0);
        // Prediction first, outcome later (in a later window).
        agg.observe(1, 1_000, &prediction("a", 0.9, true, None, true));
        assert!(agg.observe_outcome(7, 12_000, "a", true).is_none());
        // Outcome first: it waits, holding its offset back from the commit, and joins on arrival.
        assert!(agg.observe_outcome(8, 12_500, "b", false).is_none());
        assert_eq!(agg.commit_offset(Source::Outcomes), Some(7));
        agg.observe(2, 13_000, &prediction("b", 0.7, true, None, false));
        // An outcome for an unknown id simply waits; a repeated one counts once.
        assert!(agg.observe_outcome(9, 13_500, "a", true).is_none());
        let mut totals = Totals::default();
        for w in agg.close_due(30_000) {
            totals.add(&w);
        }
        let q = &totals.quality()["m-a"];
        assert_eq!(q.labelled, 2);
        assert_eq!((q.precision, q.recall), (0.5, 1.0), "a churned as predicted, b stayed though flagged");
        assert_eq!(agg.commit_offset(Source::Outcomes), None);
    }

    #[test]
    fn drift_is_the_psi_against_the_training_deciles() {
        assert_eq!(psi(&[10; 10]), 0.0);
        let shifted = [0, 0, 0, 0, 0, 0, 0, 0, 50, 50];
        assert!(psi(&shifted) > PSI_DRIFT_THRESHOLD);
        let mut agg = WindowAggregator::new(10_000, 0, 0);
        let edges: Vec<f64> = (1..10).map(|i| i as f64 / 10.0).collect();
        agg.set_drift_reference(Some(DriftReference { version: "m-a".into(), edges }));
        for i in 0..100 {
            agg.observe(i, 1_000, &prediction(&format!("h{i}"), 0.95, true, None, true));
        }
        let mut totals = Totals::default();
        totals.add(&agg.close_due(10_000)[0]);
        let drift = totals.drift().unwrap();
        assert!(drift.drifting && drift.psi > 1.0, "{drift:?}");
        assert_eq!(drift.scored, 100);
    }

    #[test]
    fn binned_auc_matches_the_exact_auc_when_bins_separate_the_scores() {
        let probabilities = [0.05, 0.15, 0.35, 0.55, 0.75, 0.95];
        let labels = [false, true, false, true, false, true];
        let mut churners = vec![0; QUALITY_BINS];
        let mut stayers = vec![0; QUALITY_BINS];
        for (p, y) in probabilities.iter().zip(labels) {
            if y { churners[quality_bin(*p)] += 1 } else { stayers[quality_bin(*p)] += 1 }
        }
        let exact = crate::metrics::roc_auc(&probabilities, &labels);
        assert!((binned_auc(&churners, &stayers) - exact).abs() < 1e-12);
    }
}
