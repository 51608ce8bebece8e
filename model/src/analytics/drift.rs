//! Score drift: live scores binned by the training score deciles of the model that made them,
//! compared as a population stability index.

use crate::model_file::ChurnModel;

use super::counts::saturating_total;

/// Population stability index above which scores count as drifting. Industry convention:
/// below 0.1 stable, 0.1–0.2 a moderate shift, above 0.2 a significant one.
pub const PSI_DRIFT_THRESHOLD: f64 = 0.2;

/// Fewest live scores drift is judged on. With no drift at all, a PSI over few scores still
/// exceeds the threshold by chance: over 50 scores 44% of the time, over 90 about 6%, over 100
/// about 3% (the seeded simulation `psi_false_alarms_stay_below_five_percent_from_the_minimum`
/// picks the smallest multiple of ten with at most 5%). Below it, "not enough scores yet".
pub const MIN_DRIFT_SAMPLE: u64 = 100;

/// The training score distribution a model is compared against.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReference {
    pub version: String,
    /// Inner decile edges of the training scores (9 for deciles).
    pub edges: Vec<f64>,
}

impl DriftReference {
    /// The bin a live score counts in: how many edges it reaches.
    pub(super) fn bin(&self, probability: f64) -> usize {
        self.edges
            .iter()
            .filter(|&&edge| probability >= edge)
            .count()
    }
}

/// Here, with the reference, rather than in `model_file`: the model file knows nothing of
/// analytics, so the modules depend on each other one way only.
impl ChurnModel {
    /// What live score drift is measured against.
    pub fn drift_reference(&self) -> Option<DriftReference> {
        (!self.score_deciles.is_empty()).then(|| DriftReference {
            version: self.version.clone(),
            edges: self.score_deciles.clone(),
        })
    }
}

/// Population stability index of observed counts against equal expected shares (the training
/// deciles put 10% of training scores in each bin).
pub fn psi(observed: &[u64]) -> f64 {
    let total = saturating_total(observed);
    if total == 0 || observed.is_empty() {
        return 0.0;
    }
    let expected = 1.0 / observed.len() as f64;
    observed
        .iter()
        .map(|&n| {
            // A small floor keeps empty bins finite, as is customary.
            let actual = (n as f64 / total as f64).max(1e-4);
            (actual - expected) * (actual / expected).ln()
        })
        .sum()
}
