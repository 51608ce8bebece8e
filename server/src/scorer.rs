//! The scorer: a consumer-group loop from the input topic to the predictions topic.
//!
//! At-least-once: a record's offset is stored for commit only after its prediction (or its
//! dead-letter copy) is acknowledged by the broker. Records are handled in batches: everything
//! already fetched is taken together, scored on a worker thread and produced; the consumer loop
//! meanwhile fetches the next batch. Batches enqueue their records in fetch order, so each
//! partition's predictions keep its input order, and store their offsets in fetch order too, as
//! each one's deliveries are acknowledged. A crash re-delivers at most the uncommitted batches;
//! readers de-duplicate by record id.
//!
//! No single record stops the stream: each one is scored in isolation (a panic included) and
//! anything that cannot be scored or delivered ends on the dead-letter topic with its reason.
//! Before partitions are given up in a rebalance, the batches in flight are finished and the
//! stored offsets committed synchronously, so the new owner starts where this one stopped.
//!
//! Replies: a record whose `churn.reply-to` header names a reply topic (a web server's own, see
//! `replies`) gets a copy of its prediction there too, sent the moment the prediction itself is
//! acknowledged, so a reply always means the prediction is on the predictions topic. Replies are
//! best-effort and outside the offset accounting: a reply topic that does not exist (a hostile
//! header, a web server long gone) would otherwise hold its partition until librdkafka gave the
//! reply up (it waits for a missing topic to appear), and a reply later than the web's timeout has
//! nobody waiting for it.

use tokio_util::sync::CancellationToken;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::FutureExt;
use model::record::{encode_json, score_record, truncate_utf8, Rejection, MAX_KEY_BYTES, MAX_RECORD_BYTES};
use model::ChurnModel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use tokio::sync::{oneshot, watch, Notify};

use crate::health::Health;
use crate::kafka::{Kafka, SkipLog, Topics, REPLY_TO_HEADER};
use crate::metrics::ObserveSeconds;
use crate::supervisor::panic_message;

/// Most records handled together; bounds memory and the re-delivery after a crash.
const MAX_BATCH: usize = 4000;
/// Batches being scored or awaiting their delivery acknowledgements at once. Under load the
/// broker's acknowledgements take tens of milliseconds, and the records in flight bound the
/// throughput (measured on two cores: 64 batches of 1,000 records, 320k records/s; of 4,000,
/// 370k). A crash re-reads them, but the auto-commit interval re-reads as many anyway.
const MAX_IN_FLIGHT: usize = 64;
/// How much of an oversized or undeliverable record its dead letter keeps; the header
/// `dlq.original_size` says how large it was.
pub const DEAD_LETTER_COPY_BYTES: usize = 16 * 1024;
/// Longest reason header: reasons quote bad values, which are shortened, but a panic message may
/// quote anything.
const MAX_REASON_BYTES: usize = 2048;
/// How long a rebalance waits for this scorer's batches in flight before giving its partitions
/// up anyway (their records are then re-read by the new owner: duplicates, never a loss).
/// Under full load a batch is acknowledged within ~100 ms.
const REVOKE_WAIT: Duration = Duration::from_secs(10);
/// After the stop, how long deliveries may still be awaited (a broker away would otherwise hold
/// the stop for librdkafka's 5-minute delivery timeout), and the final commit. Together with
/// closing the clients they fit the supervisor's stop grace of 10 s.
const STOP_DELIVERY_WAIT: Duration = Duration::from_secs(4);
const FINAL_COMMIT_WAIT: Duration = Duration::from_secs(2);
/// Ids and reasons in log lines are cut to this many bytes: a log line never carries unbounded
/// input (a 900 KB key used to be logged whole on every retry).
pub const LOG_TEXT_BYTES: usize = 96;

/// The scorer's counters live in the process-wide metrics.
pub type ScorerStats = crate::metrics::PipelineMetrics;

/// Batches between fetch and stored offsets; a rebalance waits until there are none.
#[derive(Default)]
struct InFlight {
    batches: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    fn start(self: &Arc<Self>) -> InFlightGuard {
        *self.batches.lock().expect("in-flight count") += 1;
        InFlightGuard(self.clone())
    }

    /// Waits until no batch is in flight; false when `timeout` passed first.
    fn wait_idle(&self, timeout: Duration) -> bool {
        let batches = self.batches.lock().expect("in-flight count");
        let (_batches, result) = self.idle.wait_timeout_while(batches, timeout, |n| *n > 0).expect("in-flight count");
        !result.timed_out()
    }
}

/// Counts a batch out of flight however its task ends, a panic included.
struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut batches = self.0.batches.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *batches -= 1;
        self.0.idle.notify_all();
    }
}

/// Tracks assignment for readiness, and finishes in-flight work before partitions are revoked.
struct ScorerContext {
    health: Arc<Health>,
    in_flight: Arc<InFlight>,
}

impl ClientContext for ScorerContext {}

impl ConsumerContext for ScorerContext {
    /// Runs on the consumer loop's thread, inside `recv`, so no new batch starts meanwhile.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(partitions) = rebalance else { return };
        if partitions.count() == 0 {
            return;
        }
        let finish = || {
            if !self.in_flight.wait_idle(REVOKE_WAIT) {
                tracing::warn!(wait_s = REVOKE_WAIT.as_secs(), "batches still in flight at a rebalance: their records will be scored again by the new owner");
            }
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => tracing::info!(partitions = partitions.count(), "committed before giving partitions up"),
                // Nothing stored since the last commit.
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => tracing::warn!("commit before a rebalance failed, the new owner re-reads from the last commit: {e}"),
            }
        };
        // This blocks a runtime worker; `block_in_place` hands the worker's queued tasks (among
        // them the batch spawned just before, which no other worker may steal) to another thread,
        // so the batches being waited for can finish. Only a multi-threaded runtime can.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(finish),
            _ => finish(),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = partitions.count(), "scorer assigned partitions");
            }
            Rebalance::Revoke(_) => tracing::info!("scorer partitions revoked"),
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
        let held = consumer.assignment().map(|a| a.count() > 0).unwrap_or(false);
        self.health.set_assigned(held);
    }
}

/// The record id: the message key, or topic-partition-offset for unkeyed messages (as the
/// original Python producer sends them), which is stable across re-deliveries.
pub fn record_id(message: &impl Message) -> String {
    match message.key().map(String::from_utf8_lossy) {
        Some(key) if !key.trim().is_empty() => key.into_owned(),
        _ => format!("{}-{}-{}", message.topic(), message.partition(), message.offset()),
    }
}

/// Runs `work` for one record, isolated: whatever goes wrong, a panic included, becomes that
/// record's rejection, and `out` is left as it was.
fn isolated(out: &mut Vec<u8>, work: impl FnOnce(&mut Vec<u8>) -> Result<(), Rejection>) -> Result<(), Rejection> {
    let start = out.len();
    std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut *out)))
        .unwrap_or_else(|panic| {
            Err(Rejection::new(format!(
                "internal error while scoring this record (a bug: please report it with this record): {PANIC_MARK}{}",
                panic_message(panic.as_ref())
            )))
        })
        .inspect_err(|_| out.truncate(start))
}

/// Marks a rejection that comes from a caught panic.
const PANIC_MARK: &str = "panic: ";

/// Scores one record and appends its prediction's JSON to `out`, isolated.
fn score_into(id: &str, payload: Option<&[u8]>, model: &ChurnModel, now: &str, out: &mut Vec<u8>) -> Result<(), Rejection> {
    isolated(out, |out| {
        let prediction = score_record(id, payload, model, now)?;
        encode_json(&prediction, out).map_err(Rejection::new)
    })
}

/// One record as the scorer handles it, without Kafka: the prediction's JSON, or the reason the
/// record is dead-lettered. The benchmark times this; the tests drive it.
pub fn score_payload(id: &str, payload: Option<&[u8]>, model: &ChurnModel, now: &str) -> Result<Vec<u8>, String> {
    let mut json = Vec::new();
    score_into(id, payload, model, now, &mut json).map(|()| json).map_err(|r| r.reason)
}

pub struct Scorer {
    kafka: Kafka,
    group: String,
    model: watch::Receiver<Arc<ChurnModel>>,
    pub stats: Arc<ScorerStats>,
    /// Partitions held and model loaded, for readiness.
    pub health: Arc<Health>,
}

type ScorerConsumer = StreamConsumer<ScorerContext>;

impl Scorer {
    pub fn new(kafka: Kafka, group: impl Into<String>, model: watch::Receiver<Arc<ChurnModel>>) -> Self {
        Scorer { kafka, group: group.into(), model, stats: Arc::default(), health: Arc::default() }
    }

    /// Reports into the given (process-wide) health instead of its own.
    pub fn with_health(mut self, health: Arc<Health>) -> Self {
        self.health = health;
        self
    }

    /// The model in use, for the metrics and for readiness.
    fn note_model(&self, version: &str) {
        self.stats.set_model_version(version);
        self.health.set_model_version(version);
    }

    /// Counts into the given (process-wide) metrics instead of its own.
    pub fn with_metrics(mut self, metrics: Arc<ScorerStats>) -> Self {
        self.stats = metrics;
        self
    }

    /// Runs until `shutdown` turns true; then commits what was delivered and returns. An error
    /// means the scorer cannot go on (a bug in its own plumbing, never a bad record).
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let topics = &self.kafka.topics;
        let in_flight = Arc::new(InFlight::default());
        let consumer: Arc<ScorerConsumer> = Arc::new(
            self.kafka
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
                .create_with_context(ScorerContext { health: self.health.clone(), in_flight: in_flight.clone() })
                .context("creating the scorer's consumer")?,
        );
        consumer
            .subscribe(&[&topics.input])
            .with_context(|| format!("subscribing to {}", topics.input))?;
        let replies: ReplyProducer = self
            .kafka
            .config(&[
                // A lost reply costs one person a timeout; the durable copy is on the predictions
                // topic. So no idempotence, and the leader's acknowledgement is enough.
                ("acks", "1"),
                // A person is waiting, and replies are few: send each at once.
                ("linger.ms", "0"),
                ("message.timeout.ms", "10000"),
                // A reply-to header naming a missing topic must not create it (librdkafka's
                // producers ask the broker to, by default).
                ("allow.auto.create.topics", "false"),
            ])
            .create_with_context(ReplyLog(Mutex::new(SkipLog::new("a reply could not be delivered"))))
            .context("creating the scorer's reply producer")?;
        let mut producer_config = self.kafka.idempotent_producer_config();
        if producer_config.get("batch.size").is_none() {
            if let Some(limit) = topic_message_limit(&self.kafka, &[&topics.predictions, &topics.dead_letter]).await {
                producer_config.set("batch.size", limit.min(DEFAULT_BATCH_BYTES).to_string());
            }
        }
        let producer: Arc<AckingProducer> = Arc::new(
            producer_config
                .create_with_context(AckCounter { replies })
                .context("creating the scorer's producer")?,
        );
        // Loaded means ready, before the first record arrives (readiness reports it).
        self.note_model(&self.model.borrow().version);
        tracing::info!(input = %topics.input, predictions = %topics.predictions, group = %self.group,
                       model = %self.model.borrow().version, "scorer started");

        // Batch tasks, oldest first: awaited here only to bound how many are in flight and to
        // learn of a failure; each task stores its own offsets, in fetch order (see `Batch`).
        let mut tasks: VecDeque<tokio::task::JoinHandle<Result<()>>> = VecDeque::new();
        let scoring_slots = Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ));
        let mut previous = Turns::first();
        let mut reply_topics = ReplyTopics::default();
        let mut failure = None;
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                done = async { tasks.front_mut().expect("checked non-empty").await }, if !tasks.is_empty() => {
                    tasks.pop_front();
                    if let Err(e) = flatten(done) {
                        failure = Some(e);
                        break;
                    }
                    continue;
                }
                message = consumer.recv() => message,
            };
            let mut batch = Incoming::default();
            match first {
                Ok(m) => batch.push(&m, topics, &mut reply_topics),
                Err(e) => {
                    tracing::warn!("consumer error: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            // Take whatever else is already fetched, without waiting.
            while batch.records.len() < MAX_BATCH {
                match consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(&m, topics, &mut reply_topics),
                    Some(Err(e)) => tracing::warn!("consumer error: {e}"),
                    None => break,
                }
            }
            let model = self.model.borrow().clone();
            self.note_model(&model.version);
            let (turns, next) = Turns::after(previous);
            previous = next;
            let job = Batch {
                incoming: batch,
                model,
                topics: self.kafka.topics.clone(),
                stats: self.stats.clone(),
                producer: producer.clone(),
                consumer: consumer.clone(),
                shutdown: shutdown.clone(),
                turns,
                _in_flight: in_flight.start(),
            };
            let slots = scoring_slots.clone();
            tasks.push_back(tokio::spawn(job.run(slots)));
            while tasks.len() > MAX_IN_FLIGHT {
                let oldest = tasks.pop_front().expect("non-empty");
                if let Err(e) = flatten(oldest.await) {
                    failure = Some(e);
                    break;
                }
            }
            if failure.is_some() {
                break;
            }
        }
        while let Some(task) = tasks.pop_front() {
            if let Err(e) = flatten(task.await) {
                failure.get_or_insert(e);
            }
        }

        // Graceful: everything stored so far is delivered; commit it before leaving the group. With
        // the broker away the commit would wait for it: the next owner re-reads instead.
        let committing = consumer.clone();
        match crate::supervisor::on_own_thread(move || committing.commit_consumer_state(CommitMode::Sync), FINAL_COMMIT_WAIT).await {
            Some(Ok(())) | Some(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) => {}
            Some(Err(e)) => tracing::warn!("final commit failed, the next scorer re-reads from the last commit: {e}"),
            None => tracing::warn!(wait_s = FINAL_COMMIT_WAIT.as_secs(), "final commit unanswered (broker away?): the next scorer re-reads from the last commit"),
        }
        tracing::info!(
            scored = self.stats.scored.get(),
            dead_lettered = self.stats.dead_lettered.get(),
            "scorer stopped"
        );
        crate::supervisor::close_within((consumer, producer), "scorer").await;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// librdkafka's default `batch.size`.
const DEFAULT_BATCH_BYTES: usize = 1_000_000;

/// The smallest `max.message.bytes` of `topics`, when the broker tells. It bounds the producer's
/// batches: librdkafka knows nothing of topic limits, and the broker refuses a batch over the
/// limit as a whole, so every record in it would be dead-lettered as if its own prediction were
/// too large (measured: a predictions topic limited to 1 KB had all of 2,000 good records
/// dead-lettered). With batches within the limit, a refusal is the record's own.
async fn topic_message_limit(kafka: &Kafka, topics: &[&str]) -> Option<usize> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = kafka.config(&[]).create().ok()?;
    let resources: Vec<ResourceSpecifier<'_>> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = match admin.describe_configs(&resources, &options).await {
        Ok(results) => results,
        Err(e) => {
            tracing::debug!("reading the topics' max.message.bytes: {e}");
            return None;
        }
    };
    results
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|topic| topic.get("max.message.bytes")?.value.as_deref()?.trim().parse::<usize>().ok())
        .filter(|&limit| limit > 0)
        .min()
}

fn flatten(joined: Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    joined.map_err(|e| anyhow::anyhow!("a scorer batch task panicked: {e}"))?
}

/// A batch's places in the two orders batches keep: enqueueing records, storing offsets.
struct Turns {
    /// Resolves when the previous batch has enqueued, or has ended without doing so.
    enqueue_after: oneshot::Receiver<()>,
    enqueued: oneshot::Sender<()>,
    /// The previous batch's stored-offset state, sent once it has stored its own offsets.
    store_after: oneshot::Receiver<HashSet<i32>>,
    stored: oneshot::Sender<HashSet<i32>>,
}

/// The receiving ends of the turns the next batch waits for.
struct NextTurns {
    enqueue: oneshot::Receiver<()>,
    store: oneshot::Receiver<HashSet<i32>>,
}

impl Turns {
    /// The turns before the first batch: already taken.
    fn first() -> NextTurns {
        let (enqueued, enqueue) = oneshot::channel();
        let (stored, store) = oneshot::channel();
        let _ = enqueued.send(());
        let _ = stored.send(HashSet::new());
        NextTurns { enqueue, store }
    }

    fn after(previous: NextTurns) -> (Turns, NextTurns) {
        let (enqueued, enqueue) = oneshot::channel();
        let (stored, store) = oneshot::channel();
        let turns = Turns { enqueue_after: previous.enqueue, enqueued, store_after: previous.store, stored };
        (turns, NextTurns { enqueue, store })
    }
}

/// One batch's whole way: scored on a worker thread, enqueued in its turn, acknowledged, and its
/// offsets stored in its turn.
struct Batch {
    incoming: Incoming,
    model: Arc<ChurnModel>,
    topics: Topics,
    stats: Arc<ScorerStats>,
    producer: Arc<AckingProducer>,
    consumer: Arc<ScorerConsumer>,
    shutdown: CancellationToken,
    turns: Turns,
    _in_flight: InFlightGuard,
}

impl Batch {
    async fn run(self, scoring_slots: Arc<tokio::sync::Semaphore>) -> Result<()> {
        let Batch { incoming, model, topics, stats, producer, consumer, shutdown, turns, _in_flight } = self;
        // As many batches scored at once as there are cores: more threads would only take
        // turns, each with its own allocator heap.
        let slot = scoring_slots.acquire_owned().await.context("scoring slots closed")?;
        let prepared = tokio::task::spawn_blocking({
            let (stats, input_topic) = (stats.clone(), topics.input.clone());
            move || {
                let _slot = slot;
                prepare(incoming, &model, &input_topic, &stats)
            }
        })
        .await
        .context("scoring a batch panicked outside the per-record isolation")?;
        let delivered =
            deliver(prepared, &producer, &topics, &stats, &shutdown, turns.enqueue_after, turns.enqueued).await;
        if let Some(fatal) = delivered.fatal {
            anyhow::bail!(fatal);
        }
        // An earlier batch failed: storing this one's offsets could skip its records.
        let Ok(mut blocked) = turns.store_after.await else {
            return Ok(());
        };
        for (partition, offset) in delivered.safe_offsets(&mut blocked) {
            // Stores offset + 1, the next record to read.
            if let Err(e) = consumer.store_offset(&topics.input, partition, offset) {
                // A partition revoked meanwhile: its new owner re-reads; duplicates are allowed.
                tracing::debug!("store offset: {e}");
            }
        }
        let _ = turns.stored.send(blocked);
        Ok(())
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
    /// Where its payload is in `bytes`; `None` for a message without one. An oversized payload
    /// is copied only in part (`DEAD_LETTER_COPY_BYTES`): it is dead-lettered anyway.
    payload: Option<Range<usize>>,
    /// The payload's whole size.
    size: usize,
    partition: i32,
    offset: i64,
    created_ms: Option<i64>,
    /// The reply topic its prediction is also sent to, when it names an acceptable one.
    reply_to: Option<Arc<str>>,
    /// Its key is not UTF-8: `id` is a lossy copy, which other keys may share, so it is no id.
    key_not_text: bool,
}

/// Most distinct reply topics one scorer sends to (one per web server instance in practice).
/// librdkafka keeps state and metadata requests per topic name, so records naming ever-new reply
/// topics must not grow the producer without bound; beyond it, new names get no reply.
const MAX_REPLY_TOPICS: usize = 1_000;

/// The reply topics this scorer has sent to, interned (one allocation per topic, not per record).
#[derive(Default)]
struct ReplyTopics(HashSet<Arc<str>>);

impl ReplyTopics {
    fn admit(&mut self, topic: &str) -> Option<Arc<str>> {
        if let Some(known) = self.0.get(topic) {
            return Some(known.clone());
        }
        if self.0.len() >= MAX_REPLY_TOPICS {
            tracing::debug!(limit = MAX_REPLY_TOPICS, "too many distinct reply topics; no reply for a new one");
            return None;
        }
        let topic: Arc<str> = topic.into();
        self.0.insert(topic.clone());
        Some(topic)
    }
}

/// The reply topic a record asks for with its `churn.reply-to` header, if the scorer may write
/// there (`Topics::accepts_reply_topic`); anything else is ignored, and logged at debug level.
fn reply_to<'m>(message: &'m BorrowedMessage<'_>, topics: &Topics) -> Option<&'m str> {
    let headers = message.headers()?;
    let value = headers.iter().find(|h| h.key == REPLY_TO_HEADER)?.value?;
    match std::str::from_utf8(value) {
        Ok(topic) if topics.accepts_reply_topic(topic) => Some(topic),
        _ => {
            tracing::debug!(reply_to = %truncate_utf8(&String::from_utf8_lossy(value), LOG_TEXT_BYTES),
                            "ignoring a reply-to that is not a reply topic; the record is scored as usual");
            None
        }
    }
}

impl Incoming {
    fn push(&mut self, message: &BorrowedMessage<'_>, topics: &Topics, reply_topics: &mut ReplyTopics) {
        let size = message.payload_len();
        let payload = message.payload().map(|p| {
            let kept = if p.len() > MAX_RECORD_BYTES { &p[..DEAD_LETTER_COPY_BYTES] } else { p };
            self.bytes.extend_from_slice(kept);
            self.bytes.len() - kept.len()..self.bytes.len()
        });
        self.records.push(InputRecord {
            id: record_id(message),
            payload,
            size,
            partition: message.partition(),
            offset: message.offset(),
            created_ms: message.timestamp().to_millis(),
            reply_to: reply_to(message, topics).and_then(|topic| reply_topics.admit(topic)),
            key_not_text: message.key().is_some_and(|key| std::str::from_utf8(key).is_err()),
        });
    }
}

/// What a produced record is, and so what to fall back to when the broker refuses it for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Prediction,
    /// A dead letter with the whole original record.
    DeadLetter,
    /// A dead letter with the first `DEAD_LETTER_COPY_BYTES` of it (or nothing, if even that was
    /// refused).
    TruncatedDeadLetter,
}

/// One scored record, ready to produce: a prediction, or a dead letter with its headers.
struct Output {
    kind: Kind,
    key: String,
    /// Where its payload is in the batch's `bytes`.
    payload: Range<usize>,
    headers: Option<OwnedHeaders>,
    created_ms: Option<i64>,
    /// Where the input record is in the batch's `input`, and how large it was.
    input: Option<Range<usize>>,
    input_size: usize,
    /// (partition, offset) of the input record.
    position: (i32, i64),
    /// Where a copy of the prediction goes once it is acknowledged (not for dead letters).
    reply_to: Option<Arc<str>>,
}

/// Dead-letter headers: the reason for people, field errors for programs, where it came from,
/// and the original size when the copy is cut.
fn dead_letter_headers(reason: &str, errors: Option<&str>, source: &str, original_size: Option<usize>) -> OwnedHeaders {
    let reason = truncate_utf8(reason, MAX_REASON_BYTES);
    let mut headers = OwnedHeaders::new()
        .insert(Header { key: "dlq.reason", value: Some(reason.as_ref()) })
        .insert(Header { key: "dlq.source", value: Some(source) });
    if let Some(errors) = errors {
        headers = headers.insert(Header { key: "dlq.errors", value: Some(errors) });
    }
    if let Some(size) = original_size {
        headers = headers.insert(Header { key: "dlq.original_size", value: Some(size.to_string().as_str()) });
    }
    headers
}

/// Scores a batch into ready-to-send records.
fn prepare(batch: Incoming, model: &ChurnModel, input_topic: &str, stats: &ScorerStats) -> Prepared {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    stats.consumed.inc_by(batch.records.len() as u64);
    let started = std::time::Instant::now();
    // A prediction is about twice its input's size.
    let mut bytes = Vec::with_capacity(batch.bytes.len() * 2 + 1024);
    let mut outputs = Vec::with_capacity(batch.records.len());
    for record in batch.records {
        let input = record.payload.clone().map(|range| &batch.bytes[range]);
        let start = bytes.len();
        let position = (record.partition, record.offset);
        let scored = if record.size > MAX_RECORD_BYTES {
            Err(Rejection::new(format!("record too large: {} bytes, at most {MAX_RECORD_BYTES}", record.size)))
        } else if record.key_not_text {
            Err(Rejection::new("record key is not UTF-8 text: a record id must be"))
        } else {
            score_into(&record.id, input, model, &now, &mut bytes)
        };
        let output = match scored {
            Ok(()) => Output {
                kind: Kind::Prediction,
                key: record.id,
                payload: start..bytes.len(),
                headers: None,
                created_ms: record.created_ms,
                input: record.payload,
                input_size: record.size,
                position,
                reply_to: record.reply_to,
            },
            Err(rejection) => {
                let source = source(input_topic, position);
                if rejection.reason.contains(PANIC_MARK) {
                    stats.record_panics.inc();
                    tracing::error!(id = %truncate_utf8(&record.id, LOG_TEXT_BYTES), %source,
                                    reason = %truncate_utf8(&rejection.reason, 4 * LOG_TEXT_BYTES),
                                    "a record made the scorer panic; dead-lettered, the stream goes on");
                } else {
                    tracing::debug!(id = %truncate_utf8(&record.id, LOG_TEXT_BYTES),
                                    reason = %truncate_utf8(&rejection.reason, LOG_TEXT_BYTES), "dead letter");
                }
                // The original bytes, untouched (cut when the record was oversized).
                let cut = (input.map_or(0, <[u8]>::len) < record.size).then_some(record.size);
                bytes.extend_from_slice(input.unwrap_or_default());
                Output {
                    kind: if cut.is_some() { Kind::TruncatedDeadLetter } else { Kind::DeadLetter },
                    key: truncate_utf8(&record.id, MAX_KEY_BYTES).into_owned(),
                    payload: start..bytes.len(),
                    headers: Some(dead_letter_headers(&rejection.reason, rejection.field_errors.as_deref(), &source, cut)),
                    created_ms: record.created_ms,
                    input: record.payload,
                    input_size: record.size,
                    position,
                    reply_to: None,
                }
            }
        };
        outputs.push(output);
    }
    // One clock reading per batch rather than two per record.
    stats.scoring_seconds.observe_each(started.elapsed().as_secs_f64() / outputs.len().max(1) as f64, outputs.len() as u64);
    Prepared { input: batch.bytes, bytes, outputs }
}

/// Where a record came from, as dead letters name it: topic-partition-offset.
fn source(input_topic: &str, (partition, offset): (i32, i64)) -> String {
    format!("{input_topic}-{partition}-{offset}")
}

/// A scored batch and where its records came from.
struct Prepared {
    /// The input records' bytes, for dead letters made after a refused delivery.
    input: Vec<u8>,
    bytes: Vec<u8>,
    outputs: Vec<Output>,
}

impl Prepared {
    /// Turns a record the broker refused for good into the next fallback: a prediction into a
    /// dead letter, a dead letter into one with a cut copy. `None` when nothing is left to try.
    fn fall_back(&mut self, i: usize, error: &KafkaError, input_topic: &str) -> Option<()> {
        let out = &self.outputs[i];
        let input = out.input.clone().map(|r| &self.input[r]).unwrap_or_default();
        let (kind, copy) = match out.kind {
            Kind::Prediction | Kind::DeadLetter if input.len() > DEAD_LETTER_COPY_BYTES => {
                (Kind::TruncatedDeadLetter, &input[..DEAD_LETTER_COPY_BYTES])
            }
            Kind::Prediction => (Kind::DeadLetter, input),
            // A whole copy no longer than a cut one was refused: only an empty one can fit.
            Kind::DeadLetter => (Kind::TruncatedDeadLetter, &input[..0]),
            Kind::TruncatedDeadLetter if !out.payload.is_empty() => (Kind::TruncatedDeadLetter, &input[..0]),
            Kind::TruncatedDeadLetter => return None,
        };
        let reason = match out.kind {
            Kind::Prediction => format!("the broker refused this record's prediction: {error}"),
            _ => format!("the broker refused this dead letter whole ({error}); the copy is cut"),
        };
        let cut = (copy.len() < out.input_size).then_some(out.input_size);
        let headers = dead_letter_headers(&reason, None, &source(input_topic, out.position), cut);
        let start = self.bytes.len();
        self.bytes.extend_from_slice(copy);
        let out = &mut self.outputs[i];
        out.kind = kind;
        out.key = truncate_utf8(&out.key, MAX_KEY_BYTES).into_owned();
        out.payload = start..self.bytes.len();
        out.headers = Some(headers);
        Some(())
    }
}

/// Errors that no retry can mend: the record itself is unacceptable to the broker.
fn is_permanent(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(MessageSizeTooLarge | InvalidMessageSize | MessageBatchTooLarge | InvalidRecord | InvalidMessage | InvalidTopic | BadMessage)
    )
}

/// A batch after delivery: which records (by index) could not be delivered before shutdown.
struct Delivered {
    positions: Vec<(i32, i64)>,
    undelivered: Vec<usize>,
    /// Why the scorer cannot go on, when the producer says so.
    fatal: Option<String>,
}

impl Delivered {
    /// Per partition, the last offset before its first undelivered record. A partition with an
    /// undelivered record joins `blocked`, and a blocked partition (an earlier batch left a record
    /// undelivered) stores nothing more: that record is re-read after a restart.
    fn safe_offsets(&self, blocked: &mut HashSet<i32>) -> HashMap<i32, i64> {
        let mut first_failed: HashMap<i32, i64> = HashMap::new();
        for &i in &self.undelivered {
            let (partition, offset) = self.positions[i];
            let entry = first_failed.entry(partition).or_insert(i64::MAX);
            *entry = (*entry).min(offset);
        }
        let mut safe: HashMap<i32, i64> = HashMap::new();
        for &(partition, offset) in &self.positions {
            if blocked.contains(&partition) || first_failed.get(&partition).is_some_and(|&f| offset >= f) {
                continue;
            }
            let entry = safe.entry(partition).or_insert(offset);
            *entry = (*entry).max(offset);
        }
        blocked.extend(first_failed.into_keys());
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
    failed: Mutex<Vec<(usize, KafkaError)>>,
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
    async fn wait_after_enqueueing(&self) -> Vec<(usize, KafkaError)> {
        self.settle_one();
        self.settled.notified().await;
        std::mem::take(&mut *self.failed.lock().expect("acks"))
    }
}

/// One produced record's delivery report: which batch and record it is, and where its reply goes.
struct Delivery {
    acks: Arc<BatchAcks>,
    index: usize,
    reply_to: Option<Arc<str>>,
}

/// Routes each delivery report to its batch, and sends the reply of each acknowledged prediction.
struct AckCounter {
    replies: ReplyProducer,
}

impl ClientContext for AckCounter {}

impl ProducerContext for AckCounter {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let Delivery { acks, index, reply_to } = *opaque;
        match result {
            Ok(message) => {
                if let Some(topic) = reply_to {
                    send_reply(&self.replies, &topic, message);
                }
            }
            Err((e, _)) => acks.failed.lock().expect("acks").push((index, e.clone())),
        }
        acks.settle_one();
    }
}

/// Replies go out on their own producer: not idempotent, no linger, never creating topics.
type ReplyProducer = ThreadedProducer<ReplyLog>;

/// Logs undelivered replies, at most a line per interval (a hostile header could name a missing
/// topic on every record).
struct ReplyLog(Mutex<SkipLog>);

impl ClientContext for ReplyLog {}

impl ProducerContext for ReplyLog {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, message)) = result {
            let why = format!("{} ({e})", message.topic());
            self.0.lock().unwrap_or_else(|p| p.into_inner()).skip(&why, message.key().unwrap_or_default());
        }
    }
}

/// A copy of an acknowledged prediction (same key and payload) to its reply topic. Runs on the
/// producer's delivery thread, so it never waits: a full queue drops the reply, as a late one would.
fn send_reply(replies: &ReplyProducer, topic: &str, prediction: &BorrowedMessage<'_>) {
    let mut record = BaseRecord::<[u8], [u8]>::to(topic);
    if let Some(key) = prediction.key() {
        record = record.key(key);
    }
    if let Some(payload) = prediction.payload() {
        record = record.payload(payload);
    }
    if let Err((e, record)) = replies.send(record) {
        let why = format!("{topic} ({e})");
        replies.context().0.lock().unwrap_or_else(|p| p.into_inner()).skip(&why, record.key.unwrap_or_default());
    }
}

/// Produces a batch: its records are enqueued in order, once the previous batch has enqueued
/// its own (`turn`), so predictions keep the input's order per partition even though batches are
/// scored in parallel. Then the acknowledgements are awaited. A record the broker refuses for
/// good falls back to a dead letter (then to a cut one); other failures are retried with back-off
/// until acknowledged or the scorer stops.
async fn deliver(
    mut batch: Prepared,
    producer: &AckingProducer,
    topics: &Topics,
    stats: &ScorerStats,
    shutdown: &CancellationToken,
    turn: oneshot::Receiver<()>,
    enqueued: oneshot::Sender<()>,
) -> Delivered {
    let _ = turn.await;
    let mut enqueued = Some(enqueued);
    let mut pending: Vec<usize> = (0..batch.outputs.len()).collect();
    let mut attempt = 0u32;
    while !pending.is_empty() {
        let acks = BatchAcks::new();
        let mut failed = Vec::new();
        for &i in &pending {
            if let Err(e) = enqueue(producer, topics, &batch.outputs[i], &batch.bytes, &acks, i, shutdown).await {
                failed.push((i, e));
            }
        }
        if let Some(enqueued) = enqueued.take() {
            let _ = enqueued.send(());
        }
        let acknowledged = tokio::select! {
            refused = acks.wait_after_enqueueing() => Some(refused),
            _ = stopped_for(shutdown, STOP_DELIVERY_WAIT) => None,
        };
        let Some(refused) = acknowledged else {
            // Which of them arrived is unknown: none counts, and all are re-read (never lost).
            tracing::warn!(records = pending.len(), "stopping with unacknowledged records; they will be re-read");
            return Delivered { positions: batch.outputs.iter().map(|o| o.position).collect(), undelivered: pending, fatal: None };
        };
        failed.extend(refused);
        failed.sort_unstable_by_key(|&(i, _)| i);
        // The idempotent producer cannot go on after a fatal error: the scorer must restart.
        if let Some((_, e)) = failed.iter().find(|(_, e)| e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal)) {
            let fatal = Some(format!("the producer hit a fatal error, restart the scorer: {e}"));
            return Delivered { positions: batch.outputs.iter().map(|o| o.position).collect(), undelivered: pending, fatal };
        }
        let mut delivered = vec![true; batch.outputs.len()];
        let mut retry = Vec::new();
        let mut transient = 0;
        for (i, e) in &failed {
            delivered[*i] = false;
            stats.produce_errors.inc();
            if !is_permanent(e) {
                transient += 1;
                retry.push(*i);
            } else if batch.fall_back(*i, e, &topics.input).is_some() {
                // Sent again at once, as what it fell back to.
                retry.push(*i);
            } else {
                stats.dropped.inc();
                tracing::error!(source = %source(&topics.input, batch.outputs[*i].position), "the broker refused even an empty dead letter ({e}); the record is skipped");
            }
        }
        if let Some((i, e)) = failed.iter().find(|(_, e)| !is_permanent(e)) {
            tracing::warn!(records = transient, first_id = %truncate_utf8(&batch.outputs[*i].key, LOG_TEXT_BYTES),
                           "produce failed, will retry: {e}");
        }
        let acknowledged_ms = chrono::Utc::now().timestamp_millis();
        for &i in pending.iter().filter(|&&i| delivered[i]) {
            let out = &batch.outputs[i];
            if out.kind == Kind::Prediction {
                stats.scored.inc();
                if let Some(created) = out.created_ms {
                    stats.end_to_end_seconds.observe_seconds((acknowledged_ms - created) as f64 / 1000.0);
                }
            } else {
                stats.dead_lettered.inc();
            }
        }
        pending = retry;
        if transient > 0 {
            if shutdown.is_cancelled() {
                // Leave these offsets uncommitted: the next scorer re-reads them.
                tracing::warn!(records = pending.len(), "stopping with undelivered records; they will be re-read");
                break;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(25)))).await;
        }
    }
    Delivered { positions: batch.outputs.iter().map(|o| o.position).collect(), undelivered: pending, fatal: None }
}

/// Resolves `grace` after the stop was asked for.
async fn stopped_for(shutdown: &CancellationToken, grace: Duration) {
    let shutdown = shutdown.clone();
    shutdown.cancelled().await;
    tokio::time::sleep(grace).await;
}

/// Hands one record to the producer, waiting while its local queue is full (unless stopping).
async fn enqueue(
    producer: &AckingProducer,
    topics: &Topics,
    out: &Output,
    bytes: &[u8],
    acks: &Arc<BatchAcks>,
    index: usize,
    shutdown: &CancellationToken,
) -> Result<(), KafkaError> {
    acks.outstanding.fetch_add(1, Ordering::AcqRel);
    let topic = if out.kind == Kind::Prediction { &topics.predictions } else { &topics.dead_letter };
    let reply_to = if out.kind == Kind::Prediction { out.reply_to.clone() } else { None };
    let mut record = BaseRecord::with_opaque_to(topic, Box::new(Delivery { acks: acks.clone(), index, reply_to }))
        .key(out.key.as_str())
        .payload(&bytes[out.payload.clone()]);
    if let Some(headers) = &out.headers {
        record = record.headers(headers.clone());
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) if !shutdown.is_cancelled() => {
                record = returned;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((e, _)) => {
                acks.settle_one();
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_topics_are_interned_and_bounded() {
        let mut topics = ReplyTopics::default();
        let first = topics.admit("test3-replies-a").unwrap();
        assert!(Arc::ptr_eq(&first, &topics.admit("test3-replies-a").unwrap()), "one allocation per topic");
        for i in 1..MAX_REPLY_TOPICS {
            assert!(topics.admit(&format!("test3-replies-{i}")).is_some());
        }
        assert!(topics.admit("test3-replies-one-too-many").is_none());
        assert!(topics.admit("test3-replies-a").is_some(), "known ones still get replies");
    }

    #[test]
    fn offsets_are_stored_up_to_the_first_undelivered_record_of_each_partition() {
        // Partition 0: offsets 10..=13, 12 undelivered. Partition 1: 5..=6, all delivered.
        // Partition 2: its only record undelivered. Partition 3: blocked by an earlier batch.
        let delivered = Delivered {
            positions: vec![(0, 10), (1, 5), (0, 11), (0, 12), (2, 7), (1, 6), (0, 13), (3, 1)],
            undelivered: vec![3, 4],
            fatal: None,
        };
        let mut blocked = HashSet::from([3]);
        let safe = delivered.safe_offsets(&mut blocked);
        assert_eq!(safe.get(&0), Some(&11));
        assert_eq!(safe.get(&1), Some(&6));
        assert_eq!(safe.get(&2), None);
        assert_eq!(safe.get(&3), None, "an earlier batch left a record of partition 3 undelivered");
        assert_eq!(blocked, HashSet::from([0, 2, 3]), "later batches store nothing of 0 and 2 either");
    }

    #[test]
    fn a_panic_while_scoring_one_record_becomes_its_rejection_and_leaves_the_buffer_as_it_was() {
        let mut out = b"earlier".to_vec();
        let rejection = isolated(&mut out, |out| {
            out.extend_from_slice(b"half a prediction");
            let zip = "123€abcd";
            let _ = &zip[..5]; // what us_state once did
            Ok(())
        })
        .unwrap_err();
        assert!(rejection.reason.contains(PANIC_MARK), "{}", rejection.reason);
        assert!(rejection.reason.contains("char boundary"), "the panic's own message: {}", rejection.reason);
        assert_eq!(out, b"earlier");
        assert!(isolated(&mut out, |out| Ok(out.push(b'!'))).is_ok());
        assert_eq!(out, b"earlier!");
    }

    fn prepared(input: &[u8]) -> Prepared {
        Prepared {
            input: input.to_vec(),
            bytes: b"{prediction}".to_vec(),
            outputs: vec![Output {
                kind: Kind::Prediction,
                key: "k".repeat(MAX_KEY_BYTES + 10),
                payload: 0..12,
                headers: None,
                created_ms: None,
                input: Some(0..input.len()),
                input_size: input.len(),
                position: (2, 40),
                reply_to: None,
            }],
        }
    }

    fn header(out: &Output, key: &str) -> Option<String> {
        use rdkafka::message::Headers;
        let headers = out.headers.as_ref()?;
        headers.iter().find(|h| h.key == key).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn a_record_the_broker_refuses_for_good_falls_back_to_a_dead_letter_then_a_cut_one_then_gives_up() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(is_permanent(&too_large));
        assert!(!is_permanent(&KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)));
        assert!(!is_permanent(&KafkaError::MessageProduction(RDKafkaErrorCode::BrokerTransportFailure)));

        let mut small = prepared(b"{\"Names\":\"x\"}");
        small.fall_back(0, &too_large, "in").unwrap();
        let out = &small.outputs[0];
        assert_eq!(out.kind, Kind::DeadLetter);
        assert_eq!(&small.bytes[out.payload.clone()], b"{\"Names\":\"x\"}", "the original record");
        assert!(out.key.len() <= MAX_KEY_BYTES, "a key within the limit");
        assert!(header(out, "dlq.reason").unwrap().contains("refused this record's prediction"));
        assert_eq!(header(out, "dlq.source").unwrap(), "in-2-40");
        assert_eq!(header(out, "dlq.original_size"), None);
        small.fall_back(0, &too_large, "in").unwrap();
        let out = &small.outputs[0];
        assert_eq!((out.kind, out.payload.len()), (Kind::TruncatedDeadLetter, 0), "a small record's whole copy refused: an empty one next");
        assert_eq!(header(out, "dlq.original_size").unwrap(), "13");
        assert!(small.fall_back(0, &too_large, "in").is_none());

        let big_input = vec![b'x'; DEAD_LETTER_COPY_BYTES * 2];
        let mut big = prepared(&big_input);
        big.fall_back(0, &too_large, "in").unwrap();
        let out = &big.outputs[0];
        assert_eq!(out.kind, Kind::TruncatedDeadLetter);
        assert_eq!(out.payload.len(), DEAD_LETTER_COPY_BYTES);
        assert_eq!(header(out, "dlq.original_size").unwrap(), (DEAD_LETTER_COPY_BYTES * 2).to_string());
        big.fall_back(0, &too_large, "in").unwrap();
        assert!(big.outputs[0].payload.is_empty(), "then an empty copy with the reason");
        assert!(big.fall_back(0, &too_large, "in").is_none(), "then nothing more to try");
    }

    #[test]
    fn oversized_and_bad_records_are_dead_lettered_with_their_reason_and_good_ones_scored() {
        let model = model::train::train(
            &model::synth::generate_customers(&model::synth::GenerateOptions { rows: 200, seed: 1, messy_fraction: 0.0 }),
            &Default::default(),
            "t".into(),
            |_| {},
        )
        .unwrap();
        let good = br#"{"Names":"Ann","Age":42,"Total_Purchase":9000,"Account_Manager":1,"Years":5,
            "Num_Sites":9,"Onboard_date":"2012-01-01 10:00:00","Location":"1 Main St, AK 123\u20acabcd","Company":"y"}"#;
        let json = score_payload("a", Some(good), &model, "now").unwrap();
        let prediction: model::Prediction = serde_json::from_slice(&json).unwrap();
        assert_eq!(prediction.segments.state, None, "the multi-byte ZIP that once panicked");
        let reason = score_payload("b", Some(b"{not json"), &model, "now").unwrap_err();
        assert!(reason.contains("not a JSON customer record"), "{reason}");
    }
}
