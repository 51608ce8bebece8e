//! Readers that follow a topic: a group-less consumer kept assigned to all of a topic's
//! partitions (those added later too), and the loop that hands each payload on.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::skip_log::SkipLog;
use super::topics::partition_count;

/// Hands each payload of an assigned topic to `handle` until `shutdown`: [`tail_messages`] for
/// readers that need only the value (records without one are skipped).
pub async fn tail_payloads(
    consumer: &StreamConsumer,
    what: &str,
    shutdown: CancellationToken,
    mut handle: impl FnMut(&[u8]),
) {
    tail_messages(consumer, what, shutdown, |_, payload| {
        if let Some(payload) = payload {
            handle(payload)
        }
    })
    .await
}

/// Hands each message's key and value of an assigned topic to `handle` until `shutdown`.
/// Consumer errors (a broker away, say) are logged and waited out: librdkafka reconnects by
/// itself. A panic in `handle` is a bug, but it costs only its message: it is logged and the
/// reader goes on.
pub async fn tail_messages(
    consumer: &StreamConsumer,
    what: &str,
    shutdown: CancellationToken,
    mut handle: impl FnMut(Option<&[u8]>, Option<&[u8]>),
) {
    let mut panics = SkipLog::new(format!("{what}: a message handler panicked"));
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        match message {
            Ok(m) => {
                let (key, payload) = (rdkafka::Message::key(&m), rdkafka::Message::payload(&m));
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| handle(key, payload))) {
                    panics.skip(
                        &crate::supervisor::panic_message(&*panic),
                        payload.unwrap_or_default(),
                    );
                }
            }
            Err(e) => {
                tracing::debug!("{what}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// How often an assigned reader looks for partitions added to its topic.
pub const PARTITION_CHECK_EVERY: Duration = Duration::from_secs(30);
/// How often it looks while the topic has not been found at all (not created yet, or the
/// broker not reachable).
const TOPIC_CHECK_EVERY: Duration = Duration::from_secs(2);

/// The partitions to start reading when the broker reports `reported` and `known` are read: the
/// added ones. A topic never loses partitions, so a smaller number (stale metadata) adds none.
pub(super) fn added_partitions(known: i32, reported: i32) -> Range<i32> {
    known..reported.max(known)
}

/// Keeps a group-less consumer assigned to every partition of `topic`: those the broker's
/// metadata lists, and any added later (checked every PARTITION_CHECK_EVERY), each read from
/// `start`. Runs until `shutdown`, next to the loop that reads the consumer.
pub async fn follow_partitions(
    consumer: Arc<StreamConsumer>,
    topic: String,
    start: Offset,
    shutdown: CancellationToken,
) {
    let mut known = 0;
    loop {
        let (probe, name) = (consumer.clone(), topic.clone());
        let probe = tokio::task::spawn_blocking(move || {
            partition_count(&*probe, &name, Duration::from_secs(10))
        });
        // With the broker away the probe blocks for its 10 s: the stop does not wait for it
        // (serve's dashboard stats reader overran the 7 s stop grace so).
        let Some(reported) = shutdown.run_until_cancelled(probe).await else {
            break;
        };
        match reported {
            Ok(Ok(reported)) => {
                let added = added_partitions(known, reported);
                if !added.is_empty() {
                    match assign_more(&consumer, &topic, added.clone(), start) {
                        Ok(()) => {
                            tracing::info!(topic, partitions = ?added, "reading partitions");
                            known = added.end;
                        }
                        Err(e) => tracing::warn!(topic, "could not read partitions {added:?}: {e}"),
                    }
                }
            }
            Ok(Err(e)) => tracing::debug!(topic, "reading the partition count: {e}"),
            Err(e) => tracing::warn!(topic, "partition check failed: {e}"),
        }
        let wait = if known == 0 {
            TOPIC_CHECK_EVERY
        } else {
            PARTITION_CHECK_EVERY
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn assign_more(
    consumer: &StreamConsumer,
    topic: &str,
    partitions: Range<i32>,
    start: Offset,
) -> KafkaResult<()> {
    let mut more = TopicPartitionList::new();
    for partition in partitions {
        more.add_partition_offset(topic, partition, start)?;
    }
    consumer.incremental_assign(&more)
}
