//! Shared set-up for the integration tests: a real broker process, a model, generated data, the
//! `churn` binary as a child process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::synth::{generate_csv, generate_customers, GenerateOptions};
use model::ChurnModel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::{Message, Offset, TopicPartitionList};
use server::broker::{BrokerOptions, EmbeddedBroker};
use server::kafka::Kafka;
use tokio_util::sync::CancellationToken;

pub struct Pipeline {
    pub broker: EmbeddedBroker,
    pub kafka: Kafka,
    pub dir: tempfile::TempDir,
}

/// A failed assertion must not leave the test binary hanging: unwinding drops the test's broker
/// first, then the runtime drops the clients still running, and librdkafka's consumer close waits
/// for a broker that will never answer again. So the first panic on a test's own thread (the
/// harness names it after the test) is reported, this process's child processes (brokers, `churn`
/// binaries) are killed, and the binary exits with a failure; its other tests' brokers are killed
/// too. A panic on a runtime or helper thread is left to whoever catches it (the scorer isolates
/// each record, the supervisor each task): a caught panic there is behaviour under test.
fn fail_fast_on_panic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let on_test_thread = thread
                .name()
                .is_some_and(|n| !n.starts_with("tokio-") && n != "kafka-blocking");
            if !on_test_thread {
                return default(info);
            }
            use std::io::Write;
            // Straight to the process's stderr: the test harness's output capture would be lost.
            let _ = writeln!(
                std::io::stderr(),
                "\n{info}\n{}",
                std::backtrace::Backtrace::force_capture()
            );
            let _ = std::process::Command::new("pkill")
                .args(["-9", "-P", &std::process::id().to_string()])
                .status();
            std::process::exit(101);
        }));
    });
}

/// A fresh in-memory broker on a free port with the pipeline's topics.
pub async fn pipeline() -> Pipeline {
    pipeline_with(|_| BrokerOptions::for_tests()).await
}

/// The same with broker options of the test's choosing, given the test's own directory.
pub async fn pipeline_with(options: impl FnOnce(&std::path::Path) -> BrokerOptions) -> Pipeline {
    start_pipeline(options, |_| {}).await
}

/// Starts the broker, lets `configure` adjust the clients' settings, then creates the topics.
async fn start_pipeline(
    options: impl FnOnce(&std::path::Path) -> BrokerOptions,
    configure: impl FnOnce(&mut Kafka),
) -> Pipeline {
    fail_fast_on_panic();
    let dir = tempfile::tempdir().unwrap();
    let broker = EmbeddedBroker::start(options(dir.path())).expect("broker starts");
    let mut kafka = Kafka::at(broker.address());
    configure(&mut kafka);
    kafka
        .check_reachable(Duration::from_secs(10))
        .await
        .expect("broker reachable");
    kafka
        .ensure_pipeline_topics()
        .await
        .expect("topics created");
    Pipeline { broker, kafka, dir }
}

impl Pipeline {
    /// Writes a generated CSV of `rows` customers and returns its path.
    pub fn csv(&self, rows: usize, seed: u64) -> PathBuf {
        let path = self.dir.path().join(format!("customers-{seed}.csv"));
        std::fs::write(
            &path,
            generate_csv(&GenerateOptions {
                rows,
                seed,
                messy_fraction: 0.0,
            }),
        )
        .unwrap();
        path
    }
}

pub fn trained_model(seed: u64) -> Arc<ChurnModel> {
    let customers = generate_customers(&GenerateOptions {
        rows: 600,
        seed,
        messy_fraction: 0.0,
    });
    Arc::new(model::train::train(&customers, &Default::default(), "test".into(), |_| {}).unwrap())
}

/// Saves a model trained with `seed` as `model.json` in the test's directory; returns its path.
pub fn model_path(p: &Pipeline, seed: u64) -> String {
    let path = p.dir.path().join("model.json");
    server::model_store::save(&trained_model(seed), &path).unwrap();
    path.to_string_lossy().into_owned()
}

/// Reads a topic from the beginning (all partitions, no group) until `done` says so or time is up.
pub fn read_topic(
    kafka: &Kafka,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = kafka
        .consumer_config("test-reader", &[("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..kafka.topics.partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + timeout;
    let mut messages = Vec::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => messages.push(m.detach()),
            // Caught up with the topic: only now is it worth asking whether we are done.
            _ => {
                if done(&messages) {
                    break;
                }
            }
        }
    }
    messages
}

/// Predictions by record id (the last one wins; duplicates are allowed by design).
pub fn predictions_by_id(messages: &[OwnedMessage]) -> HashMap<String, model::Prediction> {
    messages
        .iter()
        .map(|m| {
            let p: model::Prediction = serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert_eq!(
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                Some(p.id.clone()),
                "predictions are keyed by record id"
            );
            (p.id.clone(), p)
        })
        .collect()
}

pub fn header(message: &OwnedMessage, key: &str) -> Option<String> {
    message.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
    })
}

/// A stop switch for a background task.
pub fn stop_switch() -> (CancellationToken, CancellationToken) {
    let stop = CancellationToken::new();
    (stop.clone(), stop)
}

/// Waits until `condition` holds, polling; panics with `what` on timeout.
pub async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh in-memory broker whose pipeline topics have `partitions` partitions each (its `kafka`
/// says so, so `read_topic` reads them all).
pub async fn pipeline_with_partitions(partitions: i32) -> Pipeline {
    start_pipeline(
        |_| BrokerOptions::for_tests(),
        |kafka| kafka.topics.partitions = partitions,
    )
    .await
}

/// The `churn` binary with logs at info level, uncoloured, and no stdin.
pub fn churn(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_churn"));
    command
        .args(args)
        .env("CHURN_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    command
}

/// `churn score` with `model` in `group`, logging at `level` to `log` (appended).
pub fn score_process(p: &Pipeline, model: &str, group: &str, log: &Path, level: &str) -> Running {
    churn(&[
        "score",
        "--brokers",
        &p.kafka.brokers,
        "--model",
        model,
        "--group",
        group,
    ])
    .env("CHURN_LOG", level)
    .stdout(std::process::Stdio::null())
    .stderr(
        std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap(),
    )
    .spawn()
    .map(Running)
    .unwrap()
}

/// A child process that cannot outlive a failing test (killed when dropped).
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends a signal by name ("INT", "TERM", "KILL") to a child process.
pub fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits at most `timeout` for a child to exit; `None` if it is still running.
pub fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Messages on a topic (all partitions), from the watermarks.
pub fn topic_size(kafka: &Kafka, topic: &str) -> i64 {
    let consumer: BaseConsumer = kafka.consumer_config("size-probe", &[]).create().unwrap();
    (0..kafka.topics.partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map(|(low, high)| high - low)
                .unwrap_or(0)
        })
        .sum()
}
