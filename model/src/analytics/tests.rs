use super::aggregator::MAX_VERSION_BYTES;
use super::partial::quality_bin;
use super::*;
use crate::message::Prediction;
use crate::segments::Segments;

/// The wall clock most tests read at: their records are stamped within FUTURE_TOLERANCE_MS.
const CLOCK: i64 = 0;

fn prediction(id: &str, p: f64, churn: bool, actual: Option<bool>, manager: bool) -> Prediction {
    Prediction {
        id: id.into(),
        name: "x".into(),
        churn_probability: p,
        churn,
        threshold: 0.5,
        model_version: "m-a".into(),
        scored_at: String::new(),
        top_factors: vec![],
        actual_churn: actual,
        segments: Segments {
            account_manager: manager,
            tenure: "2-5y".into(),
            sites: "7-9".into(),
            state: Some("AK".into()),
        },
    }
}

#[test]
fn records_land_in_their_tumbling_window_and_windows_close_after_the_lateness() {
    let mut agg = WindowAggregator::new(10_000, 2_000, 0);
    agg.observe(1, 10_000, CLOCK, &prediction("a", 0.9, true, None, true)); // window [10s, 20s)
    agg.observe(2, 19_999, CLOCK, &prediction("b", 0.1, false, None, false));
    agg.observe(3, 20_000, CLOCK, &prediction("c", 0.2, false, None, false)); // window [20s, 30s)
    assert!(
        agg.close_due(0).is_empty(),
        "20s + 2s lateness not reached by the stream"
    );
    assert_eq!(agg.commit_offset(Source::Predictions), Some(1));
    agg.observe(4, 22_000, CLOCK, &prediction("d", 0.3, false, None, false));
    let closed = agg.close_due(0);
    assert_eq!(closed.len(), 1);
    let w = &closed[0];
    assert_eq!(w.window_start_ms, 10_000);
    assert_eq!(
        w.segments["all"],
        SegmentCounts {
            count: 2,
            churn_predicted: 1,
            sum_probability: 1.0
        }
    );
    assert_eq!(w.segments["account_manager=yes"].count, 1);
    assert_eq!(w.segments["state=AK"].count, 2);
    assert_eq!(
        agg.commit_offset(Source::Predictions),
        Some(3),
        "the open window's first record"
    );
}

#[test]
fn the_wall_clock_closes_a_quiet_stream_and_empty_windows_are_not_published() {
    let mut agg = WindowAggregator::new(10_000, 2_000, 0);
    agg.observe(1, 5_000, CLOCK, &prediction("a", 0.9, true, None, true));
    assert_eq!(agg.close_due(11_999).len(), 0);
    assert_eq!(agg.close_due(12_000).len(), 1);
    assert!(agg.close_due(100_000).is_empty(), "no records, no windows");
    assert_eq!(agg.commit_offset(Source::Predictions), None);
}

#[test]
fn a_late_record_revises_its_closed_window_and_duplicates_count_once() {
    let mut agg = WindowAggregator::new(10_000, 0, 3);
    agg.observe(1, 1_000, CLOCK, &prediction("a", 0.9, true, None, true));
    let first = agg.close_due(10_000).remove(0);
    assert_eq!(first.revision, 0);
    let revised = agg
        .observe(2, 2_000, CLOCK, &prediction("b", 0.4, false, None, true))
        .expect("revised");
    assert_eq!((revised.revision, revised.segments["all"].count), (1, 2));
    assert_eq!(
        revised.key(),
        first.key(),
        "the revision replaces the first publication"
    );
    assert!(agg
        .observe(3, 3_000, CLOCK, &prediction("b", 0.4, false, None, true))
        .is_none());
    assert_eq!(agg.duplicates, 1);
    agg.observe(4, 15_000, CLOCK, &prediction("c", 0.1, false, None, true));
    assert_eq!(agg.close_due(20_000)[0].segments["all"].count, 1);
}

#[test]
fn after_a_restart_re_reading_from_the_commit_offset_rebuilds_the_open_window() {
    let stream: Vec<(i64, i64, Prediction)> = (0..6)
        .map(|i| {
            (
                i,
                i * 4_000,
                prediction(&format!("r{i}"), 0.1 * i as f64, i % 2 == 0, None, false),
            )
        })
        .collect();
    let mut before = WindowAggregator::new(10_000, 0, 0);
    let mut published = Vec::new();
    for (offset, ts, p) in &stream[..4] {
        before.observe(*offset, *ts, CLOCK, p);
        published.extend(before.close_due(0));
    }
    let resume = before.commit_offset(Source::Predictions).unwrap();
    // Crash: the open window is lost; a new aggregator re-reads from the committed offset.
    let mut after = WindowAggregator::new(10_000, 0, 0);
    for (offset, ts, p) in stream.iter().filter(|(o, _, _)| *o >= resume) {
        after.observe(*offset, *ts, CLOCK, p);
        published.extend(after.close_due(0));
    }
    published.extend(after.close_due(i64::MAX / 2));
    let mut totals = Totals::default();
    published.iter().for_each(|w| totals.add(w));
    assert_eq!(
        totals.segment("all").count,
        6,
        "every record counted exactly once"
    );
}

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
fn outcomes_from_a_labels_topic_join_their_prediction_by_id_in_either_order() {
    let mut agg = WindowAggregator::new(10_000, 0, 0);
    // Prediction first, outcome later (in a later window).
    agg.observe(1, 1_000, CLOCK, &prediction("a", 0.9, true, None, true));
    assert!(agg.observe_outcome(7, 12_000, CLOCK, "a", true).is_none());
    // Outcome first: it waits, holding its offset back from the commit, and joins on arrival.
    assert!(agg.observe_outcome(8, 12_500, CLOCK, "b", false).is_none());
    assert_eq!(agg.commit_offset(Source::Outcomes), Some(7));
    agg.observe(2, 13_000, CLOCK, &prediction("b", 0.7, true, None, false));
    // An outcome for an unknown id simply waits; a repeated one counts once.
    assert!(agg.observe_outcome(9, 13_500, CLOCK, "a", true).is_none());
    let mut totals = Totals::default();
    for w in agg.close_due(30_000) {
        totals.add(&w);
    }
    let q = &totals.quality()["m-a"];
    assert_eq!(q.labelled, 2);
    assert_eq!(
        (q.precision, q.recall),
        (0.5, 1.0),
        "a churned as predicted, b stayed though flagged"
    );
    assert_eq!(agg.commit_offset(Source::Outcomes), None);
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

/// Every kind of record the aggregator handles, in and out of order, with a model change.
fn busy_partition() -> Vec<WindowPartial> {
    let mut agg = WindowAggregator::new(10_000, 1_000, 2);
    let edges: Vec<f64> = (1..10).map(|i| i as f64 / 10.0).collect();
    agg.set_drift_reference(Some(DriftReference {
        version: "m-a".into(),
        edges: edges.clone(),
    }));
    let mut published = Vec::new();
    for i in 0..200i64 {
        let p = (i % 101) as f64 / 100.0;
        let labelled = (i % 3 == 0).then_some(i % 2 == 0);
        let ts = i * 300 - (i % 7) * 2_000; // up to 12 s late
        published.extend(agg.observe(
            i,
            ts,
            CLOCK,
            &prediction(&format!("r{}", i % 190), p, p >= 0.5, labelled, i % 4 == 0),
        ));
        if i % 5 == 0 {
            published.extend(agg.observe_outcome(i, ts, CLOCK, &format!("r{}", i / 2), i % 3 == 1));
            published.extend(agg.observe_outcome(i, ts, CLOCK, &format!("later{i}"), true));
        }
        if i == 100 {
            agg.set_drift_reference(Some(DriftReference {
                version: "m-b".into(),
                edges: edges.clone(),
            }));
        }
        published.extend(agg.close_due(CLOCK));
    }
    for i in 0..40 {
        published.extend(agg.observe(
            1_000 + i,
            60_000,
            CLOCK,
            &prediction(&format!("later{i}"), 0.3, false, None, false),
        ));
    }
    published.extend(agg.close_due(i64::MAX));
    published
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
fn a_record_stamped_far_in_the_future_counts_at_the_wall_clock_and_closes_nothing_early() {
    let now = 1_700_000_000_000;
    let mut agg = WindowAggregator::new(10_000, 2_000, 0);
    agg.observe(
        1,
        now + 365 * 86_400_000,
        now,
        &prediction("typo", 0.9, true, None, true),
    );
    assert_eq!(agg.future_dated, 1);
    agg.observe(
        2,
        now + 1_000,
        now,
        &prediction("a", 0.1, false, None, true),
    );
    assert!(
        agg.close_due(now).is_empty(),
        "the open window is not closed by the bad clock"
    );
    let within = now + FUTURE_TOLERANCE_MS;
    agg.observe(3, within, now, &prediction("b", 0.1, false, None, true));
    assert_eq!(
        agg.future_dated, 1,
        "a minute ahead is a clock difference, taken at face value"
    );
    let closed = agg.close_due(now + 12_000);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].window_start_ms, now / 10_000 * 10_000);
    assert_eq!(
        closed[0].segments["all"].count, 2,
        "the future-dated record and its neighbour"
    );
    assert_eq!(agg.dropped_late, 0);
}

#[test]
fn an_outcome_whose_prediction_never_comes_expires_after_an_hour_of_stream_time() {
    let mut agg = WindowAggregator::new(10_000, 0, 0);
    let now = i64::MAX / 4; // wall clock far ahead: only stream time expires outcomes
    assert!(agg.observe_outcome(5, 0, now, "ghost", true).is_none());
    agg.observe_outcome(6, 1_000, now, "late", false);
    agg.observe(
        1,
        WAIT_FOR_PREDICTION_MS - 1,
        now,
        &prediction("x", 0.5, true, None, true),
    );
    agg.close_due(0);
    assert_eq!(
        (agg.expired_outcomes, agg.commit_offset(Source::Outcomes)),
        (0, Some(5))
    );
    agg.observe(
        2,
        WAIT_FOR_PREDICTION_MS,
        now,
        &prediction("y", 0.5, true, None, true),
    );
    agg.close_due(0);
    assert_eq!(agg.expired_outcomes, 1);
    assert_eq!(
        agg.commit_offset(Source::Outcomes),
        Some(6),
        "the commit moves past the expired outcome"
    );
    agg.observe(
        3,
        WAIT_FOR_PREDICTION_MS + 1_000,
        now,
        &prediction("late", 0.2, false, None, true),
    );
    assert_eq!(
        agg.expired_outcomes, 1,
        "the other one is joined just in time"
    );
    agg.observe(
        4,
        WAIT_FOR_PREDICTION_MS + 2_000,
        now,
        &prediction("ghost", 0.9, true, None, true),
    );
    let mut totals = Totals::default();
    agg.close_due(i64::MAX).iter().for_each(|w| totals.add(w));
    assert_eq!(
        totals.quality()["m-a"].labelled,
        1,
        "only the outcome still waiting was joined"
    );
    assert_eq!(agg.commit_offset(Source::Outcomes), None);
}

#[test]
fn predictions_are_remembered_for_a_day_of_stream_time() {
    let mut agg = WindowAggregator::new(10_000, 0, 0);
    agg.remember(0, &prediction("old", 0.9, true, None, true));
    agg.remember(1_000, &prediction("kept", 0.9, true, None, true));
    agg.observe(
        1,
        REMEMBER_FOR_MS + 500,
        REMEMBER_FOR_MS,
        &prediction("now", 0.1, false, None, true),
    );
    agg.close_due(0);
    assert!(agg
        .observe_outcome(2, REMEMBER_FOR_MS + 600, REMEMBER_FOR_MS, "old", true)
        .is_none());
    assert_eq!(
        agg.commit_offset(Source::Outcomes),
        Some(2),
        "a day old: it waits for a prediction again"
    );
    agg.observe_outcome(3, REMEMBER_FOR_MS + 700, REMEMBER_FOR_MS, "kept", true);
    agg.observe_outcome(4, REMEMBER_FOR_MS + 800, REMEMBER_FOR_MS, "now", false);
    let mut totals = Totals::default();
    agg.close_due(i64::MAX).iter().for_each(|w| totals.add(w));
    assert_eq!(totals.quality()["m-a"].labelled, 2);
}

#[test]
fn forged_segments_ids_or_versions_are_counted_as_malformed_not_in_a_window() {
    let mut agg = WindowAggregator::new(10_000, 0, 0);
    let mut forged = vec![prediction("a", 0.5, false, None, false); 4];
    forged[0].segments.tenure = "x".repeat(600_000);
    forged[1].segments.state = Some("ZZ".into());
    forged[2].id = "i".repeat(crate::record::MAX_KEY_BYTES + 1);
    forged[3].model_version = "v".repeat(MAX_VERSION_BYTES + 1);
    for (i, p) in forged.iter().enumerate() {
        assert!(agg.observe(i as i64, 1_000, 1_000, p).is_none());
    }
    assert_eq!(agg.malformed, 4);
    assert!(agg.close_due(100_000).is_empty(), "nothing was counted");
}

#[test]
fn a_prediction_with_an_impossible_probability_is_counted_as_malformed_not_in_a_window() {
    let mut agg = WindowAggregator::new(10_000, 0, 0);
    for p in [1.5, -0.1, f64::NAN] {
        assert!(agg
            .observe(
                1,
                1_000,
                CLOCK,
                &prediction("bad", p, true, Some(true), true)
            )
            .is_none());
    }
    assert_eq!(agg.malformed, 3);
    assert!(agg.observe_outcome(2, 1_000, CLOCK, "bad", true).is_none());
    assert_eq!(
        agg.commit_offset(Source::Predictions),
        None,
        "nothing held for it"
    );
    assert!(
        agg.close_due(i64::MAX).is_empty(),
        "the outcome waits; no window was opened"
    );
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
