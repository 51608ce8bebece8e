//! Supervision of a command's long-running tasks: none may die unnoticed.
//!
//! Every task is spawned by name. One that ends before the stop was asked for (an error, a
//! panic, or simply returning) is logged at error level, recorded in [`Health`] (so `/readyz`
//! answers 503 with the reason), and stops the whole command, which then exits non-zero: an
//! orchestrator restarts it, rather than it looking up while answering nothing.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long the tasks get to finish after the stop (in-flight batches, final commits, closing
/// their Kafka clients): less than `shutdown::STOP_DEADLINE`, which the process as a whole keeps.
pub const STOP_GRACE: Duration = Duration::from_secs(7);

use crate::health::Health;

/// What a caught panic said.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// How a supervised task ended: its number, and its result or the message of its panic.
type Ended = (u64, std::result::Result<Result<()>, String>);

/// A command's tasks and its stop switch.
pub struct Supervisor {
    tracker: TaskTracker,
    ended_tx: mpsc::UnboundedSender<Ended>,
    ended: mpsc::UnboundedReceiver<Ended>,
    /// The tasks still running, by number: their names (for the reports) and abort handles (for
    /// those that outlive the grace period).
    running: HashMap<u64, (&'static str, AbortHandle)>,
    next_id: u64,
    pub health: Arc<Health>,
    stop: CancellationToken,
}

impl Supervisor {
    /// Supervises tasks stopped by `stop` (Ctrl-C, SIGTERM, or a failure).
    pub fn new(stop: CancellationToken) -> Self {
        let (ended_tx, ended) = mpsc::unbounded_channel();
        Supervisor {
            tracker: TaskTracker::new(),
            ended_tx,
            ended,
            running: HashMap::new(),
            next_id: 0,
            health: Arc::default(),
            stop,
        }
    }

    /// The stop signal, for tasks to watch.
    pub fn shutdown(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs a task that is meant to last until the stop. Its panic is caught and reported by name.
    pub fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<()>> + Send + 'static,
    ) {
        let ended = self.ended_tx.clone();
        let id = self.next_id;
        self.next_id += 1;
        let handle = self.tracker.spawn(async move {
            let outcome = AssertUnwindSafe(task)
                .catch_unwind()
                .await
                .map_err(|panic| {
                    model::record::truncate_utf8(panic_message(panic.as_ref()), 512).into_owned()
                });
            let _ = ended.send((id, outcome));
        });
        self.running.insert(id, (name, handle.abort_handle()));
    }

    /// Waits for the stop or the first failure, then stops every task and waits for them (at most
    /// `STOP_GRACE`). Ok only when the stop was asked for and every task ended cleanly.
    pub async fn run(mut self) -> Result<()> {
        self.tracker.close();
        if self.running.is_empty() {
            return Ok(());
        }
        let first_end = tokio::select! {
            biased;
            _ = self.stop.cancelled() => None,
            ended = self.ended.recv() => ended,
        };
        // A task that ends before the stop ends the process: a half-running pipeline is worse
        // than a restart. One that ends because the stop was just asked for is no failure: it can
        // be seen before the stop signal is (tasks watch the same signal).
        let stop_asked = self.stop.is_cancelled();
        let mut failed = first_end.and_then(|ended| self.failure(ended, stop_asked));
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, self.ended.recv()).await {
                Ok(Some(ended)) => {
                    if let Some(failure) = self.failure(ended, true) {
                        failed.get_or_insert(failure);
                    }
                }
                // Unreachable while `self` holds a sender; kept total rather than panicking.
                Ok(None) => break,
                Err(_) => {
                    let left: Vec<&str> = self.running.values().map(|(name, _)| *name).collect();
                    tracing::error!(tasks = ?left, grace_s = STOP_GRACE.as_secs(), "tasks did not stop in time; aborting them");
                    for (_, task) in self.running.values() {
                        task.abort();
                    }
                    failed.get_or_insert(format!(
                        "{} did not stop within {} s",
                        left.join(", "),
                        STOP_GRACE.as_secs()
                    ));
                    break;
                }
            }
        }
        // Every task has reported (or was aborted): wait for them to be dropped too, so the
        // clients they own are closed before the command returns.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.tracker.wait()).await;
        match failed {
            Some(failure) => Err(anyhow!(failure)),
            None => Ok(()),
        }
    }

    /// What a finished task's end means: `None` for a clean end after the stop.
    fn failure(&mut self, (id, outcome): Ended, stopping: bool) -> Option<String> {
        let name = self.running.remove(&id).map_or("a task", |(name, _)| name);
        let failure = match outcome {
            Ok(Ok(())) if stopping => return None,
            Ok(Ok(())) => format!("{name} ended unexpectedly"),
            Ok(Err(e)) => format!("{name} failed: {e:#}"),
            Err(panic) => format!("{name} panicked: {panic}"),
        };
        tracing::error!("{failure}; stopping");
        self.health.record_failure(name, failure.clone());
        Some(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervisor() -> Supervisor {
        Supervisor::new(CancellationToken::new())
    }

    async fn until_stopped(stop: CancellationToken) -> Result<()> {
        stop.cancelled().await;
        Ok(())
    }

    #[test]
    fn a_caught_panic_says_what_it_said() {
        let text = std::panic::catch_unwind(|| panic!("index {} out of range", 3)).unwrap_err();
        assert_eq!(panic_message(&*text), "index 3 out of range");
        let fixed = std::panic::catch_unwind(|| panic!("fixed")).unwrap_err();
        assert_eq!(panic_message(&*fixed), "fixed");
    }

    #[tokio::test]
    async fn a_panicking_task_stops_the_others_and_is_reported_with_its_message() {
        let mut s = supervisor();
        s.spawn("steady", until_stopped(s.shutdown()));
        s.spawn("replies reader", async { panic!("poisoned lock") });
        let health = s.health.clone();
        let error = s.run().await.unwrap_err().to_string();
        assert!(
            error.contains("replies reader panicked: poisoned lock"),
            "{error}"
        );
        assert_eq!(
            health.failures(),
            vec!["replies reader panicked: poisoned lock".to_owned()]
        );
    }

    #[tokio::test]
    async fn a_supervisor_without_tasks_returns_at_once() {
        supervisor().run().await.expect("nothing to wait for");
    }

    #[tokio::test]
    async fn a_task_that_returns_early_is_a_failure_and_a_clean_stop_is_not() {
        let mut s = supervisor();
        s.spawn("scorer", async { Ok(()) });
        assert!(s
            .run()
            .await
            .unwrap_err()
            .to_string()
            .contains("scorer ended unexpectedly"));

        let stop = CancellationToken::new();
        let mut s = Supervisor::new(stop.clone());
        s.spawn("steady", until_stopped(s.shutdown()));
        stop.cancel();
        s.run().await.expect("a clean stop");
    }

    #[tokio::test]
    async fn a_task_ending_because_of_the_stop_is_no_failure_whichever_is_seen_first() {
        for _ in 0..200 {
            let stop = CancellationToken::new();
            let mut s = Supervisor::new(stop.clone());
            for _ in 0..4 {
                s.spawn("steady", until_stopped(s.shutdown()));
            }
            let stop_from_elsewhere = stop.clone();
            tokio::spawn(async move { stop_from_elsewhere.cancel() });
            s.run().await.expect("a clean stop");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_the_stop_is_named_and_aborted_after_the_grace_period() {
        let stop = CancellationToken::new();
        let mut s = Supervisor::new(stop.clone());
        s.spawn("stubborn", std::future::pending::<Result<()>>());
        stop.cancel();
        let error = s.run().await.unwrap_err().to_string();
        assert!(error.contains("stubborn did not stop"), "{error}");
    }
}
