//! Consumer groups: state, members, and per partition the committed offset and the lag behind
//! the end of the partition.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{Context, Result};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::{blocking, probe, LOOKUP_TIMEOUT};
use crate::kafka::Kafka;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
}

/// A committed offset, and how far the partition's end is past it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// The partition's end offset now.
    pub end: i64,
    /// end − committed: records written that the group has not yet committed.
    pub lag: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    pub name: String,
    /// As the broker says: Stable, PreparingRebalance, CompletingRebalance, Empty, Dead.
    pub state: String,
    pub members: Vec<GroupMember>,
    pub offsets: Vec<GroupOffset>,
    /// Sum of `lag` over the partitions.
    pub total_lag: i64,
    /// Why the offsets could not be read, when they could not: one group that cannot be read
    /// (its coordinator away, say) leaves the others listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Text from librdkafka that rdkafka insists is UTF-8 (it panics otherwise): a note instead.
fn text(read: impl FnOnce() -> String) -> String {
    catch_unwind(AssertUnwindSafe(read)).unwrap_or_else(|_| "(not UTF-8 text)".to_owned())
}

/// Every consumer group the brokers know, sorted by name, with the committed offsets it has on
/// any topic's partitions.
pub async fn list_groups(kafka: &Kafka) -> Result<Vec<GroupInfo>> {
    let kafka = kafka.clone();
    blocking(move || {
        let consumer = probe(&kafka, "churn-inspect")?;
        let list = consumer
            .fetch_group_list(None, LOOKUP_TIMEOUT)
            .with_context(|| format!("listing the consumer groups on {}", kafka.brokers))?;
        let metadata = consumer
            .fetch_metadata(None, LOOKUP_TIMEOUT)
            .with_context(|| format!("listing the topics on {}", kafka.brokers))?;
        let mut every_partition = TopicPartitionList::new();
        for topic in metadata.topics() {
            for partition in topic.partitions() {
                every_partition.add_partition(topic.name(), partition.id());
            }
        }
        let mut ends: HashMap<(String, i32), i64> = HashMap::new();
        let mut groups = Vec::new();
        for group in list.groups() {
            let name = text(|| group.name().to_owned());
            let members = group
                .members()
                .iter()
                .map(|m| GroupMember {
                    member_id: text(|| m.id().to_owned()),
                    client_id: text(|| m.client_id().to_owned()),
                    host: text(|| m.client_host().to_owned()),
                })
                .collect();
            let read = read_offsets(&kafka, &consumer, &name, &every_partition, &mut ends);
            let (mut offsets, error) = match read {
                Ok(offsets) => (offsets, None),
                Err(e) => (Vec::new(), Some(format!("{e:#}"))),
            };
            offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            groups.push(GroupInfo {
                state: text(|| group.state().to_owned()),
                total_lag: offsets.iter().map(|o| o.lag).sum(),
                name,
                members,
                offsets,
                error,
            });
        }
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    })
    .await
}

/// The offsets group `name` committed on any of `partitions`, with each partition's end (read
/// once per partition into `ends`).
fn read_offsets(
    kafka: &Kafka,
    consumer: &impl Consumer,
    name: &str,
    partitions: &TopicPartitionList,
    ends: &mut HashMap<(String, i32), i64>,
) -> Result<Vec<GroupOffset>> {
    // A client of the group's name that only reads its offsets: it never joins.
    let reader = probe(kafka, name)?;
    let committed = reader
        .committed_offsets(partitions.clone(), LOOKUP_TIMEOUT)
        .with_context(|| format!("reading the offsets group {name} committed"))?;
    let mut offsets = Vec::new();
    for element in committed.elements() {
        let Offset::Offset(at) = element.offset() else {
            continue;
        };
        let key = (element.topic().to_owned(), element.partition());
        let end = match ends.get(&key) {
            Some(end) => *end,
            None => {
                let (_, high) = consumer
                    .fetch_watermarks(&key.0, key.1, LOOKUP_TIMEOUT)
                    .with_context(|| format!("reading the offsets of {} [{}]", key.0, key.1))?;
                ends.insert(key, high);
                high
            }
        };
        offsets.push(GroupOffset {
            topic: element.topic().to_owned(),
            partition: element.partition(),
            committed: at,
            end,
            lag: (end - at).max(0),
        });
    }
    Ok(offsets)
}
