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
/// The most bytes of records held in memory until printed (`--last`, and records arriving while
/// other partitions catch up): 100,000 records of 1 MB would otherwise need 100 GB. Past it the
/// oldest are let go, and a warning says how many.
pub const MAX_HELD_BYTES: usize = 256 << 20;
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
    let mut kept = Kept::new(MAX_HELD_BYTES);
    // Records past their partition's end that arrive while others are still catching up:
    // printed after the kept ones, in arrival order (only when following).
    let mut early = Vec::new();
    let mut early_bytes = 0;
    let mut caught_up = false;
    loop {
        if !caught_up && pending.is_empty() {
            caught_up = true;
            if kept.dropped > 0 {
                tracing::warn!(
                    "--last: {} older records let go to stay within {} MiB held; the newest are printed",
                    kept.dropped,
                    MAX_HELD_BYTES >> 20
                );
            }
            let newest = last_across_partitions(std::mem::take(&mut kept).queues, last);
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
        let size = held_size(&message);
        let record = render::message(&message);
        match (before_end, last) {
            (true, Some(n)) => kept.push(record, size, n),
            (false, _) if !caught_up => {
                if early_bytes + size > MAX_HELD_BYTES {
                    bail!(
                        "more than {} MiB arrived while other partitions of {} were still being \
                         read to their end: tail with --from-beginning, or without --follow",
                        MAX_HELD_BYTES >> 20,
                        options.topic
                    );
                }
                early_bytes += size;
                early.push(record)
            }
            _ => {
                if !emit(&record)? {
                    return Ok(Ended::SinkClosed);
                }
            }
        }
    }
}

/// What a record costs while it is held: its bytes, and some for the rendering around them.
fn held_size(message: &impl Message) -> usize {
    use rdkafka::message::Headers;
    let headers: usize = message.headers().map_or(0, |h| {
        h.iter()
            .map(|header| header.key.len() + header.value.map_or(0, <[u8]>::len))
            .sum()
    });
    let bytes = message.payload().map_or(0, <[u8]>::len) + message.key().map_or(0, <[u8]>::len);
    // Base64 of non-text bytes is 4/3 the size; the JSON fields around them about 200 bytes.
    (bytes + headers) * 4 / 3 + 200
}

/// The records `--last` holds until every partition is read to its end: the last N per
/// partition, and at most `budget` bytes in all (the oldest, by timestamp, go first).
#[derive(Default)]
struct Kept {
    queues: HashMap<i32, VecDeque<Rendered>>,
    sizes: HashMap<i32, VecDeque<usize>>,
    bytes: usize,
    budget: usize,
    /// Records let go for the byte budget (not the ones beyond N).
    dropped: u64,
}

impl Kept {
    fn new(budget: usize) -> Self {
        Kept {
            budget,
            ..Default::default()
        }
    }

    fn push(&mut self, record: Rendered, size: usize, last: usize) {
        let partition = record.partition;
        self.queues.entry(partition).or_default().push_back(record);
        self.sizes.entry(partition).or_default().push_back(size);
        self.bytes += size;
        if self.queues[&partition].len() > last {
            self.pop_front(partition);
        }
        while self.bytes > self.budget {
            let oldest = self
                .queues
                .iter()
                .filter_map(|(p, q)| q.front().map(|r| ((r.millis, *p, r.offset), *p)))
                .min()
                .map(|(_, p)| p);
            let Some(oldest) = oldest else { break };
            self.pop_front(oldest);
            self.dropped += 1;
        }
    }

    fn pop_front(&mut self, partition: i32) {
        if let Some(q) = self.queues.get_mut(&partition) {
            q.pop_front();
        }
        if let Some(size) = self.sizes.get_mut(&partition).and_then(VecDeque::pop_front) {
            self.bytes -= size;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn rendered(partition: i32, offset: i64, millis: i64) -> Rendered {
        Rendered {
            topic: "t".into(),
            partition,
            offset,
            timestamp: None,
            millis,
            key: Value::Null,
            headers: Value::Null,
            dead_letter: None,
            value: Value::Null,
        }
    }

    #[test]
    fn last_keeps_n_per_partition_and_lets_the_oldest_go_past_the_byte_budget() {
        let mut kept = Kept::new(1000);
        for offset in 0..10 {
            kept.push(rendered(0, offset, offset * 10), 50, 4);
        }
        assert_eq!(kept.queues[&0].len(), 4);
        assert_eq!((kept.bytes, kept.dropped), (200, 0), "N is not the budget");
        // Huge records on another partition, newer than partition 0's: the oldest go first,
        // across partitions, until the held bytes fit.
        for offset in 0..3 {
            kept.push(rendered(1, offset, 1000 + offset), 400, 4);
        }
        assert!(kept.bytes <= 1000, "{}", kept.bytes);
        assert!(
            kept.queues[&0].is_empty(),
            "partition 0's records were the oldest"
        );
        assert_eq!(kept.queues[&1].len(), 2);
        assert_eq!(kept.dropped, 5);
        // One record larger than the whole budget is let go too, never held.
        kept.push(rendered(2, 0, 5000), 5000, 4);
        assert!(kept.bytes <= 1000);
    }
}
