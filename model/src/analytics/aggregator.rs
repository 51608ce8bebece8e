//! The window state machine of one partition: tumbling event-time windows, lateness and
//! revisions, duplicates, outcomes joined to their predictions, and the offsets safe to commit.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::message::Prediction;

use super::drift::DriftReference;
use super::partial::{Scored, WindowPartial};

/// Closed windows kept to absorb late records.
pub(super) const KEEP_CLOSED: usize = 64;

/// How far ahead of the wall clock a record's timestamp may be and still count at its own time.
/// Further ahead is a wrong clock (a producer's, or a hand-set CreateTime): taken at face value
/// it would move the watermark that far ahead, and every window would close as soon as it
/// opened until real time caught up. Such a record counts at the wall clock instead. A minute
/// covers the clock differences of hosts that run NTP many times over.
pub const FUTURE_TOLERANCE_MS: i64 = 60_000;

/// Predictions remembered per partition for joining outcomes that arrive later. Memory bound:
/// an entry is a keyed 64-bit hash of the record id (not the id: the ids took most of the 160–220
/// bytes an entry used to cost), the shared model version, probability and flag, and the hash
/// again in the eviction queue: about 56 bytes with the tables' slack, whatever the id's length,
/// so at most about 15 MB per partition when full (`held_bytes`, tested at the bound).
pub const REMEMBERED: usize = 200_000;
/// How long a prediction is remembered, by its timestamp against stream time: outcomes that
/// come later than a day are not joined (a restart recalls a day of predictions, the same span).
pub const REMEMBER_FOR_MS: i64 = 24 * 3_600_000;
/// Outcomes kept while their prediction has not been seen yet: by the keyed hash of the record
/// id, like the remembered predictions; about 70 bytes each with the tables' slack, so at most
/// about 7 MB per partition.
pub const WAITING: usize = 100_000;
/// How long (in stream time after its arrival) an outcome waits for its prediction. A record
/// is scored within seconds, so an outcome still unmatched after an hour is for a record that
/// was dead-lettered, scored before the predictions the processor remembers, or lost; waiting
/// longer would hold its offset, and so the labels commit, back forever. It is given up and
/// counted in `expired_outcomes`.
pub const WAIT_FOR_PREDICTION_MS: i64 = 3_600_000;

/// Longest model version a prediction may name ("m-" and 12 hex digits today): versions key the
/// quality counts of every window.
pub(super) const MAX_VERSION_BYTES: usize = 64;

/// Which input topic a record came from; each has its own offsets to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Predictions = 0,
    Outcomes = 1,
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
    /// Predictions by record id (`id_key`), and (timestamp, id) oldest first for eviction.
    remembered: HashMap<u64, Scored>,
    remembered_order: VecDeque<(i64, u64)>,
    /// The model version of the newest remembered prediction, shared by the entries that name it.
    version: Option<Arc<str>>,
    /// Outcomes whose prediction has not arrived yet, and (arrival, id) for their expiry; by
    /// `id_key`.
    waiting: HashMap<u64, Waiting>,
    waiting_since: BTreeSet<(i64, u64)>,
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
            version: None,
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

    /// What the remembered predictions and the waiting outcomes are found by: a keyed 64-bit hash
    /// of the record id (8 bytes, however long the id), apart from the windows' `counted_key`s.
    /// Two ids among a partition's 300,000 remembered and waiting collide by chance with a
    /// probability of about 2e-9; nobody can make them collide on purpose (random keys).
    fn id_key(&self, id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.id_hasher.hash_one((u8::MAX, id))
    }

    /// What an outcome will be judged against, with the model version shared.
    fn scored(&mut self, prediction: &Prediction) -> Scored {
        let version = match &self.version {
            Some(v) if **v == *prediction.model_version => v.clone(),
            _ => {
                let v: Arc<str> = prediction.model_version.as_str().into();
                self.version = Some(v.clone());
                v
            }
        };
        Scored::with_version(prediction, version)
    }

    /// How many predictions are remembered and outcomes waiting (for the bounds' tests).
    pub fn held(&self) -> (usize, usize) {
        (self.remembered.len(), self.waiting.len())
    }

    /// The bytes the remembered predictions and waiting outcomes take, from their tables'
    /// capacities: nothing else of theirs is on the heap (the model versions are shared).
    pub fn held_bytes(&self) -> usize {
        use std::mem::size_of;
        // hashbrown: one control byte per bucket; buckets are the capacity over 7/8, a power of 2.
        let buckets = |capacity: usize| (capacity * 8 / 7).next_power_of_two();
        buckets(self.remembered.capacity()) * (size_of::<(u64, Scored)>() + 1)
            + self.remembered_order.capacity() * size_of::<(i64, u64)>()
            + buckets(self.waiting.capacity()) * (size_of::<(u64, Waiting)>() + 1)
            // A B-tree node holds up to 11 entries; count them two-thirds full.
            + self.waiting_since.len() * size_of::<(i64, u64)>() * 3 / 2
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
        if !self.open.contains_key(&start)
            && self
                .closed
                .keys()
                .next()
                .is_some_and(|&oldest| start < oldest)
        {
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
        let (key, scored) = (self.id_key(&prediction.id), self.scored(prediction));
        if self.remembered.insert(key, scored).is_none() {
            self.remembered_order.push_back((timestamp_ms, key));
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
    pub fn observe(
        &mut self,
        offset: i64,
        timestamp_ms: i64,
        now_ms: i64,
        prediction: &Prediction,
    ) -> Option<WindowPartial> {
        if !countable(prediction) {
            self.malformed += 1;
            return None;
        }
        let at = self.event_time(timestamp_ms, now_ms);
        self.remember(at, prediction);
        let early_outcome = self.take_waiting(&prediction.id);
        let scored = Scored::of(prediction);
        self.count(
            Source::Predictions,
            offset,
            at,
            self.counted_key(Source::Predictions, &prediction.id),
            |w, drift| {
                w.add(prediction, drift);
                if let (Some(actual), None) = (early_outcome, prediction.actual_churn) {
                    w.add_outcome(&scored, actual);
                }
            },
        )
    }

    /// Counts a true outcome that arrived on its own (from a labels topic), joined by record id
    /// to the prediction made earlier, in the window of its arrival. Until that prediction is
    /// seen the outcome waits (bounded in number and by WAIT_FOR_PREDICTION_MS).
    pub fn observe_outcome(
        &mut self,
        offset: i64,
        timestamp_ms: i64,
        now_ms: i64,
        id: &str,
        actual: bool,
    ) -> Option<WindowPartial> {
        let at = self.event_time(timestamp_ms, now_ms);
        let Some(scored) = self.remembered.get(&self.id_key(id)).cloned() else {
            self.wait(id, Waiting { offset, at, actual });
            return None;
        };
        self.count(
            Source::Outcomes,
            offset,
            at,
            self.counted_key(Source::Outcomes, id),
            |w, _| w.add_outcome(&scored, actual),
        )
    }

    fn wait(&mut self, id: &str, outcome: Waiting) {
        if self.take_waiting(id).is_none() && self.waiting.len() >= WAITING {
            self.expired_outcomes += 1;
            return;
        }
        self.watermark = self.watermark.max(outcome.at);
        let key = self.id_key(id);
        self.waiting_since.insert((outcome.at, key));
        self.waiting.insert(key, outcome);
    }

    /// The outcome waiting for this prediction, if one is.
    fn take_waiting(&mut self, id: &str) -> Option<bool> {
        let key = self.id_key(id);
        let outcome = self.waiting.remove(&key)?;
        self.waiting_since.remove(&(outcome.at, key));
        Some(outcome.actual)
    }

    /// Gives up the outcomes that waited WAIT_FOR_PREDICTION_MS of stream time, so that their
    /// offsets no longer hold the commit back.
    fn expire_waiting(&mut self) {
        let horizon = self.watermark.saturating_sub(WAIT_FOR_PREDICTION_MS);
        while self
            .waiting_since
            .first()
            .is_some_and(|(at, _)| *at <= horizon)
        {
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
            .filter(|&start| {
                start
                    .saturating_add(self.window_ms)
                    .saturating_add(self.lateness_ms)
                    <= time
            })
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
