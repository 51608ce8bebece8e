//! `churn publish` (and `churn train --publish`): a model onto the models topic.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use model::{ChurnModel, SigningKey};
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
    let model = to_publish(&args.file, args.signing.key()?.as_ref())?;
    publish_model(kafka_args, &model).await
}

/// The model file, verified, and signed with `key` if it was not signed yet.
fn to_publish(file: &Path, key: Option<&SigningKey>) -> Result<ChurnModel> {
    let mut model = model_store::load(file, &ModelTrust::default())?;
    if let Some(key) = key {
        if model.is_signed() {
            // Re-signing would vouch for whatever changed since the first signature.
            model
                .verify_signature(key)
                .with_context(|| format!("publishing {}", file.display()))?;
        } else {
            model.sign(key);
            println!("signed {}", model.version);
        }
    }
    Ok(model)
}

/// Publishes `model`: every running scorer and web server switches to it.
pub async fn publish_model(kafka_args: &KafkaArgs, model: &ChurnModel) -> Result<()> {
    let kafka = super::connect(kafka_args).await?;
    model_store::publish(&kafka, model).await?;
    println!("published {} to {}", model.version, kafka.topics.models);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(vec![byte; 32]).unwrap()
    }

    #[test]
    fn a_model_is_signed_before_publishing_and_a_signed_one_must_verify() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.json");
        let customers = model::synth::generate_customers(&model::synth::GenerateOptions {
            rows: 200,
            seed: 6,
            messy_fraction: 0.0,
        });
        let mut model =
            model::train::train(&customers, &Default::default(), "t".into(), |_| {}).unwrap();
        model_store::save(&model, &file).unwrap();

        assert!(!to_publish(&file, None).unwrap().is_signed());
        let signed = to_publish(&file, Some(&key(1))).unwrap();
        signed.verify_signature(&key(1)).unwrap();

        model.sign(&key(2));
        model_store::save(&model, &file).unwrap();
        let error = format!("{:#}", to_publish(&file, Some(&key(1))).unwrap_err());
        assert!(error.contains("does not verify"), "{error}");
        to_publish(&file, Some(&key(2))).unwrap();

        model.threshold = 0.01;
        model_store::save(&model, &file).unwrap();
        assert!(
            to_publish(&file, None).is_err(),
            "an edited file is never published"
        );
    }
}
