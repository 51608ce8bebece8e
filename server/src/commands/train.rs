//! `churn train`: a churn model from a labelled CSV, with a cross-validated quality report.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use model::spreadsheet::write_record;
use model::train::{stratified_folds, train, ThresholdRule, TrainOptions, TrainProgress};
use model::{ChurnModel, Customer, Feature, SigningKey};
use server::args;
use server::csv_io::CustomerCsv;
use server::kafka::KafkaArgs;
use server::model_store;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Labelled customer CSV (with a Churn column).
    #[arg(short, long, default_value = "data/customers.csv")]
    input: PathBuf,
    /// Where to write the model file.
    #[arg(short, long, default_value = "data/model.json")]
    output: PathBuf,
    #[command(flatten)]
    training: TrainFlags,
    /// Also publish the model to the models topic, so running scorers switch to it.
    #[arg(long)]
    publish: bool,
    /// Write each row's cross-validation fold to this CSV (row,fold), e.g. to compare with other tools.
    #[arg(long)]
    export_folds: Option<PathBuf>,
    #[command(flatten)]
    signing: super::signing::SignArgs,
}

/// How to train: the flags `churn train` and `churn retrain` share.
#[derive(clap::Args, Clone, Debug)]
pub struct TrainFlags {
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(2..=100))]
    folds: u32,
    /// L2 penalty weight: 1/C in scikit-learn's terms (1.0 is its default C = 1; --l2 0.1 is
    /// C = 10). 0 means no penalty, refused when the data is perfectly separable.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = args::non_negative)]
    l2: f64,
    /// Solver iterations allowed per fit (L-BFGS).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_iterations: u64,
    /// Fail, instead of warning, when a fit did not converge (its gradient norm stays above the
    /// tolerance).
    #[arg(long)]
    strict: bool,
    /// Seed for the fold assignment.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Derived features (Tenure_Years) are kept only when the ablation in the report shows they
    /// raise the cross-validated ROC-AUC beyond the noise of the folds.
    #[arg(long, value_delimiter = ',', value_parser = parse_feature, help = features_help())]
    features: Vec<Feature>,
    /// How to choose the decision threshold: `f1` (maximize F1) or `cost:RATIO` (a missed churner
    /// costs RATIO false alarms).
    #[arg(long, default_value = "f1")]
    threshold: ThresholdRule,
}

impl TrainFlags {
    pub fn options(&self) -> TrainOptions {
        let mut options = TrainOptions {
            l2: self.l2,
            max_iterations: self.max_iterations,
            strict: self.strict,
            folds: self.folds as usize,
            seed: self.seed,
            threshold_rule: self.threshold,
            ..Default::default()
        };
        if !self.features.is_empty() {
            options.features = self.features.clone();
        }
        options
    }

    /// Trains on labelled `customers` with a progress bar on stderr (for a person watching),
    /// warning when the fit did not converge (an error with `--strict`).
    pub fn fit(&self, customers: &[Customer]) -> Result<ChurnModel> {
        let bar = ProgressBar::new(self.folds as u64 + 1).with_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message("cross-validating");
        let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let model = train(customers, &self.options(), created_at, |p| match p {
            TrainProgress::Fold { done, .. } => bar.set_position(done as u64),
            TrainProgress::Ablation(feature) => {
                bar.set_message(format!("cross-validating without {}", feature.name()))
            }
            TrainProgress::Final => bar.set_message("fitting the final model"),
        });
        bar.finish_and_clear();
        let model = model?;
        if !model.convergence.converged() {
            eprintln!("{}", not_converged_warning(&model));
        }
        Ok(model)
    }
}

/// The feature names come from the model crate, so the help cannot drift from what training uses.
fn features_help() -> String {
    let default = TrainOptions::default()
        .features
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(",");
    format!("Features to use, comma-separated (default: all honest features: {default})")
}

/// What training says when a fit stopped short of the optimum (`--strict` makes it an error).
fn not_converged_warning(model: &ChurnModel) -> String {
    let c = &model.convergence;
    format!(
        "warning: the fit did not converge (gradient norm {:.3e}, worst fold {:.3e}, tolerance {:.3e} after {} iterations): its weights are not the optimum; allow more with --max-iterations, raise --l2, or pass --strict to fail",
        c.gradient_norm,
        c.worst_fold_gradient_norm,
        c.tolerance,
        model.hyperparameters.max_iterations
    )
}

fn parse_feature(name: &str) -> Result<Feature, String> {
    Feature::from_name(name).ok_or_else(|| {
        format!(
            "unknown feature {name:?}: choose from {}",
            Feature::ALL.map(Feature::name).join(", ")
        )
    })
}

pub async fn run(args: &TrainArgs, kafka_args: &KafkaArgs) -> Result<()> {
    // A bad key file stops the command before training, not after.
    let key = args.signing.key()?;
    let model = train_model(args, key.as_ref())?;
    if args.publish {
        super::publish::publish_model(kafka_args, &model).await?;
    }
    Ok(())
}

/// Trains, signs (with a key), saves and prints the model.
fn train_model(args: &TrainArgs, key: Option<&SigningKey>) -> Result<ChurnModel> {
    let mut csv = CustomerCsv::open(&args.input)?;
    if !csv.has_labels() {
        bail!(
            "{} has no Churn column: training needs the outcome of each customer",
            args.input.display()
        );
    }
    let (customers, bad) = csv.customers();
    super::report_skipped(&bad);
    let unlabelled = customers.iter().filter(|c| c.churn.is_none()).count();
    let customers: Vec<_> = customers
        .into_iter()
        .filter(|c| c.churn.is_some())
        .collect();
    println!(
        "training on {} customers from {} ({} bad rows skipped, {} without a label skipped)",
        customers.len(),
        args.input.display(),
        bad.len(),
        unlabelled
    );
    let flags = &args.training;
    if let Some(path) = &args.export_folds {
        let labels: Vec<bool> = customers.iter().map(|c| c.churn == Some(true)).collect();
        let folds = stratified_folds(&labels, flags.folds as usize, flags.seed);
        let write = || -> Result<()> {
            let mut out = csv::Writer::from_path(path)?;
            write_record(&mut out, ["row", "fold"])?;
            for (row, fold) in folds.iter().enumerate() {
                write_record(&mut out, [row.to_string(), fold.to_string()])?;
            }
            Ok(out.flush()?)
        };
        write().with_context(|| format!("writing {}", path.display()))?;
    }
    let mut model = flags.fit(&customers)?;
    if let Some(key) = key {
        model.sign(key);
    }
    model_store::save(&model, &args.output)?;
    super::model_info::print_model(&model);
    println!("\nsaved {} to {}", model.version, args.output.display());
    Ok(model)
}
