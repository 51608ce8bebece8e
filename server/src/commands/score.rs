//! `churn score`: the scorer service, input topic -> model -> predictions topic.

use std::path::PathBuf;

use anyhow::Result;
use server::kafka::KafkaArgs;
use server::scorer::Scorer;

/// The stream scorer's flags, shared by `churn score` and `churn serve` (which runs one in-process).
#[derive(clap::Args, Clone)]
pub struct ScoreArgs {
    /// Model file; used until (and unless) a newer model is published on the models topic.
    #[arg(short, long, env = "CHURN_MODEL", default_value = "data/model.json")]
    pub model: PathBuf,
    /// Consumer group: run more scorers with the same group to share the partitions.
    #[arg(long, env = "CHURN_GROUP", default_value = server::kafka::DEFAULT_SCORER_GROUP)]
    pub group: String,
    #[command(flatten)]
    pub signing: super::signing::VerifyArgs,
}

pub async fn run(args: ScoreArgs, kafka_args: &KafkaArgs) -> Result<()> {
    let (kafka, followed, mut tasks) =
        super::start_with_models(kafka_args, &args.model, &args.signing).await?;
    tasks.spawn(
        "scorer",
        Scorer::new(kafka, args.group, followed.lineup).run(tasks.shutdown()),
    );
    tasks.run().await
}
