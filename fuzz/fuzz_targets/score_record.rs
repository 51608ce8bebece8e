//! The scorer's per-record path on arbitrary input: `score_record` then `encode_json`, as
//! `server::scorer` runs them. Input: the message key, a 0xFF byte, the message value (no 0xFF
//! byte: an unkeyed message). It must never panic; a prediction must be in range and parse back,
//! a rejection must give its reason. Run by hand, see README.md ("Fuzzing").

#![no_main]

use libfuzzer_sys::fuzz_target;
use model::features::Feature;
use model::record::{encode_json, score_record};
use model::schema::parse_onboard_date;
use model::scoring::{DataFingerprint, FeatureWeight, Hyperparameters, MODEL_SCHEMA_VERSION};
use model::{ChurnModel, Prediction};
use std::sync::OnceLock;

/// Every feature weighted, so that every feature's code runs.
fn model() -> &'static ChurnModel {
    static MODEL: OnceLock<ChurnModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let weight = |feature, mean, std_dev, coefficient| FeatureWeight { feature, mean, std_dev, coefficient };
        let model = ChurnModel {
            schema_version: MODEL_SCHEMA_VERSION,
            version: "m-fuzz".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            reference_date: parse_onboard_date("2016-01-01 00:00:00").unwrap(),
            features: vec![
                weight(Feature::Age, 40.0, 6.0, 0.3),
                weight(Feature::TotalPurchase, 10_000.0, 2_400.0, 0.05),
                weight(Feature::AccountManager, 0.5, 0.5, 0.6),
                weight(Feature::Years, 5.0, 1.3, 0.4),
                weight(Feature::NumSites, 8.5, 1.8, 1.6),
                weight(Feature::TenureYears, 6.0, 3.0, -0.1),
            ],
            intercept: -2.0,
            threshold: 0.45,
            hyperparameters: Hyperparameters { l2: 1.0, folds: 5, seed: 7, threshold_rule: "f1".into() },
            metrics: Default::default(),
            training_data: DataFingerprint { rows: 0, churners: 0, hash: "0".into() },
            score_deciles: vec![],
        };
        // The scorer only ever holds models that pass the model file's checks.
        ChurnModel::from_json(&model.to_json()).expect("a usable model")
    })
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
