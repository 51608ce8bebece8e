//! `churn`: the command line of the real-time churn pipeline. This file holds the command line
//! and dispatches each command to its module under `commands/` (with its own flags).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use server::kafka::KafkaArgs;

use commands::analyze::AnalyzeArgs;
use commands::broker::BrokerCommandArgs;
use commands::generate::GenerateArgs;
use commands::model_info::ModelCommand;
use commands::publish::PublishArgs;
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
    Broker(BrokerCommandArgs),
    /// Write a realistic synthetic customer CSV (deterministic by seed).
    Generate(GenerateArgs),
    /// Train a churn model from a labelled CSV, with a cross-validated quality report.
    Train(TrainArgs),
    /// Publish a model file to the models topic: every running scorer and web server switches to it.
    Publish(PublishArgs),
    /// Inspect model files, make signing keys, sign models.
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
    Serve(Box<ServeArgs>),
    /// Manage the web app's accounts (viewer, analyst, admin) in --data-dir; no Kafka needed.
    Users(UsersArgs),
    /// Manage API tokens for programs (`Authorization: Bearer`) in --data-dir; no Kafka needed.
    Tokens(TokensArgs),
}

fn main() -> Result<()> {
    let matches = command_line().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    commands::logging::init(&cli.log)?;
    cli.kafka.refuse_secrets_on_command_line(&matches)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(run(cli));
    // A thread still blocked in a Kafka client (its close waiting for a broker that is away) must
    // not hold the exit up: the stop promises to end within `shutdown::STOP_DEADLINE`.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    server::shutdown::clean_stop_is_ok(outcome)
}

/// The command line, with environment values hidden from every `--help`: CHURN_KAFKA_PROPERTIES
/// may hold a password, and help text ends up in terminals, screenshots and bug reports.
fn command_line() -> clap::Command {
    fn hide_env_values(command: clap::Command) -> clap::Command {
        command
            .mut_args(|arg| arg.hide_env_values(true))
            .mut_subcommands(hide_env_values)
    }
    hide_env_values(Cli::command())
}

async fn run(cli: Cli) -> Result<()> {
    let kafka = &cli.kafka;
    match cli.command {
        Command::Broker(args) => commands::broker::run(&args, kafka).await,
        Command::Generate(args) => commands::generate::run(&args),
        Command::Train(args) => commands::train::run(&args, kafka).await,
        Command::Publish(args) => commands::publish::run(&args, kafka).await,
        Command::Model { command } => commands::model_info::run(&command),
        Command::Replay(args) => commands::replay::run(&args, kafka).await,
        Command::Score(args) => commands::score::run(args, kafka).await,
        Command::ScoreFile(args) => commands::score_file::run(&args),
        Command::Analyze(args) => commands::analyze::run(args, kafka).await,
        Command::Serve(args) => commands::serve::run(*args, kafka).await,
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
        super::command_line().debug_assert();
    }

    /// Every argument read from the environment, in every command, as `churn` parses them.
    fn env_args(command: &clap::Command) -> Vec<(String, clap::Arg)> {
        let mut found: Vec<(String, clap::Arg)> = command
            .get_arguments()
            .filter(|a| a.get_env().is_some())
            .map(|a| (command.get_name().to_owned(), a.clone()))
            .collect();
        for sub in command.get_subcommands() {
            found.extend(env_args(sub));
        }
        found
    }

    #[test]
    fn no_help_shows_an_environment_value() {
        let mut command = super::command_line();
        command.build();
        let all = env_args(&command);
        let names: Vec<_> = all.iter().map(|(_, a)| a.get_env().unwrap()).collect();
        for known in [
            "CHURN_KAFKA_PROPERTIES",
            "CHURN_KAFKA_PROPERTIES_FILE",
            "CHURN_BROKERS",
        ] {
            assert!(names.iter().any(|n| *n == known), "{known} in {names:?}");
        }
        for (command, arg) in &all {
            assert!(
                arg.is_hide_env_values_set(),
                "`churn {command}` --{:?} shows its environment value",
                arg.get_long()
            );
        }
    }

    /// A secret given with -X, anywhere on the command line, is refused with where to put it;
    /// ordinary -X settings pass.
    #[test]
    fn secrets_on_the_command_line_are_refused() {
        let check = |args: &[&str]| {
            let matches = super::command_line()
                .try_get_matches_from(std::iter::once("churn").chain(args.iter().copied()))
                .unwrap();
            let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap();
            cli.kafka.refuse_secrets_on_command_line(&matches)
        };
        for args in [
            &["-X", "sasl.password=hunter2", "publish"][..],
            &["publish", "-X", "sasl.password=hunter2"],
            &["score", "--kafka-property", "SASL.PASSWORD=x"],
            &["serve", "-X", "sasl.username=u", "-X", "ssl.key.password=x"],
            &["replay", "x.csv", "-X", "ssl.keystore.password=x"],
            &["analyze", "-X", "sasl.oauthbearer.client.secret=x"],
            &["analyze", "-X", "ssl.key.pem=-----BEGIN"],
            &["analyze", "-Xmy.db.password=x"],
            &["analyze", "-X", "linger.ms=5,sasl.password=x"],
            &["analyze", "-X", "sasl.password="],
        ] {
            let error = check(args).expect_err(&format!("{args:?} accepted"));
            let message = error.to_string();
            assert!(
                message.contains("--kafka-properties FILE")
                    && message.contains("CHURN_KAFKA_PROPERTIES"),
                "{message}"
            );
            assert!(!message.contains("hunter2"), "{message}");
        }
        for args in [
            &["publish"][..],
            &["-X", "security.protocol=SASL_SSL", "publish"],
            &[
                "score",
                "-X",
                "sasl.username=u",
                "-X",
                "sasl.mechanism=PLAIN",
            ],
            &["score", "--kafka-properties", "secrets.properties"],
        ] {
            assert_eq!(check(args), Ok(()), "{args:?}");
        }
    }

    /// The commands that make models sign with the key; those that use models require it.
    #[test]
    fn model_commands_take_the_signing_key() {
        for args in [
            &["train", "--model-signing-key", "k"][..],
            &["publish", "m.json", "--model-signing-key", "k"],
            &["score", "--model-signing-key", "k"],
            &["serve", "--model-signing-key", "k"],
            &["analyze", "--model-signing-key", "k"],
            &[
                "score-file",
                "-i",
                "a",
                "-o",
                "b",
                "--model-signing-key",
                "k",
            ],
            &["model", "sign", "m.json", "--key", "k"],
            &["model", "info", "m.json", "--key", "k"],
            &["model", "keygen", "k"],
        ] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(parse(&["model", "keygen"]).is_err(), "keygen needs a file");
        assert!(parse(&["replay", "x.csv", "--model-signing-key", "k"]).is_err());
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
