//! The private JSON files under the data directory (users, API tokens, login links): written
//! owner-only (0600) and atomically (temp file + rename) under a lock, so the CLI and a running
//! server can both change them; read by the server again whenever one changes on disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::AuthError;

/// How often a running server looks at a file's modification time, at most.
const RECHECK: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// The file's contents, or the default (empty) value when there is no file yet.
pub fn read<T: DeserializeOwned + Default>(path: &Path) -> Result<T, AuthError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AuthError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(AuthError::io(path, e)),
    }
}

/// Reads, changes and writes the file back while holding its lock (`<file>.lock`), so two
/// processes changing it at once do not lose each other's change. `change` decides: its error
/// leaves the file as it was.
pub fn update<T, R>(
    path: &Path,
    change: impl FnOnce(&mut T) -> Result<R, AuthError>,
) -> Result<R, AuthError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let dir = parent_of(path);
    std::fs::create_dir_all(dir).map_err(|e| AuthError::io(dir, e))?;
    let lock_path = path.with_extension("json.lock");
    let lock = open_private(&lock_path, false)?;
    lock.lock().map_err(|e| AuthError::io(&lock_path, e))?;
    let mut data = read(path)?;
    let result = change(&mut data)?;
    write_atomically(path, &data)?;
    Ok(result)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn open_private(path: &Path, create_new: bool) -> Result<File, AuthError> {
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(false);
    }
    options.open(path).map_err(|e| AuthError::io(path, e))
}

/// A reader sees the old file or the new one, never half of one; the new one is created 0600
/// before anything is written to it.
fn write_atomically<T: Serialize>(path: &Path, data: &T) -> Result<(), AuthError> {
    let mut suffix = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = parent_of(path).join(format!(".{name}.{}.tmp", hex::encode(suffix)));
    let result = (|| {
        let mut file = open_private(&temp, true)?;
        let bytes = serde_json::to_vec_pretty(data).expect("plain data serializes");
        file.write_all(&bytes)
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| AuthError::io(&temp, e))?;
        std::fs::rename(&temp, path).map_err(|e| AuthError::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// What identifies one version of a file: an atomic replace makes a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: meta.ino(),
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// A file as the running server knows it: read again when it changed on disk, looked at no
/// more than once a second. A file that cannot be read keeps the last good contents (and says
/// so once per change); a file that was deleted is empty.
pub struct Watched<T> {
    path: PathBuf,
    state: Mutex<WatchState<T>>,
}

struct WatchState<T> {
    /// `None` until the first look.
    stamp: Option<Option<Stamp>>,
    checked: Option<DateTime<Utc>>,
    value: Arc<T>,
}

impl<T: DeserializeOwned + Default> Watched<T> {
    pub fn new(path: PathBuf) -> Watched<T> {
        Watched {
            path,
            state: Mutex::new(WatchState {
                stamp: None,
                checked: None,
                value: Arc::new(T::default()),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The contents as of at most a second before `now`.
    pub fn current(&self, now: DateTime<Utc>) -> Arc<T> {
        let mut state = self.state.lock().expect("file state lock");
        let fresh = state
            .checked
            .is_some_and(|checked| now >= checked && now - checked < RECHECK);
        if fresh {
            return state.value.clone();
        }
        state.checked = Some(now);
        let stamp = stamp_of(&self.path);
        if state.stamp == Some(stamp) {
            return state.value.clone();
        }
        match stamp.map_or_else(|| Ok(T::default()), |_| read(&self.path)) {
            Ok(value) => state.value = Arc::new(value),
            Err(e) => tracing::warn!("{e}; keeping what was read before"),
        }
        state.stamp = Some(stamp);
        state.value.clone()
    }

    /// Looks at the file again on the next read (after this process changed it).
    pub fn changed(&self) {
        self.state.lock().expect("file state lock").checked = None;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Names(Vec<String>);

    fn add(path: &Path, name: &str) {
        update(path, |names: &mut Names| {
            names.0.push(name.into());
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn files_are_owner_only_and_leave_no_temp_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("names.json");
        add(&path, "ann");
        // A file someone made world-readable becomes owner-only at the next write.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        add(&path, "bob");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            read::<Names>(&path).unwrap(),
            Names(vec!["ann".into(), "bob".into()])
        );
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.iter().all(|n| !n.ends_with(".tmp")), "{left:?}");
    }

    #[test]
    fn a_refused_change_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("names.json");
        add(&path, "ann");
        let refused = update(&path, |names: &mut Names| -> Result<(), AuthError> {
            names.0.clear();
            Err(AuthError::NoSuchUser("x".into()))
        });
        assert!(refused.is_err());
        assert_eq!(read::<Names>(&path).unwrap().0, vec!["ann".to_owned()]);
    }

    #[test]
    fn concurrent_changes_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("names.json");
        std::thread::scope(|s| {
            for i in 0..8 {
                let path = &path;
                s.spawn(move || add(path, &format!("n{i}")));
            }
        });
        assert_eq!(read::<Names>(&path).unwrap().0.len(), 8);
    }

    #[test]
    fn a_watched_file_is_read_again_after_a_change_at_most_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("names.json");
        let watched = Watched::<Names>::new(path.clone());
        let t0 = Utc::now();
        assert_eq!(*watched.current(t0), Names::default(), "no file is empty");
        add(&path, "ann");
        assert_eq!(*watched.current(t0), Names::default(), "not looked at yet");
        let t1 = t0 + chrono::TimeDelta::milliseconds(1100);
        assert_eq!(watched.current(t1).0, vec!["ann".to_owned()]);
        std::fs::write(&path, "{ not json").unwrap();
        let t2 = t1 + chrono::TimeDelta::seconds(2);
        assert_eq!(
            watched.current(t2).0,
            vec!["ann".to_owned()],
            "keeps the last good"
        );
        std::fs::remove_file(&path).unwrap();
        let t3 = t2 + chrono::TimeDelta::seconds(2);
        assert_eq!(*watched.current(t3), Names::default(), "deleted is empty");
        add(&path, "bob");
        watched.changed();
        assert_eq!(watched.current(t3).0, vec!["bob".to_owned()]);
    }
}
