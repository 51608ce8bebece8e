//! Faults on the real broker and the real binaries: kill -9, Ctrl-C, a broker restart, and a
//! flood of poison. Nothing is lost; every bad record is dead-lettered with a reason.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use server::broker::{BrokerOptions, Storage};
use server::kafka::Kafka;
use server::replay::{replay, ReplayOptions};
use server::scorer::Scorer;

const TIMEOUT: Duration = Duration::from_secs(120);

fn churn(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_churn"));
    command.args(args).env("CHURN_LOG", "info").env("NO_COLOR", "1").stdin(Stdio::null());
    command
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Messages on a topic, from the high watermarks.
fn topic_size(kafka: &Kafka, topic: &str) -> i64 {
    let consumer: BaseConsumer = kafka.consumer_config("size-probe", &[]).create().unwrap();
    (0..kafka.topics.partitions)
        .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(5)).map(|(low, high)| high - low).unwrap_or(0))
        .sum()
}

/// A child process that cannot outlive a failing test.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn score_process(p: &Pipeline, model_path: &str) -> Running {
    churn(&["score", "--brokers", &p.kafka.brokers, "--model", model_path, "--group", "scorer-proc"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::options().create(true).append(true).open(p.dir.path().join("scorer.log")).unwrap())
        .spawn()
        .map(Running)
        .unwrap()
}

fn model_file(p: &Pipeline, seed: u64) -> String {
    let path = p.dir.path().join("model.json");
    server::model_file::save(&trained_model(seed), &path).unwrap();
    path.to_string_lossy().into_owned()
}

fn replay_in_background(p: &Pipeline, rows: usize, rate: f64, prefix: &str) -> tokio::task::JoinHandle<u64> {
    let options = ReplayOptions { file: p.csv(rows, 31), rate, repeat: false, limit: None, id_prefix: prefix.into(), show_progress: false };
    let kafka = p.kafka.clone();
    tokio::spawn(async move {
        let (_never, no_stop) = stop_switch();
        replay(&kafka, &options, no_stop).await.unwrap().sent
    })
}

fn all_scored(p: &Pipeline, prefix: &str, rows: usize) -> (HashSet<String>, usize) {
    check_all_scored(p, prefix, rows).unwrap_or_else(|e| panic!("{e}"))
}

/// The predictions' ids and message count, or what is wrong with them.
fn check_all_scored(p: &Pipeline, prefix: &str, rows: usize) -> Result<(HashSet<String>, usize), String> {
    let messages = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| predictions_by_id(m).len() >= rows);
    let ids: HashSet<String> = predictions_by_id(&messages).into_keys().collect();
    let expected: HashSet<String> = (2..rows + 2).map(|line| format!("{prefix}-0-{line}")).collect();
    let missing: Vec<&String> = expected.difference(&ids).take(5).collect();
    if !missing.is_empty() {
        let count = expected.len() - expected.intersection(&ids).count();
        return Err(format!("{count} of {rows} records have no prediction, e.g. {missing:?}"));
    }
    if ids.len() != rows {
        return Err(format!("{} predictions for {rows} records: some for records that were not sent", ids.len()));
    }
    Ok((ids, messages.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scorer_killed_with_sigkill_mid_stream_loses_no_record() {
    let p = pipeline().await;
    let model = model_file(&p, 1);
    const N: usize = 20_000;
    let producer = replay_in_background(&p, N, 5_000.0, "k9");
    let scorer = score_process(&p, &model);
    let predictions = p.kafka.topics.predictions.clone();
    wait_until("the scorer to score part of the stream", TIMEOUT, || topic_size(&p.kafka, &predictions) >= 2_000).await;
    drop(scorer); // SIGKILL: no flush, no commit
    let scored_before_kill = topic_size(&p.kafka, &predictions);
    assert!(scored_before_kill < N as i64, "killed mid-stream");

    let _restarted = score_process(&p, &model);
    assert_eq!(producer.await.unwrap(), N as u64);
    let (_, messages) = check_all_scored(&p, "k9", N).unwrap_or_else(|e| {
        panic!(
            "{e}\ninput {} predictions {}\n{}",
            topic_size(&p.kafka, &p.kafka.topics.input),
            topic_size(&p.kafka, &p.kafka.topics.predictions),
            std::fs::read_to_string(p.dir.path().join("scorer.log")).unwrap_or_default()
        )
    });
    eprintln!("kill -9 after {scored_before_kill} predictions: {N} records, {} predictions, {} duplicates", messages, messages - N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_during_replay_and_scoring_loses_nothing() {
    let p = pipeline().await;
    let model = model_file(&p, 2);
    let csv = p.csv(50_000, 32);
    let file = csv.to_string_lossy().into_owned();
    let replayer = churn(&["replay", &file, "--rate", "4000", "--id-prefix", "cc", "--brokers", &p.kafka.brokers])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let input = p.kafka.topics.input.clone();
    wait_until("the replay to send part of the file", TIMEOUT, || topic_size(&p.kafka, &input) >= 2_000).await;
    signal(&replayer, "INT");
    let output = replayer.wait_with_output().unwrap();
    assert!(output.status.success());
    let report = String::from_utf8_lossy(&output.stdout);
    let sent: usize = report.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{report}"));
    assert!(sent < 50_000, "stopped mid-file: {report}");
    assert_eq!(topic_size(&p.kafka, &input), sent as i64, "everything counted as sent was delivered, nothing more");

    // The scorer: Ctrl-C mid-stream commits what was delivered; a restart finishes the rest.
    let mut scorer = score_process(&p, &model);
    let predictions = p.kafka.topics.predictions.clone();
    wait_until("the scorer to start scoring", TIMEOUT, || topic_size(&p.kafka, &predictions) >= 1).await;
    signal(&scorer.0, "INT");
    assert!(scorer.0.wait().unwrap().success(), "a clean exit on Ctrl-C");
    let _restarted = score_process(&p, &model);
    let messages = read_topic(&p.kafka, &predictions, TIMEOUT, |m| predictions_by_id(m).len() >= sent);
    assert_eq!(predictions_by_id(&messages).len(), sent);
    eprintln!("Ctrl-C: {sent} records replayed and scored, {} duplicates", messages.len() - sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let mut p = pipeline_with(|dir| BrokerOptions { storage: Storage::Sqlite(dir.join("broker")), ..BrokerOptions::for_tests() }).await;
    let kafka = p.kafka.clone();
    const N: usize = 6_000;
    let producer = replay_in_background(&p, N, 1_500.0, "br");
    let (stop_tx, stop) = stop_switch();
    let (_m, models) = tokio::sync::watch::channel(trained_model(3));
    let scorer = Scorer::new(kafka.clone(), "scorer-restart", models);
    let stats = scorer.stats.clone();
    let task = tokio::spawn(scorer.run(stop));
    wait_until("part of the stream to be scored", TIMEOUT, || stats.scored.load(Ordering::Relaxed) >= 500).await;
    tokio::task::block_in_place(|| p.broker.restart()).unwrap();
    assert_eq!(producer.await.unwrap(), N as u64, "the producer rode out the restart");
    let (_, messages) = all_scored(&p, "br", N);
    eprintln!("broker restart: {N} records, {} duplicates", messages - N);
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
}

/// Ten kinds of garbage a real topic sees.
fn poison(rng: &mut impl Rng, i: usize) -> Vec<u8> {
    let good = r#"{"Names":"P","Age":40,"Total_Purchase":100,"Account_Manager":1,"Years":3,"Num_Sites":8,"Onboard_date":"2010-01-01 00:00:00","Location":"x","Company":"y"}"#;
    match i % 10 {
        0 => (0..rng.gen_range(1..200)).map(|_| rng.gen()).collect(),
        1 => good[..rng.gen_range(1..good.len() - 1)].as_bytes().to_vec(),
        2 => good.replace(r#""Names":"P""#, &format!(r#""Names":"{}""#, "N".repeat(50_000))).into_bytes(),
        3 => good.replace(r#""Age":40"#, r#""Age":[40]"#).into_bytes(),
        4 => good.replace(r#""Age":40"#, r#""Age":"NaN""#).into_bytes(),
        5 => good.replace(r#""Total_Purchase":100"#, r#""Total_Purchase":1e999"#).into_bytes(),
        6 => good.replace(r#""Age":40"#, &format!(r#""Age":{}"#, -rng.gen_range(1..1_000_000))).into_bytes(),
        7 => br#"{"name":"P","age":40,"churn":"maybe","unknown":{"a":1}}"#.to_vec(),
        8 => format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)).into_bytes(),
        _ => good.replace(r#""Num_Sites":8"#, r#""Num_Sites":"inf""#).into_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_poison_records_are_all_dead_lettered_and_every_good_one_is_scored() {
    let p = pipeline().await;
    let producer = p.kafka.idempotent_producer().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    const POISON: usize = 10_000;
    const GOOD: usize = 1_000;
    let good = r#"{"Names":"Good","Age":40,"Total_Purchase":100,"Account_Manager":1,"Years":3,"Num_Sites":8,"Onboard_date":"2010-01-01 00:00:00","Location":"x","Company":"y"}"#;
    let topic = p.kafka.topics.input.clone();
    let mut sends = Vec::new();
    for i in 0..POISON + GOOD {
        let (key, payload) = if i % 11 == 10 && i / 11 < GOOD {
            (format!("good-{}", i / 11), good.as_bytes().to_vec())
        } else {
            (format!("poison-{i}"), poison(&mut rng, i))
        };
        sends.push((key, payload));
    }
    let poison_keys: HashSet<String> = sends.iter().filter(|(k, _)| k.starts_with("poison")).map(|(k, _)| k.clone()).collect();
    let good_keys: HashSet<String> = sends.iter().filter(|(k, _)| k.starts_with("good")).map(|(k, _)| k.clone()).collect();
    futures::future::join_all(sends.iter().map(|(k, v)| {
        producer.send(FutureRecord::to(&topic).key(k.as_str()).payload(v.as_slice()), Duration::from_secs(30))
    }))
    .await
    .into_iter()
    .for_each(|r| assert!(r.is_ok()));

    let (stop_tx, stop) = stop_switch();
    let (_m, models) = tokio::sync::watch::channel(trained_model(4));
    let task = tokio::spawn(Scorer::new(p.kafka.clone(), "scorer-poison", models).run(stop));

    let dead = read_topic(&p.kafka, &p.kafka.topics.dead_letter, TIMEOUT, |m| {
        m.iter().filter_map(|m| m.key()).collect::<HashSet<_>>().len() >= poison_keys.len()
    });
    let dead_keys: HashSet<String> = dead.iter().map(|m| String::from_utf8_lossy(m.key().unwrap()).into_owned()).collect();
    assert_eq!(dead_keys, poison_keys, "every poison record is dead-lettered");
    assert!(dead.iter().all(|m| header(m, "dlq.reason").is_some_and(|r| !r.is_empty())), "each with a reason");
    let scored = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| predictions_by_id(m).len() >= good_keys.len());
    assert_eq!(predictions_by_id(&scored).into_keys().collect::<HashSet<_>>(), good_keys, "every good record is scored");
    stop_tx.send(true).unwrap();
    task.await.unwrap().expect("the scorer never panicked and stopped cleanly");
}
