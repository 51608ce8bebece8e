//! The window state machine: windows and lateness, revisions and duplicates, restarts, outcomes
//! joined in either order, clocks gone wrong, forged predictions.

use super::*;

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
fn remembered_predictions_stop_at_their_bound_the_oldest_forgotten_whatever_the_ids_length() {
    let mut short = WindowAggregator::new(10_000, 0, 0);
    let mut long = WindowAggregator::new(10_000, 0, 0);
    let long_id = |i: usize| format!("{i:0>256}");
    for i in 0..=REMEMBERED {
        short.remember(i as i64, &prediction(&i.to_string(), 0.9, true, None, true));
        long.remember(i as i64, &prediction(&long_id(i), 0.9, true, None, true));
    }
    assert_eq!(
        short.held(),
        (REMEMBERED, 0),
        "one past the bound: the oldest goes"
    );
    let bytes = short.held_bytes();
    assert!(
        bytes <= 16 << 20,
        "{bytes} bytes for {REMEMBERED} predictions"
    );
    assert_eq!(
        long.held_bytes(),
        bytes,
        "256-byte ids cost what short ones do"
    );
    // The first is forgotten (its outcome waits), the second still joins.
    let now = REMEMBERED as i64;
    assert!(short.observe_outcome(1, now, now, "0", true).is_none());
    assert_eq!(short.held(), (REMEMBERED, 1));
    short.observe_outcome(2, now, now, "1", true);
    assert_eq!(short.held(), (REMEMBERED, 1), "joined: nothing more waits");
    let mut totals = Totals::default();
    short.close_due(i64::MAX).iter().for_each(|w| totals.add(w));
    assert_eq!(totals.quality()["m-a"].labelled, 1);
}

#[test]
fn outcomes_waiting_for_their_prediction_stop_at_their_bound() {
    let mut agg = WindowAggregator::new(10_000, 0, 0);
    for i in 0..WAITING {
        agg.observe_outcome(i as i64, 1_000, CLOCK, &format!("early-{i}"), true);
    }
    assert_eq!((agg.held(), agg.expired_outcomes), ((0, WAITING), 0));
    agg.observe_outcome(WAITING as i64, 1_000, CLOCK, "one-too-many", true);
    assert_eq!(
        (agg.held(), agg.expired_outcomes),
        ((0, WAITING), 1),
        "one past the bound is given up and counted"
    );
    assert!(agg.held_bytes() <= 8 << 20, "{} bytes", agg.held_bytes());
    // A waiting one still joins its prediction when it comes.
    agg.observe(
        1,
        1_000,
        CLOCK,
        &prediction("early-7", 0.9, true, None, true),
    );
    assert_eq!(agg.held(), (1, WAITING - 1));
}

#[test]
fn closed_windows_are_kept_for_late_records_up_to_their_bound_then_late_records_are_dropped() {
    let mut agg = WindowAggregator::new(1_000, 0, 0);
    let windows = KEEP_CLOSED as i64 + 2;
    for w in 0..windows {
        agg.observe(
            w,
            w * 1_000,
            i64::MAX / 2,
            &prediction(&format!("w{w}"), 0.5, false, None, true),
        );
    }
    assert_eq!(agg.close_due(windows * 1_000).len(), windows as usize);
    // The two oldest are forgotten with their ids; the third oldest still takes a late record.
    for (w, revised) in [(0, false), (1, false), (2, true)] {
        let late = prediction(&format!("late{w}"), 0.5, false, None, true);
        let revision = agg.observe(100 + w, w * 1_000 + 500, i64::MAX / 2, &late);
        assert_eq!(revision.is_some(), revised, "window {w}");
    }
    assert_eq!(agg.dropped_late, 2);
}

/// The memory a full partition's remembered predictions take, measured (run by hand:
/// `cargo test -p model --release --lib remembered_memory -- --ignored --nocapture`; Linux).
#[test]
#[ignore = "measures this process's RSS: run alone, by hand"]
fn remembered_memory_measured() {
    let rss_kb = || -> i64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let before = rss_kb();
    let mut agg = WindowAggregator::new(10_000, 0, 0);
    for i in 0..REMEMBERED {
        let id = format!("r1a2b3c-0-{i}-with-a-web-length-id-0000000");
        agg.remember(i as i64, &prediction(&id, 0.5, false, None, true));
    }
    let grown = rss_kb() - before;
    println!(
        "{REMEMBERED} remembered predictions: {:.1} MB measured, {:.1} MB by capacity ({} B each)",
        grown as f64 / 1024.0,
        agg.held_bytes() as f64 / (1024.0 * 1024.0),
        grown * 1024 / REMEMBERED as i64
    );
    assert!(grown < 20 * 1024, "{grown} kB");
}
