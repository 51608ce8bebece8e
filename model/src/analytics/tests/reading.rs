//! Reading partials: merging them into totals, drift, validation of what comes off the topic,
//! and merging that survives what validation refuses.

use super::*;

#[test]
fn partials_of_several_partitions_merge_into_exact_totals() {
    let mut a = WindowAggregator::new(10_000, 0, 0);
    let mut b = WindowAggregator::new(10_000, 0, 1);
    a.observe(
        1,
        1_000,
        CLOCK,
        &prediction("x", 0.8, true, Some(true), true),
    );
    b.observe(
        1,
        2_000,
        CLOCK,
        &prediction("y", 0.2, false, Some(false), false),
    );
    b.observe(
        2,
        3_000,
        CLOCK,
        &prediction("z", 0.6, true, Some(false), false),
    );
    let mut totals = Totals::default();
    for w in a.close_due(10_000).iter().chain(&b.close_due(10_000)) {
        totals.add(w);
    }
    let all = totals.segment("all");
    assert_eq!((all.count, all.churn_predicted), (3, 2));
    assert!((all.mean_probability - 1.6 / 3.0).abs() < 1e-12);
    let q = &totals.quality()["m-a"];
    assert_eq!(q.labelled, 3);
    assert!((q.accuracy - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(q.roc_auc, 1.0, "the churner outscored both stayers");
}

#[test]
fn drift_is_the_psi_against_the_training_deciles() {
    assert_eq!(psi(&[10; 10]), 0.0);
    let shifted = [0, 0, 0, 0, 0, 0, 0, 0, 50, 50];
    assert!(psi(&shifted) > PSI_DRIFT_THRESHOLD);
    let mut agg = WindowAggregator::new(10_000, 0, 0);
    let edges: Vec<f64> = (1..10).map(|i| i as f64 / 10.0).collect();
    agg.set_drift_reference(Some(DriftReference {
        version: "m-a".into(),
        edges,
    }));
    for i in 0..100 {
        agg.observe(
            i,
            1_000,
            CLOCK,
            &prediction(&format!("h{i}"), 0.95, true, None, true),
        );
    }
    let mut totals = Totals::default();
    totals.add(&agg.close_due(10_000)[0]);
    let drift = totals.drift().unwrap();
    assert!(drift.drifting && drift.psi > 1.0, "{drift:?}");
    assert_eq!(drift.scored, 100);
}

#[test]
fn every_window_the_aggregator_publishes_passes_validation_also_after_a_round_trip() {
    let published = busy_partition();
    assert!(
        published.len() > 10
            && published
                .iter()
                .any(|w| w.revision > 0 && !w.quality.is_empty())
    );
    for window in &published {
        assert_eq!(window.validate(), Ok(()), "{window:?}");
        let read: WindowPartial =
            serde_json::from_slice(&serde_json::to_vec(window).unwrap()).unwrap();
        assert_eq!(read.validate(), Ok(()));
    }
}

#[test]
fn validation_refuses_what_merging_cannot_trust() {
    let valid = busy_partition()
        .into_iter()
        .find(|w| !w.quality.is_empty() && w.drift_version.is_some())
        .unwrap();
    let version = valid.quality.keys().next().unwrap().clone();
    let broken = |change: &dyn Fn(&mut WindowPartial)| {
        let mut w = valid.clone();
        change(&mut w);
        w.validate().unwrap_err()
    };
    let quality = |problem| MalformedPartial::Quality {
        version: version.clone(),
        problem,
    };
    fn q(w: &mut WindowPartial) -> &mut QualityCounts {
        w.quality.values_mut().next().unwrap()
    }
    assert_eq!(
        broken(&|w| q(w).churner_bins.truncate(3)),
        quality("probability bins are not QUALITY_BINS long")
    );
    assert_eq!(
        broken(&|w| q(w).predicted_sum_bins.push(0.0)),
        quality("probability bins are not QUALITY_BINS long")
    );
    assert_eq!(
        broken(&|w| q(w).confusion.true_positive += 1),
        quality("the confusion matrix does not match the probability bins")
    );
    assert_eq!(
        broken(&|w| q(w).churner_bins[0] = u64::MAX),
        quality("the confusion matrix does not match the probability bins")
    );
    assert_eq!(
        broken(&|w| q(w).predicted_sum_bins[0] = f64::NAN),
        quality("a bin's probability sum does not fit its count")
    );
    assert_eq!(
        broken(&|w| q(w).predicted_sum_bins[19] = -1.0),
        quality("a bin's probability sum does not fit its count")
    );
    assert_eq!(
        broken(&|w| w.window_ms = 0),
        MalformedPartial::WindowLength(0)
    );
    assert_eq!(
        broken(&|w| w.window_start_ms += 1),
        MalformedPartial::Misaligned {
            start: valid.window_start_ms + 1,
            length: 10_000
        }
    );
    assert_eq!(
        broken(&|w| w.partition = -1),
        MalformedPartial::Partition(-1)
    );
    fn all(w: &mut WindowPartial) -> &mut SegmentCounts {
        w.segments.get_mut("all").unwrap()
    }
    let segment = MalformedPartial::Segment("all".into());
    assert_eq!(
        broken(&|w| all(w).churn_predicted = all(w).count + 1),
        segment
    );
    assert_eq!(
        broken(&|w| all(w).sum_probability = all(w).count as f64 + 1.0),
        segment
    );
    assert_eq!(broken(&|w| all(w).sum_probability = f64::INFINITY), segment);
    assert_eq!(
        broken(&|w| all(w).count = u64::MAX),
        segment,
        "beyond what any window holds"
    );
    assert_eq!(
        broken(&|w| w.drift_bins.clear()),
        MalformedPartial::Drift("a model version without bins")
    );
    assert_eq!(
        broken(&|w| w.drift_version = None),
        MalformedPartial::Drift("bins without a model version")
    );
    assert_eq!(
        broken(&|w| w.drift_bins = vec![0; 1_001]),
        MalformedPartial::Drift("more bins than any reference has")
    );
    assert_eq!(
        broken(&|w| w.drift_bins[0] += all(w).count),
        MalformedPartial::Drift("more predictions binned than counted")
    );
    assert_eq!(
        broken(&|w| w.drift_bins = vec![u64::MAX, 2]),
        MalformedPartial::Drift("more predictions binned than counted")
    );
}

#[test]
fn merging_never_panics_or_overflows_even_on_partials_that_fail_validation() {
    let mut short = busy_partition()
        .into_iter()
        .find(|w| !w.quality.is_empty())
        .unwrap();
    for q in short.quality.values_mut() {
        q.churner_bins.truncate(2);
        q.stayer_bins.clear();
        q.predicted_sum_bins.truncate(1);
    }
    short.drift_bins = vec![u64::MAX; 3];
    short.segments.insert(
        "all".into(),
        SegmentCounts {
            count: u64::MAX,
            churn_predicted: u64::MAX,
            sum_probability: 1.0,
        },
    );
    let mut totals = Totals::default();
    totals.add(&short);
    totals.add(&short);
    assert_eq!(
        totals.segment("all").count,
        u64::MAX,
        "saturated, not wrapped"
    );
    assert!(totals.drift().is_some());
    assert_eq!(totals.quality().len(), short.quality.len());
    // And the other way round: totals built from short vectors take full-length partials.
    let mut odd = Totals {
        drift_version: Some("m-a".into()),
        drift_bins: vec![1],
        ..Default::default()
    };
    odd.quality.insert(
        "m-a".into(),
        QualityCounts {
            churner_bins: vec![],
            ..Default::default()
        },
    );
    for w in busy_partition() {
        odd.add(&w);
    }
    odd.quality();
}

#[test]
fn binned_auc_matches_the_exact_auc_when_bins_separate_the_scores() {
    let probabilities = [0.05, 0.15, 0.35, 0.55, 0.75, 0.95];
    let labels = [false, true, false, true, false, true];
    let mut churners = vec![0; QUALITY_BINS];
    let mut stayers = vec![0; QUALITY_BINS];
    for (p, y) in probabilities.iter().zip(labels) {
        if y {
            churners[quality_bin(*p)] += 1
        } else {
            stayers[quality_bin(*p)] += 1
        }
    }
    let exact = crate::quality::roc_auc(&probabilities, &labels);
    assert!((binned_auc(&churners, &stayers) - exact).abs() < 1e-12);
}

/// A tiny seeded generator (SplitMix64), so the simulation needs no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// How often `scored` live scores drawn from the training distribution itself (no drift: each
/// decile equally likely) are flagged as drifting.
fn false_alarm_rate(scored: u64, runs: u32, seed: u64) -> f64 {
    let mut rng = SplitMix(seed);
    let edges: Vec<f64> = (1..10).map(|i| i as f64 / 10.0).collect();
    let mut alarms = 0;
    for _ in 0..runs {
        let mut totals = Totals {
            drift_version: Some("m-a".into()),
            drift_bins: vec![0; edges.len() + 1],
            ..Default::default()
        };
        for _ in 0..scored {
            totals.drift_bins[rng.below(10) as usize] += 1;
        }
        alarms += u32::from(totals.drift().unwrap().drifting);
    }
    f64::from(alarms) / f64::from(runs)
}

/// The same without the minimum: how often the PSI alone exceeds the threshold.
fn raw_psi_alarm_rate(scored: u64, runs: u32, seed: u64) -> f64 {
    let mut rng = SplitMix(seed);
    let alarms = (0..runs)
        .filter(|_| {
            let mut bins = [0u64; 10];
            for _ in 0..scored {
                bins[rng.below(10) as usize] += 1;
            }
            psi(&bins) > PSI_DRIFT_THRESHOLD
        })
        .count();
    alarms as f64 / f64::from(runs)
}

#[test]
fn psi_false_alarms_stay_below_five_percent_from_the_minimum() {
    // The problem: 50 scores with no drift raise the alarm about 40% of the time.
    let at_50 = raw_psi_alarm_rate(50, 2_000, 7);
    assert!(at_50 > 0.3, "{at_50}");
    // The minimum is the smallest multiple of ten at which the PSI alone stays within 5%, so
    // drift is not reported later than it must be ...
    let smallest = (1..=30)
        .map(|tens| tens * 10)
        .find(|&n| raw_psi_alarm_rate(n, 4_000, 3) <= 0.05);
    assert_eq!(smallest, Some(MIN_DRIFT_SAMPLE));
    // ... below it the summary never alarms; from it on, at most 5% of the time.
    assert_eq!(false_alarm_rate(MIN_DRIFT_SAMPLE - 1, 2_000, 1), 0.0);
    for scored in [
        MIN_DRIFT_SAMPLE,
        MIN_DRIFT_SAMPLE + 20,
        2 * MIN_DRIFT_SAMPLE,
    ] {
        let rate = false_alarm_rate(scored, 4_000, 2);
        assert!(rate <= 0.05, "{scored} scores: {rate}");
    }
}

#[test]
fn real_drift_is_still_flagged_from_the_minimum_and_said_to_lack_scores_below() {
    let mut totals = Totals {
        drift_version: Some("m-a".into()),
        drift_bins: vec![0; 10],
        ..Default::default()
    };
    totals.drift_bins[9] = MIN_DRIFT_SAMPLE - 1;
    let few = totals.drift().unwrap();
    assert!(
        !few.drifting && !few.enough_scores() && few.psi > 1.0,
        "{few:?}"
    );
    totals.drift_bins[9] += 1;
    let enough = totals.drift().unwrap();
    assert!(enough.drifting && enough.enough_scores(), "{enough:?}");
}

#[test]
fn extrapolated_predictions_are_counted_as_their_own_segment_and_add_up() {
    let mut agg = WindowAggregator::new(10_000, 0, 0);
    for i in 0..10 {
        let mut p = prediction(&format!("x{i}"), 0.9, i % 2 == 0, None, true);
        if i < 3 {
            p.extrapolated = vec![crate::Feature::Age];
        }
        agg.observe(i, 1_000, CLOCK, &p);
    }
    let partial = agg.close_due(10_000).remove(0);
    partial.validate().unwrap();
    let mut totals = Totals::default();
    totals.add(&partial);
    totals.add(&partial);
    let extrapolated = totals.extrapolated();
    assert_eq!((extrapolated.count, extrapolated.churn_predicted), (6, 4));
    assert_eq!(totals.segment("all").count, 20);
    // An old message without the field parses as not extrapolated.
    let mut value = serde_json::to_value(prediction("old", 0.5, false, None, true)).unwrap();
    assert!(value.get("extrapolated").is_none());
    value.as_object_mut().unwrap().remove("extrapolated");
    let old: Prediction = serde_json::from_value(value).unwrap();
    assert!(old.extrapolated.is_empty());
}
