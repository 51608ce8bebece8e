//! One input record's whole path, without Kafka: bytes -> JSON -> validated customer -> score ->
//! explained prediction, or the reason it is rejected. The scorer runs this for every record
//! (isolated, so that not even a panic here stops the stream), the tests and the fuzz target
//! drive it directly.

use serde::Serialize;

use crate::message::{Prediction, ShadowScore};
use crate::model_file::ChurnModel;
use crate::validate::validate;

/// Largest input record (message value) the scorer reads, in bytes. A customer record is about
/// 250 bytes; the web API refuses bodies over 64 KiB too. Larger records are dead-lettered as a
/// truncated copy: their dead letter must still fit the broker's message limit (1 MB by default).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Longest record id (message key), in bytes. The id is the key of the prediction and the join
/// key of outcomes, and it appears in logs; real ids are tens of bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Why a record gets no prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// For people: every reason at once, e.g. `Age: must be between 16 and 110 years, got -5`.
    pub reason: String,
    /// For programs: one entry per bad field, as JSON, when the record was a readable object.
    pub field_errors: Option<String>,
}

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Self {
        Rejection {
            reason: reason.into(),
            field_errors: None,
        }
    }
}

/// Scores one record: `id` is its record id (the message key, or topic-partition-offset for an
/// unkeyed message), `scored_at` an RFC 3339 time.
pub fn score_record(
    id: &str,
    payload: Option<&[u8]>,
    model: &ChurnModel,
    scored_at: &str,
) -> Result<Prediction, Rejection> {
    score_with_shadow(id, payload, model, None, scored_at)
}

/// Scores one record with the champion, as [`score_record`], and with `shadow` (the
/// challenger) too when given: its probability goes into `Prediction::challenger`. The shadow
/// never changes the champion's prediction: a shadow score that is not a finite probability,
/// or a panic while computing it, leaves the field empty.
pub fn score_with_shadow(
    id: &str,
    payload: Option<&[u8]>,
    model: &ChurnModel,
    shadow: Option<&ChurnModel>,
    scored_at: &str,
) -> Result<Prediction, Rejection> {
    if id.len() > MAX_KEY_BYTES {
        return Err(Rejection::new(format!(
            "record key too long: {} bytes, at most {MAX_KEY_BYTES}",
            id.len()
        )));
    }
    let payload = match payload {
        Some(p) if !p.is_empty() => p,
        _ => {
            return Err(Rejection::new(
                "empty message: expected a JSON customer record",
            ))
        }
    };
    if payload.len() > MAX_RECORD_BYTES {
        return Err(Rejection::new(format!(
            "record too large: {} bytes, at most {MAX_RECORD_BYTES}",
            payload.len()
        )));
    }
    let raw = serde_json::from_slice(payload)
        .map_err(|e| Rejection::new(format!("not a JSON customer record: {e}")))?;
    let customer = validate(&raw).map_err(|errors| Rejection {
        reason: format!("invalid customer record: {errors}"),
        field_errors: serde_json::to_string(&errors.0).ok(),
    })?;
    // Tenure is measured to the moment of scoring; a scoring time that is not RFC 3339 (only
    // hand-written callers) falls back to the training data's as-of date.
    let as_of = chrono::DateTime::parse_from_rfc3339(scored_at)
        .map(|t| t.naive_utc())
        .unwrap_or(model.reference_date);
    let score = model.score(&customer, as_of);
    // JSON has no infinity: a non-finite number would be written as `null`, which no reader of
    // the prediction could parse. Only an absurd model file (a standard deviation of 1e-300)
    // gets here; the record is dead-lettered rather than published unreadable.
    if !writable(&score) {
        return Err(Rejection::new(format!(
            "model {} gives this record a non-finite score: check the model file's scales",
            model.version
        )));
    }
    let mut prediction = Prediction::new(
        id.to_owned(),
        &customer,
        model,
        &score,
        scored_at.to_owned(),
        as_of,
    );
    if let Some(shadow) = shadow {
        // The same rule as the champion's: a score it could not write, it does not give.
        let score = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shadow.score(&customer, as_of)
        }));
        prediction.challenger = match score {
            Ok(score) if writable(&score) && (0.0..=1.0).contains(&score.probability) => {
                Some(ShadowScore {
                    model_version: shadow.version.clone(),
                    churn_probability: score.probability,
                })
            }
            _ => None,
        };
    }
    Ok(prediction)
}

/// Whether a score can be written as JSON (which has no infinity).
fn writable(score: &crate::scoring::Score) -> bool {
    score.probability.is_finite() && score.contributions.iter().all(|c| c.log_odds.is_finite())
}

/// Appends a value's JSON; an error (none is known: predictions hold only finite numbers and
/// strings) is returned rather than panicking, so the caller dead-letters that one record.
pub fn encode_json(value: &impl Serialize, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    serde_json::to_writer(&mut *out, value).map_err(|e| {
        out.truncate(start);
        format!("could not encode the prediction: {e}")
    })
}

/// `text` cut to at most `max_bytes` at a character boundary, ending in "…" when cut: for keys,
/// logs and headers, which must never carry unbounded input.
pub fn truncate_utf8(text: &str, max_bytes: usize) -> std::borrow::Cow<'_, str> {
    const MARK: &str = "…";
    if text.len() <= max_bytes {
        return text.into();
    }
    let room = max_bytes.checked_sub(MARK.len());
    let mut end = room.unwrap_or(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match room {
        Some(_) => format!("{}{MARK}", &text[..end]).into(),
        None => text[..end].into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_file::tests::tiny_model;

    const GOOD: &str = r#"{"Names":"Ann","Age":42,"Total_Purchase":9000,"Account_Manager":1,"Years":5,
        "Num_Sites":9,"Onboard_date":"2012-01-01 10:00:00","Location":"x","Company":"y"}"#;

    #[test]
    fn a_good_record_is_scored_and_explained() {
        let model = tiny_model();
        let p = score_record("a", Some(GOOD.as_bytes()), &model, "now").unwrap();
        assert_eq!(p.id, "a");
        assert!((0.0..=1.0).contains(&p.churn_probability));
        assert_eq!(p.model_version, model.version);
        assert!(!p.top_factors.is_empty());
    }

    #[test]
    fn each_kind_of_bad_record_has_its_reason() {
        let model = tiny_model();
        let big = format!(r#"{{"Names":"{}"}}"#, "x".repeat(MAX_RECORD_BYTES));
        let cases: [(&str, &[u8], &str); 6] = [
            ("b", b"", "empty message"),
            ("b", b"{not json", "not a JSON customer record"),
            ("b", br#"{"Names":"Ann","Age":-4}"#, "Age: must be between"),
            (
                "b",
                br#"{"Names":"Ann","Age":"x","Total_Purchase":[1]}"#,
                "not a JSON customer record",
            ),
            ("b", big.as_bytes(), "record too large"),
            (
                &"k".repeat(MAX_KEY_BYTES + 1),
                GOOD.as_bytes(),
                "record key too long",
            ),
        ];
        for (id, payload, expected) in cases {
            let rejection = score_record(id, Some(payload), &model, "now").unwrap_err();
            assert!(rejection.reason.contains(expected), "{}", rejection.reason);
        }
        let invalid =
            score_record("b", Some(br#"{"Names":"Ann","Age":-4}"#), &model, "now").unwrap_err();
        assert!(invalid.field_errors.unwrap().contains(r#""field":"Age""#));
    }

    #[test]
    fn a_model_that_gives_a_non_finite_score_dead_letters_instead_of_publishing_nulls() {
        let mut model = tiny_model();
        model.features[0].std_dev = 1e-300;
        model.features[0].coefficient = 1e10;
        let rejection = score_record("a", Some(GOOD.as_bytes()), &model, "now").unwrap_err();
        assert!(
            rejection.reason.contains("non-finite score"),
            "{}",
            rejection.reason
        );
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_utf8("abc", 3), "abc");
        assert_eq!(truncate_utf8("abcdef", 5), "ab…");
        assert_eq!(truncate_utf8("abcd", 2), "ab");
        // "€" is three bytes: no cut may fall inside it, and nothing exceeds the limit.
        for max in 0..12 {
            let cut = truncate_utf8("a€b€c", max);
            assert!(cut.len() <= max, "{max}: {cut:?}");
        }
    }
}
