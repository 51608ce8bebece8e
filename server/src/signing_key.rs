//! Model signing keys on disk: `churn model keygen` makes one, the commands given
//! `--model-signing-key FILE` read it. The file holds the key as hex text; its bytes are never
//! logged or printed.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use model::integrity::MIN_KEY_BYTES;
use model::SigningKey;
use rand::RngCore;

/// Reads a key file, warning when other users may read it too.
pub fn read(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the model signing key {}: make one with `churn model keygen {}`",
            path.display(),
            path.display()
        )
    })?;
    if readable_by_others(path) {
        tracing::warn!(
            path = %path.display(),
            "the model signing key can be read by other users: restrict it with `chmod 600`"
        );
    }
    SigningKey::from_hex(&text).with_context(|| format!("model signing key {}", path.display()))
}

/// Writes a fresh random key (32 bytes, as hex) to a new file only its owner can read. An
/// existing file is never replaced: the models signed with it would no longer verify.
pub fn generate(path: &Path) -> Result<()> {
    let mut bytes = vec![0u8; MIN_KEY_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = SigningKey::from_bytes(bytes).expect("the key has the minimum length");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| {
        format!(
            "cannot create {}: it exists already (a key is never replaced) or its directory is missing",
            path.display()
        )
    })?;
    writeln!(file, "{}", key.to_hex())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Whether users other than the owner may read the file (always false where there are no
/// Unix permissions).
fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_private_random_and_readable_back() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.key"), dir.path().join("b.key"));
        generate(&a).unwrap();
        generate(&b).unwrap();
        let text = std::fs::read_to_string(&a).unwrap();
        assert_eq!(text.trim().len(), 2 * MIN_KEY_BYTES);
        assert!(!readable_by_others(&a));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&a).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_ne!(read(&a).unwrap(), read(&b).unwrap());
    }

    #[test]
    fn an_existing_key_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.key");
        generate(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let error = generate(&path).unwrap_err();
        assert!(format!("{error:#}").contains("exists already"), "{error:#}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn short_missing_or_garbled_keys_are_refused_without_quoting_them() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.key");
        std::fs::write(&short, "ab".repeat(MIN_KEY_BYTES - 1)).unwrap();
        let error = format!("{:#}", read(&short).unwrap_err());
        assert!(
            error.contains("31 bytes") && error.contains("keygen"),
            "{error}"
        );
        assert!(!error.contains("abab"), "the key is not quoted: {error}");

        let garbled = dir.path().join("garbled.key");
        std::fs::write(&garbled, "secret-password-secret-password-secret-password!").unwrap();
        let error = format!("{:#}", read(&garbled).unwrap_err());
        assert!(error.contains("not hex"), "{error}");
        assert!(!error.contains("secret"), "the key is not quoted: {error}");

        let missing = format!("{:#}", read(&dir.path().join("none")).unwrap_err());
        assert!(missing.contains("churn model keygen"), "{missing}");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_noticed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("open.key");
        generate(&path).unwrap();
        for (mode, open) in [(0o600, false), (0o640, true), (0o604, true), (0o400, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(readable_by_others(&path), open, "{mode:o}");
        }
        // Still usable: a warning, not a refusal.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read(&path).is_ok());
    }
}
