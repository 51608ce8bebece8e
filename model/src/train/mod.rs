//! Training: standardized features, L2-regularized logistic regression (linfa-logistic),
//! stratified k-fold cross-validation, and a decision threshold chosen on held-out predictions.

use chrono::NaiveDateTime;
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::features::Feature;
use crate::model_file::{
    ChurnModel, DataFingerprint, FeatureWeight, Hyperparameters, MODEL_SCHEMA_VERSION,
};
use crate::quality::{best_f1_threshold, min_cost_threshold, roc_auc, QualityReport};
use crate::schema::Customer;

/// How the decision threshold is chosen from the out-of-fold predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdRule {
    /// Best balance of precision and recall for the minority class.
    MaxF1,
    /// Lowest total cost when a missed churner costs this many false alarms.
    MinCost { missed_churner_cost: f64 },
}

impl ThresholdRule {
    fn choose(self, probabilities: &[f64], labels: &[bool]) -> f64 {
        match self {
            ThresholdRule::MaxF1 => best_f1_threshold(probabilities, labels),
            ThresholdRule::MinCost {
                missed_churner_cost,
            } => min_cost_threshold(probabilities, labels, missed_churner_cost),
        }
    }

    fn describe(self) -> String {
        match self {
            ThresholdRule::MaxF1 => "maximize F1 on out-of-fold predictions".into(),
            ThresholdRule::MinCost { missed_churner_cost } => format!(
                "minimize cost on out-of-fold predictions (a missed churner costs {missed_churner_cost} false alarms)"
            ),
        }
    }
}

impl std::str::FromStr for ThresholdRule {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "f1" => Ok(ThresholdRule::MaxF1),
            other => other
                .strip_prefix("cost:")
                .and_then(|r| r.parse::<f64>().ok())
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(|missed_churner_cost| ThresholdRule::MinCost {
                    missed_churner_cost,
                })
                .ok_or_else(|| {
                    format!("expected `f1` or `cost:RATIO` (e.g. cost:5), got {text:?}")
                }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub features: Vec<Feature>,
    /// L2 penalty (linfa's alpha); 1.0 is scikit-learn's default C = 1.
    pub l2: f64,
    pub folds: usize,
    pub seed: u64,
    pub max_iterations: u64,
    pub threshold_rule: ThresholdRule,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            features: Feature::ALL.to_vec(),
            l2: 1.0,
            folds: 5,
            seed: 42,
            max_iterations: 200,
            threshold_rule: ThresholdRule::MaxF1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("need at least {needed} labelled rows to train with {folds} folds, got {got}")]
    TooFewRows {
        needed: usize,
        got: usize,
        folds: usize,
    },
    #[error("row {index} has no Churn label: training needs the outcome of every row")]
    Unlabelled { index: usize },
    #[error("training data has only {class} rows: need both churners and non-churners ({per_fold} of each at least)")]
    OneClass {
        class: &'static str,
        per_fold: usize,
    },
    #[error("at least 2 folds are needed, got {0}")]
    Folds(usize),
    #[error("no features selected")]
    NoFeatures,
    #[error("the solver failed: {0}")]
    Fit(String),
}

/// Progress of a training run, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum TrainProgress {
    Fold { done: usize, of: usize },
    Final,
}

/// Trains a model on labelled customers; `created_at` is passed in because this crate does no I/O.
pub fn train(
    customers: &[Customer],
    options: &TrainOptions,
    created_at: String,
    mut progress: impl FnMut(TrainProgress),
) -> Result<ChurnModel, TrainError> {
    let k = options.folds;
    if k < 2 {
        return Err(TrainError::Folds(k));
    }
    if options.features.is_empty() {
        return Err(TrainError::NoFeatures);
    }
    if customers.len() < 2 * k {
        return Err(TrainError::TooFewRows {
            needed: 2 * k,
            got: customers.len(),
            folds: k,
        });
    }
    let labels: Vec<bool> = customers
        .iter()
        .enumerate()
        .map(|(index, c)| c.churn.ok_or(TrainError::Unlabelled { index }))
        .collect::<Result<_, _>>()?;
    let churners = labels.iter().filter(|&&y| y).count();
    if churners < k {
        return Err(TrainError::OneClass {
            class: "non-churner",
            per_fold: k,
        });
    }
    if labels.len() - churners < k {
        return Err(TrainError::OneClass {
            class: "churner",
            per_fold: k,
        });
    }

    let reference_date = customers
        .iter()
        .map(|c| c.onboard_date)
        .max()
        .expect("checked non-empty");
    let raw = feature_matrix(customers, &options.features, reference_date);

    // Out-of-fold predictions: every row scored by a model that never saw it.
    let folds = stratified_folds(&labels, k, options.seed);
    let mut out_of_fold = vec![0.0; labels.len()];
    let mut fold_roc_auc = Vec::with_capacity(k);
    for fold in 0..k {
        let (train_rows, test_rows): (Vec<usize>, Vec<usize>) =
            (0..labels.len()).partition(|&i| folds[i] != fold);
        let fitted = fit(&raw, &labels, &train_rows, options)?;
        let test_labels: Vec<bool> = test_rows.iter().map(|&i| labels[i]).collect();
        let test_probabilities: Vec<f64> = test_rows
            .iter()
            .map(|&i| fitted.probability(raw.row(i)))
            .collect();
        for (&i, &p) in test_rows.iter().zip(&test_probabilities) {
            out_of_fold[i] = p;
        }
        fold_roc_auc.push(roc_auc(&test_probabilities, &test_labels));
        progress(TrainProgress::Fold {
            done: fold + 1,
            of: k,
        });
    }
    let threshold = options.threshold_rule.choose(&out_of_fold, &labels);
    let mut metrics = QualityReport::evaluate(
        format!("stratified {k}-fold cross-validation (out-of-fold predictions)"),
        &out_of_fold,
        &labels,
        threshold,
    );
    metrics.fold_roc_auc = fold_roc_auc;

    progress(TrainProgress::Final);
    let all_rows: Vec<usize> = (0..labels.len()).collect();
    let fitted = fit(&raw, &labels, &all_rows, options)?;
    let training_data = DataFingerprint {
        rows: labels.len(),
        churners,
        hash: fingerprint(&raw, &labels),
    };
    let features: Vec<FeatureWeight> = options
        .features
        .iter()
        .zip(&fitted.weights)
        .map(|(&feature, w)| FeatureWeight {
            feature,
            ..w.clone()
        })
        .collect();
    let mut model = ChurnModel {
        schema_version: MODEL_SCHEMA_VERSION,
        version: String::new(),
        created_at,
        reference_date,
        features,
        intercept: fitted.intercept,
        threshold,
        hyperparameters: Hyperparameters {
            l2: options.l2,
            folds: k,
            seed: options.seed,
            threshold_rule: options.threshold_rule.describe(),
        },
        metrics,
        training_data,
        score_deciles: deciles(
            &all_rows
                .iter()
                .map(|&i| fitted.probability(raw.row(i)))
                .collect::<Vec<_>>(),
        ),
        integrity: Default::default(),
    };
    model.version = version_of(&model);
    model.seal();
    Ok(model)
}

/// The nine inner decile edges of a set of scores.
fn deciles(scores: &[f64]) -> Vec<f64> {
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    (1..10)
        .map(|d| sorted[(d * sorted.len() / 10).min(sorted.len() - 1)])
        .collect()
}

fn feature_matrix(
    customers: &[Customer],
    features: &[Feature],
    reference: NaiveDateTime,
) -> Array2<f64> {
    Array2::from_shape_fn((customers.len(), features.len()), |(i, j)| {
        features[j].value(&customers[i], reference)
    })
}

/// Assigns each row a fold so that every fold has the same share of churners.
pub fn stratified_folds(labels: &[bool], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut folds = vec![0; labels.len()];
    for class in [true, false] {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rows.shuffle(&mut rng);
        for (n, i) in rows.into_iter().enumerate() {
            folds[i] = n % k;
        }
    }
    folds
}

struct Fitted {
    /// Scaling and coefficient per feature; the feature itself is filled in by the caller.
    weights: Vec<FeatureWeight>,
    intercept: f64,
}

impl Fitted {
    fn probability(&self, row: ndarray::ArrayView1<f64>) -> f64 {
        let z = row
            .iter()
            .zip(&self.weights)
            .fold(self.intercept, |z, (x, w)| {
                z + w.coefficient * (x - w.mean) / w.std_dev
            });
        crate::scoring::sigmoid(z)
    }
}

/// Standardizes with statistics of `rows` only (no leakage from held-out rows), then fits.
fn fit(
    raw: &Array2<f64>,
    labels: &[bool],
    rows: &[usize],
    options: &TrainOptions,
) -> Result<Fitted, TrainError> {
    let x = raw.select(ndarray::Axis(0), rows);
    let n = x.nrows() as f64;
    let mut weights: Vec<FeatureWeight> = x
        .columns()
        .into_iter()
        .map(|col| {
            let mean = col.sum() / n;
            let variance = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            // A constant column carries no information; a unit scale keeps it harmless.
            let std_dev = if variance > 0.0 { variance.sqrt() } else { 1.0 };
            FeatureWeight {
                feature: Feature::Age,
                mean,
                std_dev,
                coefficient: 0.0,
            }
        })
        .collect();
    let standardized = Array2::from_shape_fn(x.dim(), |(i, j)| {
        (x[(i, j)] - weights[j].mean) / weights[j].std_dev
    });
    let y: Array1<bool> = rows.iter().map(|&i| labels[i]).collect();
    let dataset = Dataset::new(standardized, y);
    let fitted = LogisticRegression::default()
        .alpha(options.l2)
        .max_iterations(options.max_iterations)
        .fit(&dataset)
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    // linfa models the probability of its "positive" class, which is the larger one (no churn
    // in practice): flip the signs so that our weights always speak of churn.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    for (w, c) in weights.iter_mut().zip(fitted.params()) {
        w.coefficient = sign * c;
    }
    Ok(Fitted {
        weights,
        intercept: sign * fitted.intercept(),
    })
}

/// 64-bit FNV-1a: tiny, dependency-free and stable across platforms and releases.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

fn fingerprint(raw: &Array2<f64>, labels: &[bool]) -> String {
    let mut h = Fnv::new();
    for (row, &y) in raw.rows().into_iter().zip(labels) {
        for v in row {
            h.write(&v.to_bits().to_le_bytes());
        }
        h.write(&[u8::from(y)]);
    }
    h.hex()
}

/// The content hash that names a model: same data and parameters, same version.
fn version_of(model: &ChurnModel) -> String {
    let mut h = Fnv::new();
    h.write(model.training_data.hash.as_bytes());
    for w in &model.features {
        h.write(w.feature.name().as_bytes());
        for v in [w.mean, w.std_dev, w.coefficient] {
            h.write(&v.to_bits().to_le_bytes());
        }
    }
    for v in [model.intercept, model.threshold, model.hyperparameters.l2] {
        h.write(&v.to_bits().to_le_bytes());
    }
    format!("m-{}", &h.hex()[..12])
}

#[cfg(test)]
mod tests;
