//! The embedded broker requiring a login (SASL/SCRAM-SHA-512 over loopback, no TLS): one user,
//! `churn`, with a random password kept in a private properties file that clients pass with
//! `--kafka-properties`.
//!
//! Nisshi keeps users in its storage and creates them only through a broker that runs without
//! authentication, so the first start creates the user on a broker of its own, on a throwaway
//! port, and only then starts the real one (with `--authentication`); later starts reuse the file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use rand::distributions::{Alphanumeric, DistString};

use super::{free_port, nisshi_binary, BrokerOptions, EmbeddedBroker, Storage};
use crate::kafka::properties;

/// The one user of a secured embedded broker.
pub const USER: &str = "churn";
/// The credentials file's name in the data directory.
pub const CREDENTIALS_FILE: &str = "kafka.properties";
/// 32 letters and digits from the OS's generator: about 190 bits.
const PASSWORD_CHARS: usize = 32;

/// Where `start_secured` keeps the credentials for a broker with its data under `data_dir`.
pub fn credentials_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CREDENTIALS_FILE)
}

/// Starts the broker requiring a SASL/SCRAM-SHA-512 login. The first time (no credentials file,
/// or storage that was never secured) the user `churn` is created with a new random password (or
/// the file's, when only the storage is new) and the file is written, readable by its owner only.
pub fn start_secured(mut options: BrokerOptions, credentials: &Path) -> Result<EmbeddedBroker> {
    let Storage::Sqlite(dir) = &options.storage else {
        bail!("a secured broker keeps its users in durable storage: use SQLite storage");
    };
    let storage_is_new = !dir.join("nisshi.db").exists();
    let known_password = if credentials.exists() {
        Some(read_password(credentials)?)
    } else {
        None
    };
    match known_password {
        Some(_) if !storage_is_new => {}
        known => {
            let password = known.unwrap_or_else(|| {
                Alphanumeric.sample_string(&mut rand::rngs::OsRng, PASSWORD_CHARS)
            });
            create_user(&options, &password)?;
            if !credentials.exists() {
                write_credentials(credentials, &password)?;
            }
            tracing::info!(user = USER, file = %credentials.display(), "embedded broker login created");
        }
    }
    options.authentication = true;
    EmbeddedBroker::start(options)
}

/// The password in a credentials file this module wrote.
fn read_password(path: &Path) -> Result<String> {
    let all = properties::read_file(path)?;
    let value = |key: &str| {
        all.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    match (value("sasl.username"), value("sasl.password")) {
        (Some(user), Some(password)) if user == USER && !password.is_empty() => Ok(password),
        _ => bail!(
            "{} has no sasl.password for user {USER}: delete it, and the next secured start \
             makes a new login",
            path.display()
        ),
    }
}

/// Creates (or updates: SCRAM credentials are upserted) the user in the broker's storage.
fn create_user(options: &BrokerOptions, password: &str) -> Result<()> {
    // Without authentication, but on a port no client is configured for, and only as long as the
    // one request takes.
    let mut setup = EmbeddedBroker::start(BrokerOptions {
        port: free_port(),
        authentication: false,
        ..options.clone()
    })
    .context("starting the embedded broker to create its login")?;
    // Nisshi takes the password only as an argument, so for the moment this command runs it is
    // in the process list (/proc/PID/cmdline) for other local users to see. It runs once, for
    // well under a second, against a broker nobody else uses yet; the password is never logged.
    let output = Command::new(nisshi_binary()?)
        .args(["user", "create", USER, password, "--broker"])
        .arg(format!("tcp://{}", setup.address()))
        .args(["--mechanism", "scram512"])
        .stdin(Stdio::null())
        .output()
        .context("running `nisshi user create`")?;
    setup.stop();
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr).replace(password, "***");
        bail!(
            "creating the embedded broker's login failed ({}): {}",
            output.status,
            said.trim()
        );
    }
    Ok(())
}

/// Writes the credentials file, owner-only from its first byte (created 0600, then renamed into
/// place, so no reader ever sees a half-written or looser file).
fn write_credentials(path: &Path, password: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut text = format!(
        "# The embedded broker's login, written by `churn broker --secure` (or `churn serve \
         --secure-broker`).\n# Clients use it with --kafka-properties {}. Keep it private.\n",
        path.display()
    );
    for (key, value) in [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", USER),
        ("sasl.password", password),
    ] {
        text.push_str(&properties::format_line(key, value));
    }
    let temporary = path.with_extension("properties.tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_credentials_file_is_owner_only_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = credentials_path(&dir.path().join("new/dir"));
        write_credentials(&path, "p4ss=w:o#rd").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(read_password(&path).unwrap(), "p4ss=w:o#rd");
        let all = properties::read_file(&path).unwrap();
        assert!(all.contains(&("security.protocol".into(), "SASL_PLAINTEXT".into())));
        assert!(all.contains(&("sasl.mechanism".into(), "SCRAM-SHA-512".into())));
        // Written again over a stale temporary file and an existing one: still 0600.
        std::fs::write(path.with_extension("properties.tmp"), "stale").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_credentials(&path, "second").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(read_password(&path).unwrap(), "second");
    }

    #[test]
    fn a_credentials_file_without_our_login_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CREDENTIALS_FILE);
        for text in [
            "",
            "sasl.username=churn\n",
            "sasl.username=someone\nsasl.password=x\n",
            "sasl.username=churn\nsasl.password=\n",
        ] {
            std::fs::write(&path, text).unwrap();
            let error = read_password(&path).unwrap_err().to_string();
            assert!(error.contains("delete it"), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_secured_broker_needs_durable_storage() {
        let dir = tempfile::tempdir().unwrap();
        let error = start_secured(BrokerOptions::for_tests(), &dir.path().join("k.properties"))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("SQLite"), "{error}");
    }
}
