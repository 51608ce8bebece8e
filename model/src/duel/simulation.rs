//! The proof that the duel promotes a better challenger and leaves an equal one alone: seeded
//! streams of labelled records scored by two logistic models, fed to a [`Duel`] window by
//! window as the analytics does, stopping at the first verdict.
//!
//! The world: four correlated features (standard normal, pairwise correlation 0.25), churn drawn
//! from a true logistic model with an intercept set for a 17% churn rate. A model that damps
//! the weight of one feature separates churners less well; the damping is set (by bisection on
//! a large sample) so that the truth's AUC exceeds the damped model's by `delta_auc`.
//! - better: champion damped on feature 3, challenger the truth;
//! - equal: champion damped on feature 3, challenger on feature 4 (exchangeable features with
//!   equal weights: equally good by symmetry, yet different on every record);
//! - worse: the better case with the seats swapped.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Duel, DuelConfig, DuelError, Verdict};
use crate::quality::roc_auc;

const FEATURES: usize = 4;
const CORRELATION: f64 = 0.25;
const WEIGHTS: [f64; FEATURES] = [0.8, 0.5, 1.1, 1.1];
const CHURN_RATE: f64 = 0.17;
/// Records used to set the intercept and the damping, and to measure the true figures.
const DESIGN_RECORDS: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Better,
    Equal,
    Worse,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::Better, Scenario::Equal, Scenario::Worse];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Better => "better",
            Scenario::Equal => "equal",
            Scenario::Worse => "worse",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimulationError {
    #[error(
        "--delta-auc must be between 0 and {max:.3} (dropping the feature entirely), got {asked}"
    )]
    DeltaAuc { asked: f64, max: f64 },
    #[error("--window must be at least 1 record")]
    Window,
    #[error(transparent)]
    Duel(#[from] DuelError),
}

/// The stream's design: the truth and how much the weaker model damps one weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Design {
    pub intercept: f64,
    /// The weaker model's factor on the damped feature's weight (1 = the truth).
    pub damping: f64,
}

/// One scenario's models measured on a large fresh sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    pub churn_rate: f64,
    pub champion_auc: f64,
    pub challenger_auc: f64,
    /// Expected champion Brier − challenger Brier (from the true probabilities, no label noise).
    pub brier_reduction: f64,
}

/// How the runs of one scenario ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub scenario: Scenario,
    pub runs: usize,
    pub promoted: usize,
    pub kept_champion: usize,
    pub undecided: usize,
    /// Records each decided run needed, in run order.
    pub records_to_decision: Vec<u64>,
}

impl Outcome {
    pub fn promoted_rate(&self) -> f64 {
        self.promoted as f64 / self.runs as f64
    }

    pub fn kept_rate(&self) -> f64 {
        self.kept_champion as f64 / self.runs as f64
    }

    pub fn undecided_rate(&self) -> f64 {
        self.undecided as f64 / self.runs as f64
    }

    /// The median number of records to a verdict among runs that reached one.
    pub fn median_records(&self) -> Option<u64> {
        let mut v = self.records_to_decision.clone();
        v.sort_unstable();
        match v.len() {
            0 => None,
            n if n % 2 == 1 => Some(v[n / 2]),
            n => Some((v[n / 2 - 1] + v[n / 2]) / 2),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulationOptions {
    pub runs: usize,
    pub seed: u64,
    /// Most labelled records per run; a run still undecided then counts as undecided.
    pub records: usize,
    /// Records per analytics window: the duel is asked for a verdict after each.
    pub window: usize,
    pub delta_auc: f64,
    pub duel: DuelConfig,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller; 1 − u keeps the logarithm's argument in (0, 1].
    let u: f64 = 1.0 - rng.gen::<f64>();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * rng.gen::<f64>()).cos()
}

/// Four standard normal features with pairwise correlation 0.25 (a shared factor).
fn features(rng: &mut ChaCha8Rng) -> [f64; FEATURES] {
    let shared = standard_normal(rng);
    std::array::from_fn(|_| {
        CORRELATION.sqrt() * shared + (1.0 - CORRELATION).sqrt() * standard_normal(rng)
    })
}

/// The log-odds with feature `damped` (if any) weighted by `damping` times its true weight.
fn logit(x: &[f64; FEATURES], intercept: f64, damped: Option<(usize, f64)>) -> f64 {
    let mut z = intercept;
    for (i, (xi, w)) in x.iter().zip(WEIGHTS).enumerate() {
        let factor = match damped {
            Some((j, k)) if j == i => k,
            _ => 1.0,
        };
        z += factor * w * xi;
    }
    z
}

/// Which feature each seat damps in a scenario (None: the truth).
type Seats = (Option<usize>, Option<usize>);

fn seats(scenario: Scenario) -> Seats {
    match scenario {
        Scenario::Better => (Some(2), None),
        Scenario::Equal => (Some(2), Some(3)),
        Scenario::Worse => (None, Some(2)),
    }
}

/// One labelled record: (label, champion's probability, challenger's, true probability).
fn record(
    rng: &mut ChaCha8Rng,
    design: &Design,
    (champion, challenger): Seats,
) -> (bool, f64, f64, f64) {
    let x = features(rng);
    let truth = sigmoid(logit(&x, design.intercept, None));
    let p = |seat: Option<usize>| {
        sigmoid(logit(
            &x,
            design.intercept,
            seat.map(|j| (j, design.damping)),
        ))
    };
    let label = rng.gen::<f64>() < truth;
    (label, p(champion), p(challenger), truth)
}

/// Sets the intercept for a 17% churn rate and the damping for the AUC gap asked, on a fixed
/// design sample (seeded from `seed`, independent of the runs).
pub fn design(delta_auc: f64, seed: u64) -> Result<Design, SimulationError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6465_7369_676e);
    let sample: Vec<([f64; FEATURES], f64)> = (0..DESIGN_RECORDS)
        .map(|_| (features(&mut rng), rng.gen::<f64>()))
        .collect();
    // The churn rate falls as the intercept falls: bisect.
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        let rate = sample
            .iter()
            .map(|(x, _)| sigmoid(logit(x, mid, None)))
            .sum::<f64>()
            / sample.len() as f64;
        if rate < CHURN_RATE {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let intercept = (lo + hi) / 2.0;
    let labels: Vec<bool> = sample
        .iter()
        .map(|(x, u)| *u < sigmoid(logit(x, intercept, None)))
        .collect();
    let auc_of = |damped: Option<(usize, f64)>| {
        let p: Vec<f64> = sample
            .iter()
            .map(|(x, _)| logit(x, intercept, damped))
            .collect();
        roc_auc(&p, &labels)
    };
    let truth_auc = auc_of(None);
    let gap = |k: f64| truth_auc - auc_of(Some((2, k)));
    let max = gap(0.0);
    if !(delta_auc > 0.0 && delta_auc < max) {
        return Err(SimulationError::DeltaAuc {
            asked: delta_auc,
            max,
        });
    }
    // The gap shrinks as the damping factor rises from 0 to 1: bisect.
    let (mut lo, mut hi) = (0.0, 1.0);
    for _ in 0..20 {
        let mid = (lo + hi) / 2.0;
        if gap(mid) > delta_auc {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(Design {
        intercept,
        damping: (lo + hi) / 2.0,
    })
}

/// The scenario's models measured on a fresh sample of 200,000 records.
pub fn truth(design: &Design, scenario: Scenario, seed: u64) -> Truth {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x74_7275_7468);
    let seats = seats(scenario);
    let (mut labels, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
    let mut reduction = 0.0;
    for _ in 0..DESIGN_RECORDS {
        let (label, pa, pb, truth) = record(&mut rng, design, seats);
        // E[(p − y)²] = (p − truth)² + truth(1 − truth); the second term cancels in the gap.
        reduction += (pa - truth).powi(2) - (pb - truth).powi(2);
        labels.push(label);
        a.push(pa);
        b.push(pb);
    }
    Truth {
        churn_rate: labels.iter().filter(|&&y| y).count() as f64 / labels.len() as f64,
        champion_auc: roc_auc(&a, &labels),
        challenger_auc: roc_auc(&b, &labels),
        brier_reduction: reduction / DESIGN_RECORDS as f64,
    }
}

/// Runs one scenario `options.runs` times; `progress` hears after each run how many are done.
pub fn run(
    design: &Design,
    scenario: Scenario,
    options: &SimulationOptions,
    mut progress: impl FnMut(usize),
) -> Result<Outcome, SimulationError> {
    if options.window == 0 {
        return Err(SimulationError::Window);
    }
    let seats = seats(scenario);
    let mut outcome = Outcome {
        scenario,
        runs: options.runs,
        promoted: 0,
        kept_champion: 0,
        undecided: 0,
        records_to_decision: Vec::new(),
    };
    for run in 0..options.runs {
        // Every (seed, scenario, run) has its own stream, the same on every machine.
        let stream_seed = options
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add((scenario as u64) << 32 | run as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(stream_seed);
        let mut duel = Duel::new(options.duel)?;
        let mut verdict = Verdict::Undecided;
        while verdict == Verdict::Undecided && (duel.records() as usize) < options.records {
            let window = options
                .window
                .min(options.records - duel.records() as usize);
            for _ in 0..window {
                let (label, a, b, _) = record(&mut rng, design, seats);
                duel.observe(label, a, b)?;
            }
            verdict = duel.decision().verdict;
        }
        match verdict {
            Verdict::ChallengerBetter => outcome.promoted += 1,
            Verdict::ChampionBetter => outcome.kept_champion += 1,
            Verdict::Undecided => outcome.undecided += 1,
        }
        if verdict != Verdict::Undecided {
            outcome.records_to_decision.push(duel.records());
        }
        progress(run + 1);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Designing takes a few seconds in a debug build: once for all tests.
    fn shared_design() -> Design {
        static DESIGN: std::sync::OnceLock<Design> = std::sync::OnceLock::new();
        *DESIGN.get_or_init(|| design(0.03, 15).unwrap())
    }

    fn options(runs: usize, records: usize) -> SimulationOptions {
        SimulationOptions {
            runs,
            seed: 15,
            records,
            window: 100,
            delta_auc: 0.03,
            duel: DuelConfig::default(),
        }
    }

    #[test]
    fn design_hits_the_churn_rate_and_the_auc_gap() {
        let d = shared_design();
        let better = truth(&d, Scenario::Better, 15);
        assert!((better.churn_rate - CHURN_RATE).abs() < 0.01, "{better:?}");
        assert!(
            (better.challenger_auc - better.champion_auc - 0.03).abs() < 0.004,
            "{better:?}"
        );
        assert!(better.brier_reduction > 0.0);
        let equal = truth(&d, Scenario::Equal, 15);
        assert!(
            (equal.challenger_auc - equal.champion_auc).abs() < 0.003,
            "{equal:?}"
        );
        assert!(equal.brier_reduction.abs() < 0.0005, "{equal:?}");
        let worse = truth(&d, Scenario::Worse, 15);
        assert!(worse.brier_reduction < 0.0);
    }

    #[test]
    fn design_refuses_a_gap_it_cannot_make() {
        for bad in [0.0, -0.03, 0.5, f64::NAN] {
            assert!(
                matches!(design(bad, 1), Err(SimulationError::DeltaAuc { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_zero_window_is_refused() {
        let d = shared_design();
        let mut o = options(1, 1000);
        o.window = 0;
        assert_eq!(
            run(&d, Scenario::Better, &o, |_| {}),
            Err(SimulationError::Window)
        );
    }

    /// The acceptance rates on 40 runs (the full 200 are `churn simulate-promotion`'s), with
    /// bounds loose enough for 40 runs: 40 runs at a true 97% promote fewer than 36 about 3% of
    /// the time.
    #[test]
    fn promotes_the_better_challenger_and_leaves_the_equal_one() {
        let d = shared_design();
        let o = options(40, 30_000);
        let better = run(&d, Scenario::Better, &o, |_| {}).unwrap();
        assert!(better.promoted_rate() >= 0.9, "{better:?}");
        assert_eq!(better.kept_champion, 0, "{better:?}");
        let equal = run(&d, Scenario::Equal, &o, |_| {}).unwrap();
        assert!(equal.promoted_rate() <= 0.1, "{equal:?}");
        let worse = run(&d, Scenario::Worse, &o, |_| {}).unwrap();
        assert_eq!(worse.promoted, 0, "{worse:?}");
        assert!(worse.kept_rate() >= 0.9, "{worse:?}");
        // A verdict never comes before the minimum sample.
        for records in better
            .records_to_decision
            .iter()
            .chain(&worse.records_to_decision)
        {
            assert!(*records >= o.duel.min_records);
        }
    }

    #[test]
    fn runs_are_reproducible_by_seed() {
        let d = shared_design();
        let o = options(3, 5000);
        let first = run(&d, Scenario::Better, &o, |_| {}).unwrap();
        assert_eq!(first, run(&d, Scenario::Better, &o, |_| {}).unwrap());
        let mut done = Vec::new();
        run(&d, Scenario::Equal, &o, |n| done.push(n)).unwrap();
        assert_eq!(done, vec![1, 2, 3]);
    }
}
