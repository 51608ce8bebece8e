//! Where models live outside a process, in one place: model files on disk (load, save), the
//! compacted models topic (`topic`: publish, follow), and what a model must prove before it is
//! used ([`ModelTrust`]).

mod topic;

pub use topic::{
    current_lifecycle, follow, publish, publish_challenger, publish_champion, withdraw_challenger,
    Followed, ModelsWriter,
};

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use model::{ChurnModel, ModelFileError, SigningKey};
use prometheus_client::metrics::counter::Counter;

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
}
