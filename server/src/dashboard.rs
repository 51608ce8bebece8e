//! What the dashboard shows: window stats read back from the stats topic and added up across
//! partitions, the riskiest recent customers, and the scorer's consumer lag.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use app::{Dashboard, WindowPoint};
use model::analytics::{Totals, WindowPartial};
use model::Prediction;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::kafka::{tail_payloads, Kafka};
use crate::metrics::PipelineMetrics;

/// Windows drawn on the dashboard's time series.
const WINDOWS_SHOWN: usize = 60;
/// Minutes the segment breakdown, drift and quality are summed over.
const SUMMARY_MINUTES: u32 = 5;
const RISKIEST: usize = 20;

/// The newest revision of every (window, partition) partial seen on the stats topic.
#[derive(Default)]
pub struct StatsView {
    partials: BTreeMap<(i64, i32), WindowPartial>,
}

impl StatsView {
    pub fn apply(&mut self, partial: WindowPartial) {
        let key = (partial.window_start_ms, partial.partition);
        match self.partials.get(&key) {
            Some(known) if known.revision >= partial.revision => {}
            _ => {
                self.partials.insert(key, partial);
            }
        }
        // Keep about an hour.
        if let Some(&(newest, _)) = self.partials.keys().next_back() {
            self.partials.retain(|&(start, _), _| start >= newest - 3_600_000);
        }
    }

    /// Totals per window, oldest first.
    pub fn windows(&self) -> Vec<(i64, i64, Totals)> {
        let mut by_window: BTreeMap<i64, (i64, Totals)> = BTreeMap::new();
        for ((start, _), partial) in &self.partials {
            by_window.entry(*start).or_insert_with(|| (partial.window_ms, Totals::default())).1.add(partial);
        }
        by_window.into_iter().map(|(start, (ms, totals))| (start, ms, totals)).collect()
    }

    /// Everything since a time, all windows and partitions added up.
    pub fn totals_since(&self, since_ms: i64) -> Totals {
        let mut totals = Totals::default();
        for partial in self.partials.values().filter(|p| p.window_start_ms >= since_ms) {
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
                WindowPoint { start_ms: *start, count: all.count, churn_predicted: all.churn_predicted, mean_probability: all.mean_probability }
            })
            .collect();
        Dashboard {
            window_ms,
            windows: points,
            summary_minutes: SUMMARY_MINUTES,
            segments: summary.segments.keys().map(|k| (k.clone(), summary.segment(k))).collect(),
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
    let mut unique: Vec<&Prediction> = recent.iter().rev().filter(|p| seen.insert(p.id.as_str())).collect();
    unique.sort_by(|a, b| b.churn_probability.total_cmp(&a.churn_probability));
    unique.into_iter().take(RISKIEST).cloned().collect()
}

/// Reads the stats topic from the start (it is compacted) and keeps the view current.
pub async fn follow_stats(kafka: Kafka, view: Arc<Mutex<StatsView>>, shutdown: watch::Receiver<bool>) -> Result<()> {
    let consumer: StreamConsumer = kafka
        .consumer_config("churn-web-stats", &[("enable.auto.commit", "false")])
        .create()
        .context("creating the stats consumer")?;
    let topic = kafka.topics.stats.clone();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..kafka.topics.partitions.max(1) {
        assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment).with_context(|| format!("reading {topic}"))?;
    tail_payloads(&consumer, "stats consumer", shutdown, |payload| {
        if let Ok(partial) = serde_json::from_slice::<WindowPartial>(payload) {
            view.lock().expect("stats view").apply(partial);
        }
    })
    .await;
    Ok(())
}

/// Every few seconds: the scorer group's lag per input partition, and whether the broker answers.
pub async fn watch_lag(
    kafka: Kafka,
    scorer_group: String,
    metrics: Arc<PipelineMetrics>,
    broker_ok: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    // A consumer that only reads the group's committed offsets; it never joins the group.
    let consumer: BaseConsumer = kafka
        .consumer_config(&scorer_group, &[("enable.auto.commit", "false")])
        .create()
        .context("creating the lag monitor")?;
    let consumer = Arc::new(consumer);
    let topic = kafka.topics.input.clone();
    let partitions = kafka.topics.partitions.max(1);
    loop {
        let probe = consumer.clone();
        let topic = topic.clone();
        let lag = tokio::task::spawn_blocking(move || -> Result<Vec<(i32, i64)>> {
            let mut wanted = TopicPartitionList::new();
            for p in 0..partitions {
                wanted.add_partition(&topic, p);
            }
            let committed = probe.committed_offsets(wanted, Duration::from_secs(3))?;
            let committed: HashMap<i32, i64> = committed
                .elements()
                .iter()
                .map(|e| (e.partition(), e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(0)))
                .collect();
            (0..partitions)
                .map(|p| {
                    let (low, high) = probe.fetch_watermarks(&topic, p, Duration::from_secs(3))?;
                    let done = committed.get(&p).copied().unwrap_or(low).max(low);
                    Ok((p, (high - done).max(0)))
                })
                .collect()
        })
        .await?;
        match lag {
            Ok(lag) => {
                broker_ok.store(true, Ordering::Relaxed);
                *metrics.lag.lock().expect("lag") = lag;
            }
            Err(e) => {
                broker_ok.store(false, Ordering::Relaxed);
                tracing::debug!("lag probe: {e:#}");
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
        }
    }
    Ok(())
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
            segments: BTreeMap::from([("all".to_owned(), SegmentCounts { count, churn_predicted: 1, sum_probability: 0.5 })]),
            drift_version: None,
            drift_bins: vec![],
            quality: BTreeMap::new(),
        }
    }

    #[test]
    fn partitions_add_up_and_a_revision_replaces_its_predecessor() {
        let mut view = StatsView::default();
        view.apply(partial(0, 0, 0, 3));
        view.apply(partial(0, 1, 0, 4));
        view.apply(partial(0, 0, 1, 5)); // a late record revised partition 0
        view.apply(partial(0, 0, 0, 3)); // an old revision arriving again changes nothing
        view.apply(partial(10_000, 0, 0, 1));
        let windows = view.windows();
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].2.segment("all").count, 9);
        let dashboard = view.dashboard(20_000, &[], vec![]);
        assert_eq!(dashboard.windows.iter().map(|w| w.count).collect::<Vec<_>>(), vec![9, 1]);
        assert_eq!(dashboard.segments[0].1.count, 10);
    }
}
