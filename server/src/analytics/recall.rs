//! The recall of earlier predictions when a partition is taken on (after a restart or a
//! rebalance): outcomes judge predictions made up to a day before, which lie before the
//! committed offset and are not re-read with the open windows.

use std::time::Duration;

use anyhow::Result;
use model::analytics::{WindowAggregator, REMEMBERED, REMEMBER_FOR_MS};
use model::Prediction;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::kafka::Kafka;

/// After a restart or rebalance, remembers the partition's predictions from before the committed
/// offset (up to REMEMBER_FOR_MS and REMEMBERED records back), so outcomes arriving later still find the prediction they
/// judge.
pub(super) fn remember_earlier(
    kafka: &Kafka,
    group: &StreamConsumer,
    partition: i32,
    aggregator: &mut WindowAggregator,
) -> Result<usize> {
    let topic = &kafka.topics.predictions;
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, partition);
    let committed = group.committed_offsets(wanted, Duration::from_secs(5))?;
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
    let a_day_back = reader
        .offsets_for_times(times, Duration::from_secs(5))?
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
    loop {
        match reader.poll(Duration::from_secs(5)) {
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
            None => break,
        }
    }
    Ok(remembered)
}
