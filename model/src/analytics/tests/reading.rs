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
