//! `churn publish` (and `churn train --publish`): a model onto the models topic, as champion
//! (the default) or as challenger, scored in the shadow; or the challenger withdrawn.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use model::{ChurnModel, SigningKey};
use server::kafka::KafkaArgs;
use server::model_store::{self, ModelTrust};

use super::signing::SignArgs;

/// Who the models topic's history names for what this command does.
const BY: &str = "churn publish";

#[derive(clap::Args)]
pub struct PublishArgs {
    /// The model file to publish.
    #[arg(default_value = "data/model.json")]
    file: PathBuf,
    /// Publish it as the challenger instead: every scorer scores each record with it too, in
    /// the shadow (its scores never reach users), and the duel compares it with the champion.
    #[arg(long, conflicts_with = "withdraw_challenger")]
    challenger: bool,
    /// Withdraw the challenger: scorers stop scoring it (takes no model file).
    #[arg(long, conflicts_with = "file")]
    withdraw_challenger: bool,
    /// (An unsigned model is signed before it is published; a signed one must verify with the key.)
    #[command(flatten)]
    signing: SignArgs,
}

/// What `churn publish` was asked to do.
#[derive(Debug, PartialEq)]
enum Action<'a> {
    Champion(&'a Path),
    Challenger(&'a Path),
    WithdrawChallenger,
}

impl PublishArgs {
    fn action(&self) -> Action<'_> {
        if self.withdraw_challenger {
            Action::WithdrawChallenger
        } else if self.challenger {
            Action::Challenger(&self.file)
        } else {
            Action::Champion(&self.file)
        }
    }
}

pub async fn run(args: &PublishArgs, kafka_args: &KafkaArgs) -> Result<()> {
    match args.action() {
        Action::Champion(file) => {
            let model = to_publish(file, args.signing.key()?.as_ref())?;
            publish_model(kafka_args, &model).await
        }
        Action::Challenger(file) => {
            let model = to_publish(file, args.signing.key()?.as_ref())?;
            let kafka = super::connect(kafka_args).await?;
            model_store::publish_challenger(&kafka, &model, BY).await?;
            println!(
                "published {} as challenger to {}: scorers score it in the shadow",
                model.version, kafka.topics.models
            );
            Ok(())
        }
        Action::WithdrawChallenger => {
            let kafka = super::connect(kafka_args).await?;
            model_store::withdraw_challenger(&kafka, BY).await?;
            println!("withdrew the challenger on {}", kafka.topics.models);
            Ok(())
        }
    }
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

/// Publishes `model` as champion: every running scorer and web server switches to it.
pub async fn publish_model(kafka_args: &KafkaArgs, model: &ChurnModel) -> Result<()> {
    let kafka = super::connect(kafka_args).await?;
    model_store::publish_champion(&kafka, model, BY).await?;
    println!("published {} to {}", model.version, kafka.topics.models);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(vec![byte; 32]).unwrap()
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: PublishArgs,
    }

    fn parse(args: &[&str]) -> Result<PublishArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("publish").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn the_champion_is_the_default_seat_and_the_challenger_is_asked_for() {
        let champion = parse(&["m.json"]).unwrap();
        assert_eq!(champion.action(), Action::Champion(Path::new("m.json")));
        let default = parse(&[]).unwrap();
        assert_eq!(
            default.action(),
            Action::Champion(Path::new("data/model.json"))
        );
        let challenger = parse(&["--challenger", "c.json"]).unwrap();
        assert_eq!(challenger.action(), Action::Challenger(Path::new("c.json")));
        let withdraw = parse(&["--withdraw-challenger"]).unwrap();
        assert_eq!(withdraw.action(), Action::WithdrawChallenger);
        // Asking for both is a mistake, not a choice made for the user.
        let both = parse(&["--challenger", "--withdraw-challenger"])
            .err()
            .unwrap();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
        // A file named with a withdrawal would be silently ignored: refused instead.
        let file = parse(&["m.json", "--withdraw-challenger"]).err().unwrap();
        assert_eq!(file.kind(), clap::error::ErrorKind::ArgumentConflict);
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
