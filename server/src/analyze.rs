//! The stream-analytics processor: a consumer group on the predictions topic that keeps
//! tumbling windows per partition and publishes each closed window to the stats topic.
//!
//! Offsets are committed only up to the first record of the oldest window still open, so after a
//! crash or a rebalance the open windows are rebuilt by re-reading the topic. Windows are
//! published as per-partition partials keyed by window and partition, and readers add the
//! partitions up: several processors never double count.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use model::analytics::{Source, WindowAggregator, WindowPartial};
use model::{ChurnModel, Prediction};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::kafka::Kafka;

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

/// Outcomes older than this are not joined after a restart.
const REMEMBER_FOR: Duration = Duration::from_secs(24 * 3600);

/// After a restart or rebalance, remembers the partition's predictions from before the committed
/// offset (up to a day back), so outcomes arriving later still find the prediction they judge.
fn remember_earlier(kafka: &Kafka, group: &StreamConsumer, partition: i32, aggregator: &mut WindowAggregator) -> Result<usize> {
    let topic = &kafka.topics.predictions;
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, partition);
    let committed = group.committed_offsets(wanted, Duration::from_secs(5))?;
    let Some(until) = committed.find_partition(topic, partition).and_then(|e| e.offset().to_raw()).filter(|&o| o > 0) else {
        return Ok(0);
    };
    let reader: BaseConsumer = kafka.consumer_config("churn-analytics-recall", &[("enable.auto.commit", "false")]).create()?;
    let since = chrono::Utc::now().timestamp_millis() - REMEMBER_FOR.as_millis() as i64;
    let mut times = TopicPartitionList::new();
    times.add_partition_offset(topic, partition, Offset::Offset(since))?;
    let start = reader
        .offsets_for_times(times, Duration::from_secs(5))?
        .find_partition(topic, partition)
        .map(|e| e.offset())
        .filter(|o| matches!(o, Offset::Offset(_)))
        .unwrap_or(Offset::Beginning);
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
                    aggregator.remember(&prediction);
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

pub async fn run(
    kafka: Kafka,
    options: AnalyzeOptions,
    mut models: watch::Receiver<Arc<ChurnModel>>,
    mut shutdown: watch::Receiver<bool>,
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
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    // The current model's score distribution, refreshed only when a new model arrives.
    let mut drift = models.borrow_and_update().drift_reference();
    tracing::info!(input = %topics.predictions, stats = %topics.stats, window_s = options.window.as_secs_f64(), "stream analytics started");

    loop {
        let message = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tick.tick() => None,
            m = consumer.recv() => Some(m),
        };
        if models.has_changed().unwrap_or(false) {
            drift = models.borrow_and_update().drift_reference();
            for state in partitions.values_mut() {
                state.aggregator.set_drift_reference(drift.clone());
            }
        }
        let mut to_publish: Vec<WindowPartial> = Vec::new();
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
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
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
            let timestamp = m.timestamp().to_millis().unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            match source {
                Source::Predictions => {
                    if let Some(prediction) = m.payload().and_then(|p| serde_json::from_slice::<Prediction>(p).ok()) {
                        to_publish.extend(state.aggregator.observe(m.offset(), timestamp, &prediction));
                    }
                }
                Source::Outcomes => match (m.key().map(String::from_utf8_lossy), m.payload().and_then(outcome)) {
                    (Some(id), Some(actual)) => {
                        to_publish.extend(state.aggregator.observe_outcome(m.offset(), timestamp, &id, actual));
                    }
                    _ => tracing::debug!(offset = m.offset(), "ignoring a labels message without a record id or a Churn value"),
                },
            }
        }
        // Drop state of partitions this instance no longer owns: their new owner re-reads them.
        if let Ok(assignment) = consumer.assignment() {
            let owned: Vec<i32> = assignment.elements().iter().map(|e| e.partition()).collect();
            partitions.retain(|p, _| owned.contains(p));
        }
        let now = chrono::Utc::now().timestamp_millis();
        for state in partitions.values_mut() {
            to_publish.extend(state.aggregator.close_due(now));
        }
        if to_publish.is_empty() {
            continue;
        }
        if let Err(e) = publish(&producer, &topics.stats, &to_publish).await {
            tracing::warn!("publishing window stats failed, will retry from the topic: {e:#}");
            continue;
        }
        commit(&consumer, topics, &partitions);
    }
    commit(&consumer, topics, &partitions);
    Ok(())
}

async fn publish(producer: &FutureProducer, topic: &str, windows: &[WindowPartial]) -> Result<()> {
    let payloads: Vec<(String, Vec<u8>)> =
        windows.iter().map(|w| (w.key(), serde_json::to_vec(w).expect("windows serialize"))).collect();
    let sends = payloads.iter().map(|(key, payload)| {
        producer.send(FutureRecord::to(topic).key(key.as_str()).payload(payload.as_slice()), Duration::from_secs(30))
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).context("delivering window stats")?;
    }
    Ok(())
}

/// Commits, per partition and source, the first offset not yet covered by a published window.
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
