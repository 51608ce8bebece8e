//! The stream-analytics processor: a consumer group on the predictions topic that keeps
//! tumbling windows per partition and publishes each closed window to the stats topic.
//!
//! Offsets are committed only up to the first record of the oldest window still open, so after a
//! crash or a rebalance the open windows are rebuilt by re-reading the topic. Windows are
//! published as per-partition partials keyed by window and partition, and readers add the
//! partitions up: several processors never double count.

use tokio_util::sync::CancellationToken;
use std::collections::btree_map::Entry as BTreeEntry;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use model::analytics::{Source, WindowAggregator, WindowPartial, REMEMBERED, REMEMBER_FOR_MS};
use model::{ChurnModel, Prediction};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::kafka::{Kafka, SkipLog};
use crate::supervisor::panic_message;

#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    pub group: String,
    pub window: Duration,
    /// How long after a window's end records still count in it before it is published.
    pub lateness: Duration,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions { group: "churn-analytics".into(), window: Duration::from_secs(10), lateness: Duration::from_secs(2) }
    }
}

struct PartitionState {
    aggregator: WindowAggregator,
    /// Per source (predictions, outcomes): the next offset after the last record read.
    next_offsets: [Option<i64>; 2],
}

/// After a restart or rebalance, remembers the partition's predictions from before the committed
/// offset (up to REMEMBER_FOR_MS and REMEMBERED records back), so outcomes arriving later still find the prediction they
/// judge.
fn remember_earlier(kafka: &Kafka, group: &StreamConsumer, partition: i32, aggregator: &mut WindowAggregator) -> Result<usize> {
    let topic = &kafka.topics.predictions;
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, partition);
    let committed = group.committed_offsets(wanted, Duration::from_secs(5))?;
    let Some(until) = committed.find_partition(topic, partition).and_then(|e| e.offset().to_raw()).filter(|&o| o > 0) else {
        return Ok(0);
    };
    // Earliest: a start already deleted by retention reads from what is left.
    let reader: BaseConsumer = kafka
        .consumer_config("churn-analytics-recall", &[("enable.auto.commit", "false"), ("auto.offset.reset", "earliest")])
        .create()?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut times = TopicPartitionList::new();
    times.add_partition_offset(topic, partition, Offset::Offset(now - REMEMBER_FOR_MS))?;
    let a_day_back = reader
        .offsets_for_times(times, Duration::from_secs(5))?
        .find_partition(topic, partition)
        .and_then(|e| e.offset().to_raw())
        .unwrap_or(0);
    // No more than can be remembered: a day of a busy stream is millions of records, and they are
    // read here while the group waits for this member.
    let start = Offset::Offset(a_day_back.max(until - REMEMBERED as i64));
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, start)?;
    reader.assign(&assignment)?;
    let mut remembered = 0;
    loop {
        match reader.poll(Duration::from_secs(5)) {
            Some(Ok(m)) => {
                if m.offset() >= until {
                    break;
                }
                if let Some(prediction) = m.payload().and_then(|p| serde_json::from_slice::<Prediction>(p).ok()) {
                    aggregator.remember(m.timestamp().to_millis().unwrap_or(now), &prediction);
                    remembered += 1;
                }
                if m.offset() + 1 >= until {
                    break;
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    Ok(remembered)
}

/// The outcome a labels message carries: `{"Churn": 1}` or a whole record with its `Churn`.
fn outcome(payload: &[u8]) -> Option<bool> {
    let raw: model::RawCustomer = serde_json::from_slice(payload).ok()?;
    match model::validate_field(model::Field::Churn, raw.churn.as_ref()) {
        Ok(model::validate::FieldValue::Flag(actual)) => Some(actual),
        _ => None,
    }
}

/// Why an input message was not counted.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("not a prediction: {0}")]
    Prediction(serde_json::Error),
    #[error("a labels message needs the record id as its key and a Churn value")]
    Outcome,
}

/// One message as the processor counts it.
struct Input<'a> {
    source: Source,
    offset: i64,
    timestamp_ms: i64,
    key: Option<&'a [u8]>,
    payload: &'a [u8],
}

/// Counts one message into its partition's windows; returns the closed window it revised, if
/// any.
fn count(aggregator: &mut WindowAggregator, input: &Input, now_ms: i64) -> Result<Option<WindowPartial>, Unusable> {
    let Input { source, offset, timestamp_ms, key, payload } = *input;
    match source {
        Source::Predictions => {
            let prediction: Prediction = serde_json::from_slice(payload).map_err(Unusable::Prediction)?;
            Ok(aggregator.observe(offset, timestamp_ms, now_ms, &prediction))
        }
        Source::Outcomes => match (key.map(String::from_utf8_lossy), outcome(payload)) {
            (Some(id), Some(actual)) => Ok(aggregator.observe_outcome(offset, timestamp_ms, now_ms, &id, actual)),
            _ => Err(Unusable::Outcome),
        },
    }
}

/// What the processor skipped, each logged without flooding.
struct Skipped {
    unusable: SkipLog,
    panics: SkipLog,
}

impl Default for Skipped {
    fn default() -> Self {
        Skipped {
            unusable: SkipLog::new("analytics: skipping an input message"),
            panics: SkipLog::new("analytics: counting a message panicked (a bug), skipping it"),
        }
    }
}

/// Runs `work` on one message with a panic in it (a bug) caught: that message is skipped and
/// logged, and the stream goes on. The aggregator may keep part of the message's counts; that
/// is all it costs.
fn isolated(
    payload: &[u8],
    skipped: &mut Skipped,
    work: impl FnOnce() -> Result<Option<WindowPartial>, Unusable>,
) -> Option<WindowPartial> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(revised)) => revised,
        Ok(Err(unusable)) => {
            skipped.unusable.skip(&unusable, payload);
            None
        }
        Err(panic) => {
            skipped.panics.skip(&format!("panicked: {}", panic_message(&*panic)), payload);
            None
        }
    }
}

/// Most closed windows kept while the stats topic cannot be written. At the bound the processor
/// stops reading (so no more windows close) until a publish succeeds: nothing is lost and
/// nothing committed past. 10,000 is over an hour of 10-s windows for 27 partitions, at about
/// 2 KB each about 20 MB.
const MAX_UNPUBLISHED: usize = 10_000;
/// How long one publish may take before it counts as failed (librdkafka's own delivery timeout
/// is five minutes, during which the processor would read nothing).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Waits after a failed publish: the first, doubled after each further failure up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Closed windows not yet on the stats topic, the newest revision of each. They stay until a
/// publish of them all succeeds, retried with a growing pause, so a failed publish loses no
/// window and the commit (made only once nothing waits here) never moves past one.
#[derive(Default)]
struct Outbox {
    windows: BTreeMap<(i64, i32), WindowPartial>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Outbox {
    fn add(&mut self, windows: impl IntoIterator<Item = WindowPartial>) {
        for window in windows {
            match self.windows.entry((window.window_start_ms, window.partition)) {
                BTreeEntry::Occupied(mut e) if e.get().revision < window.revision => {
                    e.insert(window);
                }
                BTreeEntry::Occupied(_) => {}
                BTreeEntry::Vacant(e) => {
                    e.insert(window);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    fn is_full(&self) -> bool {
        self.windows.len() >= MAX_UNPUBLISHED
    }

    /// Whether to publish now: windows wait and no failure is being waited out.
    fn due(&self, now: Instant) -> bool {
        !self.is_empty() && self.retry_at.is_none_or(|at| now >= at)
    }

    fn published(&mut self) {
        self.windows.clear();
        self.failures = 0;
        self.retry_at = None;
    }

    /// Notes a failed publish; returns the wait before the next attempt.
    fn failed(&mut self, now: Instant) -> Duration {
        let wait = RETRY_FIRST.saturating_mul(1 << self.failures.min(16)).min(RETRY_MAX);
        self.failures += 1;
        self.retry_at = Some(now + wait);
        wait
    }
}

/// The aggregators' own counts of records they could not take at face value, for the log.
#[derive(Debug, Default, PartialEq)]
struct Anomalies {
    future_dated: u64,
    expired_outcomes: u64,
    malformed: u64,
    dropped_late: u64,
}

impl Anomalies {
    fn of<'a>(aggregators: impl Iterator<Item = &'a WindowAggregator>) -> Self {
        aggregators.fold(Anomalies::default(), |a, g| Anomalies {
            future_dated: a.future_dated + g.future_dated,
            expired_outcomes: a.expired_outcomes + g.expired_outcomes,
            malformed: a.malformed + g.malformed,
            dropped_late: a.dropped_late + g.dropped_late,
        })
    }
}

/// How often the aggregators' anomaly counts are logged when they changed.
const ANOMALIES_EVERY: Duration = Duration::from_secs(60);

pub async fn run(
    kafka: Kafka,
    options: AnalyzeOptions,
    mut models: watch::Receiver<Arc<ChurnModel>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let topics = &kafka.topics;
    let consumer: StreamConsumer = kafka
        .consumer_config(&options.group, &[
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("session.timeout.ms", "10000"),
        ])
        .create()
        .context("creating the analytics consumer")?;
    // Predictions and outcomes are co-partitioned (both keyed by record id, same partition count),
    // so the range assignor gives one instance the matching partitions of both.
    consumer
        .subscribe(&[&topics.predictions, &topics.labels])
        .with_context(|| format!("subscribing to {} and {}", topics.predictions, topics.labels))?;
    let producer: FutureProducer = kafka.idempotent_producer()?;
    let window_ms = options.window.as_millis() as i64;
    let lateness_ms = options.lateness.as_millis() as i64;
    let mut partitions: HashMap<i32, PartitionState> = HashMap::new();
    let mut outbox = Outbox::default();
    let mut skipped = Skipped::default();
    let (mut anomalies, mut anomalies_logged) = (Anomalies::default(), Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    // The current model's score distribution, refreshed only when a new model arrives.
    let mut drift = models.borrow_and_update().drift_reference();
    tracing::info!(input = %topics.predictions, stats = %topics.stats, window_s = options.window.as_secs_f64(), "stream analytics started");

    loop {
        // With the outbox full, nothing is read until the stats topic takes the windows again.
        let reading = !outbox.is_full();
        let message = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => None,
            m = consumer.recv(), if reading => Some(m),
        };
        if models.has_changed().unwrap_or(false) {
            drift = models.borrow_and_update().drift_reference();
            for state in partitions.values_mut() {
                state.aggregator.set_drift_reference(drift.clone());
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        if let Some(message) = message {
            let m = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("analytics consumer: {e}");
                    continue;
                }
            };
            let partition = m.partition();
            let state = match partitions.entry(partition) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let mut aggregator = WindowAggregator::new(window_ms, lateness_ms, partition);
                    aggregator.set_drift_reference(drift.clone());
                    match tokio::task::block_in_place(|| remember_earlier(&kafka, &consumer, partition, &mut aggregator)) {
                        Ok(n) => tracing::debug!(partition, predictions = n, "remembered earlier predictions for outcomes"),
                        Err(e) => tracing::warn!(partition, "could not recall earlier predictions: {e:#}"),
                    }
                    e.insert(PartitionState { aggregator, next_offsets: [None, None] })
                }
            };
            let source = if m.topic() == topics.predictions { Source::Predictions } else { Source::Outcomes };
            state.next_offsets[source as usize] = Some(m.offset() + 1);
            let input = Input {
                source,
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis().unwrap_or(now),
                key: m.key(),
                payload: m.payload().unwrap_or_default(),
            };
            outbox.add(isolated(input.payload, &mut skipped, || count(&mut state.aggregator, &input, now)));
        }
        // Drop state of partitions this instance no longer owns: their new owner re-reads them.
        if let Ok(assignment) = consumer.assignment() {
            let owned: Vec<i32> = assignment.elements().iter().map(|e| e.partition()).collect();
            partitions.retain(|p, _| owned.contains(p));
        }
        for state in partitions.values_mut() {
            outbox.add(state.aggregator.close_due(now));
        }
        if anomalies_logged.elapsed() >= ANOMALIES_EVERY {
            log_anomalies(&mut anomalies, Anomalies::of(partitions.values().map(|s| &s.aggregator)));
            anomalies_logged = Instant::now();
        }
        if !outbox.due(Instant::now()) {
            continue;
        }
        let delivered = tokio::select! {
            delivered = publish(&producer, &topics.stats, &outbox) => delivered,
            _ = shutdown.cancelled() => break,
        };
        match delivered {
            Ok(()) => {
                outbox.published();
                commit(&consumer, topics, &partitions);
            }
            Err(e) => {
                let wait = outbox.failed(Instant::now());
                let kept = outbox.windows.len();
                tracing::warn!(kept, "publishing window stats failed, retrying in {wait:?}: {e:#}");
            }
        }
    }
    finish(&consumer, &producer, topics, &partitions, &mut outbox).await;
    Ok(())
}

/// Logs the anomaly counts when they changed since the last time.
fn log_anomalies(last: &mut Anomalies, now: Anomalies) {
    if now != *last {
        tracing::warn!(?now, "analytics: records counted at the wall clock (future-dated), outcomes given up, malformed or too-late predictions, since these partitions were taken on");
        *last = now;
    }
}

/// On shutdown: one last attempt at the windows still waiting, and the commit if they are out.
async fn finish(
    consumer: &StreamConsumer,
    producer: &FutureProducer,
    topics: &crate::kafka::Topics,
    partitions: &HashMap<i32, PartitionState>,
    outbox: &mut Outbox,
) {
    if !outbox.is_empty() {
        match publish(producer, &topics.stats, outbox).await {
            Ok(()) => outbox.published(),
            Err(e) => {
                tracing::warn!(kept = outbox.windows.len(), "window stats unpublished at shutdown: rebuilt from the topic at the next start: {e:#}");
                return;
            }
        }
    }
    commit(consumer, topics, partitions);
}

/// Delivers every window in the outbox, or fails (within PUBLISH_TIMEOUT).
async fn publish(producer: &FutureProducer, topic: &str, outbox: &Outbox) -> Result<()> {
    let payloads: Vec<(String, Vec<u8>)> =
        outbox.windows.values().map(|w| (w.key(), serde_json::to_vec(w).expect("windows serialize"))).collect();
    let sends = payloads.iter().map(|(key, payload)| {
        producer.send(FutureRecord::to(topic).key(key.as_str()).payload(payload.as_slice()), PUBLISH_TIMEOUT)
    });
    let results = tokio::time::timeout(PUBLISH_TIMEOUT, futures::future::join_all(sends))
        .await
        .map_err(|_| anyhow!("no delivery within {PUBLISH_TIMEOUT:?}"))?;
    for result in results {
        result.map_err(|(e, _)| e).context("delivering window stats")?;
    }
    Ok(())
}

/// Commits, per partition and source, the first offset not yet covered by a published window.
/// Only called with nothing left in the outbox.
fn commit(consumer: &StreamConsumer, topics: &crate::kafka::Topics, partitions: &HashMap<i32, PartitionState>) {
    let mut offsets = TopicPartitionList::new();
    for (&partition, state) in partitions {
        for (source, topic) in [(Source::Predictions, &topics.predictions), (Source::Outcomes, &topics.labels)] {
            if let Some(next) = state.next_offsets[source as usize] {
                let offset = state.aggregator.commit_offset(source).unwrap_or(next);
                let _ = offsets.add_partition_offset(topic, partition, Offset::Offset(offset));
            }
        }
    }
    if offsets.count() > 0 {
        if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!("analytics commit: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::analytics::SegmentCounts;

    fn window(start: i64, partition: i32, revision: u32) -> WindowPartial {
        WindowPartial {
            window_start_ms: start,
            window_ms: 10_000,
            partition,
            revision,
            segments: BTreeMap::from([("all".to_owned(), SegmentCounts { count: 1, churn_predicted: 0, sum_probability: 0.1 })]),
            drift_version: None,
            drift_bins: vec![],
            quality: BTreeMap::new(),
        }
    }

    #[test]
    fn the_outbox_keeps_failed_windows_newest_revision_first_and_backs_off() {
        let mut outbox = Outbox::default();
        let start = Instant::now();
        assert!(!outbox.due(start), "nothing to publish");
        outbox.add([window(0, 0, 1), window(0, 1, 0)]);
        outbox.add([window(0, 0, 0)]); // an older revision does not replace a newer one
        outbox.add(Some(window(10_000, 0, 0)));
        assert_eq!(outbox.windows.len(), 3);
        assert_eq!(outbox.windows[&(0, 0)].revision, 1);
        assert!(outbox.due(start));
        let waits: Vec<Duration> = (0..10).map(|_| outbox.failed(start)).collect();
        assert_eq!(waits[..3], [RETRY_FIRST, RETRY_FIRST * 2, RETRY_FIRST * 4]);
        assert_eq!(waits[9], RETRY_MAX);
        assert!(!outbox.due(start + RETRY_MAX / 2), "waiting out the failures");
        assert!(outbox.due(start + RETRY_MAX));
        assert_eq!(outbox.windows.len(), 3, "failed windows are all kept");
        outbox.add([window(0, 0, 2)]); // a late record revised a window that waits
        assert_eq!(outbox.windows[&(0, 0)].revision, 2);
        outbox.published();
        assert!(outbox.is_empty() && outbox.failures == 0 && !outbox.due(start));
        assert_eq!(outbox.failed(start), RETRY_FIRST, "a new run of failures starts short again");
    }

    #[test]
    fn a_full_outbox_says_so() {
        let mut outbox = Outbox::default();
        outbox.add((0..MAX_UNPUBLISHED as i64).map(|i| window(i * 10_000, 0, 0)));
        assert!(outbox.is_full());
    }

    fn input<'a>(source: Source, key: Option<&'a [u8]>, payload: &'a [u8]) -> Input<'a> {
        Input { source, offset: 7, timestamp_ms: 1_000, key, payload }
    }

    #[test]
    fn unusable_messages_are_refused_with_the_reason_and_good_ones_counted() {
        let mut aggregator = WindowAggregator::new(10_000, 0, 0);
        let bad = count(&mut aggregator, &input(Source::Predictions, None, b"{\"id\": 1"), 0);
        assert!(matches!(bad, Err(Unusable::Prediction(_))));
        let keyless = count(&mut aggregator, &input(Source::Outcomes, None, br#"{"Churn": 1}"#), 0);
        assert!(matches!(keyless, Err(Unusable::Outcome)));
        let no_churn = count(&mut aggregator, &input(Source::Outcomes, Some(b"r1"), br#"{"Churn": "maybe"}"#), 0);
        assert!(matches!(no_churn, Err(Unusable::Outcome)));
        let prediction = br#"{"id":"r1","name":"n","churn_probability":0.7,"churn":true,"threshold":0.5,
            "model_version":"m","scored_at":"","top_factors":[]}"#;
        assert!(count(&mut aggregator, &input(Source::Predictions, None, prediction), 0).unwrap().is_none());
        assert!(count(&mut aggregator, &input(Source::Outcomes, Some(b"r1"), br#"{"Churn": 1}"#), 0).unwrap().is_none());
        let closed = aggregator.close_due(i64::MAX);
        assert_eq!(closed[0].segments["all"].count, 1);
        assert_eq!(closed[0].quality["m"].confusion.true_positive, 1);
    }

    #[test]
    fn a_panic_while_counting_costs_only_its_message() {
        let mut skipped = Skipped::default();
        let payload: &[u8] = b"anything";
        assert_eq!(isolated(payload, &mut skipped, || panic!("a bug in the model code")), None);
        assert_eq!(isolated(payload, &mut skipped, || Err(Unusable::Outcome)), None);
        assert_eq!(isolated(payload, &mut skipped, || Ok(Some(window(0, 0, 3)))).map(|w| w.revision), Some(3));
        assert_eq!((skipped.panics.total, skipped.unusable.total), (1, 1));
    }
}
