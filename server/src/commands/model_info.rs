//! `churn model info`: a model file, readably (also printed by `churn train`).

use std::path::PathBuf;

use anyhow::Result;
use model::ChurnModel;
use server::model_store;

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Print a model file readably: version, features, weights, metrics.
    Info {
        #[arg(default_value = "data/model.json")]
        file: PathBuf,
    },
}

pub fn run(command: &ModelCommand) -> Result<()> {
    match command {
        ModelCommand::Info { file } => {
            print_model(&model_store::load(file)?);
            Ok(())
        }
    }
}

pub fn print_model(model: &ChurnModel) {
    let m = &model.metrics;
    println!(
        "model {}  (trained {}, {} rows, {} churners)",
        model.version, model.created_at, model.training_data.rows, model.training_data.churners
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
    println!("\n  {} on {} rows", m.method, m.rows);
    let folds: Vec<String> = m.fold_roc_auc.iter().map(|a| format!("{a:.3}")).collect();
    let fold_mean = m.fold_roc_auc.iter().sum::<f64>() / m.fold_roc_auc.len().max(1) as f64;
    println!(
        "  ROC-AUC   {:.4}   pooled; mean of folds {:.4} (folds: {})",
        m.roc_auc,
        fold_mean,
        folds.join(" ")
    );
    println!(
        "  accuracy  {:.4}   precision {:.4}   recall {:.4}   F1 {:.4}",
        m.accuracy, m.precision, m.recall, m.f1
    );
    println!(
        "  log loss  {:.4}   Brier {:.4}   threshold {:.3} ({})",
        m.log_loss, m.brier, model.threshold, model.hyperparameters.threshold_rule
    );
    let c = &m.confusion;
    println!("\n  confusion      predicted churn   predicted stay");
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
