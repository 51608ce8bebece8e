//! Labelled records read back from Kafka, for retraining (`churn retrain`): the customer records
//! of the input topic from a recent window, each joined with its label.
//!
//! **The window** is found by time: each partition's first offset at or after `now − window`
//! (Kafka's ListOffsets by timestamp), read up to its end offset as seen at the start, so a
//! busy topic cannot keep a round reading forever. All partitions, no consumer group (nothing
//! is committed; scorers are not disturbed).
//!
//! **The label** of a record is an outcome on the labels topic (`{"Churn": 1}` keyed by the
//! record id: the input key, or `topic-partition-offset` for an unkeyed record), read over the
//! same window; otherwise the record's own `Churn` field. An outcome wins when both exist: it
//! was observed after the record was sent. Without outcomes (`with_outcomes: false`) only the
//! records' own field counts.
//!
//! **Memory** is bounded by `max_records`: at most that many outcomes (the newest) and that many
//! labelled records (the newest, by timestamp: after a change in who churns the newest show it
//! best). Records that fail validation are skipped and counted, as the scorer would.

mod join;
#[cfg(test)]
mod tests;

pub use join::{JoinCounts, Joiner, Outcomes, Position};

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use model::Customer;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::kafka::{on_own_thread, partition_count, Kafka};

/// How long one look-up (partitions, end offsets, offsets by time) may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the next record of a partition not yet read to its end before saying
/// the broker is away.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// How far back to read, from now.
    pub window: Duration,
    /// Most labelled records kept (the newest), and most outcomes held.
    pub max_records: usize,
    /// Join with the outcomes on the labels topic.
    pub with_outcomes: bool,
}

/// A window's labelled customers, oldest first, and what was read to get them.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub customers: Vec<Customer>,
    pub counts: JoinCounts,
    /// The window's start.
    pub since: DateTime<Utc>,
}

impl Labelled {
    pub fn churners(&self) -> usize {
        self.customers
            .iter()
            .filter(|c| c.churn == Some(true))
            .count()
    }
}

/// Reads the labelled records of the last `options.window` (see the module docs).
pub async fn read_labelled(kafka: &Kafka, options: &ReadOptions) -> Result<Labelled> {
    let window = chrono::Duration::from_std(options.window).context("the window is too long")?;
    let since = Utc::now() - window;
    let since_ms = since.timestamp_millis();
    let mut outcomes = Outcomes::new(if options.with_outcomes {
        options.max_records
    } else {
        0
    });
    if options.with_outcomes {
        read_window(kafka, &kafka.topics.labels, since_ms, |m| {
            outcomes.add(position(m), m.key(), m.payload())
        })
        .await
        .with_context(|| format!("reading the outcomes on {}", kafka.topics.labels))?;
    }
    let mut joiner = outcomes.into_joiner(options.max_records);
    read_window(kafka, &kafka.topics.input, since_ms, |m| {
        joiner.add(position(m), &crate::scorer::record_id(m), m.payload())
    })
    .await
    .with_context(|| format!("reading the records on {}", kafka.topics.input))?;
    let (customers, counts) = joiner.finish();
    Ok(Labelled {
        customers,
        counts,
        since,
    })
}

fn position(m: &BorrowedMessage) -> Position {
    (
        m.timestamp().to_millis().unwrap_or(0),
        m.partition(),
        m.offset(),
    )
}

/// Hands every message of `topic` from the first at or after `since_ms` to the end offsets seen
/// now, each partition in order, to `handle`.
async fn read_window(
    kafka: &Kafka,
    topic: &str,
    since_ms: i64,
    mut handle: impl FnMut(&BorrowedMessage),
) -> Result<()> {
    let ranges = window_offsets(kafka, topic, since_ms).await?;
    let mut pending: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for (partition, (start, end)) in ranges {
        if start < end {
            assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
            pending.insert(partition, end);
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let consumer: StreamConsumer = reader(kafka, &[("enable.partition.eof", "true")])?;
    consumer
        .assign(&assignment)
        .context("assigning the partitions")?;
    while !pending.is_empty() {
        let message = match tokio::time::timeout(SILENCE_LIMIT, consumer.recv()).await {
            Err(_) => bail!(
                "no records from {} for {SILENCE_LIMIT:?} with partitions {:?} of {topic} not \
                 read to their end: is the broker up?",
                kafka.brokers,
                pending.keys().collect::<Vec<_>>()
            ),
            Ok(Err(KafkaError::PartitionEOF(partition))) => {
                pending.remove(&partition);
                continue;
            }
            Ok(Err(e)) => {
                tracing::debug!("reading {topic}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Ok(m)) => m,
        };
        let Some(&end) = pending.get(&message.partition()) else {
            continue;
        };
        if message.offset() >= end {
            pending.remove(&message.partition());
            continue;
        }
        if message.offset() + 1 >= end {
            pending.remove(&message.partition());
        }
        handle(&message);
    }
    crate::kafka::close_within(consumer, "the window reader").await;
    Ok(())
}

/// A client that never joins a group and never commits.
fn reader<C: rdkafka::config::FromClientConfig>(
    kafka: &Kafka,
    extra: &[(&str, &str)],
) -> Result<C> {
    let mut defaults = vec![
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        // A start offset deleted by retention meanwhile: the oldest record left.
        ("auto.offset.reset", "earliest"),
    ];
    defaults.extend_from_slice(extra);
    kafka
        .consumer_config("churn-retrain", &defaults)
        .create()
        .context("creating the Kafka consumer")
}

/// Per partition of `topic`: the first offset at or after `since_ms` and the end offset now.
async fn window_offsets(
    kafka: &Kafka,
    topic: &str,
    since_ms: i64,
) -> Result<Vec<(i32, (i64, i64))>> {
    let probe: BaseConsumer = reader(kafka, &[])?;
    let topic = topic.to_owned();
    let lookups = move || -> Result<Vec<(i32, (i64, i64))>> {
        let count = partition_count(&probe, &topic, LOOKUP_TIMEOUT)
            .with_context(|| format!("reading the partitions of {topic}"))?;
        if count == 0 {
            bail!("topic {topic} does not exist: start the pipeline (or `churn topics`) first");
        }
        let mut by_time = TopicPartitionList::new();
        let mut ends = Vec::new();
        for p in 0..count {
            let (low, high) = probe
                .fetch_watermarks(&topic, p, LOOKUP_TIMEOUT)
                .with_context(|| format!("reading the offsets of {topic} [{p}]"))?;
            ends.push((p, low, high));
            by_time.add_partition_offset(&topic, p, Offset::Offset(since_ms))?;
        }
        let found = probe
            .offsets_for_times(by_time, LOOKUP_TIMEOUT)
            .with_context(|| format!("finding the offsets of {topic} by time"))?;
        Ok(ends
            .into_iter()
            .map(|(p, low, high)| {
                let start = match found.find_partition(&topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(at)) => at.max(low),
                    // No record at or after the time: nothing of this partition is in the window.
                    _ => high,
                };
                (p, (start.min(high), high))
            })
            .collect())
    };
    // Bounded: each look-up has its timeout, and the whole waits at most a little longer.
    on_own_thread(lookups, LOOKUP_TIMEOUT * 4)
        .await
        .ok_or_else(|| anyhow!("the broker at {} did not answer in time", kafka.brokers))?
}
