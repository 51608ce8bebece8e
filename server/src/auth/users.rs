//! The accounts (`<data-dir>/users.json`): name, role, Argon2id password hash, creation time.

use std::path::{Path, PathBuf};

use app::Role;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{files, AuthError, Secret};

pub const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_CHARS: usize = 1024;

/// A hash of a password nobody knows, with the default cost: checked when the name is unknown,
/// so that an unknown name takes as long to refuse as a wrong password.
pub const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$rIXR6ClIKBeWYQy1pT95ag$6KsmxoUNLTuX7tbRxgxVBd7x7oRvD6OnHZsjnqEBdek";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UserFile {
    pub users: Vec<User>,
}

impl UserFile {
    pub fn find(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// PHC string (`$argon2id$v=19$...`): the salt is in it, so every new password (and every
    /// new user of an old name) has a different one.
    pub password_hash: String,
    pub created: DateTime<Utc>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .field("created", &self.created)
            .finish()
    }
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("users.json")
}

/// 1–64 characters of `A-Z a-z 0-9 . _ @ -`.
pub fn check_name(name: &str) -> Result<(), AuthError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    ok.then_some(())
        .ok_or_else(|| AuthError::BadName(name.chars().take(80).collect()))
}

pub fn check_password(password: &Secret) -> Result<(), AuthError> {
    let chars = password.expose().chars().count();
    (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS)
        .contains(&chars)
        .then_some(())
        .ok_or(AuthError::WeakPassword)
}

/// Argon2id with the argon2 crate's default cost (19 MiB, 2 passes).
fn hash_password(password: &Secret) -> Result<String, AuthError> {
    check_password(password)?;
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

pub fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

pub fn list(data_dir: &Path) -> Result<Vec<User>, AuthError> {
    Ok(files::read::<UserFile>(&path(data_dir))?.users)
}

pub fn add(
    data_dir: &Path,
    name: &str,
    role: Role,
    password: &Secret,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    check_name(name)?;
    let password_hash = hash_password(password)?;
    files::update(&path(data_dir), |file: &mut UserFile| {
        if file.find(name).is_some() {
            return Err(AuthError::UserExists(name.to_owned()));
        }
        file.users.push(User {
            name: name.to_owned(),
            role,
            password_hash,
            created: now,
        });
        Ok(())
    })
}

/// Removes the user: their sessions end at their next request.
pub fn remove(data_dir: &Path, name: &str) -> Result<(), AuthError> {
    change(data_dir, name, |file, index| {
        file.users.remove(index);
    })
}

/// A new password: the user's sessions end (the hash they were started with is gone).
pub fn reset(data_dir: &Path, name: &str, password: &Secret) -> Result<(), AuthError> {
    let password_hash = hash_password(password)?;
    change(data_dir, name, |file, index| {
        file.users[index].password_hash = password_hash;
    })
}

/// A new role, in effect at the user's next request.
pub fn set_role(data_dir: &Path, name: &str, role: Role) -> Result<(), AuthError> {
    change(data_dir, name, |file, index| file.users[index].role = role)
}

fn change(
    data_dir: &Path,
    name: &str,
    apply: impl FnOnce(&mut UserFile, usize),
) -> Result<(), AuthError> {
    files::update(&path(data_dir), |file: &mut UserFile| {
        let index = file
            .users
            .iter()
            .position(|u| u.name == name)
            .ok_or_else(|| AuthError::NoSuchUser(name.chars().take(80).collect()))?;
        apply(file, index);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn secret(text: &str) -> Secret {
        Secret::new(text.into())
    }

    #[test]
    fn names_are_short_and_plain() {
        for good in [
            "a",
            "ann.lee",
            "ann_lee@example.com",
            "A-9",
            &"x".repeat(64),
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "ann lee",
            "ann/lee",
            "../etc",
            "ann\n",
            "änn",
            "a:b",
            "<script>",
        ] {
            assert!(
                matches!(check_name(bad), Err(AuthError::BadName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn passwords_need_twelve_characters() {
        assert!(matches!(
            check_password(&secret("elevenchars")),
            Err(AuthError::WeakPassword)
        ));
        assert!(check_password(&secret("twelve chars")).is_ok());
        assert!(
            check_password(&secret("ééééééééééé")).is_err(),
            "characters, not bytes"
        );
        assert!(check_password(&secret(&"x".repeat(1025))).is_err());
        let generated = Secret::generate_password();
        assert!(check_password(&generated).is_ok());
        assert_ne!(generated.expose(), Secret::generate_password().expose());
    }

    #[test]
    fn the_file_holds_an_argon2id_hash_and_never_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        add(
            dir.path(),
            "ann",
            Role::Analyst,
            &secret("correct horse battery"),
            now,
        )
        .unwrap();
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(!text.contains("correct horse battery"), "{text}");
        assert!(text.contains("$argon2id$"), "{text}");
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let users = list(dir.path()).unwrap();
        assert_eq!(
            (users[0].name.as_str(), users[0].role),
            ("ann", Role::Analyst)
        );
        assert!(password_matches(
            &users[0].password_hash,
            "correct horse battery"
        ));
        assert!(!password_matches(
            &users[0].password_hash,
            "correct horse batterY"
        ));
        assert!(!password_matches("not a hash", "correct horse battery"));
        let debug = format!("{users:?}");
        assert!(!debug.contains("argon2"), "{debug}");
    }

    #[test]
    fn add_remove_reset_and_role_say_what_went_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let pw = secret("a long enough one");
        add(dir.path(), "ann", Role::Viewer, &pw, now).unwrap();
        assert!(matches!(
            add(dir.path(), "ann", Role::Admin, &pw, now),
            Err(AuthError::UserExists(_))
        ));
        assert!(matches!(
            add(dir.path(), "bob", Role::Admin, &secret("short"), now),
            Err(AuthError::WeakPassword)
        ));
        assert!(matches!(
            remove(dir.path(), "bob"),
            Err(AuthError::NoSuchUser(_))
        ));
        let before = list(dir.path()).unwrap()[0].password_hash.clone();
        reset(dir.path(), "ann", &secret("another long one")).unwrap();
        let after = list(dir.path()).unwrap()[0].clone();
        assert_ne!(before, after.password_hash);
        assert!(password_matches(&after.password_hash, "another long one"));
        set_role(dir.path(), "ann", Role::Admin).unwrap();
        assert_eq!(list(dir.path()).unwrap()[0].role, Role::Admin);
        remove(dir.path(), "ann").unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn the_decoy_costs_what_a_real_hash_costs() {
        let dir = tempfile::tempdir().unwrap();
        add(
            dir.path(),
            "ann",
            Role::Viewer,
            &secret("a long enough one"),
            Utc::now(),
        )
        .unwrap();
        let real = list(dir.path()).unwrap().remove(0).password_hash;
        let params = |hash: &str| {
            let hash = PasswordHash::new(hash).unwrap();
            (hash.algorithm.to_string(), hash.params.to_string())
        };
        assert_eq!(params(DECOY_HASH), params(&real));
    }
}
