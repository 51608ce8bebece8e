//! Reply copies: a record whose `churn.reply-to` header names a reply topic gets a copy of its
//! prediction there, sent from the predictions producer's delivery report (`acks::AckCounter`) the
//! moment the prediction is acknowledged. Best-effort, on a producer of their own, outside the
//! offset accounting (the module doc of `scorer` says why).
//!
//! This is the scorer's side only. The web side, which names its reply topic in the header and
//! routes each reply back to the request waiting for it, is `crate::replies`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use model::record::truncate_utf8;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};

use super::LOG_TEXT_BYTES;
use crate::kafka::{Kafka, SkipLog, Topics, REPLY_TO_HEADER};

/// Most distinct reply topics one scorer sends to (one per web server instance in practice).
/// librdkafka keeps state and metadata requests per topic name, so records naming ever-new reply
/// topics must not grow the producer without bound; beyond it, new names get no reply.
const MAX_REPLY_TOPICS: usize = 1_000;

/// The reply topics this scorer has sent to, interned (one allocation per topic, not per record).
#[derive(Default)]
pub(super) struct ReplyTopics(HashSet<Arc<str>>);

impl ReplyTopics {
    pub(super) fn admit(&mut self, topic: &str) -> Option<Arc<str>> {
        if let Some(known) = self.0.get(topic) {
            return Some(known.clone());
        }
        if self.0.len() >= MAX_REPLY_TOPICS {
            tracing::debug!(
                limit = MAX_REPLY_TOPICS,
                "too many distinct reply topics; no reply for a new one"
            );
            return None;
        }
        let topic: Arc<str> = topic.into();
        self.0.insert(topic.clone());
        Some(topic)
    }
}

/// The reply topic a record asks for with its `churn.reply-to` header, if the scorer may write
/// there (`Topics::accepts_reply_topic`); anything else is ignored, and logged at debug level.
pub(super) fn reply_to<'m>(message: &'m BorrowedMessage<'_>, topics: &Topics) -> Option<&'m str> {
    let headers = message.headers()?;
    let value = headers.iter().find(|h| h.key == REPLY_TO_HEADER)?.value?;
    match std::str::from_utf8(value) {
        Ok(topic) if topics.accepts_reply_topic(topic) => Some(topic),
        _ => {
            tracing::debug!(reply_to = %truncate_utf8(&String::from_utf8_lossy(value), LOG_TEXT_BYTES),
                            "ignoring a reply-to that is not a reply topic; the record is scored as usual");
            None
        }
    }
}

/// Replies go out on their own producer: not idempotent, no linger, never creating topics.
pub(super) type ReplyProducer = ThreadedProducer<ReplyLog>;

/// Creates the scorer's reply producer.
pub(super) fn reply_producer(kafka: &Kafka) -> Result<ReplyProducer> {
    kafka
        .config(&[
            // A lost reply costs one person a timeout; the durable copy is on the predictions
            // topic. So no idempotence, and the leader's acknowledgement is enough.
            ("acks", "1"),
            // A person is waiting, and replies are few: send each at once.
            ("linger.ms", "0"),
            ("message.timeout.ms", "10000"),
            // A reply-to header naming a missing topic must not create it (librdkafka's
            // producers ask the broker to, by default).
            ("allow.auto.create.topics", "false"),
        ])
        .create_with_context(ReplyLog(Mutex::new(SkipLog::new(
            "a reply could not be delivered",
        ))))
        .context("creating the scorer's reply producer")
}

/// Logs undelivered replies, at most a line per interval (a hostile header could name a missing
/// topic on every record).
pub(super) struct ReplyLog(Mutex<SkipLog>);

impl ClientContext for ReplyLog {}

impl ProducerContext for ReplyLog {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, message)) = result {
            let why = format!("{} ({e})", message.topic());
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .skip(&why, message.key().unwrap_or_default());
        }
    }
}

/// A copy of an acknowledged prediction (same key and payload) to its reply topic. Runs on the
/// producer's delivery thread, so it never waits: a full queue drops the reply, as a late one would.
pub(super) fn send_reply(replies: &ReplyProducer, topic: &str, prediction: &BorrowedMessage<'_>) {
    let mut record = BaseRecord::<[u8], [u8]>::to(topic);
    if let Some(key) = prediction.key() {
        record = record.key(key);
    }
    if let Some(payload) = prediction.payload() {
        record = record.payload(payload);
    }
    if let Err((e, record)) = replies.send(record) {
        let why = format!("{topic} ({e})");
        replies
            .context()
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .skip(&why, record.key.unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_topics_are_interned_and_bounded() {
        let mut topics = ReplyTopics::default();
        let first = topics.admit("test3-replies-a").unwrap();
        assert!(
            Arc::ptr_eq(&first, &topics.admit("test3-replies-a").unwrap()),
            "one allocation per topic"
        );
        for i in 1..MAX_REPLY_TOPICS {
            assert!(topics.admit(&format!("test3-replies-{i}")).is_some());
        }
        assert!(topics.admit("test3-replies-one-too-many").is_none());
        assert!(
            topics.admit("test3-replies-a").is_some(),
            "known ones still get replies"
        );
    }
}
