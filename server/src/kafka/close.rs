//! Closing Kafka clients and their blocking calls without letting a silent broker hold up a stop.

use std::time::Duration;

/// How long a stopping task waits for a Kafka client to close. Closing a group consumer takes a
/// round trip to the broker (leaving the group hands its partitions to the others at once); with
/// the broker away librdkafka waits up to the session timeout, which would hold the stop up past
/// `STOP_GRACE` for nothing: there is nothing left to deliver or commit.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Drops a Kafka client (closing it) on a thread of its own and waits at most `CLOSE_WAIT` for
/// that, so that a stop is never held up by a broker that does not answer.
pub async fn close_within(client: impl Send + 'static, what: &'static str) {
    if on_own_thread(move || drop(client), CLOSE_WAIT)
        .await
        .is_none()
    {
        tracing::warn!(
            wait_s = CLOSE_WAIT.as_secs(),
            "{what}: the broker did not answer the close; stopping without it"
        );
    }
}

/// Runs blocking client work (a close, a synchronous commit) on a thread of its own and waits
/// at most `wait` for it: `None` when it did not finish in time (it goes on by itself). Not the
/// runtime's blocking pool: the runtime waits for that pool at exit, however long it takes.
pub async fn on_own_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
    wait: Duration,
) -> Option<T> {
    let (finished, done) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-blocking".into())
        .spawn(move || {
            let _ = finished.send(work());
        });
    match spawned {
        Ok(_) => tokio::time::timeout(wait, done)
            .await
            .ok()
            .and_then(Result::ok),
        Err(e) => {
            tracing::warn!("no thread for blocking Kafka work ({e})");
            None
        }
    }
}
