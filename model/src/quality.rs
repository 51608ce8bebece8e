//! Classification metrics for probabilistic predictions. Pure functions over slices, so the
//! trainer, the live quality monitor and the tests share one implementation.

use serde::{Deserialize, Serialize};

/// Counts at one decision threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub true_positive: usize,
    pub false_positive: usize,
    pub true_negative: usize,
    pub false_negative: usize,
}

impl Confusion {
    pub fn at(probabilities: &[f64], labels: &[bool], threshold: f64) -> Self {
        let mut c = Confusion::default();
        for (&p, &y) in probabilities.iter().zip(labels) {
            c.count(p >= threshold, y);
        }
        c
    }

    /// Counts one prediction against its true outcome.
    pub fn count(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.true_positive += 1,
            (true, false) => self.false_positive += 1,
            (false, false) => self.true_negative += 1,
            (false, true) => self.false_negative += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.true_positive + self.false_positive + self.true_negative + self.false_negative
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.true_positive + self.true_negative, self.total())
    }

    pub fn precision(&self) -> f64 {
        ratio(self.true_positive, self.true_positive + self.false_positive)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.true_positive, self.true_positive + self.false_negative)
    }

    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Area under the ROC curve: the chance that a random churner scores above a random stayer,
/// ties counting half (the Mann-Whitney U statistic). NaN when one class is absent.
pub fn roc_auc(probabilities: &[f64], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    // Average ranks over ties, then sum the positives' ranks.
    let mut rank_sum_positive = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && probabilities[order[j + 1]] == probabilities[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum_positive += average_rank;
            }
        }
        i = j + 1;
    }
    let positives = labels.iter().filter(|&&y| y).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    (rank_sum_positive - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Mean negative log-likelihood, with probabilities clipped away from 0 and 1.
pub fn log_loss(probabilities: &[f64], labels: &[bool]) -> f64 {
    const EPS: f64 = 1e-15;
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = p.clamp(EPS, 1.0 - EPS);
            if y {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    total / probabilities.len().max(1) as f64
}

/// Mean squared error of the probabilities.
pub fn brier(probabilities: &[f64], labels: &[bool]) -> f64 {
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &y)| (p - f64::from(u8::from(y))).powi(2))
        .sum();
    total / probabilities.len().max(1) as f64
}

/// Predicted against observed churn in one slice of customers ranked by score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub count: usize,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// Calibration table: customers sorted by predicted probability, cut into `bins` equal slices
/// (deciles for 10).
pub fn calibration(probabilities: &[f64], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    let n = order.len();
    (0..bins)
        .map(|b| &order[b * n / bins..(b + 1) * n / bins])
        .filter(|slice| !slice.is_empty())
        .map(|slice| CalibrationBin {
            count: slice.len(),
            mean_predicted: slice.iter().map(|&k| probabilities[k]).sum::<f64>()
                / slice.len() as f64,
            observed_rate: slice.iter().filter(|&&k| labels[k]).count() as f64 / slice.len() as f64,
        })
        .collect()
}

/// Every way to cut the ranking: lowering the threshold past each distinct score, from the top,
/// gives (threshold, true positives, false positives). Ties are never split.
fn cuts<'a>(
    probabilities: &'a [f64],
    labels: &'a [bool],
) -> impl Iterator<Item = (f64, usize, usize)> + 'a {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    (0..order.len()).filter_map(move |i| {
        let k = order[i];
        if labels[k] {
            tp += 1;
        } else {
            fp += 1;
        }
        let tie_follows = i + 1 < order.len() && probabilities[order[i + 1]] == probabilities[k];
        (!tie_follows).then_some((probabilities[k], tp, fp))
    })
}

/// The threshold that maximizes F1; candidates are the observed probabilities themselves.
pub fn best_f1_threshold(probabilities: &[f64], labels: &[bool]) -> f64 {
    let positives = labels.iter().filter(|&&y| y).count();
    let (mut best_f1, mut best_threshold) = (-1.0, 0.5);
    for (threshold, tp, fp) in cuts(probabilities, labels) {
        let f1 = 2.0 * tp as f64 / (2 * tp + fp + (positives - tp)) as f64;
        if f1 > best_f1 {
            best_f1 = f1;
            best_threshold = threshold;
        }
    }
    best_threshold
}

/// The threshold with the lowest total cost when a missed churner costs `missed_churner_cost`
/// times as much as a false alarm (e.g. 5: losing a customer hurts five times a wasted call).
pub fn min_cost_threshold(probabilities: &[f64], labels: &[bool], missed_churner_cost: f64) -> f64 {
    let positives = labels.iter().filter(|&&y| y).count();
    // Threshold above every score: nobody flagged, every churner missed.
    let mut best_cost = positives as f64 * missed_churner_cost;
    let mut best_threshold = f64::INFINITY;
    for (threshold, tp, fp) in cuts(probabilities, labels) {
        let cost = fp as f64 + (positives - tp) as f64 * missed_churner_cost;
        if cost < best_cost {
            best_cost = cost;
            best_threshold = threshold;
        }
    }
    best_threshold.min(1.0)
}

/// The quality report stored in a model file and shown by `train` and `model info`. Every
/// figure says how it was obtained: `method` for the threshold-free ones (ROC-AUC, log loss,
/// Brier, calibration), `threshold_method` for those at a threshold (accuracy, precision,
/// recall, F1, confusion), and `accuracy_at_half` is at 0.5 by definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// How these figures were obtained, e.g. "stratified 5-fold cross-validation".
    pub method: String,
    /// How the threshold behind accuracy, precision, recall, F1 and the confusion matrix was
    /// chosen, e.g. "threshold chosen inside each training fold, applied to its held-out fold".
    #[serde(default)]
    pub threshold_method: String,
    pub rows: usize,
    pub roc_auc: f64,
    /// ROC-AUC of each fold, to show the spread.
    pub fold_roc_auc: Vec<f64>,
    /// The threshold each fold's held-out predictions were judged at (nested evaluation).
    #[serde(default)]
    pub fold_thresholds: Vec<f64>,
    /// Accuracy of the same predictions at the conventional 0.5 (what scikit-learn's
    /// `accuracy_score` of `predict` reports), for comparison.
    #[serde(default)]
    pub accuracy_at_half: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub log_loss: f64,
    pub brier: f64,
    pub threshold: f64,
    pub confusion: Confusion,
    pub calibration: Vec<CalibrationBin>,
}

impl QualityReport {
    pub fn evaluate(
        method: impl Into<String>,
        probabilities: &[f64],
        labels: &[bool],
        threshold: f64,
    ) -> Self {
        let confusion = Confusion::at(probabilities, labels, threshold);
        QualityReport {
            method: method.into(),
            threshold_method: String::new(),
            rows: labels.len(),
            roc_auc: roc_auc(probabilities, labels),
            fold_roc_auc: Vec::new(),
            fold_thresholds: Vec::new(),
            accuracy_at_half: Confusion::at(probabilities, labels, 0.5).accuracy(),
            accuracy: confusion.accuracy(),
            precision: confusion.precision(),
            recall: confusion.recall(),
            f1: confusion.f1(),
            log_loss: log_loss(probabilities, labels),
            brier: brier(probabilities, labels),
            threshold,
            confusion,
            calibration: calibration(probabilities, labels, 10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: [f64; 6] = [0.9, 0.8, 0.7, 0.6, 0.3, 0.1];
    const Y: [bool; 6] = [true, false, true, false, false, false];

    #[test]
    fn auc_counts_correctly_ordered_pairs() {
        // Positives 0.9 and 0.7; negatives 0.8, 0.6, 0.3, 0.1: 4 + 3 of 8 pairs in order.
        assert!((roc_auc(&P, &Y) - 7.0 / 8.0).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), 0.5);
        assert!(roc_auc(&[0.5], &[true]).is_nan());
    }

    #[test]
    fn confusion_and_rates_at_a_threshold() {
        let c = Confusion::at(&P, &Y, 0.65);
        assert_eq!(
            (
                c.true_positive,
                c.false_positive,
                c.true_negative,
                c.false_negative
            ),
            (2, 1, 3, 0)
        );
        assert!((c.accuracy() - 5.0 / 6.0).abs() < 1e-12);
        assert!((c.precision() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.recall(), 1.0);
        assert!((c.f1() - 0.8).abs() < 1e-12);
    }

    #[test]
    fn log_loss_and_brier_by_hand() {
        let p = [0.8, 0.4];
        let y = [true, false];
        let expected = (-(0.8f64).ln() - (0.6f64).ln()) / 2.0;
        assert!((log_loss(&p, &y) - expected).abs() < 1e-12);
        assert!((brier(&p, &y) - (0.04 + 0.16) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn the_best_f1_threshold_is_found() {
        // Cutting at 0.7 predicts {0.9, 0.8, 0.7}: tp 2, fp 1, fn 0 -> F1 0.8, the best.
        assert_eq!(best_f1_threshold(&P, &Y), 0.7);
    }

    #[test]
    fn the_cheapest_threshold_follows_the_cost_ratio() {
        // A miss costs 2: flag {0.9, 0.8, 0.7} -> 1 false alarm + 0 missed = 1, the cheapest.
        assert_eq!(min_cost_threshold(&P, &Y, 2.0), 0.7);
        // Equal costs: flagging only 0.9 (1 miss) already costs 1, and ties keep the stricter cut.
        assert_eq!(min_cost_threshold(&P, &Y, 1.0), 0.9);
        // A miss is cheaper than the false alarm in front of it: flag nobody.
        assert_eq!(min_cost_threshold(&[0.9, 0.8], &[false, true], 0.5), 1.0);
    }

    #[test]
    fn calibration_cuts_equal_slices() {
        let bins = calibration(&P, &Y, 3);
        assert_eq!(bins.len(), 3);
        assert_eq!(bins[0].count, 2);
        assert!((bins[0].mean_predicted - 0.2).abs() < 1e-12);
        assert_eq!(bins[2].observed_rate, 0.5);
    }
}
