//! The model file: what a trained model is made of, its schema version, and reading it back
//! with the checks that keep a damaged file out of the scorer. Scoring with it is `scoring`.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::features::Feature;
use crate::quality::QualityReport;

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
    /// The cross-validated quality report (named `metrics` in the file format since version 1).
    pub metrics: QualityReport,
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
                return bad(format!(
                    "feature {} has an unusable scale",
                    w.feature.name()
                ));
            }
            if !w.coefficient.is_finite() {
                return bad(format!(
                    "feature {} has a non-finite weight",
                    w.feature.name()
                ));
            }
        }
        if !(self.intercept.is_finite() && (0.0..=1.0).contains(&self.threshold)) {
            return bad("intercept or threshold out of range".into());
        }
        Ok(())
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
                FeatureWeight {
                    feature: Feature::Age,
                    mean: 40.0,
                    std_dev: 5.0,
                    coefficient: 0.5,
                },
                FeatureWeight {
                    feature: Feature::NumSites,
                    mean: 8.0,
                    std_dev: 2.0,
                    coefficient: 1.5,
                },
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
            metrics: QualityReport::default(),
            training_data: DataFingerprint {
                rows: 0,
                churners: 0,
                hash: "0".into(),
            },
            score_deciles: vec![],
        }
    }

    #[test]
    fn the_model_file_round_trips_and_checks_its_schema_version() {
        let model = tiny_model();
        assert_eq!(ChurnModel::from_json(&model.to_json()).unwrap(), model);
        let future = model
            .to_json()
            .replace("\"schema_version\": 1", "\"schema_version\": 99");
        let err = ChurnModel::from_json(&future).unwrap_err().to_string();
        assert!(err.contains("schema version 99"), "{err}");
        assert!(ChurnModel::from_json("{}").is_err());
        let broken = model
            .to_json()
            .replace("\"std_dev\": 5.0", "\"std_dev\": 0.0");
        assert!(ChurnModel::from_json(&broken)
            .unwrap_err()
            .to_string()
            .contains("scale"));
    }
}
