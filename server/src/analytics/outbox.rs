//! Publishing closed windows to the stats topic: the outbox that keeps them until a publish
//! succeeds, its retry pauses, and the publish itself.

use std::collections::btree_map::Entry as BTreeEntry;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use model::analytics::WindowPartial;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Most closed windows kept while the stats topic cannot be written. At the bound the processor
/// stops reading (so no more windows close) until a publish succeeds: nothing is lost and
/// nothing committed past. 10,000 is over an hour of 10-s windows for 27 partitions, at about
/// 2 KB each about 20 MB.
pub(super) const MAX_UNPUBLISHED: usize = 10_000;
/// How long one publish may take before it counts as failed (librdkafka's own delivery timeout
/// is five minutes, during which the processor would read nothing).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Waits after a failed publish: the first, doubled after each further failure up to the last.
pub(super) const RETRY_FIRST: Duration = Duration::from_millis(500);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(30);

/// Closed windows not yet on the stats topic, the newest revision of each. They stay until a
/// publish of them all succeeds, retried with a growing pause, so a failed publish loses no
/// window and the commit (made only once nothing waits here) never moves past one.
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) windows: BTreeMap<(i64, i32), WindowPartial>,
    pub(super) failures: u32,
    retry_at: Option<Instant>,
}

impl Outbox {
    pub(super) fn add(&mut self, windows: impl IntoIterator<Item = WindowPartial>) {
        for window in windows {
            match self
                .windows
                .entry((window.window_start_ms, window.partition))
            {
                BTreeEntry::Occupied(mut e) if e.get().revision < window.revision => {
                    e.insert(window);
                }
                BTreeEntry::Occupied(_) => {}
                BTreeEntry::Vacant(e) => {
                    e.insert(window);
                }
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    pub(super) fn is_full(&self) -> bool {
        self.windows.len() >= MAX_UNPUBLISHED
    }

    /// Whether to publish now: windows wait and no failure is being waited out.
    pub(super) fn due(&self, now: Instant) -> bool {
        !self.is_empty() && self.retry_at.is_none_or(|at| now >= at)
    }

    pub(super) fn published(&mut self) {
        self.windows.clear();
        self.failures = 0;
        self.retry_at = None;
    }

    /// Notes a failed publish; returns the wait before the next attempt.
    pub(super) fn failed(&mut self, now: Instant) -> Duration {
        let wait = RETRY_FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(RETRY_MAX);
        self.failures += 1;
        self.retry_at = Some(now + wait);
        wait
    }
}

/// Delivers every window in the outbox, or fails (within PUBLISH_TIMEOUT).
pub(super) async fn publish(producer: &FutureProducer, topic: &str, outbox: &Outbox) -> Result<()> {
    let payloads: Vec<(String, Vec<u8>)> = outbox
        .windows
        .values()
        .map(|w| (w.key(), serde_json::to_vec(w).expect("windows serialize")))
        .collect();
    let sends = payloads.iter().map(|(key, payload)| {
        producer.send(
            FutureRecord::to(topic)
                .key(key.as_str())
                .payload(payload.as_slice()),
            PUBLISH_TIMEOUT,
        )
    });
    let results = tokio::time::timeout(PUBLISH_TIMEOUT, futures::future::join_all(sends))
        .await
        .map_err(|_| anyhow!("no delivery within {PUBLISH_TIMEOUT:?}"))?;
    for result in results {
        result
            .map_err(|(e, _)| e)
            .context("delivering window stats")?;
    }
    Ok(())
}
