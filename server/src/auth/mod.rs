//! Who may see what (issue 13, "Access"): accounts with roles, API tokens, browser sessions,
//! one-time login links, a trusted sign-on proxy's header, and the check on every request.
//!
//! | concept | file |
//! | --- | --- |
//! | the private files (0600, atomic, re-read on change) | `files.rs` |
//! | users and their password hashes (`users.json`) | `users.rs` |
//! | API tokens (`tokens.json`, SHA-256 only) | `tokens.rs` |
//! | one-time login links (`login-links.json`) | `links.rs` |
//! | browser sessions (in memory) | `sessions.rs` |
//! | failed sign-ins per client and name; one password check at a time | `limits.rs` |
//! | which role each route needs | `policy.rs` |
//! | the check on every request (identity, then policy) | `check.rs` |
//! | `POST /login`, `POST /logout`, `/login?once=` | `login.rs` |

pub mod check;
pub mod files;
pub mod limits;
pub mod links;
pub mod login;
pub mod policy;
pub mod sessions;
#[cfg(test)]
mod tests;
pub mod tokens;
pub mod users;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::{CurrentUser, Role};
use axum::http::HeaderName;
use chrono::{DateTime, Utc};
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

use files::Watched;
use limits::{LoginLimits, PasswordGate};
use sessions::Sessions;
use tokens::TokenFile;
use users::{User, UserFile};

/// Why an account, token or link could not be changed or used. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read or write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not readable ({reason}): fix it or move it away", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the user name {0:?} is not allowed: use 1 to 64 letters, digits, '.', '_', '@' or '-'"
    )]
    BadName(String),
    #[error(
        "a password needs at least {} characters (and at most 1024)",
        users::MIN_PASSWORD_CHARS
    )]
    WeakPassword,
    #[error("the user {0} already exists: `churn users reset {0}` gives them a new password")]
    UserExists(String),
    #[error("there is no user {0:?}: `churn users list` shows who there is")]
    NoSuchUser(String),
    #[error("there is no API token with id {0:?}: `churn tokens list` shows them")]
    NoSuchToken(String),
    #[error("a token label holds at most 100 printable characters")]
    BadLabel,
    #[error("could not hash the password: {0}")]
    Hash(String),
}

impl AuthError {
    fn io(path: &Path, source: std::io::Error) -> AuthError {
        AuthError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// A password, API token, session id or link token in memory: shown once on purpose
/// (`expose`), never by `Debug`.
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// 24 characters from 54 that cannot be mistaken for each other (about 138 bits).
    pub fn generate_password() -> Secret {
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut rng = rand::rngs::OsRng;
        Secret(
            (0..24)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect(),
        )
    }

    /// `prefix` and 32 random bytes in hex (256 bits).
    pub fn random_hex(prefix: &str) -> Secret {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Secret(format!("{prefix}{}", hex::encode(bytes)))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// SHA-256 in hex: what is stored of a token or link, and what sessions are looked up by.
pub fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The wall clock, injectable so that tests can expire sessions and links without waiting.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The access settings of a web server (`churn serve` flags, see `commands/serve.rs`).
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// Where users.json, tokens.json and login-links.json live.
    pub data_dir: PathBuf,
    /// A session ends this long after sign-in however busy it is (and after 2 h idle).
    pub session_lifetime: Duration,
    /// Mark the session cookie `Secure`: the server runs HTTPS, or a TLS proxy is in front.
    pub secure_cookies: bool,
    /// A company's single sign-on in front: whose header names the user.
    pub proxy: Option<ProxyOptions>,
    /// `/metrics` has its own listener (`--metrics-addr`): the main port answers 404 for it.
    pub metrics_elsewhere: bool,
}

impl AuthOptions {
    pub fn new(data_dir: PathBuf) -> AuthOptions {
        AuthOptions {
            data_dir,
            session_lifetime: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            proxy: None,
            metrics_elsewhere: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// e.g. `X-Forwarded-User`.
    pub header: HeaderName,
    /// Only these peers may name the user; from anyone else the header is ignored.
    pub trusted: Vec<IpAddr>,
    /// The role of a user the proxy names who has no account here; `None`: refused (403).
    pub default_role: Option<Role>,
}

/// Why a sign-in with name and password failed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Either the name or the password: the answer does not say which.
    #[error("wrong user name or password")]
    Wrong,
    #[error("too many failed sign-ins: try again in {} s", .0.as_secs())]
    TooMany(Duration),
    #[error("too many sign-ins at once: try again in a moment")]
    Busy,
    /// The data directory could not be read or written; the detail goes to the log only.
    #[error("signing in failed on the server")]
    Server(#[source] AuthError),
}

/// The access state of a web server: the files (re-read when they change), the sessions, and
/// the limits on sign-ins.
pub struct Auth {
    pub(crate) options: AuthOptions,
    site_root: PathBuf,
    clock: Arc<dyn Clock>,
    users: Watched<UserFile>,
    tokens: Watched<TokenFile>,
    sessions: Sessions,
    limits: LoginLimits,
    gate: PasswordGate,
    /// Link sign-ins in progress at most (each a blocking file read).
    link_turns: tokio::sync::Semaphore,
    /// When a header from an untrusted peer was last warned about.
    proxy_warned: Mutex<Option<DateTime<Utc>>>,
}

impl Auth {
    pub fn new(options: AuthOptions, site_root: &Path) -> Auth {
        Auth::with_clock(options, site_root, Arc::new(SystemClock))
    }

    pub fn with_clock(options: AuthOptions, site_root: &Path, clock: Arc<dyn Clock>) -> Auth {
        let lifetime =
            chrono::TimeDelta::from_std(options.session_lifetime).unwrap_or(chrono::TimeDelta::MAX);
        Auth {
            users: Watched::new(users::path(&options.data_dir)),
            tokens: Watched::new(tokens::path(&options.data_dir)),
            sessions: Sessions::new(lifetime, sessions::MAX_SESSIONS),
            limits: LoginLimits::default(),
            gate: PasswordGate::default(),
            link_turns: tokio::sync::Semaphore::new(8),
            site_root: site_root.to_owned(),
            proxy_warned: Mutex::new(None),
            clock,
            options,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn options(&self) -> &AuthOptions {
        &self.options
    }

    /// The user as users.json says now.
    fn user(&self, name: &str) -> Option<User> {
        self.users.current(self.now()).find(name).cloned()
    }

    /// Checks name and password (one check at a time, limited per client and name) and starts
    /// a session. An unknown name costs the same hash as a wrong password.
    pub async fn sign_in(
        &self,
        name: &str,
        password: Secret,
        peer: Option<IpAddr>,
    ) -> Result<Secret, SignInError> {
        let now = self.now();
        let keys = limits::keys(name, peer);
        if let Some(wait) = self.limits.retry_after(&keys, now) {
            return Err(SignInError::TooMany(wait));
        }
        let user = self.user(name);
        let hash = user
            .as_ref()
            .map_or(users::DECOY_HASH, |u| u.password_hash.as_str())
            .to_owned();
        let matches = self
            .gate
            .run(move || users::password_matches(&hash, password.expose()))
            .await
            .ok_or(SignInError::Busy)?;
        match user {
            Some(user) if matches => Ok(self.sessions.start(&user, now)),
            _ => {
                self.limits.failed(&keys, now);
                // An unknown name is not logged: it is often a password typed in the wrong field.
                match &user {
                    Some(user) => {
                        tracing::info!(user = %user.name, peer = ?peer, "a sign-in failed: wrong password")
                    }
                    None => tracing::info!(peer = ?peer, "a sign-in failed: unknown user name"),
                }
                Err(SignInError::Wrong)
            }
        }
    }

    /// Uses a one-time login link: a session when it is valid. Used-up, expired and unknown
    /// links are all `Wrong`, and count against the client's address like wrong passwords, so
    /// links cannot be guessed in bulk.
    pub async fn sign_in_with_link(
        &self,
        token: &str,
        peer: Option<IpAddr>,
    ) -> Result<Secret, SignInError> {
        let now = self.now();
        let keys = limits::keys("one-time link", peer);
        if let Some(wait) = self.limits.retry_after(&keys, now) {
            return Err(SignInError::TooMany(wait));
        }
        // File reads (and a locked write for a real link) off the runtime's threads, a few at a
        // time: a burst of guesses cannot fill the blocking pool the password checks run on.
        let _turn = self
            .link_turns
            .try_acquire()
            .map_err(|_| SignInError::Busy)?;
        let (dir, token) = (self.options.data_dir.clone(), token.to_owned());
        let redeemed = tokio::task::spawn_blocking(move || links::redeem(&dir, &token, now))
            .await
            .map_err(|_| SignInError::Busy)?
            .map_err(SignInError::Server)?;
        match redeemed.and_then(|name| self.user(&name)) {
            Some(user) => Ok(self.sessions.start(&user, now)),
            None => {
                self.limits.failed(&keys, now);
                tracing::info!(peer = ?peer, "a one-time sign-in link was refused: used, expired or unknown");
                Err(SignInError::Wrong)
            }
        }
    }

    /// The user of a live session, with their current role; a session whose user was removed
    /// or got a new password ends here.
    pub fn session_user(&self, session_id: &str) -> Option<CurrentUser> {
        let session = self.sessions.resume(session_id, self.now())?;
        match self.user(&session.user) {
            Some(user) if session.belongs_to(&user) => Some(CurrentUser {
                name: user.name,
                role: user.role,
            }),
            _ => {
                self.sessions.end(session_id);
                None
            }
        }
    }

    pub fn sign_out(&self, session_id: &str) {
        self.sessions.end(session_id);
    }

    /// The holder of an API token, `None` for a token that is not (or no longer) valid.
    pub fn token_user(&self, token: &str) -> Option<CurrentUser> {
        self.tokens
            .current(self.now())
            .find(token)
            .map(|t| CurrentUser {
                name: format!("token:{}", t.id),
                role: t.role,
            })
    }

    /// The role of a user the sign-on proxy names: theirs, or the default for strangers.
    fn proxy_user_role(&self, name: &str) -> Option<Role> {
        self.user(name).map(|u| u.role).or_else(|| {
            self.options
                .proxy
                .as_ref()
                .and_then(|proxy| proxy.default_role)
        })
    }

    /// Whether to log the header of an untrusted peer now: once a minute at most, so a client
    /// sending it on every request cannot flood the log.
    fn should_warn_about_proxy_header(&self) -> bool {
        let now = self.now();
        let mut last = self.proxy_warned.lock().expect("warn lock");
        if last.is_some_and(|at| now - at < chrono::TimeDelta::minutes(1)) {
            return false;
        }
        *last = Some(now);
        true
    }
}
