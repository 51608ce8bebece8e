//! The stop: Ctrl-C or SIGTERM cancels one token that every long-running task watches, at any
//! phase of a command, start-up included; the process is gone within `STOP_DEADLINE` of it.
//!
//! The signals are watched on a thread of their own, with a runtime of its own: the command's
//! runtime may be busy (a worker blocked in a Kafka client's close while the broker is away) or
//! already shutting down, and a second Ctrl-C must still end the process at once.

use std::future::Future;
use std::process::Child;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long after Ctrl-C or SIGTERM the process may take to exit. The tasks get less
/// (`supervisor::STOP_GRACE`); past this the process exits anyway, non-zero.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// The exit code after a second Ctrl-C or SIGTERM (as a shell reports a process ended by SIGINT).
pub const EXIT_AT_ONCE: i32 = 130;
/// The exit code when the stop outlived `STOP_DEADLINE`.
pub const EXIT_STOP_OVERRAN: i32 = 124;

/// A start-up phase (connecting, creating topics, reading the models topic) cut short by the
/// stop: a clean stop, not a failure (`main` exits 0 for it).
#[derive(Debug, thiserror::Error)]
#[error("stopped during start-up")]
pub struct StoppedDuringStartUp;

static STOP: OnceLock<CancellationToken> = OnceLock::new();

/// Child processes to end with this one (the embedded broker): an exit at once, or past the
/// deadline, skips destructors, and an orphaned broker would keep its port and data dir.
static CHILDREN: Mutex<Vec<Weak<Mutex<Child>>>> = Mutex::new(Vec::new());

/// Whether this process watches Ctrl-C and SIGTERM itself (it called `on_signals`).
pub fn watching_signals() -> bool {
    STOP.get().is_some()
}

/// Whether the process has been asked to stop; false in a program that never called
/// `on_signals` (a test, a benchmark). For blocking waits that cannot select on the token.
pub fn stop_requested() -> bool {
    STOP.get().is_some_and(CancellationToken::is_cancelled)
}

/// Ends `child` when this process exits at once or overruns its stop (a dropped child is
/// not kept alive by this).
pub fn end_with_process(child: &Arc<Mutex<Child>>) {
    let mut children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    children.retain(|c| c.strong_count() > 0);
    children.push(Arc::downgrade(child));
}

/// Kills every child registered with `end_with_process` that is still alive.
pub fn kill_children() {
    let children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    for child in children.iter().filter_map(Weak::upgrade) {
        // The lock is held for an instant by a watcher (`EmbeddedBroker::exited`), or for the
        // whole stop by whoever is stopping the child: a few tries, then it is left to that.
        for _ in 0..20 {
            if let Ok(mut child) = child.try_lock() {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

fn exit_now(code: i32) -> ! {
    kill_children();
    std::process::exit(code)
}

/// The process's stop token, cancelled on Ctrl-C or SIGTERM (or by whoever else holds it, e.g.
/// the supervisor when a task fails). The first call starts watching the signals; later calls
/// return the same token, so a command asks for it first thing and its start-up is covered too.
/// After the first signal, a second one exits at once (code 130), and so does the process still
/// running `STOP_DEADLINE` later (code 124).
pub fn on_signals() -> CancellationToken {
    STOP.get_or_init(|| {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let watching = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || watch_signals(token));
        if let Err(e) = watching {
            tracing::warn!("cannot watch Ctrl-C and SIGTERM ({e}): stop the process with kill -9");
        }
        stop
    })
    .clone()
}

/// Runs a start-up phase unless the stop comes first; then fails with `StoppedDuringStartUp`
/// (whatever the phase was waiting for is abandoned with it).
pub async fn during_start_up<T>(
    stop: &CancellationToken,
    phase: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match stop.run_until_cancelled(phase).await {
        Some(result) => result,
        None => Err(StoppedDuringStartUp.into()),
    }
}

/// What `main` makes of a command's outcome: a stop during start-up is a clean stop.
pub fn clean_stop_is_ok(outcome: anyhow::Result<()>) -> anyhow::Result<()> {
    match outcome {
        Err(e) if e.is::<StoppedDuringStartUp>() => {
            tracing::info!("stopped during start-up");
            Ok(())
        }
        other => other,
    }
}

fn watch_signals(stop: CancellationToken) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!("cannot watch Ctrl-C and SIGTERM ({e}): stop the process with kill -9");
            return;
        }
    };
    runtime.block_on(async move {
        let mut signals = match Signals::new() {
            Ok(signals) => signals,
            Err(e) => {
                tracing::warn!("cannot watch Ctrl-C and SIGTERM ({e}): stop the process with kill -9");
                return;
            }
        };
        tokio::select! {
            _ = signals.next() => {
                tracing::info!("stopping: finishing in-flight work, at most {} s (Ctrl-C again to exit at once)", STOP_DEADLINE.as_secs());
            }
            // Stopped from inside (a task failed): still bounded, but no second signal needed.
            _ = stop.cancelled() => {}
        }
        stop.cancel();
        tokio::select! {
            _ = signals.next() => {
                eprintln!("stopped at once: work in flight is re-read on the next start");
                exit_now(EXIT_AT_ONCE);
            }
            _ = tokio::time::sleep(STOP_DEADLINE) => {
                eprintln!(
                    "the stop took longer than {} s: exiting anyway; work in flight is re-read on \
                     the next start",
                    STOP_DEADLINE.as_secs()
                );
                exit_now(EXIT_STOP_OVERRAN);
            }
        }
    });
}

/// Ctrl-C (SIGINT), SIGTERM and SIGHUP as one stream of stop requests. SIGHUP (the terminal or
/// SSH session closed) would otherwise end the process at once, without its last commits, and
/// leave the embedded broker (its own process group, so not hung up) running.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Self> {
        Ok(Signals {})
    }

    #[cfg(unix)]
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_start_up_phase_is_cut_short_by_the_stop_and_that_is_a_clean_stop() {
        let stop = CancellationToken::new();
        let waiting = {
            let stop = stop.clone();
            tokio::spawn(async move {
                during_start_up(&stop, std::future::pending::<anyhow::Result<()>>()).await
            })
        };
        stop.cancel();
        let outcome = waiting.await.unwrap();
        assert!(outcome.as_ref().unwrap_err().is::<StoppedDuringStartUp>());
        clean_stop_is_ok(outcome).expect("a stop during start-up exits 0");
    }

    #[tokio::test]
    async fn a_phase_that_ends_first_keeps_its_result_and_a_failure_stays_a_failure() {
        let stop = CancellationToken::new();
        assert_eq!(during_start_up(&stop, async { Ok(7) }).await.unwrap(), 7);
        let failed = during_start_up(&stop, async { Err::<(), _>(anyhow::anyhow!("refused")) });
        let outcome = clean_stop_is_ok(failed.await);
        assert_eq!(outcome.unwrap_err().to_string(), "refused");
        // Already stopped: the phase does not even start.
        stop.cancel();
        let outcome = during_start_up(&stop, async { Ok(1) }).await;
        assert!(outcome.unwrap_err().is::<StoppedDuringStartUp>());
    }
}
