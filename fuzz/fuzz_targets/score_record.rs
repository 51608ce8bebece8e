//! The scorer's per-record path on arbitrary input: `score_record` then `encode_json`, as
//! `server::scorer` runs them. Input: the message key, a 0xFF byte, the message value (no 0xFF
//! byte: an unkeyed message). It must never panic; a prediction must be in range and parse back,
//! a rejection must give its reason. Run by hand, see README.md ("Fuzzing").

#![no_main]

use libfuzzer_sys::fuzz_target;
use model::record::{encode_json, score_record};
use model::{ChurnModel, Prediction};
use std::sync::OnceLock;

include!("../../model/tests/it/every_feature_model.rs");

fn model() -> &'static ChurnModel {
    static MODEL: OnceLock<ChurnModel> = OnceLock::new();
    MODEL.get_or_init(|| every_feature_model("m-fuzz"))
}

fuzz_target!(|data: &[u8]| {
    let (key, payload) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[][..], data),
    };
    // As `server::scorer::record_id`: a blank key means an unkeyed message.
    let key = String::from_utf8_lossy(key);
    let id = if key.trim().is_empty() { "costumerchurn-0-42".into() } else { key };
    let payload = (!payload.is_empty()).then_some(payload);
    match score_record(&id, payload, model(), "2026-01-01T00:00:00Z") {
        Ok(prediction) => {
            assert!((0.0..=1.0).contains(&prediction.churn_probability), "{prediction:?}");
            assert!(prediction.top_factors.iter().all(|f| f.value.is_finite() && f.log_odds.is_finite()), "{prediction:?}");
            let mut out = Vec::new();
            encode_json(&prediction, &mut out).expect("a prediction encodes");
            let back: Prediction = serde_json::from_slice(&out).expect("a prediction parses back");
            assert_eq!((back.id, back.name, back.segments), (prediction.id, prediction.name, prediction.segments));
        }
        Err(rejection) => assert!(!rejection.reason.trim().is_empty(), "a rejection without a reason"),
    }
});
