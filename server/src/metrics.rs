//! Operational metrics, exposed in the Prometheus text format (0.0.4) by `prometheus-client`.
//! The names, help texts and types are what dashboards and alerts rely on: keep them.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`PipelineMetrics::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Bucket bounds of the latency histograms, in seconds.
pub const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Observing times in seconds.
pub trait ObserveSeconds {
    /// Records `count` observations of the same value (e.g. a batch's mean per record). A
    /// negative time (clocks apart) counts as zero.
    fn observe_each(&self, seconds: f64, count: u64);

    fn observe_seconds(&self, seconds: f64) {
        self.observe_each(seconds, 1);
    }
}

impl ObserveSeconds for Histogram {
    fn observe_each(&self, seconds: f64, count: u64) {
        let seconds = seconds.max(0.0);
        // One uncontended lock per observation: 21 ns measured (prometheus-client 0.26, release, this
        // machine), against ~1.6 µs to score one record in memory, so under 2% of the scoring
        // thread even for a full batch of 4,000 (84 µs).
        for _ in 0..count {
            self.observe(seconds);
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// Everything the pipeline counts. One instance per process, shared by its tasks.
#[derive(Debug)]
pub struct PipelineMetrics {
    registry: Registry,
    pub consumed: Counter,
    pub scored: Counter,
    pub dead_lettered: Counter,
    pub produce_errors: Counter,
    /// Records whose scoring panicked (a bug): each was dead-lettered and the stream went on.
    pub record_panics: Counter,
    /// Records skipped because the broker refused even an empty dead letter for them.
    pub dropped: Counter,
    /// Time to validate and score one record (its batch's mean).
    pub scoring_seconds: Histogram,
    /// From the input record's timestamp to its prediction's delivery.
    pub end_to_end_seconds: Histogram,
    /// Web submissions waiting for their prediction (kept by the reply routing).
    pub pending_requests: Gauge,
    /// Models refused from the models topic or an upload: unsealed, changed after training,
    /// or not signed with the signing key (`model_store::ModelTrust` counts here).
    pub models_refused: Counter,
    /// Lag of the scorer's consumer group, per input partition.
    consumer_lag: Family<PartitionLabel, Gauge>,
    /// The same, as last probed, for the dashboard (a family cannot be read back).
    lag: Mutex<Vec<(i32, i64)>>,
    /// `version` of the model in use = 1.
    model_info: Family<VersionLabel, Gauge>,
    model_version: Mutex<String>,
    /// Records each topic holds (`storage_monitor`); one series per topic on the broker.
    topic_records: Family<TopicLabel, Gauge>,
    /// The embedded broker's data directory, in bytes.
    broker_data_bytes: Gauge,
    storage: Mutex<Option<app::StorageStatus>>,
    /// Labelled records the live duel has counted (`referee`); 0 without a challenger.
    pub duel_records: Gauge,
    /// The live duel's verdict: 1 challenger better, -1 champion better, 0 undecided or none.
    pub duel_verdict: Gauge,
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        let metrics = PipelineMetrics {
            registry: Registry::default(),
            consumed: Counter::default(),
            scored: Counter::default(),
            dead_lettered: Counter::default(),
            produce_errors: Counter::default(),
            record_panics: Counter::default(),
            dropped: Counter::default(),
            scoring_seconds: Histogram::new(LATENCY_BOUNDS.iter().copied()),
            end_to_end_seconds: Histogram::new(LATENCY_BOUNDS.iter().copied()),
            pending_requests: Gauge::default(),
            models_refused: Counter::default(),
            consumer_lag: Family::default(),
            lag: Mutex::new(Vec::new()),
            model_info: Family::default(),
            model_version: Mutex::new(String::new()),
            topic_records: Family::default(),
            broker_data_bytes: Gauge::default(),
            storage: Mutex::new(None),
            duel_records: Gauge::default(),
            duel_verdict: Gauge::default(),
        };
        // Before a model is loaded the info names the empty version, as it always has.
        metrics
            .model_info
            .get_or_create(&VersionLabel {
                version: String::new(),
            })
            .set(1);
        metrics.register()
    }
}

impl PipelineMetrics {
    /// Registers every metric, in the order of the exposition. `prometheus-client` appends `_total`
    /// to counters and a full stop to help texts.
    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "churn_records_consumed",
            "Records read from the input topic",
            self.consumed.clone(),
        );
        r.register(
            "churn_records_scored",
            "Predictions delivered to the predictions topic",
            self.scored.clone(),
        );
        r.register(
            "churn_records_dead_lettered",
            "Records delivered to the dead-letter topic",
            self.dead_lettered.clone(),
        );
        r.register(
            "churn_produce_errors",
            "Failed deliveries (retried, or dead-lettered when permanent)",
            self.produce_errors.clone(),
        );
        r.register(
            "churn_record_panics",
            "Records whose scoring panicked (a bug); each was dead-lettered",
            self.record_panics.clone(),
        );
        r.register(
            "churn_records_dropped",
            "Records skipped: the broker refused even an empty dead letter",
            self.dropped.clone(),
        );
        r.register(
            "churn_scoring_seconds",
            "Time to validate and score one record",
            self.scoring_seconds.clone(),
        );
        r.register(
            "churn_end_to_end_seconds",
            "From the input record's timestamp to its prediction's delivery",
            self.end_to_end_seconds.clone(),
        );
        r.register(
            "churn_consumer_lag",
            "Records not yet scored, per input partition",
            self.consumer_lag.clone(),
        );
        r.register(
            "churn_pending_requests",
            "Web submissions waiting for their prediction",
            self.pending_requests.clone(),
        );
        r.register(
            "churn_models_refused",
            "Models refused: unsealed, changed after training, or not signed with the signing key",
            self.models_refused.clone(),
        );
        r.register(
            "churn_topic_records",
            "Records each topic holds now (high minus low watermark over its partitions)",
            self.topic_records.clone(),
        );
        r.register(
            "churn_broker_data_bytes",
            "Bytes in the embedded broker's data directory (0 on a cluster)",
            self.broker_data_bytes.clone(),
        );
        r.register(
            "churn_model_info",
            "The model in use",
            self.model_info.clone(),
        );
        r.register(
            "churn_duel_records",
            "Labelled records both the champion and the challenger scored, in the live duel",
            self.duel_records.clone(),
        );
        r.register(
            "churn_duel_verdict",
            "The live duel's verdict: 1 challenger better, -1 champion better, 0 undecided or no duel",
            self.duel_verdict.clone(),
        );
        self
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }

    /// The scorer group's lag per input partition, as just probed.
    pub fn set_lag(&self, lag: Vec<(i32, i64)>) {
        let mut last = self.lag.lock().expect("lag");
        for &(partition, records) in &lag {
            self.consumer_lag
                .get_or_create(&PartitionLabel { partition })
                .set(records);
        }
        // Set first, removed after: a scrape in between never misses a partition.
        for (partition, _) in last
            .iter()
            .filter(|(p, _)| !lag.iter().any(|(q, _)| q == p))
        {
            self.consumer_lag.remove(&PartitionLabel {
                partition: *partition,
            });
        }
        *last = lag;
    }

    /// The scorer group's lag per input partition, as last probed.
    pub fn lag(&self) -> Vec<(i32, i64)> {
        self.lag.lock().expect("lag").clone()
    }

    /// Names the model in use.
    pub fn set_model_version(&self, version: &str) {
        let mut current = self.model_version.lock().expect("model version");
        if *current != version {
            self.model_info
                .get_or_create(&VersionLabel {
                    version: version.to_owned(),
                })
                .set(1);
            self.model_info.remove(&VersionLabel {
                version: std::mem::replace(&mut *current, version.to_owned()),
            });
        }
    }

    /// What the broker holds, as just measured.
    pub fn set_storage(&self, storage: app::StorageStatus) {
        let mut last = self.storage.lock().expect("storage");
        for (topic, records) in &storage.topic_records {
            self.topic_records
                .get_or_create(&TopicLabel {
                    topic: topic.clone(),
                })
                .set(*records);
        }
        // A deleted topic's series goes (set first, removed after, as for the lag).
        if let Some(previous) = last.as_ref() {
            for (topic, _) in &previous.topic_records {
                if !storage.topic_records.iter().any(|(t, _)| t == topic) {
                    self.topic_records.remove(&TopicLabel {
                        topic: topic.clone(),
                    });
                }
            }
        }
        let bytes = storage.data_dir_bytes.unwrap_or(0);
        self.broker_data_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        *last = Some(storage);
    }

    /// What the broker holds, as last measured.
    pub fn storage(&self) -> Option<app::StorageStatus> {
        self.storage.lock().expect("storage").clone()
    }

    /// The model in use: empty before one is loaded.
    pub fn model_version(&self) -> String {
        self.model_version.lock().expect("model version").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_parse::{Scrape, Value};

    fn scrape(metrics: &PipelineMetrics) -> Scrape {
        Scrape::parse(metrics.render().lines().map(|l| Ok(l.to_owned()))).expect("valid exposition")
    }

    #[test]
    fn the_exposition_parses_with_a_real_prometheus_parser() {
        let metrics = PipelineMetrics::default();
        metrics.scored.inc_by(7);
        metrics.scoring_seconds.observe_seconds(0.0003);
        metrics.scoring_seconds.observe_seconds(3.0);
        metrics.set_lag(vec![(0, 5), (1, 0)]);
        metrics.set_model_version("m-abc");
        let scrape = scrape(&metrics);
        let value = |name: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name)
                .map(|s| s.value.clone())
        };
        assert!(matches!(value("churn_records_scored_total"), Some(Value::Counter(v)) if v == 7.0));
        let histogram = scrape
            .samples
            .iter()
            .find(|s| s.metric == "churn_scoring_seconds")
            .expect("histogram");
        match &histogram.value {
            Value::Histogram(buckets) => {
                let le_1ms = buckets.iter().find(|b| b.less_than == 0.0005).unwrap();
                assert_eq!(le_1ms.count, 1.0);
                assert_eq!(
                    buckets
                        .iter()
                        .find(|b| b.less_than.is_infinite())
                        .unwrap()
                        .count,
                    2.0
                );
            }
            other => panic!("not a histogram: {other:?}"),
        }
        let lag: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "churn_consumer_lag")
            .collect();
        assert_eq!(lag.len(), 2);
        let info: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "churn_model_info")
            .collect();
        assert_eq!(info.len(), 1, "only the model in use");
        assert_eq!(info[0].labels.get("version"), Some("m-abc"));
        assert_eq!(
            scrape
                .docs
                .get("churn_records_scored_total")
                .map(String::as_str),
            Some("Predictions delivered to the predictions topic.")
        );
    }

    #[test]
    fn names_help_texts_and_types_are_those_dashboards_rely_on() {
        let metrics = PipelineMetrics::default();
        // (A family without a member, as the lag is before the first probe, is left out whole.)
        metrics.set_lag(vec![(0, 3)]);
        let text = metrics.render();
        for line in [
            "# HELP churn_records_consumed_total Records read from the input topic.",
            "# TYPE churn_records_consumed_total counter",
            "churn_records_consumed_total 0",
            "# TYPE churn_records_scored_total counter",
            "# TYPE churn_records_dead_lettered_total counter",
            "# HELP churn_produce_errors_total Failed deliveries (retried, or dead-lettered when permanent).",
            "# TYPE churn_record_panics_total counter",
            "# HELP churn_records_dropped_total Records skipped: the broker refused even an empty dead letter.",
            "# HELP churn_scoring_seconds Time to validate and score one record.",
            "# TYPE churn_scoring_seconds histogram",
            "churn_scoring_seconds_bucket{le=\"0.0001\"} 0",
            "churn_scoring_seconds_bucket{le=\"1\"} 0",
            "churn_scoring_seconds_bucket{le=\"+Inf\"} 0",
            "churn_scoring_seconds_count 0",
            "# HELP churn_end_to_end_seconds From the input record's timestamp to its prediction's delivery.",
            "# HELP churn_consumer_lag Records not yet scored, per input partition.",
            "# TYPE churn_consumer_lag gauge",
            "churn_consumer_lag{partition=\"0\"} 3",
            "# HELP churn_pending_requests Web submissions waiting for their prediction.",
            "churn_pending_requests 0",
            "# HELP churn_models_refused_total Models refused: unsealed, changed after training, or not signed with the signing key.",
            "# TYPE churn_models_refused_total counter",
            "churn_models_refused_total 0",
            "# HELP churn_model_info The model in use.",
            "# TYPE churn_model_info gauge",
            "churn_model_info{version=\"\"} 1",
            "# HELP churn_duel_records Labelled records both the champion and the challenger scored, in the live duel.",
            "# TYPE churn_duel_records gauge",
            "churn_duel_records 0",
            "# TYPE churn_duel_verdict gauge",
            "churn_duel_verdict 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_model_version_with_quotes_backslashes_and_a_newline_is_escaped() {
        let metrics = PipelineMetrics::default();
        let version = "m-\"quoted\" C:\\models\nsecond line";
        metrics.set_model_version(version);
        metrics.pending_requests.set(3);
        let text = metrics.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("churn_model_info"))
            .expect("the info line");
        assert_eq!(
            line,
            r#"churn_model_info{version="m-\"quoted\" C:\\models\nsecond line"} 1"#
        );
        // The line after it is still read as its own sample.
        let scrape = scrape(&metrics);
        assert!(scrape
            .samples
            .iter()
            .any(|s| s.metric == "churn_pending_requests" && s.value == Value::Gauge(3.0)));
        let info: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "churn_model_info")
            .collect();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].value, Value::Gauge(1.0));
        assert!(
            !scrape.samples.iter().any(|s| s.metric == "second"),
            "the newline did not start a sample"
        );
    }

    #[test]
    fn a_partition_gone_from_the_probe_is_no_longer_exposed() {
        let metrics = PipelineMetrics::default();
        metrics.set_lag(vec![(0, 5), (1, 2)]);
        metrics.set_lag(vec![(0, 1)]);
        assert_eq!(metrics.lag(), vec![(0, 1)]);
        let lag: Vec<_> = scrape(&metrics)
            .samples
            .into_iter()
            .filter(|s| s.metric == "churn_consumer_lag")
            .collect();
        assert_eq!(lag.len(), 1);
        assert_eq!(lag[0].value, Value::Gauge(1.0));
    }
}
