//! Where models live outside a process, in one place: model files on disk (load, save) and the
//! compacted models topic (publish, follow).
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
use model::ChurnModel;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::kafka::{tail_payloads, Kafka};

// Model files on disk.

/// Reads a model file.
pub fn load(path: &Path) -> Result<ChurnModel> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "no model at {}: train one with `churn train --input customers.csv --output {}`",
            path.display(),
            path.display()
        )
    })?;
    ChurnModel::from_json(&text).with_context(|| format!("loading {}", path.display()))
}

/// The model file if there is one; a missing file is fine when a model is published.
pub fn load_optional(path: &Path) -> Result<Option<ChurnModel>> {
    if path.exists() {
        load(path).map(Some)
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

fn parse(payload: Option<&[u8]>) -> Option<ChurnModel> {
    let text = std::str::from_utf8(payload?).ok()?;
    match ChurnModel::from_json(text) {
        Ok(model) => Some(model),
        Err(e) => {
            // Cut: the error may quote what a hostile producer wrote.
            tracing::warn!(
                "ignoring an unusable model on the models topic: {}",
                model::record::truncate_utf8(&e.to_string(), 300)
            );
            None
        }
    }
}

/// Starts following the models topic. Returns the model to use now (the newest published one,
/// or `fallback` when none is), and the task that keeps the channel updated until `shutdown`
/// (for the caller's supervisor to run).
pub async fn follow(
    kafka: &Kafka,
    fallback: Option<ChurnModel>,
    shutdown: CancellationToken,
) -> Result<(
    watch::Receiver<Arc<ChurnModel>>,
    impl std::future::Future<Output = Result<()>> + Send + 'static,
)> {
    let consumer = models_consumer(kafka)?;
    let topic = kafka.topics.models.clone();
    let (_, high) = {
        let consumer_ref = &consumer;
        let topic = topic.clone();
        tokio::task::block_in_place(|| {
            consumer_ref.fetch_watermarks(&topic, 0, Duration::from_secs(10))
        })
        .with_context(|| format!("reading the end of {topic}"))?
    };
    // Catch up: the newest valid model published so far.
    let mut newest = None;
    if high > 0 {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
                .await
                .with_context(|| format!("timed out reading {topic}"))??;
            if let Some(model) = parse(message.payload()) {
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
        (None, None) => anyhow::bail!(
            "no model: none is published on {topic} and no model file was given; train one with `churn train --publish`"
        ),
    };
    let (tx, rx) = watch::channel(Arc::new(current));
    let task = async move {
        tail_payloads(&consumer, "models topic", shutdown, |payload| {
            if let Some(model) = parse(Some(payload)) {
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
