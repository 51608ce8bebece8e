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
use model::analytics::{WindowAggregator, WindowPartial};
use model::{ChurnModel, Prediction};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
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
    /// Next offset after the last record read.
    next_offset: i64,
}

pub async fn run(
    kafka: Kafka,
    options: AnalyzeOptions,
    models: watch::Receiver<Arc<ChurnModel>>,
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
    consumer.subscribe(&[&topics.predictions]).with_context(|| format!("subscribing to {}", topics.predictions))?;
    let producer: FutureProducer = kafka.idempotent_producer()?;
    let window_ms = options.window.as_millis() as i64;
    let lateness_ms = options.lateness.as_millis() as i64;
    let mut partitions: HashMap<i32, PartitionState> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tracing::info!(input = %topics.predictions, stats = %topics.stats, window_s = options.window.as_secs_f64(), "stream analytics started");

    loop {
        let message = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tick.tick() => None,
            m = consumer.recv() => Some(m),
        };
        let drift = models.borrow().drift_reference();
        let mut to_publish: Vec<WindowPartial> = Vec::new();
        if let Some(message) = message {
            let m = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("analytics consumer: {e}");
                    continue;
                }
            };
            let state = partitions.entry(m.partition()).or_insert_with(|| PartitionState {
                aggregator: WindowAggregator::new(window_ms, lateness_ms, m.partition()),
                next_offset: m.offset(),
            });
            state.aggregator.set_drift_reference(drift.clone());
            state.next_offset = m.offset() + 1;
            let timestamp = m.timestamp().to_millis().unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            if let Some(prediction) = m.payload().and_then(|p| serde_json::from_slice::<Prediction>(p).ok()) {
                to_publish.extend(state.aggregator.observe(m.offset(), timestamp, &prediction));
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
        commit(&consumer, &topics.predictions, &partitions);
    }
    commit(&consumer, &topics.predictions, &partitions);
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

/// Commits, per partition, the first offset not yet covered by a published window.
fn commit(consumer: &StreamConsumer, topic: &str, partitions: &HashMap<i32, PartitionState>) {
    let mut offsets = TopicPartitionList::new();
    for (&partition, state) in partitions {
        let offset = state.aggregator.commit_offset().unwrap_or(state.next_offset);
        let _ = offsets.add_partition_offset(topic, partition, Offset::Offset(offset));
    }
    if offsets.count() > 0 {
        if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!("analytics commit: {e}");
        }
    }
}
