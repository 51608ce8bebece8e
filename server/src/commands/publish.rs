//! `churn publish` (and `churn train --publish`): a model onto the models topic.

use std::path::PathBuf;

use anyhow::{Context, Result};
use model::ChurnModel;
use server::kafka::KafkaArgs;
use server::model_store::{self, ModelTrust};

use super::signing::SignArgs;

#[derive(clap::Args)]
pub struct PublishArgs {
    /// The model file to publish.
    #[arg(default_value = "data/model.json")]
    file: PathBuf,
    /// (An unsigned model is signed before it is published; a signed one must verify with the key.)
    #[command(flatten)]
    signing: SignArgs,
}

pub async fn run(args: &PublishArgs, kafka_args: &KafkaArgs) -> Result<()> {
    let key = args.signing.key()?;
    let mut model = model_store::load(&args.file, &ModelTrust::default())?;
    if let Some(key) = &key {
        if model.is_signed() {
            // Re-signing would vouch for whatever changed since the first signature.
            model
                .verify_signature(key)
                .with_context(|| format!("publishing {}", args.file.display()))?;
        } else {
            model.sign(key);
            println!("signed {}", model.version);
        }
    }
    publish_model(kafka_args, &model).await
}

/// Publishes `model`: every running scorer and web server switches to it.
pub async fn publish_model(kafka_args: &KafkaArgs, model: &ChurnModel) -> Result<()> {
    let kafka = super::connect(kafka_args).await?;
    model_store::publish(&kafka, model).await?;
    println!("published {} to {}", model.version, kafka.topics.models);
    Ok(())
}
