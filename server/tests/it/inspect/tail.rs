//! `churn tail`: the last N, one key, from the beginning, following; dead letters with their
//! reason; hostile records (binary keys, headers that are not text, huge values) printed
//! whole; a closed pipe ends it quietly; a missing topic names those that exist.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::Arc;

use serde_json::{json, Value};
use server::scorer::Scorer;

use super::*;

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Ten records of the input topic, keyed k0..k9 over three partitions, in order of time.
async fn ten_records(p: &Pipeline) {
    let producer = p.kafka.idempotent_producer().unwrap();
    for i in 0..10 {
        let value = format!(r#"{{"n": {i}}}"#);
        send(
            &producer,
            &p.kafka.topics.input,
            i % 3,
            format!("k{i}").as_bytes(),
            value.as_bytes(),
            None,
        )
        .await;
        // Distinct timestamps, so "the last 3" is well defined across partitions.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reads_the_last_n_one_key_or_everything_and_stops_at_the_end() {
    let p = pipeline().await;
    ten_records(&p).await;
    let input = p.kafka.topics.input.clone();

    let last = lines(&stdout_of(&p, &["tail", &input, "--last", "3"]));
    let keys: Vec<&str> = last.iter().map(|l| l["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["k7", "k8", "k9"], "the newest three, oldest first");
    assert_eq!(last[2]["value"], json!({"n": 9}), "JSON values stay JSON");
    assert_eq!(last[2]["partition"], 0);
    assert_eq!(last[2]["offset"], 3);
    assert_eq!(last[2]["headers"], json!({}));
    let stamp = last[2]["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{stamp}"
    );

    assert_eq!(
        lines(&stdout_of(&p, &["tail", &input])).len(),
        10,
        "last 10 by default"
    );
    let all = lines(&stdout_of(&p, &["tail", &input, "--from-beginning"]));
    assert_eq!(all.len(), 10);
    let mut keys: Vec<&str> = all.iter().map(|l| l["key"].as_str().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, (0..10).map(|i| format!("k{i}")).collect::<Vec<_>>());

    let one = lines(&stdout_of(
        &p,
        &["tail", &input, "--key", "k4", "--from-beginning"],
    ));
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["value"], json!({"n": 4}));
    let none = stdout_of(&p, &["tail", &input, "--key", "k", "--last", "5"]);
    assert_eq!(none, "", "a key matches exactly, not as a prefix");
    // An empty topic ends at once with nothing.
    assert_eq!(
        stdout_of(&p, &["tail", &p.kafka.topics.labels, "--from-beginning"]),
        ""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_shows_a_dead_letter_with_its_reason() {
    let p = pipeline().await;
    let producer = p.kafka.idempotent_producer().unwrap();
    let bad = br#"{"Names": "Bad Age", "Age": -5, "Total_Purchase": 100, "Account_Manager": 0, "Years": 1, "Num_Sites": 8, "Onboard_date": "2013-08-30 07:00:40", "Location": "x", "Company": "y"}"#;
    send(&producer, &p.kafka.topics.input, 0, b"bad-1", bad, None).await;
    let (_m, models) = tokio::sync::watch::channel(model::Lineup::from(trained_model(3)));
    let scorer = Scorer::new(p.kafka.clone(), "tail-dlq", models);
    let stats = Arc::clone(&scorer.stats);
    let (stop_tx, stop) = stop_switch();
    let task = tokio::spawn(scorer.run(stop));
    wait_until("the dead letter", Duration::from_secs(60), || {
        stats.dead_lettered.get() >= 1
    })
    .await;
    stop_tx.cancel();
    let _ = task.await;

    let out = lines(&stdout_of(
        &p,
        &["tail", &p.kafka.topics.dead_letter, "--from-beginning"],
    ));
    assert_eq!(out.len(), 1, "{out:?}");
    let dead = &out[0];
    assert_eq!(dead["key"], "bad-1");
    let reason = dead["dead_letter"]["reason"].as_str().unwrap();
    assert!(reason.contains("Age") && reason.contains("-5"), "{reason}");
    assert!(dead["dead_letter"]["errors"].is_array(), "parsed: {dead}");
    assert_eq!(
        dead["dead_letter"]["source"],
        format!("{}-0-0", p.kafka.topics.input)
    );
    assert_eq!(dead["value"]["Age"], -5, "the original record, as JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_hostile_records_whole_and_ends_quietly_on_a_closed_pipe() {
    let p = pipeline().await;
    let producer = p.kafka.idempotent_producer().unwrap();
    let topic = "hostile";
    p.kafka.ensure_topics(&[(topic, 1, false)]).await.unwrap();
    let headers = OwnedHeaders::new()
        .insert(header("bin", &[0xff, 0xfe, 0x00]))
        .insert(header("text", b"ok"))
        .insert(Header {
            key: "null",
            value: None::<&[u8]>,
        })
        .insert(header("dlq.reason", b"not ours, but shown"));
    send(
        &producer,
        topic,
        0,
        &[0x00, 0x9f, 0x92, 0x96],
        b"\xc3\x28 not text",
        Some(headers),
    )
    .await;
    let huge = vec![b'x'; 600_000];
    send(&producer, topic, 0, b"huge", &huge, None).await;
    let escape = b"\x1b[2J\x07{\"a\":\n";
    send(&producer, topic, 0, b"line\nbreak", escape, None).await;

    let out = stdout_of(&p, &["tail", topic, "--from-beginning"]);
    assert_eq!(
        out.lines().count(),
        3,
        "one line per record, newlines escaped"
    );
    let records = lines(&out);
    assert_eq!(records[0]["key"], json!({"base64": "AJ+Slg=="}));
    assert_eq!(records[0]["headers"]["bin"], json!({"base64": "//4A"}));
    assert_eq!(records[0]["headers"]["text"], "ok");
    assert_eq!(records[0]["headers"]["null"], Value::Null);
    assert_eq!(records[0]["value"], json!({"base64": "wyggbm90IHRleHQ="}));
    assert_eq!(
        records[1]["value"].as_str().unwrap().len(),
        600_000,
        "kept whole"
    );
    assert_eq!(records[2]["key"], "line\nbreak");
    assert_eq!(records[2]["value"], "\u{1b}[2J\u{7}{\"a\":\n");
    assert!(
        !out.contains('\u{1b}'),
        "escape sequences never reach the terminal raw"
    );

    // `churn tail | head -1`: many records, the reader leaves after one line; exit 0, quietly.
    for i in 0..300 {
        send(
            &producer,
            topic,
            0,
            format!("m{i}").as_bytes(),
            &huge[..10_000],
            None,
        )
        .await;
    }
    let mut child = churn(&[
        "tail",
        topic,
        "--from-beginning",
        "--brokers",
        &p.kafka.brokers,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with('{'));
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("tail ends");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        !stderr.contains("Error") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_new_records_until_ctrl_c_and_names_topics_that_exist() {
    let p = pipeline().await;
    ten_records(&p).await;
    let input = p.kafka.topics.input.clone();
    let mut child = Running(
        churn(&[
            "tail",
            &input,
            "--follow",
            "--last",
            "1",
            "--key",
            "new",
            "--brokers",
            &p.kafka.brokers,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    // Give it time to catch up, then a new record arrives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let producer = p.kafka.idempotent_producer().unwrap();
    send(&producer, &input, 2, b"other", b"{}", None).await;
    send(&producer, &input, 2, b"new", br#"{"fresh": true}"#, None).await;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert_eq!(lines(&line)[0]["value"], json!({"fresh": true}));
    signal(&child.0, "INT");
    let status = wait_exit(&mut child.0, Duration::from_secs(10)).expect("stops on Ctrl-C");
    assert!(status.success(), "{status}");

    let missing = churn_at(&p, &["tail", "no-such-topic"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("\"no-such-topic\" does not exist") && stderr.contains(&input),
        "{stderr}"
    );
}
