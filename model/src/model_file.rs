//! The model file: what a trained model is made of, its schema version, and reading it back
//! with the checks that keep a damaged or edited file out of the scorer (the seal is
//! `integrity`). Scoring with it is `scoring`.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::features::Feature;
use crate::integrity::Seal;
use crate::quality::QualityReport;

/// Bumped whenever the model file's layout changes incompatibly (2: the seal, `integrity`;
/// 3: training ranges, tenure measured at scoring time, nested-threshold report, ablation,
/// convergence). Older files are refused with "retrain": a version 2 model measured tenure to
/// its reference date and has no ranges, so reading it as version 3 would score it differently.
pub const MODEL_SCHEMA_VERSION: u32 = 3;

/// One input of the model: how to standardize it, how much it weighs, and the range of raw
/// values it was trained on (a value outside is an extrapolation, flagged on the prediction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureWeight {
    pub feature: Feature,
    /// Mean and standard deviation of the training data, for standardization.
    pub mean: f64,
    pub std_dev: f64,
    /// Weight of the standardized value in the log-odds of churn.
    pub coefficient: f64,
    /// Smallest and largest raw value in the training data.
    pub min: f64,
    pub max: f64,
}

impl FeatureWeight {
    /// Whether a raw value lies outside the training range (NaN counts as outside).
    pub fn extrapolates(&self, value: f64) -> bool {
        !(self.min..=self.max).contains(&value)
    }
}

/// Whether the final fit reached the solver's optimum: the norm of the objective's gradient
/// (linfa's: summed log loss plus l2/2 times the squared weights) at the fitted weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Convergence {
    pub gradient_norm: f64,
    /// Above this the fit did not converge: training warns, or fails with `--strict`.
    pub tolerance: f64,
    /// The largest gradient norm of the cross-validation fits (each held to the same tolerance).
    pub worst_fold_gradient_norm: f64,
}

impl Convergence {
    pub fn converged(&self) -> bool {
        self.gradient_norm <= self.tolerance && self.worst_fold_gradient_norm <= self.tolerance
    }
}

/// Whether a derived feature earns its place: cross-validated ROC-AUC with and without it, on
/// the same folds. Derived features (tenure) are kept only when they beat the noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ablation {
    pub feature: Feature,
    /// Mean ROC-AUC over the folds, with every candidate feature and without this one.
    pub auc_with: f64,
    pub auc_without: f64,
    /// Standard error of the per-fold differences (with minus without).
    pub standard_error: f64,
    pub kept: bool,
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
    /// Solver iterations allowed per fit.
    pub max_iterations: u64,
}

/// A trained, versioned churn model: everything needed to score, explain and audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnModel {
    pub schema_version: u32,
    /// Content hash of the parameters and training data: same inputs, same version.
    pub version: String,
    /// RFC 3339 time of training.
    pub created_at: String,
    /// The as-of date of the training data (its newest onboard date): training rows' tenure is
    /// measured to it. Live records measure tenure to their scoring time (`score_at`).
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
    /// Derived features tried, and whether the cross-validated ROC-AUC kept them.
    pub ablation: Vec<Ablation>,
    pub convergence: Convergence,
    /// Inner decile edges of the model's scores on its training data: the reference live scores
    /// are compared with to detect drift.
    #[serde(default)]
    pub score_deciles: Vec<f64>,
    /// The content hash of everything above, and its signature when signed: set by `seal` or
    /// `sign` once the model is complete, verified by `from_json`.
    #[serde(default)]
    pub integrity: Seal,
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
    #[error("model file has no content hash: retrain with `churn train`")]
    Unsealed,
    #[error(
        "model file was changed after training (its content hash does not match): retrain with `churn train` or restore the original file"
    )]
    Tampered,
    #[error(
        "model {version} is not signed and a signed model is required: sign it with `churn model sign FILE --key KEY`"
    )]
    Unsigned { version: String },
    #[error(
        "model {version} has a signature that does not verify with this key: it was signed with another key or changed after signing"
    )]
    BadSignature { version: String },
}

impl ChurnModel {
    /// Reads a model file: its schema version, its content hash, and that it can score.
    /// `from_signed_json` also verifies its signature.
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
        model.verify_content_hash()?;
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
            if !(w.min.is_finite() && w.max.is_finite() && w.min <= w.max) {
                return bad(format!(
                    "feature {} has an unusable training range",
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

    /// A small model, not sealed yet (`seal` it to read it back).
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
                    min: 25.0,
                    max: 60.0,
                },
                FeatureWeight {
                    feature: Feature::NumSites,
                    mean: 8.0,
                    std_dev: 2.0,
                    coefficient: 1.5,
                    min: 3.0,
                    max: 14.0,
                },
                FeatureWeight {
                    feature: Feature::AccountManager,
                    mean: 0.5,
                    std_dev: 0.5,
                    coefficient: -0.2,
                    min: 0.0,
                    max: 1.0,
                },
            ],
            intercept: -1.0,
            threshold: 0.5,
            hyperparameters: Hyperparameters {
                l2: 1.0,
                folds: 5,
                seed: 7,
                threshold_rule: "fixed".into(),
                max_iterations: 200,
            },
            metrics: QualityReport::default(),
            training_data: DataFingerprint {
                rows: 0,
                churners: 0,
                hash: "0".into(),
            },
            ablation: vec![],
            convergence: Convergence::default(),
            score_deciles: vec![],
            integrity: Seal::default(),
        }
    }

    #[test]
    fn the_model_file_round_trips_and_checks_its_schema_version() {
        let mut model = tiny_model();
        model.seal();
        assert_eq!(ChurnModel::from_json(&model.to_json()).unwrap(), model);
        let current = format!("\"schema_version\": {MODEL_SCHEMA_VERSION}");
        for (found, version) in [("99", 99), ("2", 2), ("1", 1)] {
            let other = model
                .to_json()
                .replace(&current, &format!("\"schema_version\": {found}"));
            let err = ChurnModel::from_json(&other).unwrap_err().to_string();
            assert!(err.contains(&format!("schema version {version}")), "{err}");
            assert!(err.contains("retrain with `churn train`"), "{err}");
        }
        assert!(ChurnModel::from_json("{}").is_err());
    }

    #[test]
    fn an_unusable_model_is_refused_even_when_sealed() {
        let mut broken = tiny_model();
        broken.features[0].std_dev = 0.0;
        broken.seal();
        assert!(ChurnModel::from_json(&broken.to_json())
            .unwrap_err()
            .to_string()
            .contains("scale"));
    }
}
