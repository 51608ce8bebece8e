//! Counting and logging the messages a reader skips, without flooding the log.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// Bytes of a skipped message shown in the log: enough to recognise it, never a whole message.
pub(super) const EXCERPT_BYTES: usize = 120;

/// The start of a message for a log line, as text.
pub fn excerpt(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(EXCERPT_BYTES + 4)]);
    model::record::truncate_utf8(&text, EXCERPT_BYTES).into_owned()
}

/// How often a reader logs the messages it skips: the first at once, then at most one line per
/// interval with the count since, so a topic full of garbage cannot flood the log.
pub(super) const SKIP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts the messages a reader skips for one reason, and logs them without flooding.
pub struct SkipLog {
    what: String,
    /// Skipped since this log was made.
    pub total: u64,
    /// Skipped since the last line logged.
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl SkipLog {
    pub fn new(what: impl Into<String>) -> Self {
        SkipLog {
            what: what.into(),
            total: 0,
            unlogged: 0,
            logged_at: None,
        }
    }

    /// Counts one skipped message and logs it (why, and its start) unless a line was logged
    /// less than SKIP_LOG_EVERY ago.
    pub fn skip(&mut self, why: &dyn Display, payload: &[u8]) {
        if let Some(skipped) = self.count(Instant::now()) {
            // Cut: a parser's error quotes the bad value, which may be a megabyte.
            let why = model::record::truncate_utf8(&why.to_string(), 300).into_owned();
            tracing::warn!(
                skipped,
                total = self.total,
                "{}: {why}; message starts {:?}",
                self.what,
                excerpt(payload)
            );
        }
    }

    /// Counts one; returns how many were skipped since the last line when one is due now.
    pub(super) fn count(&mut self, now: Instant) -> Option<u64> {
        self.total += 1;
        self.unlogged += 1;
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < SKIP_LOG_EVERY)
        {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}
