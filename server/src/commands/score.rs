//! `churn score`: the scorer service, input topic -> model -> predictions topic.

use std::path::PathBuf;

use anyhow::Result;
use server::kafka::KafkaArgs;
use server::scorer::Scorer;
use server::shutdown::during_start_up;
use server::supervisor::Supervisor;

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
    let stop = server::shutdown::on_signals();
    let trust = args.signing.trust()?;
    let kafka = during_start_up(&stop, super::connect(kafka_args)).await?;
    let mut tasks = Supervisor::new(stop.clone());
    let model_rx = during_start_up(
        &stop,
        super::follow_models(&kafka, &args.model, trust, &mut tasks),
    )
    .await?;
    tasks.spawn(
        "scorer",
        Scorer::new(kafka, args.group, model_rx).run(tasks.shutdown()),
    );
    tasks.run().await
}
