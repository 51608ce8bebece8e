//! The duel's contract: refuses nonsense, waits for its minimum sample, decides the right way,
//! and its intervals cover the truth as often as they claim — the sequence even when looked at
//! after every window.

use super::metrics::Moments;
use super::sequential::BoundedMeanSequence;
use super::*;

/// SplitMix64: a few lines of deterministic randomness for tests (rand is behind `train`).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A labelled record: the challenger knows both features, the champion only the first.
fn draw(rng: &mut Rng) -> (bool, f64, f64) {
    let (x1, x2) = (rng.normal(), rng.normal());
    let truth = sigmoid(-1.9 + 1.0 * x1 + 0.9 * x2);
    let label = rng.uniform() < truth;
    (label, sigmoid(-1.7 + 1.0 * x1), truth)
}

fn duel() -> Duel {
    Duel::new(DuelConfig::default()).unwrap()
}

#[test]
fn refuses_probabilities_that_are_not_probabilities_and_counts_nothing() {
    let mut d = duel();
    for bad in [f64::NAN, -0.01, 1.01, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(matches!(
            d.observe(true, bad, 0.5),
            Err(DuelError::Probability {
                model: "champion",
                ..
            })
        ));
        assert!(matches!(
            d.observe(false, 0.5, bad),
            Err(DuelError::Probability {
                model: "challenger",
                ..
            })
        ));
    }
    assert_eq!(d.records(), 0);
    assert_eq!(d.report(), None);
    assert_eq!(d.decision().evidence.estimate, None);
    // The edges are probabilities.
    d.observe(true, 0.0, 1.0).unwrap();
    d.observe(false, 1.0, 0.0).unwrap();
    let r = d.report().unwrap();
    assert!(r.champion.log_loss.value.is_finite() && r.champion.log_loss.value > 30.0);
    let message = DuelError::Probability {
        model: "champion",
        value: 2.0,
    }
    .to_string();
    assert!(message.contains("between 0 and 1") && message.contains('2'));
}

#[test]
fn refuses_an_alpha_that_is_not_a_small_probability() {
    for alpha in [0.0, -0.05, 0.6, 1.0, f64::NAN] {
        let config = DuelConfig {
            alpha,
            ..DuelConfig::default()
        };
        assert!(
            matches!(Duel::new(config), Err(DuelError::Alpha(_))),
            "{alpha}"
        );
    }
}

#[test]
fn no_verdict_before_the_minimum_sample_however_strong_the_evidence() {
    let mut d = duel();
    // The challenger is right with certainty, the champion always maximally wrong.
    for i in 0..2000_u64 {
        let label = i % 4 == 0;
        let (wrong, right) = if label { (0.0, 1.0) } else { (1.0, 0.0) };
        d.observe(label, wrong, right).unwrap();
        let verdict = d.decision().verdict;
        if d.records() < 500 {
            assert_eq!(verdict, Verdict::Undecided, "at {}", d.records());
        } else {
            assert_eq!(verdict, Verdict::ChallengerBetter, "at {}", d.records());
        }
    }
}

#[test]
fn no_verdict_without_enough_churners() {
    let mut d = duel();
    for _ in 0..5000 {
        d.observe(false, 0.9, 0.01).unwrap();
    }
    for _ in 0..49 {
        d.observe(true, 0.9, 0.99).unwrap();
    }
    assert_eq!(d.decision().verdict, Verdict::Undecided);
    d.observe(true, 0.9, 0.99).unwrap();
    assert_eq!(d.decision().verdict, Verdict::ChallengerBetter);
}

#[test]
fn decides_for_the_better_model_in_either_seat() {
    let mut rng = Rng(1);
    let (mut forward, mut backward) = (duel(), duel());
    for _ in 0..40_000 {
        let (label, weak, strong) = draw(&mut rng);
        forward.observe(label, weak, strong).unwrap();
        backward.observe(label, strong, weak).unwrap();
    }
    assert_eq!(forward.decision().verdict, Verdict::ChallengerBetter);
    assert_eq!(backward.decision().verdict, Verdict::ChampionBetter);
    let r = forward.report().unwrap();
    assert!(r.gains.auc.unwrap().low > 0.0, "{:?}", r.gains.auc);
    assert!(r.gains.brier.low > 0.0 && r.gains.log_loss.low > 0.0);
    assert!(r.challenger.auc.unwrap().value > r.champion.auc.unwrap().value);
    // The truth is calibrated; the champion is not far off either.
    assert!(r.challenger.calibration_error.value < 0.02);
    let b = backward.report().unwrap();
    assert!((b.gains.brier.value + r.gains.brier.value).abs() < 1e-12);
}

#[test]
fn identical_models_never_get_a_verdict() {
    let mut rng = Rng(2);
    let mut d = duel();
    for _ in 0..20_000 {
        let (label, _, p) = draw(&mut rng);
        d.observe(label, p, p).unwrap();
        assert_eq!(d.decision().verdict, Verdict::Undecided);
    }
    let r = d.report().unwrap();
    assert_eq!(r.gains.auc.unwrap().value, 0.0);
    assert_eq!(r.gains.brier.value, 0.0);
}

#[test]
fn auc_memory_is_bounded_and_exact_below_the_bound() {
    let config = DuelConfig {
        sample_capacity: 1000,
        ..DuelConfig::default()
    };
    let mut d = Duel::new(config).unwrap();
    let mut rng = Rng(3);
    let mut seen = Vec::new();
    for i in 0..100_000 {
        let (label, a, b) = draw(&mut rng);
        d.observe(label, a, b).unwrap();
        if i < 999 {
            seen.push((label, a));
        }
        if i == 998 {
            let (p, y): (Vec<f64>, Vec<bool>) = seen.iter().map(|&(y, p)| (p, y)).unzip();
            let exact = crate::quality::roc_auc(&p, &y);
            let auc = d.report().unwrap().champion.auc.unwrap().value;
            assert!((auc - exact).abs() < 1e-12, "{auc} {exact}");
        }
    }
    let r = d.report().unwrap();
    assert!((500..1000).contains(&r.auc_records), "{}", r.auc_records);
    assert_eq!(r.records, 100_000);
}

#[test]
fn evidence_and_report_survive_json() {
    let mut rng = Rng(4);
    let mut d = duel();
    for _ in 0..3000 {
        let (label, a, b) = draw(&mut rng);
        d.observe(label, a, b).unwrap();
    }
    let decision = d.decision();
    let json = serde_json::to_string(&decision).unwrap();
    assert!(
        json.contains("\"test\":\"empirical-bernstein-confidence-sequence\""),
        "{json}"
    );
    assert!(json.contains("\"metric\":\"brier_reduction\""), "{json}");
    assert_eq!(serde_json::from_str::<Decision>(&json).unwrap(), decision);
    let report = d.report().unwrap();
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(serde_json::from_str::<DuelReport>(&json).unwrap(), report);
    assert_eq!(
        serde_json::to_string(&Verdict::ChallengerBetter).unwrap(),
        "\"challenger_better\""
    );
    // Before any record the evidence still serializes (no NaN, which JSON cannot hold).
    let empty = serde_json::to_string(&duel().decision()).unwrap();
    assert!(empty.contains("\"estimate\":null"), "{empty}");
}

/// Bounded streams with a known mean, skewed on purpose (rare large values), as paired Brier
/// differences are.
fn skewed(rng: &mut Rng, mean_shift: f64) -> f64 {
    // 0.9 with probability 0.02, else a small spread around −0.0184: mean exactly mean_shift.
    if rng.uniform() < 0.02 {
        0.9 + mean_shift
    } else {
        -0.018 / 0.98 + 0.05 * (rng.uniform() - 0.5) + mean_shift
    }
}

/// The confidence sequence's promise — the truth inside at every look — checked over many
/// streams looked at after every window of 50; and the naive fixed-sample interval, looked at as
/// often, shown to break it (so this test can tell a valid method from an invalid one).
#[test]
fn sequence_covers_under_continuous_monitoring_where_a_peeked_t_interval_does_not() {
    let (streams, length, window, alpha) = (300, 10_000, 50, 0.05);
    let z = normal::two_sided_z(alpha);
    let (mut sequence_misses, mut naive_misses) = (0, 0);
    let mut rng = Rng(5);
    for s in 0..streams {
        let mean = if s % 2 == 0 { 0.0 } else { 0.003 };
        let mut cs = BoundedMeanSequence::new(-1.0, 1.0, 1.0);
        let mut naive = Moments::default();
        let (mut cs_missed, mut naive_missed) = (false, false);
        for i in 1..=length {
            let x = skewed(&mut rng, mean);
            cs.push(x);
            naive.push(x);
            if i % window == 0 {
                let (lo, hi) = cs.interval(alpha).unwrap();
                cs_missed |= !(lo..=hi).contains(&mean);
                let e = naive.estimate(z).unwrap();
                naive_missed |= !(e.low..=e.high).contains(&mean);
            }
        }
        sequence_misses += usize::from(cs_missed);
        naive_misses += usize::from(naive_missed);
    }
    let (cs_rate, naive_rate) = (
        sequence_misses as f64 / streams as f64,
        naive_misses as f64 / streams as f64,
    );
    assert!(cs_rate <= alpha, "sequence missed in {cs_rate}");
    assert!(
        naive_rate > 2.0 * alpha,
        "peeking should hurt: {naive_rate}"
    );
}

/// The report's fixed-sample intervals (Brier, log loss, AUC gains by DeLong) cover the true
/// gains at the nominal rate, less a little slack for 200 replicates.
#[test]
fn report_intervals_cover_the_true_gains() {
    // The truth from one big sample (its own error is far below the intervals' width).
    let mut rng = Rng(6);
    let mut truth = duel();
    for _ in 0..400_000 {
        let (label, a, b) = draw(&mut rng);
        truth.observe(label, a, b).unwrap();
    }
    let t = truth.report().unwrap();
    let big_auc = {
        let mut big = Duel::new(DuelConfig {
            sample_capacity: 400_000,
            ..DuelConfig::default()
        })
        .unwrap();
        let mut rng = Rng(7);
        for _ in 0..400_000 {
            let (label, a, b) = draw(&mut rng);
            big.observe(label, a, b).unwrap();
        }
        big.report().unwrap().gains.auc.unwrap().value
    };
    let (replicates, n) = (200, 2000);
    let mut covered = [0; 3];
    for r in 0..replicates {
        let mut rng = Rng(1000 + r);
        let mut d = duel();
        for _ in 0..n {
            let (label, a, b) = draw(&mut rng);
            d.observe(label, a, b).unwrap();
        }
        let g = d.report().unwrap().gains;
        let inside = |e: Estimate, v: f64| usize::from(e.low <= v && v <= e.high);
        covered[0] += inside(g.brier, t.gains.brier.value);
        covered[1] += inside(g.log_loss, t.gains.log_loss.value);
        covered[2] += inside(g.auc.unwrap(), big_auc);
    }
    for (name, c) in ["brier", "log loss", "auc"].iter().zip(covered) {
        let rate = c as f64 / replicates as f64;
        assert!(rate >= 0.95 - 0.04, "{name} covered {rate}");
    }
}
