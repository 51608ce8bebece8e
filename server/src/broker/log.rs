//! The embedded broker's log, bounded: its output is copied into the log file by two threads
//! (stdout, stderr), and a file past `MAX_LOG_BYTES` becomes `<name>.1` (replacing the one
//! before), so a month unattended holds at most twice the bound, whatever the broker writes.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

/// Where a log file is rotated. Nisshi writes a few lines per start and per client connection;
/// 16 MiB is weeks of that, and a glance at the newest lines stays quick.
pub const MAX_LOG_BYTES: u64 = 16 << 20;

/// A log file that rotates itself past `max_bytes`.
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
}

impl RotatingLog {
    /// Opens `path` for appending (rotating it first when it is already past `max_bytes`).
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self> {
        let open = || {
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening broker log {}", path.display()))
        };
        let file = open()?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut log = RotatingLog {
            path: path.to_owned(),
            file,
            written,
            max_bytes,
        };
        if log.written >= max_bytes {
            log.rotate()?;
        }
        Ok(log)
    }

    fn rotate(&mut self) -> Result<()> {
        let old = self.path.with_extension("log.1");
        std::fs::rename(&self.path, &old)
            .with_context(|| format!("rotating {}", self.path.display()))?;
        self.file = File::options()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening broker log {}", self.path.display()))?;
        self.written = 0;
        Ok(())
    }

    /// Appends one line (rotating first when it would pass the bound).
    pub fn write_line(&mut self, line: &[u8]) -> Result<()> {
        if self.written > 0 && self.written + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        // A single line longer than the bound is cut: the file stays within it.
        let line = &line[..line.len().min(self.max_bytes as usize)];
        self.file.write_all(line)?;
        self.written += line.len() as u64;
        Ok(())
    }
}

/// Copies `output` into `log` line by line on a thread of its own, until the broker closes it.
/// A write that fails (a full disk) drops the line: the broker must not block on its log.
pub fn copy_into(output: impl Read + Send + 'static, log: Arc<Mutex<RotatingLog>>, what: &str) {
    let name = format!("broker {what}");
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let mut reader = BufReader::new(output);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Ok(mut log) = log.lock() {
                        let _ = log.write_line(&line);
                    }
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("could not start copying the broker's {what}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_never_holds_more_than_twice_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nisshi.log");
        let mut log = RotatingLog::open(&path, 1000).unwrap();
        for i in 0..500 {
            log.write_line(format!("line {i} of the broker's log\n").as_bytes())
                .unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert!(size(&path) <= 1000, "{}", size(&path));
        let old = dir.path().join("nisshi.log.1");
        assert!(size(&old) <= 1000 && size(&old) > 900);
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.ends_with("line 499 of the broker's log\n"));
        // A huge line is cut to the bound.
        log.write_line(&vec![b'x'; 5000]).unwrap();
        assert_eq!(size(&path), 1000);
        // Opening a file already past the bound rotates it first.
        drop(log);
        std::fs::write(&path, vec![b'y'; 2000]).unwrap();
        let _log = RotatingLog::open(&path, 1000).unwrap();
        assert_eq!(size(&path), 0);
        assert_eq!(size(&old), 2000);
    }

    #[test]
    fn output_is_copied_line_by_line_until_it_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.log");
        let log = Arc::new(Mutex::new(RotatingLog::open(&path, 1 << 20).unwrap()));
        copy_into(&b"one\ntwo\nthree"[..], log.clone(), "stdout");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(&path).unwrap() != "one\ntwo\nthree" {
            assert!(std::time::Instant::now() < deadline, "copied");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
