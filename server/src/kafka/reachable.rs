//! The first contact every command makes: is a broker there, and does it let us in?
//!
//! librdkafka retries a refused login forever and reports it only through its error callback, so
//! a plain metadata request would wait out its timeout and blame the network. This asks in short
//! steps and watches the callback in between, so refused credentials fail at once, with the file
//! to fix.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

use super::Kafka;

/// How a broker turned us away, as librdkafka's error callback saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// The login failed (wrong user or password, or a mechanism the broker does not offer).
    Credentials(String),
    /// The connection was up, then closed by the broker: what a broker requiring a login does
    /// to a client that sends none.
    Closed(String),
}

/// Records the first refusal librdkafka reports.
#[derive(Default)]
struct RefusalWatch {
    refusal: Mutex<Option<Refusal>>,
}

impl RefusalWatch {
    fn note(&self, refusal: Refusal) {
        let mut slot = self.refusal.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(refusal);
    }

    fn refusal(&self) -> Option<Refusal> {
        self.refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// librdkafka's words for a connection closed by the broker after it was up ("Disconnected:
/// connection reset by peer (after 0ms in state UP)", "Send failed: Broken pipe (after 0ms in
/// state UP)"); a broker that is away reads "Connect to ... failed: Connection refused" instead.
fn closed_after_connecting(reason: &str) -> bool {
    reason.contains("in state UP")
}

impl ClientContext for RefusalWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => {
                self.note(Refusal::Credentials(reason.to_owned()))
            }
            Some(RDKafkaErrorCode::BrokerTransportFailure) if closed_after_connecting(reason) => {
                self.note(Refusal::Closed(reason.to_owned()))
            }
            _ => tracing::debug!(target: "librdkafka", "{error}: {reason}"),
        }
    }

    // Some closes are only logged, not raised as errors.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if facility == "FAIL" && closed_after_connecting(message) {
            self.note(Refusal::Closed(message.to_owned()));
        }
        tracing::debug!(target: "librdkafka", ?level, "{facility} {message}");
    }
}

impl ProducerContext for RefusalWatch {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// How long to let a broker that closes connections do so again before calling it a refusal: a
/// broker restarting closes connections once too.
const CLOSED_GRACE: Duration = Duration::from_secs(2);

impl Kafka {
    /// Fails with a helpful message when no broker answers, or when it refuses our credentials
    /// (at once: a wrong password is not worth the wait).
    pub async fn check_reachable(&self, timeout: Duration) -> Result<()> {
        let mut config = self.config(&[]);
        // The closes `RefusalWatch::log` looks for are warnings; the level librdkafka logs at
        // otherwise follows the process's logging setup.
        config.set_log_level(RDKafkaLogLevel::Warning);
        let producer: BaseProducer<RefusalWatch> = config
            .create_with_context(RefusalWatch::default())
            .context("creating a Kafka client")?;
        let kafka = self.clone();
        tokio::task::spawn_blocking(move || kafka.wait_reachable(&producer, timeout)).await?
    }

    fn wait_reachable(
        &self,
        producer: &BaseProducer<RefusalWatch>,
        timeout: Duration,
    ) -> Result<()> {
        let start = Instant::now();
        let mut closed_since: Option<Instant> = None;
        loop {
            let step = timeout
                .saturating_sub(start.elapsed())
                .min(Duration::from_millis(250));
            let answer = producer.client().fetch_metadata(None, step);
            // Serves the error callbacks.
            producer.poll(Duration::ZERO);
            if answer.is_ok() {
                return Ok(());
            }
            match producer.context().refusal() {
                Some(Refusal::Credentials(reason)) => bail!(
                    "the broker at {} refused our credentials ({reason}): check sasl.username / \
                     sasl.password in {}",
                    self.brokers,
                    self.credentials_source()
                ),
                Some(Refusal::Closed(reason)) => {
                    let since = *closed_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= CLOSED_GRACE || start.elapsed() >= timeout {
                        bail!(
                            "the broker at {} closes our connections ({reason}): it probably \
                             requires a login. Pass --kafka-properties FILE with \
                             security.protocol, sasl.mechanism, sasl.username and sasl.password \
                             (for `churn broker --secure`: <data-dir>/kafka.properties){}",
                            self.brokers,
                            if self.has_login() {
                                "; ours are set, so check security.protocol and sasl.mechanism"
                            } else {
                                ""
                            }
                        );
                    }
                }
                None => {}
            }
            if start.elapsed() >= timeout {
                let error = answer.err().map(|e| e.to_string()).unwrap_or_default();
                bail!(
                    "broker at {} not reachable ({error}): start the embedded one with `churn \
                     broker`, run `churn serve` (which starts it), or pass --brokers HOST:PORT of \
                     your cluster",
                    self.brokers
                );
            }
        }
    }

    /// Where the user set the credentials, for messages telling them what to fix.
    fn credentials_source(&self) -> String {
        match &self.properties_file {
            Some(path) => path.display().to_string(),
            None => "your --kafka-properties FILE (or CHURN_KAFKA_PROPERTIES)".into(),
        }
    }

    /// Whether a SASL login is configured.
    fn has_login(&self) -> bool {
        self.properties.iter().any(|(key, value)| {
            key == "security.protocol" && value.to_ascii_uppercase().starts_with("SASL")
        })
    }
}
