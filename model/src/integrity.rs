//! Proof that a model is the one training wrote: its seal. A SHA-256 content hash over the
//! canonical serialisation of every field but the seal catches a model edited after training
//! (weights, threshold, reference date, ...); an HMAC-SHA256 signature with the operator's key
//! proves who made it, since anyone can recompute a hash. Pure (sha2, hmac), like the rest of
//! the model.
//!
//! Canonical serialisation: the model as a JSON value without its `integrity` field, keys sorted
//! (serde_json's map), compact. Numbers print in their shortest exact form and read back bit
//! for bit (serde_json's `float_roundtrip`), so a model that went through a file or the models
//! topic hashes as it did when it was sealed.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model_file::{ChurnModel, ModelFileError};

/// Shortest signing key accepted: HMAC-SHA256's own output size.
pub const MIN_KEY_BYTES: usize = 32;

/// Separates model signatures from anything else the same key might ever sign.
const SIGNATURE_CONTEXT: &[u8] = b"churn-model-signature-v1\0";

/// The seal stored in a model file (`"integrity"`): its content hash, and its signature when
/// it was signed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// Hex SHA-256 of the canonical serialisation.
    #[serde(default)]
    pub sha256: String,
    /// Hex HMAC-SHA256 of the canonical serialisation with the signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A key that signs and verifies models. Its bytes never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Why a signing key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key is not hex text: make one with `churn model keygen FILE`")]
    NotHex,
    #[error(
        "the signing key has {bytes} bytes, at least {MIN_KEY_BYTES} are needed: make one with `churn model keygen FILE`"
    )]
    TooShort { bytes: usize },
}

impl SigningKey {
    /// A key from raw bytes (e.g. fresh random ones); at least [`MIN_KEY_BYTES`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort { bytes: bytes.len() });
        }
        Ok(SigningKey(bytes))
    }

    /// A key as a key file holds it: hex text, surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(text.trim()).map_err(|_| KeyError::NotHex)?;
        SigningKey::from_bytes(bytes)
    }

    /// The key as a key file holds it (without a line end).
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any size");
        mac.update(SIGNATURE_CONTEXT);
        mac
    }
}

impl ChurnModel {
    /// Everything the seal covers, in its one canonical form.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).expect("a model always serializes");
        if let Some(fields) = value.as_object_mut() {
            fields.remove("integrity");
        }
        serde_json::to_vec(&value).expect("a JSON value always serializes")
    }

    /// The hex SHA-256 of the canonical serialisation.
    pub fn content_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }

    /// Seals the model as it is now, unsigned (an earlier signature no longer applies).
    pub fn seal(&mut self) {
        self.integrity = Seal {
            sha256: self.content_hash(),
            signature: None,
        };
    }

    /// Seals and signs the model as it is now.
    pub fn sign(&mut self, key: &SigningKey) {
        let mut mac = key.mac();
        mac.update(&self.canonical_bytes());
        self.integrity = Seal {
            sha256: self.content_hash(),
            signature: Some(hex::encode(mac.finalize().into_bytes())),
        };
    }

    pub fn is_signed(&self) -> bool {
        self.integrity.signature.is_some()
    }

    /// Whether the content is what was sealed. Every model read is checked (`from_json`).
    pub fn verify_content_hash(&self) -> Result<(), ModelFileError> {
        if self.integrity.sha256.is_empty() {
            return Err(ModelFileError::Unsealed);
        }
        if self.integrity.sha256 != self.content_hash() {
            return Err(ModelFileError::Tampered);
        }
        Ok(())
    }

    /// Whether `key` signed exactly this content (compared in constant time).
    pub fn verify_signature(&self, key: &SigningKey) -> Result<(), ModelFileError> {
        let signature =
            self.integrity
                .signature
                .as_deref()
                .ok_or_else(|| ModelFileError::Unsigned {
                    version: self.version.clone(),
                })?;
        let bad = || ModelFileError::BadSignature {
            version: self.version.clone(),
        };
        let signature = hex::decode(signature).map_err(|_| bad())?;
        let mut mac = key.mac();
        mac.update(&self.canonical_bytes());
        mac.verify_slice(&signature).map_err(|_| bad())
    }

    /// Reads a model that must be signed with `key`: its content hash and its signature are
    /// verified, besides everything `from_json` checks.
    pub fn from_signed_json(text: &str, key: &SigningKey) -> Result<Self, ModelFileError> {
        let model = ChurnModel::from_json(text)?;
        model.verify_signature(key)?;
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_file::tests::tiny_model;
    use proptest::prelude::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(vec![byte; MIN_KEY_BYTES]).unwrap()
    }

    fn sealed() -> ChurnModel {
        let mut model = tiny_model();
        model.seal();
        model
    }

    /// Edits one thing in a model file's JSON, as someone with write access to it would.
    fn edited(model: &ChurnModel, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut value = serde_json::to_value(model).unwrap();
        edit(&mut value);
        serde_json::to_string_pretty(&value).unwrap()
    }

    #[test]
    fn the_canonical_form_is_stable() {
        // A change here invalidates every sealed model file: bump MODEL_SCHEMA_VERSION with it.
        assert_eq!(
            sealed().integrity.sha256,
            "6de968ab435e83a5bf549136f3fd9f5870c2901ca879e1ea9bdb82de0ba57e2e"
        );
        let text = String::from_utf8(sealed().canonical_bytes()).unwrap();
        assert!(
            !text.contains("integrity"),
            "the seal is not sealed: {text}"
        );
        assert!(text.starts_with(r#"{"ablation":[],"convergence":{"gradient_norm":0.0,"#));
    }

    #[test]
    fn a_sealed_model_reads_back_and_layout_does_not_matter() {
        let model = sealed();
        assert_eq!(ChurnModel::from_json(&model.to_json()).unwrap(), model);
        let compact = serde_json::to_string(&model).unwrap();
        assert_eq!(ChurnModel::from_json(&compact).unwrap(), model);
    }

    #[test]
    fn every_edit_after_training_is_refused() {
        let model = sealed();
        type Edit = fn(&mut serde_json::Value);
        let edits: [(&str, Edit); 9] = [
            ("a coefficient", |v| {
                v["features"][0]["coefficient"] = 0.51.into()
            }),
            ("the threshold", |v| v["threshold"] = 0.05.into()),
            ("the intercept", |v| v["intercept"] = 3.0.into()),
            ("a mean", |v| v["features"][1]["mean"] = 9.0.into()),
            ("a feature", |v| {
                v["features"][2]["feature"] = "Years".into()
            }),
            ("a dropped feature", |v| {
                v["features"].as_array_mut().unwrap().pop();
            }),
            ("the reference date", |v| {
                v["reference_date"] = "2030-01-01 00:00:00".into()
            }),
            ("the version", |v| v["version"] = "m-trusted".into()),
            ("the drift reference", |v| {
                v["score_deciles"] = vec![0.5].into()
            }),
        ];
        for (what, edit) in edits {
            let error = ChurnModel::from_json(&edited(&model, edit)).unwrap_err();
            assert!(matches!(error, ModelFileError::Tampered), "{what}: {error}");
            assert!(error.to_string().contains("changed after"), "{error}");
        }
        // The smallest possible change: one bit of one weight.
        let mut nudged = model.clone();
        nudged.features[0].coefficient =
            f64::from_bits(nudged.features[0].coefficient.to_bits() + 1);
        assert!(matches!(
            ChurnModel::from_json(&nudged.to_json()),
            Err(ModelFileError::Tampered)
        ));
    }

    /// Every leaf of the JSON value, as a JSON pointer.
    fn leaves(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    leaves(v, format!("{at}/{key}"), out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    leaves(v, format!("{at}/{i}"), out);
                }
            }
            _ => out.push(at),
        }
    }

    /// Every field of a trained model (every list filled: ranges, ablation, calibration, fold
    /// figures, convergence, deciles) is covered by the hash: changing any one leaf, however
    /// it is named, is refused. A field added later and left out of the canonical form fails
    /// here without anyone having to list it.
    #[cfg(feature = "train")]
    #[test]
    fn every_leaf_of_a_trained_model_is_in_the_content_hash() {
        let customers = crate::synth::generate_customers(&crate::synth::GenerateOptions {
            rows: 300,
            seed: 4,
            messy_fraction: 0.0,
        });
        let model =
            crate::train::train(&customers, &Default::default(), "t".into(), |_| {}).unwrap();
        assert!(!model.ablation.is_empty() && !model.metrics.fold_thresholds.is_empty());
        let value = serde_json::to_value(&model).unwrap();
        let mut paths = Vec::new();
        leaves(&value, String::new(), &mut paths);
        let paths: Vec<String> = paths
            .into_iter()
            .filter(|p| !p.starts_with("/integrity"))
            .collect();
        for needed in [
            "/threshold",
            "/features/0/min",
            "/features/0/max",
            "/reference_date",
        ] {
            assert!(paths.iter().any(|p| p == needed), "{needed} missing");
        }
        assert!(paths.len() > 60, "{}", paths.len());
        for path in &paths {
            let text = edited(&model, |v| {
                let leaf = v.pointer_mut(path).unwrap();
                *leaf = match leaf.take() {
                    serde_json::Value::Bool(b) => (!b).into(),
                    serde_json::Value::Number(n) if n.is_u64() => (n.as_u64().unwrap() + 1).into(),
                    serde_json::Value::Number(n) => (n.as_f64().unwrap() + 0.125).into(),
                    serde_json::Value::String(s) if path.ends_with("/feature") => {
                        (if s == "Age" { "Years" } else { "Age" }).into()
                    }
                    serde_json::Value::String(s) if path == "/reference_date" => {
                        s.replace("20", "19").into()
                    }
                    serde_json::Value::String(s) => format!("{s}x").into(),
                    other => other,
                };
            });
            match ChurnModel::from_json(&text) {
                Err(ModelFileError::Tampered) => {}
                // The schema version is checked before the hash.
                Err(ModelFileError::SchemaVersion { .. }) if path == "/schema_version" => {}
                other => panic!("editing {path} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_model_without_a_seal_or_with_a_forged_one_is_refused() {
        let model = sealed();
        let stripped = edited(&model, |v| {
            v.as_object_mut().unwrap().remove("integrity");
        });
        let error = ChurnModel::from_json(&stripped).unwrap_err();
        assert!(matches!(error, ModelFileError::Unsealed), "{error}");
        assert!(error.to_string().contains("churn train"), "{error}");
        for forged in ["", "00", "not hex at all", &"0".repeat(64)] {
            let text = edited(&model, |v| v["integrity"]["sha256"] = forged.into());
            assert!(ChurnModel::from_json(&text).is_err(), "{forged:?}");
        }
    }

    #[test]
    fn a_signature_verifies_only_with_its_key_and_only_for_its_content() {
        let mut model = tiny_model();
        model.sign(&key(1));
        assert!(model.is_signed());
        let text = model.to_json();
        assert_eq!(ChurnModel::from_signed_json(&text, &key(1)).unwrap(), model);

        let other_key = ChurnModel::from_signed_json(&text, &key(2)).unwrap_err();
        assert!(
            matches!(other_key, ModelFileError::BadSignature { .. }),
            "{other_key}"
        );

        // Edited, and the hash recomputed as anyone can: the signature still gives it away.
        let mut rehashed = model.clone();
        rehashed.threshold = 0.01;
        rehashed.integrity.sha256 = rehashed.content_hash();
        let error = ChurnModel::from_signed_json(&rehashed.to_json(), &key(1)).unwrap_err();
        assert!(
            matches!(error, ModelFileError::BadSignature { .. }),
            "{error}"
        );

        // Signature stripped (and the hash still right): unsigned, refused when a key is required.
        let mut stripped = model.clone();
        stripped.integrity.signature = None;
        assert!(ChurnModel::from_json(&stripped.to_json()).is_ok());
        let error = ChurnModel::from_signed_json(&stripped.to_json(), &key(1)).unwrap_err();
        assert!(matches!(error, ModelFileError::Unsigned { .. }), "{error}");
        assert!(error.to_string().contains("churn model sign"), "{error}");

        for garbage in ["", "zz", "00", &"0".repeat(64), &"0".repeat(200)] {
            let mut forged = model.clone();
            forged.integrity.signature = Some(garbage.into());
            assert!(
                matches!(
                    ChurnModel::from_signed_json(&forged.to_json(), &key(1)),
                    Err(ModelFileError::BadSignature { .. })
                ),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn sealing_again_drops_a_signature_that_no_longer_applies() {
        let mut model = tiny_model();
        model.sign(&key(1));
        model.threshold = 0.4;
        model.seal();
        assert!(!model.is_signed());
        assert!(model.verify_content_hash().is_ok());
    }

    #[test]
    fn keys_are_hex_of_at_least_32_bytes_and_never_printed() {
        let hex_key = "ab".repeat(MIN_KEY_BYTES);
        let key = SigningKey::from_hex(&format!("  {hex_key}\n")).unwrap();
        assert_eq!(key.to_hex(), hex_key);
        assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
        assert_eq!(
            SigningKey::from_hex(&"ab".repeat(MIN_KEY_BYTES - 1)),
            Err(KeyError::TooShort { bytes: 31 })
        );
        assert_eq!(
            SigningKey::from_hex(""),
            Err(KeyError::TooShort { bytes: 0 })
        );
        assert_eq!(
            SigningKey::from_hex(&"zz".repeat(40)),
            Err(KeyError::NotHex)
        );
        assert_eq!(SigningKey::from_hex("abc"), Err(KeyError::NotHex));
        assert!(KeyError::NotHex.to_string().contains("churn model keygen"));
    }

    proptest! {
        /// Any finite weights survive the trip through the file bit for bit, so the hash of a
        /// model read back is the hash it was sealed with.
        #[test]
        fn any_weights_verify_after_a_round_trip(
            weights in proptest::collection::vec(proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO, 6),
            threshold in 0.0..=1.0f64,
        ) {
            let mut model = tiny_model();
            for (w, &value) in model.features.iter_mut().zip(&weights) {
                w.coefficient = value;
                w.mean = value;
            }
            model.intercept = weights[5];
            model.threshold = threshold;
            model.sign(&key(7));
            let text = model.to_json();
            let read = ChurnModel::from_signed_json(&text, &key(7)).unwrap();
            prop_assert_eq!(read.to_json(), text);
        }
    }
}
