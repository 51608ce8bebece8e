//! The churn pipeline's I/O side: the embedded broker, Kafka clients, the replay producer, the
//! scorer service, CSV files, model files, and the web server. The CLI in main.rs wires them up.

pub mod analyze;
pub mod args;
pub mod batch;
pub mod broker;
pub mod csv_io;
pub mod dashboard;
pub mod hub;
pub mod kafka;
pub mod metrics;
pub mod model_file;
pub mod models;
pub mod replay;
pub mod scorer;
pub mod supervisor;
pub mod web;

/// A stop signal shared by every long-running task: flips to true on Ctrl-C or SIGTERM, or when
/// the returned sender is used. A second Ctrl-C or SIGTERM exits at once (code 130).
pub fn shutdown_signal() -> (
    std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    tokio::sync::watch::Receiver<bool>,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let tx = std::sync::Arc::new(tx);
    let stop = tx.clone();
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
        let _ = tx.send(true);
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
    (stop, rx)
}
