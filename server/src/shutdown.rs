//! The stop: Ctrl-C or SIGTERM cancels one token that every long-running task watches.

use tokio_util::sync::CancellationToken;

/// A stop token cancelled on Ctrl-C or SIGTERM (or by whoever else holds it, e.g. the supervisor
/// when a task fails). A second Ctrl-C or SIGTERM exits at once (code 130).
pub fn on_signals() -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    // Not supervised on purpose: it ends the process itself, and must outlive a stuck stop.
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        #[cfg(unix)]
        let terminate = term.recv();
        #[cfg(not(unix))]
        let terminate = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate => {}
        }
        tracing::info!("stopping: finishing in-flight work (Ctrl-C again to exit at once)");
        token.cancel();
        let again = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = term.recv();
        #[cfg(not(unix))]
        let terminate = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = again => {}
            _ = terminate => {}
        }
        eprintln!("stopped at once: work in flight is re-read on the next start");
        std::process::exit(130);
    });
    stop
}
