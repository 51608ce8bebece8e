//! The `churn score` process: it fails loudly without a broker, rides out an outage, and stops
//! cleanly on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use server::broker::{BrokerOptions, Storage};

use super::*;

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
    let model = model_path(&p, 8);

    // Nobody listens on this port.
    let nowhere = format!("127.0.0.1:{}", server::broker::free_port());
    let started = std::time::Instant::now();
    let mut lost = churn(&[
        "score",
        "--brokers",
        &nowhere,
        "--model",
        &model,
        "--group",
        "scorer-nowhere",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .map(Running)
    .unwrap();
    let status = wait_exit(&mut lost.0, Duration::from_secs(30))
        .expect("exits within 30 s without a broker");
    let mut stderr = String::new();
    std::io::Read::read_to_string(lost.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        !status.success(),
        "non-zero without a broker: {status}\n{stderr}"
    );
    assert!(
        stderr.contains("not reachable") && stderr.contains(&nowhere),
        "says why: {stderr}"
    );
    eprintln!(
        "no broker: exit {status} after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // A running scorer: some good records, some bad, then SIGTERM.
    const GOOD: usize = 300;
    const BAD: usize = 30;
    let producer = p.kafka.idempotent_producer().unwrap();
    let topic = p.kafka.topics.input.clone();
    for i in 0..GOOD + BAD {
        let (key, payload) = if i % 11 == 5 && i / 11 < BAD {
            (format!("bad-{i}"), "{\"Age\": ".to_owned())
        } else {
            (format!("good-{i}"), good_record("Sig Term"))
        };
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let log = p.dir.path().join("scorer.log");
    let mut scorer = score_process(&p, &model);
    let predictions = p.kafka.topics.predictions.clone();
    let dead_letters = p.kafka.topics.dead_letter.clone();
    wait_until(
        "every record to be scored or dead-lettered",
        TIMEOUT,
        || {
            topic_size(&p.kafka, &predictions) >= GOOD as i64
                && topic_size(&p.kafka, &dead_letters) >= BAD as i64
        },
    )
    .await;
    // Once the commit (auto, every second) is done, nothing is left to do but stop.
    let stop_sent = std::time::Instant::now();
    signal(&scorer.0, "TERM");
    let status = wait_exit(&mut scorer.0, Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "still running 10 s after SIGTERM\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.success(),
        "exit 0 on SIGTERM, got {status}\n{log_text}"
    );
    let stopped = log_text
        .lines()
        .find(|l| l.contains("scorer stopped"))
        .unwrap_or_else(|| panic!("no 'scorer stopped' line:\n{log_text}"));
    assert!(
        stopped.contains(&format!("scored={GOOD}"))
            && stopped.contains(&format!("dead_lettered={BAD}")),
        "final counts: {stopped}"
    );
    assert!(
        !log_text.contains("ERROR"),
        "no error on a clean stop:\n{log_text}"
    );
    eprintln!(
        "SIGTERM: exit 0 after {:.2} s: {stopped}",
        stop_sent.elapsed().as_secs_f64()
    );
    assert_eq!(
        committed_offsets(&p.kafka, "scorer-proc", &topic)
            .values()
            .sum::<i64>(),
        (GOOD + BAD) as i64,
        "everything committed"
    );
}

/// The broker goes away under a running `churn score`: the process does not die; when the broker
/// is back it scores what arrives; with the broker away again, SIGTERM still ends it promptly,
/// cleanly, with its final counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churn_score_rides_out_a_broker_outage_and_stops_promptly_on_sigterm_during_one() {
    let mut p = pipeline_with(|dir| BrokerOptions {
        storage: Storage::Sqlite(dir.join("broker")),
        ..BrokerOptions::for_tests()
    })
    .await;
    let model = model_path(&p, 9);
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
                producer
                    .send(
                        FutureRecord::to(&topic)
                            .key(&key)
                            .payload(&good_record("Out Age")),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap();
            }
        }
    };
    send(0, 200).await;
    let mut scorer = score_process(&p, &model);
    let predictions = p.kafka.topics.predictions.clone();
    wait_until("the first records to be scored", TIMEOUT, || {
        topic_size(&p.kafka, &predictions) >= 200
    })
    .await;

    tokio::task::block_in_place(|| p.broker.stop());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        scorer.0.try_wait().unwrap().is_none(),
        "alive with the broker away\n{}",
        log_text()
    );
    tokio::task::block_in_place(|| p.broker.restart()).unwrap();
    send(200, 400).await;
    wait_until(
        "records sent after the outage to be scored",
        TIMEOUT,
        || topic_size(&p.kafka, &predictions) >= 400,
    )
    .await;
    assert!(
        scorer.0.try_wait().unwrap().is_none(),
        "alive after the outage"
    );

    tokio::task::block_in_place(|| p.broker.stop());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stop_sent = std::time::Instant::now();
    signal(&scorer.0, "TERM");
    let status = wait_exit(&mut scorer.0, Duration::from_secs(15)).unwrap_or_else(|| {
        panic!(
            "still running 15 s after SIGTERM with the broker away\n{}",
            log_text()
        )
    });
    let stopped_after = stop_sent.elapsed();
    let text = log_text();
    let stopped = text
        .lines()
        .find(|l| l.contains("scorer stopped"))
        .unwrap_or_else(|| panic!("no 'scorer stopped' line:\n{text}"));
    // At least once: records scored before the first outage may be scored again after it when the
    // broker went away before their offsets were committed (auto-commit runs every second).
    let scored: u64 = stopped
        .split_whitespace()
        .find_map(|word| word.strip_prefix("scored="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("final counts: {stopped}"));
    assert!(
        scored >= 400,
        "every record scored before the stop: {stopped}"
    );
    eprintln!(
        "SIGTERM with the broker away: {status} after {:.1} s: {stopped}",
        stopped_after.as_secs_f64()
    );
    assert!(
        status.success(),
        "exit 0: the stop was asked for and every task ended, got {status}\n{}",
        text.lines()
            .filter(|l| !l.contains("librdkafka"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
