//! The stats topic, viewed: window stats read back from it and added up across partitions, and
//! the dashboard made of them with the riskiest recent customers and the scorer's consumer lag.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use app::{Dashboard, WindowPoint};
use model::analytics::{MalformedPartial, Totals, WindowPartial, FUTURE_TOLERANCE_MS};
use model::Prediction;
use rdkafka::consumer::StreamConsumer;
use rdkafka::Offset;
use tokio_util::sync::CancellationToken;

use crate::kafka::{follow_partitions, tail_payloads, Kafka, SkipLog};

/// Windows drawn on the dashboard's time series.
const WINDOWS_SHOWN: usize = 60;
/// Minutes the segment breakdown, drift and quality are summed over.
const SUMMARY_MINUTES: u32 = 5;
const RISKIEST: usize = 20;
/// How much history the view keeps, back from the wall clock.
const KEEP_MS: i64 = 3_600_000;
/// Most partials the view keeps: an hour of 10 s windows on 100 partitions (a partial is a few
/// KB, so at most ~100 MB even when forged ones fill it).
const MAX_PARTIALS: usize = 36_000;
/// How far after the wall clock a window may start and still be taken: the processor counts no
/// record later than FUTURE_TOLERANCE_MS after its own clock, and this host's clock may be
/// behind the processor's by as much again. A window further ahead is a forged or corrupted
/// message: kept, it would be the "newest" window for as long as it is in the future.
const FUTURE_WINDOW_MS: i64 = 2 * FUTURE_TOLERANCE_MS;

/// Why a stats message was not taken into the view.
#[derive(Debug, thiserror::Error)]
pub enum StatsRejected {
    #[error("not a window partial: {0}")]
    NotAPartial(#[from] serde_json::Error),
    #[error("malformed window partial: {0}")]
    Malformed(#[from] MalformedPartial),
    #[error("window starts {ahead_ms} ms after this host's clock")]
    FromTheFuture { ahead_ms: i64 },
}

/// The newest revision of every (window, partition) partial seen on the stats topic, for the
/// last KEEP_MS.
#[derive(Default)]
pub struct StatsView {
    partials: BTreeMap<(i64, i32), WindowPartial>,
    /// Messages refused: not a partial or malformed, and windows from the future.
    pub malformed: u64,
    pub future_dated: u64,
}

impl StatsView {
    /// Takes one stats-topic message at wall-clock time `now_ms`.
    pub fn read(&mut self, payload: &[u8], now_ms: i64) -> Result<(), StatsRejected> {
        match serde_json::from_slice::<WindowPartial>(payload) {
            Ok(partial) => self.apply(partial, now_ms),
            Err(e) => {
                self.malformed += 1;
                Err(e.into())
            }
        }
    }

    /// Takes one partial, if it is well formed and not from the future; older than the view
    /// keeps, it is simply not kept.
    pub fn apply(&mut self, partial: WindowPartial, now_ms: i64) -> Result<(), StatsRejected> {
        if let Err(e) = partial.validate() {
            self.malformed += 1;
            return Err(e.into());
        }
        let ahead_ms = partial.window_start_ms.saturating_sub(now_ms);
        if ahead_ms > FUTURE_WINDOW_MS {
            self.future_dated += 1;
            return Err(StatsRejected::FromTheFuture { ahead_ms });
        }
        let oldest = now_ms.saturating_sub(KEEP_MS);
        while self
            .partials
            .first_key_value()
            .is_some_and(|(&(start, _), _)| start < oldest)
        {
            self.partials.pop_first();
        }
        if partial.window_start_ms < oldest {
            return Ok(());
        }
        let key = (partial.window_start_ms, partial.partition);
        match self.partials.get(&key) {
            Some(known) if known.revision >= partial.revision => {}
            _ => {
                self.partials.insert(key, partial);
            }
        }
        // Forged partials (any partition number is well formed) must not grow the view: past the
        // bound the oldest go first.
        while self.partials.len() > MAX_PARTIALS {
            self.partials.pop_first();
        }
        Ok(())
    }

    pub fn windows(&self) -> Vec<(i64, i64, Totals)> {
        let mut by_window: BTreeMap<i64, (i64, Totals)> = BTreeMap::new();
        for ((start, _), partial) in &self.partials {
            by_window
                .entry(*start)
                .or_insert_with(|| (partial.window_ms, Totals::default()))
                .1
                .add(partial);
        }
        by_window
            .into_iter()
            .map(|(start, (ms, totals))| (start, ms, totals))
            .collect()
    }

    /// Everything since a time, all windows and partitions added up.
    pub fn totals_since(&self, since_ms: i64) -> Totals {
        let mut totals = Totals::default();
        for partial in self
            .partials
            .values()
            .filter(|p| p.window_start_ms >= since_ms)
        {
            totals.add(partial);
        }
        totals
    }

    pub fn dashboard(&self, now_ms: i64, recent: &[Prediction], lag: Vec<(i32, i64)>) -> Dashboard {
        let windows = self.windows();
        let window_ms = windows.last().map_or(10_000, |(_, ms, _)| *ms);
        let summary = self.totals_since(now_ms - i64::from(SUMMARY_MINUTES) * 60_000);
        let points = windows
            .iter()
            .rev()
            .take(WINDOWS_SHOWN)
            .rev()
            .map(|(start, _, totals)| {
                let all = totals.segment("all");
                WindowPoint {
                    start_ms: *start,
                    count: all.count,
                    churn_predicted: all.churn_predicted,
                    mean_probability: all.mean_probability,
                }
            })
            .collect();
        Dashboard {
            window_ms,
            windows: points,
            summary_minutes: SUMMARY_MINUTES,
            segments: summary
                .segments
                .keys()
                .map(|k| (k.clone(), summary.segment(k)))
                .collect(),
            drift: summary.drift(),
            quality: summary.quality().into_iter().collect(),
            riskiest: riskiest(recent),
            lag,
        }
    }
}

/// The riskiest customers among recent predictions, each once, riskiest first.
pub fn riskiest(recent: &[Prediction]) -> Vec<Prediction> {
    let mut seen = HashSet::new();
    let mut unique: Vec<&Prediction> = recent
        .iter()
        .rev()
        .filter(|p| seen.insert(p.id.as_str()))
        .collect();
    unique.sort_by(|a, b| b.churn_probability.total_cmp(&a.churn_probability));
    unique.into_iter().take(RISKIEST).cloned().collect()
}

/// Reads the stats topic from the start (it is compacted) and keeps the view current, on every
/// partition the broker reports, including any added later. A message that is not a sound
/// partial is skipped with a warning (rate-limited): one bad message must not blank or stop
/// the dashboard.
pub async fn follow_stats(
    kafka: Kafka,
    view: Arc<Mutex<StatsView>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let consumer: StreamConsumer = kafka
        .consumer_config("churn-web-stats", &[("enable.auto.commit", "false")])
        .create()
        .context("creating the stats consumer")?;
    let consumer = Arc::new(consumer);
    let topic = kafka.topics.stats.clone();
    let mut skipped = SkipLog::new(format!("skipping a message on {topic}"));
    let read = tail_payloads(&consumer, "stats consumer", shutdown.clone(), |payload| {
        let now = chrono::Utc::now().timestamp_millis();
        if let Err(e) = lock(&view).read(payload, now) {
            skipped.skip(&e, payload);
        }
    });
    tokio::join!(
        follow_partitions(consumer.clone(), topic, Offset::Beginning, shutdown),
        read
    );
    Ok(())
}

/// The view, also after a panic while it was held: its state is whole partials (a panic cannot
/// leave one half inserted), and a poisoned lock must not take every later reader down.
fn lock(view: &Mutex<StatsView>) -> MutexGuard<'_, StatsView> {
    view.lock().unwrap_or_else(|poisoned| {
        view.clear_poison();
        poisoned.into_inner()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::analytics::SegmentCounts;

    fn partial(start: i64, partition: i32, revision: u32, count: u64) -> WindowPartial {
        WindowPartial {
            window_start_ms: start,
            window_ms: 10_000,
            partition,
            revision,
            segments: BTreeMap::from([(
                "all".to_owned(),
                SegmentCounts {
                    count,
                    churn_predicted: 1,
                    sum_probability: 0.5,
                },
            )]),
            drift_version: None,
            drift_bins: vec![],
            quality: BTreeMap::new(),
        }
    }

    #[test]
    fn partitions_add_up_and_a_revision_replaces_its_predecessor() {
        let mut view = StatsView::default();
        let now = 20_000;
        view.apply(partial(0, 0, 0, 3), now).unwrap();
        view.apply(partial(0, 1, 0, 4), now).unwrap();
        view.apply(partial(0, 0, 1, 5), now).unwrap(); // a late record revised partition 0
        view.apply(partial(0, 0, 0, 3), now).unwrap(); // an old revision arriving again changes nothing
        view.apply(partial(10_000, 0, 0, 1), now).unwrap();
        let windows = view.windows();
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].2.segment("all").count, 9);
        let dashboard = view.dashboard(now, &[], vec![]);
        assert_eq!(
            dashboard
                .windows
                .iter()
                .map(|w| w.count)
                .collect::<Vec<_>>(),
            vec![9, 1]
        );
        assert_eq!(dashboard.segments[0].1.count, 10);
    }

    #[test]
    fn short_malformed_or_non_json_messages_are_refused_and_the_view_keeps_counting() {
        let now = 1_700_000_000_000;
        let mut view = StatsView::default();
        let good = partial(now - 20_000, 0, 0, 5);
        view.read(&serde_json::to_vec(&good).unwrap(), now).unwrap();
        let mut short = partial(now - 10_000, 1, 0, 2);
        let quality = model::analytics::QualityCounts {
            churner_bins: vec![1],
            ..Default::default()
        };
        short.quality.insert("m".into(), quality);
        let bad: [&[u8]; 5] = [
            b"not json",
            b"",
            b"{}",
            b"{\"window_start_ms\": 1}",
            &serde_json::to_vec(&short).unwrap(),
        ];
        for payload in bad {
            assert!(view.read(payload, now).is_err());
        }
        assert!(matches!(
            view.read(&serde_json::to_vec(&short).unwrap(), now),
            Err(StatsRejected::Malformed(_))
        ));
        assert_eq!(view.malformed, 6);
        view.read(
            &serde_json::to_vec(&partial(now - 10_000, 0, 0, 2)).unwrap(),
            now,
        )
        .unwrap();
        let dashboard = view.dashboard(now, &[], vec![]);
        assert_eq!(
            dashboard
                .windows
                .iter()
                .map(|w| w.count)
                .collect::<Vec<_>>(),
            vec![5, 2]
        );
    }

    #[test]
    fn a_far_future_window_is_refused_and_the_hour_kept_is_counted_back_from_the_wall_clock() {
        let now = 1_700_000_000_000;
        let mut view = StatsView::default();
        view.apply(partial(now - 2 * KEEP_MS, 0, 0, 7), now)
            .unwrap(); // too old to keep, not an error
        view.apply(partial(now - 60_000, 0, 0, 3), now).unwrap();
        view.apply(partial(now - 10_000, 0, 0, 2), now).unwrap();
        let year = 365 * 86_400_000;
        assert!(matches!(
            view.apply(partial(now + year, 0, 0, 1), now),
            Err(StatsRejected::FromTheFuture { .. })
        ));
        assert_eq!(view.future_dated, 1);
        view.apply(partial(now + 60_000, 1, 0, 1), now).unwrap(); // within a clock difference
        let counts = |view: &StatsView, now| {
            view.dashboard(now, &[], vec![])
                .windows
                .iter()
                .map(|w| w.count)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            counts(&view, now),
            vec![3, 2, 1],
            "the future window did not push the others out"
        );
        // An hour later (by the wall clock) the old windows go as new ones come.
        view.apply(
            partial(now + KEEP_MS - 10_000 + 60_000, 0, 0, 4),
            now + KEEP_MS,
        )
        .unwrap();
        assert_eq!(counts(&view, now + KEEP_MS), vec![1, 4]);
    }

    #[test]
    fn forged_partitions_cannot_grow_the_view_past_its_bound() {
        let now = 1_700_000_000_000;
        let mut view = StatsView::default();
        for forged in 0..(MAX_PARTIALS as i32 + 100) {
            view.apply(partial(now - 10_000, forged, 0, 1), now)
                .unwrap();
        }
        assert_eq!(view.partials.len(), MAX_PARTIALS);
    }

    #[test]
    fn a_panic_while_the_view_is_held_does_not_poison_it_for_later_readers() {
        let view = Arc::new(Mutex::new(StatsView::default()));
        let held = view.clone();
        let crashed = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("a bug while holding the view");
        });
        assert!(crashed.join().is_err());
        lock(&view).apply(partial(0, 0, 0, 1), 0).unwrap();
        assert!(!view.is_poisoned());
        assert_eq!(view.lock().expect("stats view").windows().len(), 1);
    }
}
