//! `churn`: the command line of the real-time churn pipeline. This file holds the command line
//! and dispatches each command to its module under `commands/` (with its own flags).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use server::kafka::KafkaArgs;

use commands::analyze::AnalyzeArgs;
use commands::broker::BrokerArgs;
use commands::generate::GenerateArgs;
use commands::model_info::ModelCommand;
use commands::replay::ReplayArgs;
use commands::score::ScoreArgs;
use commands::score_file::ScoreFileArgs;
use commands::serve::ServeArgs;
use commands::train::TrainArgs;
use commands::users::{TokensArgs, UsersArgs};

#[derive(Parser)]
#[command(
    name = "churn",
    version,
    about = "Real-time customer churn prediction on Apache Kafka",
    long_about = "Real-time customer churn prediction on Apache Kafka.\n\n\
    Customer records stream into a topic, a scorer predicts churn with a logistic-regression model, \
    and predictions stream out, with a web app to watch and query them. Runs on an embedded \
    Kafka-compatible broker by default, or on your cluster with --brokers."
)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Log filter, e.g. "info" or "debug,librdkafka=debug". librdkafka's own messages are off
    /// by default: while a broker is away every client repeats them; ours say it once per cause.
    #[arg(
        long,
        env = "CHURN_LOG",
        default_value = "info,rdkafka=off,librdkafka=off",
        global = true
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded Kafka-compatible broker in the foreground (durable SQLite storage).
    Broker(BrokerArgs),
    /// Write a realistic synthetic customer CSV (deterministic by seed).
    Generate(GenerateArgs),
    /// Train a churn model from a labelled CSV, with a cross-validated quality report.
    Train(TrainArgs),
    /// Publish a model file to the models topic: every running scorer and web server switches to it.
    Publish {
        #[arg(default_value = "data/model.json")]
        file: PathBuf,
    },
    /// Inspect model files.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Stream a customer CSV into the input topic, keyed, rate-limited, optionally looping.
    Replay(ReplayArgs),
    /// Run the scorer service: input topic -> model -> predictions topic (scales out by group).
    Score(ScoreArgs),
    /// Score a customer CSV file offline into a CSV of predictions with their top factors.
    ScoreFile(ScoreFileArgs),
    /// Run the stream-analytics processor: windowed churn stats per segment -> stats topic.
    Analyze(AnalyzeArgs),
    /// Run the web app with the scorer in-process (and the embedded broker unless --brokers).
    Serve(ServeArgs),
    /// Manage the web app's accounts (viewer, analyst, admin) in --data-dir; no Kafka needed.
    Users(UsersArgs),
    /// Manage API tokens for programs (`Authorization: Bearer`) in --data-dir; no Kafka needed.
    Tokens(TokensArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    commands::logging::init(&cli.log)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let kafka = &cli.kafka;
    match cli.command {
        Command::Broker(args) => commands::broker::run(&args, kafka).await,
        Command::Generate(args) => commands::generate::run(&args),
        Command::Train(args) => commands::train::run(&args, kafka).await,
        Command::Publish { file } => commands::publish::run(&file, kafka).await,
        Command::Model { command } => commands::model_info::run(&command),
        Command::Replay(args) => commands::replay::run(&args, kafka).await,
        Command::Score(args) => commands::score::run(args, kafka).await,
        Command::ScoreFile(args) => commands::score_file::run(&args),
        Command::Analyze(args) => commands::analyze::run(args, kafka).await,
        Command::Serve(args) => commands::serve::run(args, kafka).await,
        Command::Users(args) => commands::users::run_users(&args),
        Command::Tokens(args) => commands::users::run_tokens(&args),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("churn").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Offline scoring has its own command: the stream scorer and the web server do not take (and
    /// then ignore) its file flags.
    #[test]
    fn only_score_file_takes_input_and_output_files() {
        let cli = parse(&[
            "score-file",
            "--model",
            "m.json",
            "--input",
            "in.csv",
            "--output",
            "out.csv",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::ScoreFile(_)));
        assert!(
            parse(&["score-file", "--input", "in.csv"]).is_err(),
            "--output is required"
        );
        assert!(
            parse(&["score-file", "--output", "out.csv"]).is_err(),
            "--input is required"
        );
        for args in [
            &["serve", "--input", "x.csv", "--output", "y.csv"][..],
            &["serve", "--input", "x.csv"],
            &["score", "--input", "x.csv", "--output", "y.csv"],
            &["score", "--output", "y.csv"],
        ] {
            let error = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} is accepted"));
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{args:?}: {error}"
            );
        }
        assert!(matches!(
            parse(&["score", "--model", "m.json", "--group", "g"])
                .unwrap()
                .command,
            Command::Score(_)
        ));
        assert!(matches!(
            parse(&["serve", "--model", "m.json", "--group", "g"])
                .unwrap()
                .command,
            Command::Serve(_)
        ));
    }
}
