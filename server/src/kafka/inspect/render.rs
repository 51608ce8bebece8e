//! One record as a JSON object, whatever its bytes: text stays text, JSON values stay JSON,
//! anything else is base64 under a marker, so a line is always valid JSON. A JSON value is shown
//! as parsed: its keys sorted, a repeated key once (its last value), so a `duplicate field` dead
//! letter shows the reason, not the repeat.
//!
//! ```json
//! {"topic":"costumerchurn-dlq","partition":0,"offset":7,"timestamp":"2026-01-02T03:04:05.678Z",
//!  "key":"r-17","headers":{"dlq.reason":"Age: must be ..."},"value":{"Age":-5},
//!  "dead_letter":{"reason":"Age: must be ...","errors":[...],"source":"costumerchurn-0-12"}}
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};

use base64::Engine;
use rdkafka::message::Headers;
use rdkafka::{Message, Timestamp};
use serde_json::{json, Map, Value};

/// Bytes as text when they are UTF-8, else `{"base64": "..."}`.
pub fn bytes(data: &[u8]) -> Value {
    match std::str::from_utf8(data) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(data) }),
    }
}

/// A message value: the JSON it holds when it is JSON, else as `bytes`. serde_json refuses
/// nesting deeper than 128, so a hostile value becomes a string, never a stack overflow.
pub fn value(data: &[u8]) -> Value {
    serde_json::from_slice(data).unwrap_or_else(|_| bytes(data))
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds); `None` outside chrono's range.
pub fn timestamp(millis: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The headers as an object; a name that repeats gets an array of its values in order. `None`
/// values are JSON null.
pub fn headers<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> Value {
    let mut object = Map::new();
    for (name, data) in pairs {
        let rendered = data.map_or(Value::Null, bytes);
        match object.get_mut(name) {
            None => {
                object.insert(name.to_owned(), rendered);
            }
            // Values are text, base64 objects or null, never arrays: an array is a repeat.
            Some(Value::Array(values)) => values.push(rendered),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, rendered]);
            }
        }
    }
    Value::Object(object)
}

/// The scorer's dead-letter headers (`dlq.reason`, `dlq.errors`, `dlq.source`,
/// `dlq.original_size`), readably: `errors` parsed, the size a number. `None` when the record
/// carries no `dlq.reason`.
pub fn dead_letter(headers: &Value) -> Option<Value> {
    let text = |name: &str| headers.get(name).and_then(Value::as_str);
    let reason = text("dlq.reason")?;
    let mut out = Map::new();
    out.insert("reason".into(), reason.into());
    if let Some(errors) = text("dlq.errors") {
        out.insert(
            "errors".into(),
            serde_json::from_str(errors).unwrap_or_else(|_| errors.into()),
        );
    }
    if let Some(source) = text("dlq.source") {
        out.insert("source".into(), source.into());
    }
    if let Some(size) = text("dlq.original_size") {
        out.insert(
            "original_size".into(),
            size.parse::<u64>()
                .map_or_else(|_| size.into(), Value::from),
        );
    }
    Some(Value::Object(out))
}

/// A consumed message, ready to print as one JSON line: fields in this order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rendered {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// RFC 3339; null when the record has none.
    pub timestamp: Option<String>,
    /// For ordering `--last` across partitions.
    #[serde(skip)]
    pub millis: i64,
    pub key: Value,
    pub headers: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<Value>,
    pub value: Value,
}

/// A consumed message, rendered (see the module's example).
pub fn message(m: &impl Message) -> Rendered {
    let millis = match m.timestamp() {
        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
        Timestamp::NotAvailable => None,
    };
    // rdkafka panics on a header name that is not UTF-8 (only a non-librdkafka client can write
    // one): such a record still prints, with the headers replaced by a note.
    let headers = catch_unwind(AssertUnwindSafe(|| {
        m.headers()
            .map(|h| headers(h.iter().map(|h| (h.key, h.value))))
    }))
    .unwrap_or_else(|_| Some(json!({ "error": "a header name is not UTF-8 text" })))
    .unwrap_or_else(|| Value::Object(Map::new()));
    Rendered {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp: millis.and_then(timestamp),
        millis: millis.unwrap_or(i64::MIN),
        key: m.key().map_or(Value::Null, bytes),
        dead_letter: dead_letter(&headers),
        headers,
        value: m.payload().map_or(Value::Null, value),
    }
}
