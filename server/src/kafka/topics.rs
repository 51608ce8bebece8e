//! Topic names (the pipeline's, their defaults, and the web servers' reply topics), which names
//! Kafka accepts, creating topics, and reading a topic's partition count.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaErrorCode;

use super::Kafka;

/// The default topic names, written once: the flags' defaults and `Topics::default()` both use
/// them. `costumerchurn` and `test3` are the original project's names, kept.
pub const DEFAULT_INPUT_TOPIC: &str = "costumerchurn";
pub const DEFAULT_PREDICTIONS_TOPIC: &str = "test3";
pub const DEFAULT_DEAD_LETTER_TOPIC: &str = "costumerchurn-dlq";
pub const DEFAULT_MODELS_TOPIC: &str = "churn-models";
pub const DEFAULT_LABELS_TOPIC: &str = "churn-labels";
pub const DEFAULT_STATS_TOPIC: &str = "churn-stats";
/// Partitions and replication factor of the topics this program creates.
pub const DEFAULT_PARTITIONS: i32 = 3;
pub const DEFAULT_REPLICATION: i32 = 1;
/// How long the pipeline's stream topics keep records by default: a week, Kafka's own default,
/// written on each topic so a cluster with another default (or none) still bounds the disk.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long window stats are kept at most. Their keys are per window (`<start>/p<partition>`),
/// so compaction alone only folds re-published windows and the topic would grow for ever
/// (~40–150 MB a day at 3 partitions); the dashboard reads back only recent windows.
pub const STATS_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The stats topic's policy: compacted (a re-published window replaces the old one) and
/// expiring after `Topics::stats_retention`.
pub const STATS_CLEANUP_POLICY: &str = "compact,delete";

/// The shortest `--retention`: below a second the broker would delete records before a
/// consumer could read them.
pub const MIN_RETENTION: Duration = Duration::from_secs(1);
/// The longest: ten years, far below where `retention.ms` (an i64 of milliseconds) overflows.
pub const MAX_RETENTION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Topic names: the original project's defaults, all configurable.
#[derive(Debug, Clone, Args)]
pub struct Topics {
    /// Topic the customer records arrive on.
    #[arg(id = "input_topic", long = "input-topic", env = "CHURN_INPUT_TOPIC", default_value = DEFAULT_INPUT_TOPIC, global = true)]
    pub input: String,
    /// Topic the predictions are written to.
    #[arg(id = "predictions_topic", long = "predictions-topic", env = "CHURN_PREDICTIONS_TOPIC", default_value = DEFAULT_PREDICTIONS_TOPIC, global = true)]
    pub predictions: String,
    /// Topic for records that cannot be scored: original bytes, reason in the headers.
    #[arg(id = "dead_letter_topic", long = "dead-letter-topic", env = "CHURN_DEAD_LETTER_TOPIC", default_value = DEFAULT_DEAD_LETTER_TOPIC, global = true)]
    pub dead_letter: String,
    /// Compacted topic of published models; every scorer and web server follows it.
    #[arg(id = "models_topic", long = "models-topic", env = "CHURN_MODELS_TOPIC", default_value = DEFAULT_MODELS_TOPIC, global = true)]
    pub models: String,
    /// True outcomes arriving later, keyed by record id: `{"Churn": 1}`. Must have the
    /// predictions topic's partition count (it is created so), for the join by id.
    #[arg(id = "labels_topic", long = "labels-topic", env = "CHURN_LABELS_TOPIC", default_value = DEFAULT_LABELS_TOPIC, global = true)]
    pub labels: String,
    /// Compacted topic of window statistics published by the stream-analytics processor.
    #[arg(id = "stats_topic", long = "stats-topic", env = "CHURN_STATS_TOPIC", default_value = DEFAULT_STATS_TOPIC, global = true)]
    pub stats: String,
    /// Partitions for topics this program creates.
    #[arg(long, env = "CHURN_PARTITIONS", default_value_t = DEFAULT_PARTITIONS, global = true,
          value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// Replication factor for topics this program creates (raise it on a real cluster).
    #[arg(long, env = "CHURN_REPLICATION", default_value_t = DEFAULT_REPLICATION, global = true,
          value_parser = clap::value_parser!(i32).range(1..=100))]
    pub replication: i32,
    /// How long the input, predictions, dead-letter and outcome topics keep records ("7d",
    /// "12h", "90min", "5s"), set as `retention.ms` when this program creates them; models stay
    /// compacted, window stats are compacted and kept for at most a day. `churn topics --apply-retention` sets it on existing topics.
    #[arg(long, env = "CHURN_RETENTION", default_value = "7d", global = true,
          value_parser = parse_retention)]
    pub retention: Duration,
}

/// A `--retention` value: a humantime duration between `MIN_RETENTION` and `MAX_RETENTION`.
pub fn parse_retention(text: &str) -> Result<Duration, String> {
    let shown = model::record::truncate_utf8(text, 40);
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("{shown:?} is not a duration ({e}): write it like 7d, 12h, 90min or 5s")
    })?;
    if !(MIN_RETENTION..=MAX_RETENTION).contains(&duration) {
        return Err(format!(
            "must be between 1s and 10 years, got {}",
            humantime::format_duration(duration)
        ));
    }
    Ok(duration)
}

/// `retention.ms` for a retention.
pub fn retention_ms(retention: Duration) -> String {
    retention.as_millis().to_string()
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            input: DEFAULT_INPUT_TOPIC.into(),
            predictions: DEFAULT_PREDICTIONS_TOPIC.into(),
            dead_letter: DEFAULT_DEAD_LETTER_TOPIC.into(),
            models: DEFAULT_MODELS_TOPIC.into(),
            stats: DEFAULT_STATS_TOPIC.into(),
            labels: DEFAULT_LABELS_TOPIC.into(),
            partitions: DEFAULT_PARTITIONS,
            replication: DEFAULT_REPLICATION,
            retention: DEFAULT_RETENTION,
        }
    }
}

/// The header a web server puts on each record it submits: the topic its prediction is also to be
/// sent to, read by that web server alone (request-reply, as Kafka's reply-topic libraries do).
pub const REPLY_TO_HEADER: &str = "churn.reply-to";
/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_BYTES: usize = 249;
/// How long replies stay on a reply topic: they are read within seconds or never, so stale ones
/// must not pile up.
pub const REPLY_RETENTION: Duration = Duration::from_secs(3600);

/// Whether Kafka accepts `name` as a topic name: 1 to 249 of `a-z A-Z 0-9 . _ -`, not "." or "..".
pub fn is_legal_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_BYTES
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Topics {
    /// How long window stats are kept: `--retention`, at most `STATS_RETENTION`.
    pub fn stats_retention(&self) -> Duration {
        self.retention.min(STATS_RETENTION)
    }

    /// What every reply topic's name starts with: `<predictions>-replies-`.
    pub fn reply_prefix(&self) -> String {
        format!("{}-replies-", self.predictions)
    }

    /// The reply topic of one web server instance.
    pub fn reply_topic(&self, instance_id: &str) -> String {
        format!("{}{instance_id}", self.reply_prefix())
    }

    /// The pipeline's own topics, by name.
    pub fn own(&self) -> [&str; 6] {
        [
            &self.input,
            &self.predictions,
            &self.dead_letter,
            &self.models,
            &self.labels,
            &self.stats,
        ]
    }

    /// Whether `name` is the pipeline's: one of its own topics or a web server's reply topic.
    pub fn is_pipeline_topic(&self, name: &str) -> bool {
        self.own().contains(&name) || name.starts_with(&self.reply_prefix())
    }

    /// Whether the scorer may send a copy of a prediction to `name`, as a record's reply-to header
    /// asks. Anyone who can write to the input topic can set the header, so only reply topics
    /// qualify: a legal name under the reply prefix, never one of the pipeline's own topics.
    pub fn accepts_reply_topic(&self, name: &str) -> bool {
        let prefix = self.reply_prefix();
        name.len() > prefix.len()
            && name.starts_with(&prefix)
            && is_legal_topic(name)
            && !self.own().contains(&name)
    }
}

impl Kafka {
    /// Creates topics that are missing, with this many partitions each; existing ones are left
    /// alone. Compacted topics keep only the newest message per key; the others keep records
    /// for `--retention`.
    pub async fn ensure_topics(&self, specs: &[(&str, i32, bool)]) -> Result<()> {
        let retention = retention_ms(self.topics.retention);
        let stats_retention = retention_ms(self.topics.stats_retention());
        let topics: Vec<NewTopic> = specs
            .iter()
            .map(|&(name, partitions, compacted)| {
                let topic = NewTopic::new(
                    name,
                    partitions,
                    TopicReplication::Fixed(self.topics.replication),
                );
                match compacted {
                    true if name == self.topics.stats => topic
                        .set("cleanup.policy", STATS_CLEANUP_POLICY)
                        .set("retention.ms", &stats_retention),
                    true => topic.set("cleanup.policy", "compact"),
                    false => topic.set("retention.ms", &retention),
                }
            })
            .collect();
        self.create_topics(&topics).await
    }

    /// Creates a web server's reply topic if missing: one partition (one reader), and replies
    /// deleted after `REPLY_RETENTION`.
    pub async fn ensure_reply_topic(&self, name: &str) -> Result<()> {
        let retention = REPLY_RETENTION.as_millis().to_string();
        let topic = NewTopic::new(name, 1, TopicReplication::Fixed(self.topics.replication))
            .set("retention.ms", &retention);
        self.create_topics(&[topic]).await
    }

    async fn create_topics(&self, topics: &[NewTopic<'_>]) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .config(&[])
            .create()
            .context("creating the Kafka admin client")?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(topics, &options)
            .await
            .with_context(|| format!("creating topics on {}", self.brokers))?;
        for result in results {
            match result {
                Ok(name) => tracing::info!(topic = %name, "created topic"),
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::debug!(topic = %name, "topic exists")
                }
                Err((name, code)) => bail!("could not create topic {name}: {code}"),
            }
        }
        Ok(())
    }

    /// The pipeline's topics that keep records for `--retention` (the others are compacted):
    /// input, predictions, dead letters and outcomes.
    pub fn retained_topics(&self) -> [&str; 4] {
        let t = &self.topics;
        [&t.input, &t.predictions, &t.dead_letter, &t.labels]
    }

    /// The pipeline's own topics: input, predictions, dead letters, models and window stats.
    pub async fn ensure_pipeline_topics(&self) -> Result<()> {
        let t = &self.topics;
        let n = t.partitions;
        self.ensure_topics(&[
            (&t.input, n, false),
            (&t.predictions, n, false),
            (&t.dead_letter, n, false),
            (&t.models, 1, true),
            (&t.stats, n, true),
            (&t.labels, n, false),
        ])
        .await
    }
}

/// The number of partitions of `topic` the broker reports (0 while the topic does not exist).
pub fn partition_count<C: ConsumerContext>(
    client: &impl Consumer<C>,
    topic: &str,
    timeout: Duration,
) -> KafkaResult<i32> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    Ok(found.map_or(0, |t| t.partitions().len() as i32))
}
