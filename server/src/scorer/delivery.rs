//! Delivery: a scored batch produced in its turn (fetch order), its acknowledgements awaited
//! (counted in `acks`), refusals retried or fallen back to dead letters, and the offsets that are
//! then safe to store.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use model::record::truncate_utf8;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::BaseRecord;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::acks::{AckingProducer, BatchAcks, Delivery};
use super::prepare::{source, Kind, Output, Prepared};
use super::{ScorerStats, LOG_TEXT_BYTES, STOP_DELIVERY_WAIT};
use crate::kafka::Topics;
use crate::metrics::ObserveSeconds;

/// Errors that no retry can mend: the record itself is unacceptable to the broker.
fn is_permanent(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(
            MessageSizeTooLarge
                | InvalidMessageSize
                | MessageBatchTooLarge
                | InvalidRecord
                | InvalidMessage
                | InvalidTopic
                | BadMessage
        )
    )
}

/// A batch after delivery: which records (by index) could not be delivered before shutdown.
pub(super) struct Delivered {
    positions: Vec<(i32, i64)>,
    undelivered: Vec<usize>,
    /// Why the scorer cannot go on, when the producer says so.
    pub(super) fatal: Option<String>,
}

impl Delivered {
    /// How many of the batch's records the broker did not acknowledge (at the stop).
    pub(super) fn unconfirmed(&self) -> usize {
        self.undelivered.len()
    }

    /// Per partition, the last offset before its first undelivered record. A partition with an
    /// undelivered record joins `blocked`, and a blocked partition (an earlier batch left a record
    /// undelivered) stores nothing more: that record is re-read after a restart.
    pub(super) fn safe_offsets(&self, blocked: &mut HashSet<i32>) -> HashMap<i32, i64> {
        let mut first_failed: HashMap<i32, i64> = HashMap::new();
        for &i in &self.undelivered {
            let (partition, offset) = self.positions[i];
            let entry = first_failed.entry(partition).or_insert(i64::MAX);
            *entry = (*entry).min(offset);
        }
        let mut safe: HashMap<i32, i64> = HashMap::new();
        for &(partition, offset) in &self.positions {
            if blocked.contains(&partition)
                || first_failed.get(&partition).is_some_and(|&f| offset >= f)
            {
                continue;
            }
            let entry = safe.entry(partition).or_insert(offset);
            *entry = (*entry).max(offset);
        }
        blocked.extend(first_failed.into_keys());
        safe
    }
}

/// Produces a batch: its records are enqueued in order, once the previous batch has enqueued
/// its own (`turn`), so predictions keep the input's order per partition even though batches are
/// scored in parallel. Then the acknowledgements are awaited. A record the broker refuses for
/// good falls back to a dead letter (then to a cut one); other failures are retried with back-off
/// until acknowledged or the scorer stops.
pub(super) async fn deliver(
    mut batch: Prepared,
    producer: &AckingProducer,
    topics: &Topics,
    stats: &ScorerStats,
    shutdown: &CancellationToken,
    turn: oneshot::Receiver<()>,
    enqueued: oneshot::Sender<()>,
) -> Delivered {
    let _ = turn.await;
    let mut enqueued = Some(enqueued);
    let mut pending: Vec<usize> = (0..batch.outputs.len()).collect();
    let mut attempt = 0u32;
    while !pending.is_empty() {
        let acks = BatchAcks::new();
        let mut failed = Vec::new();
        for &i in &pending {
            if let Err(e) = enqueue(
                producer,
                topics,
                &batch.outputs[i],
                &batch.bytes,
                &acks,
                i,
                shutdown,
            )
            .await
            {
                failed.push((i, e));
            }
        }
        if let Some(enqueued) = enqueued.take() {
            let _ = enqueued.send(());
        }
        let acknowledged = tokio::select! {
            refused = acks.wait_after_enqueueing() => Some(refused),
            _ = stopped_for(shutdown, STOP_DELIVERY_WAIT) => None,
        };
        let Some(refused) = acknowledged else {
            // Which of them arrived is unknown: none counts, and all are re-read (never lost).
            // The scorer reports the total as it stops.
            tracing::debug!(
                records = pending.len(),
                "stopping with unacknowledged records; they will be re-read"
            );
            return Delivered {
                positions: batch.outputs.iter().map(|o| o.position).collect(),
                undelivered: pending,
                fatal: None,
            };
        };
        failed.extend(refused);
        failed.sort_unstable_by_key(|&(i, _)| i);
        // The idempotent producer cannot go on after a fatal error: the scorer must restart.
        if let Some((_, e)) = failed
            .iter()
            .find(|(_, e)| e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal))
        {
            let fatal = Some(format!(
                "the producer hit a fatal error, restart the scorer: {e}"
            ));
            return Delivered {
                positions: batch.outputs.iter().map(|o| o.position).collect(),
                undelivered: pending,
                fatal,
            };
        }
        let mut delivered = vec![true; batch.outputs.len()];
        let mut retry = Vec::new();
        let mut transient = 0;
        for (i, e) in &failed {
            delivered[*i] = false;
            stats.produce_errors.inc();
            if !is_permanent(e) {
                transient += 1;
                retry.push(*i);
            } else if batch.fall_back(*i, e, &topics.input).is_some() {
                // Sent again at once, as what it fell back to.
                retry.push(*i);
            } else {
                stats.dropped.inc();
                tracing::error!(source = %source(&topics.input, batch.outputs[*i].position), "the broker refused even an empty dead letter ({e}); the record is skipped");
            }
        }
        if let Some((i, e)) = failed.iter().find(|(_, e)| !is_permanent(e)) {
            tracing::warn!(records = transient, first_id = %truncate_utf8(&batch.outputs[*i].key, LOG_TEXT_BYTES),
                           "produce failed, will retry: {e}");
        }
        let acknowledged_ms = chrono::Utc::now().timestamp_millis();
        for &i in pending.iter().filter(|&&i| delivered[i]) {
            let out = &batch.outputs[i];
            if out.kind == Kind::Prediction {
                stats.scored.inc();
                if let Some(created) = out.created_ms {
                    stats
                        .end_to_end_seconds
                        .observe_seconds((acknowledged_ms - created) as f64 / 1000.0);
                }
            } else {
                stats.dead_lettered.inc();
            }
        }
        pending = retry;
        if transient > 0 {
            if shutdown.is_cancelled() {
                // Leave these offsets uncommitted: the next scorer re-reads them.
                tracing::debug!(
                    records = pending.len(),
                    "stopping with undelivered records; they will be re-read"
                );
                break;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(25)))).await;
        }
    }
    Delivered {
        positions: batch.outputs.iter().map(|o| o.position).collect(),
        undelivered: pending,
        fatal: None,
    }
}

/// Resolves `grace` after the stop was asked for.
async fn stopped_for(shutdown: &CancellationToken, grace: Duration) {
    let shutdown = shutdown.clone();
    shutdown.cancelled().await;
    tokio::time::sleep(grace).await;
}

/// Hands one record to the producer, waiting while its local queue is full (unless stopping).
async fn enqueue(
    producer: &AckingProducer,
    topics: &Topics,
    out: &Output,
    bytes: &[u8],
    acks: &Arc<BatchAcks>,
    index: usize,
    shutdown: &CancellationToken,
) -> Result<(), KafkaError> {
    acks.outstanding.fetch_add(1, Ordering::AcqRel);
    let topic = if out.kind == Kind::Prediction {
        &topics.predictions
    } else {
        &topics.dead_letter
    };
    let reply_to = if out.kind == Kind::Prediction {
        out.reply_to.clone()
    } else {
        None
    };
    let mut record = BaseRecord::with_opaque_to(
        topic,
        Box::new(Delivery {
            acks: acks.clone(),
            index,
            reply_to,
        }),
    )
    .key(out.key.as_str())
    .payload(&bytes[out.payload.clone()]);
    if let Some(headers) = &out.headers {
        record = record.headers(headers.clone());
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                if !shutdown.is_cancelled() =>
            {
                record = returned;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((e, _)) => {
                acks.settle_one();
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use model::record::MAX_KEY_BYTES;

    use super::super::DEAD_LETTER_COPY_BYTES;
    use super::*;

    #[test]
    fn offsets_are_stored_up_to_the_first_undelivered_record_of_each_partition() {
        // Partition 0: offsets 10..=13, 12 undelivered. Partition 1: 5..=6, all delivered.
        // Partition 2: its only record undelivered. Partition 3: blocked by an earlier batch.
        let delivered = Delivered {
            positions: vec![
                (0, 10),
                (1, 5),
                (0, 11),
                (0, 12),
                (2, 7),
                (1, 6),
                (0, 13),
                (3, 1),
            ],
            undelivered: vec![3, 4],
            fatal: None,
        };
        let mut blocked = HashSet::from([3]);
        let safe = delivered.safe_offsets(&mut blocked);
        assert_eq!(safe.get(&0), Some(&11));
        assert_eq!(safe.get(&1), Some(&6));
        assert_eq!(safe.get(&2), None);
        assert_eq!(
            safe.get(&3),
            None,
            "an earlier batch left a record of partition 3 undelivered"
        );
        assert_eq!(
            blocked,
            HashSet::from([0, 2, 3]),
            "later batches store nothing of 0 and 2 either"
        );
    }

    fn prepared(input: &[u8]) -> Prepared {
        Prepared {
            input: input.to_vec(),
            bytes: b"{prediction}".to_vec(),
            outputs: vec![Output {
                kind: Kind::Prediction,
                key: "k".repeat(MAX_KEY_BYTES + 10),
                payload: 0..12,
                headers: None,
                created_ms: None,
                input: Some(0..input.len()),
                input_size: input.len(),
                position: (2, 40),
                reply_to: None,
            }],
        }
    }

    fn header(out: &Output, key: &str) -> Option<String> {
        use rdkafka::message::Headers;
        let headers = out.headers.as_ref()?;
        headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn a_record_the_broker_refuses_for_good_falls_back_to_a_dead_letter_then_a_cut_one_then_gives_up(
    ) {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(is_permanent(&too_large));
        assert!(!is_permanent(&KafkaError::MessageProduction(
            RDKafkaErrorCode::QueueFull
        )));
        assert!(!is_permanent(&KafkaError::MessageProduction(
            RDKafkaErrorCode::BrokerTransportFailure
        )));

        let mut small = prepared(b"{\"Names\":\"x\"}");
        small.fall_back(0, &too_large, "in").unwrap();
        let out = &small.outputs[0];
        assert_eq!(out.kind, Kind::DeadLetter);
        assert_eq!(
            &small.bytes[out.payload.clone()],
            b"{\"Names\":\"x\"}",
            "the original record"
        );
        assert!(out.key.len() <= MAX_KEY_BYTES, "a key within the limit");
        assert!(header(out, "dlq.reason")
            .unwrap()
            .contains("refused this record's prediction"));
        assert_eq!(header(out, "dlq.source").unwrap(), "in-2-40");
        assert_eq!(header(out, "dlq.original_size"), None);
        small.fall_back(0, &too_large, "in").unwrap();
        let out = &small.outputs[0];
        assert_eq!(
            (out.kind, out.payload.len()),
            (Kind::TruncatedDeadLetter, 0),
            "a small record's whole copy refused: an empty one next"
        );
        assert_eq!(header(out, "dlq.original_size").unwrap(), "13");
        assert!(small.fall_back(0, &too_large, "in").is_none());

        let big_input = vec![b'x'; DEAD_LETTER_COPY_BYTES * 2];
        let mut big = prepared(&big_input);
        big.fall_back(0, &too_large, "in").unwrap();
        let out = &big.outputs[0];
        assert_eq!(out.kind, Kind::TruncatedDeadLetter);
        assert_eq!(out.payload.len(), DEAD_LETTER_COPY_BYTES);
        assert_eq!(
            header(out, "dlq.original_size").unwrap(),
            (DEAD_LETTER_COPY_BYTES * 2).to_string()
        );
        big.fall_back(0, &too_large, "in").unwrap();
        assert!(
            big.outputs[0].payload.is_empty(),
            "then an empty copy with the reason"
        );
        assert!(
            big.fall_back(0, &too_large, "in").is_none(),
            "then nothing more to try"
        );
    }
}
