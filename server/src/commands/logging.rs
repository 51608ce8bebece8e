//! Logging for every command: where log lines go, with secrets taken out (`redact`), and how
//! panics are logged.

mod redact;

use std::io::Write;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use tracing_subscriber::fmt::MakeWriter;

use redact::redact;

/// Logs to stderr with `filter` (the --log flag), and installs the panic hook.
pub fn init(filter: &str) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter)
                .with_context(|| format!("bad --log filter {filter:?}"))?,
        )
        .with_target(false)
        // Logs go to stderr; stdout carries results (reports, summaries).
        .with_writer(Redacting(std::io::stderr))
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

/// A log writer that redacts each event before it reaches `W`'s writer. The formatter writes one
/// whole event per `write`, so a secret is never split between two calls.
pub struct Redacting<W>(pub W);

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for Redacting<W> {
    type Writer = RedactingWriter<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

pub struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::Redacting;

    /// Events logged through the redacting writer: fields, messages and Debug values with secrets
    /// come out masked, the rest as written.
    #[test]
    fn the_log_writer_redacts_every_event() {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Redacting(move || SharedSink(sink.clone())))
            .with_ansi(true)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(password = "hunter2", user = "ann", "signing in");
            tracing::warn!("connecting to kafka://churn:s3cr3t@host:9092 with Bearer abc.def.ghi");
            let properties = vec![("sasl.password".to_owned(), "pa55".to_owned())];
            tracing::error!(?properties, "bad config");
            tracing::info!(token = %"churn_0123456789abcdef0123456789abcdef", "issued");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        for secret in [
            "hunter2",
            "s3cr3t",
            "abc.def.ghi",
            "pa55",
            "0123456789abcdef",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        for kept in [
            "ann",
            "signing in",
            "kafka://churn:",
            "@host:9092",
            "bad config",
        ] {
            assert!(text.contains(kept), "{kept} missing from {text}");
        }
    }

    struct SharedSink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
