//! `churn users ...` and `churn tokens ...`: accounts and API tokens in `--data-dir`, without
//! Kafka; and what `churn serve` prints at start so that someone can sign in.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use app::Role;
use chrono::{DateTime, Utc};
use server::auth::{links, tokens, users, Secret};

/// Where the accounts live (shared with `churn serve` and `churn broker`).
#[derive(clap::Args)]
pub struct DataDir {
    /// Directory holding users.json, tokens.json and login-links.json (and the broker's data).
    #[arg(long, env = "CHURN_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,
}

#[derive(clap::Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
    #[command(flatten)]
    dir: DataDir,
}

#[derive(clap::Subcommand)]
enum UsersCommand {
    /// Create an account. Without --password-stdin a strong password is generated and printed once.
    Add {
        /// 1 to 64 letters, digits, '.', '_', '@' or '-'.
        name: String,
        /// viewer (dashboard aggregates), analyst (plus names, scoring, export) or admin (plus
        /// publishing models and the broker settings).
        #[arg(long)]
        role: Role,
        /// Read the password (at least 12 characters) from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the accounts: name, role, created (never the password hashes).
    List,
    /// Remove an account; its sessions end at their next request.
    Remove { name: String },
    /// Give an account a new password (generated unless --password-stdin); its sessions end.
    Reset {
        name: String,
        /// Read the new password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change an account's role; it applies from the account's next request.
    Role {
        name: String,
        #[arg(long)]
        role: Role,
    },
    /// Print a one-time sign-in address for an account: valid 15 minutes, usable once.
    Link {
        name: String,
        /// The web app's address, as the browser reaches it.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
    },
}

#[derive(clap::Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    command: TokensCommand,
    #[command(flatten)]
    dir: DataDir,
}

#[derive(clap::Subcommand)]
enum TokensCommand {
    /// Make an API token for a program (`Authorization: Bearer <token>`); printed once, only
    /// its SHA-256 is kept.
    Create {
        /// viewer, analyst or admin (any role may read /metrics).
        #[arg(long)]
        role: Role,
        /// A label to recognise it by in `churn tokens list`.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List the tokens: id, role, label, created (never the tokens).
    List,
    /// Revoke a token by its id; a running server refuses it from its next use.
    Revoke { id: String },
}

pub fn run_users(args: &UsersArgs) -> Result<()> {
    users_with(
        args,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout(),
        Utc::now(),
    )
}

pub fn run_tokens(args: &TokensArgs) -> Result<()> {
    tokens_with(args, &mut std::io::stdout(), Utc::now())
}

/// The first line of `input`, without its line end.
fn read_password(input: &mut dyn BufRead) -> Result<Secret> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!(
            "no password on stdin: pipe one in, or leave out --password-stdin to get one generated"
        );
    }
    Ok(Secret::new(password.to_owned()))
}

/// The password to set: from stdin, or generated (and then shown once).
fn new_password(from_stdin: bool, input: &mut dyn BufRead) -> Result<(Secret, bool)> {
    if from_stdin {
        let password = read_password(input)?;
        users::check_password(&password)?;
        Ok((password, false))
    } else {
        Ok((Secret::generate_password(), true))
    }
}

fn users_with(
    args: &UsersArgs,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<()> {
    let dir = &args.dir.data_dir;
    match &args.command {
        UsersCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            users::check_name(name)?;
            let (password, generated) = new_password(*password_stdin, input)?;
            users::add(dir, name, *role, &password, now)?;
            writeln!(out, "added {name} ({role})")?;
            if generated {
                writeln!(
                    out,
                    "password (shown once, keep it now): {}",
                    password.expose()
                )?;
            }
        }
        UsersCommand::List => {
            writeln!(out, "{:<24} {:<8} created", "name", "role")?;
            for user in users::list(dir)? {
                let created = user.created.format("%Y-%m-%d %H:%M UTC");
                writeln!(out, "{:<24} {:<8} {created}", user.name, user.role.name())?;
            }
        }
        UsersCommand::Remove { name } => {
            users::remove(dir, name)?;
            writeln!(out, "removed {name}; their sessions end now")?;
        }
        UsersCommand::Reset {
            name,
            password_stdin,
        } => {
            let (password, generated) = new_password(*password_stdin, input)?;
            users::reset(dir, name, &password)?;
            writeln!(out, "new password for {name}; their sessions end now")?;
            if generated {
                writeln!(
                    out,
                    "password (shown once, keep it now): {}",
                    password.expose()
                )?;
            }
        }
        UsersCommand::Role { name, role } => {
            users::set_role(dir, name, *role)?;
            writeln!(out, "{name} is now {role}")?;
        }
        UsersCommand::Link { name, url } => {
            let token = links::create(dir, name, now)?;
            writeln!(out, "one-time sign-in for {name}, valid 15 minutes:")?;
            writeln!(out, "{}", links::sign_in_url(url, &token))?;
        }
    }
    Ok(())
}

fn tokens_with(args: &TokensArgs, out: &mut dyn Write, now: DateTime<Utc>) -> Result<()> {
    let dir = &args.dir.data_dir;
    match &args.command {
        TokensCommand::Create { role, name } => {
            let (record, token) = tokens::create(dir, *role, name, now)?;
            writeln!(
                out,
                "token {} ({role}) — shown once, keep it now:",
                record.id
            )?;
            writeln!(out, "{}", token.expose())?;
        }
        TokensCommand::List => {
            writeln!(out, "{:<14} {:<8} {:<20} label", "id", "role", "created")?;
            for t in tokens::list(dir)? {
                let created = t.created.format("%Y-%m-%d %H:%M UTC");
                writeln!(
                    out,
                    "{:<14} {:<8} {:<20} {}",
                    t.id,
                    t.role.name(),
                    created,
                    t.label
                )?;
            }
        }
        TokensCommand::Revoke { id } => {
            tokens::revoke(dir, id)?;
            writeln!(out, "revoked {id}")?;
        }
    }
    Ok(())
}

/// What `churn serve` says at start so that someone can sign in: with no account yet, an
/// `admin` with a random password (printed once) and a one-time link; with `--login-link`, a
/// fresh one-time admin link on every start.
pub fn announce_sign_in(data_dir: &Path, base_url: &str, login_link: bool) -> Result<()> {
    announce_with(
        data_dir,
        base_url,
        login_link,
        &mut std::io::stdout(),
        Utc::now(),
    )
}

fn announce_with(
    data_dir: &Path,
    base_url: &str,
    login_link: bool,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<()> {
    let accounts = users::list(data_dir)?;
    let first_start = accounts.is_empty();
    if first_start {
        let password = Secret::generate_password();
        users::add(data_dir, "admin", Role::Admin, &password, now)?;
        writeln!(
            out,
            "No accounts yet: created `admin` (role admin) in {}.\nIts password, shown once: {}",
            users::path(data_dir).display(),
            password.expose()
        )?;
    }
    if !(first_start || login_link) {
        return Ok(());
    }
    let admin = users::list(data_dir)?
        .into_iter()
        .filter(|u| u.role == Role::Admin)
        .min_by_key(|u| (u.name != "admin", u.created));
    match admin {
        Some(admin) => {
            let token = links::create(data_dir, &admin.name, now)?;
            writeln!(
                out,
                "Sign in as {} with this one-time address (15 minutes, once): {}",
                admin.name,
                links::sign_in_url(base_url, &token)
            )?;
        }
        None => tracing::warn!(
            "--login-link: there is no admin account to sign in as; add one with `churn users add NAME --role admin`"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Users {
        #[command(flatten)]
        args: UsersArgs,
    }

    #[derive(Parser)]
    struct Tokens {
        #[command(flatten)]
        args: TokensArgs,
    }

    fn users_cmd(dir: &Path, args: &[&str], stdin: &str) -> Result<String> {
        let dir = dir.to_str().unwrap();
        let argv = std::iter::once("users")
            .chain(args.iter().copied())
            .chain(["--data-dir", dir]);
        let parsed = Users::try_parse_from(argv)?;
        let mut out = Vec::new();
        users_with(&parsed.args, &mut stdin.as_bytes(), &mut out, Utc::now())?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn tokens_cmd(dir: &Path, args: &[&str]) -> Result<String> {
        let argv = std::iter::once("tokens")
            .chain(args.iter().copied())
            .chain(["--data-dir", dir.to_str().unwrap()]);
        let parsed = Tokens::try_parse_from(argv)?;
        let mut out = Vec::new();
        tokens_with(&parsed.args, &mut out, Utc::now())?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn users_are_added_listed_reset_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let out = users_cmd(
            d,
            &["add", "e2e", "--role", "admin", "--password-stdin"],
            "a fine password\n",
        )
        .unwrap();
        assert_eq!(out, "added e2e (admin)\n");
        let stored = users::list(d).unwrap().remove(0);
        assert!(users::password_matches(
            &stored.password_hash,
            "a fine password"
        ));

        let out = users_cmd(d, &["add", "ann", "--role", "viewer"], "").unwrap();
        let generated = out
            .lines()
            .nth(1)
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(generated.len(), 24, "{out}");
        let ann = users::list(d).unwrap().remove(1);
        assert!(users::password_matches(&ann.password_hash, &generated));

        let list = users_cmd(d, &["list"], "").unwrap();
        assert!(
            list.contains("e2e") && list.contains("admin") && list.contains("viewer"),
            "{list}"
        );
        assert!(
            !list.contains("argon2") && !list.contains(&generated),
            "{list}"
        );

        users_cmd(
            d,
            &["reset", "ann", "--password-stdin"],
            "another password\r\n",
        )
        .unwrap();
        let ann = users::list(d).unwrap().remove(1);
        assert!(users::password_matches(
            &ann.password_hash,
            "another password"
        ));
        users_cmd(d, &["role", "ann", "--role", "analyst"], "").unwrap();
        assert_eq!(users::list(d).unwrap()[1].role, Role::Analyst);
        users_cmd(d, &["remove", "ann"], "").unwrap();
        assert_eq!(users::list(d).unwrap().len(), 1);
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let short = users_cmd(
            d,
            &["add", "a", "--role", "viewer", "--password-stdin"],
            "short\n",
        );
        assert!(short.unwrap_err().to_string().contains("12 characters"));
        let empty = users_cmd(d, &["add", "a", "--role", "viewer", "--password-stdin"], "");
        assert!(empty
            .unwrap_err()
            .to_string()
            .contains("no password on stdin"));
        let name = users_cmd(d, &["add", "a b", "--role", "viewer"], "");
        assert!(name.unwrap_err().to_string().contains("not allowed"));
        assert!(users_cmd(d, &["add", "a", "--role", "root"], "").is_err());
        assert!(users_cmd(d, &["remove", "nobody"], "")
            .unwrap_err()
            .to_string()
            .contains("users list"));
        assert!(users_cmd(d, &["link", "nobody"], "").is_err());
        assert!(users::list(d).unwrap().is_empty(), "nothing was written");
    }

    #[test]
    fn a_link_is_printed_for_an_existing_user() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        users_cmd(d, &["add", "ann", "--role", "viewer"], "").unwrap();
        let out = users_cmd(d, &["link", "ann", "--url", "http://h:9/"], "").unwrap();
        let url = out.lines().nth(1).unwrap();
        let token = url.strip_prefix("http://h:9/login?once=").expect(url);
        assert_eq!(
            links::redeem(d, token, Utc::now()).unwrap().as_deref(),
            Some("ann")
        );
    }

    #[test]
    fn tokens_are_created_listed_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let out = tokens_cmd(d, &["create", "--role", "analyst", "--name", "nightly"]).unwrap();
        let token = out.lines().nth(1).unwrap();
        assert!(token.starts_with(tokens::PREFIX));
        let list = tokens_cmd(d, &["list"]).unwrap();
        assert!(
            list.contains("nightly") && list.contains("analyst"),
            "{list}"
        );
        assert!(!list.contains(token), "{list}");
        let id = tokens::list(d).unwrap()[0].id.clone();
        tokens_cmd(d, &["revoke", &id]).unwrap();
        assert!(tokens::list(d).unwrap().is_empty());
        assert!(tokens_cmd(d, &["revoke", &id]).is_err());
        assert!(tokens_cmd(d, &["create"]).is_err(), "--role is required");
    }

    #[test]
    fn the_first_start_creates_an_admin_and_prints_a_link_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut out = Vec::new();
        announce_with(d, "http://127.0.0.1:3000", false, &mut out, Utc::now()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let accounts = users::list(d).unwrap();
        assert_eq!(
            (accounts[0].name.as_str(), accounts[0].role),
            ("admin", Role::Admin)
        );
        let password = text.lines().nth(1).unwrap().rsplit(' ').next().unwrap();
        assert!(users::password_matches(
            &accounts[0].password_hash,
            password
        ));
        assert!(text.contains("http://127.0.0.1:3000/login?once="), "{text}");

        let mut again = Vec::new();
        announce_with(d, "http://x", false, &mut again, Utc::now()).unwrap();
        assert!(again.is_empty(), "nothing to say on a later start");
        assert_eq!(users::list(d).unwrap().len(), 1);
        announce_with(d, "http://x", true, &mut again, Utc::now()).unwrap();
        let text = String::from_utf8(again).unwrap();
        assert!(
            text.contains("Sign in as admin") && text.contains("http://x/login?once="),
            "{text}"
        );
        assert!(!text.contains("password"), "{text}");
    }
}
