//! The recall of earlier predictions when a partition is taken on (after a restart or a
//! rebalance): outcomes judge predictions made up to a day before, which lie before the
//! committed offset and are not re-read with the open windows.

use std::time::Duration;

use anyhow::Result;
use model::analytics::{WindowAggregator, REMEMBERED, REMEMBER_FOR_MS};
use model::Prediction;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::kafka::Kafka;

/// How long one question to the broker (the committed offset, an offset by time) may take.
const ASK_WAIT: Duration = Duration::from_secs(2);
/// How long a poll blocks before the stop is looked at again.
const POLL_STEP: Duration = Duration::from_millis(250);
/// How long without a record ends the recall.
const QUIET_END: Duration = Duration::from_secs(5);

/// After a restart or rebalance, remembers the partition's predictions from before the committed
/// offset (up to REMEMBER_FOR_MS and REMEMBERED records back), so outcomes arriving later still find the prediction they
/// judge.
///
/// Blocking, for at most `ASK_WAIT` per question to the broker after `stop`: a stop meanwhile
/// ends the recall with what was read so far.
pub(super) fn remember_earlier(
    kafka: &Kafka,
    group: &StreamConsumer,
    partition: i32,
    aggregator: &mut WindowAggregator,
    stop: &CancellationToken,
) -> Result<usize> {
    let topic = &kafka.topics.predictions;
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, partition);
    if stop.is_cancelled() {
        return Ok(0);
    }
    let committed = group.committed_offsets(wanted, ASK_WAIT)?;
    let Some(until) = committed
        .find_partition(topic, partition)
        .and_then(|e| e.offset().to_raw())
        .filter(|&o| o > 0)
    else {
        return Ok(0);
    };
    // Earliest: a start already deleted by retention reads from what is left.
    let reader: BaseConsumer = kafka
        .consumer_config(
            "churn-analytics-recall",
            &[
                ("enable.auto.commit", "false"),
                ("auto.offset.reset", "earliest"),
            ],
        )
        .create()?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut times = TopicPartitionList::new();
    times.add_partition_offset(topic, partition, Offset::Offset(now - REMEMBER_FOR_MS))?;
    if stop.is_cancelled() {
        return Ok(0);
    }
    let a_day_back = reader
        .offsets_for_times(times, ASK_WAIT)?
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
    let mut quiet = Duration::ZERO;
    while !stop.is_cancelled() {
        match reader.poll(POLL_STEP) {
            Some(Ok(m)) => {
                if m.offset() >= until {
                    break;
                }
                if let Some(prediction) = m
                    .payload()
                    .and_then(|p| serde_json::from_slice::<Prediction>(p).ok())
                {
                    aggregator.remember(m.timestamp().to_millis().unwrap_or(now), &prediction);
                    remembered += 1;
                }
                if m.offset() + 1 >= until {
                    break;
                }
            }
            Some(Err(e)) => return Err(e.into()),
            // Nothing more within QUIET_END: the partition has no more before `until`.
            None => {
                quiet += POLL_STEP;
                if quiet >= QUIET_END {
                    break;
                }
                continue;
            }
        }
        quiet = Duration::ZERO;
    }
    Ok(remembered)
}
