//! One batch's whole way through the scorer, and the turns that keep batches in fetch order:
//! each enqueues its records only after the previous batch has, and stores its offsets only after
//! the previous batch has stored its own, though batches are scored in parallel.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use model::Lineup;
use rdkafka::consumer::Consumer;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::acks::AckingProducer;
use super::delivery::deliver;
use super::input::Incoming;
use super::prepare::prepare;
use super::rebalance::{InFlightGuard, ScorerConsumer};
use super::ScorerStats;
use crate::kafka::Topics;

/// A batch's places in the two orders batches keep: enqueueing records, storing offsets.
pub(super) struct Turns {
    /// Resolves when the previous batch has enqueued, or has ended without doing so.
    enqueue_after: oneshot::Receiver<()>,
    enqueued: oneshot::Sender<()>,
    /// The previous batch's stored-offset state, sent once it has stored its own offsets.
    store_after: oneshot::Receiver<HashSet<i32>>,
    stored: oneshot::Sender<HashSet<i32>>,
}

/// The receiving ends of the turns the next batch waits for.
pub(super) struct NextTurns {
    enqueue: oneshot::Receiver<()>,
    store: oneshot::Receiver<HashSet<i32>>,
}

impl Turns {
    /// The turns before the first batch: already taken.
    pub(super) fn first() -> NextTurns {
        let (enqueued, enqueue) = oneshot::channel();
        let (stored, store) = oneshot::channel();
        let _ = enqueued.send(());
        let _ = stored.send(HashSet::new());
        NextTurns { enqueue, store }
    }

    pub(super) fn after(previous: NextTurns) -> (Turns, NextTurns) {
        let (enqueued, enqueue) = oneshot::channel();
        let (stored, store) = oneshot::channel();
        let turns = Turns {
            enqueue_after: previous.enqueue,
            enqueued,
            store_after: previous.store,
            stored,
        };
        (turns, NextTurns { enqueue, store })
    }
}

/// One batch's whole way: scored on a worker thread, enqueued in its turn, acknowledged, and its
/// offsets stored in its turn.
pub(super) struct Batch {
    pub(super) incoming: Incoming,
    pub(super) lineup: Lineup,
    pub(super) topics: Topics,
    pub(super) stats: Arc<ScorerStats>,
    pub(super) producer: Arc<AckingProducer>,
    pub(super) consumer: Arc<ScorerConsumer>,
    pub(super) shutdown: CancellationToken,
    pub(super) turns: Turns,
    pub(super) _in_flight: InFlightGuard,
    /// Records whose predictions the broker had not acknowledged when the stop gave up on them.
    pub(super) unconfirmed: Arc<AtomicU64>,
}

impl Batch {
    pub(super) async fn run(self, scoring_slots: Arc<tokio::sync::Semaphore>) -> Result<()> {
        let Batch {
            incoming,
            lineup,
            topics,
            stats,
            producer,
            consumer,
            shutdown,
            turns,
            _in_flight,
            unconfirmed,
        } = self;
        // As many batches scored at once as there are cores: more threads would only take
        // turns, each with its own allocator heap.
        let slot = scoring_slots
            .acquire_owned()
            .await
            .context("scoring slots closed")?;
        let prepared = tokio::task::spawn_blocking({
            let (stats, input_topic) = (stats.clone(), topics.input.clone());
            move || {
                let _slot = slot;
                prepare(incoming, &lineup, &input_topic, &stats)
            }
        })
        .await
        .context("scoring a batch panicked outside the per-record isolation")?;
        let delivered = deliver(
            prepared,
            &producer,
            &topics,
            &stats,
            &shutdown,
            turns.enqueue_after,
            turns.enqueued,
        )
        .await;
        unconfirmed.fetch_add(delivered.unconfirmed() as u64, Ordering::Relaxed);
        if let Some(fatal) = delivered.fatal {
            anyhow::bail!(fatal);
        }
        // An earlier batch failed: storing this one's offsets could skip its records.
        let Ok(mut blocked) = turns.store_after.await else {
            return Ok(());
        };
        for (partition, offset) in delivered.safe_offsets(&mut blocked) {
            // Stores offset + 1, the next record to read.
            if let Err(e) = consumer.store_offset(&topics.input, partition, offset) {
                // A partition revoked meanwhile: its new owner re-reads; duplicates are allowed.
                tracing::debug!("store offset: {e}");
            }
        }
        let _ = turns.stored.send(blocked);
        Ok(())
    }
}
