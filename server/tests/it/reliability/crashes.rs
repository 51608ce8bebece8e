//! A scorer killed with SIGKILL, Ctrl-C during replay and scoring, a broker restart mid-stream.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use rdkafka::Message;
use server::broker::{BrokerOptions, Storage};
use server::scorer::Scorer;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scorer_killed_with_sigkill_mid_stream_loses_no_record() {
    let p = pipeline().await;
    let model = model_path(&p, 1);
    const N: usize = 20_000;
    let producer = replay_in_background(&p, N, 5_000.0, "k9");
    let scorer = score_process(&p, &model);
    let predictions = p.kafka.topics.predictions.clone();
    wait_until("the scorer to score part of the stream", TIMEOUT, || {
        topic_size(&p.kafka, &predictions) >= 2_000
    })
    .await;
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
    let model = model_path(&p, 2);
    let csv = p.csv(50_000, 32);
    let file = csv.to_string_lossy().into_owned();
    let replayer = churn(&[
        "replay",
        &file,
        "--rate",
        "4000",
        "--id-prefix",
        "cc",
        "--brokers",
        &p.kafka.brokers,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let input = p.kafka.topics.input.clone();
    let predictions = p.kafka.topics.predictions.clone();

    // The scorer, while the records stream in: Ctrl-C mid-stream commits exactly what was
    // delivered.
    let mut scorer = score_process(&p, &model);
    wait_until("the scorer to score part of the stream", TIMEOUT, || {
        topic_size(&p.kafka, &predictions) >= 2_000
    })
    .await;
    signal(&scorer.0, "INT");
    let status = wait_exit(&mut scorer.0, Duration::from_secs(20))
        .expect("the scorer exits within 20 s of Ctrl-C");
    assert!(status.success(), "a clean exit on Ctrl-C: {status}");

    // Its group's committed offsets, per partition, against what is on the predictions topic:
    // after a clean stop, the predicted records of each partition are exactly those below its
    // committed offset. One above it would be scored again (the commit lags behind); one below it
    // without a prediction would be lost (the commit ran ahead).
    let committed = committed_offsets(&p.kafka, "scorer-proc", &input);
    let positions: HashMap<String, (i32, i64)> = read_all(&p.kafka, &input)
        .iter()
        .map(|m| {
            (
                String::from_utf8_lossy(m.key().unwrap()).into_owned(),
                (m.partition(), m.offset()),
            )
        })
        .collect();
    let delivered = read_all(&p.kafka, &predictions);
    let mut predicted: HashMap<i32, Vec<i64>> = HashMap::new();
    for m in &delivered {
        let id = String::from_utf8_lossy(m.key().unwrap()).into_owned();
        let &(partition, offset) = positions
            .get(&id)
            .unwrap_or_else(|| panic!("a prediction for {id}, which was not sent"));
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
    assert_eq!(
        committed_total as usize,
        delivered.len(),
        "one prediction per committed record, no duplicate"
    );
    let input_then = positions.len();
    assert!(
        committed_total as usize >= 2_000 && (committed_total as usize) < input_then,
        "stopped mid-stream"
    );

    // The replay: Ctrl-C delivers exactly what it counted as sent.
    wait_until("the replay to send more", TIMEOUT, || {
        topic_size(&p.kafka, &input) as usize >= input_then + 2_000
    })
    .await;
    signal(&replayer, "INT");
    let output = replayer.wait_with_output().unwrap();
    assert!(output.status.success());
    let report = String::from_utf8_lossy(&output.stdout);
    let sent: usize = report
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert!(sent < 50_000, "stopped mid-file: {report}");
    assert_eq!(
        topic_size(&p.kafka, &input),
        sent as i64,
        "everything counted as sent was delivered, nothing more"
    );

    // A restart finishes the rest, from the commit: no record scored twice.
    let _restarted = score_process(&p, &model);
    let messages = read_topic(&p.kafka, &predictions, TIMEOUT, |m| {
        predictions_by_id(m).len() >= sent
    });
    assert_eq!(predictions_by_id(&messages).len(), sent);
    eprintln!(
        "Ctrl-C: the scorer stopped at {committed_total} of {input_then} records then in the topic, all committed \
         ({committed:?}); {sent} replayed, all scored after a restart, {} duplicates",
        messages.len() - sent
    );
    assert_eq!(
        messages.len(),
        sent,
        "a clean stop leaves nothing to score twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let mut p = pipeline_with(|dir| BrokerOptions {
        storage: Storage::Sqlite(dir.join("broker")),
        ..BrokerOptions::for_tests()
    })
    .await;
    let kafka = p.kafka.clone();
    const N: usize = 6_000;
    let producer = replay_in_background(&p, N, 1_500.0, "br");
    let (stop_tx, stop) = stop_switch();
    let (_m, models) = tokio::sync::watch::channel(model::Lineup::from(trained_model(3)));
    let scorer = Scorer::new(kafka.clone(), "scorer-restart", models);
    let stats = scorer.stats.clone();
    let task = tokio::spawn(scorer.run(stop));
    wait_until("part of the stream to be scored", TIMEOUT, || {
        stats.scored.get() >= 500
    })
    .await;
    tokio::task::block_in_place(|| p.broker.restart()).unwrap();
    assert_eq!(
        producer.await.unwrap(),
        N as u64,
        "the producer rode out the restart"
    );
    let (_, messages) = all_scored(&p, "br", N);
    eprintln!("broker restart: {N} records, {} duplicates", messages - N);
    stop_tx.cancel();
    task.await.unwrap().unwrap();
}
