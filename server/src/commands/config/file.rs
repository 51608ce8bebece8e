//! The settings file: found before clap parses (`locate`), read and checked against the command
//! tree (`ConfigFile::load`) and made the flags' defaults (`ConfigFile::apply`), so that an
//! environment variable or the command line still wins over it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};

use super::{key_of, table_name, walk, Kind, Node};
use crate::commands::logging::redact;

/// The id of the `--config` flag.
pub const CONFIG_ARG: &str = "config";
/// The environment variable naming the file when `--config` is not given.
pub const CONFIG_ENV: &str = "CHURN_CONFIG";

/// A settings file that cannot be used; each message names the file, and the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error(
        "the config file {path} has an unknown key `{key}` in {table}{hint}. `churn config \
         --example` lists every key"
    )]
    UnknownKey {
        path: PathBuf,
        table: String,
        key: String,
        hint: String,
    },
    #[error("the config file {path} sets `{key}` twice in {table} (kebab-case and snake_case); keep one")]
    Twice {
        path: PathBuf,
        table: String,
        key: String,
    },
    #[error("the config file {path}: `{key}` in {table} {problem}")]
    Value {
        path: PathBuf,
        table: String,
        key: String,
        problem: String,
    },
    #[error(
        "the config file {path}: `{key}` in {table} holds a secret. Keep secrets out of this \
         file: Kafka's in a file given with --kafka-properties FILE (chmod 600), others in the \
         environment"
    )]
    Secret {
        path: PathBuf,
        table: String,
        key: String,
    },
}

/// The file named by `--config FILE` (or `--config=FILE`) in `args` (the program name first),
/// else by `env` (CHURN_CONFIG's value). Read before clap parses, because the file's values
/// become the flags' defaults; main checks afterwards that clap read the same name.
pub fn locate(args: &[OsString], env: Option<OsString>) -> Option<PathBuf> {
    let flag = format!("--{CONFIG_ARG}");
    let with_equals = format!("--{CONFIG_ARG}=");
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == flag {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix(&with_equals) {
            return Some(PathBuf::from(path));
        }
    }
    env.filter(|e| !e.is_empty()).map(PathBuf::from)
}

/// A flag's value from the file, as clap takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Setting {
    Switch(bool),
    Values(Vec<String>),
}

/// A checked settings file: values by command path (`[]`, `["serve"]`) and flag key.
#[derive(Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    settings: BTreeMap<Vec<String>, BTreeMap<String, Setting>>,
}

impl ConfigFile {
    /// Reads `path` and checks every key and value against `command`'s tree.
    pub fn load(path: &Path, command: &Command) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        ConfigFile::parse(path, &text, command)
    }

    /// The settings in `text` (the contents of `path`), checked against `command`'s tree.
    pub fn parse(path: &Path, text: &str, command: &Command) -> Result<ConfigFile, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.to_string().trim_end().to_owned(),
                })?;
        let nodes = walk(command);
        let mut file = ConfigFile {
            path: path.to_owned(),
            settings: BTreeMap::new(),
        };
        file.read_table(&nodes, &[], &table)?;
        Ok(file)
    }

    /// The value the file gives `key` for the command at `path`: its own table's, else the
    /// nearest parent table's down to `from_depth` (where a global flag is declared).
    pub(super) fn lookup<'a>(
        &self,
        path: &'a [String],
        key: &str,
        from_depth: usize,
    ) -> Option<(&'a [String], &Setting)> {
        (from_depth..=path.len()).rev().find_map(|depth| {
            let at = &path[..depth];
            self.settings
                .get(at)
                .and_then(|t| t.get(key))
                .map(|s| (at, s))
        })
    }

    /// `command` with the file's values as its flags' defaults.
    pub fn apply(&self, command: Command) -> Command {
        self.apply_at(command, &mut Vec::new(), &[])
    }

    fn apply_at(&self, mut command: Command, path: &mut Vec<String>, inherited: &[Arg]) -> Command {
        let own: Vec<Arg> = command.get_arguments().cloned().collect();
        if let Some(settings) = self.settings.get(path.as_slice()) {
            for (key, setting) in settings {
                if let Some(arg) = own.iter().find(|a| key_of(a) == Some(key)) {
                    let id = arg.get_id().clone();
                    command = command.mut_arg(id, |a| set_default(a, setting));
                } else if let Some(arg) = inherited.iter().find(|a| key_of(a) == Some(key)) {
                    // The parent's global flag, with this table's value: clap passes a global
                    // flag on only to subcommands that lack one of the same id.
                    command = command.arg(set_default(arg.clone(), setting));
                }
            }
        }
        let mut passed_on: Vec<Arg> = inherited
            .iter()
            .filter(|i| !command.get_arguments().any(|a| a.get_id() == i.get_id()))
            .cloned()
            .collect();
        passed_on.extend(
            command
                .get_arguments()
                .filter(|a| a.is_global_set())
                .cloned(),
        );
        command.mut_subcommands(|sub| {
            path.push(sub.get_name().to_owned());
            let sub = self.apply_at(sub, path, &passed_on);
            path.pop();
            sub
        })
    }

    fn read_table(
        &mut self,
        nodes: &[Node<'_>],
        path: &[String],
        table: &toml::Table,
    ) -> Result<(), ConfigError> {
        let node = nodes
            .iter()
            .find(|n| n.path == path)
            .expect("tables are read for commands of the tree");
        let mut seen: Vec<String> = Vec::new();
        for (written, value) in table {
            // Keys are the long flag names; snake_case is accepted for them.
            let key = written.replace('_', "-");
            if seen.contains(&key) {
                return Err(ConfigError::Twice {
                    path: self.path.clone(),
                    table: table_name(path),
                    key,
                });
            }
            seen.push(key.clone());
            let sub = node.command.get_subcommands().find(|s| s.get_name() == key);
            match (value, sub) {
                (toml::Value::Table(inner), Some(sub)) => {
                    let mut sub_path = path.to_vec();
                    sub_path.push(sub.get_name().to_owned());
                    self.read_table(nodes, &sub_path, inner)?;
                }
                _ => match node.find(&key) {
                    Some(arg) => {
                        let setting = self.setting(path, &key, arg, value)?;
                        self.settings
                            .entry(path.to_vec())
                            .or_default()
                            .insert(key, setting);
                    }
                    None if sub.is_some() => {
                        return Err(self.value_error(
                            path,
                            &key,
                            format!("must be a table of `churn {key}` settings: [{key}]"),
                        ))
                    }
                    None => {
                        return Err(ConfigError::UnknownKey {
                            path: self.path.clone(),
                            table: table_name(path),
                            hint: hint(nodes, node, &key, value.is_table()),
                            key: written.clone(),
                        })
                    }
                },
            }
        }
        Ok(())
    }

    /// `value` as clap would take it for `arg`, or why not.
    fn setting(
        &self,
        path: &[String],
        key: &str,
        arg: &Arg,
        value: &toml::Value,
    ) -> Result<Setting, ConfigError> {
        let wrong = |problem: &str| self.value_error(path, key, problem.to_owned());
        let setting = match (Kind::of(arg), value) {
            (Kind::Switch, toml::Value::Boolean(on)) => return Ok(Setting::Switch(*on)),
            (Kind::Switch, _) => return Err(wrong("must be true or false")),
            (Kind::Count, toml::Value::Integer(n)) if *n >= 0 => {
                Setting::Values(vec![n.to_string()])
            }
            (Kind::Count, _) => return Err(wrong("must be a whole number, 0 or more")),
            (Kind::List, toml::Value::Array(items)) => Setting::Values(
                items
                    .iter()
                    .map(|item| {
                        scalar(item).ok_or_else(|| wrong("must be an array of strings or numbers"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            (Kind::One, toml::Value::Array(_)) => {
                return Err(wrong("takes one value, not an array"))
            }
            (_, other) => Setting::Values(vec![scalar(other).ok_or_else(|| {
                wrong(&format!(
                    "must be a string or a number, not {}",
                    other.type_str()
                ))
            })?]),
        };
        let Setting::Values(values) = &setting else {
            unreachable!("switches returned above")
        };
        for value in values {
            if redact(&format!("{key}={value}")) != format!("{key}={value}") {
                return Err(ConfigError::Secret {
                    path: self.path.clone(),
                    table: table_name(path),
                    key: key.to_owned(),
                });
            }
        }
        check_values(arg, values).map_err(|problem| wrong(&problem))?;
        Ok(setting)
    }

    fn value_error(&self, path: &[String], key: &str, problem: String) -> ConfigError {
        ConfigError::Value {
            path: self.path.clone(),
            table: table_name(path),
            key: key.to_owned(),
            problem,
        }
    }
}

/// A string or a number as the text clap parses; nothing else.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(x) => Some(x.to_string()),
        _ => None,
    }
}

/// Runs `values` through `arg`'s own value parser (numbers, ranges, choices, addresses) by
/// parsing them with a command of that one flag, so the file is refused at start, naming the
/// key, rather than when clap reads a default it cannot parse.
fn check_values(arg: &Arg, values: &[String]) -> Result<(), String> {
    let long = arg.get_long().expect("settable flags have a long name");
    let mut trial = Arg::new("value")
        .long(long.to_owned())
        .action(ArgAction::Append)
        .value_parser(arg.get_value_parser().clone())
        .value_delimiter(arg.get_value_delimiter());
    if let Some(name) = arg.get_value_names().and_then(|n| n.first()) {
        trial = trial.value_name(name.clone());
    }
    Command::new("churn")
        .no_binary_name(true)
        .arg(trial)
        .try_get_matches_from(values.iter().map(|v| format!("--{long}={v}")))
        .map(drop)
        .map_err(|e| {
            let text = e.render().to_string();
            let line = text.lines().next().unwrap_or_default();
            line.strip_prefix("error: ").unwrap_or(line).to_owned()
        })
}

/// `arg` with `setting` as its default. A switch the file turns on gets `--flag=false` too, so
/// the command line can still turn it off.
fn set_default(arg: Arg, setting: &Setting) -> Arg {
    match setting {
        Setting::Values(values) => arg.default_values(values).required(false),
        Setting::Switch(on) => {
            let when_given = !matches!(arg.get_action(), ArgAction::SetFalse);
            if *on != when_given {
                return arg;
            }
            arg.action(ArgAction::Set)
                .value_parser(clap::value_parser!(bool))
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value(when_given.to_string())
                .default_value(on.to_string())
        }
    }
}

/// Help for an unknown key: the table it belongs in, or the closest key of this one — a
/// command's name for a table, a flag's for a value.
fn hint(nodes: &[Node<'_>], node: &Node<'_>, key: &str, is_table: bool) -> String {
    let elsewhere: Vec<String> = nodes
        .iter()
        .filter(|n| n.declared.iter().any(|a| key_of(a) == Some(key)))
        .map(|n| table_name(&n.path))
        .collect();
    if !elsewhere.is_empty() {
        return format!(
            "; it is a setting of {} (a subcommand's flags go in its table)",
            elsewhere.join(", ")
        );
    }
    let candidates: Vec<&str> = if is_table {
        node.command
            .get_subcommands()
            .map(|s| s.get_name())
            .collect()
    } else {
        node.settable().filter_map(key_of).collect()
    };
    let closest = candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(key, c), c))
        .filter(|(likeness, _)| *likeness >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((_, c)) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}
