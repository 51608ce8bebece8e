//! Tests of the analytics: the window state machine in `windows`, reading partials (validation,
//! merging, drift, quality) in `reading`; shared records here.

mod reading;
mod windows;

use super::aggregator::{KEEP_CLOSED, MAX_VERSION_BYTES};
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
        extrapolated: vec![],
        challenger: None,
    }
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
