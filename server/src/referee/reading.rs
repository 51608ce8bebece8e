//! What the referee reads: every partition of the predictions and labels topics, group-less,
//! from the time the duel began (so a restart rebuilds it), and partitions added later from
//! their beginning; and each message, into the pairing or skipped with a log line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use model::duel::pairing::{Pairing, Seen};
use model::message::outcome_label;
use model::Prediction;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::kafka::{on_own_thread, partition_count, Kafka, SkipLog};

/// Most records re-read per partition when a duel (re)starts: a duel of a busy stream can be
/// days long, and the pairing holds at most `PAIRING_RECORDS` anyway. The figures of a longer
/// duel restart from its newest records.
pub(super) const REREAD_PER_PARTITION: i64 = 200_000;
/// How long the questions to the broker that find the start offsets may take in all.
const ASK_WAIT: Duration = Duration::from_secs(15);
/// One question's own bound (a metadata request, the offsets for a time, the watermarks).
const QUESTION_WAIT: Duration = Duration::from_secs(5);

/// The consumer of both topics, and how many partitions of each it reads.
pub(super) struct Reader {
    pub(super) consumer: Arc<StreamConsumer>,
    topics: [(String, i32); 2],
    /// Partitions not yet read to the end they had when the reader opened: (topic, partition)
    /// → that end. While any is left the reader is catching up (`caught_up`).
    behind: HashMap<(String, i32), i64>,
}

/// Where to start in each partition of `topic`: the first record at or after `since_ms`, but no
/// more than REREAD_PER_PARTITION before the end; with the end. Blocking.
fn start_offsets(
    consumer: &StreamConsumer,
    topic: &str,
    since_ms: i64,
) -> Result<Vec<(i32, i64, i64)>> {
    let partitions = partition_count(consumer, topic, QUESTION_WAIT)?;
    let mut times = TopicPartitionList::new();
    for partition in 0..partitions {
        times.add_partition_offset(topic, partition, Offset::Offset(since_ms))?;
    }
    let found = if partitions > 0 {
        consumer.offsets_for_times(times, QUESTION_WAIT)?
    } else {
        TopicPartitionList::new()
    };
    (0..partitions)
        .map(|partition| {
            let (low, high) = consumer.fetch_watermarks(topic, partition, QUESTION_WAIT)?;
            // None (or End): nothing at or after the time yet, so from the end.
            let at_time = found
                .find_partition(topic, partition)
                .and_then(|e| e.offset().to_raw())
                .filter(|&o| o >= 0)
                .unwrap_or(high);
            let start = at_time.max(high - REREAD_PER_PARTITION).max(low);
            Ok((partition, start, high))
        })
        .collect()
}

impl Reader {
    /// A consumer of the predictions and labels topics from `since_ms`. Retries while the
    /// broker does not answer; None when stopped first.
    pub(super) async fn open(
        kafka: &Kafka,
        since_ms: i64,
        shutdown: &CancellationToken,
    ) -> Result<Option<Reader>> {
        let consumer: StreamConsumer = kafka
            .consumer_config(
                "churn-referee",
                &[
                    ("enable.auto.commit", "false"),
                    ("enable.partition.eof", "false"),
                    // A start deleted by retention meanwhile reads what is left.
                    ("auto.offset.reset", "earliest"),
                ],
            )
            .create()
            .context("creating the referee's consumer")?;
        let consumer = Arc::new(consumer);
        let names = [
            kafka.topics.predictions.clone(),
            kafka.topics.labels.clone(),
        ];
        loop {
            let asked = {
                let (consumer, names) = (consumer.clone(), names.clone());
                on_own_thread(
                    move || {
                        names
                            .iter()
                            .map(|topic| start_offsets(&consumer, topic, since_ms))
                            .collect::<Result<Vec<_>>>()
                    },
                    ASK_WAIT,
                )
            };
            let answer = tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                answer = asked => answer.unwrap_or_else(|| Err(anyhow!("no answer within {} s", ASK_WAIT.as_secs()))),
            };
            match answer {
                Ok(starts) => {
                    let mut assignment = TopicPartitionList::new();
                    let mut behind = HashMap::new();
                    for (topic, offsets) in names.iter().zip(&starts) {
                        for &(partition, offset, end) in offsets {
                            assignment.add_partition_offset(
                                topic,
                                partition,
                                Offset::Offset(offset),
                            )?;
                            if offset < end {
                                behind.insert((topic.clone(), partition), end);
                            }
                        }
                    }
                    consumer
                        .assign(&assignment)
                        .context("reading the predictions and labels")?;
                    let topics = [
                        (names[0].clone(), starts[0].len() as i32),
                        (names[1].clone(), starts[1].len() as i32),
                    ];
                    tracing::debug!(?topics, since_ms, "referee reading");
                    return Ok(Some(Reader {
                        consumer,
                        topics,
                        behind,
                    }));
                }
                Err(e) => {
                    tracing::warn!("referee: finding where the duel began in the topics, retrying in 5 s: {e:#}");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        }
    }

    /// Notes a record read: its partition may now be read to the end it had at the start.
    pub(super) fn note(&mut self, topic: &str, partition: i32, offset: i64) {
        if self.behind.is_empty() {
            return;
        }
        let key = (topic.to_owned(), partition);
        if self.behind.get(&key).is_some_and(|&end| offset + 1 >= end) {
            self.behind.remove(&key);
        }
    }

    /// Whether everything the topics held when the reader opened has been read. A restarted
    /// referee re-reads its duel; until it has, its figures are a prefix of that duel in
    /// another order, and a verdict taken from them would be one more look at the same data
    /// (which the confidence sequence's error rate does not allow for).
    pub(super) fn caught_up(&self) -> bool {
        self.behind.is_empty()
    }

    /// Starts reading partitions added since (from their beginning: all they hold is new).
    pub(super) async fn read_added(&mut self, shutdown: &CancellationToken) {
        for (topic, known) in &mut self.topics {
            let (consumer, name) = (self.consumer.clone(), topic.clone());
            let asked = on_own_thread(
                move || partition_count(&*consumer, &name, QUESTION_WAIT),
                QUESTION_WAIT + Duration::from_secs(1),
            );
            let reported = tokio::select! {
                _ = shutdown.cancelled() => return,
                reported = asked => reported,
            };
            let Some(Ok(reported)) = reported else {
                continue;
            };
            if reported <= *known {
                continue;
            }
            let mut more = TopicPartitionList::new();
            for partition in *known..reported {
                if more
                    .add_partition_offset(topic, partition, Offset::Beginning)
                    .is_err()
                {
                    return;
                }
            }
            match self.consumer.incremental_assign(&more) {
                Ok(()) => {
                    tracing::info!(topic, partitions = ?(*known..reported), "referee reading added partitions");
                    *known = reported;
                }
                Err(e) => tracing::warn!(topic, "referee: could not read added partitions: {e}"),
            }
        }
    }

    /// Closes the consumer without letting a silent broker hold up the stop.
    pub(super) async fn close(self) {
        crate::kafka::close_within(self.consumer, "referee consumer").await;
    }
}

/// Why a message was skipped.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("not a prediction: {0}")]
    Prediction(serde_json::Error),
    #[error("a labels message needs the record id as its key and a Churn value of 0 or 1")]
    Outcome,
    #[error("{0}")]
    Refused(model::duel::DuelError),
}

/// Messages the referee skipped, logged without flooding.
pub(super) struct Skipped(SkipLog);

impl Default for Skipped {
    fn default() -> Self {
        Skipped(SkipLog::new("referee: skipping a message"))
    }
}

impl Skipped {
    pub(super) fn total(&self) -> u64 {
        self.0.total
    }
}

/// One message from `topic` into the pairing; a message that cannot be read costs only itself.
pub(super) fn take(
    pairing: &mut Pairing,
    predictions_topic: &str,
    topic: &str,
    timestamp_ms: i64,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    skipped: &mut Skipped,
) {
    let payload = payload.unwrap_or_default();
    let seen = if topic == predictions_topic {
        serde_json::from_slice::<Prediction>(payload)
            .map_err(Unusable::Prediction)
            .map(|p| pairing.prediction(timestamp_ms, &p))
    } else {
        // The id as the scorer reads an input key (and the analytics an outcome's).
        match (key.map(String::from_utf8_lossy), outcome_label(payload)) {
            (Some(id), Some(churned)) => Ok(pairing.outcome(timestamp_ms, &id, churned)),
            _ => Err(Unusable::Outcome),
        }
    };
    let unusable = match seen {
        Ok(Seen::Refused(e)) => Unusable::Refused(e),
        Ok(_) => return,
        Err(e) => e,
    };
    skipped.0.skip(&unusable, payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::duel::pairing::PairingBounds;

    fn prediction(id: &str, p: f64, label: Option<bool>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": id, "name": "n", "churn_probability": p, "churn": false, "threshold": 0.5,
            "model_version": "m-a", "scored_at": "2026-01-01T00:00:00Z", "top_factors": [],
            "actual_churn": label,
            "challenger": {"model_version": "m-b", "churn_probability": 0.5},
        }))
        .unwrap()
    }

    #[test]
    fn a_malformed_message_costs_only_itself() {
        let mut pairing =
            Pairing::new("m-a", "m-b", Default::default(), PairingBounds::default()).unwrap();
        let mut skipped = Skipped::default();
        let mut take = |topic: &str, key: Option<&[u8]>, payload: Option<&[u8]>| {
            take(&mut pairing, "preds", topic, 0, key, payload, &mut skipped)
        };
        take(
            "preds",
            Some(b"r1"),
            Some(&prediction("r1", 0.3, Some(true))),
        );
        // Not JSON, the wrong shape, no value, a probability out of range.
        take("preds", Some(b"x"), Some(b"\xff\x00garbage"));
        take("preds", Some(b"x"), Some(b"{\"id\": 1}"));
        take("preds", Some(b"x"), None);
        take(
            "preds",
            Some(b"r2"),
            Some(&prediction("r2", 1.5, Some(true))),
        );
        // Labels without a key, without a value, without a Churn, with a bad one.
        take("labels", None, Some(b"{\"Churn\": 1}"));
        take("labels", Some(b"r3"), None);
        take("labels", Some(b"r3"), Some(b"{\"Names\": \"x\"}"));
        take("labels", Some(b"r3"), Some(b"{\"Churn\": 7}"));
        // Then good ones still count.
        take("labels", Some(b"r3"), Some(b"{\"Churn\": 0}"));
        take("preds", Some(b"r3"), Some(&prediction("r3", 0.1, None)));
        assert_eq!(skipped.total(), 8);
        assert_eq!(pairing.duel().records(), 2);
    }
}
