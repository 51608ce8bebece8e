//! Champion against challenger on the same labelled records: the duel's statistics and the
//! sequential decision that promotes (or rolls back) a model.
//!
//! Feed every labelled record scored by both models to [`Duel::observe`]; ask
//! [`Duel::decision`] after every window (cheap, and valid however often it is asked); ask
//! [`Duel::report`] when the dashboard needs the figures.
//!
//! **The decision** is an always-valid confidence sequence ([`sequential`]) for the mean paired
//! Brier reduction, champion's (p − y)² minus challenger's, which lies in [−1, 1] and is positive
//! when the challenger is better. Brier is a proper score, so a model closer to the true
//! probabilities wins on average; log loss is proper too but unbounded, which no
//! distribution-free sequence can handle. The sequence holds at every sample size at once with
//! probability 1 − alpha (two-sided, alpha / 2 per verdict), so checking after every window and
//! acting on the first verdict keeps the error rate at most alpha / 2 in each direction.
//! No verdict before [`DuelConfig::min_records`] records with at least
//! [`DuelConfig::min_per_class`] churners and stayers.
//!
//! For rollback, the analytics starts a new duel after a promotion with the promoted model as
//! champion and the one it replaced as challenger: `ChallengerBetter` there means "the promoted
//! model is worse than the one it replaced".
//!
//! **The report** gives each model's AUC, log loss, Brier score and expected calibration error,
//! and the paired gains (AUC by DeLong's paired variance, log loss and Brier by per-record
//! differences), with fixed-sample `1 − alpha` intervals: for reading, not for deciding.
//!
//! **Memory** is bounded: running sums for everything but AUC, and for AUC a
//! [`auc::PairedSample`] of at most [`DuelConfig::sample_capacity`] records (24 bytes each,
//! 480 KB at the default 20,000), exact below it and an evenly thinned sample above it.

pub mod auc;
pub mod metrics;
pub mod normal;
pub mod pairing;
pub mod sequential;
#[cfg(feature = "train")]
pub mod simulation;

use serde::{Deserialize, Serialize};

use auc::{paired_delong, Paired, PairedSample};
use metrics::{Calibration, Estimate, Moments};
use sequential::BoundedMeanSequence;

/// Probabilities are clipped to [ε, 1 − ε] for log loss (scikit-learn's ε), so a confident
/// mistake costs ~34.5 nats instead of infinity.
const LOG_LOSS_EPSILON: f64 = 1e-15;

/// Where the confidence sequence is tightest, in squared Brier differences: with a typical
/// per-record spread of 0.03–0.1 that is a few hundred to a few thousand records, where
/// decisions are expected. Fixed in advance; it changes the width, never the validity.
const SEQUENCE_V_MIN: f64 = 1.0;

/// How a duel decides.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DuelConfig {
    /// The chance of any wrong verdict, both directions together, however often one looks.
    pub alpha: f64,
    /// No verdict before this many labelled records.
    pub min_records: u64,
    /// Nor before this many churners and this many stayers.
    pub min_per_class: u64,
    /// Most records kept for AUC (rounded up to even).
    pub sample_capacity: usize,
}

impl Default for DuelConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            min_records: 500,
            min_per_class: 50,
            sample_capacity: 20_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DuelError {
    #[error("the {model}'s probability must be a number between 0 and 1, got {value}")]
    Probability { model: &'static str, value: f64 },
    #[error("alpha must be between 0 and 0.5 (e.g. 0.05), got {0}")]
    Alpha(f64),
}

/// The outcome of a duel so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Undecided,
    ChallengerBetter,
    ChampionBetter,
}

/// What the verdict was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Mean over records of champion's (p − y)² − challenger's (p − y)²: positive favours the
    /// challenger.
    BrierReduction,
}

/// The statistical test behind a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SequentialTest {
    /// Howard et al. (2021) empirical-Bernstein confidence sequence, polynomial stitching.
    EmpiricalBernsteinConfidenceSequence,
}

impl SequentialTest {
    pub fn describe(self) -> &'static str {
        match self {
            Self::EmpiricalBernsteinConfidenceSequence => {
                "empirical-Bernstein confidence sequence (Howard, Ramdas, McAuliffe & Sekhon \
                 2021, polynomial stitching), valid under continuous monitoring"
            }
        }
    }
}

/// The evidence for a verdict, as it goes into a promotion or rollback record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Labelled records both models scored.
    pub records: u64,
    pub churners: u64,
    pub metric: Metric,
    /// The metric's running mean (None before the first record).
    pub estimate: Option<f64>,
    /// The confidence sequence at this sample size (None before the first record).
    pub interval: Option<(f64, f64)>,
    pub test: SequentialTest,
    pub alpha: f64,
    pub min_records: u64,
    pub min_per_class: u64,
}

/// A verdict and why.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub evidence: Evidence,
}

/// One model's figures on the duel's records.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelQuality {
    /// None until the AUC sample has two churners and two stayers.
    pub auc: Option<Estimate>,
    pub log_loss: Estimate,
    pub brier: Estimate,
    /// Expected calibration error over ten equal-width bins.
    pub calibration_error: Estimate,
}

/// How much better the challenger is, positive when it is: AUC challenger − champion, log loss
/// and Brier champion − challenger, each from per-record pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gains {
    /// DeLong's paired test on the AUC sample.
    pub auc: Option<Estimate>,
    pub log_loss: Estimate,
    pub brier: Estimate,
}

/// The duel's figures, with fixed-sample intervals at `confidence` (1 − alpha).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DuelReport {
    pub records: u64,
    pub churners: u64,
    /// Records behind the AUC figures (all of them up to the sample's capacity).
    pub auc_records: usize,
    pub confidence: f64,
    pub champion: ModelQuality,
    pub challenger: ModelQuality,
    pub gains: Gains,
    pub decision: Decision,
}

/// Running measures of one model.
#[derive(Debug, Clone, Default, PartialEq)]
struct Tally {
    brier: Moments,
    log_loss: Moments,
    calibration: Calibration,
}

impl Tally {
    fn push(&mut self, p: f64, label: bool) -> (f64, f64) {
        let brier = (p - f64::from(u8::from(label))).powi(2);
        let clipped = p.clamp(LOG_LOSS_EPSILON, 1.0 - LOG_LOSS_EPSILON);
        let log_loss = -if label { clipped } else { 1.0 - clipped }.ln();
        self.brier.push(brier);
        self.log_loss.push(log_loss);
        self.calibration.push(p, label);
        (brier, log_loss)
    }

    fn quality(&self, z: f64, auc: Option<Estimate>) -> Option<ModelQuality> {
        Some(ModelQuality {
            auc,
            log_loss: self.log_loss.estimate(z)?,
            brier: self.brier.estimate(z)?,
            calibration_error: self.calibration.expected_error(z)?,
        })
    }
}

/// Champion and challenger measured on the same labelled records. See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Duel {
    config: DuelConfig,
    churners: u64,
    champion: Tally,
    challenger: Tally,
    brier_gain: Moments,
    log_loss_gain: Moments,
    sequence: BoundedMeanSequence,
    sample: PairedSample,
}

impl Duel {
    pub fn new(config: DuelConfig) -> Result<Self, DuelError> {
        if !(config.alpha > 0.0 && config.alpha <= 0.5) {
            return Err(DuelError::Alpha(config.alpha));
        }
        Ok(Self {
            config,
            churners: 0,
            champion: Tally::default(),
            challenger: Tally::default(),
            brier_gain: Moments::default(),
            log_loss_gain: Moments::default(),
            sequence: BoundedMeanSequence::new(-1.0, 1.0, SEQUENCE_V_MIN),
            sample: PairedSample::new(config.sample_capacity),
        })
    }

    pub fn config(&self) -> &DuelConfig {
        &self.config
    }

    /// One labelled record scored by both models. A probability that is not a number in
    /// [0, 1] is refused and nothing is counted.
    pub fn observe(
        &mut self,
        label: bool,
        champion_p: f64,
        challenger_p: f64,
    ) -> Result<(), DuelError> {
        for (model, value) in [("champion", champion_p), ("challenger", challenger_p)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(DuelError::Probability { model, value });
            }
        }
        let (brier_a, log_loss_a) = self.champion.push(champion_p, label);
        let (brier_b, log_loss_b) = self.challenger.push(challenger_p, label);
        self.brier_gain.push(brier_a - brier_b);
        self.log_loss_gain.push(log_loss_a - log_loss_b);
        self.sequence.push(brier_a - brier_b);
        self.sample.push(Paired {
            label,
            champion: champion_p,
            challenger: challenger_p,
        });
        self.churners += u64::from(label);
        Ok(())
    }

    /// Labelled records observed.
    pub fn records(&self) -> u64 {
        self.sequence.count()
    }

    /// The verdict so far, in constant time.
    pub fn decision(&self) -> Decision {
        let records = self.records();
        let interval = self.sequence.interval(self.config.alpha);
        let evidence = Evidence {
            records,
            churners: self.churners,
            metric: Metric::BrierReduction,
            estimate: self.sequence.mean(),
            interval,
            test: SequentialTest::EmpiricalBernsteinConfidenceSequence,
            alpha: self.config.alpha,
            min_records: self.config.min_records,
            min_per_class: self.config.min_per_class,
        };
        let enough = records >= self.config.min_records
            && self.churners >= self.config.min_per_class
            && records - self.churners >= self.config.min_per_class;
        let verdict = match interval {
            Some((low, _)) if enough && low > 0.0 => Verdict::ChallengerBetter,
            Some((_, high)) if enough && high < 0.0 => Verdict::ChampionBetter,
            _ => Verdict::Undecided,
        };
        Decision { verdict, evidence }
    }

    /// Every figure with its interval; None before two records. Sorts the AUC sample:
    /// O(s log s) for s ≤ `sample_capacity`.
    pub fn report(&self) -> Option<DuelReport> {
        let z = normal::two_sided_z(self.config.alpha);
        let around = |value: f64, variance: f64, range: (f64, f64)| {
            let half = z * variance.max(0.0).sqrt();
            Estimate {
                value,
                low: (value - half).max(range.0),
                high: (value + half).min(range.1),
            }
        };
        let auc = paired_delong(self.sample.records());
        Some(DuelReport {
            records: self.records(),
            churners: self.churners,
            auc_records: self.sample.records().len(),
            confidence: 1.0 - self.config.alpha,
            champion: self.champion.quality(
                z,
                auc.map(|a| around(a.champion, a.champion_variance, (0.0, 1.0))),
            )?,
            challenger: self.challenger.quality(
                z,
                auc.map(|a| around(a.challenger, a.challenger_variance, (0.0, 1.0))),
            )?,
            gains: Gains {
                auc: auc.map(|a| {
                    around(
                        a.challenger - a.champion,
                        a.difference_variance(),
                        (-1.0, 1.0),
                    )
                }),
                log_loss: self.log_loss_gain.estimate(z)?,
                brier: self.brier_gain.estimate(z)?,
            },
            decision: self.decision(),
        })
    }
}

#[cfg(test)]
mod tests;
