//! The scorer's whole per-record path — bytes, `score_record`, `encode_json`, a reader parsing the
//! prediction back — driven by records that get past parsing (issue 11: random records were
//! nearly all rejected early, so a panic in the address segmenter went unfound). Generators start
//! from valid records and change exactly one field: non-ASCII at every character boundary,
//! lengths at the limit, numbers at and around their limits, dates in every accepted and rejected
//! shape, flags in every spelling. Every record must end as a prediction or as a dead letter with
//! a reason, never a panic; a rejected record names the changed field only; and most generated
//! records must reach scoring.

mod mutation;
mod record;
mod scalars;
mod strategies;

use std::cell::RefCell;
use std::collections::BTreeMap;

use model::format::percent;
use model::record::{encode_json, score_record, Rejection};
use model::{ChurnModel, Field, FieldError, Prediction};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use crate::support::{close, every_feature_model};
use record::{expect_with, good_record, text, valid_record, Expect, Json, Record, CONTROLS, NASTY};
use strategies::mutation;

const SCORED_AT: &str = "2026-01-01T00:00:00Z";

fn model() -> ChurnModel {
    every_feature_model("m-whole-path")
}

/// The whole per-record path with its checks: a prediction that a reader parses back as it was
/// sent, or a rejection with a reason (and, when the record was an object, its field errors).
fn whole_path(
    id: &str,
    payload: &[u8],
    model: &ChurnModel,
) -> Result<Result<Prediction, Rejection>, String> {
    let prediction = match score_record(id, Some(payload), model, SCORED_AT) {
        Ok(prediction) => prediction,
        Err(rejection) => {
            if rejection.reason.trim().is_empty() {
                return Err("a rejection without a reason".into());
            }
            if let Some(errors) = &rejection.field_errors {
                let errors: Vec<FieldError> =
                    serde_json::from_str(errors).map_err(|e| format!("field errors: {e}"))?;
                if errors.is_empty() || errors.iter().any(|e| e.message.trim().is_empty()) {
                    return Err(format!("field errors without messages: {errors:?}"));
                }
            }
            return Ok(Err(rejection));
        }
    };
    let p = &prediction;
    let factors_ok = p.top_factors.len() == model::message::TOP_FACTORS.min(model.features.len())
        && p.top_factors
            .iter()
            .all(|f| f.value.is_finite() && f.log_odds.is_finite());
    if !((0.0..=1.0).contains(&p.churn_probability)
        && p.churn == (p.churn_probability >= model.threshold)
        && factors_ok)
        || p.id != id
        || p.model_version != model.version
    {
        return Err(format!("an inconsistent prediction: {p:?}"));
    }
    // The scorer appends each prediction to a batch buffer.
    let mut out = b"previous record".to_vec();
    encode_json(p, &mut out)?;
    let json = out
        .strip_prefix(b"previous record")
        .ok_or("encode_json overwrote the buffer")?;
    let back: Prediction = serde_json::from_slice(json)
        .map_err(|e| format!("the prediction does not parse back: {e}"))?;
    let same_numbers = close(back.churn_probability, p.churn_probability)
        && back.top_factors.iter().zip(&p.top_factors).all(|(a, b)| {
            a.feature == b.feature && close(a.value, b.value) && close(a.log_odds, b.log_odds)
        });
    let unchanged = Prediction {
        churn_probability: p.churn_probability,
        top_factors: p.top_factors.clone(),
        ..back.clone()
    };
    if !same_numbers || unchanged != *p {
        return Err(format!(
            "the prediction changed on the wire: {back:?} != {p:?}"
        ));
    }
    Ok(Ok(prediction))
}

/// Checks one mutated record's outcome against what the mutation expects; true when scored.
fn check(
    record: &Record,
    field: Field,
    expect: Expect,
    model: &ChurnModel,
) -> Result<bool, String> {
    let payload = record.payload();
    let shown = || String::from_utf8_lossy(&payload).into_owned();
    match whole_path("rec-1", &payload, model).map_err(|e| format!("{e}\nrecord: {}", shown()))? {
        Ok(prediction) => {
            if expect == Expect::Rejected {
                return Err(format!(
                    "scored, but {field} should have been refused: {}",
                    shown()
                ));
            }
            if let Some(state) = &record.state {
                if prediction.segments.state != *state {
                    return Err(format!(
                        "state segment {:?}, expected {state:?}: {}",
                        prediction.segments.state,
                        shown()
                    ));
                }
            }
            Ok(true)
        }
        Err(rejection) => {
            if expect == Expect::Scored {
                return Err(format!(
                    "refused ({}), but should be scored: {}",
                    rejection.reason,
                    shown()
                ));
            }
            // The record was valid before one field changed: only that field may be blamed.
            if let Some(errors) = &rejection.field_errors {
                let errors: Vec<FieldError> = serde_json::from_str(errors).unwrap();
                if errors.iter().any(|e| e.field != field) {
                    return Err(format!(
                        "{field} changed, but {errors:?} were blamed: {}",
                        shown()
                    ));
                }
            }
            Ok(false)
        }
    }
}

#[test]
fn one_changed_field_is_scored_or_dead_lettered_with_its_reason() {
    let model = model();
    let mut runner = TestRunner::new(Config {
        cases: 6000,
        ..Config::with_source_file(file!())
    });
    // By what changed: (records, scored).
    let counts: RefCell<BTreeMap<&'static str, (usize, usize)>> = RefCell::default();
    let strategy = (valid_record(), mutation());
    runner
        .run(&strategy, |(mut record, mutation)| {
            let (field, expect, label) = mutation.apply(&mut record);
            let scored = check(&record, field, expect, &model).map_err(TestCaseError::fail)?;
            let mut counts = counts.borrow_mut();
            let entry = counts.entry(label).or_default();
            entry.0 += 1;
            entry.1 += usize::from(scored);
            Ok(())
        })
        .unwrap();
    let counts = counts.into_inner();
    let (records, scored) = counts.values().fold((0, 0), |(r, s), (records, scored)| {
        (r + records, s + scored)
    });
    let share = scored as f64 / records as f64;
    let by_field: Vec<String> = counts
        .iter()
        .map(|(field, (r, s))| format!("{field} {s}/{r}"))
        .collect();
    eprintln!(
        "{scored} of {records} generated records reached scoring ({}); by changed field: {}",
        percent(share, 0),
        by_field.join(", ")
    );
    assert!(
        share >= 0.5,
        "only {} of generated records reached scoring",
        percent(share, 0)
    );
}

#[test]
fn the_good_record_is_scored() {
    let record = good_record();
    let prediction = whole_path("good", &record.payload(), &model())
        .unwrap()
        .unwrap();
    assert_eq!(prediction.name, "Zoë Ñúñez-李 👍");
    assert_eq!(prediction.segments.state.as_deref(), Some("AK"));
    assert_eq!(prediction.actual_churn, Some(false));
}

#[test]
fn every_nasty_character_at_every_byte_offset_of_every_text_field() {
    let model = model();
    let mut runs = 0;
    for field in [
        Field::Names,
        Field::Location,
        Field::Company,
        Field::OnboardDate,
    ] {
        let Json::Value(Value::String(base)) = good_record().get(field).clone() else {
            unreachable!()
        };
        for inserted in NASTY.into_iter().chain(CONTROLS) {
            for offset in (0..=base.len()).filter(|&i| base.is_char_boundary(i)) {
                let mut value = base.clone();
                value.insert_str(offset, inserted);
                let mut record = good_record();
                record.set(field, text(value.clone()));
                // Anything inside the address may change its state; only the ZIP test checks it.
                record.state = None;
                let expect = match field {
                    Field::OnboardDate if inserted.chars().all(char::is_whitespace) => {
                        Expect::Either
                    }
                    Field::OnboardDate => Expect::Rejected,
                    _ => expect_with(inserted),
                };
                let outcome = whole_path("rec", &record.payload(), &model)
                    .unwrap_or_else(|e| panic!("{field} = {value:?}: {e}"));
                match (outcome, expect) {
                    (Ok(prediction), Expect::Scored | Expect::Either) => {
                        if field == Field::Names {
                            assert_eq!(prediction.name, value.trim(), "the name is kept as sent");
                        }
                    }
                    (Err(_), Expect::Rejected | Expect::Either) => {}
                    (outcome, expect) => {
                        panic!("{field} = {value:?}: expected {expect:?}, got {outcome:?}")
                    }
                }
                runs += 1;
            }
        }
    }
    eprintln!("{runs} records, each with one character inserted at one byte offset");
}

#[test]
fn a_foreign_character_anywhere_in_a_zip_leaves_the_state_unknown() {
    let model = model();
    for zip in ["89518", "89518-1234"] {
        let mut record = good_record();
        record.set(Field::Location, text(format!("1 Main St, AK {zip}")));
        assert_eq!(
            whole_path("z", &record.payload(), &model)
                .unwrap()
                .unwrap()
                .segments
                .state
                .as_deref(),
            Some("AK")
        );
        for inserted in NASTY {
            for offset in 0..=zip.len() {
                for replace in [false, true] {
                    if replace && offset == zip.len() {
                        continue;
                    }
                    let mut spoiled = zip.to_owned();
                    spoiled.replace_range(offset..offset + usize::from(replace), inserted);
                    record.set(Field::Location, text(format!("1 Main St, AK {spoiled}")));
                    let prediction = whole_path("z", &record.payload(), &model)
                        .unwrap()
                        .expect("scored");
                    assert_eq!(prediction.segments.state, None, "{spoiled:?}");
                }
            }
        }
    }
}

/// Issue 11: ZIP-sized tokens (5 and 10 bytes, the lengths the segmenter slices) with a multi-byte
/// character at every byte offset it fits, alone and on either side of a ZIP+4 dash.
#[test]
fn zip_sized_tokens_with_a_multi_byte_character_at_every_byte_offset() {
    let model = model();
    let mut record = good_record();
    record.set(Field::Location, text("1 Main St, AK 123€abcd"));
    assert_eq!(
        whole_path("issue-11", &record.payload(), &model)
            .unwrap()
            .unwrap()
            .segments
            .state,
        None
    );
    let fill = |wide: &str, len: usize, offset: usize| {
        format!(
            "{}{wide}{}",
            "1".repeat(offset),
            "2".repeat(len - wide.len() - offset)
        )
    };
    for wide in ["é", "€", "𝄞"] {
        let mut tokens = Vec::new();
        for len in [5, 10] {
            tokens.extend((0..=len - wide.len()).map(|offset| fill(wide, len, offset)));
        }
        tokens
            .extend((0..=4 - wide.len()).map(|offset| format!("12345-{}", fill(wide, 4, offset))));
        tokens.extend((0..=5 - wide.len()).map(|offset| format!("{}-6789", fill(wide, 5, offset))));
        for token in tokens {
            assert!([5, 10].contains(&token.len()), "{token:?}");
            record.set(Field::Location, text(format!("1 Main St, AK {token}")));
            let prediction = whole_path("zip", &record.payload(), &model)
                .unwrap_or_else(|e| panic!("{token:?}: {e}"));
            assert_eq!(
                prediction.expect("scored").segments.state,
                None,
                "{token:?}"
            );
        }
    }
}

/// Payload shapes around the path's own limits: nesting deeper than any stack, the largest
/// record and key read, multi-byte characters across the key limit.
#[test]
fn hostile_payloads_around_the_limits() {
    use model::record::{MAX_KEY_BYTES, MAX_RECORD_BYTES};
    let model = model();
    let good = good_record().payload();
    let with_extra = |extra: &str| {
        let mut record = good_record();
        record.extra = Some(extra.to_owned());
        record.payload()
    };
    let deep = with_extra(&format!(
        r#""Notes":{}{}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    ));
    assert!(
        whole_path("deep", &deep, &model).unwrap().is_err(),
        "refused, not a stack overflow"
    );
    let shallow = with_extra(&format!(
        r#""Notes":{}{}"#,
        "[".repeat(100),
        "]".repeat(100)
    ));
    assert!(
        whole_path("shallow", &shallow, &model).unwrap().is_ok(),
        "unknown keys are ignored"
    );

    // Padded with spaces (JSON whitespace) to exactly the limit, then one byte over.
    for (size, scored) in [(MAX_RECORD_BYTES, true), (MAX_RECORD_BYTES + 1, false)] {
        let mut payload = good.clone();
        payload.splice(1..1, std::iter::repeat_n(b' ', size - good.len()));
        assert_eq!(payload.len(), size);
        assert_eq!(
            whole_path("big", &payload, &model).unwrap().is_ok(),
            scored,
            "{size} bytes"
        );
    }

    // Keys are counted in bytes: a multi-byte character may straddle the limit.
    for wide in ["é", "€", "𝄞"] {
        for pad in MAX_KEY_BYTES - 4..=MAX_KEY_BYTES {
            let key = format!("{}{wide}", "k".repeat(pad));
            let outcome = whole_path(&key, &good, &model).unwrap();
            assert_eq!(
                outcome.is_ok(),
                key.len() <= MAX_KEY_BYTES,
                "{} bytes",
                key.len()
            );
        }
    }
    assert!(score_record("none", None, &model, SCORED_AT)
        .unwrap_err()
        .reason
        .contains("empty"));
}

/// The challenger scored in the shadow (`score_with_shadow`) never changes what the champion
/// says: on valid and one-field-changed records alike, the prediction without its shadow score
/// is exactly the champion's alone, the record is rejected for the same reason, and the shadow
/// score is the challenger's own.
#[test]
fn the_shadow_never_changes_the_champions_prediction() {
    use model::record::score_with_shadow;
    let champion = model();
    let mut challenger = every_feature_model("m-challenger");
    challenger.intercept = -1.0;
    // A challenger whose every score is not a number: it must cost nothing but its field.
    let mut absurd = challenger.clone();
    absurd.version = "m-absurd".into();
    for weight in &mut absurd.features {
        weight.std_dev = 1e-300;
        weight.coefficient = 1e300;
    }
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let (scored, shadowed) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner
        .run(&(valid_record(), mutation()), |(mut record, mutation)| {
            mutation.apply(&mut record);
            let payload = record.payload();
            let alone = score_record("r", Some(&payload), &champion, SCORED_AT);
            for shadow in [&challenger, &absurd] {
                let both =
                    score_with_shadow("r", Some(&payload), &champion, Some(shadow), SCORED_AT);
                match (&alone, both) {
                    (Ok(alone), Ok(both)) => {
                        let own = score_record("r", Some(&payload), shadow, SCORED_AT);
                        match (&both.challenger, own) {
                            (Some(s), Ok(own)) => {
                                assert_eq!(s.model_version, shadow.version);
                                assert_eq!(s.churn_probability, own.churn_probability);
                                shadowed.set(shadowed.get() + 1);
                            }
                            (None, Err(_)) => {}
                            (s, own) => panic!("shadow {s:?} but alone {own:?}"),
                        }
                        assert_eq!(both.for_users(), alone.clone());
                        scored.set(scored.get() + 1);
                    }
                    (Err(alone), Err(both)) => assert_eq!(alone, &both),
                    (alone, both) => panic!("alone {alone:?}, with a shadow {both:?}"),
                }
            }
            Ok(())
        })
        .unwrap();
    let (scored, shadowed) = (scored.get(), shadowed.get());
    assert!(shadowed > 100, "{shadowed} shadow scores");
    assert!(
        scored > shadowed,
        "the absurd challenger left its field empty"
    );
    // Without a challenger the prediction is written as before: no `challenger` key.
    let plain = score_record("r", Some(&good_record().payload()), &champion, SCORED_AT).unwrap();
    assert!(!serde_json::to_string(&plain)
        .unwrap()
        .contains("challenger"));
}
