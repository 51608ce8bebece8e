//! Faults on the real broker and the real binaries: kill -9, Ctrl-C, a broker restart, a flood of
//! poison, rebalances, and `churn score` without a broker or through an outage. Nothing is lost;
//! every bad record is dead-lettered with a reason.

mod churn_score;
mod crashes;
mod poison;
mod rebalance;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use server::kafka::Kafka;
use server::replay::{replay, ReplayOptions};

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Every message on a topic (at least as many as its watermarks said it held).
fn read_all(kafka: &Kafka, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    let size = topic_size(kafka, topic) as usize;
    let messages = read_topic(kafka, topic, TIMEOUT, |m| m.len() >= size);
    assert!(messages.len() >= size, "read all of {topic}");
    messages
}

/// A group's committed offsets on `topic`, per partition (partitions without a commit are left out).
fn committed_offsets(kafka: &Kafka, group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = kafka
        .consumer_config(group, &[("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for p in 0..kafka.topics.partitions {
        partitions.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// `churn score` in the group `scorer-proc`, logging to `scorer.log` in the test's directory.
fn score_process(p: &Pipeline, model_path: &str) -> Running {
    crate::support::score_process(
        p,
        model_path,
        "scorer-proc",
        &p.dir.path().join("scorer.log"),
        "info",
    )
}

fn replay_in_background(
    p: &Pipeline,
    rows: usize,
    rate: f64,
    prefix: &str,
) -> tokio::task::JoinHandle<u64> {
    let options = ReplayOptions {
        file: p.csv(rows, 31),
        rate,
        repeat: false,
        limit: None,
        id_prefix: prefix.into(),
        show_progress: false,
    };
    let kafka = p.kafka.clone();
    tokio::spawn(async move {
        let (_never, no_stop) = stop_switch();
        replay(&kafka, &options, no_stop).await.unwrap().sent
    })
}

fn all_scored(p: &Pipeline, prefix: &str, rows: usize) -> (HashSet<String>, usize) {
    check_all_scored(p, prefix, rows).unwrap_or_else(|e| panic!("{e}"))
}

/// The predictions' ids and message count, or what is wrong with them.
fn check_all_scored(
    p: &Pipeline,
    prefix: &str,
    rows: usize,
) -> Result<(HashSet<String>, usize), String> {
    let messages = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        predictions_by_id(m).len() >= rows
    });
    let ids: HashSet<String> = predictions_by_id(&messages).into_keys().collect();
    let expected: HashSet<String> = (2..rows + 2)
        .map(|line| format!("{prefix}-0-{line}"))
        .collect();
    let missing: Vec<&String> = expected.difference(&ids).take(5).collect();
    if !missing.is_empty() {
        let count = expected.len() - expected.intersection(&ids).count();
        return Err(format!(
            "{count} of {rows} records have no prediction, e.g. {missing:?}"
        ));
    }
    if ids.len() != rows {
        return Err(format!(
            "{} predictions for {rows} records: some for records that were not sent",
            ids.len()
        ));
    }
    Ok((ids, messages.len()))
}
