//! The `--model-signing-key FILE` flag: commands that make models sign them with it, commands
//! that use models accept only models signed with it.

use std::path::PathBuf;

use anyhow::Result;
use model::SigningKey;
use server::model_store::ModelTrust;
use server::signing_key;

/// For commands that make or publish models (`churn train`, `churn publish`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SignArgs {
    /// Sign the model with this key file (hex, made by `churn model keygen FILE`), so that
    /// scorers given the same key accept it.
    #[arg(
        long = "model-signing-key",
        env = "CHURN_MODEL_SIGNING_KEY_FILE",
        value_name = "FILE"
    )]
    pub key_file: Option<PathBuf>,
}

impl SignArgs {
    pub fn key(&self) -> Result<Option<SigningKey>> {
        self.key_file.as_deref().map(signing_key::read).transpose()
    }
}

/// For commands that use models (`churn score`, `serve`, `analyze`, `score-file`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct VerifyArgs {
    /// Use only models signed with this key file (hex, made by `churn model keygen FILE`): an
    /// unsigned or wrongly signed model, from the file or the models topic, is refused. Without
    /// it, models are still checked against their content hash.
    #[arg(
        long = "model-signing-key",
        env = "CHURN_MODEL_SIGNING_KEY_FILE",
        value_name = "FILE"
    )]
    pub key_file: Option<PathBuf>,
}

impl VerifyArgs {
    /// What a model must prove in this command.
    pub fn trust(&self) -> Result<ModelTrust> {
        Ok(match &self.key_file {
            Some(path) => ModelTrust::signed_by(signing_key::read(path)?),
            None => ModelTrust::default(),
        })
    }
}
