//! The settings file against the real `churn` command tree: precedence, every flag reachable,
//! hostile files refused with the key named, and what `churn config` prints. The environment's
//! part of the precedence is tested on the real binary (tests/it/config.rs), with an
//! environment of its own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};

use super::file::{locate, ConfigError, ConfigFile};
use super::{key_of, show, walk, Kind};
use crate::Cli;

fn load(text: &str) -> Result<ConfigFile, ConfigError> {
    ConfigFile::parse(Path::new("churn.toml"), text, &Cli::command())
}

fn refused(text: &str) -> String {
    load(text)
        .expect_err(&format!("accepted:\n{text}"))
        .to_string()
}

/// `churn ARGS` parsed with `text` as the settings file.
fn parse(text: &str, args: &[&str]) -> Result<ArgMatches, clap::Error> {
    let file = load(text).unwrap();
    crate::command_line(Some(&file))
        .try_get_matches_from(std::iter::once("churn").chain(args.iter().copied()))
}

/// The matches of the deepest subcommand.
fn leaf(matches: &ArgMatches) -> &ArgMatches {
    match matches.subcommand() {
        Some((_, sub)) => leaf(sub),
        None => matches,
    }
}

/// A flag's values (as text) and where they came from, in the deepest subcommand.
fn value(matches: &ArgMatches, id: &str) -> (Vec<String>, Option<ValueSource>) {
    let m = leaf(matches);
    let values = m
        .get_raw(id)
        .into_iter()
        .flatten()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    (values, m.value_source(id))
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

const FILE: &str = r#"
brokers = "file:9092"
partitions = 7
kafka-property = ["linger.ms=5", "acks=all"]

[serve]
addr = "127.0.0.1:4000"
window_secs = 30
no-scorer = true
allowed-hosts = ["a.example", "b.example"]

[analyze]
brokers = "analyze-only:9092"
"#;

/// The file's values reach the flags (top-level keys every subcommand, a table's keys its
/// command), and the command line wins over them: a string, a number, a switch and a list, on
/// a global flag and on a subcommand's own.
#[test]
fn the_command_line_wins_over_the_file() {
    use ValueSource::{CommandLine, DefaultValue};
    let from_file = parse(FILE, &["serve"]).unwrap();
    for (id, expected) in [
        ("brokers", strings(&["file:9092"])),
        ("partitions", strings(&["7"])),
        ("properties", strings(&["linger.ms=5", "acks=all"])),
        ("addr", strings(&["127.0.0.1:4000"])),
        ("window_secs", strings(&["30"])),
        ("no_scorer", strings(&["true"])),
        ("allowed_hosts", strings(&["a.example", "b.example"])),
    ] {
        assert_eq!(
            value(&from_file, id),
            (expected, Some(DefaultValue)),
            "{id}"
        );
    }
    // Global flags resolve for every command, nested ones too.
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&from_file).unwrap();
    assert_eq!(cli.kafka.brokers.as_deref(), Some("file:9092"));
    assert_eq!(cli.kafka.topics.partitions, 7);
    let nested = parse(FILE, &["users", "add", "ann", "--role", "viewer"]).unwrap();
    assert_eq!(value(&nested, "brokers").0, ["file:9092"]);

    let given = parse(
        FILE,
        &[
            "--brokers",
            "cli:9092",
            "serve",
            "--partitions",
            "2",
            "-X",
            "linger.ms=1",
            "--addr",
            "127.0.0.1:5000",
            "--window-secs",
            "3",
            "--no-scorer=false",
            "--allowed-hosts",
            "c.example",
        ],
    )
    .unwrap();
    for (id, expected) in [
        ("brokers", strings(&["cli:9092"])),
        ("partitions", strings(&["2"])),
        ("properties", strings(&["linger.ms=1"])),
        ("addr", strings(&["127.0.0.1:5000"])),
        ("window_secs", strings(&["3"])),
        ("no_scorer", strings(&["false"])),
        ("allowed_hosts", strings(&["c.example"])),
    ] {
        assert_eq!(value(&given, id), (expected, Some(CommandLine)), "{id}");
    }
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&given).unwrap();
    assert_eq!(cli.kafka.brokers.as_deref(), Some("cli:9092"));
    // The switch the file turned on is still a switch: `--no-scorer` alone says true.
    assert_eq!(
        value(
            &parse("[serve]\nno-scorer = false", &["serve", "--no-scorer"]).unwrap(),
            "no_scorer"
        )
        .0,
        ["true"]
    );
}

/// A command's table may set a global flag for that command alone.
#[test]
fn a_table_overrides_a_top_level_key_for_its_command_only() {
    let analyze = parse(FILE, &["analyze"]).unwrap();
    assert_eq!(value(&analyze, "brokers").0, ["analyze-only:9092"]);
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&analyze).unwrap();
    assert_eq!(cli.kafka.brokers.as_deref(), Some("analyze-only:9092"));
    for other in [&["serve"][..], &["replay"], &["score"]] {
        assert_eq!(
            value(&parse(FILE, other).unwrap(), "brokers").0,
            ["file:9092"],
            "{other:?}"
        );
    }
    let given = parse(FILE, &["analyze", "--brokers", "cli:1"]).unwrap();
    assert_eq!(value(&given, "brokers").0, ["cli:1"]);
    // A nested table inherits its parent table's global flags.
    let text = "[users]\ndata-dir = \"/srv/users\"\n[users.add]\nrole = \"admin\"\n";
    let add = parse(text, &["users", "add", "ann"]).unwrap();
    assert_eq!(value(&add, "data_dir").0, ["/srv/users"]);
    assert_eq!(
        value(&add, "role").0,
        ["admin"],
        "a required flag set by the file"
    );
    let list = parse(text, &["users", "list"]).unwrap();
    assert_eq!(value(&list, "data_dir").0, ["/srv/users"]);
    assert_eq!(
        value(&parse(text, &["serve"]).unwrap(), "data_dir").0,
        ["data"],
        "[users] is not [serve]"
    );
}

/// A sample value each flag's parser accepts, tried in turn; a new kind of flag whose values
/// none of these parse needs one added here.
const SAMPLES: [&str; 10] = [
    "cost:5",
    "7d",
    "3",
    "0.5",
    "127.0.0.1:9",
    "viewer",
    "linger.ms=5",
    "127.0.0.1",
    "x-user",
    "Age",
];

/// Every flag of every command — declared there or passed on from a parent — can be set from
/// that command's table, and arrives. Walks the clap tree, so a new flag is covered by itself.
#[test]
fn every_flag_of_every_command_can_be_set_from_the_file() {
    let command = Cli::command();
    let mut checked = 0;
    for node in walk(&command) {
        let section = if node.path.is_empty() {
            String::new()
        } else {
            format!("[{}]\n", node.path.join("."))
        };
        for arg in node.settable() {
            let key = key_of(arg).unwrap();
            let (text, expected) = if Kind::of(arg) == Kind::Switch {
                (format!("{section}{key} = true\n"), "true".to_owned())
            } else {
                let choices: Vec<String> = arg
                    .get_possible_values()
                    .iter()
                    .map(|v| v.get_name().to_owned())
                    .collect();
                let sample = choices
                    .iter()
                    .map(String::as_str)
                    .chain(SAMPLES)
                    .map(|s| (format!("{section}{key} = {}\n", toml::Value::from(s)), s))
                    .find(|(text, _)| load(text).is_ok())
                    .unwrap_or_else(|| {
                        panic!("no sample value for --{key} of {:?}: add one", node.path)
                    });
                (sample.0, sample.1.to_string())
            };
            let file = load(&text).unwrap();
            let matches = crate::command_line(Some(&file))
                .ignore_errors(true)
                .try_get_matches_from(
                    std::iter::once("churn").chain(node.path.iter().map(|s| s.as_str())),
                )
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            let (values, source) = value(&matches, arg.get_id().as_str());
            if arg.get_env().is_some_and(|e| std::env::var_os(e).is_some()) {
                // Set in this environment (scripts/env.sh sets CHURN_SITE_ROOT), which wins.
                assert_eq!(source, Some(ValueSource::EnvVariable), "{text}");
                continue;
            }
            assert_eq!(values, [expected], "{text}");
            assert_eq!(source, Some(ValueSource::DefaultValue), "{text}");
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} flags found");
}

#[test]
fn unknown_keys_are_refused_with_the_closest_valid_one() {
    let message = refused("[serve]\nadress = \"x\"\n");
    for part in [
        "churn.toml",
        "`adress`",
        "[serve]",
        "did you mean `addr`?",
        "--example",
    ] {
        assert!(message.contains(part), "{part} not in: {message}");
    }
    let message = refused("window-secs = 3\n");
    assert!(message.contains("the top level"), "{message}");
    assert!(message.contains("[analyze], [serve]"), "{message}");
    assert!(refused("[srve]\naddr = \"x\"\n").contains("did you mean `serve`?"));
    assorted(
        &refused("[model.inf]\nkey = \"k\"\n"),
        &["[model]", "did you mean `info`?"],
    );
    assorted(&refused("brokerz = \"x\"\n"), &["did you mean `brokers`?"]);
    assert!(!refused("zzzzzzzz = 1\n").contains("did you mean"));
    // Positional arguments and `--config` itself are not settings.
    assorted(&refused("[replay]\nfile = \"x.csv\"\n"), &["`file`"]);
    assorted(&refused("config = \"other.toml\"\n"), &["`config`"]);
    assorted(&refused("[users.add]\nname = \"ann\"\n"), &["`name`"]);
}

fn assorted(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part} not in: {message}");
    }
}

#[test]
fn wrong_values_are_refused_naming_the_key() {
    for (text, parts) in [
        (
            "[serve]\nwindow-secs = \"abc\"\n",
            &["`window-secs`", "[serve]", "not a number"][..],
        ),
        (
            "[serve]\nwindow-secs = -1\n",
            &["`window-secs`", "must be between"],
        ),
        (
            "[serve]\nno-scorer = \"yes\"\n",
            &["`no-scorer`", "true or false"],
        ),
        (
            "[serve]\nno-scorer = 1\n",
            &["`no-scorer`", "true or false"],
        ),
        (
            "[serve]\naddr = [\"127.0.0.1:1\"]\n",
            &["`addr`", "not an array"],
        ),
        (
            "[serve]\naddr = \"nowhere\"\n",
            &["`addr`", "invalid value"],
        ),
        ("[serve]\naddr = true\n", &["`addr`", "not boolean"]),
        ("[serve]\naddr = { a = 1 }\n", &["`addr`", "not table"]),
        (
            "[serve]\nallowed-hosts = [true]\n",
            &["`allowed-hosts`", "array of strings"],
        ),
        (
            "[serve]\nproxy-default-role = \"boss\"\n",
            &["`proxy-default-role`", "boss"],
        ),
        ("[train]\nfolds = 1\n", &["`folds`", "[train]"]),
        ("[train]\nfolds = 1.5\n", &["`folds`"]),
        (
            "partitions = \"many\"\n",
            &["`partitions`", "the top level"],
        ),
        ("log-format = \"xml\"\n", &["`log-format`", "xml"]),
        ("serve = 3\n", &["`serve`", "must be a table"]),
        (
            "[serve]\nwindow-secs = 3\nwindow_secs = 4\n",
            &["`window-secs` twice"],
        ),
        ("brokers = \n", &["not valid TOML", "churn.toml"]),
    ] {
        assorted(&refused(text), parts);
    }
}

/// Secrets stay out of the file, and the message does not repeat them.
#[test]
fn secrets_in_the_file_are_refused() {
    for text in [
        "kafka-property = [\"sasl.password=hunter2\"]\n",
        "[serve]\nkafka-property = \"linger.ms=1,ssl.key.password=hunter2\"\n",
        "brokers = \"kafka://churn:hunter2@host:9092\"\n",
        "[users.link]\nurl = \"http://ann:hunter2@host\"\n",
    ] {
        let message = refused(text);
        assorted(&message, &["holds a secret", "--kafka-properties FILE"]);
        assert!(!message.contains("hunter2"), "{message}");
    }
    load("kafka-property = [\"sasl.username=ann\", \"security.protocol=SASL_SSL\"]\n").unwrap();
}

#[test]
fn the_file_is_found_on_the_command_line_or_in_the_environment() {
    let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
    let env = Some(OsString::from("env.toml"));
    assert_eq!(
        locate(
            &args(&["churn", "serve", "--config", "a.toml"]),
            env.clone()
        ),
        Some(PathBuf::from("a.toml"))
    );
    assert_eq!(
        locate(&args(&["churn", "--config=b.toml", "serve"]), env.clone()),
        Some(PathBuf::from("b.toml"))
    );
    assert_eq!(
        locate(&args(&["churn", "serve"]), env.clone()),
        Some(PathBuf::from("env.toml"))
    );
    assert_eq!(
        locate(&args(&["churn", "serve"]), Some(OsString::new())),
        None
    );
    assert_eq!(
        locate(&args(&["churn", "replay", "--", "--config"]), None),
        None
    );
    assert_eq!(locate(&args(&["churn", "--config"]), None), None);
    let missing =
        ConfigFile::load(Path::new("/nonexistent/churn.toml"), &Cli::command()).unwrap_err();
    assorted(
        &missing.to_string(),
        &["cannot read the config file /nonexistent/churn.toml"],
    );
}

/// `churn config serve ...`: the effective values with their sources, secrets masked; TOML that
/// loads back as a settings file.
#[test]
fn churn_config_shows_values_with_their_sources_and_masks_secrets() {
    let file = load(FILE).unwrap();
    let command = crate::command_line(Some(&file));
    let top = command
        .clone()
        .try_get_matches_from(["churn", "--brokers", "cli:1", "config"])
        .unwrap();
    let text = show::effective(
        &command,
        Some(&file),
        &top,
        &strings(&[
            "serve",
            "--addr",
            "127.0.0.1:6000",
            "-X",
            "sasl.password=hunter2",
            "--no-scorer=false",
        ]),
    )
    .unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} in {text}"))
            .to_owned()
    };
    assorted(&line("brokers"), &["\"cli:1\"", "# command line"]);
    assorted(&line("addr"), &["\"127.0.0.1:6000\"", "# command line"]);
    assorted(
        &line("kafka-property"),
        &["sasl.password=***", "# command line"],
    );
    assorted(&line("no-scorer"), &["false", "# command line"]);
    assorted(
        &line("partitions"),
        &["7", "# config file churn.toml, the top level"],
    );
    assorted(
        &line("window-secs"),
        &["30", "# config file churn.toml, [serve]"],
    );
    assorted(
        &line("allowed-hosts"),
        &["[\"a.example\", \"b.example\"]", "# config file"],
    );
    assorted(&line("max-pending"), &["10000", "# default"]);
    assert!(
        text.contains("\n[serve]\n") && text.contains("# metrics-addr is not set"),
        "{text}"
    );

    // What it prints is a settings file (secrets masked aside).
    let without_secret =
        show::effective(&command, Some(&file), &top, &strings(&["serve"])).unwrap();
    let again = load(&without_secret).unwrap_or_else(|e| panic!("{e}:\n{without_secret}"));
    let matches = crate::command_line(Some(&again))
        .try_get_matches_from(["churn", "serve"])
        .unwrap();
    assert_eq!(value(&matches, "brokers").0, ["cli:1"]);
    assert_eq!(value(&matches, "window_secs").0, ["30"]);

    // A switch named like a secret is shown as it is, and the text stays TOML.
    let add = show::effective(&command, None, &top, &strings(&["users", "add", "ann"])).unwrap();
    assert!(add.contains("\npassword-stdin = false "), "{add}");
    assert!(add.contains("\n# role is not set\n"), "{add}");
    load(&add).unwrap_or_else(|e| panic!("{e}:\n{add}"));

    // A command whose required flags are missing still shows; a wrong one is refused.
    let text = show::effective(&command, Some(&file), &top, &strings(&["score-file"])).unwrap();
    assert!(text.contains("[score-file]"), "{text}");
    assert!(show::effective(&command, None, &top, &strings(&["nonsense"])).is_err());
    assert!(show::effective(&command, None, &top, &strings(&["serve", "--adr", "x"])).is_err());
    let globals = show::effective(&command, None, &top, &[]).unwrap();
    assert!(
        globals.contains("log-format = \"text\"") && !globals.contains("[serve]"),
        "{globals}"
    );
}

/// `churn.example.toml` is what `churn config --example` prints, loads as a settings file with
/// every line uncommented, and has every key.
#[test]
fn the_example_file_is_current_and_loads() {
    let printed = show::example(&Cli::command());
    let shipped = include_str!("../../../../churn.example.toml");
    assert!(
        printed == shipped,
        "churn.example.toml is stale: run `churn config --example > churn.example.toml`"
    );
    let mut uncommented = String::new();
    for line in printed.lines() {
        let setting = line
            .strip_prefix("# ")
            .filter(|l| {
                l.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                })
            })
            .filter(|l| !l.contains("\"<"));
        uncommented.push_str(setting.unwrap_or(line));
        uncommented.push('\n');
    }
    let file = load(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    for node in walk(&Cli::command()) {
        for arg in &node.declared {
            let key = key_of(arg).unwrap();
            let has_default = !arg.get_default_values().is_empty() || Kind::of(arg) != Kind::One;
            if has_default {
                assert!(
                    file.lookup(&node.path, key, node.path.len()).is_some(),
                    "{key} of {:?}",
                    node.path
                );
            }
        }
    }
}

/// With a settings file too, no `--help` prints an environment variable's value.
#[test]
fn help_hides_environment_values_with_a_file() {
    let file = load(FILE).unwrap();
    let mut command = crate::command_line(Some(&file));
    command.build();
    fn check(command: &clap::Command) {
        for arg in command.get_arguments().filter(|a| a.get_env().is_some()) {
            assert!(
                arg.is_hide_env_values_set(),
                "{:?} of {}",
                arg.get_id(),
                command.get_name()
            );
        }
        command.get_subcommands().for_each(check);
    }
    check(&command);
    command.debug_assert();
}
