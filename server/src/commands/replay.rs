//! `churn replay`: a customer CSV streamed into the input topic.

use std::path::PathBuf;

use anyhow::Result;
use server::args;
use server::kafka::KafkaArgs;
use server::replay::{random_prefix, replay, ReplayOptions, ReplaySummary};
use server::shutdown::during_start_up;

#[derive(clap::Args, Clone)]
pub struct ReplayArgs {
    /// Customer CSV to stream.
    #[arg(default_value = "data/customers.csv")]
    pub file: PathBuf,
    /// Records per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true, value_parser = args::rate)]
    pub rate: f64,
    /// Start over after the last row, until stopped (like the original producer).
    #[arg(long = "loop")]
    pub repeat: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Prefix of record ids (default: random per run).
    #[arg(long, value_parser = args::id_prefix)]
    pub id_prefix: Option<String>,
}

pub async fn run(args: &ReplayArgs, kafka_args: &KafkaArgs) -> Result<()> {
    let stop = server::shutdown::on_signals();
    let kafka = during_start_up(&stop, super::connect(kafka_args)).await?;
    let options = options(args, super::stderr_is_terminal());
    let summary = replay(&kafka, &options, stop).await?;
    log_stopped(&summary);
    println!(
        "replayed {} records to {} ({} unreadable rows skipped, {} passes)",
        summary.sent, kafka.topics.input, summary.unreadable, summary.passes
    );
    Ok(())
}

pub fn options(args: &ReplayArgs, show_progress: bool) -> ReplayOptions {
    ReplayOptions {
        file: args.file.clone(),
        rate: args.rate,
        repeat: args.repeat,
        limit: args.limit,
        id_prefix: args.id_prefix.clone().unwrap_or_else(random_prefix),
        show_progress,
    }
}

/// The replay's final counts, in the log (also for `churn serve`'s replay).
pub fn log_stopped(summary: &ReplaySummary) {
    tracing::info!(
        sent = summary.sent,
        unconfirmed = summary.unconfirmed,
        unreadable = summary.unreadable,
        passes = summary.passes,
        "replay stopped"
    );
}
