//! The stream-analytics processor: a consumer group on the predictions topic that keeps
//! tumbling windows per partition and publishes each closed window to the stats topic.
//!
//! Offsets are committed only up to the first record of the oldest window still open, so after a
//! crash or a rebalance the open windows are rebuilt by re-reading the topic. Windows are
//! published as per-partition partials keyed by window and partition, and readers add the
//! partitions up: several processors never double count.
//!
//! This file holds the processor's loop; the rest lives by concept: `counting` (one message into
//! its windows, and what is skipped), `partitions` (state per owned partition and the commit),
//! `recall` (earlier predictions re-read after a restart), `outbox` (publishing closed windows
//! with retries) and `anomalies` (the aggregators' odd records, logged).

mod anomalies;
mod counting;
mod outbox;
mod partitions;
mod recall;
#[cfg(test)]
mod tests;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use model::analytics::Source;
use model::Lineup;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::kafka::{Kafka, Topics};
use anomalies::{log_anomalies, Anomalies, ANOMALIES_EVERY};
use counting::{count, isolated, Input, Skipped};
use outbox::{publish, Outbox};
use partitions::{commit, forget_unowned, offsets_to_commit, PartitionState};

#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    pub group: String,
    pub window: Duration,
    /// How long after a window's end records still count in it before it is published.
    pub lateness: Duration,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            group: crate::kafka::DEFAULT_ANALYTICS_GROUP.into(),
            window: Duration::from_secs(10),
            lateness: Duration::from_secs(2),
        }
    }
}

pub async fn run(
    kafka: Kafka,
    options: AnalyzeOptions,
    mut models: watch::Receiver<Lineup>,
    shutdown: CancellationToken,
) -> Result<()> {
    let topics = &kafka.topics;
    let consumer: Arc<StreamConsumer> = kafka
        .consumer_config(
            &options.group,
            &[
                ("enable.auto.commit", "false"),
                ("auto.offset.reset", "earliest"),
                ("session.timeout.ms", "10000"),
            ],
        )
        .create()
        .map(Arc::new)
        .context("creating the analytics consumer")?;
    // Predictions and outcomes are co-partitioned (both keyed by record id, same partition count),
    // so the range assignor gives one instance the matching partitions of both.
    consumer
        .subscribe(&[&topics.predictions, &topics.labels])
        .with_context(|| {
            format!(
                "subscribing to {} and {}",
                topics.predictions, topics.labels
            )
        })?;
    let producer: FutureProducer = kafka.idempotent_producer()?;
    let window_ms = options.window.as_millis() as i64;
    let lateness_ms = options.lateness.as_millis() as i64;
    let mut partitions: HashMap<i32, PartitionState> = HashMap::new();
    let mut outbox = Outbox::default();
    let mut skipped = Skipped::default();
    let (mut anomalies, mut anomalies_logged) = (Anomalies::default(), Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut counts = Counts::default();
    // The current model's score distribution, refreshed only when a new model arrives.
    let mut drift = models.borrow_and_update().champion.drift_reference();
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
            drift = models.borrow_and_update().champion.drift_reference();
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
            counts.read += 1;
            let partition = m.partition();
            let state = match partitions.entry(partition) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(PartitionState::take_on(
                    &kafka,
                    &consumer,
                    partition,
                    window_ms,
                    lateness_ms,
                    drift.clone(),
                    &shutdown,
                )),
            };
            let source = if m.topic() == topics.predictions {
                Source::Predictions
            } else {
                Source::Outcomes
            };
            state.next_offsets[source as usize] = Some(m.offset() + 1);
            let input = Input {
                source,
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis().unwrap_or(now),
                key: m.key(),
                payload: m.payload().unwrap_or_default(),
            };
            outbox.add(isolated(input.payload, &mut skipped, || {
                count(&mut state.aggregator, &input, now)
            }));
        }
        // Drop state of partitions this instance no longer owns: their new owner re-reads them.
        forget_unowned(&consumer, &mut partitions);
        for state in partitions.values_mut() {
            outbox.add(state.aggregator.close_due(now));
        }
        if anomalies_logged.elapsed() >= ANOMALIES_EVERY {
            log_anomalies(
                &mut anomalies,
                Anomalies::of(partitions.values().map(|s| &s.aggregator)),
            );
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
                counts.published += outbox.windows.len() as u64;
                outbox.published();
                commit(&consumer, topics, &partitions);
            }
            Err(e) => {
                let wait = outbox.failed(Instant::now());
                let kept = outbox.windows.len();
                tracing::warn!(
                    kept,
                    "publishing window stats failed, retrying in {wait:?}: {e:#}"
                );
            }
        }
    }
    finish(
        consumer,
        producer,
        topics,
        &partitions,
        &mut outbox,
        &mut counts,
    )
    .await;
    tracing::info!(
        read = counts.read,
        published = counts.published,
        unpublished = outbox.windows.len(),
        "stream analytics stopped"
    );
    Ok(())
}

/// What the processor did, for its last log line.
#[derive(Default)]
struct Counts {
    /// Messages read (predictions and outcomes).
    read: u64,
    /// Window partials the stats topic acknowledged.
    published: u64,
}

/// At the stop, how long the last publish of the windows waiting, and then the commit, may take:
/// with the broker away each would wait far longer (`outbox::PUBLISH_TIMEOUT`, librdkafka's own
/// timeouts), and the command must be gone within `shutdown::STOP_DEADLINE`.
const FINAL_PUBLISH_WAIT: Duration = Duration::from_millis(1500);
const FINAL_COMMIT_WAIT: Duration = Duration::from_millis(1500);

/// On shutdown: one last, short attempt at the windows still waiting, the commit if they are out,
/// and the clients closed (neither waiting long for a broker that is away).
async fn finish(
    consumer: Arc<StreamConsumer>,
    producer: FutureProducer,
    topics: &Topics,
    partitions: &HashMap<i32, PartitionState>,
    outbox: &mut Outbox,
    counts: &mut Counts,
) {
    let publish_last = async {
        if outbox.is_empty() {
            return Ok(());
        }
        tokio::time::timeout(
            FINAL_PUBLISH_WAIT,
            publish(&producer, &topics.stats, outbox),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {FINAL_PUBLISH_WAIT:?}"))?
    };
    match publish_last.await {
        Ok(()) => {
            counts.published += outbox.windows.len() as u64;
            outbox.published();
            let offsets = offsets_to_commit(topics, partitions);
            let committing = consumer.clone();
            let committed = crate::kafka::on_own_thread(
                move || {
                    offsets.count() == 0 || committing.commit(&offsets, CommitMode::Sync).is_ok()
                },
                FINAL_COMMIT_WAIT,
            )
            .await;
            if committed != Some(true) {
                tracing::warn!("analytics: final commit unanswered (broker away?): the open windows are rebuilt from the last commit at the next start");
            }
        }
        Err(e) => {
            tracing::warn!(kept = outbox.windows.len(), "window stats unpublished at shutdown: rebuilt from the topic at the next start: {e:#}");
        }
    }
    crate::kafka::close_within((consumer, producer), "analytics").await;
}
