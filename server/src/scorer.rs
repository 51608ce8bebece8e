//! The scorer: a consumer-group loop from the input topic to the predictions topic.
//!
//! At-least-once: a record's offset is stored for commit only after its prediction (or its
//! dead-letter copy) is acknowledged by the broker. Records are handled in batches: everything
//! already fetched is taken together, scored on a worker thread and produced; the consumer loop
//! meanwhile fetches the next batch. Batches enqueue their records in fetch order, so each
//! partition's predictions keep its input order. Offsets are stored strictly in order, as each
//! oldest batch's deliveries are acknowledged. A crash re-delivers at most the uncommitted batches; readers
//! de-duplicate by record id.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::FutureExt;
use model::{validate, ChurnModel, Prediction, RawCustomer};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use tokio::sync::{oneshot, watch, Notify};

use crate::kafka::{Kafka, Topics};

/// Most records handled together; bounds memory and the re-delivery after a crash.
const MAX_BATCH: usize = 4000;
/// Batches being scored or awaiting their delivery acknowledgements at once. Under load the
/// broker's acknowledgements take tens of milliseconds, and the records in flight bound the
/// throughput (measured on two cores: 64 batches of 1,000 records, 320k records/s; of 4,000,
/// 370k). A crash re-reads them, but the auto-commit interval re-reads as many anyway.
const MAX_IN_FLIGHT: usize = 64;

/// The scorer's counters live in the process-wide metrics.
pub type ScorerStats = crate::metrics::PipelineMetrics;

/// Tracks assignment so callers (and tests) can wait for it instead of sleeping.
struct ScorerContext {
    stats: Arc<ScorerStats>,
}

impl ClientContext for ScorerContext {}

impl ConsumerContext for ScorerContext {
    fn post_rebalance(&self, consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = partitions.count(), "scorer assigned partitions");
            }
            Rebalance::Revoke(_) => tracing::info!("scorer partitions revoked"),
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
        let held = consumer.assignment().map(|a| a.count() > 0).unwrap_or(false);
        self.stats.assigned.store(held, Ordering::SeqCst);
    }
}

/// What became of one input record.
enum Outcome {
    Scored(Prediction),
    DeadLetter { id: String, reason: String, errors: Option<String> },
}

/// The record id: the message key, or topic-partition-offset for unkeyed messages (as the
/// original Python producer sends them), which is stable across re-deliveries.
pub fn record_id(message: &impl Message) -> String {
    match message.key().map(String::from_utf8_lossy) {
        Some(key) if !key.trim().is_empty() => key.into_owned(),
        _ => format!("{}-{}-{}", message.topic(), message.partition(), message.offset()),
    }
}

fn judge(id: String, payload: Option<&[u8]>, model: &ChurnModel, now: &str) -> Outcome {
    let Some(payload) = payload.filter(|p| !p.is_empty()) else {
        return Outcome::DeadLetter { id, reason: "empty message: expected a JSON customer record".into(), errors: None };
    };
    let raw: RawCustomer = match serde_json::from_slice(payload) {
        Ok(raw) => raw,
        Err(e) => {
            return Outcome::DeadLetter { id, reason: format!("not a JSON customer record: {e}"), errors: None }
        }
    };
    match validate(&raw) {
        Ok(customer) => {
            let score = model.score(&customer);
            Outcome::Scored(Prediction::new(id, &customer, model, &score, now.to_owned()))
        }
        Err(errors) => Outcome::DeadLetter {
            id,
            reason: format!("invalid customer record: {errors}"),
            errors: serde_json::to_string(&errors.0).ok(),
        },
    }
}

/// One record as the scorer handles it, without Kafka: the prediction's JSON, or the reason the
/// record is dead-lettered. The benchmark times this.
pub fn score_payload(id: String, payload: Option<&[u8]>, model: &ChurnModel, now: &str) -> Result<Vec<u8>, String> {
    match judge(id, payload, model, now) {
        Outcome::Scored(prediction) => {
            let mut json = Vec::new();
            encode(&prediction, &mut json);
            Ok(json)
        }
        Outcome::DeadLetter { reason, .. } => Err(reason),
    }
}

/// Appends a prediction's JSON.
fn encode(prediction: &Prediction, out: &mut Vec<u8>) {
    serde_json::to_writer(out, prediction).expect("predictions serialize");
}

pub struct Scorer {
    kafka: Kafka,
    group: String,
    model: watch::Receiver<Arc<ChurnModel>>,
    pub stats: Arc<ScorerStats>,
}

impl Scorer {
    pub fn new(kafka: Kafka, group: impl Into<String>, model: watch::Receiver<Arc<ChurnModel>>) -> Self {
        Scorer { kafka, group: group.into(), model, stats: Arc::default() }
    }

    /// Counts into the given (process-wide) metrics instead of its own.
    pub fn with_metrics(mut self, metrics: Arc<ScorerStats>) -> Self {
        self.stats = metrics;
        self
    }

    /// Runs until `shutdown` turns true; then commits what was delivered and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let topics = &self.kafka.topics;
        let consumer: StreamConsumer<ScorerContext> = self
            .kafka
            .consumer_config(&self.group, &[
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "1000"),
                // Offsets are stored by hand, after delivery: at-least-once.
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("session.timeout.ms", "10000"),
                // A person may be waiting for this record's prediction: do not let the broker
                // hold an idle fetch for long (the default is 500 ms).
                ("fetch.wait.max.ms", "5"),
            ])
            .create_with_context(ScorerContext { stats: self.stats.clone() })
            .context("creating the scorer's consumer")?;
        consumer
            .subscribe(&[&topics.input])
            .with_context(|| format!("subscribing to {}", topics.input))?;
        let producer: Arc<AckingProducer> = Arc::new(
            self.kafka
                .idempotent_producer_config()
                .create_with_context(AckCounter)
                .context("creating the scorer's producer")?,
        );
        // Loaded means ready, before the first record arrives (readiness reports it).
        *self.stats.model_version.lock().expect("model version") = self.model.borrow().version.clone();
        tracing::info!(input = %topics.input, predictions = %topics.predictions, group = %self.group,
                       model = %self.model.borrow().version, "scorer started");

        // Batches being scored or delivered, oldest first. Many overlap so that fetching and
        // scoring go on while the broker acknowledges; offsets are stored strictly in order, as
        // each oldest batch completes.
        let mut in_flight: VecDeque<tokio::task::JoinHandle<Delivered>> = VecDeque::new();
        let scoring_slots = Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ));
        // Each batch enqueues its records after the one before it has (see `deliver`).
        let mut previous_enqueued = {
            let (done, turn) = oneshot::channel();
            let _ = done.send(());
            turn
        };
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => break,
                delivered = async { in_flight.front_mut().expect("checked non-empty").await }, if !in_flight.is_empty() => {
                    in_flight.pop_front();
                    self.store(&consumer, delivered.context("a delivery task panicked")?);
                    continue;
                }
                message = consumer.recv() => message,
            };
            let mut batch = Vec::with_capacity(64);
            match first {
                Ok(m) => batch.push(m),
                Err(e) => {
                    tracing::warn!("consumer error: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            // Take whatever else is already fetched, without waiting.
            while batch.len() < MAX_BATCH {
                match consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(m),
                    Some(Err(e)) => tracing::warn!("consumer error: {e}"),
                    None => break,
                }
            }
            let mut incoming = Incoming::default();
            for message in &batch {
                incoming.push(message);
            }
            let batch = incoming;
            let model = self.model.borrow().clone();
            {
                let mut version = self.stats.model_version.lock().expect("model version");
                if *version != model.version {
                    *version = model.version.clone();
                }
            }
            let (topics, stats, producer, shutdown) =
                (self.kafka.topics.clone(), self.stats.clone(), producer.clone(), shutdown.clone());
            let (enqueued, next_turn) = oneshot::channel();
            let turn = std::mem::replace(&mut previous_enqueued, next_turn);
            let scoring_slots = scoring_slots.clone();
            in_flight.push_back(tokio::spawn(async move {
                // As many batches scored at once as there are cores: more threads would only
                // take turns, each with its own allocator heap.
                let slot = scoring_slots.acquire_owned().await.expect("never closed");
                let prepared = tokio::task::spawn_blocking({
                    let (stats, input_topic) = (stats.clone(), topics.input.clone());
                    move || {
                        let _slot = slot;
                        prepare(batch, &model, &input_topic, &stats)
                    }
                })
                .await
                .expect("scoring a batch does not panic");
                deliver(prepared, producer, &topics, stats, shutdown, turn, enqueued).await
            }));
            while in_flight.len() > MAX_IN_FLIGHT {
                let oldest = in_flight.pop_front().expect("non-empty");
                self.store(&consumer, oldest.await.context("a delivery task panicked")?);
            }
        }
        while let Some(oldest) = in_flight.pop_front() {
            self.store(&consumer, oldest.await.context("a delivery task panicked")?);
        }

        // Graceful: everything stored so far is delivered; commit it before leaving the group.
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!("final commit: {e}");
        }
        tracing::info!(
            scored = self.stats.scored.load(Ordering::Relaxed),
            dead_lettered = self.stats.dead_lettered.load(Ordering::Relaxed),
            "scorer stopped"
        );
        Ok(())
    }

    /// Stores the offsets that are safe. One store per partition and batch (each store looks the
    /// topic up).
    fn store(&self, consumer: &StreamConsumer<ScorerContext>, delivered: Delivered) {
        for (partition, offset) in delivered.safe_offsets() {
            // Stores offset + 1, the next record to read.
            if let Err(e) = consumer.store_offset(&self.kafka.topics.input, partition, offset) {
                // A partition revoked meanwhile: its new owner re-reads; duplicates are allowed.
                tracing::debug!("store offset: {e}");
            }
        }
    }
}

/// Input records copied out of the consumer's buffer, so that they are scored on another thread
/// while the loop fetches on: only what scoring, dead-lettering and offsets need. The payloads
/// share one buffer (an allocation per record cost more than the copy).
#[derive(Default)]
struct Incoming {
    bytes: Vec<u8>,
    records: Vec<InputRecord>,
}

struct InputRecord {
    id: String,
    /// Where its payload is in `bytes`; `None` for a message without one.
    payload: Option<Range<usize>>,
    partition: i32,
    offset: i64,
    created_ms: Option<i64>,
}

impl Incoming {
    fn push(&mut self, message: &BorrowedMessage<'_>) {
        let payload = message.payload().map(|p| {
            self.bytes.extend_from_slice(p);
            self.bytes.len() - p.len()..self.bytes.len()
        });
        self.records.push(InputRecord {
            id: record_id(message),
            payload,
            partition: message.partition(),
            offset: message.offset(),
            created_ms: message.timestamp().to_millis(),
        });
    }
}

/// Scores a batch into ready-to-send records.
fn prepare(batch: Incoming, model: &ChurnModel, input_topic: &str, stats: &ScorerStats) -> Prepared {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    stats.consumed.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let positions = batch.records.iter().map(|record| (record.partition, record.offset)).collect();
    // A prediction is about twice its input's size.
    let mut bytes = Vec::with_capacity(batch.bytes.len() * 2 + 1024);
    let mut outputs = Vec::with_capacity(batch.records.len());
    for record in batch.records {
        let input = record.payload.clone().map(|range| &batch.bytes[range]);
        let start = bytes.len();
        let output = match judge(record.id, input, model, &now) {
            Outcome::Scored(prediction) => {
                encode(&prediction, &mut bytes);
                Output { key: prediction.id, payload: start..bytes.len(), dead_letter: None, created_ms: record.created_ms }
            }
            Outcome::DeadLetter { id, reason, errors } => {
                tracing::debug!(%id, %reason, "dead letter");
                let source = format!("{input_topic}-{}-{}", record.partition, record.offset);
                let mut headers = OwnedHeaders::new()
                    .insert(Header { key: "dlq.reason", value: Some(reason.as_str()) })
                    .insert(Header { key: "dlq.source", value: Some(source.as_str()) });
                if let Some(errors) = &errors {
                    headers = headers.insert(Header { key: "dlq.errors", value: Some(errors.as_str()) });
                }
                // The original bytes, untouched.
                bytes.extend_from_slice(input.unwrap_or_default());
                Output { key: id, payload: start..bytes.len(), dead_letter: Some(headers), created_ms: record.created_ms }
            }
        };
        outputs.push(output);
    }
    // One clock reading per batch rather than two per record.
    stats.scoring_seconds.observe_each(started.elapsed().as_secs_f64() / outputs.len().max(1) as f64, outputs.len() as u64);
    Prepared { bytes, outputs, positions }
}

/// One scored record, ready to produce: a prediction, or a dead letter with its headers.
struct Output {
    key: String,
    /// Where its payload is in the batch's `bytes`.
    payload: Range<usize>,
    dead_letter: Option<OwnedHeaders>,
    created_ms: Option<i64>,
}

/// A scored batch and where its records came from.
struct Prepared {
    bytes: Vec<u8>,
    outputs: Vec<Output>,
    positions: Vec<(i32, i64)>,
}

/// A batch after delivery: which records (by index) could not be delivered before shutdown.
struct Delivered {
    positions: Vec<(i32, i64)>,
    undelivered: Vec<usize>,
}

impl Delivered {
    /// Per partition, the last offset before its first undelivered record (if any is left).
    fn safe_offsets(&self) -> HashMap<i32, i64> {
        let mut first_failed: HashMap<i32, i64> = HashMap::new();
        for &i in &self.undelivered {
            let (partition, offset) = self.positions[i];
            let entry = first_failed.entry(partition).or_insert(i64::MAX);
            *entry = (*entry).min(offset);
        }
        let mut safe: HashMap<i32, i64> = HashMap::new();
        for &(partition, offset) in &self.positions {
            if first_failed.get(&partition).is_some_and(|&f| offset >= f) {
                continue;
            }
            let entry = safe.entry(partition).or_insert(offset);
            *entry = (*entry).max(offset);
        }
        safe
    }
}

/// The scorer's producer: deliveries are counted per batch (`BatchAcks`) rather than awaited
/// as one future per record, which cost about a third of the delivery path.
type AckingProducer = ThreadedProducer<AckCounter>;

/// One delivery attempt of a batch: how many records are still unacknowledged, and which failed.
struct BatchAcks {
    /// Starts at one, for the enqueueing itself, so that early acknowledgements cannot bring it to
    /// zero before every record is handed over (`wait_after_enqueueing`).
    outstanding: AtomicUsize,
    failed: Mutex<Vec<(usize, String)>>,
    settled: Notify,
}

impl BatchAcks {
    fn new() -> Arc<Self> {
        Arc::new(BatchAcks { outstanding: AtomicUsize::new(1), failed: Mutex::default(), settled: Notify::new() })
    }

    fn settle_one(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_one();
        }
    }

    /// Ends the enqueueing and waits until the broker has acknowledged (or refused) every record
    /// enqueued; returns the refused ones by index.
    async fn wait_after_enqueueing(&self) -> Vec<(usize, String)> {
        self.settle_one();
        self.settled.notified().await;
        std::mem::take(&mut *self.failed.lock().expect("acks"))
    }
}

/// Routes each delivery report to its batch.
struct AckCounter;

impl ClientContext for AckCounter {}

impl ProducerContext for AckCounter {
    type DeliveryOpaque = Box<(Arc<BatchAcks>, usize)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let (acks, index) = *opaque;
        if let Err((e, _)) = result {
            acks.failed.lock().expect("acks").push((index, e.to_string()));
        }
        acks.settle_one();
    }
}

/// Produces a batch: its records are enqueued in order, once the previous batch has enqueued
/// its own (`turn`), so predictions keep the input's order per partition even though batches are
/// scored in parallel. Then the acknowledgements are awaited; failed records are retried with
/// back-off until acknowledged or the scorer stops.
async fn deliver(
    batch: Prepared,
    producer: Arc<AckingProducer>,
    topics: &Topics,
    stats: Arc<ScorerStats>,
    shutdown: watch::Receiver<bool>,
    turn: oneshot::Receiver<()>,
    enqueued: oneshot::Sender<()>,
) -> Delivered {
    let outputs = &batch.outputs;
    // Resolves when the previous batch has enqueued, or has ended without doing so.
    let _ = turn.await;
    let mut enqueued = Some(enqueued);
    let mut pending: Vec<usize> = (0..outputs.len()).collect();
    let mut attempt = 0u32;
    while !pending.is_empty() {
        let acks = BatchAcks::new();
        let mut failed = Vec::new();
        for &i in &pending {
            if let Err(e) = enqueue(&producer, topics, &outputs[i], &batch.bytes, &acks, i, &shutdown).await {
                failed.push((i, e));
            }
        }
        if let Some(enqueued) = enqueued.take() {
            let _ = enqueued.send(());
        }
        failed.extend(acks.wait_after_enqueueing().await);
        failed.sort_unstable_by_key(|&(i, _)| i);
        let mut delivered = vec![true; outputs.len()];
        for (i, e) in &failed {
            delivered[*i] = false;
            stats.produce_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(id = %outputs[*i].key, "produce failed, will retry: {e}");
        }
        let acknowledged_ms = chrono::Utc::now().timestamp_millis();
        for &i in pending.iter().filter(|&&i| delivered[i]) {
            if outputs[i].dead_letter.is_some() {
                stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.scored.fetch_add(1, Ordering::Relaxed);
                if let Some(created) = outputs[i].created_ms {
                    stats.end_to_end_seconds.observe((acknowledged_ms - created) as f64 / 1000.0);
                }
            }
        }
        pending = failed.into_iter().map(|(i, _)| i).collect();
        if !pending.is_empty() {
            if *shutdown.borrow() {
                // Leave these offsets uncommitted: the next scorer re-reads them.
                tracing::warn!(records = pending.len(), "stopping with undelivered records; they will be re-read");
                break;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(25)))).await;
        }
    }
    Delivered { positions: batch.positions, undelivered: pending }
}

/// Hands one record to the producer, waiting while its local queue is full (unless stopping).
async fn enqueue(
    producer: &AckingProducer,
    topics: &Topics,
    out: &Output,
    bytes: &[u8],
    acks: &Arc<BatchAcks>,
    index: usize,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), String> {
    acks.outstanding.fetch_add(1, Ordering::AcqRel);
    let topic = if out.dead_letter.is_some() { &topics.dead_letter } else { &topics.predictions };
    let mut record = BaseRecord::with_opaque_to(topic, Box::new((acks.clone(), index)))
        .key(out.key.as_str())
        .payload(&bytes[out.payload.clone()]);
    if let Some(headers) = &out.dead_letter {
        record = record.headers(headers.clone());
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) if !*shutdown.borrow() => {
                record = returned;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((e, _)) => {
                acks.settle_one();
                return Err(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ChurnModel {
        let customers = model::synth::generate_customers(&model::synth::GenerateOptions {
            rows: 200,
            seed: 1,
            messy_fraction: 0.0,
        });
        model::train::train(&customers, &Default::default(), "t".into(), |_| {}).unwrap()
    }

    #[test]
    fn offsets_are_stored_up_to_the_first_undelivered_record_of_each_partition() {
        // Partition 0: offsets 10..=13, 12 undelivered. Partition 1: 5..=6, all delivered.
        // Partition 2: its only record undelivered.
        let delivered = Delivered {
            positions: vec![(0, 10), (1, 5), (0, 11), (0, 12), (2, 7), (1, 6), (0, 13)],
            undelivered: vec![3, 4],
        };
        let safe = delivered.safe_offsets();
        assert_eq!(safe.get(&0), Some(&11));
        assert_eq!(safe.get(&1), Some(&6));
        assert_eq!(safe.get(&2), None);
    }

    #[test]
    fn poison_records_get_a_reason_good_ones_a_prediction() {
        let model = model();
        let good = br#"{"Names":"Ann","Age":42,"Total_Purchase":9000,"Account_Manager":1,"Years":5,
            "Num_Sites":9,"Onboard_date":"2012-01-01 10:00:00","Location":"x","Company":"y"}"#;
        match judge("a".into(), Some(good), &model, "now") {
            Outcome::Scored(p) => {
                assert_eq!(p.id, "a");
                assert!((0.0..=1.0).contains(&p.churn_probability));
                assert_eq!(p.model_version, model.version);
                assert_eq!(p.top_factors.len(), 3);
            }
            Outcome::DeadLetter { reason, .. } => panic!("{reason}"),
        }
        let cases: [(&[u8], &str); 4] = [
            (b"", "empty message"),
            (b"{not json", "not a JSON customer record"),
            (br#"{"Names":"Ann","Age":-4}"#, "Age: must be between"),
            (br#"{"Names":"Ann","Age":"x","Total_Purchase":[1]}"#, "not a JSON customer record"),
        ];
        for (payload, expected) in cases {
            match judge("b".into(), Some(payload), &model, "now") {
                Outcome::DeadLetter { reason, .. } => assert!(reason.contains(expected), "{reason}"),
                Outcome::Scored(_) => panic!("accepted {:?}", String::from_utf8_lossy(payload)),
            }
        }
    }
}
