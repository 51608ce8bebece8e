//! The processor's state per partition it owns: taken on when its first message arrives (with
//! the earlier predictions recalled), dropped when a rebalance moves it away, and committed up to
//! the oldest window still open.

use std::collections::HashMap;

use model::analytics::{DriftReference, Source, WindowAggregator};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::recall::remember_earlier;
use crate::kafka::{Kafka, Topics};

pub(super) struct PartitionState {
    pub(super) aggregator: WindowAggregator,
    /// Per source (predictions, outcomes): the next offset after the last record read.
    pub(super) next_offsets: [Option<i64>; 2],
}

impl PartitionState {
    /// A partition just taken on: empty windows, and the predictions from before the committed
    /// offset remembered for the outcomes still to come.
    pub(super) fn take_on(
        kafka: &Kafka,
        consumer: &StreamConsumer,
        partition: i32,
        window_ms: i64,
        lateness_ms: i64,
        drift: Option<DriftReference>,
        stop: &CancellationToken,
    ) -> Self {
        let mut aggregator = WindowAggregator::new(window_ms, lateness_ms, partition);
        aggregator.set_drift_reference(drift);
        match tokio::task::block_in_place(|| {
            remember_earlier(kafka, consumer, partition, &mut aggregator, stop)
        }) {
            Ok(n) => tracing::debug!(
                partition,
                predictions = n,
                "remembered earlier predictions for outcomes"
            ),
            Err(e) => tracing::warn!(partition, "could not recall earlier predictions: {e:#}"),
        }
        PartitionState {
            aggregator,
            next_offsets: [None, None],
        }
    }
}

/// Forgets the partitions the consumer is no longer assigned (a rebalance moved them away).
pub(super) fn forget_unowned(
    consumer: &StreamConsumer,
    partitions: &mut HashMap<i32, PartitionState>,
) {
    if let Ok(assignment) = consumer.assignment() {
        let owned: Vec<i32> = assignment
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        partitions.retain(|p, _| owned.contains(p));
    }
}

/// Commits, per partition and source, the first offset not yet covered by a published window.
/// Only called with nothing left in the outbox.
pub(super) fn commit(
    consumer: &StreamConsumer,
    topics: &Topics,
    partitions: &HashMap<i32, PartitionState>,
) {
    let offsets = offsets_to_commit(topics, partitions);
    if offsets.count() > 0 {
        if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!("analytics commit: {e}");
        }
    }
}

/// Per partition and source, the first offset not yet covered by a published window.
pub(super) fn offsets_to_commit(
    topics: &Topics,
    partitions: &HashMap<i32, PartitionState>,
) -> TopicPartitionList {
    let mut offsets = TopicPartitionList::new();
    for (&partition, state) in partitions {
        for (source, topic) in [
            (Source::Predictions, &topics.predictions),
            (Source::Outcomes, &topics.labels),
        ] {
            if let Some(next) = state.next_offsets[source as usize] {
                let offset = state.aggregator.commit_offset(source).unwrap_or(next);
                let _ = offsets.add_partition_offset(topic, partition, Offset::Offset(offset));
            }
        }
    }
    offsets
}
