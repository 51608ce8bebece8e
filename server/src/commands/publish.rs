//! `churn publish` (and `churn train --publish`): a model onto the models topic.

use std::path::Path;

use anyhow::Result;
use model::ChurnModel;
use server::kafka::KafkaArgs;
use server::model_store;

pub async fn run(file: &Path, kafka_args: &KafkaArgs) -> Result<()> {
    publish_model(kafka_args, &model_store::load(file)?).await
}

/// Publishes `model`: every running scorer and web server switches to it.
pub async fn publish_model(kafka_args: &KafkaArgs, model: &ChurnModel) -> Result<()> {
    let kafka = super::connect(kafka_args).await?;
    model_store::publish(&kafka, model).await?;
    println!("published {} to {}", model.version, kafka.topics.models);
    Ok(())
}
