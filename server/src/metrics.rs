//! Operational metrics in the Prometheus text format, without a metrics framework: a handful
//! of atomics and fixed-bucket histograms, rendered on demand.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// A latency histogram with fixed bucket bounds (seconds), safe to update from any thread.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in microseconds, to stay an integer atomic.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

pub const LATENCY_BOUNDS: &[f64] = &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        self.observe_each(seconds, 1);
    }

    /// Records `count` observations of the same value (e.g. a batch's mean per record).
    pub fn observe_each(&self, seconds: f64, count: u64) {
        let seconds = seconds.max(0.0);
        if let Some(i) = self.bounds.iter().position(|&b| seconds <= b) {
            self.counts[i].fetch_add(count, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add((seconds * 1e6) as u64 * count, Ordering::Relaxed);
        self.count.fetch_add(count, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {total}");
    }
}

/// Everything the pipeline counts. One instance per process, shared by its tasks.
#[derive(Debug)]
pub struct PipelineMetrics {
    pub consumed: AtomicU64,
    pub scored: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub produce_errors: AtomicU64,
    /// Records whose scoring panicked (a bug): each was dead-lettered and the stream went on.
    pub record_panics: AtomicU64,
    /// Records skipped because the broker refused even an empty dead letter for them.
    pub dropped: AtomicU64,
    /// Time to validate and score one record (its batch's mean).
    pub scoring_seconds: Histogram,
    /// From the input record's timestamp to its prediction's delivery.
    pub end_to_end_seconds: Histogram,
    /// Lag of the scorer's consumer group, per input partition.
    pub lag: Mutex<Vec<(i32, i64)>>,
    pub pending_requests: AtomicU64,
    pub model_version: Mutex<String>,
    /// True while this process's scorer holds at least one input partition.
    pub assigned: AtomicBool,
    /// True once this process's scorer has held a partition (tests check both scorers worked).
    pub ever_assigned: AtomicBool,
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        PipelineMetrics {
            consumed: AtomicU64::new(0),
            scored: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            produce_errors: AtomicU64::new(0),
            record_panics: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            scoring_seconds: Histogram::new(LATENCY_BOUNDS),
            end_to_end_seconds: Histogram::new(LATENCY_BOUNDS),
            lag: Mutex::new(Vec::new()),
            pending_requests: AtomicU64::new(0),
            model_version: Mutex::new(String::new()),
            assigned: AtomicBool::new(false),
            ever_assigned: AtomicBool::new(false),
        }
    }
}

impl PipelineMetrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        };
        counter(&mut out, "churn_records_consumed_total", "Records read from the input topic.", &self.consumed);
        counter(&mut out, "churn_records_scored_total", "Predictions delivered to the predictions topic.", &self.scored);
        counter(&mut out, "churn_records_dead_lettered_total", "Records delivered to the dead-letter topic.", &self.dead_lettered);
        counter(&mut out, "churn_produce_errors_total", "Failed deliveries (retried, or dead-lettered when permanent).", &self.produce_errors);
        counter(&mut out, "churn_record_panics_total", "Records whose scoring panicked (a bug); each was dead-lettered.", &self.record_panics);
        counter(&mut out, "churn_records_dropped_total", "Records skipped: the broker refused even an empty dead letter.", &self.dropped);
        self.scoring_seconds.render(&mut out, "churn_scoring_seconds", "Time to validate and score one record.");
        self.end_to_end_seconds.render(&mut out, "churn_end_to_end_seconds", "From the input record's timestamp to its prediction's delivery.");
        let _ = writeln!(out, "# HELP churn_consumer_lag Records not yet scored, per input partition.\n# TYPE churn_consumer_lag gauge");
        for (partition, lag) in self.lag.lock().expect("lag").iter() {
            let _ = writeln!(out, "churn_consumer_lag{{partition=\"{partition}\"}} {lag}");
        }
        let _ = writeln!(
            out,
            "# HELP churn_pending_requests Web submissions waiting for their prediction.\n# TYPE churn_pending_requests gauge\nchurn_pending_requests {}",
            self.pending_requests.load(Ordering::Relaxed)
        );
        let version = self.model_version.lock().expect("model version").clone();
        let _ = writeln!(
            out,
            "# HELP churn_model_info The model in use.\n# TYPE churn_model_info gauge\nchurn_model_info{{version=\"{version}\"}} 1"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_parses_with_a_real_prometheus_parser() {
        let metrics = PipelineMetrics::default();
        metrics.scored.fetch_add(7, Ordering::Relaxed);
        metrics.scoring_seconds.observe(0.0003);
        metrics.scoring_seconds.observe(3.0);
        *metrics.lag.lock().unwrap() = vec![(0, 5), (1, 0)];
        *metrics.model_version.lock().unwrap() = "m-abc".into();
        let text = metrics.render();
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
        let value = |name: &str| scrape.samples.iter().find(|s| s.metric == name).map(|s| s.value.clone());
        assert!(matches!(value("churn_records_scored_total"), Some(prometheus_parse::Value::Counter(v)) if v == 7.0));
        let histogram = scrape.samples.iter().find(|s| s.metric == "churn_scoring_seconds").expect("histogram");
        match &histogram.value {
            prometheus_parse::Value::Histogram(buckets) => {
                let le_1ms = buckets.iter().find(|b| b.less_than == 0.0005).unwrap();
                assert_eq!(le_1ms.count, 1.0);
                assert_eq!(buckets.iter().find(|b| b.less_than.is_infinite()).unwrap().count, 2.0);
            }
            other => panic!("not a histogram: {other:?}"),
        }
        let lag: Vec<_> = scrape.samples.iter().filter(|s| s.metric == "churn_consumer_lag").collect();
        assert_eq!(lag.len(), 2);
        assert!(scrape.samples.iter().any(|s| s.metric == "churn_model_info" && s.labels.get("version") == Some("m-abc")));
    }
}
