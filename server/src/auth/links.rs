//! One-time login links, Jupyter-style (`/login?once=<token>`): valid 15 minutes, usable once.
//! Kept hashed with their expiry in `<data-dir>/login-links.json`, so `churn users link` works
//! against a running server, and a link is used up under the file's lock (once, even with
//! several servers on one data directory).

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{digest, files, users, AuthError, Secret};

pub const LIFETIME: TimeDelta = TimeDelta::minutes(15);

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LinkFile {
    pub links: Vec<LoginLink>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginLink {
    pub sha256: String,
    pub user: String,
    pub expires: DateTime<Utc>,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("login-links.json")
}

/// A link token for an existing user (expired links are dropped on the way).
pub fn create(data_dir: &Path, user: &str, now: DateTime<Utc>) -> Result<Secret, AuthError> {
    if users::list(data_dir)?.iter().all(|u| u.name != user) {
        return Err(AuthError::NoSuchUser(user.chars().take(80).collect()));
    }
    let token = Secret::random_hex("");
    files::update(&path(data_dir), |file: &mut LinkFile| {
        file.links.retain(|link| link.expires > now);
        file.links.push(LoginLink {
            sha256: digest(token.expose()),
            user: user.to_owned(),
            expires: now + LIFETIME,
        });
        Ok(())
    })?;
    Ok(token)
}

/// The user a link signs in, using it up; `None` when it is unknown, used or expired.
pub fn redeem(
    data_dir: &Path,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, AuthError> {
    let hash = digest(token);
    let live = |link: &LoginLink| link.sha256 == hash && link.expires > now;
    // A look without the lock first: a guess (the common case, and what a flood of requests
    // brings) costs one small read, no lock and no write.
    let links: LinkFile = files::read(&path(data_dir))?;
    if !links.links.iter().any(live) {
        return Ok(None);
    }
    files::update(&path(data_dir), |file: &mut LinkFile| {
        file.links.retain(|link| link.expires > now);
        let found = file.links.iter().position(|link| link.sha256 == hash);
        Ok(found.map(|index| file.links.remove(index).user))
    })
}

/// The address to open: `<base>/login?once=<token>`.
pub fn sign_in_url(base: &str, token: &Secret) -> String {
    format!(
        "{}/login?once={}",
        base.trim_end_matches('/'),
        token.expose()
    )
}

#[cfg(test)]
mod tests {
    use app::Role;

    use super::*;

    fn with_user() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let password = Secret::new("a long enough one".into());
        users::add(dir.path(), "ann", Role::Admin, &password, Utc::now()).unwrap();
        dir
    }

    #[test]
    fn a_link_works_once_and_only_in_time() {
        let dir = with_user();
        let now = Utc::now();
        let token = create(dir.path(), "ann", now).unwrap();
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(!text.contains(token.expose()), "stored hashed: {text}");
        assert_eq!(
            redeem(dir.path(), token.expose(), now).unwrap().as_deref(),
            Some("ann")
        );
        assert_eq!(
            redeem(dir.path(), token.expose(), now).unwrap(),
            None,
            "used"
        );

        let late = create(dir.path(), "ann", now).unwrap();
        let at_expiry = now + LIFETIME;
        assert_eq!(
            redeem(dir.path(), late.expose(), at_expiry).unwrap(),
            None,
            "expired"
        );
        let early = create(dir.path(), "ann", now).unwrap();
        let just_before = now + LIFETIME - TimeDelta::seconds(1);
        assert!(redeem(dir.path(), early.expose(), just_before)
            .unwrap()
            .is_some());
        assert_eq!(redeem(dir.path(), "", now).unwrap(), None);
    }

    #[test]
    fn links_are_for_existing_users_only() {
        let dir = with_user();
        assert!(matches!(
            create(dir.path(), "bob", Utc::now()),
            Err(AuthError::NoSuchUser(_))
        ));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(redeem(empty.path(), "abc", Utc::now()).unwrap(), None);
        assert!(!path(empty.path()).exists());
        let url = sign_in_url("http://127.0.0.1:3000/", &Secret::new("t0k".into()));
        assert_eq!(url, "http://127.0.0.1:3000/login?once=t0k");
    }
}
