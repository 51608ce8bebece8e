//! What `churn config` prints: the settings a command would run with, each with where its value
//! came from, secrets masked; and the commented example file with every key and its default.
//! Both are TOML that `--config` reads back.

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};

use super::{is_number, key_of, table_name, walk, ConfigFile, Kind, Node};
use crate::commands::logging::{is_secret_key, redact};

/// Width the trailing comments line up at, and the example's comments wrap at.
const COLUMN: usize = 48;
const WIDTH: usize = 96;

/// The effective settings of `target` (a command with its flags, e.g. `serve --addr x`; empty
/// for the top level) under `command` (the command tree with the file applied). `matches` are
/// the parsed `churn config` command line: global flags given there count as given to `target`.
pub(super) fn effective(
    command: &Command,
    file: Option<&ConfigFile>,
    matches: &ArgMatches,
    target: &[String],
) -> Result<String, clap::Error> {
    let mut argv: Vec<OsString> = vec!["churn".into()];
    argv.extend(given_globals(command, matches));
    argv.extend(target.iter().map(OsString::from));
    let parser = command
        .clone()
        .subcommand_required(false)
        .arg_required_else_help(false);
    let parsed = match parser.clone().try_get_matches_from(&argv) {
        Ok(parsed) => parsed,
        // The settings of `churn score-file` are worth seeing before its required flags are known.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::MissingRequiredArgument
                    | ErrorKind::MissingSubcommand
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            parser.ignore_errors(true).try_get_matches_from(&argv)?
        }
        Err(e) => return Err(e),
    };
    // The chain of matches from the top level to the command shown.
    let mut levels = vec![&parsed];
    let mut path: Vec<String> = Vec::new();
    while let Some((name, sub)) = levels.last().and_then(|m| m.subcommand()) {
        path.push(name.to_owned());
        levels.push(sub);
    }
    let leaf = *levels.last().expect("the top level");
    let nodes = walk(command);

    let shown = if path.is_empty() {
        "every command (`churn config COMMAND` adds its own)".to_owned()
    } else {
        format!("`churn {}`", path.join(" "))
    };
    let mut out = format!(
        "# The settings of {shown}, and where each came from.\n\
         # Precedence: command line > environment variable > config file > built-in default.\n\
         # Config file: {}\n",
        file.map_or_else(
            || "none (--config FILE or CHURN_CONFIG)".to_owned(),
            |f| f.path.display().to_string()
        )
    );
    for (depth, level) in levels.iter().enumerate() {
        let node = find_node(&nodes, &path[..depth]);
        if node.declared.is_empty() {
            continue;
        }
        out.push('\n');
        if depth > 0 {
            out.push_str(&format!("[{}]\n", path[..depth].join(".")));
        }
        for arg in &node.declared {
            // A global flag's value is the one its deepest command resolved.
            let m = if arg.is_global_set() { leaf } else { level };
            out.push_str(&setting_line(arg, m, file, &node.path, &path));
        }
    }
    Ok(out)
}

/// The global flags given on the `churn config` command line, as arguments to parse again.
fn given_globals(command: &Command, matches: &ArgMatches) -> Vec<OsString> {
    let mut args = Vec::new();
    for arg in command.get_arguments().filter(|a| a.is_global_set()) {
        let (Some(long), Some(ValueSource::CommandLine)) =
            (arg.get_long(), matches.value_source(arg.get_id().as_str()))
        else {
            continue;
        };
        if !arg.get_action().takes_values() {
            args.push(format!("--{long}").into());
            continue;
        }
        for value in matches.get_raw(arg.get_id().as_str()).into_iter().flatten() {
            let mut flag = OsString::from(format!("--{long}="));
            flag.push(value);
            args.push(flag);
        }
    }
    args
}

fn find_node<'a, 'b>(nodes: &'b [Node<'a>], path: &[String]) -> &'b Node<'a> {
    nodes
        .iter()
        .find(|n| n.path == path)
        .expect("matches follow the command tree")
}

/// `key = value   # source`, secrets masked; a flag without a value as a comment.
fn setting_line(
    arg: &Arg,
    matches: &ArgMatches,
    file: Option<&ConfigFile>,
    declared_at: &[String],
    shown: &[String],
) -> String {
    let key = key_of(arg).expect("declared flags have keys");
    let id = arg.get_id().as_str();
    let values: Vec<String> = matches
        .get_raw(id)
        .into_iter()
        .flatten()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let source = match matches.value_source(id) {
        Some(ValueSource::CommandLine) => "command line".to_owned(),
        Some(ValueSource::EnvVariable) => format!(
            "environment {}",
            arg.get_env().unwrap_or_default().to_string_lossy()
        ),
        Some(_) => {
            // A default: the file's when a table on the way to the command shown set it.
            let upto = if arg.is_global_set() {
                shown
            } else {
                declared_at
            };
            match file.and_then(|f| f.lookup(upto, key, declared_at.len())) {
                Some((table, _)) => format!(
                    "config file {}, {}",
                    file.map(|f| f.path.display().to_string())
                        .unwrap_or_default(),
                    table_name(table)
                ),
                None => "default".to_owned(),
            }
        }
        None => return format!("# {key} is not set\n"),
    };
    // Masked value by value, so that the line stays TOML; a switch is never a secret.
    let values: Vec<String> = match Kind::of(arg) {
        Kind::Switch => values,
        _ if is_secret_key(key) => values.iter().map(|_| "***".to_owned()).collect(),
        _ => values.iter().map(|v| redact(v).into_owned()).collect(),
    };
    let setting = format!("{key} = {}", value_text(arg, &values));
    format!("{setting:<COLUMN$} # {source}\n")
}

/// `values` written as TOML for `arg`: a switch bare, a list as an array, numbers bare.
fn value_text(arg: &Arg, values: &[String]) -> String {
    let one = |v: &String| {
        if (is_number(arg) || Kind::of(arg) == Kind::Count) && is_toml_number(v) {
            v.clone()
        } else {
            toml::Value::String(v.clone()).to_string()
        }
    };
    match Kind::of(arg) {
        Kind::Switch if values.len() == 1 && matches!(values[0].as_str(), "true" | "false") => {
            values[0].clone()
        }
        Kind::List => format!(
            "[{}]",
            values.iter().map(one).collect::<Vec<_>>().join(", ")
        ),
        _ => values.first().map(one).unwrap_or_default(),
    }
}

fn is_toml_number(text: &str) -> bool {
    format!("n = {text}")
        .parse::<toml::Table>()
        .is_ok_and(|t| matches!(t["n"], toml::Value::Integer(_) | toml::Value::Float(_)))
}

/// A commented settings file with every key of `command`'s tree and its built-in default.
pub(super) fn example(command: &Command) -> String {
    let mut out = String::from(
        "# Settings for every `churn` command: `churn --config churn.toml COMMAND` (or\n\
         # CHURN_CONFIG=churn.toml). Precedence: command line > environment variable > this file >\n\
         # built-in default; `churn config COMMAND` prints what a command would run with.\n\
         #\n\
         # Keys are the long flag names (snake_case works too): top-level keys for the flags every\n\
         # command takes, a table per command for its own (a table may also set a top-level one for\n\
         # that command only). Switches take true/false, repeatable flags an array.\n\
         # Keep secrets out of this file: Kafka's go in --kafka-properties FILE (chmod 600).\n\
         #\n\
         # Written by `churn config --example`; every line is commented out, with its default.\n\n",
    );
    for node in walk(command) {
        if node.declared.is_empty() {
            continue;
        }
        if !node.path.is_empty() {
            let about = node
                .command
                .get_about()
                .map(|a| format!(": {a}"))
                .unwrap_or_default();
            out.push_str(&wrap(&format!("churn {}{about}", node.path.join(" "))));
            out.push_str(&format!("[{}]\n", node.path.join(".")));
        }
        for arg in &node.declared {
            out.push_str(&example_entry(arg));
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

fn example_entry(arg: &Arg) -> String {
    let key = key_of(arg).expect("declared flags have keys");
    let mut about = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    // clap drops a one-line help's final period; the notes below follow as sentences.
    if !about.is_empty() && !about.ends_with(['.', '!', '?', ')']) {
        about.push('.');
    }
    if let Some(env) = arg.get_env() {
        about.push_str(&format!(" Environment: {}.", env.to_string_lossy()));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let value = match Kind::of(arg) {
        Kind::Switch => defaults
            .first()
            .cloned()
            .unwrap_or_else(|| "false".to_owned()),
        Kind::List => value_text(arg, &defaults),
        _ if defaults.is_empty() => {
            about.push_str(" No default.");
            let name = arg
                .get_value_names()
                .and_then(|n| n.first())
                .map_or_else(|| key.to_uppercase(), |n| n.to_string());
            format!("\"<{name}>\"")
        }
        _ => value_text(arg, &defaults),
    };
    format!("{}# {key} = {value}\n\n", wrap(about.trim()))
}

/// `text` as `# ` comment lines of at most `WIDTH` characters.
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > WIDTH && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
    out
}
