//! Hostile input and hostile operators on the real broker and the real binaries: records at and
//! past every size limit, a broker that refuses what the scorer produces, a stream of every kind of
//! garbage with a scorer killed mid-stream, and nonsense on the command line.

mod command_line;
mod limits;
mod stream;

use std::path::Path;
use std::time::Duration;

use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use server::kafka::Kafka;

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(90);

/// Longest log line accepted: a line never carries unbounded input.
const MAX_LOG_LINE: usize = 4096;

/// A good record; `names` goes in as is (JSON-escaped).
fn record(names: &str, location: &str) -> String {
    serde_json::json!({
        "Names": names, "Age": 42, "Total_Purchase": 9000.5, "Account_Manager": 0, "Years": 5.1,
        "Num_Sites": 10, "Onboard_date": "2011-03-04 05:06:07", "Location": location, "Company": "X"
    })
    .to_string()
}

fn good(name: &str) -> String {
    record(name, "1 Main St, Springfield, IL 62701")
}

/// A record of exactly `size` bytes: a good one whose Names is padded (so too long to be valid
/// once it passes 300 characters).
fn padded(size: usize) -> String {
    let base = record("", "x").len();
    let text = record(&"x".repeat(size - base), "x");
    assert_eq!(text.len(), size);
    text
}

/// A producer for records up to 2 MB (librdkafka refuses more than 1 MB by default); each record
/// sent at once, in its own batch.
fn big_producer(kafka: &Kafka) -> FutureProducer {
    kafka
        .config(&[
            ("message.max.bytes", "2000000"),
            ("linger.ms", "0"),
            ("acks", "all"),
        ])
        .create()
        .unwrap()
}

fn key_text(m: &OwnedMessage) -> String {
    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned()
}

/// Stops a `churn` process with Ctrl-C and expects a clean exit within `timeout`.
fn stop_cleanly(process: &mut Running, what: &str, timeout: Duration, log: &Path) {
    signal(&process.0, "INT");
    let status = wait_exit(&mut process.0, timeout).unwrap_or_else(|| {
        panic!(
            "{what}: still running {timeout:?} after Ctrl-C\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    assert!(
        status.success(),
        "{what}: exit 0 on Ctrl-C, got {status}\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// No log line longer than `MAX_LOG_LINE`; returns the log.
fn assert_bounded_log(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap();
    if let Some(long) = text.lines().find(|l| l.len() > MAX_LOG_LINE) {
        panic!(
            "a log line of {} bytes: {}…",
            long.len(),
            &long[..long.char_indices().nth(300).map_or(long.len(), |(i, _)| i)]
        );
    }
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    eprintln!(
        "{}: {} lines, the longest {longest} bytes",
        log.file_name().unwrap().to_string_lossy(),
        text.lines().count()
    );
    text
}
