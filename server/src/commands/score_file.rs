//! `churn score-file`: a customer CSV scored offline into another CSV (no Kafka).

use std::path::PathBuf;

use anyhow::Result;
use server::csv_scoring::score_file;
use server::model_store;

#[derive(clap::Args)]
pub struct ScoreFileArgs {
    /// Model file to score with.
    #[arg(short, long, env = "CHURN_MODEL", default_value = "data/model.json")]
    model: PathBuf,
    /// Customer CSV to score.
    #[arg(short, long)]
    input: PathBuf,
    /// Where to write the scored CSV: each customer with probability, label, model version and
    /// top factors in words.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    signing: super::signing::VerifyArgs,
}

pub fn run(args: &ScoreFileArgs) -> Result<()> {
    let model = model_store::load(&args.model, &args.signing.trust()?)?;
    let summary = score_file(
        &model,
        &args.input,
        &args.output,
        super::stderr_is_terminal(),
    )?;
    super::report_skipped(&summary.bad);
    println!(
        "scored {} customers into {} with model {} ({} bad rows skipped)",
        summary.scored,
        args.output.display(),
        model.version,
        summary.bad.len()
    );
    Ok(())
}
