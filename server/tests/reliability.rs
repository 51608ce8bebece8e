//! Faults on the real broker and the real binaries: kill -9, Ctrl-C, a broker restart, and a
//! flood of poison. Nothing is lost; every bad record is dead-lettered with a reason.

mod common;

use tokio_util::sync::CancellationToken;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use server::broker::{BrokerOptions, Storage};
use server::kafka::Kafka;
use server::replay::{replay, ReplayOptions};
use server::scorer::Scorer;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Every message on a topic (at least as many as its watermarks said it held).
fn read_all(kafka: &Kafka, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    let size = topic_size(kafka, topic) as usize;
    let messages = read_topic(kafka, topic, TIMEOUT, |m| m.len() >= size);
    assert!(messages.len() >= size, "read all of {topic}");
    messages
}

/// A group's committed offsets on `topic`, per partition (partitions without a commit are left out).
fn committed_offsets(kafka: &Kafka, group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = kafka.consumer_config(group, &[("enable.auto.commit", "false")]).create().unwrap();
    let mut partitions = TopicPartitionList::new();
    for p in 0..kafka.topics.partitions {
        partitions.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(partitions, Duration::from_secs(10)).unwrap();
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
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
    let predictions = p.kafka.topics.predictions.clone();

    // The scorer, while the records stream in: Ctrl-C mid-stream commits exactly what was
    // delivered.
    let mut scorer = score_process(&p, &model);
    wait_until("the scorer to score part of the stream", TIMEOUT, || topic_size(&p.kafka, &predictions) >= 2_000).await;
    signal(&scorer.0, "INT");
    let status = wait_exit(&mut scorer.0, Duration::from_secs(20)).expect("the scorer exits within 20 s of Ctrl-C");
    assert!(status.success(), "a clean exit on Ctrl-C: {status}");

    // Its group's committed offsets, per partition, against what is on the predictions topic:
    // after a clean stop, the predicted records of each partition are exactly those below its
    // committed offset. One above it would be scored again (the commit lags behind); one below it
    // without a prediction would be lost (the commit ran ahead).
    let committed = committed_offsets(&p.kafka, "scorer-proc", &input);
    let positions: HashMap<String, (i32, i64)> = read_all(&p.kafka, &input)
        .iter()
        .map(|m| (String::from_utf8_lossy(m.key().unwrap()).into_owned(), (m.partition(), m.offset())))
        .collect();
    let delivered = read_all(&p.kafka, &predictions);
    let mut predicted: HashMap<i32, Vec<i64>> = HashMap::new();
    for m in &delivered {
        let id = String::from_utf8_lossy(m.key().unwrap()).into_owned();
        let &(partition, offset) = positions.get(&id).unwrap_or_else(|| panic!("a prediction for {id}, which was not sent"));
        predicted.entry(partition).or_default().push(offset);
    }
    for partition in 0..p.kafka.topics.partitions {
        let mut offsets = predicted.remove(&partition).unwrap_or_default();
        offsets.sort_unstable();
        let commit = committed.get(&partition).copied().unwrap_or(0);
        let expected: Vec<i64> = (0..commit).collect();
        assert!(
            offsets == expected,
            "partition {partition}: committed offset {commit}, but {} predictions (offsets {:?}..{:?}): \
             {} above the commit (it lags), {} below it missing (it ran ahead)",
            offsets.len(), offsets.first(), offsets.last(),
            offsets.iter().filter(|&&o| o >= commit).count(),
            expected.iter().filter(|o| offsets.binary_search(o).is_err()).count(),
        );
    }
    let committed_total: i64 = committed.values().sum();
    assert_eq!(committed_total as usize, delivered.len(), "one prediction per committed record, no duplicate");
    let input_then = positions.len();
    assert!(committed_total as usize >= 2_000 && (committed_total as usize) < input_then, "stopped mid-stream");

    // The replay: Ctrl-C delivers exactly what it counted as sent.
    wait_until("the replay to send more", TIMEOUT, || topic_size(&p.kafka, &input) as usize >= input_then + 2_000).await;
    signal(&replayer, "INT");
    let output = replayer.wait_with_output().unwrap();
    assert!(output.status.success());
    let report = String::from_utf8_lossy(&output.stdout);
    let sent: usize = report.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{report}"));
    assert!(sent < 50_000, "stopped mid-file: {report}");
    assert_eq!(topic_size(&p.kafka, &input), sent as i64, "everything counted as sent was delivered, nothing more");

    // A restart finishes the rest, from the commit: no record scored twice.
    let _restarted = score_process(&p, &model);
    let messages = read_topic(&p.kafka, &predictions, TIMEOUT, |m| predictions_by_id(m).len() >= sent);
    assert_eq!(predictions_by_id(&messages).len(), sent);
    eprintln!(
        "Ctrl-C: the scorer stopped at {committed_total} of {input_then} records then in the topic, all committed \
         ({committed:?}); {sent} replayed, all scored after a restart, {} duplicates",
        messages.len() - sent
    );
    assert_eq!(messages.len(), sent, "a clean stop leaves nothing to score twice");
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
    wait_until("part of the stream to be scored", TIMEOUT, || stats.scored.get() >= 500).await;
    tokio::task::block_in_place(|| p.broker.restart()).unwrap();
    assert_eq!(producer.await.unwrap(), N as u64, "the producer rode out the restart");
    let (_, messages) = all_scored(&p, "br", N);
    eprintln!("broker restart: {N} records, {} duplicates", messages - N);
    stop_tx.cancel();
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
    stop_tx.cancel();
    task.await.unwrap().expect("the scorer never panicked and stopped cleanly");
}

/// Keys of a topic's messages per partition, in offset order.
fn keys_by_partition(messages: &[rdkafka::message::OwnedMessage]) -> BTreeMap<i32, Vec<String>> {
    let mut by_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for m in messages {
        let key = String::from_utf8_lossy(m.key().expect("keyed")).into_owned();
        by_partition.entry(m.partition()).or_default().push((m.offset(), key));
    }
    by_partition
        .into_iter()
        .map(|(partition, mut keyed)| {
            keyed.sort_unstable();
            (partition, keyed.into_iter().map(|(_, key)| key).collect())
        })
        .collect()
}

/// One in-process scorer of a group, with its own stop switch.
struct GroupMember {
    stop: CancellationToken,
    stats: std::sync::Arc<server::scorer::ScorerStats>,
    health: std::sync::Arc<server::health::Health>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl GroupMember {
    fn join(p: &Pipeline, group: &str, models: &tokio::sync::watch::Receiver<std::sync::Arc<model::ChurnModel>>) -> Self {
        let (stop, stopped) = stop_switch();
        let scorer = Scorer::new(p.kafka.clone(), group, models.clone());
        let (stats, health) = (scorer.stats.clone(), scorer.health.clone());
        GroupMember { stop, stats, health, task: tokio::spawn(scorer.run(stopped)) }
    }

    fn scored(&self) -> u64 {
        self.stats.scored.get()
    }

    /// Stops it (it commits and leaves the group) and returns how many it scored.
    async fn leave(self) -> u64 {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("a scorer stops within 30 s")
            .unwrap()
            .expect("a scorer stops cleanly");
        self.stats.scored.get()
    }
}

/// Rebalances mid-stream, on six partitions: one scorer, then three, then two (one leaves), while
/// 100,000 records stream in. Every record gets a prediction; in each partition the predictions,
/// each key counted at its first appearance, come in exactly the input order (a new owner never
/// starts past what the old one delivered, and nothing is reordered); a duplicate only repeats a
/// key already delivered in the same partition, and there are few of them (the rebalance hook
/// finishes the batches in flight and commits before giving partitions up).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scorers_joining_and_leaving_mid_stream_score_everything_in_order_per_partition() {
    const N: usize = 100_000;
    const GROUP: &str = "scorer-rebalance";
    let p = pipeline_with_partitions(6).await;
    let started = std::time::Instant::now();
    let (_m, models) = tokio::sync::watch::channel(trained_model(7));
    let producer = replay_in_background(&p, N, 4_000.0, "rb");

    let a = GroupMember::join(&p, GROUP, &models);
    wait_until("the first scorer to score part of the stream", TIMEOUT, || a.scored() >= 10_000).await;
    let b = GroupMember::join(&p, GROUP, &models);
    let c = GroupMember::join(&p, GROUP, &models);
    wait_until("the two new scorers to get partitions", TIMEOUT, || {
        b.health.assigned() && c.health.assigned()
    })
    .await;
    let at_three = a.scored() + b.scored() + c.scored();
    eprintln!("1 -> 3 scorers after {:.1} s, {at_three} scored", started.elapsed().as_secs_f64());
    wait_until("the three to share the stream", TIMEOUT, || {
        b.scored() > 0 && c.scored() > 0 && a.scored() + b.scored() + c.scored() >= at_three + 20_000
    })
    .await;
    let scored_by_b = b.leave().await;
    let at_two = a.scored() + scored_by_b + c.scored();
    eprintln!("3 -> 2 scorers after {:.1} s, {at_two} scored", started.elapsed().as_secs_f64());
    assert!(at_two < N as u64, "the last rebalance came mid-stream: {at_two} of {N} scored");
    assert_eq!(producer.await.unwrap(), N as u64);

    let predictions = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        m.len() >= N && m.iter().map(|m| m.key().unwrap()).collect::<HashSet<_>>().len() >= N
    });
    let (scored_by_a, scored_by_c) = (a.leave().await, c.leave().await);
    let input = read_topic(&p.kafka, &p.kafka.topics.input, TIMEOUT, |m| m.len() >= N);
    assert_eq!(input.len(), N);
    // Anything still on its way after the stops is counted too.
    let predictions = {
        let size = topic_size(&p.kafka, &p.kafka.topics.predictions) as usize;
        if size > predictions.len() { read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| m.len() >= size) } else { predictions }
    };

    let input_order = keys_by_partition(&input);
    let partition_of: HashMap<&str, i32> =
        input_order.iter().flat_map(|(&partition, keys)| keys.iter().map(move |k| (k.as_str(), partition))).collect();
    assert_eq!(partition_of.len(), N, "record ids are unique");
    let mut copies: HashMap<&str, usize> = HashMap::new();
    let output_order = keys_by_partition(&predictions);
    for (out_partition, keys) in &output_order {
        // Prediction keys are the input keys: same partitioner, same partition count.
        let Some(&in_partition) = partition_of.get(keys[0].as_str()) else { panic!("a prediction for {}, never sent", keys[0]) };
        let expected = &input_order[&in_partition];
        let mut seen: HashSet<&str> = HashSet::new();
        let mut first_seen: Vec<&str> = Vec::with_capacity(expected.len());
        for key in keys {
            match partition_of.get(key.as_str()) {
                Some(&p) if p == in_partition => {}
                Some(&p) => panic!("prediction partition {out_partition} holds {key} of input partition {p}, not {in_partition}"),
                None => panic!("a prediction for {key}, never sent"),
            }
            *copies.entry(key.as_str()).or_default() += 1;
            if seen.insert(key.as_str()) {
                first_seen.push(key.as_str());
            }
        }
        if let Some(at) = first_seen.iter().zip(expected.iter()).position(|(got, want)| *got != want.as_str()) {
            panic!(
                "partition {in_partition}: prediction #{at} (first appearances) is {} where the input has {}; around it: {:?}",
                first_seen[at], expected[at], &first_seen[at.saturating_sub(3)..(at + 3).min(first_seen.len())]
            );
        }
        assert_eq!(first_seen.len(), expected.len(), "partition {in_partition}: every record has a prediction");
    }
    assert_eq!(copies.len(), N, "every record has a prediction");
    let duplicates = predictions.len() - N;
    let most_copies = copies.values().copied().max().unwrap_or(0);
    eprintln!(
        "rebalances 1 -> 3 -> 2 on 6 partitions: {N} records, {} predictions, {duplicates} duplicates (at most {most_copies} copies of one record); \
         scored by a {scored_by_a}, b {scored_by_b}, c {scored_by_c}; {:.1} s",
        predictions.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(scored_by_b > 0 && scored_by_c > 0, "the scorers that joined took part");
    // The last two left cleanly: the group's commits are at the end of every partition.
    let committed = committed_offsets(&p.kafka, GROUP, &p.kafka.topics.input);
    let ends: HashMap<i32, i64> = input_order.iter().map(|(&partition, keys)| (partition, keys.len() as i64)).collect();
    assert_eq!(committed, ends, "committed offsets after the last scorers left");
    // Each rebalance re-scores at most what was in flight at that moment; all of them together
    // stay far below the stream.
    assert!(duplicates <= N / 20, "{duplicates} duplicates for {N} records");
    assert!(most_copies <= 4, "a record scored {most_copies} times in three rebalances");
}

/// A good record in the input's JSON shape.
fn good_record(name: &str) -> String {
    format!(
        r#"{{"Names":"{name}","Age":42,"Total_Purchase":9000.5,"Account_Manager":0,"Years":5.1,"Num_Sites":10,"Onboard_date":"2011-03-04 05:06:07","Location":"1 Main St, AK 123€abcd","Company":"X"}}"#
    )
}

/// `churn score` never dies silently: with no broker it exits at once, non-zero, saying why; asked
/// to stop (SIGTERM) it finishes, commits and exits 0 within seconds, with its final counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churn_score_fails_loudly_without_a_broker_and_stops_cleanly_on_sigterm() {
    let p = pipeline().await;
    let model = model_file(&p, 8);

    // Nobody listens on this port.
    let nowhere = format!("127.0.0.1:{}", server::broker::free_port());
    let started = std::time::Instant::now();
    let mut lost = churn(&["score", "--brokers", &nowhere, "--model", &model, "--group", "scorer-nowhere"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map(Running)
        .unwrap();
    let status = wait_exit(&mut lost.0, Duration::from_secs(30)).expect("exits within 30 s without a broker");
    let mut stderr = String::new();
    std::io::Read::read_to_string(lost.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "non-zero without a broker: {status}\n{stderr}");
    assert!(stderr.contains("not reachable") && stderr.contains(&nowhere), "says why: {stderr}");
    eprintln!("no broker: exit {status} after {:.1} s", started.elapsed().as_secs_f64());

    // A running scorer: some good records, some bad, then SIGTERM.
    const GOOD: usize = 300;
    const BAD: usize = 30;
    let producer = p.kafka.idempotent_producer().unwrap();
    let topic = p.kafka.topics.input.clone();
    for i in 0..GOOD + BAD {
        let (key, payload) =
            if i % 11 == 5 && i / 11 < BAD { (format!("bad-{i}"), "{\"Age\": ".to_owned()) } else { (format!("good-{i}"), good_record("Sig Term")) };
        producer.send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(10)).await.unwrap();
    }
    let log = p.dir.path().join("scorer.log");
    let mut scorer = score_process(&p, &model);
    let predictions = p.kafka.topics.predictions.clone();
    let dead_letters = p.kafka.topics.dead_letter.clone();
    wait_until("every record to be scored or dead-lettered", TIMEOUT, || {
        topic_size(&p.kafka, &predictions) >= GOOD as i64 && topic_size(&p.kafka, &dead_letters) >= BAD as i64
    })
    .await;
    // Once the commit (auto, every second) is done, nothing is left to do but stop.
    let stop_sent = std::time::Instant::now();
    signal(&scorer.0, "TERM");
    let status = wait_exit(&mut scorer.0, Duration::from_secs(10)).unwrap_or_else(|| {
        panic!("still running 10 s after SIGTERM\n{}", std::fs::read_to_string(&log).unwrap_or_default())
    });
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit 0 on SIGTERM, got {status}\n{log_text}");
    let stopped = log_text.lines().find(|l| l.contains("scorer stopped")).unwrap_or_else(|| panic!("no 'scorer stopped' line:\n{log_text}"));
    assert!(stopped.contains(&format!("scored={GOOD}")) && stopped.contains(&format!("dead_lettered={BAD}")), "final counts: {stopped}");
    assert!(!log_text.contains("ERROR"), "no error on a clean stop:\n{log_text}");
    eprintln!("SIGTERM: exit 0 after {:.2} s: {stopped}", stop_sent.elapsed().as_secs_f64());
    assert_eq!(committed_offsets(&p.kafka, "scorer-proc", &topic).values().sum::<i64>(), (GOOD + BAD) as i64, "everything committed");
}

/// The broker goes away under a running `churn score`: the process does not die; when the broker
/// is back it scores what arrives; with the broker away again, SIGTERM still ends it promptly,
/// cleanly, with its final counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churn_score_rides_out_a_broker_outage_and_stops_promptly_on_sigterm_during_one() {
    let mut p = pipeline_with(|dir| BrokerOptions { storage: Storage::Sqlite(dir.join("broker")), ..BrokerOptions::for_tests() }).await;
    let model = model_file(&p, 9);
    let log = p.dir.path().join("scorer.log");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let topic = p.kafka.topics.input.clone();
    let send = |from: usize, to: usize| {
        let kafka = p.kafka.clone();
        let topic = topic.clone();
        async move {
            let producer = kafka.idempotent_producer().unwrap();
            for i in from..to {
                let key = format!("out-{i}");
                producer.send(FutureRecord::to(&topic).key(&key).payload(&good_record("Out Age")), Duration::from_secs(30)).await.unwrap();
            }
        }
    };
    send(0, 200).await;
    let mut scorer = score_process(&p, &model);
    let predictions = p.kafka.topics.predictions.clone();
    wait_until("the first records to be scored", TIMEOUT, || topic_size(&p.kafka, &predictions) >= 200).await;

    tokio::task::block_in_place(|| p.broker.stop());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(scorer.0.try_wait().unwrap().is_none(), "alive with the broker away\n{}", log_text());
    tokio::task::block_in_place(|| p.broker.restart()).unwrap();
    send(200, 400).await;
    wait_until("records sent after the outage to be scored", TIMEOUT, || topic_size(&p.kafka, &predictions) >= 400).await;
    assert!(scorer.0.try_wait().unwrap().is_none(), "alive after the outage");

    tokio::task::block_in_place(|| p.broker.stop());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stop_sent = std::time::Instant::now();
    signal(&scorer.0, "TERM");
    let status = wait_exit(&mut scorer.0, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running 15 s after SIGTERM with the broker away\n{}", log_text()));
    let stopped_after = stop_sent.elapsed();
    let text = log_text();
    let stopped = text.lines().find(|l| l.contains("scorer stopped")).unwrap_or_else(|| panic!("no 'scorer stopped' line:\n{text}"));
    // At least once: records scored before the first outage may be scored again after it when the
    // broker went away before their offsets were committed (auto-commit runs every second).
    let scored: u64 = stopped
        .split_whitespace()
        .find_map(|word| word.strip_prefix("scored="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("final counts: {stopped}"));
    assert!(scored >= 400, "every record scored before the stop: {stopped}");
    eprintln!("SIGTERM with the broker away: {status} after {:.1} s: {stopped}", stopped_after.as_secs_f64());
    assert!(status.success(), "exit 0: the stop was asked for and every task ended, got {status}\n{}",
            text.lines().filter(|l| !l.contains("librdkafka")).collect::<Vec<_>>().join("\n"));
}
