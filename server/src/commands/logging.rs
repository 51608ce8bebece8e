//! Logging for every command: where log lines go, in which format (`--log-format`), with
//! secrets taken out (`redact`), and how panics are logged.

mod redact;

use std::io::Write;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use tracing_subscriber::fmt::MakeWriter;

pub use redact::{is_secret_key, redact};

/// How log lines are written: for people, or one JSON object per line for log shippers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: timestamp, level, target, fields (with the message).
    Json,
}

/// Logs to stderr with `filter` (the --log flag) in `format`, and installs the panic hook.
pub fn init(filter: &str, format: LogFormat) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("bad --log filter {filter:?}"))?;
    // Logs go to stderr; stdout carries results (reports, summaries).
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_target(false)
            .with_writer(Redacting::text(std::io::stderr))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_writer(Redacting::json(std::io::stderr))
            .init(),
    }
    install_panic_hook();
    Ok(())
}

/// Panics go to the log cut short and at most one line a second: caught per-record panics must
/// not print an unbounded message (or a backtrace) for every bad record. The scorer logs each
/// such record itself, with its id.
fn install_panic_hook() {
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
}

/// A log writer that redacts each event before it reaches `W`'s writer. The formatter writes one
/// whole event per `write`, so a secret is never split between two calls.
pub struct Redacting<W> {
    inner: W,
    json: bool,
}

impl<W> Redacting<W> {
    /// For text lines: every secret-looking value masked in place.
    pub fn text(inner: W) -> Self {
        Redacting { inner, json: false }
    }

    /// For JSON lines: the same, value by value, so that each line stays valid JSON.
    pub fn json(inner: W) -> Self {
        Redacting { inner, json: true }
    }
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for Redacting<W> {
    type Writer = RedactingWriter<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
            json: self.json,
        }
    }
}

pub struct RedactingWriter<W> {
    inner: W,
    json: bool,
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let redacted = if self.json {
            redact::redact_json_lines(&text)
        } else {
            redact(&text)
        };
        self.inner.write_all(redacted.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
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
            .with_writer(Redacting::text(move || SharedSink(sink.clone())))
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

    /// `--log-format json`: each event one JSON object per line with the timestamp, level,
    /// target and fields; secrets masked in messages and fields alike, and the line still JSON
    /// (a bare `"token":***` would not be).
    #[test]
    fn json_lines_parse_and_are_redacted() {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(Redacting::json(move || SharedSink(sink.clone())))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                user = "ann",
                records = 3,
                "connecting with password=hunter2 now"
            );
            tracing::warn!(
                token = 12345,
                secret = "s3cr3t",
                "kafka://churn:pa55@host:9092"
            );
            let properties = vec![("sasl.password".to_owned(), "xyzzy".to_owned())];
            tracing::error!(?properties, "quoted \"password\": \"plugh\" end");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        for secret in ["hunter2", "12345", "s3cr3t", "pa55", "xyzzy", "plugh"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        let first = &lines[0];
        assert_eq!(first["level"], "INFO");
        assert!(
            first["timestamp"].as_str().is_some_and(|t| t.contains('T')),
            "{first}"
        );
        assert!(
            first["target"]
                .as_str()
                .is_some_and(|t| t.contains("logging")),
            "{first}"
        );
        assert_eq!(
            first["fields"]["message"],
            "connecting with password=*** now"
        );
        assert_eq!(first["fields"]["user"], "ann");
        assert_eq!(first["fields"]["records"], 3);
        assert_eq!(lines[1]["fields"]["token"], "***");
        assert_eq!(lines[1]["fields"]["secret"], "***");
        assert_eq!(lines[1]["fields"]["message"], "kafka://churn:***@host:9092");
    }

    /// A line that is not JSON (a panic message written raw, say) is still redacted as text.
    #[test]
    fn json_redaction_falls_back_to_text() {
        let redacted = super::redact::redact_json_lines("{not json password=hunter2\n{\"a\":1}\n");
        assert_eq!(redacted, "{not json password=***\n{\"a\":1}\n");
        assert_eq!(
            super::redact::redact_json_lines("plain password=x"),
            "plain password=***"
        );
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
