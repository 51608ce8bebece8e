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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::message::Prediction;
use crate::model_file::ChurnModel;
use crate::quality::Confusion;
use crate::record::truncate_utf8;

/// Population stability index above which scores count as drifting. Industry convention:
/// below 0.1 stable, 0.1–0.2 a moderate shift, above 0.2 a significant one.
pub const PSI_DRIFT_THRESHOLD: f64 = 0.2;
/// Probability bins used to estimate ROC-AUC and calibration from mergeable histograms.
pub const QUALITY_BINS: usize = 20;
/// Closed windows kept to absorb late records.
const KEEP_CLOSED: usize = 64;
/// How far ahead of the wall clock a record's timestamp may be and still count at its own time.
/// Further ahead is a wrong clock (a producer's, or a hand-set CreateTime): taken at face value
/// it would move the watermark that far ahead, and every window would close as soon as it
/// opened until real time caught up. Such a record counts at the wall clock instead. A minute
/// covers the clock differences of hosts that run NTP many times over.
pub const FUTURE_TOLERANCE_MS: i64 = 60_000;
/// Most drift bins a partial may carry: the reference has deciles (10 bins); this leaves room
/// for finer references while keeping a hostile message from allocating without bound.
const MAX_DRIFT_BINS: usize = 1_000;
/// Most records one partial may count: 2^40, about 10^12, a million records a second for 12
/// days in one window. Real windows are far below; a forged count near u64::MAX is refused, so
/// sums over the windows a reader keeps cannot overflow.
const MAX_WINDOW_COUNT: u64 = 1 << 40;

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

/// Whether `sum` can be the sum of `n` probabilities. The tolerance covers float rounding: each
/// addition errs by at most 2^-53 relative, far below 1e-9 for any count a window holds.
fn probability_sum_fits(sum: f64, n: u64) -> bool {
    sum.is_finite() && sum >= 0.0 && sum <= n as f64 * (1.0 + 1e-9)
}

/// The sum of counts, or `None` when it overflows (only a forged message gets there).
fn checked_total(counts: &[u64]) -> Option<u64> {
    counts.iter().try_fold(0u64, |total, &n| total.checked_add(n))
}

/// The sum of counts, at most u64::MAX: merged totals stay total whatever they were fed.
fn saturating_total(counts: &[u64]) -> u64 {
    counts.iter().fold(0, |total, &n| total.saturating_add(n))
}

/// Adds `more` into `total` bin by bin; bins only one side has are left as they are.
fn add_bins(total: &mut [u64], more: &[u64]) {
    for (t, n) in total.iter_mut().zip(more) {
        *t = t.saturating_add(*n);
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
        if [self.churner_bins.len(), self.stayer_bins.len(), self.predicted_sum_bins.len()] != [QUALITY_BINS; 3] {
            return Some("probability bins are not QUALITY_BINS long");
        }
        let c = &self.confusion;
        let churners = (c.true_positive as u64).checked_add(c.false_negative as u64);
        let stayers = (c.false_positive as u64).checked_add(c.true_negative as u64);
        if churners != checked_total(&self.churner_bins) || stayers != checked_total(&self.stayer_bins) {
            return Some("the confusion matrix does not match the probability bins");
        }
        if churners.zip(stayers).and_then(|(c, s)| c.checked_add(s)).is_none_or(|n| n > MAX_WINDOW_COUNT) {
            return Some("more outcomes than a window can hold");
        }
        let bins = self.churner_bins.iter().zip(&self.stayer_bins).zip(&self.predicted_sum_bins);
        for ((&churners, &stayers), &sum) in bins {
            // Cannot overflow: the totals above were checked.
            if !probability_sum_fits(sum, churners + stayers) {
                return Some("a bin's probability sum does not fit its count");
            }
        }
        None
    }

    fn add(&mut self, more: &QualityCounts) {
        let (t, c) = (&mut self.confusion, &more.confusion);
        t.true_positive = t.true_positive.saturating_add(c.true_positive);
        t.false_positive = t.false_positive.saturating_add(c.false_positive);
        t.true_negative = t.true_negative.saturating_add(c.true_negative);
        t.false_negative = t.false_negative.saturating_add(c.false_negative);
        add_bins(&mut self.churner_bins, &more.churner_bins);
        add_bins(&mut self.stayer_bins, &more.stayer_bins);
        for (t, s) in self.predicted_sum_bins.iter_mut().zip(&more.predicted_sum_bins) {
            *t += s;
        }
    }
}

fn quality_bin(p: f64) -> usize {
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
    Quality { version: String, problem: &'static str },
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

    /// Checks everything a reader relies on, so that a short, forged or corrupted message on the
    /// stats topic is skipped instead of merged. Whatever a `WindowAggregator` publishes passes.
    pub fn validate(&self) -> Result<(), MalformedPartial> {
        if self.window_ms <= 0 {
            return Err(MalformedPartial::WindowLength(self.window_ms));
        }
        if self.window_start_ms.rem_euclid(self.window_ms) != 0 {
            return Err(MalformedPartial::Misaligned { start: self.window_start_ms, length: self.window_ms });
        }
        if self.partition < 0 {
            return Err(MalformedPartial::Partition(self.partition));
        }
        if let Some((key, _)) = self.segments.iter().find(|(_, c)| !c.is_consistent()) {
            return Err(MalformedPartial::Segment(shown(key)));
        }
        self.drift_problem().map_or(Ok(()), |problem| Err(MalformedPartial::Drift(problem)))?;
        for (version, q) in &self.quality {
            if let Some(problem) = q.problem() {
                return Err(MalformedPartial::Quality { version: shown(version), problem });
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

    fn add(&mut self, prediction: &Prediction, drift: &Option<DriftReference>) {
        for key in prediction.segments.keys() {
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
        // A window's quality counts are one entry per model version (a champion and a few
        // predecessors in practice); forged versions beyond the bound are not counted, so that a
        // window always stays small enough to publish (~1 KB per version).
        if self.quality.len() >= MAX_VERSIONS_PER_WINDOW && !self.quality.contains_key(&scored.model_version) {
            return;
        }
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

/// Predictions remembered per partition for joining outcomes that arrive later. Memory bound:
/// an entry (the record id, kept in the map and again in the eviction queue; the model version,
/// probability and flag; table slack) measured 160 bytes allocated with 10-byte ids and the
/// 14-byte model versions, 220 with the web's 40-byte ids: 32–44 MB per partition when full,
/// plus 2 bytes per further id byte.
pub const REMEMBERED: usize = 200_000;
/// How long a prediction is remembered, by its timestamp against stream time: outcomes that
/// come later than a day are not joined (a restart recalls a day of predictions, the same span).
pub const REMEMBER_FOR_MS: i64 = 24 * 3_600_000;
/// Outcomes kept while their prediction has not been seen yet: measured 150–210 bytes each
/// (10–40-byte ids, kept twice), so at most 15–21 MB per partition.
const WAITING: usize = 100_000;
/// How long (in stream time after its arrival) an outcome waits for its prediction. A record
/// is scored within seconds, so an outcome still unmatched after an hour is for a record that
/// was dead-lettered, scored before the predictions the processor remembers, or lost; waiting
/// longer would hold its offset, and so the labels commit, back forever. It is given up and
/// counted in `expired_outcomes`.
pub const WAIT_FOR_PREDICTION_MS: i64 = 3_600_000;

/// The training score distribution a model is compared against.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReference {
    pub version: String,
    /// Inner decile edges of the training scores (9 for deciles).
    pub edges: Vec<f64>,
}

/// Here, with the reference, rather than in `model_file`: the model file knows nothing of
/// analytics, so the modules depend on each other one way only.
impl ChurnModel {
    /// What live score drift is measured against.
    pub fn drift_reference(&self) -> Option<DriftReference> {
        (!self.score_deciles.is_empty()).then(|| DriftReference {
            version: self.version.clone(),
            edges: self.score_deciles.clone(),
        })
    }
}

struct OpenWindow {
    partial: WindowPartial,
    /// What the window already counted, to count each once: `WindowAggregator::counted_key`.
    ids: HashSet<u64>,
    /// First offset per source that the window holds (i64::MAX for none).
    first_offsets: [i64; 2],
}

/// An outcome whose prediction has not been seen yet.
struct Waiting {
    offset: i64,
    /// Its (event) time of arrival, which its expiry counts from.
    at: i64,
    actual: bool,
}

/// Whether a prediction's numbers can be counted: a probability outside [0, 1] (a forged or
/// corrupted message) would make its window fail every reader's validation.
fn countable(prediction: &Prediction) -> bool {
    (0.0..=1.0).contains(&prediction.churn_probability)
        && prediction.segments.is_known()
        && prediction.id.len() <= crate::record::MAX_KEY_BYTES
        && prediction.model_version.len() <= MAX_VERSION_BYTES
}

/// Most model versions whose live quality one window counts.
const MAX_VERSIONS_PER_WINDOW: usize = 32;
/// Longest model version a prediction may name ("m-" and 12 hex digits today): versions key the
/// quality counts of every window.
const MAX_VERSION_BYTES: usize = 64;

/// Tumbling event-time windows for one partition.
pub struct WindowAggregator {
    window_ms: i64,
    lateness_ms: i64,
    partition: i32,
    open: BTreeMap<i64, OpenWindow>,
    closed: BTreeMap<i64, (WindowPartial, HashSet<u64>)>,
    /// Random keys for `counted_key`.
    id_hasher: std::collections::hash_map::RandomState,
    /// The newest event time seen (future-dated records count at the wall clock).
    watermark: i64,
    drift: Option<DriftReference>,
    /// Predictions by record id, and (timestamp, id) oldest first for eviction.
    remembered: HashMap<String, Scored>,
    remembered_order: VecDeque<(i64, String)>,
    /// Outcomes whose prediction has not arrived yet, and (arrival, id) for their expiry.
    waiting: HashMap<String, Waiting>,
    waiting_since: BTreeSet<(i64, String)>,
    /// Records too late even for the kept closed windows.
    pub dropped_late: u64,
    pub duplicates: u64,
    /// Records stamped more than FUTURE_TOLERANCE_MS ahead of the wall clock (counted at it).
    pub future_dated: u64,
    /// Outcomes given up without their prediction: waited WAIT_FOR_PREDICTION_MS, or found
    /// WAITING outcomes already waiting.
    pub expired_outcomes: u64,
    /// Predictions not counted because their probability is outside [0, 1].
    pub malformed: u64,
}

impl WindowAggregator {
    pub fn new(window_ms: i64, lateness_ms: i64, partition: i32) -> Self {
        WindowAggregator {
            id_hasher: Default::default(),
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
            waiting_since: Default::default(),
            dropped_late: 0,
            duplicates: 0,
            future_dated: 0,
            expired_outcomes: 0,
            malformed: 0,
        }
    }

    /// Sets the model the score drift is measured against (applies to windows opened after).
    pub fn set_drift_reference(&mut self, reference: Option<DriftReference>) {
        self.drift = reference;
    }

    fn start_of(&self, timestamp_ms: i64) -> i64 {
        timestamp_ms.div_euclid(self.window_ms) * self.window_ms
    }

    /// The time a record counts at: its own, unless that is implausibly far in the future.
    fn event_time(&mut self, timestamp_ms: i64, now_ms: i64) -> i64 {
        if timestamp_ms > now_ms.saturating_add(FUTURE_TOLERANCE_MS) {
            self.future_dated += 1;
            now_ms
        } else {
            timestamp_ms
        }
    }

    /// What a window remembers of a counted record: a 64-bit hash of its source and id rather
    /// than the id (8 bytes instead of ~80 with the set's overhead: the windows kept for late
    /// records hold every id of about 65 windows). The hash keys are random per process, so no
    /// one can craft two ids that collide; by chance, two of a window's million ids collide with
    /// a probability of about 3e-8.
    fn counted_key(&self, source: Source, id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.id_hasher.hash_one((source as u8, id))
    }

    /// Counts one record into the window of event time `at`. Returns the revised window when a
    /// late record changed one that was already closed (to publish again); a `key` already
    /// counted in that window counts once.
    fn count(
        &mut self,
        source: Source,
        offset: i64,
        at: i64,
        key: u64,
        apply: impl FnOnce(&mut WindowPartial, &Option<DriftReference>),
    ) -> Option<WindowPartial> {
        let start = self.start_of(at);
        self.watermark = self.watermark.max(at);
        if let Some((partial, ids)) = self.closed.get_mut(&start) {
            if !ids.insert(key) {
                self.duplicates += 1;
                return None;
            }
            apply(partial, &self.drift);
            partial.revision += 1;
            return Some(partial.clone());
        }
        if !self.open.contains_key(&start) && self.closed.keys().next().is_some_and(|&oldest| start < oldest) {
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

    /// Remembers a prediction made at `timestamp_ms` so that an outcome arriving later can be
    /// joined to it, for REMEMBER_FOR_MS of stream time and among the newest REMEMBERED.
    pub fn remember(&mut self, timestamp_ms: i64, prediction: &Prediction) {
        if !countable(prediction) {
            return;
        }
        if self.remembered.insert(prediction.id.clone(), Scored::of(prediction)).is_none() {
            self.remembered_order.push_back((timestamp_ms, prediction.id.clone()));
        }
        self.forget_old();
    }

    /// Forgets predictions beyond the count bound or older than REMEMBER_FOR_MS. By arrival
    /// order: a prediction behind an older-stamped one waits for it (timestamps of one partition
    /// are nearly ordered, so this stretches the day by the stream's disorder at most).
    fn forget_old(&mut self) {
        let horizon = self.watermark.saturating_sub(REMEMBER_FOR_MS);
        while let Some((at, _)) = self.remembered_order.front() {
            if self.remembered_order.len() <= REMEMBERED && *at > horizon {
                break;
            }
            if let Some((_, old)) = self.remembered_order.pop_front() {
                self.remembered.remove(&old);
            }
        }
    }

    /// Counts one prediction stamped `timestamp_ms`, read at wall-clock time `now_ms`. Returns
    /// a revised window when a late record changed one that was already closed (to publish
    /// again); duplicates of an id within a window count once. An outcome that arrived before
    /// its prediction is counted with it.
    pub fn observe(&mut self, offset: i64, timestamp_ms: i64, now_ms: i64, prediction: &Prediction) -> Option<WindowPartial> {
        if !countable(prediction) {
            self.malformed += 1;
            return None;
        }
        let at = self.event_time(timestamp_ms, now_ms);
        self.remember(at, prediction);
        let early_outcome = self.take_waiting(&prediction.id);
        let scored = Scored::of(prediction);
        self.count(Source::Predictions, offset, at, self.counted_key(Source::Predictions, &prediction.id), |w, drift| {
            w.add(prediction, drift);
            if let (Some(actual), None) = (early_outcome, prediction.actual_churn) {
                w.add_outcome(&scored, actual);
            }
        })
    }

    /// Counts a true outcome that arrived on its own (from a labels topic), joined by record id
    /// to the prediction made earlier, in the window of its arrival. Until that prediction is
    /// seen the outcome waits (bounded in number and by WAIT_FOR_PREDICTION_MS).
    pub fn observe_outcome(&mut self, offset: i64, timestamp_ms: i64, now_ms: i64, id: &str, actual: bool) -> Option<WindowPartial> {
        let at = self.event_time(timestamp_ms, now_ms);
        let Some(scored) = self.remembered.get(id).cloned() else {
            self.wait(id, Waiting { offset, at, actual });
            return None;
        };
        self.count(Source::Outcomes, offset, at, self.counted_key(Source::Outcomes, id), |w, _| w.add_outcome(&scored, actual))
    }

    fn wait(&mut self, id: &str, outcome: Waiting) {
        if self.take_waiting(id).is_none() && self.waiting.len() >= WAITING {
            self.expired_outcomes += 1;
            return;
        }
        self.watermark = self.watermark.max(outcome.at);
        self.waiting_since.insert((outcome.at, id.to_owned()));
        self.waiting.insert(id.to_owned(), outcome);
    }

    /// The outcome waiting for this prediction, if one is.
    fn take_waiting(&mut self, id: &str) -> Option<bool> {
        let outcome = self.waiting.remove(id)?;
        self.waiting_since.remove(&(outcome.at, id.to_owned()));
        Some(outcome.actual)
    }

    /// Gives up the outcomes that waited WAIT_FOR_PREDICTION_MS of stream time, so that their
    /// offsets no longer hold the commit back.
    fn expire_waiting(&mut self) {
        let horizon = self.watermark.saturating_sub(WAIT_FOR_PREDICTION_MS);
        while self.waiting_since.first().is_some_and(|(at, _)| *at <= horizon) {
            if let Some((_, id)) = self.waiting_since.pop_first() {
                self.waiting.remove(&id);
                self.expired_outcomes += 1;
            }
        }
    }

    /// Closes the windows whose end plus the allowed lateness has passed, by the stream's own
    /// time or by the wall clock (so a quiet stream still publishes its last window), and lets
    /// go of outcomes and predictions past their time.
    pub fn close_due(&mut self, now_ms: i64) -> Vec<WindowPartial> {
        self.expire_waiting();
        self.forget_old();
        let time = self.watermark.max(now_ms);
        let due: Vec<i64> = self
            .open
            .keys()
            .copied()
            .filter(|&start| start.saturating_add(self.window_ms).saturating_add(self.lateness_ms) <= time)
            .collect();
        let mut closed = Vec::new();
        for start in due {
            if let Some(window) = self.open.remove(&start) {
                closed.push(window.partial.clone());
                self.closed.insert(start, (window.partial, window.ids));
            }
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
            Source::Outcomes => self.waiting.values().map(|w| w.offset).min(),
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
            DriftSummary { version, psi, drifting: psi > PSI_DRIFT_THRESHOLD, scored }
        })
    }

    pub fn quality(&self) -> BTreeMap<String, QualitySummary> {
        self.quality
            .iter()
            .map(|(version, q)| {
                let bins = q.churner_bins.iter().zip(&q.stayer_bins).zip(&q.predicted_sum_bins);
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

/// Population stability index of observed counts against equal expected shares (the training
/// deciles put 10% of training scores in each bin).
pub fn psi(observed: &[u64]) -> f64 {
    let total = saturating_total(observed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::Segments;

    /// The wall clock most tests read at: their records are stamped within FUTURE_TOLERANCE_MS.
    const CLOCK: i64 = 0;

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
        agg.observe(1, 10_000, CLOCK, &prediction("a", 0.9, true, None, true)); // window [10s, 20s)
        agg.observe(2, 19_999, CLOCK, &prediction("b", 0.1, false, None, false));
        agg.observe(3, 20_000, CLOCK, &prediction("c", 0.2, false, None, false)); // window [20s, 30s)
        assert!(agg.close_due(0).is_empty(), "20s + 2s lateness not reached by the stream");
        assert_eq!(agg.commit_offset(Source::Predictions), Some(1));
        agg.observe(4, 22_000, CLOCK, &prediction("d", 0.3, false, None, false));
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
        agg.observe(1, 5_000, CLOCK, &prediction("a", 0.9, true, None, true));
        assert_eq!(agg.close_due(11_999).len(), 0);
        assert_eq!(agg.close_due(12_000).len(), 1);
        assert!(agg.close_due(100_000).is_empty(), "no records, no windows");
        assert_eq!(agg.commit_offset(Source::Predictions), None);
    }

    #[test]
    fn a_late_record_revises_its_closed_window_and_duplicates_count_once() {
        let mut agg = WindowAggregator::new(10_000, 0, 3);
        agg.observe(1, 1_000, CLOCK, &prediction("a", 0.9, true, None, true));
        let first = agg.close_due(10_000).remove(0);
        assert_eq!(first.revision, 0);
        let revised = agg.observe(2, 2_000, CLOCK, &prediction("b", 0.4, false, None, true)).expect("revised");
        assert_eq!((revised.revision, revised.segments["all"].count), (1, 2));
        assert_eq!(revised.key(), first.key(), "the revision replaces the first publication");
        assert!(agg.observe(3, 3_000, CLOCK, &prediction("b", 0.4, false, None, true)).is_none());
        assert_eq!(agg.duplicates, 1);
        agg.observe(4, 15_000, CLOCK, &prediction("c", 0.1, false, None, true));
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
            before.observe(*offset, *ts, CLOCK, p);
            published.extend(before.close_due(0));
        }
        let resume = before.commit_offset(Source::Predictions).unwrap();
        // Crash: the open window is lost; a new aggregator re-reads from the committed offset.
        let mut after = WindowAggregator::new(10_000, 0, 0);
        for (offset, ts, p) in stream.iter().filter(|(o, _, _)| *o >= resume) {
            after.observe(*offset, *ts, CLOCK, p);
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
        a.observe(1, 1_000, CLOCK, &prediction("x", 0.8, true, Some(true), true));
        b.observe(1, 2_000, CLOCK, &prediction("y", 0.2, false, Some(false), false));
        b.observe(2, 3_000, CLOCK, &prediction("z", 0.6, true, Some(false), false));
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
        agg.observe(1, 1_000, CLOCK, &prediction("a", 0.9, true, None, true));
        assert!(agg.observe_outcome(7, 12_000, CLOCK, "a", true).is_none());
        // Outcome first: it waits, holding its offset back from the commit, and joins on arrival.
        assert!(agg.observe_outcome(8, 12_500, CLOCK, "b", false).is_none());
        assert_eq!(agg.commit_offset(Source::Outcomes), Some(7));
        agg.observe(2, 13_000, CLOCK, &prediction("b", 0.7, true, None, false));
        // An outcome for an unknown id simply waits; a repeated one counts once.
        assert!(agg.observe_outcome(9, 13_500, CLOCK, "a", true).is_none());
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
            agg.observe(i, 1_000, CLOCK, &prediction(&format!("h{i}"), 0.95, true, None, true));
        }
        let mut totals = Totals::default();
        totals.add(&agg.close_due(10_000)[0]);
        let drift = totals.drift().unwrap();
        assert!(drift.drifting && drift.psi > 1.0, "{drift:?}");
        assert_eq!(drift.scored, 100);
    }

    /// Every kind of record the aggregator handles, in and out of order, with a model change.
    fn busy_partition() -> Vec<WindowPartial> {
        let mut agg = WindowAggregator::new(10_000, 1_000, 2);
        let edges: Vec<f64> = (1..10).map(|i| i as f64 / 10.0).collect();
        agg.set_drift_reference(Some(DriftReference { version: "m-a".into(), edges: edges.clone() }));
        let mut published = Vec::new();
        for i in 0..200i64 {
            let p = (i % 101) as f64 / 100.0;
            let labelled = (i % 3 == 0).then_some(i % 2 == 0);
            let ts = i * 300 - (i % 7) * 2_000; // up to 12 s late
            published.extend(agg.observe(i, ts, CLOCK, &prediction(&format!("r{}", i % 190), p, p >= 0.5, labelled, i % 4 == 0)));
            if i % 5 == 0 {
                published.extend(agg.observe_outcome(i, ts, CLOCK, &format!("r{}", i / 2), i % 3 == 1));
                published.extend(agg.observe_outcome(i, ts, CLOCK, &format!("later{i}"), true));
            }
            if i == 100 {
                agg.set_drift_reference(Some(DriftReference { version: "m-b".into(), edges: edges.clone() }));
            }
            published.extend(agg.close_due(CLOCK));
        }
        for i in 0..40 {
            published.extend(agg.observe(1_000 + i, 60_000, CLOCK, &prediction(&format!("later{i}"), 0.3, false, None, false)));
        }
        published.extend(agg.close_due(i64::MAX));
        published
    }

    #[test]
    fn every_window_the_aggregator_publishes_passes_validation_also_after_a_round_trip() {
        let published = busy_partition();
        assert!(published.len() > 10 && published.iter().any(|w| w.revision > 0 && !w.quality.is_empty()));
        for window in &published {
            assert_eq!(window.validate(), Ok(()), "{window:?}");
            let read: WindowPartial = serde_json::from_slice(&serde_json::to_vec(window).unwrap()).unwrap();
            assert_eq!(read.validate(), Ok(()));
        }
    }

    #[test]
    fn validation_refuses_what_merging_cannot_trust() {
        let valid = busy_partition().into_iter().find(|w| !w.quality.is_empty() && w.drift_version.is_some()).unwrap();
        let version = valid.quality.keys().next().unwrap().clone();
        let broken = |change: &dyn Fn(&mut WindowPartial)| {
            let mut w = valid.clone();
            change(&mut w);
            w.validate().unwrap_err()
        };
        let quality = |problem| MalformedPartial::Quality { version: version.clone(), problem };
        fn q(w: &mut WindowPartial) -> &mut QualityCounts {
            w.quality.values_mut().next().unwrap()
        }
        assert_eq!(broken(&|w| q(w).churner_bins.truncate(3)), quality("probability bins are not QUALITY_BINS long"));
        assert_eq!(broken(&|w| q(w).predicted_sum_bins.push(0.0)), quality("probability bins are not QUALITY_BINS long"));
        assert_eq!(broken(&|w| q(w).confusion.true_positive += 1), quality("the confusion matrix does not match the probability bins"));
        assert_eq!(broken(&|w| q(w).churner_bins[0] = u64::MAX), quality("the confusion matrix does not match the probability bins"));
        assert_eq!(broken(&|w| q(w).predicted_sum_bins[0] = f64::NAN), quality("a bin's probability sum does not fit its count"));
        assert_eq!(broken(&|w| q(w).predicted_sum_bins[19] = -1.0), quality("a bin's probability sum does not fit its count"));
        assert_eq!(broken(&|w| w.window_ms = 0), MalformedPartial::WindowLength(0));
        assert_eq!(broken(&|w| w.window_start_ms += 1), MalformedPartial::Misaligned { start: valid.window_start_ms + 1, length: 10_000 });
        assert_eq!(broken(&|w| w.partition = -1), MalformedPartial::Partition(-1));
        fn all(w: &mut WindowPartial) -> &mut SegmentCounts {
            w.segments.get_mut("all").unwrap()
        }
        let segment = MalformedPartial::Segment("all".into());
        assert_eq!(broken(&|w| all(w).churn_predicted = all(w).count + 1), segment);
        assert_eq!(broken(&|w| all(w).sum_probability = all(w).count as f64 + 1.0), segment);
        assert_eq!(broken(&|w| all(w).sum_probability = f64::INFINITY), segment);
        assert_eq!(broken(&|w| all(w).count = u64::MAX), segment, "beyond what any window holds");
        assert_eq!(broken(&|w| w.drift_bins.clear()), MalformedPartial::Drift("a model version without bins"));
        assert_eq!(broken(&|w| w.drift_version = None), MalformedPartial::Drift("bins without a model version"));
        assert_eq!(broken(&|w| w.drift_bins = vec![0; 1_001]), MalformedPartial::Drift("more bins than any reference has"));
        assert_eq!(broken(&|w| w.drift_bins[0] += all(w).count), MalformedPartial::Drift("more predictions binned than counted"));
        assert_eq!(broken(&|w| w.drift_bins = vec![u64::MAX, 2]), MalformedPartial::Drift("more predictions binned than counted"));
    }

    #[test]
    fn merging_never_panics_or_overflows_even_on_partials_that_fail_validation() {
        let mut short = busy_partition().into_iter().find(|w| !w.quality.is_empty()).unwrap();
        for q in short.quality.values_mut() {
            q.churner_bins.truncate(2);
            q.stayer_bins.clear();
            q.predicted_sum_bins.truncate(1);
        }
        short.drift_bins = vec![u64::MAX; 3];
        short.segments.insert("all".into(), SegmentCounts { count: u64::MAX, churn_predicted: u64::MAX, sum_probability: 1.0 });
        let mut totals = Totals::default();
        totals.add(&short);
        totals.add(&short);
        assert_eq!(totals.segment("all").count, u64::MAX, "saturated, not wrapped");
        assert!(totals.drift().is_some());
        assert_eq!(totals.quality().len(), short.quality.len());
        // And the other way round: totals built from short vectors take full-length partials.
        let mut odd = Totals { drift_version: Some("m-a".into()), drift_bins: vec![1], ..Default::default() };
        odd.quality.insert("m-a".into(), QualityCounts { churner_bins: vec![], ..Default::default() });
        for w in busy_partition() {
            odd.add(&w);
        }
        odd.quality();
    }

    #[test]
    fn a_record_stamped_far_in_the_future_counts_at_the_wall_clock_and_closes_nothing_early() {
        let now = 1_700_000_000_000;
        let mut agg = WindowAggregator::new(10_000, 2_000, 0);
        agg.observe(1, now + 365 * 86_400_000, now, &prediction("typo", 0.9, true, None, true));
        assert_eq!(agg.future_dated, 1);
        agg.observe(2, now + 1_000, now, &prediction("a", 0.1, false, None, true));
        assert!(agg.close_due(now).is_empty(), "the open window is not closed by the bad clock");
        let within = now + FUTURE_TOLERANCE_MS;
        agg.observe(3, within, now, &prediction("b", 0.1, false, None, true));
        assert_eq!(agg.future_dated, 1, "a minute ahead is a clock difference, taken at face value");
        let closed = agg.close_due(now + 12_000);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].window_start_ms, now / 10_000 * 10_000);
        assert_eq!(closed[0].segments["all"].count, 2, "the future-dated record and its neighbour");
        assert_eq!(agg.dropped_late, 0);
    }

    #[test]
    fn an_outcome_whose_prediction_never_comes_expires_after_an_hour_of_stream_time() {
        let mut agg = WindowAggregator::new(10_000, 0, 0);
        let now = i64::MAX / 4; // wall clock far ahead: only stream time expires outcomes
        assert!(agg.observe_outcome(5, 0, now, "ghost", true).is_none());
        agg.observe_outcome(6, 1_000, now, "late", false);
        agg.observe(1, WAIT_FOR_PREDICTION_MS - 1, now, &prediction("x", 0.5, true, None, true));
        agg.close_due(0);
        assert_eq!((agg.expired_outcomes, agg.commit_offset(Source::Outcomes)), (0, Some(5)));
        agg.observe(2, WAIT_FOR_PREDICTION_MS, now, &prediction("y", 0.5, true, None, true));
        agg.close_due(0);
        assert_eq!(agg.expired_outcomes, 1);
        assert_eq!(agg.commit_offset(Source::Outcomes), Some(6), "the commit moves past the expired outcome");
        agg.observe(3, WAIT_FOR_PREDICTION_MS + 1_000, now, &prediction("late", 0.2, false, None, true));
        assert_eq!(agg.expired_outcomes, 1, "the other one is joined just in time");
        agg.observe(4, WAIT_FOR_PREDICTION_MS + 2_000, now, &prediction("ghost", 0.9, true, None, true));
        let mut totals = Totals::default();
        agg.close_due(i64::MAX).iter().for_each(|w| totals.add(w));
        assert_eq!(totals.quality()["m-a"].labelled, 1, "only the outcome still waiting was joined");
        assert_eq!(agg.commit_offset(Source::Outcomes), None);
    }

    #[test]
    fn predictions_are_remembered_for_a_day_of_stream_time() {
        let mut agg = WindowAggregator::new(10_000, 0, 0);
        agg.remember(0, &prediction("old", 0.9, true, None, true));
        agg.remember(1_000, &prediction("kept", 0.9, true, None, true));
        agg.observe(1, REMEMBER_FOR_MS + 500, REMEMBER_FOR_MS, &prediction("now", 0.1, false, None, true));
        agg.close_due(0);
        assert!(agg.observe_outcome(2, REMEMBER_FOR_MS + 600, REMEMBER_FOR_MS, "old", true).is_none());
        assert_eq!(agg.commit_offset(Source::Outcomes), Some(2), "a day old: it waits for a prediction again");
        agg.observe_outcome(3, REMEMBER_FOR_MS + 700, REMEMBER_FOR_MS, "kept", true);
        agg.observe_outcome(4, REMEMBER_FOR_MS + 800, REMEMBER_FOR_MS, "now", false);
        let mut totals = Totals::default();
        agg.close_due(i64::MAX).iter().for_each(|w| totals.add(w));
        assert_eq!(totals.quality()["m-a"].labelled, 2);
    }

    #[test]
fn forged_segments_ids_or_versions_are_counted_as_malformed_not_in_a_window() {
        let mut agg = WindowAggregator::new(10_000, 0, 0);
        let mut forged = vec![prediction("a", 0.5, false, None, false); 4];
        forged[0].segments.tenure = "x".repeat(600_000);
        forged[1].segments.state = Some("ZZ".into());
        forged[2].id = "i".repeat(crate::record::MAX_KEY_BYTES + 1);
        forged[3].model_version = "v".repeat(MAX_VERSION_BYTES + 1);
        for (i, p) in forged.iter().enumerate() {
            assert!(agg.observe(i as i64, 1_000, 1_000, p).is_none());
        }
        assert_eq!(agg.malformed, 4);
        assert!(agg.close_due(100_000).is_empty(), "nothing was counted");
    }

    #[test]
        fn a_prediction_with_an_impossible_probability_is_counted_as_malformed_not_in_a_window() {
        let mut agg = WindowAggregator::new(10_000, 0, 0);
        for p in [1.5, -0.1, f64::NAN] {
            assert!(agg.observe(1, 1_000, CLOCK, &prediction("bad", p, true, Some(true), true)).is_none());
        }
        assert_eq!(agg.malformed, 3);
        assert!(agg.observe_outcome(2, 1_000, CLOCK, "bad", true).is_none());
        assert_eq!(agg.commit_offset(Source::Predictions), None, "nothing held for it");
        assert!(agg.close_due(i64::MAX).is_empty(), "the outcome waits; no window was opened");
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
        let exact = crate::quality::roc_auc(&probabilities, &labels);
        assert!((binned_auc(&churners, &stayers) - exact).abs() < 1e-12);
    }
}
