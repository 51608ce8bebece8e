//! The pairing's contract: each complete record counts once, whatever order and however often
//! its prediction and outcome arrive; only this duel's predictions count; nothing hostile is
//! held; memory stays within its bounds.

use proptest::prelude::*;

use super::*;
use crate::message::ShadowScore;

const A: &str = "m-champion";
const B: &str = "m-challenger";

fn pairing() -> Pairing {
    pairing_bounded(PairingBounds::default())
}

fn pairing_bounded(bounds: PairingBounds) -> Pairing {
    Pairing::new(A, B, DuelConfig::default(), bounds).unwrap()
}

fn prediction(id: &str, p: f64, q: f64, label: Option<bool>) -> Prediction {
    scored_by(id, A, Some(B), p, q, label)
}

fn scored_by(
    id: &str,
    champion: &str,
    challenger: Option<&str>,
    p: f64,
    q: f64,
    label: Option<bool>,
) -> Prediction {
    Prediction {
        id: id.into(),
        name: "n".into(),
        churn_probability: p,
        churn: p >= 0.5,
        threshold: 0.5,
        model_version: champion.into(),
        scored_at: "2026-01-01T00:00:00Z".into(),
        top_factors: vec![],
        actual_churn: label,
        segments: Default::default(),
        extrapolated: vec![],
        challenger: challenger.map(|v| ShadowScore {
            model_version: v.into(),
            churn_probability: q,
        }),
    }
}

#[test]
fn a_prediction_with_its_label_counts_once_however_often_it_comes() {
    let mut pairing = pairing();
    let p = prediction("r-1", 0.2, 0.7, Some(true));
    assert_eq!(pairing.prediction(0, &p), Seen::Counted);
    assert_eq!(pairing.prediction(1, &p), Seen::Duplicate);
    // An outcome for it too (the labels topic also has it): still once.
    assert_eq!(pairing.outcome(2, "r-1", true), Seen::Duplicate);
    assert_eq!(pairing.outcome(3, "r-1", false), Seen::Duplicate);
    assert_eq!(pairing.duel().records(), 1);
    let report = pairing.duel().decision().evidence;
    assert_eq!((report.records, report.churners), (1, 1));
    // Champion (0.2 − 1)² = 0.64, challenger (0.7 − 1)² = 0.09: the gain is theirs.
    assert!((report.estimate.unwrap() - 0.55).abs() < 1e-12);
    assert_eq!(pairing.counts().duplicates, 3);
}

#[test]
fn an_outcome_joins_its_prediction_whichever_comes_first() {
    let mut pairing = pairing();
    // Outcome first.
    assert_eq!(pairing.outcome(0, "early", false), Seen::Waiting);
    assert_eq!(pairing.outcome(1, "early", false), Seen::Duplicate);
    assert_eq!(
        pairing.prediction(2, &prediction("early", 0.1, 0.3, None)),
        Seen::Counted
    );
    // Prediction first.
    assert_eq!(
        pairing.prediction(3, &prediction("late", 0.6, 0.4, None)),
        Seen::Waiting
    );
    assert_eq!(
        pairing.prediction(4, &prediction("late", 0.6, 0.4, None)),
        Seen::Duplicate,
        "a re-scored record waits once"
    );
    assert_eq!(pairing.outcome(5, "late", true), Seen::Counted);
    assert_eq!(pairing.outcome(6, "late", true), Seen::Duplicate);
    assert_eq!(
        pairing.prediction(7, &prediction("late", 0.6, 0.4, Some(true))),
        Seen::Duplicate
    );
    let evidence = pairing.duel().decision().evidence;
    assert_eq!((evidence.records, evidence.churners), (2, 1));
    // The stored probabilities (f32) are the ones counted: (0.1² − 0.3²) and (0.4² − 0.6²).
    let expected = ((0.01 - 0.09) + (0.16 - 0.36)) / 2.0;
    assert!((evidence.estimate.unwrap() - expected).abs() < 1e-6);
}

#[test]
fn only_this_duels_predictions_count_and_others_do_not_leave_their_outcomes_waiting() {
    let mut pairing = pairing();
    let others = [
        scored_by("x-1", A, None, 0.5, 0.0, None),
        scored_by("x-2", A, Some("m-other"), 0.5, 0.5, None),
        scored_by("x-3", B, Some(A), 0.5, 0.5, None),
        scored_by("x-4", "m-other", Some(B), 0.5, 0.5, Some(true)),
    ];
    for p in &others {
        assert_eq!(pairing.prediction(0, p), Seen::OtherPair);
    }
    for p in &others {
        assert_eq!(pairing.outcome(1, &p.id, true), Seen::Duplicate);
    }
    // An outcome waiting for this duel's prediction is spent by another's.
    assert_eq!(pairing.outcome(2, "x-5", true), Seen::Waiting);
    assert_eq!(
        pairing.prediction(3, &scored_by("x-5", A, None, 0.5, 0.0, None)),
        Seen::OtherPair
    );
    assert_eq!(
        pairing.prediction(4, &prediction("x-5", 0.5, 0.5, None)),
        Seen::Duplicate
    );
    assert_eq!(pairing.duel().records(), 0);
    assert_eq!(pairing.counts().other_pair, 5);
    assert!(pairing.is_between(A, B) && !pairing.is_between(B, A));
}

#[test]
fn probabilities_that_are_not_probabilities_are_refused_and_nothing_is_held() {
    let mut pairing = pairing();
    for (p, q) in [
        (f64::NAN, 0.5),
        (0.5, f64::NAN),
        (-0.01, 0.5),
        (0.5, 1.01),
        (f64::INFINITY, 0.5),
        (0.5, f64::NEG_INFINITY),
    ] {
        for label in [None, Some(true)] {
            let seen = pairing.prediction(0, &prediction("bad", p, q, label));
            assert!(matches!(seen, Seen::Refused(_)), "{p} {q}: {seen:?}");
        }
    }
    assert_eq!(pairing.held(), 0);
    assert_eq!(pairing.counts().refused, 12);
    // The record's sound prediction still counts.
    assert_eq!(pairing.outcome(1, "bad", true), Seen::Waiting);
    assert_eq!(
        pairing.prediction(2, &prediction("bad", 0.0, 1.0, None)),
        Seen::Counted
    );
    assert_eq!(pairing.duel().records(), 1);
}

#[test]
fn at_most_the_bound_is_held_oldest_forgotten_first() {
    let mut pairing = pairing_bounded(PairingBounds {
        records: 100,
        age_ms: 1_000,
    });
    for i in 0..150 {
        // Ids as long as a hostile producer likes: each costs its hash, not its length.
        let id = format!("{i}-{}", "x".repeat(10_000));
        pairing.prediction(i, &prediction(&id, 0.5, 0.5, None));
        assert!(pairing.held() <= 100);
    }
    assert_eq!(pairing.held(), 100);
    assert_eq!(pairing.counts().forgotten_waiting, 50);
    // The oldest was forgotten: its outcome waits (it would need the prediction again).
    let id = |i: i64| format!("{i}-{}", "x".repeat(10_000));
    assert_eq!(pairing.outcome(150, &id(0), true), Seen::Waiting);
    // The newest is still there.
    assert_eq!(pairing.outcome(150, &id(149), true), Seen::Counted);
    // By age: everything stamped before now − 1 s goes; the two just held stay.
    pairing.forget_older(1_149);
    assert_eq!(pairing.held(), 2);
    pairing.forget_older(i64::MAX);
    assert_eq!(pairing.held(), 0);
    pairing.forget_older(i64::MIN);
    assert_eq!(pairing.duel().records(), 1);
}

#[test]
fn a_future_stamp_holds_only_what_comes_after_it_and_never_breaks_the_count_bound() {
    let mut pairing = pairing_bounded(PairingBounds {
        records: 10,
        age_ms: 1_000,
    });
    pairing.prediction(i64::MAX, &prediction("future", 0.5, 0.5, None));
    for i in 0..5 {
        pairing.outcome(i, &format!("o-{i}"), true);
    }
    pairing.forget_older(1_000_000);
    assert_eq!(
        pairing.held(),
        6,
        "held up behind the future-stamped one, in arrival order"
    );
    for i in 5..20 {
        pairing.outcome(i, &format!("o-{i}"), true);
    }
    assert_eq!(pairing.held(), 10, "the count bound holds regardless");
    pairing.forget_older(1_000_000);
    assert_eq!(
        pairing.held(),
        0,
        "the future-stamped one went by count, the rest by age"
    );
}

#[test]
fn labels_are_read_as_the_input_reads_churn() {
    for (payload, label) in [
        (&br#"{"Churn": 1}"#[..], Some(true)),
        (br#"{"Churn": 0}"#, Some(false)),
        (br#"{"Churn": "yes"}"#, Some(true)),
        (br#"{"Churn": true, "Names": "A"}"#, Some(true)),
        (br#"{"Churn": 2}"#, None),
        (br#"{"Churn": "maybe"}"#, None),
        (br#"{"Names": "A"}"#, None),
        (br#"{}"#, None),
        (b"not json", None),
        (&[0xff, 0xfe], None),
        (br#"[1]"#, None),
    ] {
        assert_eq!(
            crate::message::outcome_label(payload),
            label,
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
}

/// A delivery in a shuffled, duplicated stream: a record's prediction or its outcome.
#[derive(Debug, Clone)]
enum Delivery {
    Prediction(usize),
    Outcome(usize),
}

proptest! {
    /// Whatever the order and the duplicates, each record whose prediction and label both
    /// arrived counts exactly once, with its own numbers.
    #[test]
    fn each_complete_record_counts_once_in_any_order(
        records in prop::collection::vec((0.0f64..=1.0, 0.0f64..=1.0, any::<bool>(), any::<bool>(), any::<bool>()), 1..60),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..200),
    ) {
        // Each record: champion p, challenger q, label, label in the prediction?, outcome sent?
        let mut deliveries: Vec<Delivery> = Vec::new();
        for (i, &(_, _, _, in_prediction, outcome)) in records.iter().enumerate() {
            deliveries.push(Delivery::Prediction(i));
            if outcome || !in_prediction {
                deliveries.push(Delivery::Outcome(i));
            }
        }
        // Re-deliveries of random ones, then a shuffle by the random indices.
        let base = deliveries.len();
        for index in &order {
            deliveries.push(deliveries[index.index(base)].clone());
        }
        for (i, index) in order.iter().enumerate() {
            let n = deliveries.len();
            deliveries.swap(i % n, index.index(n));
        }
        let mut pairing = pairing();
        let mut counted = std::collections::HashSet::new();
        for (at, delivery) in deliveries.iter().enumerate() {
            let (i, seen) = match *delivery {
                Delivery::Prediction(i) => {
                    let (p, q, label, in_prediction, _) = records[i];
                    let pred = prediction(&format!("r-{i}"), p, q, in_prediction.then_some(label));
                    (i, pairing.prediction(at as i64, &pred))
                }
                Delivery::Outcome(i) => (i, pairing.outcome(at as i64, &format!("r-{i}"), records[i].2)),
            };
            if seen == Seen::Counted {
                prop_assert!(counted.insert(i), "record {} counted twice", i);
            }
        }
        prop_assert_eq!(counted.len(), records.len(), "every record is complete");
        let evidence = pairing.duel().decision().evidence;
        prop_assert_eq!(evidence.records, records.len() as u64);
        prop_assert_eq!(evidence.churners, records.iter().filter(|r| r.2).count() as u64);
        let gain: f64 = records.iter().map(|&(p, q, y, _, _)| {
            let y = f64::from(u8::from(y));
            (p - y).powi(2) - (q - y).powi(2)
        }).sum::<f64>() / records.len() as f64;
        prop_assert!((evidence.estimate.unwrap() - gain).abs() < 1e-6);
    }
}
