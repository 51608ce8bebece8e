//! The settings file on the real binary, with an environment of its own: precedence file <
//! environment < command line, the file named by CHURN_CONFIG, a bad file refused before
//! anything starts, and `churn config` masking a secret from the environment. No broker needed.

use std::path::Path;
use std::process::Output;

const FILE: &str = r#"
brokers = "file:9092"

[analyze]
window-secs = 30

[serve]
allowed-hosts = ["file.example"]
no-scorer = true
"#;

/// `churn ARGS` with only `env` in its environment.
fn churn(args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_churn"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The line of `churn config` output that sets `key`.
fn line(text: &str, key: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("{key} in {text}"))
        .to_owned()
}

fn settings_file(dir: &Path) -> String {
    let path = dir.join("churn.toml");
    std::fs::write(&path, FILE).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn file_then_environment_then_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = settings_file(dir.path());
    let cases: [(&str, &str, &str, &str, &str, &str); 3] = [
        // command, key, environment variable, its value, a command-line flag, its value
        (
            "analyze",
            "brokers",
            "CHURN_BROKERS",
            "env:9092",
            "--brokers",
            "cli:9092",
        ),
        (
            "analyze",
            "window-secs",
            "CHURN_WINDOW_SECS",
            "20",
            "--window-secs",
            "10",
        ),
        (
            "serve",
            "allowed-hosts",
            "CHURN_ALLOWED_HOSTS",
            "env.example",
            "--allowed-hosts",
            "cli.example",
        ),
    ];
    for (command, key, var, env_value, flag, cli_value) in cases {
        let from_file = stdout(&churn(&["--config", &file, "config", command], &[]));
        assert!(
            line(&from_file, key).contains(&format!("# config file {file}")),
            "{from_file}"
        );
        let from_env = stdout(&churn(
            &["--config", &file, "config", command],
            &[(var, env_value)],
        ));
        let shown = line(&from_env, key);
        assert!(
            shown.contains(env_value) && shown.contains(&format!("# environment {var}")),
            "{shown}"
        );
        let from_cli = stdout(&churn(
            &["--config", &file, "config", command, flag, cli_value],
            &[(var, env_value)],
        ));
        let shown = line(&from_cli, key);
        assert!(
            shown.contains(cli_value) && shown.ends_with("# command line"),
            "{shown}"
        );
    }
    // A switch has no environment variable: the file turns it on, the command line off.
    let on = stdout(&churn(&["--config", &file, "config", "serve"], &[]));
    assert!(
        line(&on, "no-scorer").starts_with("no-scorer = true"),
        "{on}"
    );
    let off = stdout(&churn(
        &["--config", &file, "config", "serve", "--no-scorer=false"],
        &[],
    ));
    assert!(
        line(&off, "no-scorer").starts_with("no-scorer = false"),
        "{off}"
    );
}

#[test]
fn churn_config_names_the_file_and_masks_secrets_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = settings_file(dir.path());
    let env = [
        ("CHURN_CONFIG", file.as_str()),
        (
            "CHURN_KAFKA_PROPERTIES",
            "sasl.username=ann,sasl.password=hunter2",
        ),
    ];
    let text = stdout(&churn(&["config", "score"], &env));
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains(&format!("# Config file: {file}")), "{text}");
    let shown = line(&text, "kafka-property");
    assert!(
        shown.contains("sasl.username=ann") && shown.contains("sasl.password=***"),
        "{shown}"
    );
    assert!(line(&text, "brokers").contains("file:9092"), "{text}");
}

#[test]
fn a_bad_file_stops_every_command_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("churn.toml");
    std::fs::write(&path, "[serve]\nwindow-secs = \"soon\"\n").unwrap();
    let file = path.to_str().unwrap();
    for args in [
        &["--config", file, "generate", "--rows", "1"][..],
        &["config"],
    ] {
        let output = churn(args, &[("CHURN_CONFIG", file)]);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("`window-secs` in [serve]") && stderr.contains(file),
            "{stderr}"
        );
    }
    let output = churn(&["--config", "/nonexistent/churn.toml", "config"], &[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read the config file"));
}

/// The example file is a settings file every command accepts as it is.
#[test]
fn the_shipped_example_is_accepted() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../churn.example.toml");
    let text = stdout(&churn(&["--config", example, "config", "serve"], &[]));
    assert!(line(&text, "addr").ends_with("# default"), "{text}");
}

/// With `--log-format json`, the reason a command failed is a JSON line too (a log shipper
/// reads only those), and a secret in it is masked.
#[test]
fn a_failure_is_a_json_line_under_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("password=hunter2-missing.csv");
    let output = churn(
        &[
            "--log-format",
            "json",
            "train",
            "--input",
            &missing.display().to_string(),
            "--output",
            &dir.path().join("m.json").display().to_string(),
        ],
        &[],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().expect("a line");
    let line: serde_json::Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(line["level"], "ERROR", "{last}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
