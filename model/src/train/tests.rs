use super::*;
use crate::synth::{self, GenerateOptions};
use crate::validate::validate;

fn generated(rows: usize, seed: u64) -> Vec<Customer> {
    let customers = synth::generate_customers(&GenerateOptions {
        rows,
        seed,
        messy_fraction: 0.0,
    });
    // What the pipeline sees: each record through the wire form and validation.
    customers
        .iter()
        .map(|c| validate(&c.to_raw()).unwrap())
        .collect()
}

#[test]
fn folds_are_stratified_and_deterministic() {
    let labels: Vec<bool> = (0..100).map(|i| i % 5 == 0).collect();
    let folds = stratified_folds(&labels, 5, 1);
    assert_eq!(folds, stratified_folds(&labels, 5, 1));
    for f in 0..5 {
        let churners = (0..100).filter(|&i| folds[i] == f && labels[i]).count();
        let total = folds.iter().filter(|&&x| x == f).count();
        assert_eq!((churners, total), (4, 20));
    }
}

#[test]
fn training_recovers_the_direction_of_every_true_coefficient() {
    let customers = generated(3000, 11);
    let model = train(&customers, &TrainOptions::default(), "now".into(), |_| {}).unwrap();
    for (feature, truth) in synth::HIDDEN_COEFFICIENTS {
        let learned = model
            .features
            .iter()
            .find(|w| w.feature == feature)
            .unwrap()
            .coefficient;
        assert_eq!(
            learned.signum(),
            truth.signum(),
            "{feature:?}: learned {learned}, true {truth}"
        );
    }
    assert!(model.metrics.roc_auc > 0.8, "{}", model.metrics.roc_auc);
    assert!(model.threshold > 0.0 && model.threshold < 1.0);
}

#[test]
fn training_is_deterministic_and_versions_by_content() {
    let customers = generated(400, 3);
    let a = train(&customers, &TrainOptions::default(), "t1".into(), |_| {}).unwrap();
    let b = train(&customers, &TrainOptions::default(), "t2".into(), |_| {}).unwrap();
    assert_eq!(a.version, b.version);
    assert_eq!(a.metrics, b.metrics);
    let other = train(
        &generated(400, 4),
        &TrainOptions::default(),
        "t1".into(),
        |_| {},
    )
    .unwrap();
    assert_ne!(a.version, other.version);
}

#[test]
fn unusable_training_data_is_refused_with_a_reason() {
    let mut customers = generated(50, 5);
    customers[7].churn = None;
    let err = train(&customers, &TrainOptions::default(), "t".into(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("row 7"), "{err}");
    let none_churn: Vec<Customer> = generated(50, 5)
        .into_iter()
        .map(|c| Customer {
            churn: Some(false),
            ..c
        })
        .collect();
    let err = train(&none_churn, &TrainOptions::default(), "t".into(), |_| {}).unwrap_err();
    assert!(matches!(err, TrainError::OneClass { .. }), "{err}");
}
