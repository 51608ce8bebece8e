// A small model weighting every feature, so that every feature's code runs: shared by the
// integration tests (`model/tests/it/support.rs`) and the fuzz target (`fuzz/`), by `include!`.
// It is sealed and passed through `ChurnModel::from_json`: the scorer only ever holds models that
// pass the model file's checks.

pub fn every_feature_model(version: &str) -> model::ChurnModel {
    use model::features::Feature;
    use model::model_file::{DataFingerprint, FeatureWeight, Hyperparameters, MODEL_SCHEMA_VERSION};
    // Ranges as wide as validation allows: this model never flags an extrapolation.
    let weight = |feature, mean, std_dev, coefficient| FeatureWeight { feature, mean, std_dev, coefficient, min: -1e12, max: 1e12 };
    let mut model = model::ChurnModel {
        schema_version: MODEL_SCHEMA_VERSION,
        version: version.into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        reference_date: model::schema::parse_onboard_date("2016-01-01 00:00:00").unwrap(),
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
        hyperparameters: Hyperparameters { l2: 1.0, folds: 5, seed: 7, threshold_rule: "f1".into(), max_iterations: 200 },
        metrics: Default::default(),
        training_data: DataFingerprint { rows: 0, churners: 0, hash: "0".into() },
        ablation: vec![],
        convergence: Default::default(),
        score_deciles: vec![],
        integrity: Default::default(),
    };
    model.seal();
    model::ChurnModel::from_json(&model.to_json()).expect("a usable model")
}
