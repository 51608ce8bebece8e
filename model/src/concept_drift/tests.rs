//! The concept-drift proof, without Kafka: on a stream whose truth changes midway, the frozen
//! champion's AUC falls, a model retrained on a recent window wins the duel against it; and
//! before the change a challenger trained on more of the same does not win.

use chrono::NaiveDateTime;

use super::*;
use crate::duel::{Duel, DuelConfig, Verdict};
use crate::quality::roc_auc;
use crate::train::{train, TrainOptions};
use crate::validate::validate;
use crate::ChurnModel;

const ROWS: usize = 16_000;
const CHANGE_AT: usize = 8_000;

/// The stream as the pipeline sees it: each record through the wire form and validation.
fn stream(seed: u64) -> Vec<Customer> {
    let options = GenerateOptions {
        rows: ROWS,
        seed,
        messy_fraction: 0.0,
    };
    stream_with_drift(&options, CHANGE_AT)
        .iter()
        .map(|c| validate(&c.to_raw()).unwrap())
        .collect()
}

/// One scoring time for every record (the stream's newest onboard date), so both models see
/// the same tenure.
fn as_of(stream: &[Customer]) -> NaiveDateTime {
    stream.iter().map(|c| c.onboard_date).max().unwrap()
}

fn trained(customers: &[Customer]) -> ChurnModel {
    train(customers, &TrainOptions::default(), "t".into(), |_| {}).unwrap()
}

fn labels(customers: &[Customer]) -> Vec<bool> {
    customers.iter().map(|c| c.churn.unwrap()).collect()
}

fn auc(model: &ChurnModel, customers: &[Customer], at: NaiveDateTime) -> f64 {
    let p: Vec<f64> = customers.iter().map(|c| model.probability(c, at)).collect();
    roc_auc(&p, &labels(customers))
}

/// The duel as a referee runs it: every labelled record in turn, the first verdict acted on
/// (looking after every record is allowed: the decision is valid under continuous monitoring).
fn first_verdict(
    champion: &ChurnModel,
    challenger: &ChurnModel,
    customers: &[Customer],
    at: NaiveDateTime,
) -> (Verdict, u64) {
    let mut duel = Duel::new(DuelConfig::default()).unwrap();
    for c in customers {
        duel.observe(
            c.churn.unwrap(),
            champion.probability(c, at),
            challenger.probability(c, at),
        )
        .unwrap();
        let decision = duel.decision();
        if decision.verdict != Verdict::Undecided {
            return (decision.verdict, decision.evidence.records);
        }
    }
    (Verdict::Undecided, duel.records())
}

#[test]
fn the_stream_changes_who_churns_not_what_customers_look_like() {
    let options = GenerateOptions {
        rows: 12_000,
        seed: 3,
        messy_fraction: 0.0,
    };
    let stream = stream_with_drift(&options, 6_000);
    assert_eq!(stream, stream_with_drift(&options, 6_000), "deterministic");
    assert_eq!(
        stream[..6_000],
        generate_customers(&GenerateOptions {
            rows: 6_000,
            ..options.clone()
        })[..],
        "before the change: the usual generator"
    );
    let (before, after) = stream.split_at(6_000);
    let mean = |part: &[Customer], f: fn(&Customer) -> f64| {
        part.iter().map(f).sum::<f64>() / part.len() as f64
    };
    for (name, f) in [
        (
            "sites",
            (|c: &Customer| f64::from(c.num_sites)) as fn(&Customer) -> f64,
        ),
        ("age", |c: &Customer| c.age),
        ("years", |c: &Customer| c.years),
    ] {
        let (a, b) = (mean(before, f), mean(after, f));
        assert!((a - b).abs() / a < 0.02, "{name}: {a} before, {b} after");
    }
    let rate = |part: &[Customer]| {
        part.iter().filter(|c| c.churn == Some(true)).count() as f64 / part.len() as f64
    };
    for part in [before, after] {
        assert!(
            (0.12..0.26).contains(&rate(part)),
            "churn rate {}",
            rate(part)
        );
    }
    // The change is real: sites rank churners before it and hardly after.
    let sites_auc = |part: &[Customer]| {
        let p: Vec<f64> = part.iter().map(|c| f64::from(c.num_sites)).collect();
        roc_auc(&p, &labels(part))
    };
    assert!(sites_auc(before) > 0.75, "{}", sites_auc(before));
    assert!(sites_auc(after) < 0.62, "{}", sites_auc(after));
    // Degenerate cuts: all before, all after.
    assert_eq!(
        stream_with_drift(&options, options.rows + 5),
        generate_customers(&options)
    );
    assert_eq!(stream_with_drift(&options, 0).len(), options.rows);
}

#[test]
fn the_frozen_champion_decays_and_a_retrained_challenger_wins_the_duel() {
    let stream = stream(15);
    let at = as_of(&stream);
    let (before, after) = stream.split_at(CHANGE_AT);

    let champion = trained(&before[..3_000]);
    // The champion's AUC, window by window, as the dashboard would show it live.
    let windows: Vec<f64> = stream[3_000..]
        .chunks(1_000)
        .map(|w| auc(&champion, w, at))
        .collect();
    let (live_before, live_after) = windows.split_at((CHANGE_AT - 3_000) / 1_000);
    let worst_before = live_before.iter().copied().fold(f64::INFINITY, f64::min);
    let best_after = live_after.iter().copied().fold(0.0, f64::max);
    assert!(
        worst_before > 0.8 && best_after < worst_before - 0.15,
        "every window after the change is far below every window before: {windows:.3?}"
    );

    // Retrained on a recent window after the change: the challenger.
    let (recent, later) = after.split_at(2_000);
    let challenger = trained(recent);
    assert_ne!(challenger.version, champion.version);
    let (champion_auc, challenger_auc) = (auc(&champion, later, at), auc(&challenger, later, at));
    assert!(
        challenger_auc > champion_auc + 0.1,
        "on the records after the window: challenger {challenger_auc:.3}, champion {champion_auc:.3}"
    );
    let (verdict, records) = first_verdict(&champion, &challenger, later, at);
    assert_eq!(
        verdict,
        Verdict::ChallengerBetter,
        "the duel on the drifted stream"
    );
    assert!(records <= later.len() as u64);
}

#[test]
fn before_the_change_a_challenger_trained_on_more_of_the_same_does_not_win() {
    let stream = stream(16);
    let at = as_of(&stream);
    let before = &stream[..CHANGE_AT];
    let champion = trained(&before[..3_000]);
    let challenger = trained(&before[3_000..5_000]);
    assert_ne!(challenger.version, champion.version);
    let (verdict, records) = first_verdict(&champion, &challenger, &before[5_000..], at);
    assert_ne!(
        verdict,
        Verdict::ChallengerBetter,
        "no promotion without a change ({records} records)"
    );
}
