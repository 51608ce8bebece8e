//! `churn`: the command line of the real-time churn pipeline. This file holds the command line
//! and dispatches each command to its module under `commands/` (with its own flags).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use server::kafka::KafkaArgs;

use commands::analyze::AnalyzeArgs;
use commands::broker::BrokerCommandArgs;
use commands::config::{ConfigArgs, ConfigFile};
use commands::generate::GenerateArgs;
use commands::groups::GroupsArgs;
use commands::model_info::ModelCommand;
use commands::publish::PublishArgs;
use commands::replay::ReplayArgs;
use commands::retrain::RetrainArgs;
use commands::score::ScoreArgs;
use commands::score_file::ScoreFileArgs;
use commands::serve::ServeArgs;
use commands::simulate::SimulateArgs;
use commands::tail::TailArgs;
use commands::topics::TopicsArgs;
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
    /// Log lines as text, or as one JSON object per line for log shippers.
    #[arg(
        long,
        env = "CHURN_LOG_FORMAT",
        value_enum,
        default_value_t = commands::logging::LogFormat::Text,
        global = true
    )]
    log_format: commands::logging::LogFormat,
    /// A TOML file of settings: any flag of any command, by its long name (`churn config
    /// --example` prints one with every key). The command line and the environment win over it.
    #[arg(long, value_name = "FILE", env = "CHURN_CONFIG", global = true)]
    config: Option<PathBuf>,
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
    /// Publish a model file to the models topic: every running scorer and web server switches to
    /// it (or, with --challenger, scores it in the shadow beside the champion).
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
    /// Every topic: partitions, low/high offsets, records, retention and cleanup policy
    /// (--json for scripts); --apply-retention sets --retention on the pipeline's topics.
    Topics(TopicsArgs),
    /// A topic's records as JSON lines: key, partition, offset, timestamp, headers, value (dead
    /// letters with their reason). The last 10 by default; --follow keeps reading.
    Tail(TailArgs),
    /// Consumer groups: state, members, and per partition the committed offset and the lag.
    Groups(GroupsArgs),
    /// Print the settings a command would run with, and where each came from (secrets masked).
    Config(ConfigArgs),
    /// Replay seeded labelled streams (challenger better, equal, worse) through the
    /// champion/challenger duel and print how often it promotes, and after how many records.
    SimulatePromotion(SimulateArgs),
    /// Continuous training: train on the labelled records of a recent window (the input topic,
    /// joined with outcomes with --from-outcomes) and publish the model as the challenger, once
    /// or --every interval. The champion/challenger duel decides whether it takes over.
    Retrain(RetrainArgs),
}

fn main() -> Result<()> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let file = match commands::config::locate(&args, std::env::var_os(commands::config::CONFIG_ENV))
    {
        Some(path) => Some(ConfigFile::load(&path, &Cli::command())?),
        None => None,
    };
    let command = command_line(file.as_ref());
    let matches = command.clone().get_matches_from(&args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let named = cli.config.clone().filter(|p| !p.as_os_str().is_empty());
    if named != file.as_ref().map(|f| f.path.clone()) {
        // Only a value of another flag that reads `--config` could make the two differ.
        bail!("give the settings file as `--config FILE` or in CHURN_CONFIG");
    }
    cli.kafka.refuse_secrets_on_command_line(&matches)?;
    if let Command::Config(args) = &cli.command {
        return commands::config::run(args, &command, file.as_ref(), &matches);
    }
    commands::logging::init(&cli.log, cli.log_format)?;
    let log_format = cli.log_format;
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(run(cli));
    // A thread still blocked in a Kafka client (its close waiting for a broker that is away) must
    // not hold the exit up: the stop promises to end within `shutdown::STOP_DEADLINE`.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    // An embedded broker held by an abandoned thread must not outlive us.
    server::shutdown::kill_children();
    match server::shutdown::clean_stop_is_ok(outcome) {
        // A log shipper reads JSON lines: the reason a service died must be one, redacted too.
        Err(e) if log_format == commands::logging::LogFormat::Json => {
            tracing::error!("{e:#}");
            std::process::exit(1)
        }
        outcome => outcome,
    }
}

/// The command line, with the settings file's values as the flags' defaults, and environment
/// values hidden from every `--help`: CHURN_KAFKA_PROPERTIES may hold a password, and help text
/// ends up in terminals, screenshots and bug reports.
fn command_line(file: Option<&ConfigFile>) -> clap::Command {
    fn hide_env_values(command: clap::Command) -> clap::Command {
        command
            .mut_args(|arg| arg.hide_env_values(true))
            .mut_subcommands(hide_env_values)
    }
    let command = Cli::command();
    hide_env_values(match file {
        Some(file) => file.apply(command),
        None => command,
    })
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
        Command::Topics(args) => commands::topics::run(&args, kafka).await,
        Command::Tail(args) => commands::tail::run(&args, kafka).await,
        Command::Groups(args) => commands::groups::run(&args, kafka).await,
        Command::SimulatePromotion(args) => commands::simulate::run(&args),
        Command::Retrain(args) => commands::retrain::run(&args, kafka).await,
        Command::Config(_) => unreachable!("`churn config` runs before logging starts"),
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
        super::command_line(None).debug_assert();
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
        let mut command = super::command_line(None);
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
            let matches = super::command_line(None)
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

    /// The look-inside commands and --retention: what they accept, and nonsense refused before
    /// anything connects.
    #[test]
    fn inspect_commands_and_retention_parse() {
        let tail = |args: &[&str]| match parse(args).map(|c| c.command) {
            Ok(Command::Tail(t)) => Ok(t.options()),
            Ok(_) => panic!("not tail"),
            Err(e) => Err(e),
        };
        use server::kafka::inspect::Start;
        let t = tail(&["tail", "test3"]).unwrap();
        assert_eq!((t.start, t.follow, t.key), (Start::Last(10), false, None));
        let t = tail(&["tail", "x", "--from-beginning", "--key", "id-1", "-f"]).unwrap();
        assert_eq!(t.start, Start::Beginning);
        assert_eq!(t.key.as_deref(), Some(&b"id-1"[..]));
        assert!(t.follow);
        assert_eq!(
            tail(&["tail", "x", "--last", "3"]).unwrap().start,
            Start::Last(3)
        );
        for bad in [
            &["tail"][..],
            &["tail", "x", "--last", "0"],
            &["tail", "x", "--last", "-1"],
            &["tail", "x", "--last", "100001"],
            &["tail", "x", "--from-beginning", "--last", "2"],
        ] {
            assert!(tail(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            parse(&[
                "topics",
                "--json",
                "--apply-retention",
                "--retention",
                "12h"
            ])
            .unwrap()
            .command,
            Command::Topics(_)
        ));
        assert!(matches!(
            parse(&["groups", "--json"]).unwrap().command,
            Command::Groups(_)
        ));
        let retention = |args: &[&str]| parse(args).map(|c| c.kafka.topics.retention);
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(
            retention(&["topics"]).unwrap(),
            7 * day,
            "a week by default"
        );
        assert_eq!(retention(&["serve", "--retention", "1d"]).unwrap(), day);
        assert_eq!(
            retention(&["replay", "x.csv", "--retention", "5s"]).unwrap(),
            std::time::Duration::from_secs(5)
        );
        for bad in ["0s", "500ms", "-1d", "7", "forever", "11years", "", "1e9d"] {
            assert!(
                retention(&["topics", "--retention", bad]).is_err(),
                "--retention {bad:?} accepted"
            );
        }
    }
}
