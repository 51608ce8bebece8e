//! Tests of the processor's parts that need no broker: the outbox, counting and its skips. The
//! whole processor against a broker is tested in tests/it/analytics.rs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use model::analytics::{SegmentCounts, Source, WindowAggregator, WindowPartial};

use super::counting::{count, isolated, Input, Skipped, Unusable};
use super::outbox::{Outbox, MAX_UNPUBLISHED, RETRY_FIRST, RETRY_MAX};

fn window(start: i64, partition: i32, revision: u32) -> WindowPartial {
    WindowPartial {
        window_start_ms: start,
        window_ms: 10_000,
        partition,
        revision,
        segments: BTreeMap::from([(
            "all".to_owned(),
            SegmentCounts {
                count: 1,
                churn_predicted: 0,
                sum_probability: 0.1,
            },
        )]),
        drift_version: None,
        drift_bins: vec![],
        quality: BTreeMap::new(),
    }
}

#[test]
fn the_outbox_keeps_failed_windows_newest_revision_first_and_backs_off() {
    let mut outbox = Outbox::default();
    let start = Instant::now();
    assert!(!outbox.due(start), "nothing to publish");
    outbox.add([window(0, 0, 1), window(0, 1, 0)]);
    outbox.add([window(0, 0, 0)]); // an older revision does not replace a newer one
    outbox.add(Some(window(10_000, 0, 0)));
    assert_eq!(outbox.windows.len(), 3);
    assert_eq!(outbox.windows[&(0, 0)].revision, 1);
    assert!(outbox.due(start));
    let waits: Vec<Duration> = (0..10).map(|_| outbox.failed(start)).collect();
    assert_eq!(waits[..3], [RETRY_FIRST, RETRY_FIRST * 2, RETRY_FIRST * 4]);
    assert_eq!(waits[9], RETRY_MAX);
    assert!(
        !outbox.due(start + RETRY_MAX / 2),
        "waiting out the failures"
    );
    assert!(outbox.due(start + RETRY_MAX));
    assert_eq!(outbox.windows.len(), 3, "failed windows are all kept");
    outbox.add([window(0, 0, 2)]); // a late record revised a window that waits
    assert_eq!(outbox.windows[&(0, 0)].revision, 2);
    outbox.published();
    assert!(outbox.is_empty() && outbox.failures == 0 && !outbox.due(start));
    assert_eq!(
        outbox.failed(start),
        RETRY_FIRST,
        "a new run of failures starts short again"
    );
}

#[test]
fn a_full_outbox_says_so() {
    let mut outbox = Outbox::default();
    outbox.add((0..MAX_UNPUBLISHED as i64).map(|i| window(i * 10_000, 0, 0)));
    assert!(outbox.is_full());
}

fn input<'a>(source: Source, key: Option<&'a [u8]>, payload: &'a [u8]) -> Input<'a> {
    Input {
        source,
        offset: 7,
        timestamp_ms: 1_000,
        key,
        payload,
    }
}

#[test]
fn unusable_messages_are_refused_with_the_reason_and_good_ones_counted() {
    let mut aggregator = WindowAggregator::new(10_000, 0, 0);
    let bad = count(
        &mut aggregator,
        &input(Source::Predictions, None, b"{\"id\": 1"),
        0,
    );
    assert!(matches!(bad, Err(Unusable::Prediction(_))));
    let keyless = count(
        &mut aggregator,
        &input(Source::Outcomes, None, br#"{"Churn": 1}"#),
        0,
    );
    assert!(matches!(keyless, Err(Unusable::Outcome)));
    let no_churn = count(
        &mut aggregator,
        &input(Source::Outcomes, Some(b"r1"), br#"{"Churn": "maybe"}"#),
        0,
    );
    assert!(matches!(no_churn, Err(Unusable::Outcome)));
    let prediction =
        br#"{"id":"r1","name":"n","churn_probability":0.7,"churn":true,"threshold":0.5,
        "model_version":"m","scored_at":"","top_factors":[]}"#;
    assert!(count(
        &mut aggregator,
        &input(Source::Predictions, None, prediction),
        0
    )
    .unwrap()
    .is_none());
    assert!(count(
        &mut aggregator,
        &input(Source::Outcomes, Some(b"r1"), br#"{"Churn": 1}"#),
        0
    )
    .unwrap()
    .is_none());
    let closed = aggregator.close_due(i64::MAX);
    assert_eq!(closed[0].segments["all"].count, 1);
    assert_eq!(closed[0].quality["m"].confusion.true_positive, 1);
}

#[test]
fn a_panic_while_counting_costs_only_its_message() {
    let mut skipped = Skipped::default();
    let payload: &[u8] = b"anything";
    assert_eq!(
        isolated(payload, &mut skipped, || panic!("a bug in the model code")),
        None
    );
    assert_eq!(
        isolated(payload, &mut skipped, || Err(Unusable::Outcome)),
        None
    );
    assert_eq!(
        isolated(payload, &mut skipped, || Ok(Some(window(0, 0, 3)))).map(|w| w.revision),
        Some(3)
    );
    assert_eq!((skipped.panics.total, skipped.unusable.total), (1, 1));
}
