//! Where models live outside a process, in one place: model files on disk (load, save) and the
//! compacted models topic (publish, follow), and what a model must prove before it is used
//! ([`ModelTrust`]).
//!
//! Live model updates, the distributed way: models are published to a compacted topic, and
//! every scorer and web server follows it, swapping to each new model as it arrives.
//!
//! The swap is a `watch` channel: the scorer takes the current model once per batch, so a batch
//! in flight finishes with the model it started with and nothing is dropped.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use anyhow::{Context, Result};
use model::{ChurnModel, ModelFileError, SigningKey};
use prometheus_client::metrics::counter::Counter;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::kafka::{tail_payloads, Kafka};

// What a model must prove.

/// What a model must prove before it is used, wherever it comes from (a file, the models topic,
/// an upload): always its content hash; with a signing key, also its signature.
#[derive(Debug, Clone, Default)]
pub struct ModelTrust {
    key: Option<Arc<SigningKey>>,
    /// Models refused (the process's `churn_models_refused_total` when it has metrics).
    refused: Counter,
}

impl ModelTrust {
    /// Only models signed with `key` are used.
    pub fn signed_by(key: SigningKey) -> Self {
        ModelTrust {
            key: Some(Arc::new(key)),
            ..Default::default()
        }
    }

    /// Counts refusals into `refused` (e.g. the process's metric).
    pub fn counting_into(mut self, refused: Counter) -> Self {
        self.refused = refused;
        self
    }

    pub fn requires_signature(&self) -> bool {
        self.key.is_some()
    }

    /// How many models were refused.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }

    /// Reads a model file's text, verified; a refusal is counted.
    pub fn verify(&self, text: &str) -> Result<ChurnModel, ModelFileError> {
        let verified = match &self.key {
            Some(key) => ChurnModel::from_signed_json(text, key),
            None => ChurnModel::from_json(text),
        };
        if verified.is_err() {
            self.refused.inc();
        }
        verified
    }
}

// Model files on disk.

/// Reads a model file, verified as `trust` says.
pub fn load(path: &Path, trust: &ModelTrust) -> Result<ChurnModel> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "no model at {}: train one with `churn train --input customers.csv --output {}`",
            path.display(),
            path.display()
        )
    })?;
    trust
        .verify(&text)
        .with_context(|| format!("loading {}", path.display()))
}

/// The model file if there is one; a missing file is fine when a model is published.
pub fn load_optional(path: &Path, trust: &ModelTrust) -> Result<Option<ChurnModel>> {
    if path.exists() {
        load(path, trust).map(Some)
    } else {
        tracing::info!(path = %path.display(), "no model file; expecting a published model");
        Ok(None)
    }
}

/// Writes atomically (temp file + rename) so a running scorer never reads half a model.
pub fn save(model: &ChurnModel, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, model.to_json()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

// The models topic.

/// Every model is published under this key, so compaction keeps only the newest.
const MODEL_KEY: &str = "churn-model";

/// Publishes a model; followers switch to it within moments.
pub async fn publish(kafka: &Kafka, model: &ChurnModel) -> Result<()> {
    let producer = kafka.idempotent_producer()?;
    let payload = model.to_json();
    producer
        .send(
            FutureRecord::to(&kafka.topics.models)
                .key(MODEL_KEY)
                .payload(&payload),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .with_context(|| {
            format!(
                "publishing model {} to {}",
                model.version, kafka.topics.models
            )
        })?;
    tracing::info!(version = %model.version, topic = %kafka.topics.models, "model published");
    Ok(())
}

fn models_consumer(kafka: &Kafka) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = kafka
        .consumer_config(
            "churn-model-follower",
            &[
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
            ],
        )
        .create()
        .context("creating the models consumer")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&kafka.topics.models, 0, Offset::Beginning)?;
    consumer
        .assign(&assignment)
        .context("reading the models topic")?;
    Ok(consumer)
}

/// A model from the topic, if it is one that `trust` accepts; the others are logged, counted and
/// skipped, so the model in use stays.
fn parse(payload: Option<&[u8]>, trust: &ModelTrust) -> Option<ChurnModel> {
    let verified = match std::str::from_utf8(payload?) {
        Ok(text) => trust.verify(text),
        Err(_) => {
            trust.refused.inc();
            Err(ModelFileError::Invalid("not UTF-8 text".into()))
        }
    };
    match verified {
        Ok(model) => Some(model),
        Err(e) => {
            // Cut: the error may quote what a hostile producer wrote.
            tracing::warn!(
                "refusing a model on the models topic, keeping the current one: {}",
                model::record::truncate_utf8(&e.to_string(), 300)
            );
            None
        }
    }
}

/// Starts following the models topic. Returns the model to use now (the newest published one
/// that `trust` accepts, or `fallback` when none is), and the task that keeps the channel updated
/// until `shutdown` (for the caller's supervisor to run) with each new model `trust` accepts.
pub async fn follow(
    kafka: &Kafka,
    fallback: Option<ChurnModel>,
    trust: ModelTrust,
    shutdown: CancellationToken,
) -> Result<(
    watch::Receiver<Arc<ChurnModel>>,
    impl std::future::Future<Output = Result<()>> + Send + 'static,
)> {
    let consumer = models_consumer(kafka)?;
    let topic = kafka.topics.models.clone();
    // On a thread of its own, not blocking this future: a stop meanwhile abandons the wait.
    let asked = {
        let topic = topic.clone();
        crate::kafka::on_own_thread(
            move || {
                let end = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10));
                (consumer, end)
            },
            Duration::from_secs(11),
        )
    };
    let (consumer, end) = asked
        .await
        .with_context(|| format!("no answer reading the end of {topic}"))?;
    let (_, high) = end.with_context(|| format!("reading the end of {topic}"))?;
    // Catch up: the newest valid model published so far.
    let mut newest = None;
    if high > 0 {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
                .await
                .with_context(|| format!("timed out reading {topic}"))??;
            if let Some(model) = parse(message.payload(), &trust) {
                newest = Some(model);
            }
            if message.offset() + 1 >= high {
                break;
            }
        }
    }
    let current = match (newest, fallback) {
        (Some(model), _) => {
            tracing::info!(version = %model.version, "using the newest published model");
            model
        }
        (None, Some(model)) => model,
        (None, None) if trust.requires_signature() => anyhow::bail!(
            "no model: none signed with the signing key is published on {topic} and no model file was given; train one with `churn train --publish --model-signing-key KEY`"
        ),
        (None, None) => anyhow::bail!(
            "no model: none is published on {topic} and no model file was given; train one with `churn train --publish`"
        ),
    };
    let (tx, rx) = watch::channel(Arc::new(current));
    let task = async move {
        tail_payloads(&consumer, "models topic", shutdown, |payload| {
            if let Some(model) = parse(Some(payload), &trust) {
                if model.version != tx.borrow().version {
                    tracing::info!(from = %tx.borrow().version, to = %model.version, "switching model");
                    tx.send_replace(Arc::new(model));
                }
            }
        })
        .await;
        crate::kafka::close_within(consumer, "models topic reader").await;
        Ok(())
    };
    Ok((rx, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(vec![byte; 32]).unwrap()
    }

    fn model() -> ChurnModel {
        let customers = model::synth::generate_customers(&model::synth::GenerateOptions {
            rows: 200,
            seed: 5,
            messy_fraction: 0.0,
        });
        model::train::train(&customers, &Default::default(), "t".into(), |_| {}).unwrap()
    }

    /// The same model, edited after training the way the tests try: one weight, the threshold.
    fn tampered(model: &ChurnModel) -> [String; 2] {
        let mut weight = model.clone();
        weight.features[0].coefficient += 0.25;
        let mut threshold = model.clone();
        threshold.threshold = 0.01;
        [weight.to_json(), threshold.to_json()]
    }

    #[test]
    fn files_are_verified_and_refusals_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        let trained = model();
        save(&trained, &path).unwrap();
        let trust = ModelTrust::default();
        assert_eq!(load(&path, &trust).unwrap(), trained);
        for text in tampered(&trained) {
            std::fs::write(&path, text).unwrap();
            let error = format!("{:#}", load(&path, &trust).unwrap_err());
            assert!(error.contains("changed after training"), "{error}");
            assert!(
                load_optional(&path, &trust).is_err(),
                "a bad file is no missing file"
            );
        }
        assert_eq!(trust.refused(), 4);
        assert!(load_optional(&dir.path().join("none.json"), &trust)
            .unwrap()
            .is_none());
    }

    #[test]
    fn with_a_key_only_models_signed_with_it_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        let trust = ModelTrust::signed_by(key(1)).counting_into(Counter::default());
        assert!(trust.requires_signature());
        let mut signed = model();
        signed.sign(&key(1));
        save(&signed, &path).unwrap();
        assert_eq!(load(&path, &trust).unwrap(), signed);

        let unsigned = model();
        save(&unsigned, &path).unwrap();
        let error = format!("{:#}", load(&path, &trust).unwrap_err());
        assert!(error.contains("not signed"), "{error}");

        let mut other = model();
        other.sign(&key(2));
        save(&other, &path).unwrap();
        let error = format!("{:#}", load(&path, &trust).unwrap_err());
        assert!(error.contains("does not verify"), "{error}");

        let mut stripped = signed.clone();
        stripped.integrity.signature = None;
        assert!(trust.verify(&stripped.to_json()).is_err());
        for text in tampered(&signed) {
            assert!(trust.verify(&text).is_err());
        }
        assert_eq!(trust.refused(), 5);
        // Without a key the hash is still checked; a signature is then not needed.
        assert!(ModelTrust::default().verify(&other.to_json()).is_ok());
    }

    #[test]
    fn the_follower_takes_only_what_trust_accepts() {
        let trust = ModelTrust::signed_by(key(1));
        let mut signed = model();
        signed.sign(&key(1));
        assert_eq!(
            parse(Some(signed.to_json().as_bytes()), &trust),
            Some(signed.clone())
        );
        let mut other = model();
        other.sign(&key(2));
        let hostile: Vec<Vec<u8>> = vec![
            model().to_json().into_bytes(),
            other.to_json().into_bytes(),
            tampered(&signed)[0].clone().into_bytes(),
            tampered(&signed)[1].clone().into_bytes(),
            vec![0xff, 0xfe, 0x00],
            b"{}".to_vec(),
        ];
        for payload in &hostile {
            assert_eq!(parse(Some(payload), &trust), None);
        }
        assert_eq!(parse(None, &trust), None);
        assert_eq!(trust.refused(), hostile.len() as u64);
    }
}
