//! The look-inside commands (`churn topics`, `tail`, `groups`) and bounded disk (retention), on a
//! real broker process.

mod groups;
mod retention;
mod tail;
mod topics;

use std::process::Output;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::*;

/// `churn ARGS --brokers <the test's broker>`, run to its end.
fn churn_at(p: &Pipeline, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--brokers", &p.kafka.brokers]);
    churn(&all).output().unwrap()
}

/// stdout of a command that must succeed.
fn stdout_of(p: &Pipeline, args: &[&str]) -> String {
    let out = churn_at(p, args);
    assert!(
        out.status.success(),
        "churn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Sends one record to `partition` of `topic` and waits for its acknowledgement.
async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    key: &[u8],
    value: &[u8],
    headers: Option<OwnedHeaders>,
) {
    let mut record = FutureRecord::to(topic)
        .partition(partition)
        .key(key)
        .payload(value);
    if let Some(headers) = headers {
        record = record.headers(headers);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

fn header<'a>(key: &'a str, value: &'a [u8]) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value),
    }
}
