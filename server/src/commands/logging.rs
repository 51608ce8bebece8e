//! Logging for every command: where log lines go, and how panics are logged.

use std::sync::atomic::Ordering;

use anyhow::{Context, Result};

/// Logs to stderr with `filter` (the --log flag), and installs the panic hook.
pub fn init(filter: &str) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter)
                .with_context(|| format!("bad --log filter {filter:?}"))?,
        )
        .with_target(false)
        // Logs go to stderr; stdout carries results (reports, summaries).
        .with_writer(std::io::stderr)
        .init();
    // Panics go to the log cut short and at most one line a second: caught per-record panics
    // must not print an unbounded message (or a backtrace) for every bad record. The scorer logs
    // each such record itself, with its id.
    std::panic::set_hook(Box::new(|info| {
        use std::sync::atomic::{AtomicI64, AtomicU64};
        static LAST_SECOND: AtomicI64 = AtomicI64::new(i64::MIN);
        static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
        let second = chrono::Utc::now().timestamp();
        if LAST_SECOND.swap(second, Ordering::Relaxed) == second {
            SUPPRESSED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
        let message = server::supervisor::panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, suppressed, "panic: {}", model::record::truncate_utf8(message, 512));
    }));
    Ok(())
}
