//! Secrets and the command line: help never shows environment values, and -X refuses secrets.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::*;

const MARKER: &str = "MARKER-s3cr3t-value";

/// `churn <path> --help` (or `-h`), with `env` set: its text.
fn help(path: &[String], flag: &str, env: &[(String, String)]) -> String {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push(flag);
    let output = churn(&args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(output.status.success(), "churn {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The subcommand names listed under "Commands:" in a help text.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Wrapped descriptions are indented further.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path: [], ["broker"], ..., ["model", "info"].
fn command_paths() -> Vec<Vec<String>> {
    let mut paths = vec![vec![]];
    let mut i = 0;
    while i < paths.len() {
        let path: Vec<String> = paths[i].clone();
        for sub in subcommands(&help(&path, "--help", &[])) {
            paths.push([path.clone(), vec![sub]].concat());
        }
        i += 1;
    }
    paths
}

/// Every CHURN_* variable the CLI knows is set to a marker; no command's help, long or short,
/// shows it.
#[test]
fn no_help_shows_an_environment_value() {
    let paths = command_paths();
    assert!(paths.len() >= 11, "every command: {paths:?}");
    let mut names = BTreeSet::new();
    for path in &paths {
        let text = help(path, "--help", &[]);
        for (i, _) in text.match_indices("CHURN_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    for known in [
        "CHURN_BROKERS",
        "CHURN_KAFKA_PROPERTIES",
        "CHURN_KAFKA_PROPERTIES_FILE",
        "CHURN_DATA_DIR",
        "CHURN_LOG",
        "CHURN_ADDR",
    ] {
        assert!(names.contains(known), "{known} not in {names:?}");
    }
    // The settings file must exist (it is read before any help): an empty one, named with the
    // marker so a help text showing its path fails too.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(format!("{MARKER}-config.toml"));
    std::fs::write(&config, "").unwrap();
    let env: Vec<(String, String)> = names
        .iter()
        .map(|name| match name.as_str() {
            "CHURN_CONFIG" => (name.clone(), config.display().to_string()),
            _ => (name.clone(), format!("{MARKER}-{name}")),
        })
        .collect();
    for path in &paths {
        for flag in ["--help", "-h"] {
            let text = help(path, flag, &env);
            assert!(
                !text.contains(MARKER),
                "churn {path:?} {flag} shows a value:\n{text}"
            );
        }
    }
}

/// A secret given with -X is refused before anything connects, with where to put it instead,
/// and without echoing it.
#[test]
fn a_secret_given_with_x_is_refused_at_once_without_echoing_it() {
    let nowhere = format!("127.0.0.1:{}", server::broker::free_port());
    for args in [
        &["publish", "m.json", "-X", "sasl.password=hunter2"][..],
        &["-X", "ssl.key.password=hunter2", "replay", "c.csv"],
        &[
            "score",
            "--kafka-property",
            "sasl.oauthbearer.client.secret=hunter2",
        ],
    ] {
        let started = Instant::now();
        let output = churn(&[args, &["--brokers", &nowhere][..]].concat())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} accepted");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?}: {:?}",
            started.elapsed()
        );
        assert!(
            stderr.contains("--kafka-properties FILE") && stderr.contains("CHURN_KAFKA_PROPERTIES"),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
