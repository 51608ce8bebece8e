//! Reading one topic for `churn tail`: from the beginning or the last N records, optionally only
//! one key, up to the end offsets seen at the start — or on, following, until the stop.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::render::{self, Rendered};
use super::{blocking, topic_names, LOOKUP_TIMEOUT};
use crate::kafka::Kafka;

/// The most records `--last` keeps (they are held in memory until printed).
pub const MAX_LAST: usize = 100_000;
/// Without `--follow`, how long to wait for the next record before saying the broker is away.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every record the topic holds.
    Beginning,
    /// The last N (of the key, with `key`), across partitions by timestamp.
    Last(usize),
}

#[derive(Debug, Clone)]
pub struct TailOptions {
    pub topic: String,
    pub start: Start,
    /// Only records with exactly this key.
    pub key: Option<Vec<u8>>,
    /// Go on after the end offsets seen at the start, until `stop`.
    pub follow: bool,
}

/// Why reading ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every partition read to its end offset as seen at the start.
    AtEnd,
    /// Stopped (Ctrl-C, SIGTERM) while following.
    Stopped,
    /// The sink refused more (the reader of a pipe went away): not an error.
    SinkClosed,
}

/// Reads `options.topic` and hands each record (rendered) to `sink`; a sink error of kind
/// BrokenPipe ends reading quietly (`Ended::SinkClosed`), other sink errors are returned. A topic
/// that does not exist is an error naming those that do.
pub async fn read_records(
    kafka: &Kafka,
    options: &TailOptions,
    stop: CancellationToken,
    mut sink: impl FnMut(&Rendered) -> std::io::Result<()>,
) -> Result<Ended> {
    let names = topic_names(kafka).await?;
    if !names.contains(&options.topic) {
        bail!(
            "topic {:?} does not exist on {}; the topics are: {}",
            options.topic,
            kafka.brokers,
            if names.is_empty() {
                "(none)".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    let last = match options.start {
        Start::Last(n) => Some(n.clamp(1, MAX_LAST)),
        Start::Beginning => None,
    };
    let (consumer, mut pending) = assign(kafka, options, last).await?;
    let mut emit = |record: &Rendered| -> Result<bool> {
        match sink(record) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e).context("writing a record"),
        }
    };
    // With `--last`, each partition's last N matching records before its end offset.
    let mut kept: HashMap<i32, VecDeque<Rendered>> = HashMap::new();
    // Records past their partition's end that arrive while others are still catching up:
    // printed after the kept ones, in arrival order (only when following).
    let mut early = Vec::new();
    let mut caught_up = false;
    loop {
        if !caught_up && pending.is_empty() {
            caught_up = true;
            let newest = last_across_partitions(std::mem::take(&mut kept), last);
            for record in newest.iter().chain(early.iter()) {
                if !emit(record)? {
                    return Ok(Ended::SinkClosed);
                }
            }
            early.clear();
            if !options.follow {
                return Ok(Ended::AtEnd);
            }
        }
        let received = tokio::select! {
            _ = stop.cancelled() => return Ok(Ended::Stopped),
            m = tokio::time::timeout(SILENCE_LIMIT, consumer.recv()) => m,
        };
        let message = match received {
            Err(_) if caught_up => continue,
            Err(_) => bail!(
                "no records from {} for {SILENCE_LIMIT:?} with partitions {:?} of {} not read to \
                 their end: is the broker up?",
                kafka.brokers,
                pending.keys().collect::<Vec<_>>(),
                options.topic
            ),
            Ok(Err(KafkaError::PartitionEOF(partition))) => {
                pending.remove(&partition);
                continue;
            }
            Ok(Err(e)) => {
                tracing::debug!("tail {}: {e}", options.topic);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Ok(m)) => m,
        };
        let (partition, offset) = (message.partition(), message.offset());
        let matches = match &options.key {
            None => true,
            Some(k) => message.key() == Some(k.as_slice()),
        };
        let before_end = pending.get(&partition).is_some_and(|end| offset < *end);
        if before_end && offset + 1 >= pending[&partition] {
            pending.remove(&partition);
        }
        if !matches || (!before_end && !options.follow) {
            continue;
        }
        let record = render::message(&message);
        match (before_end, last) {
            (true, Some(n)) => {
                let kept = kept.entry(partition).or_default();
                kept.push_back(record);
                if kept.len() > n {
                    kept.pop_front();
                }
            }
            (false, _) if !caught_up => early.push(record),
            _ => {
                if !emit(&record)? {
                    return Ok(Ended::SinkClosed);
                }
            }
        }
    }
}

/// The newest `last` records of all partitions, oldest first (by timestamp, then partition and
/// offset); all of them when `last` is `None`.
fn last_across_partitions(
    kept: HashMap<i32, VecDeque<Rendered>>,
    last: Option<usize>,
) -> Vec<Rendered> {
    let mut all: Vec<Rendered> = kept.into_values().flatten().collect();
    all.sort_by_key(|r| (r.millis, r.partition, r.offset));
    if let Some(n) = last {
        let cut = all.len().saturating_sub(n);
        all.drain(..cut);
    }
    all
}

/// A consumer assigned to every partition of the topic at its start offset, and each partition's
/// end offset seen now (partitions with nothing to read before it are left out).
async fn assign(
    kafka: &Kafka,
    options: &TailOptions,
    last: Option<usize>,
) -> Result<(StreamConsumer, HashMap<i32, i64>)> {
    let consumer: StreamConsumer = kafka
        .consumer_config(
            "churn-tail",
            &[
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "true"),
                // A start offset already deleted by retention: the oldest record left.
                ("auto.offset.reset", "earliest"),
            ],
        )
        .create()
        .context("creating the Kafka consumer")?;
    let (kafka_owned, topic) = (kafka.clone(), options.topic.clone());
    let watermarks = blocking(move || {
        let probe = super::probe(&kafka_owned, "churn-tail")?;
        let count = crate::kafka::partition_count(&probe, &topic, LOOKUP_TIMEOUT)
            .with_context(|| format!("reading the partitions of {topic}"))?;
        (0..count)
            .map(|p| {
                probe
                    .fetch_watermarks(&topic, p, LOOKUP_TIMEOUT)
                    .map(|(low, high)| (p, low, high))
                    .with_context(|| format!("reading the offsets of {topic} [{p}]"))
            })
            .collect::<Result<Vec<_>>>()
    })
    .await?;
    let mut assignment = TopicPartitionList::new();
    let mut pending = HashMap::new();
    for (partition, low, high) in watermarks {
        // With a key, the last N of that key can be anywhere: read the whole partition.
        let start = match (last, &options.key) {
            (Some(n), None) => high.saturating_sub(n as i64).max(low),
            _ => low,
        };
        // From `high` itself, not `Offset::End`: a record written between reading the end
        // offsets and the assignment is shown, not skipped.
        let offset = Offset::Offset(start.min(high));
        assignment
            .add_partition_offset(&options.topic, partition, offset)
            .context("assigning a partition")?;
        if start < high {
            pending.insert(partition, high);
        }
    }
    consumer
        .assign(&assignment)
        .context("assigning the topic's partitions")?;
    Ok((consumer, pending))
}
