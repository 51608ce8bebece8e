//! Scoring a batch into ready-to-send records: each record in isolation (a panic included), into
//! its prediction or a dead letter with its reason; and the fall-backs for a record the broker
//! refuses for good (a prediction into a dead letter, a dead letter into a cut one).

use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use model::record::{
    encode_json, score_with_shadow, truncate_utf8, Rejection, MAX_KEY_BYTES, MAX_RECORD_BYTES,
};
use model::{ChurnModel, Lineup};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};

use super::input::Incoming;
use super::{ScorerStats, DEAD_LETTER_COPY_BYTES, LOG_TEXT_BYTES};
use crate::metrics::ObserveSeconds;
use crate::supervisor::panic_message;

/// Longest reason header: reasons quote bad values, which are shortened, but a panic message may
/// quote anything.
const MAX_REASON_BYTES: usize = 2048;

/// Runs `work` for one record, isolated: whatever goes wrong, a panic included, becomes that
/// record's rejection, and `out` is left as it was.
fn isolated(
    out: &mut Vec<u8>,
    work: impl FnOnce(&mut Vec<u8>) -> Result<(), Rejection>,
) -> Result<(), Rejection> {
    let start = out.len();
    std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut *out)))
        .unwrap_or_else(|panic| {
            Err(Rejection::new(format!(
                "internal error while scoring this record (a bug: please report it with this record): {PANIC_MARK}{}",
                panic_message(panic.as_ref())
            )))
        })
        .inspect_err(|_| out.truncate(start))
}

/// Marks a rejection that comes from a caught panic.
const PANIC_MARK: &str = "panic: ";

/// Scores one record and appends its prediction's JSON to `out`, isolated.
fn score_into(
    id: &str,
    payload: Option<&[u8]>,
    lineup: &Lineup,
    now: &str,
    out: &mut Vec<u8>,
) -> Result<(), Rejection> {
    isolated(out, |out| {
        let shadow = lineup.shadow().map(|m| &**m);
        let prediction = score_with_shadow(id, payload, &lineup.champion, shadow, now)?;
        encode_json(&prediction, out).map_err(Rejection::new)
    })
}

/// One record as the scorer handles it, without Kafka: the prediction's JSON, or the reason the
/// record is dead-lettered. The benchmark times this; the tests drive it.
pub fn score_payload(
    id: &str,
    payload: Option<&[u8]>,
    model: &ChurnModel,
    now: &str,
) -> Result<Vec<u8>, String> {
    let mut json = Vec::new();
    score_into(id, payload, &Lineup::from(model.clone()), now, &mut json)
        .map(|()| json)
        .map_err(|r| r.reason)
}

/// What a produced record is, and so what to fall back to when the broker refuses it for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Prediction,
    /// A dead letter with the whole original record.
    DeadLetter,
    /// A dead letter with the first `DEAD_LETTER_COPY_BYTES` of it (or nothing, if even that was
    /// refused).
    TruncatedDeadLetter,
}

/// One scored record, ready to produce: a prediction, or a dead letter with its headers.
pub(super) struct Output {
    pub(super) kind: Kind,
    pub(super) key: String,
    /// Where its payload is in the batch's `bytes`.
    pub(super) payload: Range<usize>,
    pub(super) headers: Option<OwnedHeaders>,
    pub(super) created_ms: Option<i64>,
    /// Where the input record is in the batch's `input`, and how large it was.
    pub(super) input: Option<Range<usize>>,
    pub(super) input_size: usize,
    /// (partition, offset) of the input record.
    pub(super) position: (i32, i64),
    /// Where a copy of the prediction goes once it is acknowledged (not for dead letters).
    pub(super) reply_to: Option<Arc<str>>,
}

/// Dead-letter headers: the reason for people, field errors for programs, where it came from,
/// and the original size when the copy is cut.
fn dead_letter_headers(
    reason: &str,
    errors: Option<&str>,
    source: &str,
    original_size: Option<usize>,
) -> OwnedHeaders {
    let reason = truncate_utf8(reason, MAX_REASON_BYTES);
    let mut headers = OwnedHeaders::new()
        .insert(Header {
            key: "dlq.reason",
            value: Some(reason.as_ref()),
        })
        .insert(Header {
            key: "dlq.source",
            value: Some(source),
        });
    if let Some(errors) = errors {
        headers = headers.insert(Header {
            key: "dlq.errors",
            value: Some(errors),
        });
    }
    if let Some(size) = original_size {
        headers = headers.insert(Header {
            key: "dlq.original_size",
            value: Some(size.to_string().as_str()),
        });
    }
    headers
}

/// Scores a batch into ready-to-send records.
pub(super) fn prepare(
    batch: Incoming,
    lineup: &Lineup,
    input_topic: &str,
    stats: &ScorerStats,
) -> Prepared {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    stats.consumed.inc_by(batch.records.len() as u64);
    let started = std::time::Instant::now();
    // A prediction is about twice its input's size.
    let mut bytes = Vec::with_capacity(batch.bytes.len() * 2 + 1024);
    let mut outputs = Vec::with_capacity(batch.records.len());
    for record in batch.records {
        let input = record.payload.clone().map(|range| &batch.bytes[range]);
        let start = bytes.len();
        let position = (record.partition, record.offset);
        let scored = if record.size > MAX_RECORD_BYTES {
            Err(Rejection::new(format!(
                "record too large: {} bytes, at most {MAX_RECORD_BYTES}",
                record.size
            )))
        } else if record.key_not_text {
            Err(Rejection::new(
                "record key is not UTF-8 text: a record id must be",
            ))
        } else {
            score_into(&record.id, input, lineup, &now, &mut bytes)
        };
        let output = match scored {
            Ok(()) => Output {
                kind: Kind::Prediction,
                key: record.id,
                payload: start..bytes.len(),
                headers: None,
                created_ms: record.created_ms,
                input: record.payload,
                input_size: record.size,
                position,
                reply_to: record.reply_to,
            },
            Err(rejection) => {
                let source = source(input_topic, position);
                if rejection.reason.contains(PANIC_MARK) {
                    stats.record_panics.inc();
                    tracing::error!(id = %truncate_utf8(&record.id, LOG_TEXT_BYTES), %source,
                                    reason = %truncate_utf8(&rejection.reason, 4 * LOG_TEXT_BYTES),
                                    "a record made the scorer panic; dead-lettered, the stream goes on");
                } else {
                    tracing::debug!(id = %truncate_utf8(&record.id, LOG_TEXT_BYTES),
                                    reason = %truncate_utf8(&rejection.reason, LOG_TEXT_BYTES), "dead letter");
                }
                // The original bytes, untouched (cut when the record was oversized).
                let cut = (input.map_or(0, <[u8]>::len) < record.size).then_some(record.size);
                bytes.extend_from_slice(input.unwrap_or_default());
                Output {
                    kind: if cut.is_some() {
                        Kind::TruncatedDeadLetter
                    } else {
                        Kind::DeadLetter
                    },
                    key: truncate_utf8(&record.id, MAX_KEY_BYTES).into_owned(),
                    payload: start..bytes.len(),
                    headers: Some(dead_letter_headers(
                        &rejection.reason,
                        rejection.field_errors.as_deref(),
                        &source,
                        cut,
                    )),
                    created_ms: record.created_ms,
                    input: record.payload,
                    input_size: record.size,
                    position,
                    reply_to: None,
                }
            }
        };
        outputs.push(output);
    }
    // One clock reading per batch rather than two per record.
    stats.scoring_seconds.observe_each(
        started.elapsed().as_secs_f64() / outputs.len().max(1) as f64,
        outputs.len() as u64,
    );
    Prepared {
        input: batch.bytes,
        bytes,
        outputs,
    }
}

/// Where a record came from, as dead letters name it: topic-partition-offset.
pub(super) fn source(input_topic: &str, (partition, offset): (i32, i64)) -> String {
    format!("{input_topic}-{partition}-{offset}")
}

/// A scored batch and where its records came from.
pub(super) struct Prepared {
    /// The input records' bytes, for dead letters made after a refused delivery.
    pub(super) input: Vec<u8>,
    pub(super) bytes: Vec<u8>,
    pub(super) outputs: Vec<Output>,
}

impl Prepared {
    /// Turns a record the broker refused for good into the next fallback: a prediction into a
    /// dead letter, a dead letter into one with a cut copy. `None` when nothing is left to try.
    pub(super) fn fall_back(
        &mut self,
        i: usize,
        error: &KafkaError,
        input_topic: &str,
    ) -> Option<()> {
        let out = &self.outputs[i];
        let input = out
            .input
            .clone()
            .map(|r| &self.input[r])
            .unwrap_or_default();
        let (kind, copy) = match out.kind {
            Kind::Prediction | Kind::DeadLetter if input.len() > DEAD_LETTER_COPY_BYTES => {
                (Kind::TruncatedDeadLetter, &input[..DEAD_LETTER_COPY_BYTES])
            }
            Kind::Prediction => (Kind::DeadLetter, input),
            // A whole copy no longer than a cut one was refused: only an empty one can fit.
            Kind::DeadLetter => (Kind::TruncatedDeadLetter, &input[..0]),
            Kind::TruncatedDeadLetter if !out.payload.is_empty() => {
                (Kind::TruncatedDeadLetter, &input[..0])
            }
            Kind::TruncatedDeadLetter => return None,
        };
        let reason = match out.kind {
            Kind::Prediction => format!("the broker refused this record's prediction: {error}"),
            _ => format!("the broker refused this dead letter whole ({error}); the copy is cut"),
        };
        let cut = (copy.len() < out.input_size).then_some(out.input_size);
        let headers = dead_letter_headers(&reason, None, &source(input_topic, out.position), cut);
        let start = self.bytes.len();
        self.bytes.extend_from_slice(copy);
        let out = &mut self.outputs[i];
        out.kind = kind;
        out.key = truncate_utf8(&out.key, MAX_KEY_BYTES).into_owned();
        out.payload = start..self.bytes.len();
        out.headers = Some(headers);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_scoring_one_record_becomes_its_rejection_and_leaves_the_buffer_as_it_was() {
        let mut out = b"earlier".to_vec();
        let rejection = isolated(&mut out, |out| {
            out.extend_from_slice(b"half a prediction");
            let zip = "123€abcd";
            let _ = &zip[..5]; // what us_state once did
            Ok(())
        })
        .unwrap_err();
        assert!(
            rejection.reason.contains(PANIC_MARK),
            "{}",
            rejection.reason
        );
        assert!(
            rejection.reason.contains("char boundary"),
            "the panic's own message: {}",
            rejection.reason
        );
        assert_eq!(out, b"earlier");
        assert!(isolated(&mut out, |out| {
            out.push(b'!');
            Ok(())
        })
        .is_ok());
        assert_eq!(out, b"earlier!");
    }

    #[test]
    fn oversized_and_bad_records_are_dead_lettered_with_their_reason_and_good_ones_scored() {
        let model = model::train::train(
            &model::synth::generate_customers(&model::synth::GenerateOptions {
                rows: 200,
                seed: 1,
                messy_fraction: 0.0,
            }),
            &Default::default(),
            "t".into(),
            |_| {},
        )
        .unwrap();
        let good = br#"{"Names":"Ann","Age":42,"Total_Purchase":9000,"Account_Manager":1,"Years":5,
            "Num_Sites":9,"Onboard_date":"2012-01-01 10:00:00","Location":"1 Main St, AK 123\u20acabcd","Company":"y"}"#;
        let json = score_payload("a", Some(good), &model, "now").unwrap();
        let prediction: model::Prediction = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            prediction.segments.state, None,
            "the multi-byte ZIP that once panicked"
        );
        let reason = score_payload("b", Some(b"{not json"), &model, "now").unwrap_err();
        assert!(reason.contains("not a JSON customer record"), "{reason}");
    }
}
