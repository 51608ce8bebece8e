//! The input side of a batch: records copied out of the consumer's buffer, with their ids and
//! reply topics, so that they are scored on another thread while the loop fetches on.

use std::ops::Range;
use std::sync::Arc;

use model::record::MAX_RECORD_BYTES;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;

use super::reply_copies::{reply_to, ReplyTopics};
use super::DEAD_LETTER_COPY_BYTES;
use crate::kafka::Topics;

/// The record id: the message key, or topic-partition-offset for unkeyed messages (as the
/// original Python producer sends them), which is stable across re-deliveries.
pub fn record_id(message: &impl Message) -> String {
    match message.key().map(String::from_utf8_lossy) {
        Some(key) if !key.trim().is_empty() => key.into_owned(),
        _ => format!(
            "{}-{}-{}",
            message.topic(),
            message.partition(),
            message.offset()
        ),
    }
}

/// Input records copied out of the consumer's buffer, so that they are scored on another thread
/// while the loop fetches on: only what scoring, dead-lettering and offsets need. The payloads
/// share one buffer (an allocation per record cost more than the copy).
#[derive(Default)]
pub(super) struct Incoming {
    pub(super) bytes: Vec<u8>,
    pub(super) records: Vec<InputRecord>,
}

pub(super) struct InputRecord {
    pub(super) id: String,
    /// Where its payload is in `bytes`; `None` for a message without one. An oversized payload
    /// is copied only in part (`DEAD_LETTER_COPY_BYTES`): it is dead-lettered anyway.
    pub(super) payload: Option<Range<usize>>,
    /// The payload's whole size.
    pub(super) size: usize,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) created_ms: Option<i64>,
    /// The reply topic its prediction is also sent to, when it names an acceptable one.
    pub(super) reply_to: Option<Arc<str>>,
    /// Its key is not UTF-8: `id` is a lossy copy, which other keys may share, so it is no id.
    pub(super) key_not_text: bool,
}

impl Incoming {
    pub(super) fn push(
        &mut self,
        message: &BorrowedMessage<'_>,
        topics: &Topics,
        reply_topics: &mut ReplyTopics,
    ) {
        let size = message.payload_len();
        let payload = message.payload().map(|p| {
            let kept = if p.len() > MAX_RECORD_BYTES {
                &p[..DEAD_LETTER_COPY_BYTES]
            } else {
                p
            };
            self.bytes.extend_from_slice(kept);
            self.bytes.len() - kept.len()..self.bytes.len()
        });
        self.records.push(InputRecord {
            id: record_id(message),
            payload,
            size,
            partition: message.partition(),
            offset: message.offset(),
            created_ms: message.timestamp().to_millis(),
            reply_to: reply_to(message, topics).and_then(|topic| reply_topics.admit(topic)),
            key_not_text: message
                .key()
                .is_some_and(|key| std::str::from_utf8(key).is_err()),
        });
    }
}
