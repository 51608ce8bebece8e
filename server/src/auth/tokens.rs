//! API tokens for programs (`<data-dir>/tokens.json`): only each token's SHA-256 is kept, with
//! an id, a role, a label and when it was made. Sent as `Authorization: Bearer <token>`.

use std::path::{Path, PathBuf};

use app::Role;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{digest, files, AuthError, Secret};

/// What every token starts with, so that a leaked one is recognisable (and greppable).
pub const PREFIX: &str = "churn_";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TokenFile {
    pub tokens: Vec<ApiToken>,
}

impl TokenFile {
    /// The record of a token as presented, by its hash.
    pub fn find(&self, token: &str) -> Option<&ApiToken> {
        let hash = digest(token);
        self.tokens.iter().find(|t| t.sha256 == hash)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub sha256: String,
    pub role: Role,
    pub label: String,
    pub created: DateTime<Utc>,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("tokens.json")
}

/// A new token: the record, and the token itself, to be shown once.
pub fn create(
    data_dir: &Path,
    role: Role,
    label: &str,
    now: DateTime<Utc>,
) -> Result<(ApiToken, Secret), AuthError> {
    if label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(AuthError::BadLabel);
    }
    let token = Secret::random_hex(PREFIX);
    let mut id = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let record = ApiToken {
        id: hex::encode(id),
        sha256: digest(token.expose()),
        role,
        label: label.to_owned(),
        created: now,
    };
    files::update(&path(data_dir), |file: &mut TokenFile| {
        file.tokens.push(record.clone());
        Ok(())
    })?;
    Ok((record, token))
}

pub fn list(data_dir: &Path) -> Result<Vec<ApiToken>, AuthError> {
    Ok(files::read::<TokenFile>(&path(data_dir))?.tokens)
}

/// The token stops working at its next use (a running server re-reads the file).
pub fn revoke(data_dir: &Path, id: &str) -> Result<(), AuthError> {
    files::update(&path(data_dir), |file: &mut TokenFile| {
        let before = file.tokens.len();
        file.tokens.retain(|t| t.id != id);
        if file.tokens.len() == before {
            return Err(AuthError::NoSuchToken(id.chars().take(80).collect()));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn only_the_hash_is_stored_and_the_token_is_found_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let (record, token) = create(dir.path(), Role::Analyst, "nightly job", Utc::now()).unwrap();
        assert!(token.expose().starts_with(PREFIX));
        assert_eq!(token.expose().len(), PREFIX.len() + 64);
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(!text.contains(token.expose()), "{text}");
        assert!(!text.contains(&token.expose()[PREFIX.len()..]), "{text}");
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let file: TokenFile = files::read(&path(dir.path())).unwrap();
        assert_eq!(file.find(token.expose()).unwrap().id, record.id);
        assert!(file
            .find(&token.expose()[..token.expose().len() - 1])
            .is_none());
        assert!(file.find("").is_none());
        assert!(!format!("{token:?}").contains(PREFIX));
    }

    #[test]
    fn revoking_removes_exactly_that_token() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = create(dir.path(), Role::Viewer, "", Utc::now()).unwrap();
        let (b, _) = create(dir.path(), Role::Admin, "b", Utc::now()).unwrap();
        assert_ne!(a.id, b.id);
        revoke(dir.path(), &a.id).unwrap();
        let left: Vec<_> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(left, vec![b.id]);
        assert!(matches!(
            revoke(dir.path(), &a.id),
            Err(AuthError::NoSuchToken(_))
        ));
        assert!(matches!(
            create(dir.path(), Role::Viewer, "bad\nlabel", Utc::now()),
            Err(AuthError::BadLabel)
        ));
    }
}
