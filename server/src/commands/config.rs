//! One settings file for every command (`--config FILE`) and `churn config`, which prints the
//! settings a command would run with and where each came from.
//!
//! Nothing here knows any flag by name: the file's keys are the long names of the flags in the
//! clap command tree — top-level keys for the top level's flags, a table per subcommand
//! (`[serve]`, `[model.info]`) for its own — so a new flag has a key with no work. By concept:
//! `file` (reading and checking the file, and making its values the flags' defaults) and `show`
//! (the effective settings, and the commented example file).

mod file;
mod show;
#[cfg(test)]
mod tests;

use anyhow::Result;
use clap::{Arg, ArgAction, ArgMatches, Command};

pub use file::{locate, ConfigFile, CONFIG_ARG, CONFIG_ENV};

/// `churn config`.
#[derive(clap::Args)]
pub struct ConfigArgs {
    /// Print a commented example file with every key and its built-in default instead
    /// (`churn config --example > churn.toml`).
    #[arg(long)]
    pub example: bool,
    /// The command whose settings to show, with any flags as you would give them, e.g.
    /// `serve --addr 0.0.0.0:3000`. Without it, the top-level settings.
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// Prints the effective settings (or the example file) on stdout. `command` is the command line
/// with the file applied; `matches` the parsed command line `churn config` came from.
pub fn run(
    args: &ConfigArgs,
    command: &Command,
    file: Option<&ConfigFile>,
    matches: &ArgMatches,
) -> Result<()> {
    let text = if args.example {
        show::example(command)
    } else {
        show::effective(command, file, matches, &args.command).unwrap_or_else(|e| e.exit())
    };
    super::print_stdout(&text)?;
    Ok(())
}

/// What a flag holds, as the file writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A switch (`--no-scorer`): true or false.
    Switch,
    /// Counted (`-vvv`): a whole number.
    Count,
    /// Repeatable or comma-separated: an array (a single value is taken as one item).
    List,
    /// One value: a string or a number.
    One,
}

impl Kind {
    fn of(arg: &Arg) -> Kind {
        match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => Kind::Switch,
            ArgAction::Count => Kind::Count,
            ArgAction::Append => Kind::List,
            // A switch the file turned on takes `--flag=false` (see `file::set_default`).
            _ if is_bool(arg) => Kind::Switch,
            _ => Kind::One,
        }
    }
}

fn is_bool(arg: &Arg) -> bool {
    let bool_parser: clap::builder::ValueParser = clap::value_parser!(bool);
    arg.get_value_parser().type_id() == bool_parser.type_id()
}

/// Whether the flag's values are numbers (written bare in TOML rather than quoted).
fn is_number(arg: &Arg) -> bool {
    use clap::builder::ValueParser;
    let id = arg.get_value_parser().type_id();
    let numbers: [ValueParser; 10] = [
        clap::value_parser!(u8).into(),
        clap::value_parser!(u16).into(),
        clap::value_parser!(u32).into(),
        clap::value_parser!(u64).into(),
        clap::value_parser!(i8).into(),
        clap::value_parser!(i16).into(),
        clap::value_parser!(i32).into(),
        clap::value_parser!(i64).into(),
        clap::value_parser!(f32).into(),
        clap::value_parser!(f64).into(),
    ];
    numbers.iter().any(|n| n.type_id() == id)
}

/// The file's key for a flag: its long name. Positional arguments (what a command acts on) and
/// `--config` itself have none.
fn key_of(arg: &Arg) -> Option<&str> {
    if arg.get_id() == CONFIG_ARG || arg.is_positional() {
        return None;
    }
    arg.get_long()
}

/// A command of the tree with the flags it takes, as the file sees them.
struct Node<'a> {
    /// Subcommand names from the top: `[]` for the top level, `["model", "info"]`.
    path: Vec<String>,
    command: &'a Command,
    /// Flags declared here, with a key.
    declared: Vec<&'a Arg>,
    /// Flags a parent declared global (`--brokers`), which this command takes too.
    inherited: Vec<&'a Arg>,
}

impl Node<'_> {
    /// Every flag this command takes that has a key: inherited first, then its own.
    fn settable(&self) -> impl Iterator<Item = &Arg> {
        self.inherited
            .iter()
            .chain(&self.declared)
            .copied()
            .filter(|a| key_of(a).is_some())
    }

    fn find(&self, key: &str) -> Option<&Arg> {
        self.settable().find(|a| key_of(a) == Some(key))
    }
}

/// Every command of the tree, parents before children, with the global flags each inherits
/// (as clap propagates them when it builds the tree).
fn walk(root: &Command) -> Vec<Node<'_>> {
    fn visit<'a>(
        command: &'a Command,
        path: Vec<String>,
        inherited: Vec<&'a Arg>,
        out: &mut Vec<Node<'a>>,
    ) {
        let declared: Vec<&Arg> = command
            .get_arguments()
            .filter(|a| !inherited.iter().any(|i| i.get_id() == a.get_id()))
            .filter(|a| key_of(a).is_some())
            .collect();
        // A global flag a command overrides (a table's own value) is the one its children get.
        let mut passed_on: Vec<&Arg> = inherited
            .iter()
            .map(|i| {
                command
                    .get_arguments()
                    .find(|a| a.get_id() == i.get_id())
                    .unwrap_or(i)
            })
            .collect();
        passed_on.extend(
            command.get_arguments().filter(|a| {
                a.is_global_set() && !inherited.iter().any(|i| i.get_id() == a.get_id())
            }),
        );
        out.push(Node {
            path: path.clone(),
            command,
            declared,
            inherited,
        });
        for sub in command.get_subcommands() {
            let mut sub_path = path.clone();
            sub_path.push(sub.get_name().to_owned());
            visit(sub, sub_path, passed_on.clone(), out);
        }
    }
    let mut out = Vec::new();
    visit(root, Vec::new(), Vec::new(), &mut out);
    out
}

/// A table's name as messages and the printed settings show it: `[model.info]`, or
/// `the top level`.
fn table_name(path: &[String]) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        format!("[{}]", path.join("."))
    }
}
