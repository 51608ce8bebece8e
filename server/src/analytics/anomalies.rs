//! The aggregators' counts of records they could not take at face value, logged now and then.

use std::time::Duration;

use model::analytics::WindowAggregator;

/// The aggregators' own counts of records they could not take at face value, for the log.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Anomalies {
    future_dated: u64,
    expired_outcomes: u64,
    malformed: u64,
    dropped_late: u64,
}

impl Anomalies {
    pub(super) fn of<'a>(aggregators: impl Iterator<Item = &'a WindowAggregator>) -> Self {
        aggregators.fold(Anomalies::default(), |a, g| Anomalies {
            future_dated: a.future_dated + g.future_dated,
            expired_outcomes: a.expired_outcomes + g.expired_outcomes,
            malformed: a.malformed + g.malformed,
            dropped_late: a.dropped_late + g.dropped_late,
        })
    }
}

/// How often the aggregators' anomaly counts are logged when they changed.
pub(super) const ANOMALIES_EVERY: Duration = Duration::from_secs(60);

/// Logs the anomaly counts when they changed since the last time.
pub(super) fn log_anomalies(last: &mut Anomalies, now: Anomalies) {
    if now != *last {
        tracing::warn!(?now, "analytics: records counted at the wall clock (future-dated), outcomes given up, malformed or too-late predictions, since these partitions were taken on");
        *last = now;
    }
}
