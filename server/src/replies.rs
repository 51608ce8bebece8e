//! Reply routing: a web submission is published to the input topic and its prediction routed
//! back to the request waiting for it.
//!
//! Each web server instance has its own reply topic, `<predictions>-replies-<instance id>` (one
//! partition, created at start, replies kept an hour), and names it in the header
//! `churn.reply-to` of every record it submits; the scorer sends a copy of the prediction there.
//! The instance reads only that topic (assigned, from its end as of the start), so with any number
//! of instances behind a load balancer each one reads the replies meant for it and no other's. A
//! reply is matched to its waiting request by record id through a bounded map of pending requests;
//! two instances given the same id would both read one topic, each ignoring the other's replies.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use app::PredictError;
use model::{Customer, Prediction};
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::kafka::{is_legal_topic, tail_payloads, Kafka, REPLY_TO_HEADER};
use crate::supervisor::Supervisor;

/// Longest instance id: its reply topic's name must stay within Kafka's 249 bytes.
pub const MAX_INSTANCE_ID_BYTES: usize = 128;

/// An instance id as given on the command line: topic characters only, so that it names a topic.
pub fn parse_instance_id(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > MAX_INSTANCE_ID_BYTES || !is_legal_topic(text) {
        return Err(format!(
            "must be 1 to {MAX_INSTANCE_ID_BYTES} of the characters a-z A-Z 0-9 . _ -"
        ));
    }
    Ok(text.to_owned())
}

/// The instance id when none is given: this host's name and `suffix` (the listening port), with
/// anything a topic name may not hold replaced by `-`. Stable across restarts, so a restarted
/// instance reuses its reply topic rather than leaving one behind.
pub fn default_instance_id(suffix: impl std::fmt::Display) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "web".into());
    let id: String = format!("{host}-{suffix}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    // Cut from the front: the suffix is what tells a host's instances apart.
    id[id.len().saturating_sub(MAX_INSTANCE_ID_BYTES)..].to_owned()
}

/// The requests waiting for their prediction, by record id; their number is a metric.
struct Pending {
    waiting: Mutex<HashMap<String, oneshot::Sender<Prediction>>>,
    gauge: Gauge,
}

impl Pending {
    /// Registers a request, unless `max` are already waiting.
    fn insert(&self, id: String, reply: oneshot::Sender<Prediction>, max: usize) -> bool {
        let mut waiting = self.waiting.lock().expect("pending map");
        if waiting.len() >= max {
            return false;
        }
        waiting.insert(id, reply);
        self.gauge.set(waiting.len() as i64);
        true
    }

    fn remove(&self, id: &str) -> Option<oneshot::Sender<Prediction>> {
        let mut waiting = self.waiting.lock().expect("pending map");
        let removed = waiting.remove(id);
        self.gauge.set(waiting.len() as i64);
        removed
    }

    fn len(&self) -> usize {
        self.waiting.lock().expect("pending map").len()
    }
}

/// Removes a request from the pending map however its wait ends (reply, timeout, or the
/// browser going away), so the map never grows without bound.
struct PendingGuard {
    pending: Arc<Pending>,
    id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending.remove(&self.id);
    }
}

/// This instance's request/reply over Kafka.
pub struct Replies {
    producer: FutureProducer,
    input_topic: String,
    reply_topic: String,
    /// `churn.reply-to: <reply_topic>`, put on every submitted record.
    reply_headers: OwnedHeaders,
    pending: Arc<Pending>,
    /// How long a submission waits for its prediction.
    timeout: Duration,
    /// Most submissions waiting at once; more are refused (429) instead of piling up.
    max_pending: usize,
}

impl Replies {
    /// Creates this instance's reply topic and starts reading it (before any submission can be
    /// sent); the reader runs under `tasks` until the stop. `pending_gauge` counts the waiting.
    pub async fn start(
        kafka: &Kafka,
        instance_id: &str,
        timeout: Duration,
        max_pending: usize,
        pending_gauge: Gauge,
        tasks: &mut Supervisor,
    ) -> Result<Replies> {
        let producer = kafka
            .config(&[
                // Not idempotent on purpose: a retried submission is merely scored twice, and an
                // idempotent producer must rebuild its state after timeouts while the broker is down.
                ("acks", "all"),
                ("linger.ms", "0"),
                // A person is waiting: give up on an unreachable broker within seconds.
                ("message.timeout.ms", "3000"),
            ])
            .create()
            .context("creating the web producer")?;
        let reply_topic = kafka.topics.reply_topic(instance_id);
        if !is_legal_topic(&reply_topic) {
            anyhow::bail!("the reply topic {reply_topic:?} is not a legal topic name: choose a shorter instance id");
        }
        kafka.ensure_reply_topic(&reply_topic).await?;
        let consumer = replies_consumer(kafka, &reply_topic).await?;
        tracing::info!(instance = %instance_id, reply_topic, "web server reading its replies");
        let reply_headers = OwnedHeaders::new().insert(Header {
            key: REPLY_TO_HEADER,
            value: Some(reply_topic.as_str()),
        });
        let pending = Arc::new(Pending {
            waiting: Mutex::default(),
            gauge: pending_gauge,
        });
        let reader = read_replies(consumer, pending.clone(), tasks.shutdown());
        tasks.spawn("replies reader", async move {
            reader.await;
            Ok(())
        });
        Ok(Replies {
            producer,
            input_topic: kafka.topics.input.clone(),
            reply_topic,
            reply_headers,
            pending,
            timeout,
            max_pending,
        })
    }

    /// The topic this instance's replies arrive on.
    pub fn reply_topic(&self) -> &str {
        &self.reply_topic
    }

    /// Submissions waiting for their prediction.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Publishes the customer and waits for its prediction.
    pub fn request(
        &self,
        customer: Customer,
    ) -> Pin<Box<dyn Future<Output = Result<Prediction, PredictError>> + Send>> {
        let id = format!("web-{:032x}", rand::random::<u128>());
        let (tx, rx) = oneshot::channel();
        if !self.pending.insert(id.clone(), tx, self.max_pending) {
            return Box::pin(async { Err(PredictError::Busy) });
        }
        let guard = PendingGuard {
            pending: self.pending.clone(),
            id: id.clone(),
        };
        let producer = self.producer.clone();
        let topic = self.input_topic.clone();
        let headers = self.reply_headers.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let _guard = guard;
            let payload = serde_json::to_vec(&customer.to_raw()).expect("records serialize");
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(&id)
                        .payload(&payload)
                        .headers(headers),
                    Duration::from_secs(1),
                )
                .await
                .map_err(|(e, _)| {
                    PredictError::BrokerUnavailable(crate::error_id::log("submitting a record", &e))
                })?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(prediction)) => Ok(prediction),
                _ => Err(PredictError::Timeout(timeout.as_secs().max(1))),
            }
        })
    }
}

/// Reads this instance's reply topic from its end as of now: the offset is taken here rather
/// than left to `Offset::End`, which librdkafka resolves later, after the first submissions'
/// replies might already be written.
async fn replies_consumer(kafka: &Kafka, topic: &str) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = kafka
        // The group id is required by librdkafka but unused: partitions are assigned, never subscribed.
        .consumer_config(
            "churn-web-replies",
            &[
                ("enable.auto.commit", "false"),
                // A person is waiting.
                ("fetch.wait.max.ms", Kafka::INTERACTIVE_FETCH_WAIT_MS),
            ],
        )
        .create()
        .context("creating the replies consumer")?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        // A topic just created may have no leader for a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let end = loop {
            match consumer.fetch_watermarks(&topic, 0, Duration::from_secs(5)) {
                Ok((_, high)) => break high,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(topic, "reply topic not ready yet: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading the end of the reply topic {topic}"))
                }
            }
        };
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Offset(end))?;
        consumer
            .assign(&assignment)
            .with_context(|| format!("reading {topic}"))?;
        Ok(consumer)
    })
    .await?
}

/// Hands each reply to the request waiting for it; replies nobody waits for (timed out, or
/// another instance's under the same id) are dropped.
async fn read_replies(
    consumer: StreamConsumer,
    pending: Arc<Pending>,
    shutdown: CancellationToken,
) {
    tail_payloads(&consumer, "replies consumer", shutdown, |payload| {
        let Ok(prediction) = serde_json::from_slice::<Prediction>(payload) else {
            return;
        };
        if let Some(waiting) = pending.remove(&prediction.id) {
            let _ = waiting.send(prediction.for_users());
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_name_topics() {
        assert_eq!(parse_instance_id("web-1.eu_a"), Ok("web-1.eu_a".into()));
        for bad in [
            "",
            "a/b",
            "a b",
            "..",
            "é",
            &"x".repeat(MAX_INSTANCE_ID_BYTES + 1),
        ] {
            assert!(parse_instance_id(bad).is_err(), "{bad:?}");
        }
        let id = default_instance_id("3000");
        assert!(
            id.ends_with("-3000") && parse_instance_id(&id).is_ok(),
            "{id}"
        );
        assert!(
            parse_instance_id(&default_instance_id(format!("{}:é/3000", "h".repeat(300)))).is_ok()
        );
    }

    #[test]
    fn the_pending_map_is_bounded_and_its_gauge_follows_it() {
        let gauge = Gauge::default();
        let pending = Arc::new(Pending {
            waiting: Mutex::default(),
            gauge: gauge.clone(),
        });
        let (a, _a) = oneshot::channel();
        let (b, _b) = oneshot::channel();
        assert!(pending.insert("a".into(), a, 1));
        assert!(!pending.insert("b".into(), b, 1), "full: refused");
        assert_eq!((pending.len(), gauge.get()), (1, 1));
        drop(PendingGuard {
            pending: pending.clone(),
            id: "a".into(),
        });
        assert_eq!((pending.len(), gauge.get()), (0, 0));
    }
}
