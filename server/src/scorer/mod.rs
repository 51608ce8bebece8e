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
//!
//! Where each part lives: `input` copies fetched records out of the consumer's buffer; `prepare`
//! scores them, each in isolation, into predictions or dead letters; `delivery` produces them in
//! order, awaits the acknowledgements (`acks` counts them), retries or falls back, and finds the
//! offsets safe to store; `batch` is one batch's way through those steps and the turns that keep
//! batches in fetch order; `rebalance` is the consumer context that finishes batches before
//! partitions are given up; `reply_copies` sends the copies to reply topics.

mod acks;
mod batch;
mod delivery;
mod input;
mod prepare;
mod rebalance;
mod reply_copies;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::FutureExt;
use model::Lineup;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::kafka::Kafka;
use acks::{AckCounter, AckingProducer};
use batch::{Batch, Turns};
use input::Incoming;
use rebalance::{InFlight, ScorerConsumer, ScorerContext};
use reply_copies::ReplyTopics;

pub use input::record_id;
pub use prepare::score_payload;

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
/// After the stop, how long deliveries may still be awaited (a broker away would otherwise hold
/// the stop for librdkafka's 5-minute delivery timeout), and the final commit. Together with
/// closing the clients they fit the supervisor's stop grace of 10 s.
const STOP_DELIVERY_WAIT: Duration = Duration::from_secs(3);
const FINAL_COMMIT_WAIT: Duration = Duration::from_millis(1500);
/// How often the consumer is polled even without a wake-up (see `Scorer::run`).
const LOOK_AGAIN: Duration = Duration::from_millis(100);
/// Ids and reasons in log lines are cut to this many bytes: a log line never carries unbounded
/// input (a 900 KB key used to be logged whole on every retry).
pub const LOG_TEXT_BYTES: usize = 96;

/// The scorer's counters live in the process-wide metrics.
pub type ScorerStats = crate::metrics::PipelineMetrics;

pub struct Scorer {
    kafka: Kafka,
    group: String,
    /// The champion, and the challenger scored in the shadow.
    models: watch::Receiver<Lineup>,
    pub stats: Arc<ScorerStats>,
    /// Partitions held and model loaded, for readiness.
    pub health: Arc<Health>,
}

impl Scorer {
    pub fn new(kafka: Kafka, group: impl Into<String>, models: watch::Receiver<Lineup>) -> Self {
        Scorer {
            kafka,
            group: group.into(),
            models,
            stats: Arc::default(),
            health: Arc::default(),
        }
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
                .consumer_config(
                    &self.group,
                    &[
                        ("enable.auto.commit", "true"),
                        ("auto.commit.interval.ms", "1000"),
                        // Offsets are stored by hand, after delivery: at-least-once.
                        ("enable.auto.offset.store", "false"),
                        ("auto.offset.reset", "earliest"),
                        ("session.timeout.ms", "10000"),
                        // A person may be waiting for this record's prediction.
                        ("fetch.wait.max.ms", Kafka::INTERACTIVE_FETCH_WAIT_MS),
                    ],
                )
                .create_with_context(ScorerContext {
                    health: self.health.clone(),
                    in_flight: in_flight.clone(),
                })
                .context("creating the scorer's consumer")?,
        );
        consumer
            .subscribe(&[&topics.input])
            .with_context(|| format!("subscribing to {}", topics.input))?;
        let replies = reply_copies::reply_producer(&self.kafka)?;
        let mut producer_config = self.kafka.idempotent_producer_config();
        if producer_config.get("batch.size").is_none() {
            // Asked at start-up; a stop meanwhile goes on without the answer.
            let limited = [topics.predictions.as_str(), topics.dead_letter.as_str()];
            let asked = topic_message_limit(&self.kafka, &limited);
            if let Some(limit) = shutdown.run_until_cancelled(asked).await.flatten() {
                producer_config.set("batch.size", limit.min(DEFAULT_BATCH_BYTES).to_string());
            }
        }
        let producer: Arc<AckingProducer> = Arc::new(
            producer_config
                .create_with_context(AckCounter { replies })
                .context("creating the scorer's producer")?,
        );
        // Loaded means ready, before the first record arrives (readiness reports it).
        self.note_model(&self.models.borrow().champion.version);
        tracing::info!(input = %topics.input, predictions = %topics.predictions, group = %self.group,
                       model = %self.models.borrow().champion.version, "scorer started");

        // Batch tasks, oldest first: awaited here only to bound how many are in flight and to
        // learn of a failure; each task stores its own offsets, in fetch order (see `Batch`).
        let mut tasks: VecDeque<tokio::task::JoinHandle<Result<()>>> = VecDeque::new();
        let scoring_slots = Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ));
        let mut previous = Turns::first();
        let mut reply_topics = ReplyTopics::default();
        let mut failure = None;
        let unconfirmed = Arc::new(AtomicU64::new(0));
        // rdkafka's StreamConsumer can miss a wake-up (fede1024/rust-rdkafka#665: an event it
        // handles itself empties its poll while messages are queued, and librdkafka signals only
        // an empty queue becoming non-empty), and the loop would then wait for good. Looking
        // again every 100 ms bounds a missed wake-up to that. (Suspected when a soak's scorer
        // stopped reading; that turned out to be the broker, see BENCHMARKS.md, but the race is
        // real and the guard cheap.)
        let mut look_again = tokio::time::interval(LOOK_AGAIN);
        look_again.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                _ = look_again.tick() => continue,
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
            let lineup = self.models.borrow().clone();
            self.note_model(&lineup.champion.version);
            let (turns, next) = Turns::after(previous);
            previous = next;
            let job = Batch {
                incoming: batch,
                lineup,
                topics: self.kafka.topics.clone(),
                stats: self.stats.clone(),
                producer: producer.clone(),
                consumer: consumer.clone(),
                shutdown: shutdown.clone(),
                turns,
                _in_flight: in_flight.start(),
                unconfirmed: unconfirmed.clone(),
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
        match crate::kafka::on_own_thread(move || committing.commit_consumer_state(CommitMode::Sync), FINAL_COMMIT_WAIT).await {
            Some(Ok(())) | Some(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) => {}
            Some(Err(e)) => tracing::warn!("final commit failed, the next scorer re-reads from the last commit: {e}"),
            None => tracing::warn!(wait_s = FINAL_COMMIT_WAIT.as_secs(), "final commit unanswered (broker away?): the next scorer re-reads from the last commit"),
        }
        let unconfirmed = unconfirmed.load(Ordering::Relaxed);
        if unconfirmed > 0 {
            tracing::warn!(
                "{unconfirmed} predictions or dead letters not confirmed by the broker; their \
                 records are re-read on the next start"
            );
        }
        crate::kafka::close_within((consumer, producer), "scorer").await;
        let (scored, dead_lettered) = (self.stats.scored.get(), self.stats.dead_lettered.get());
        tracing::info!(
            read = self.stats.consumed.get(),
            scored,
            dead_lettered,
            produced = scored + dead_lettered,
            unconfirmed,
            "scorer stopped"
        );
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
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        kafka.config(&[]).create().ok()?;
    let resources: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
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
        .filter_map(|topic| {
            topic
                .get("max.message.bytes")?
                .value
                .as_deref()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .filter(|&limit| limit > 0)
        .min()
}

fn flatten(joined: Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    joined.map_err(|e| anyhow::anyhow!("a scorer batch task panicked: {e}"))?
}
