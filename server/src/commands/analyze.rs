//! `churn analyze`: the stream-analytics processor, windowed churn stats per segment -> stats topic;
//! and the referee of the champion's duel with a challenger (`server::referee`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use server::analytics::{self, AnalyzeOptions};
use server::args;
use server::kafka::KafkaArgs;

#[derive(clap::Args)]
pub struct AnalyzeArgs {
    /// Length of the tumbling windows in seconds.
    #[arg(long, env = "CHURN_WINDOW_SECS", default_value_t = 10.0, allow_negative_numbers = true, value_parser = args::positive_seconds)]
    window_secs: f64,
    /// Seconds after a window's end that late records still count in it before publication.
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true, value_parser = args::non_negative_seconds)]
    lateness_secs: f64,
    /// Consumer group: run more processors with the same group to share the partitions.
    #[arg(long, default_value = server::kafka::DEFAULT_ANALYTICS_GROUP)]
    group: String,
    /// Model file whose training scores drift is measured against (a published model wins).
    #[arg(short, long, env = "CHURN_MODEL", default_value = "data/model.json")]
    model: PathBuf,
    #[command(flatten)]
    signing: super::signing::VerifyArgs,
    #[command(flatten)]
    referee: super::referee::RefereeArgs,
}

pub async fn run(args: AnalyzeArgs, kafka_args: &KafkaArgs) -> Result<()> {
    let (kafka, followed, mut tasks) =
        super::start_with_models(kafka_args, &args.model, &args.signing).await?;
    let options = AnalyzeOptions {
        group: args.group,
        window: Duration::from_secs_f64(args.window_secs),
        lateness: Duration::from_secs_f64(args.lateness_secs),
    };
    let referee = server::referee::start(
        kafka.clone(),
        args.referee.options(),
        &followed,
        Default::default(),
        tasks.shutdown(),
    )?;
    tasks.spawn("referee", referee);
    tasks.spawn(
        "analytics",
        analytics::run(kafka, options, followed.lineup, tasks.shutdown()),
    );
    tasks.run().await
}
