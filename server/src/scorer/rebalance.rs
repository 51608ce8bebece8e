//! Rebalances: the scorer's consumer context. Before partitions are given up, the batches in
//! flight are finished and the stored offsets committed synchronously, so the new owner starts
//! where this one stopped; and whether partitions are held is reported for readiness.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

use crate::health::Health;

/// How long a rebalance waits for this scorer's batches in flight before giving its partitions
/// up anyway (their records are then re-read by the new owner: duplicates, never a loss).
/// Under full load a batch is acknowledged within ~100 ms.
const REVOKE_WAIT: Duration = Duration::from_secs(10);

/// The scorer's consumer: its context finishes the batches in flight before a revoke.
pub(super) type ScorerConsumer = StreamConsumer<ScorerContext>;

/// Batches between fetch and stored offsets; a rebalance waits until there are none.
#[derive(Default)]
pub(super) struct InFlight {
    batches: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    pub(super) fn start(self: &Arc<Self>) -> InFlightGuard {
        *self.batches.lock().expect("in-flight count") += 1;
        InFlightGuard(self.clone())
    }

    /// Waits until no batch is in flight; false when `timeout` passed first.
    fn wait_idle(&self, timeout: Duration) -> bool {
        let batches = self.batches.lock().expect("in-flight count");
        let (_batches, result) = self
            .idle
            .wait_timeout_while(batches, timeout, |n| *n > 0)
            .expect("in-flight count");
        !result.timed_out()
    }
}

/// Counts a batch out of flight however its task ends, a panic included.
pub(super) struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut batches = self
            .0
            .batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *batches -= 1;
        self.0.idle.notify_all();
    }
}

/// Tracks assignment for readiness, and finishes in-flight work before partitions are revoked.
pub(super) struct ScorerContext {
    pub(super) health: Arc<Health>,
    pub(super) in_flight: Arc<InFlight>,
}

impl ClientContext for ScorerContext {}

impl ConsumerContext for ScorerContext {
    /// Runs on the consumer loop's thread, inside `recv`, so no new batch starts meanwhile.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(partitions) = rebalance else {
            return;
        };
        if partitions.count() == 0 {
            return;
        }
        let finish = || {
            if !self.in_flight.wait_idle(REVOKE_WAIT) {
                tracing::warn!(wait_s = REVOKE_WAIT.as_secs(), "batches still in flight at a rebalance: their records will be scored again by the new owner");
            }
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => tracing::info!(partitions = partitions.count(), "committed before giving partitions up"),
                // Nothing stored since the last commit.
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => tracing::warn!("commit before a rebalance failed, the new owner re-reads from the last commit: {e}"),
            }
        };
        // This blocks a runtime worker; `block_in_place` hands the worker's queued tasks (among
        // them the batch spawned just before, which no other worker may steal) to another thread,
        // so the batches being waited for can finish. Only a multi-threaded runtime can.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(finish),
            _ => finish(),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(
                    partitions = partitions.count(),
                    "scorer assigned partitions"
                );
            }
            Rebalance::Revoke(_) => tracing::info!("scorer partitions revoked"),
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
        let held = consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false);
        self.health.set_assigned(held);
    }
}
