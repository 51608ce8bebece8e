//! Kafka connection settings and the few broker operations every command shares.
//!
//! Everything goes through librdkafka, so the same code talks to the embedded broker or to a real
//! cluster; only the configuration differs (bootstrap servers plus any librdkafka property).
//!
//! This file holds the connection (`Kafka`, `KafkaArgs`, client configuration); by concept:
//! `topics` (names, defaults, reply topics, creation, partition counts), `tail` (readers that
//! follow a topic's partitions and hand on its payloads), `skip_log` (messages skipped
//! without flooding the log), `properties` (the `--kafka-properties` file format and which keys
//! are secrets) and `reachable` (the first contact, which tells a refused login from a broker
//! away). Their public items are re-exported here: `crate::kafka::X`.

mod close;
pub mod inspect;
pub mod properties;
mod reachable;
mod skip_log;
mod tail;
#[cfg(test)]
mod tests;
mod topics;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;

pub use close::{close_within, on_own_thread, CLOSE_WAIT};
pub use skip_log::{excerpt, SkipLog};
pub use tail::{follow_partitions, tail_messages, tail_payloads, PARTITION_CHECK_EVERY};
pub use topics::{
    is_legal_topic, partition_count, Topics, DEFAULT_DEAD_LETTER_TOPIC, DEFAULT_INPUT_TOPIC,
    DEFAULT_LABELS_TOPIC, DEFAULT_MODELS_TOPIC, DEFAULT_PARTITIONS, DEFAULT_PREDICTIONS_TOPIC,
    DEFAULT_REPLICATION, DEFAULT_STATS_TOPIC, MAX_TOPIC_BYTES, REPLY_RETENTION, REPLY_TO_HEADER,
};
pub use topics::{
    parse_retention, retention_ms, DEFAULT_RETENTION, STATS_CLEANUP_POLICY, STATS_RETENTION,
};

/// The embedded broker's default address.
pub const DEFAULT_EMBEDDED_PORT: u16 = 9092;

/// The scorers' consumer group (`churn score --group`, `churn serve`).
pub const DEFAULT_SCORER_GROUP: &str = "churn-scorer";
/// The analytics processors' consumer group (`churn analyze --group`).
pub const DEFAULT_ANALYTICS_GROUP: &str = "churn-analytics";

/// Where the brokers are and how to talk to them.
#[derive(Clone, Args)]
pub struct KafkaArgs {
    /// Bootstrap servers of an existing Kafka cluster (host:port,...). When omitted, commands that
    /// manage a broker start the embedded one, and the others use 127.0.0.1:9092.
    #[arg(long, env = "CHURN_BROKERS", global = true)]
    pub brokers: Option<String>,

    /// A file of librdkafka properties in the Java client's .properties format (key=value per
    /// line, # comments): the place for secrets such as sasl.password, which -X refuses. Applied
    /// before -X. Keep it private (chmod 600). `churn broker --secure` writes one for the
    /// embedded broker: <data-dir>/kafka.properties.
    #[arg(
        long = "kafka-properties",
        value_name = "FILE",
        env = "CHURN_KAFKA_PROPERTIES_FILE",
        global = true
    )]
    pub properties_file: Option<PathBuf>,

    /// Any librdkafka property that is not a secret, e.g. -X security.protocol=SASL_SSL
    /// -X sasl.mechanism=PLAIN. Repeatable; CHURN_KAFKA_PROPERTIES takes a comma-separated list.
    /// Passwords and keys go in --kafka-properties FILE (or CHURN_KAFKA_PROPERTIES), never here:
    /// a command line is visible to every user of the machine and kept in shell history.
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", env = "CHURN_KAFKA_PROPERTIES",
          value_delimiter = ',', value_parser = parse_property, global = true)]
    pub properties: Vec<(String, String)>,

    #[command(flatten)]
    pub topics: Topics,
}

impl fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaArgs")
            .field("brokers", &self.brokers)
            .field("properties_file", &self.properties_file)
            .field("properties", &properties::Redacted(&self.properties))
            .field("topics", &self.topics)
            .finish()
    }
}

/// A secret given with -X on the command line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "refusing -X {key}=…: a secret on the command line is visible to every user of this machine \
     (ps) and stays in shell history. Put it in a file given with --kafka-properties FILE \
     (one key=value per line, chmod 600), or in the CHURN_KAFKA_PROPERTIES environment variable"
)]
pub struct SecretOnCommandLine {
    pub key: String,
}

impl KafkaArgs {
    /// Refuses secret properties (`properties::is_secret_key`) given with -X on the command line;
    /// the same in CHURN_KAFKA_PROPERTIES is accepted. `matches` are the parsed command line these
    /// arguments came from: they tell a command-line value from an environment one.
    pub fn refuse_secrets_on_command_line(
        &self,
        matches: &clap::ArgMatches,
    ) -> Result<(), SecretOnCommandLine> {
        // The id clap derives from the field name `properties`.
        if matches.value_source("properties") != Some(clap::parser::ValueSource::CommandLine) {
            return Ok(());
        }
        match self
            .properties
            .iter()
            .find(|(key, _)| properties::is_secret_key(key))
        {
            Some((key, _)) => Err(SecretOnCommandLine { key: key.clone() }),
            None => Ok(()),
        }
    }
}

pub fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        // Not the text itself: it may be a secret typed without its `=`.
        _ => Err("expected KEY=VALUE".into()),
    }
}

/// A resolved connection: bootstrap servers plus pass-through properties.
#[derive(Clone)]
pub struct Kafka {
    pub brokers: String,
    /// librdkafka properties, applied in order: the properties file's, then -X ones.
    pub properties: Vec<(String, String)>,
    /// The file some of `properties` came from, for messages about them.
    pub properties_file: Option<PathBuf>,
    pub topics: Topics,
}

/// Secret values never reach a log line through `{:?}`.
impl fmt::Debug for Kafka {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kafka")
            .field("brokers", &self.brokers)
            .field("properties", &properties::Redacted(&self.properties))
            .field("properties_file", &self.properties_file)
            .field("topics", &self.topics)
            .finish()
    }
}

impl Kafka {
    /// The connection the command line asks for: the properties file (if any) read, then the -X
    /// properties after it.
    pub fn new(brokers: impl Into<String>, args: &KafkaArgs) -> Result<Self> {
        let kafka = Kafka {
            brokers: brokers.into(),
            properties: args.properties.clone(),
            properties_file: None,
            topics: args.topics.clone(),
        };
        match &args.properties_file {
            Some(path) => kafka.with_properties_file(path),
            None => Ok(kafka),
        }
    }

    /// A plain connection with default topics, for tests and tools.
    pub fn at(brokers: impl Into<String>) -> Self {
        Kafka {
            brokers: brokers.into(),
            properties: Vec::new(),
            properties_file: None,
            topics: Topics::default(),
        }
    }

    /// The same connection with the properties of a file applied first (so the ones it already
    /// has win); warns when the file is readable by other users.
    pub fn with_properties_file(mut self, path: &Path) -> Result<Self> {
        let mut from_file = properties::read_file(path)?;
        if properties::readable_by_others(path).unwrap_or(false) {
            tracing::warn!(
                "the Kafka properties file {} can be read by other users of this machine: \
                 run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
        from_file.append(&mut self.properties);
        self.properties = from_file;
        self.properties_file = Some(path.to_owned());
        Ok(self)
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
    ///
    /// `queued.max.messages.kbytes`: what a consumer may prefetch while its reader lags. At
    /// librdkafka's 64 MB each, the half-dozen consumers of one `churn serve` could hold a few
    /// hundred MB between them (at 3,000 records/s `serve` reached 272 MB while catching up, and
    /// 269 MB with only the scorer left at 64 MB); 16 MB is still ~30,000 predictions, or ~40,000
    /// input records (13 s at 3,000/s), queued per consumer.
    pub fn consumer_config(&self, group: &str, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut all = vec![
            ("group.id", group),
            ("isolation.level", "read_uncommitted"),
            ("fetch.queue.backoff.ms", "1"),
            ("queued.max.messages.kbytes", Self::PREFETCH_KBYTES),
        ];
        all.extend_from_slice(defaults);
        self.config(&all)
    }

    /// `fetch.wait.max.ms` for a consumer a person may be waiting on: the scorer's input and a
    /// web server's replies (every other consumer keeps librdkafka's 500 ms). A Kafka broker
    /// answers a parked Fetch the moment records arrive, so there the wait costs no latency. The
    /// embedded broker instead re-reads storage at halving intervals until the wait ends (at
    /// w/2, 3w/4, ...): a short wait answers sooner but re-reads far more often, and those
    /// re-reads took the broker's core. Measured on it (SQLite, 2 cores, `churn-bench --soak 3m
    /// --rate 3000`): at 5 ms the broker sat at 91% of a core and the pipeline delivered 555
    /// predictions/s; at 25 ms, 1,564/s; at 100 ms, ~3,000/s (the rate asked). An idle `churn
    /// serve` kept the broker at 80% of a core at 5 ms, 45% at 25 ms. The price is the form's
    /// round trip on the embedded broker: p50 11 ms at 5 ms, 15 ms at 25 ms, 52 ms at 100 ms.
    /// `-X fetch.wait.max.ms=5` buys the lowest latency back (for every consumer of the process).
    pub const INTERACTIVE_FETCH_WAIT_MS: &'static str = "100";

    /// The bulk producer's `linger.ms`. Two costs set it. The embedded SQLite broker makes each
    /// produce request one transaction: `--rate 3000` with `churn serve` gave 431 predictions/s at
    /// 5 ms, 1,000–2,000/s at 50 ms. And an idempotent librdkafka producer (2.12) allows a
    /// partition five *messages* in flight (`RD_KAFKA_IDEMP_MAX_INFLIGHT`), so in effect one
    /// request per partition at a time; when the next batch's linger runs out before the broker
    /// has answered the last, its broker thread spins on `poll(…, 0)` until the answer comes
    /// (seen with strace: ~17,000 polls/s). With a broker slow to answer, that took 85–89% of a
    /// core in `churn replay` at 3,000 records/s (`churn-bench --soak`, 50 ms); at 200 ms, 26%,
    /// leaving the core to the broker: 3,051 predictions/s over the second half of a 4-minute
    /// soak instead of 2,443 (BENCHMARKS.md, "Memory over time").
    pub const BULK_LINGER_MS: &'static str = "200";

    /// Each consumer's prefetch bound in KiB (see `consumer_config`).
    pub const PREFETCH_KBYTES: &'static str = "16384";

    /// A producer that never duplicates or reorders on retry, and waits for all replicas.
    pub fn idempotent_producer(&self) -> Result<FutureProducer> {
        self.idempotent_producer_config()
            .create()
            .context("creating the Kafka producer")
    }

    /// An idempotent producer for bulk loads (`churn replay`), where a record's latency matters
    /// less than the work per record: it waits up to `BULK_LINGER_MS` to fill a batch.
    /// `-X linger.ms=…` still wins.
    pub fn bulk_producer(&self) -> Result<FutureProducer> {
        self.idempotent_config_lingering(Self::BULK_LINGER_MS)
            .create()
            .context("creating the Kafka producer")
    }

    /// The idempotent producer's configuration, for producers with their own delivery context.
    pub fn idempotent_producer_config(&self) -> ClientConfig {
        self.idempotent_config_lingering("5")
    }

    /// Idempotent (acks from every in-sync replica, no duplicates from retries), batching for up
    /// to `linger_ms`.
    fn idempotent_config_lingering(&self, linger_ms: &str) -> ClientConfig {
        self.config(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", linger_ms),
        ])
    }
}
