//! The model file and scoring: standardize, weigh, squash, explain.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::features::Feature;
use crate::metrics::Metrics;
use crate::schema::{Customer, Field, RawCustomer, Scalar};
use crate::validate::{validate, ValidationErrors};

/// Bumped whenever the model file's layout changes incompatibly.
pub const MODEL_SCHEMA_VERSION: u32 = 1;

/// One input of the model: how to standardize it and how much it weighs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureWeight {
    pub feature: Feature,
    /// Mean and standard deviation of the training data, for standardization.
    pub mean: f64,
    pub std_dev: f64,
    /// Weight of the standardized value in the log-odds of churn.
    pub coefficient: f64,
}

/// What the model was trained on, to tell two models apart and to audit them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFingerprint {
    pub rows: usize,
    pub churners: usize,
    /// FNV-1a hash of the training rows' feature values and labels.
    pub hash: String,
}

/// Training settings, stored so that a model can be reproduced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    /// L2 penalty weight (linfa's alpha; 1.0 matches scikit-learn's default C = 1).
    pub l2: f64,
    pub folds: usize,
    pub seed: u64,
    /// How the decision threshold was chosen.
    pub threshold_rule: String,
}

/// A trained, versioned churn model: everything needed to score, explain and audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnModel {
    pub schema_version: u32,
    /// Content hash of the parameters and training data: same inputs, same version.
    pub version: String,
    /// RFC 3339 time of training.
    pub created_at: String,
    /// The date tenure is measured to: the newest onboard date seen in training.
    #[serde(with = "crate::schema::date_format")]
    pub reference_date: NaiveDateTime,
    pub features: Vec<FeatureWeight>,
    pub intercept: f64,
    /// Probability at or above which a customer is labelled a churner.
    pub threshold: f64,
    pub hyperparameters: Hyperparameters,
    pub metrics: Metrics,
    pub training_data: DataFingerprint,
    /// Inner decile edges of the model's scores on its training data: the reference live scores
    /// are compared with to detect drift.
    #[serde(default)]
    pub score_deciles: Vec<f64>,
}

/// Why a model file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("not a churn model file: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error(
        "model file has schema version {found}, this program reads version {expected}: retrain with `churn train`"
    )]
    SchemaVersion { found: u32, expected: u32 },
    #[error("model file is damaged: {0}")]
    Invalid(String),
}

/// One feature's share of a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub feature: Feature,
    /// The customer's raw value of the feature.
    pub value: f64,
    /// Its contribution to the log-odds of churn: coefficient × standardized value.
    pub log_odds: f64,
}

impl Contribution {
    /// "Num_Sites = 14 raises churn risk". Built by hand: formatting floats with a precision
    /// (`{:.2}`) cost more than the scoring itself, and tables describe many rows at once.
    pub fn describe(&self) -> String {
        let mut text = String::with_capacity(48);
        text.push_str(self.feature.name());
        text.push_str(" = ");
        match self.feature {
            Feature::AccountManager => text.push_str(if self.value >= 0.5 { "yes" } else { "no" }),
            _ => push_short_decimal(&mut text, self.value),
        }
        text.push_str(if self.log_odds >= 0.0 { " raises churn risk" } else { " lowers churn risk" });
        text
    }
}

/// Several contributions in words, for one table cell: "Num_Sites = 14 raises churn risk; ...".
pub fn describe_all(contributions: &[Contribution]) -> String {
    contributions.iter().map(Contribution::describe).collect::<Vec<_>>().join("; ")
}

/// Appends `value` rounded to two decimals, without trailing zeros: "9000.5", "42", "0.33".
fn push_short_decimal(out: &mut String, value: f64) {
    let cents = (value * 100.0).round();
    // Whole cents are exact integers below 2^53; anything larger (or not finite) never passes
    // validation, but still gets written.
    if !(cents.abs() < 9e15) {
        use std::fmt::Write;
        let _ = write!(out, "{value}");
        return;
    }
    let cents = cents as i64;
    if cents < 0 {
        out.push('-');
    }
    let cents = cents.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(cents / 100));
    let fraction = (cents % 100) as u8;
    if fraction != 0 {
        out.push('.');
        out.push(char::from(b'0' + fraction / 10));
        if fraction % 10 != 0 {
            out.push(char::from(b'0' + fraction % 10));
        }
    }
}

/// The model's verdict on one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub probability: f64,
    pub churn: bool,
    pub log_odds: f64,
    /// Every feature's contribution, largest effect first.
    pub contributions: Vec<Contribution>,
}

pub fn sigmoid(z: f64) -> f64 {
    // Split by sign so neither branch overflows for large |z|.
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl ChurnModel {
    pub fn from_json(text: &str) -> Result<Self, ModelFileError> {
        #[derive(Deserialize)]
        struct Header {
            schema_version: u32,
        }
        let header: Header = serde_json::from_str(text).map_err(ModelFileError::NotJson)?;
        if header.schema_version != MODEL_SCHEMA_VERSION {
            return Err(ModelFileError::SchemaVersion {
                found: header.schema_version,
                expected: MODEL_SCHEMA_VERSION,
            });
        }
        let model: ChurnModel =
            serde_json::from_str(text).map_err(|e| ModelFileError::Invalid(e.to_string()))?;
        model.check()?;
        Ok(model)
    }

    /// What live score drift is measured against.
    pub fn drift_reference(&self) -> Option<crate::analytics::DriftReference> {
        (!self.score_deciles.is_empty()).then(|| crate::analytics::DriftReference {
            version: self.version.clone(),
            edges: self.score_deciles.clone(),
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a model always serializes")
    }

    fn check(&self) -> Result<(), ModelFileError> {
        let bad = |what: String| Err(ModelFileError::Invalid(what));
        if self.features.is_empty() {
            return bad("it has no features".into());
        }
        for w in &self.features {
            if !(w.std_dev > 0.0 && w.std_dev.is_finite() && w.mean.is_finite()) {
                return bad(format!("feature {} has an unusable scale", w.feature.name()));
            }
            if !w.coefficient.is_finite() {
                return bad(format!("feature {} has a non-finite weight", w.feature.name()));
            }
        }
        if !(self.intercept.is_finite() && (0.0..=1.0).contains(&self.threshold)) {
            return bad("intercept or threshold out of range".into());
        }
        Ok(())
    }

    /// Scores a validated customer, with every feature's contribution.
    pub fn score(&self, customer: &Customer) -> Score {
        let mut contributions: Vec<Contribution> = self
            .features
            .iter()
            .map(|w| {
                let value = w.feature.value(customer, self.reference_date);
                Contribution {
                    feature: w.feature,
                    value,
                    log_odds: w.coefficient * (value - w.mean) / w.std_dev,
                }
            })
            .collect();
        let log_odds = self.intercept + contributions.iter().map(|c| c.log_odds).sum::<f64>();
        contributions.sort_by(|a, b| b.log_odds.abs().total_cmp(&a.log_odds.abs()));
        let probability = sigmoid(log_odds);
        Score {
            probability,
            churn: probability >= self.threshold,
            log_odds,
            contributions,
        }
    }

    /// Churn probability only: the hot path of batch scoring, no allocation.
    pub fn probability(&self, customer: &Customer) -> f64 {
        let z = self.features.iter().fold(self.intercept, |z, w| {
            z + w.coefficient * (w.feature.value(customer, self.reference_date) - w.mean) / w.std_dev
        });
        sigmoid(z)
    }

    /// What-if: the same record with some fields changed, validated and scored again.
    pub fn what_if(
        &self,
        record: &RawCustomer,
        changes: &[(Field, Scalar)],
    ) -> Result<Score, ValidationErrors> {
        let mut changed = record.clone();
        for (field, value) in changes {
            changed.set(*field, Some(value.clone()));
        }
        validate(&changed).map(|customer| self.score(&customer))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schema::parse_onboard_date;

    pub fn tiny_model() -> ChurnModel {
        ChurnModel {
            schema_version: MODEL_SCHEMA_VERSION,
            version: "m-test".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            reference_date: parse_onboard_date("2016-01-01 00:00:00").unwrap(),
            features: vec![
                FeatureWeight { feature: Feature::Age, mean: 40.0, std_dev: 5.0, coefficient: 0.5 },
                FeatureWeight { feature: Feature::NumSites, mean: 8.0, std_dev: 2.0, coefficient: 1.5 },
                FeatureWeight {
                    feature: Feature::AccountManager,
                    mean: 0.5,
                    std_dev: 0.5,
                    coefficient: -0.2,
                },
            ],
            intercept: -1.0,
            threshold: 0.5,
            hyperparameters: Hyperparameters {
                l2: 1.0,
                folds: 5,
                seed: 7,
                threshold_rule: "fixed".into(),
            },
            metrics: Metrics::default(),
            training_data: DataFingerprint { rows: 0, churners: 0, hash: "0".into() },
            score_deciles: vec![],
        }
    }

    fn customer(age: f64, sites: u32, manager: bool) -> Customer {
        Customer {
            name: "A".into(),
            age,
            total_purchase: 100.0,
            account_manager: manager,
            years: 5.0,
            num_sites: sites,
            onboard_date: parse_onboard_date("2010-01-01 00:00:00").unwrap(),
            location: String::new(),
            company: String::new(),
            churn: None,
        }
    }

    #[test]
    fn scoring_matches_a_hand_computed_logistic_value() {
        // z = -1 + 0.5*(45-40)/5 + 1.5*(12-8)/2 - 0.2*(1-0.5)/0.5 = -1 + 0.5 + 3 - 0.2 = 2.3
        let score = tiny_model().score(&customer(45.0, 12, true));
        assert!((score.log_odds - 2.3).abs() < 1e-12, "{}", score.log_odds);
        let expected = 1.0 / (1.0 + (-2.3f64).exp());
        assert!((score.probability - expected).abs() < 1e-12);
        assert!((score.probability - 0.908877).abs() < 1e-6);
        assert!(score.churn);
        assert_eq!(tiny_model().probability(&customer(45.0, 12, true)), score.probability);
    }

    #[test]
    fn contributions_sum_to_the_log_odds_minus_the_intercept_and_come_largest_first() {
        let model = tiny_model();
        let score = model.score(&customer(31.0, 3, false));
        let sum: f64 = score.contributions.iter().map(|c| c.log_odds).sum();
        assert!((sum - (score.log_odds - model.intercept)).abs() < 1e-12);
        assert_eq!(score.contributions[0].feature, Feature::NumSites);
        assert_eq!(score.contributions[0].describe(), "Num_Sites = 3 lowers churn risk");
    }

    #[test]
    fn factor_values_are_written_with_at_most_two_decimals() {
        let text = |feature, value: f64| Contribution { feature, value, log_odds: 1.0 }.describe();
        assert_eq!(text(Feature::TotalPurchase, 9000.0), "Total_Purchase = 9000 raises churn risk");
        assert_eq!(text(Feature::TotalPurchase, 9000.5), "Total_Purchase = 9000.5 raises churn risk");
        assert_eq!(text(Feature::Years, 4.256), "Years = 4.26 raises churn risk");
        assert_eq!(text(Feature::Years, 0.07), "Years = 0.07 raises churn risk");
        assert_eq!(text(Feature::Years, -1.5), "Years = -1.5 raises churn risk");
        assert_eq!(text(Feature::Age, 42.999), "Age = 43 raises churn risk");
        assert_eq!(text(Feature::AccountManager, 1.0), "Account_Manager = yes raises churn risk");
        assert_eq!(text(Feature::Age, f64::NAN), "Age = NaN raises churn risk");
        assert_eq!(text(Feature::TotalPurchase, 1e300), format!("Total_Purchase = {} raises churn risk", 1e300));
    }

    #[test]
    fn sigmoid_is_stable_at_the_extremes() {
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(0.0), 0.5);
    }

    #[test]
    fn the_model_file_round_trips_and_checks_its_schema_version() {
        let model = tiny_model();
        assert_eq!(ChurnModel::from_json(&model.to_json()).unwrap(), model);
        let future = model.to_json().replace("\"schema_version\": 1", "\"schema_version\": 99");
        let err = ChurnModel::from_json(&future).unwrap_err().to_string();
        assert!(err.contains("schema version 99"), "{err}");
        assert!(ChurnModel::from_json("{}").is_err());
        let broken = model.to_json().replace("\"std_dev\": 5.0", "\"std_dev\": 0.0");
        assert!(ChurnModel::from_json(&broken).unwrap_err().to_string().contains("scale"));
    }

    #[test]
    fn what_if_changes_only_the_named_fields() {
        let model = tiny_model();
        let raw = customer(40.0, 8, false).to_raw();
        let base = model.score(&customer(40.0, 8, false)).probability;
        let more_sites = model.what_if(&raw, &[(Field::NumSites, Scalar::Number(14.0))]).unwrap();
        assert!(more_sites.probability > base);
        let bad = model.what_if(&raw, &[(Field::Age, Scalar::Number(-1.0))]).unwrap_err();
        assert!(bad.for_field(Field::Age).is_some());
    }
}
