//! Training: standardized features, L2-regularized logistic regression (linfa-logistic),
//! stratified k-fold cross-validation with the decision threshold chosen inside each fold
//! (nested, so the figures at a threshold are measured on rows it never saw), an ablation that
//! keeps a derived feature only when it beats the noise, and a convergence check.

use chrono::NaiveDateTime;
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::features::Feature;
use crate::model_file::{
    Ablation, ChurnModel, Convergence, DataFingerprint, FeatureWeight, Hyperparameters,
    MODEL_SCHEMA_VERSION,
};
use crate::quality::{best_f1_threshold, min_cost_threshold, roc_auc, Confusion, QualityReport};
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
    /// Candidate features. Derived ones (tenure) stay only when the ablation keeps them.
    pub features: Vec<Feature>,
    /// L2 penalty (linfa's alpha) = 1/C in scikit-learn's terms: 1.0 is its default C = 1.
    pub l2: f64,
    pub folds: usize,
    pub seed: u64,
    pub max_iterations: u64,
    pub threshold_rule: ThresholdRule,
    /// Fail instead of warning when a fit does not converge.
    pub strict: bool,
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
            strict: false,
        }
    }
}

/// Gradient norm, per training row, above which a fit has not converged. linfa stops at an
/// absolute norm of 1e-4 over the summed loss; per row this is looser by the row count, so a
/// fit that stopped there always passes, and one cut short by `max_iterations` far from the
/// optimum does not.
pub const GRADIENT_TOLERANCE_PER_ROW: f64 = 1e-4;

/// A derived feature stays when leaving it out lowers the cross-validated ROC-AUC by more than
/// this many standard errors of the per-fold differences ...
const NOISE_STANDARD_ERRORS: f64 = 2.0;
/// ... and by more than this, a gain too small to matter against the feature's costs (tenure
/// grows past its training range as the model ages).
const MIN_USEFUL_AUC_GAIN: f64 = 0.002;

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
    #[error(
        "the training data is perfectly separable and --l2 is 0: the weights grow without bound and the probabilities mean nothing; use --l2 above 0 (e.g. 1, scikit-learn's C = 1)"
    )]
    Separable,
    #[error(
        "the fit did not converge: gradient norm {gradient_norm:.3e} above the tolerance {tolerance:.3e} after {max_iterations} iterations; allow more iterations with --max-iterations or raise --l2"
    )]
    NotConverged {
        gradient_norm: f64,
        tolerance: f64,
        max_iterations: u64,
    },
}

/// Progress of a training run, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum TrainProgress {
    Fold {
        done: usize,
        of: usize,
    },
    /// Cross-validating without a derived feature, to see whether it earns its place.
    Ablation(Feature),
    Final,
}

/// Chooses a decision threshold from predictions of the rows `rows` (indices into the training
/// data) with their labels. Passed around rather than called directly so that a test can see
/// which rows every choice saw.
type Chooser<'a> = dyn FnMut(&[usize], &[f64], &[bool]) -> f64 + 'a;

/// Trains a model on labelled customers; `created_at` is passed in because this crate does no I/O.
pub fn train(
    customers: &[Customer],
    options: &TrainOptions,
    created_at: String,
    progress: impl FnMut(TrainProgress),
) -> Result<ChurnModel, TrainError> {
    let rule = options.threshold_rule;
    train_with(
        customers,
        options,
        created_at,
        progress,
        &mut |_, probabilities, labels| rule.choose(probabilities, labels),
    )
}

fn train_with(
    customers: &[Customer],
    options: &TrainOptions,
    created_at: String,
    mut progress: impl FnMut(TrainProgress),
    chooser: &mut Chooser,
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

    // The training rows' tenure is measured to the data's as-of date: the newest onboard date
    // (the export holds no other date). Live records measure it to their scoring time.
    let reference_date = customers
        .iter()
        .map(|c| c.onboard_date)
        .max()
        .expect("checked non-empty");
    let mut candidates: Vec<Feature> = Vec::new();
    for &feature in &options.features {
        if !candidates.contains(&feature) {
            candidates.push(feature);
        }
    }
    let folds = stratified_folds(&labels, k, options.seed);
    let x = feature_matrix(customers, &candidates, reference_date);
    let mut cv = cross_validate(
        &x,
        &labels,
        &folds,
        k,
        options,
        Some(chooser),
        &mut progress,
    )?;

    // Ablation: every derived feature must beat the noise of the folds, on the same folds.
    let mut ablation = Vec::new();
    let mut features = candidates.clone();
    for (j, &feature) in candidates.iter().enumerate() {
        if feature.column().is_some() || candidates.len() < 2 {
            continue;
        }
        progress(TrainProgress::Ablation(feature));
        let others: Vec<usize> = (0..candidates.len()).filter(|&c| c != j).collect();
        let without = cross_validate(
            &x.select(ndarray::Axis(1), &others),
            &labels,
            &folds,
            k,
            options,
            None,
            &mut |_| {},
        )?;
        let entry = ablate(feature, &cv.fold_roc_auc, &without.fold_roc_auc);
        if !entry.kept {
            features.retain(|&f| f != feature);
        }
        ablation.push(entry);
    }
    let x = if features.len() < candidates.len() {
        let kept: Vec<usize> = (0..candidates.len())
            .filter(|&j| features.contains(&candidates[j]))
            .collect();
        let x = x.select(ndarray::Axis(1), &kept);
        cv = cross_validate(&x, &labels, &folds, k, options, Some(chooser), &mut |_| {})?;
        x
    } else {
        x
    };

    // The threshold the model ships with: chosen on every out-of-fold prediction. The figures
    // at a threshold were measured at each fold's own, chosen without its held-out rows.
    let all_rows: Vec<usize> = (0..labels.len()).collect();
    let threshold = chooser(&all_rows, &cv.out_of_fold, &labels);
    let metrics = cv.report(&labels, k, options.threshold_rule, threshold);

    progress(TrainProgress::Final);
    let fitted = fit(&x, &labels, &all_rows, options)?;
    let convergence = Convergence {
        gradient_norm: fitted.gradient_norm,
        tolerance: GRADIENT_TOLERANCE_PER_ROW * labels.len() as f64,
        worst_fold_gradient_norm: cv.worst_relative_gradient * labels.len() as f64,
    };
    if options.strict && !convergence.converged() {
        return Err(TrainError::NotConverged {
            gradient_norm: convergence
                .gradient_norm
                .max(convergence.worst_fold_gradient_norm),
            tolerance: convergence.tolerance,
            max_iterations: options.max_iterations,
        });
    }
    let training_data = DataFingerprint {
        rows: labels.len(),
        churners,
        hash: fingerprint(&x, &labels),
    };
    let features: Vec<FeatureWeight> = features
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
        created_at: String::new(),
        reference_date,
        features,
        intercept: fitted.intercept,
        threshold,
        hyperparameters: Hyperparameters {
            l2: options.l2,
            folds: k,
            seed: options.seed,
            threshold_rule: options.threshold_rule.describe(),
            max_iterations: options.max_iterations,
        },
        metrics,
        training_data,
        ablation,
        convergence,
        score_deciles: deciles(
            &all_rows
                .iter()
                .map(|&i| fitted.probability(x.row(i)))
                .collect::<Vec<_>>(),
        ),
        integrity: Default::default(),
    };
    // Named by the hash of everything that makes it, but for the time of training.
    model.version = format!("m-{}", &model.content_hash()[..12]);
    model.created_at = created_at;
    model.seal();
    Ok(model)
}

/// Whether a derived feature beats the noise: paired per-fold ROC-AUC differences.
fn ablate(feature: Feature, with: &[f64], without: &[f64]) -> Ablation {
    let n = with.len() as f64;
    let diffs: Vec<f64> = with.iter().zip(without).map(|(a, b)| a - b).collect();
    let gain = diffs.iter().sum::<f64>() / n;
    let variance = diffs.iter().map(|d| (d - gain).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let standard_error = (variance / n).sqrt();
    Ablation {
        feature,
        auc_with: with.iter().sum::<f64>() / n,
        auc_without: without.iter().sum::<f64>() / n,
        standard_error,
        kept: gain > (NOISE_STANDARD_ERRORS * standard_error).max(MIN_USEFUL_AUC_GAIN),
    }
}

/// What cross-validation measured.
struct CrossValidation {
    /// Every row's probability from the model that did not see it.
    out_of_fold: Vec<f64>,
    fold_roc_auc: Vec<f64>,
    /// Per fold, the threshold chosen inside its training part (nested runs only).
    fold_thresholds: Vec<f64>,
    /// Per row, its out-of-fold prediction at its fold's threshold (nested runs only).
    predicted: Vec<bool>,
    /// The largest gradient norm per training row among the fits.
    worst_relative_gradient: f64,
}

impl CrossValidation {
    fn report(
        &self,
        labels: &[bool],
        k: usize,
        rule: ThresholdRule,
        threshold: f64,
    ) -> QualityReport {
        let mut metrics = QualityReport::evaluate(
            format!("stratified {k}-fold cross-validation, out-of-fold predictions"),
            &self.out_of_fold,
            labels,
            threshold,
        );
        let mut confusion = Confusion::default();
        for (&predicted, &actual) in self.predicted.iter().zip(labels) {
            confusion.count(predicted, actual);
        }
        metrics.threshold_method = format!(
            "{k}-fold CV, threshold chosen inside each training fold ({}, by inner cross-validation), never on the fold it is applied to",
            rule.describe()
        );
        metrics.fold_roc_auc = self.fold_roc_auc.clone();
        metrics.fold_thresholds = self.fold_thresholds.clone();
        metrics.accuracy = confusion.accuracy();
        metrics.precision = confusion.precision();
        metrics.recall = confusion.recall();
        metrics.f1 = confusion.f1();
        metrics.confusion = confusion;
        metrics
    }
}

/// Out-of-fold predictions over `folds`. With a chooser, each fold's threshold is chosen by an
/// inner cross-validation of its training part only, and its held-out rows judged at it.
fn cross_validate(
    x: &Array2<f64>,
    labels: &[bool],
    folds: &[usize],
    k: usize,
    options: &TrainOptions,
    mut chooser: Option<&mut Chooser>,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<CrossValidation, TrainError> {
    let mut cv = CrossValidation {
        out_of_fold: vec![0.0; labels.len()],
        fold_roc_auc: Vec::with_capacity(k),
        fold_thresholds: Vec::with_capacity(k),
        predicted: vec![false; labels.len()],
        worst_relative_gradient: 0.0,
    };
    for fold in 0..k {
        let (train_rows, test_rows): (Vec<usize>, Vec<usize>) =
            (0..labels.len()).partition(|&i| folds[i] != fold);
        let fitted = fit(x, labels, &train_rows, options)?;
        cv.worst_relative_gradient = cv
            .worst_relative_gradient
            .max(fitted.gradient_norm / train_rows.len() as f64);
        let test_labels: Vec<bool> = test_rows.iter().map(|&i| labels[i]).collect();
        let test_probabilities: Vec<f64> = test_rows
            .iter()
            .map(|&i| fitted.probability(x.row(i)))
            .collect();
        for (&i, &p) in test_rows.iter().zip(&test_probabilities) {
            cv.out_of_fold[i] = p;
        }
        cv.fold_roc_auc
            .push(roc_auc(&test_probabilities, &test_labels));
        if let Some(chooser) = chooser.as_deref_mut() {
            let seed = options.seed.wrapping_add(1 + fold as u64);
            let threshold = inner_threshold(x, labels, &train_rows, k, seed, options, chooser)?;
            for (&i, &p) in test_rows.iter().zip(&test_probabilities) {
                cv.predicted[i] = p >= threshold;
            }
            cv.fold_thresholds.push(threshold);
        }
        progress(TrainProgress::Fold {
            done: fold + 1,
            of: k,
        });
    }
    Ok(cv)
}

/// A threshold chosen from the rows `train_rows` alone: on the out-of-fold predictions of an
/// inner stratified cross-validation, or, with too few of a class for two inner folds, on the
/// in-sample predictions (optimistic, but still blind to the held-out fold).
fn inner_threshold(
    x: &Array2<f64>,
    labels: &[bool],
    train_rows: &[usize],
    k: usize,
    seed: u64,
    options: &TrainOptions,
    chooser: &mut Chooser,
) -> Result<f64, TrainError> {
    let inner_labels: Vec<bool> = train_rows.iter().map(|&i| labels[i]).collect();
    let churners = inner_labels.iter().filter(|&&y| y).count();
    let inner_k = k.min(churners).min(inner_labels.len() - churners);
    let mut probabilities = vec![0.0; train_rows.len()];
    if inner_k >= 2 {
        let inner_folds = stratified_folds(&inner_labels, inner_k, seed);
        for fold in 0..inner_k {
            let (fit_at, predict_at): (Vec<usize>, Vec<usize>) =
                (0..train_rows.len()).partition(|&n| inner_folds[n] != fold);
            let fit_rows: Vec<usize> = fit_at.iter().map(|&n| train_rows[n]).collect();
            let fitted = fit(x, labels, &fit_rows, options)?;
            for n in predict_at {
                probabilities[n] = fitted.probability(x.row(train_rows[n]));
            }
        }
    } else {
        let fitted = fit(x, labels, train_rows, options)?;
        for (n, &i) in train_rows.iter().enumerate() {
            probabilities[n] = fitted.probability(x.row(i));
        }
    }
    Ok(chooser(train_rows, &probabilities, &inner_labels))
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
    as_of: NaiveDateTime,
) -> Array2<f64> {
    Array2::from_shape_fn((customers.len(), features.len()), |(i, j)| {
        features[j].value(&customers[i], as_of)
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
    /// Scaling, range and coefficient per feature; the feature itself is filled in by the caller.
    weights: Vec<FeatureWeight>,
    intercept: f64,
    /// Norm of linfa's objective gradient at the fitted weights, over the fitted rows.
    gradient_norm: f64,
}

impl Fitted {
    fn probability(&self, row: ndarray::ArrayView1<f64>) -> f64 {
        crate::scoring::sigmoid(self.log_odds(row))
    }

    fn log_odds(&self, row: ndarray::ArrayView1<f64>) -> f64 {
        row.iter()
            .zip(&self.weights)
            .fold(self.intercept, |z, (x, w)| {
                z + w.coefficient * (x - w.mean) / w.std_dev
            })
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
                min: col.iter().copied().fold(f64::INFINITY, f64::min),
                max: col.iter().copied().fold(f64::NEG_INFINITY, f64::max),
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
    let mut fitted = Fitted {
        weights,
        intercept: sign * fitted.intercept(),
        gradient_norm: 0.0,
    };
    // linfa's objective: summed log loss + l2/2 |w|^2 (the intercept unpenalized), whose
    // gradient is X'(p - y) + l2 w, and sum(p - y) for the intercept.
    let (x, y) = (dataset.records(), dataset.targets());
    let mut gradient = vec![0.0; fitted.weights.len() + 1];
    let mut separated = true;
    for (row, &churn) in x.rows().into_iter().zip(y) {
        let z = row
            .iter()
            .zip(&fitted.weights)
            .fold(fitted.intercept, |z, (s, w)| z + w.coefficient * s);
        separated &= (z > 0.0) == churn;
        let residual = crate::scoring::sigmoid(z) - f64::from(u8::from(churn));
        for (g, s) in gradient.iter_mut().zip(row) {
            *g += residual * s;
        }
        gradient[fitted.weights.len()] += residual;
    }
    for (g, w) in gradient.iter_mut().zip(&fitted.weights) {
        *g += options.l2 * w.coefficient;
    }
    fitted.gradient_norm = gradient.iter().map(|g| g * g).sum::<f64>().sqrt();
    if options.l2 == 0.0 && separated {
        return Err(TrainError::Separable);
    }
    Ok(fitted)
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

#[cfg(test)]
mod tests;
