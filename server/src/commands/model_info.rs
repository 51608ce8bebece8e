//! `churn model`: inspect model files (`info`, also printed by `churn train`), make signing keys
//! (`keygen`) and sign models (`sign`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use model::ChurnModel;
use server::model_store::{self, ModelTrust};
use server::signing_key;

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Print a model file readably: version, features, weights, metrics, and whether it is
    /// intact and signed. Fails when the file was changed after training (or does not verify
    /// with --key).
    Info {
        #[arg(default_value = "data/model.json")]
        file: PathBuf,
        /// Also check the signature with this key file.
        #[arg(long, env = "CHURN_MODEL_SIGNING_KEY_FILE", value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Make a new model signing key: 32 random bytes as hex, in a new file only you can read
    /// (an existing file is never replaced).
    Keygen {
        /// Where to write the key, e.g. /etc/churn/model.key.
        file: PathBuf,
    },
    /// Sign a model file in place, so that commands given --model-signing-key with the same key
    /// accept it.
    Sign {
        #[arg(default_value = "data/model.json")]
        file: PathBuf,
        /// The key file (made by `churn model keygen`).
        #[arg(long, env = "CHURN_MODEL_SIGNING_KEY_FILE", value_name = "FILE")]
        key: PathBuf,
    },
}

pub fn run(command: &ModelCommand) -> Result<()> {
    match command {
        ModelCommand::Info { file, key } => info(file, key.as_deref()),
        ModelCommand::Keygen { file } => {
            signing_key::generate(file)?;
            println!(
                "wrote a new model signing key to {} (readable only by you); keep it secret",
                file.display()
            );
            Ok(())
        }
        ModelCommand::Sign { file, key } => {
            let key = signing_key::read(key)?;
            let mut model = model_store::load(file, &ModelTrust::default())?;
            model.sign(&key);
            model_store::save(&model, file)?;
            println!("signed {} in {}", model.version, file.display());
            Ok(())
        }
    }
}

fn info(file: &Path, key: Option<&Path>) -> Result<()> {
    let model = model_store::load(file, &ModelTrust::default())?;
    print_model(&model);
    if let Some(path) = key {
        let key = signing_key::read(path)?;
        model.verify_signature(&key).with_context(|| {
            format!(
                "checking {} with the key {}",
                file.display(),
                path.display()
            )
        })?;
        println!("  the signature verifies with the key {}", path.display());
    }
    Ok(())
}

pub fn print_model(model: &ChurnModel) {
    let m = &model.metrics;
    println!(
        "model {}  (trained {}, {} rows, {} churners)",
        model.version, model.created_at, model.training_data.rows, model.training_data.churners
    );
    println!(
        "  content hash {} (intact), {}",
        model.integrity.sha256,
        if model.is_signed() {
            "signed"
        } else {
            "not signed"
        }
    );
    println!(
        "\n  {:<16} {:>10} {:>10} {:>12}",
        "feature", "mean", "std dev", "coefficient"
    );
    for w in &model.features {
        println!(
            "  {:<16} {:>10.3} {:>10.3} {:>+12.4}",
            w.feature.name(),
            w.mean,
            w.std_dev,
            w.coefficient
        );
    }
    println!(
        "  {:<16} {:>10} {:>10} {:>+12.4}",
        "(intercept)", "", "", model.intercept
    );
    println!(
        "  {:<16} {:>10} {:>10} {:>12}",
        "(tenure as of)",
        "",
        "",
        format!("{}", model.reference_date.date())
    );
    println!(
        "  training ranges: {}",
        model
            .features
            .iter()
            .map(|w| format!("{} {}..{}", w.feature.name(), w.min, w.max))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let folds: Vec<String> = m.fold_roc_auc.iter().map(|a| format!("{a:.3}")).collect();
    let fold_mean = m.fold_roc_auc.iter().sum::<f64>() / m.fold_roc_auc.len().max(1) as f64;
    println!("\n  on {} rows; {}:", m.rows, m.method);
    println!(
        "  ROC-AUC   {:.4}   pooled; mean of folds {:.4} (folds: {})",
        m.roc_auc,
        fold_mean,
        folds.join(" ")
    );
    println!("  log loss  {:.4}   Brier {:.4}", m.log_loss, m.brier);
    println!(
        "  at 0.5 (scikit-learn's predict): accuracy {:.4}",
        m.accuracy_at_half
    );
    let fold_thresholds: Vec<String> = m
        .fold_thresholds
        .iter()
        .map(|t| format!("{t:.3}"))
        .collect();
    println!(
        "  {} (fold thresholds: {}):",
        m.threshold_method,
        fold_thresholds.join(" ")
    );
    println!(
        "  accuracy  {:.4}   precision {:.4}   recall {:.4}   F1 {:.4}",
        m.accuracy, m.precision, m.recall, m.f1
    );
    println!(
        "  shipped threshold {:.3} ({})",
        model.threshold, model.hyperparameters.threshold_rule
    );
    for a in &model.ablation {
        println!(
            "  ablation: {} {} — mean fold ROC-AUC {:.4} with, {:.4} without (difference {:+.4}, standard error {:.4})",
            a.feature.name(),
            if a.kept { "kept" } else { "dropped, within the noise" },
            a.auc_with,
            a.auc_without,
            a.auc_with - a.auc_without,
            a.standard_error
        );
    }
    let c = &model.convergence;
    println!(
        "  convergence: gradient norm {:.2e} (worst fold {:.2e}, tolerance {:.2e}): {}",
        c.gradient_norm,
        c.worst_fold_gradient_norm,
        c.tolerance,
        if c.converged() {
            "converged"
        } else {
            "NOT converged"
        }
    );
    let c = &m.confusion;
    println!("\n  confusion (each fold at its own threshold)");
    println!("                 predicted churn   predicted stay");
    println!(
        "  churned        {:>15} {:>16}",
        c.true_positive, c.false_negative
    );
    println!(
        "  stayed         {:>15} {:>16}",
        c.false_positive, c.true_negative
    );
    if !m.calibration.is_empty() {
        println!(
            "\n  calibration (deciles by score)\n  {:>6} {:>11} {:>10}",
            "rows", "predicted", "observed"
        );
        for bin in &m.calibration {
            println!(
                "  {:>6} {:>11.3} {:>10.3}",
                bin.count, bin.mean_predicted, bin.observed_rate
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trained(dir: &Path) -> PathBuf {
        let customers = model::synth::generate_customers(&model::synth::GenerateOptions {
            rows: 200,
            seed: 2,
            messy_fraction: 0.0,
        });
        let model =
            model::train::train(&customers, &Default::default(), "t".into(), |_| {}).unwrap();
        let path = dir.join("model.json");
        model_store::save(&model, &path).unwrap();
        path
    }

    fn info_with(file: &Path, key: Option<&Path>) -> Result<()> {
        run(&ModelCommand::Info {
            file: file.into(),
            key: key.map(Into::into),
        })
    }

    #[test]
    fn keygen_sign_and_info_work_together() {
        let dir = tempfile::tempdir().unwrap();
        let file = trained(dir.path());
        let (mine, theirs) = (dir.path().join("mine.key"), dir.path().join("theirs.key"));
        for key in [&mine, &theirs] {
            run(&ModelCommand::Keygen { file: key.clone() }).unwrap();
        }
        info_with(&file, None).unwrap();
        let unsigned = format!("{:#}", info_with(&file, Some(&mine)).unwrap_err());
        assert!(unsigned.contains("not signed"), "{unsigned}");

        run(&ModelCommand::Sign {
            file: file.clone(),
            key: mine.clone(),
        })
        .unwrap();
        info_with(&file, Some(&mine)).unwrap();
        let wrong = format!("{:#}", info_with(&file, Some(&theirs)).unwrap_err());
        assert!(wrong.contains("does not verify"), "{wrong}");
        let model = model_store::load(
            &file,
            &ModelTrust::signed_by(signing_key::read(&mine).unwrap()),
        );
        assert!(model.unwrap().is_signed());
    }

    #[test]
    fn an_edited_file_fails_info_and_cannot_be_signed() {
        let dir = tempfile::tempdir().unwrap();
        let file = trained(dir.path());
        let key = dir.path().join("model.key");
        run(&ModelCommand::Keygen { file: key.clone() }).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let threshold = model::ChurnModel::from_json(&text).unwrap().threshold;
        let edited = text.replace(
            &format!("\"threshold\": {threshold}"),
            "\"threshold\": 0.01",
        );
        assert_ne!(edited, text);
        std::fs::write(&file, &edited).unwrap();
        let error = format!("{:#}", info_with(&file, None).unwrap_err());
        assert!(error.contains("changed after training"), "{error}");
        assert!(run(&ModelCommand::Sign {
            file: file.clone(),
            key
        })
        .is_err());
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            edited,
            "left as it was"
        );
    }
}
