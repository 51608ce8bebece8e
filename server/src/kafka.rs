//! Kafka connection settings and the few broker operations every command shares.
//!
//! Everything goes through librdkafka, so the same code talks to the embedded broker or to a real
//! cluster; only the configuration differs (bootstrap servers plus any librdkafka property).

use tokio_util::sync::CancellationToken;
use std::fmt::Display;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// The embedded broker's default address.
pub const DEFAULT_EMBEDDED_PORT: u16 = 9092;

/// Where the brokers are and how to talk to them.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Bootstrap servers of an existing Kafka cluster (host:port,...). When omitted, commands that
    /// manage a broker start the embedded one, and the others use 127.0.0.1:9092.
    #[arg(long, env = "CHURN_BROKERS", global = true)]
    pub brokers: Option<String>,

    /// Any librdkafka property, e.g. -X security.protocol=SASL_SSL -X sasl.mechanism=PLAIN.
    /// Repeatable; CHURN_KAFKA_PROPERTIES takes a comma-separated list.
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", env = "CHURN_KAFKA_PROPERTIES",
          value_delimiter = ',', value_parser = parse_property, global = true)]
    pub properties: Vec<(String, String)>,

    #[command(flatten)]
    pub topics: Topics,
}

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
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Topics {
    /// What every reply topic's name starts with: `<predictions>-replies-`.
    pub fn reply_prefix(&self) -> String {
        format!("{}-replies-", self.predictions)
    }

    /// The reply topic of one web server instance.
    pub fn reply_topic(&self, instance_id: &str) -> String {
        format!("{}{instance_id}", self.reply_prefix())
    }

    /// Whether the scorer may send a copy of a prediction to `name`, as a record's reply-to header
    /// asks. Anyone who can write to the input topic can set the header, so only reply topics
    /// qualify: a legal name under the reply prefix, never one of the pipeline's own topics.
    pub fn accepts_reply_topic(&self, name: &str) -> bool {
        let own = [&self.input, &self.predictions, &self.dead_letter, &self.models, &self.labels, &self.stats];
        let prefix = self.reply_prefix();
        name.len() > prefix.len() && name.starts_with(&prefix) && is_legal_topic(name) && !own.iter().any(|t| t.as_str() == name)
    }
}

pub fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// A resolved connection: bootstrap servers plus pass-through properties.
#[derive(Debug, Clone)]
pub struct Kafka {
    pub brokers: String,
    pub properties: Vec<(String, String)>,
    pub topics: Topics,
}

impl Kafka {
    pub fn new(brokers: impl Into<String>, args: &KafkaArgs) -> Self {
        Kafka {
            brokers: brokers.into(),
            properties: args.properties.clone(),
            topics: args.topics.clone(),
        }
    }

    /// A plain connection with default topics, for tests and tools.
    pub fn at(brokers: impl Into<String>) -> Self {
        Kafka { brokers: brokers.into(), properties: Vec::new(), topics: Topics::default() }
    }

    /// Base client configuration; the user's properties come last so they win.
    pub fn config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// Consumer configuration. Read uncommitted: the pipeline uses no transactions, and a
    /// producer killed mid-write must not hold readers back at its last batch.
    ///
    /// `fetch.queue.backoff.ms`: librdkafka postpones a partition's next fetch by this much once
    /// its local queue has been over the threshold (default 1 s), so a consumer that works between
    /// reads keeps stalling. Measured: a loop pausing 1 ms per 1,000 records read 151k records/s
    /// with the default, 347k with 1 ms.
    pub fn consumer_config(&self, group: &str, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut all = vec![("group.id", group), ("isolation.level", "read_uncommitted"), ("fetch.queue.backoff.ms", "1")];
        all.extend_from_slice(defaults);
        self.config(&all)
    }

    /// A producer that never duplicates or reorders on retry, and waits for all replicas.
    pub fn idempotent_producer(&self) -> Result<FutureProducer> {
        self.idempotent_producer_config().create().context("creating the Kafka producer")
    }

    /// The idempotent producer's configuration, for producers with their own delivery context.
    pub fn idempotent_producer_config(&self) -> ClientConfig {
        self.config(&[("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "5")])
    }

    /// Fails with a helpful message when no broker answers.
    pub async fn check_reachable(&self, timeout: Duration) -> Result<()> {
        let producer: FutureProducer = self.config(&[]).create().context("creating a Kafka client")?;
        let brokers = self.brokers.clone();
        let result = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(|_| ())
        })
        .await?;
        if let Err(e) = result {
            bail!(
                "broker at {brokers} not reachable ({e}): start the embedded one with `churn broker`, \
                 run `churn serve` (which starts it), or pass --brokers HOST:PORT of your cluster"
            );
        }
        Ok(())
    }

    /// Creates topics that are missing, with this many partitions each; existing ones are left
    /// alone. Compacted topics keep only the newest message per key.
    pub async fn ensure_topics(&self, specs: &[(&str, i32, bool)]) -> Result<()> {
        let topics: Vec<NewTopic> = specs
            .iter()
            .map(|&(name, partitions, compacted)| {
                let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(self.topics.replication));
                if compacted {
                    topic.set("cleanup.policy", "compact")
                } else {
                    topic
                }
            })
            .collect();
        self.create_topics(&topics).await
    }

    /// Creates a web server's reply topic if missing: one partition (one reader), and replies
    /// deleted after `REPLY_RETENTION`.
    pub async fn ensure_reply_topic(&self, name: &str) -> Result<()> {
        let retention = REPLY_RETENTION.as_millis().to_string();
        let topic = NewTopic::new(name, 1, TopicReplication::Fixed(self.topics.replication)).set("retention.ms", &retention);
        self.create_topics(&[topic]).await
    }

    async fn create_topics(&self, topics: &[NewTopic<'_>]) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> =
            self.config(&[]).create().context("creating the Kafka admin client")?;
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

/// Hands each payload of an assigned topic to `handle` until `shutdown`. Consumer errors (a
/// broker away, say) are logged and waited out: librdkafka reconnects by itself. A panic in
/// `handle` is a bug, but it costs only its message: it is logged and the reader goes on.
pub async fn tail_payloads(
    consumer: &StreamConsumer,
    what: &str,
    shutdown: CancellationToken,
    mut handle: impl FnMut(&[u8]),
) {
    let mut panics = SkipLog::new(format!("{what}: a message handler panicked"));
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        match message {
            Ok(m) => {
                if let Some(payload) = rdkafka::Message::payload(&m) {
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| handle(payload))) {
                        panics.skip(&crate::supervisor::panic_message(&*panic), payload);
                    }
                }
            }
            Err(e) => {
                tracing::debug!("{what}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Bytes of a skipped message shown in the log: enough to recognise it, never a whole message.
const EXCERPT_BYTES: usize = 120;

/// The start of a message for a log line, as text.
pub fn excerpt(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(EXCERPT_BYTES + 4)]);
    model::record::truncate_utf8(&text, EXCERPT_BYTES).into_owned()
}

/// How often a reader logs the messages it skips: the first at once, then at most one line per
/// interval with the count since, so a topic full of garbage cannot flood the log.
const SKIP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts the messages a reader skips for one reason, and logs them without flooding.
pub struct SkipLog {
    what: String,
    /// Skipped since this log was made.
    pub total: u64,
    /// Skipped since the last line logged.
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl SkipLog {
    pub fn new(what: impl Into<String>) -> Self {
        SkipLog { what: what.into(), total: 0, unlogged: 0, logged_at: None }
    }

    /// Counts one skipped message and logs it (why, and its start) unless a line was logged
    /// less than SKIP_LOG_EVERY ago.
    pub fn skip(&mut self, why: &dyn Display, payload: &[u8]) {
        if let Some(skipped) = self.count(Instant::now()) {
            // Cut: a parser's error quotes the bad value, which may be a megabyte.
            let why = model::record::truncate_utf8(&why.to_string(), 300).into_owned();
            tracing::warn!(skipped, total = self.total, "{}: {why}; message starts {:?}", self.what, excerpt(payload));
        }
    }

    /// Counts one; returns how many were skipped since the last line when one is due now.
    fn count(&mut self, now: Instant) -> Option<u64> {
        self.total += 1;
        self.unlogged += 1;
        if self.logged_at.is_some_and(|at| now.duration_since(at) < SKIP_LOG_EVERY) {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The number of partitions of `topic` the broker reports (0 while the topic does not exist).
pub fn partition_count<C: ConsumerContext>(client: &impl Consumer<C>, topic: &str, timeout: Duration) -> KafkaResult<i32> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    Ok(found.map_or(0, |t| t.partitions().len() as i32))
}

/// How often an assigned reader looks for partitions added to its topic.
pub const PARTITION_CHECK_EVERY: Duration = Duration::from_secs(30);
/// How often it looks while the topic has not been found at all (not created yet, or the
/// broker not reachable).
const TOPIC_CHECK_EVERY: Duration = Duration::from_secs(2);

/// The partitions to start reading when the broker reports `reported` and `known` are read: the
/// added ones. A topic never loses partitions, so a smaller number (stale metadata) adds none.
fn added_partitions(known: i32, reported: i32) -> Range<i32> {
    known..reported.max(known)
}

/// Keeps a group-less consumer assigned to every partition of `topic`: those the broker's
/// metadata lists, and any added later (checked every PARTITION_CHECK_EVERY), each read from
/// `start`. Runs until `shutdown`, next to the loop that reads the consumer.
pub async fn follow_partitions(
    consumer: Arc<StreamConsumer>,
    topic: String,
    start: Offset,
    shutdown: CancellationToken,
) {
    let mut known = 0;
    loop {
        let (probe, name) = (consumer.clone(), topic.clone());
        let reported = tokio::task::spawn_blocking(move || partition_count(&*probe, &name, Duration::from_secs(10))).await;
        match reported {
            Ok(Ok(reported)) => {
                let added = added_partitions(known, reported);
                if !added.is_empty() {
                    match assign_more(&consumer, &topic, added.clone(), start) {
                        Ok(()) => {
                            tracing::info!(topic, partitions = ?added, "reading partitions");
                            known = added.end;
                        }
                        Err(e) => tracing::warn!(topic, "could not read partitions {added:?}: {e}"),
                    }
                }
            }
            Ok(Err(e)) => tracing::debug!(topic, "reading the partition count: {e}"),
            Err(e) => tracing::warn!(topic, "partition check failed: {e}"),
        }
        let wait = if known == 0 { TOPIC_CHECK_EVERY } else { PARTITION_CHECK_EVERY };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn assign_more(consumer: &StreamConsumer, topic: &str, partitions: Range<i32>, start: Offset) -> KafkaResult<()> {
    let mut more = TopicPartitionList::new();
    for partition in partitions {
        more.add_partition_offset(topic, partition, start)?;
    }
    consumer.incremental_assign(&more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_messages_are_logged_once_per_interval_with_the_count_since() {
        let mut log = SkipLog::new("test");
        let start = Instant::now();
        assert_eq!(log.count(start), Some(1), "the first is logged at once");
        assert_eq!(log.count(start + Duration::from_secs(1)), None);
        assert_eq!(log.count(start + Duration::from_secs(9)), None);
        assert_eq!(log.count(start + SKIP_LOG_EVERY), Some(3), "then one line for the three since");
        assert_eq!(log.total, 4);
    }

    #[test]
    fn excerpts_are_short_and_text_even_for_binary_or_multi_byte_payloads() {
        assert_eq!(excerpt(b"{\"a\": 1}"), "{\"a\": 1}");
        let long = "é".repeat(500);
        let shown = excerpt(long.as_bytes());
        assert!(shown.len() <= EXCERPT_BYTES + "…".len() && shown.ends_with('…'), "{shown}");
        assert!(excerpt(&[0xff; 1000]).chars().count() < 200);
    }

    #[test]
    fn the_flags_default_to_the_same_topics_as_topics_default() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            topics: Topics,
        }
        let parsed = <Cli as clap::Parser>::try_parse_from(["churn"]).unwrap().topics;
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Topics::default()));
        assert_eq!((parsed.input.as_str(), parsed.predictions.as_str()), ("costumerchurn", "test3"), "the original names");
    }

    #[test]
    fn only_reply_topics_with_legal_names_are_accepted_as_reply_to() {
        let topics = Topics::default();
        assert_eq!(topics.reply_topic("web-1"), "test3-replies-web-1");
        assert!(topics.accepts_reply_topic("test3-replies-web-1"));
        assert!(topics.accepts_reply_topic(&format!("test3-replies-{}", "x".repeat(MAX_TOPIC_BYTES - 14))));
        for hostile in [
            "churn-models",
            "test3",
            "costumerchurn",
            "test3-replies-",
            "test3-replies-x/../",
            "test3-replies-a b",
            "test3-replies-é",
            "Test3-replies-a",
            "xtest3-replies-a",
            &format!("test3-replies-{}", "x".repeat(MAX_TOPIC_BYTES - 13)),
        ] {
            assert!(!topics.accepts_reply_topic(hostile), "{hostile:?}");
        }
        let odd = Topics { models: "test3-replies-models".into(), ..Topics::default() };
        assert!(!odd.accepts_reply_topic("test3-replies-models"), "never one of the pipeline's own topics");
        assert!(!is_legal_topic("..") && !is_legal_topic("") && is_legal_topic("a.b_c-D9"));
    }

    #[test]
    fn only_added_partitions_are_assigned_and_a_stale_smaller_count_adds_none() {
        assert_eq!(added_partitions(0, 3), 0..3);
        assert_eq!(added_partitions(3, 5), 3..5);
        assert!(added_partitions(5, 5).is_empty());
        assert!(added_partitions(5, 2).is_empty());
    }
}
