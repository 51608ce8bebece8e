//! Records at and past every size limit: ours (key, record) and the broker's (topics with a small
//! `max.message.bytes`).
//!
//! Over 400 lines: every limit is tested at, just past and far past it, on a real broker; the cases
//! are spelled out rather than generated so a failure names the limit.

use std::collections::HashSet;
use std::time::Duration;

use model::record::{MAX_KEY_BYTES, MAX_RECORD_BYTES};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use server::kafka::{Kafka, Topics};
use server::scorer::{Scorer, DEAD_LETTER_COPY_BYTES};

use super::*;

/// Records past each limit, on one partition between good ones: a 1 MB key (`MAX_KEY_BYTES` is
/// 256), a 1,000,000-byte value (the broker's limit is 1 MiB per batch), one byte past the input
/// limit (`MAX_RECORD_BYTES`) and one exactly at it. Each is dead-lettered once, with its reason,
/// a key of at most 256 bytes and, when cut, `DEAD_LETTER_COPY_BYTES` of it with its original
/// size; none is retried, so every good record after them is scored; and no log line (at debug
/// level) carries the huge input.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_past_every_size_limit_are_dead_lettered_once_and_the_stream_goes_on() {
    let p = pipeline().await;
    let model = model_path(&p, 21);
    let topic = p.kafka.topics.input.clone();
    // "é" is two bytes: the key's cut must fall between characters.
    let huge_key = "é".repeat(500_000);
    assert_eq!(huge_key.len(), 1_000_000);
    let near_broker_limit = padded(1_000_000);
    let past_input_limit = padded(MAX_RECORD_BYTES + 1);
    let at_input_limit = padded(MAX_RECORD_BYTES);
    let sends: Vec<(&str, String)> = vec![
        ("good-0", good("Before")),
        (&huge_key, good("Huge Key")),
        ("good-1", good("Between")),
        ("near-broker-limit", near_broker_limit.clone()),
        ("good-2", good("Between Again")),
        ("past-input-limit", past_input_limit.clone()),
        ("at-input-limit", at_input_limit.clone()),
        ("good-3", good("After")),
    ];
    let producer = big_producer(&p.kafka);
    for (offset, (key, payload)) in sends.iter().enumerate() {
        let delivered = producer
            .send(
                FutureRecord::to(&topic)
                    .partition(0)
                    .key(*key)
                    .payload(payload),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| {
                panic!(
                    "the broker takes record {offset} ({} + {} bytes): {e}",
                    key.len(),
                    payload.len()
                )
            });
        assert_eq!((delivered.partition, delivered.offset), (0, offset as i64));
    }

    let log = p.dir.path().join("scorer.log");
    let mut scorer = score_process(
        &p,
        &model,
        "scorer-limits",
        &log,
        "debug,rdkafka=off,librdkafka=off",
    );
    let scored = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        m.len() >= 4
    });
    let mut ids: Vec<String> = scored.iter().map(key_text).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["good-0", "good-1", "good-2", "good-3"],
        "the good records, each once"
    );
    stop_cleanly(&mut scorer, "the scorer", Duration::from_secs(20), &log);
    assert_eq!(topic_size(&p.kafka, &p.kafka.topics.predictions), 4);

    let dead = read_topic(&p.kafka, &p.kafka.topics.dead_letter, TIMEOUT, |m| {
        m.len() >= 4
    });
    assert_eq!(dead.len(), 4, "one dead letter each, none retried");
    assert_eq!(topic_size(&p.kafka, &p.kafka.topics.dead_letter), 4);
    let letter = |offset: i64| {
        let source = format!("{topic}-0-{offset}");
        dead.iter()
            .find(|m| header(m, "dlq.source").as_deref() == Some(source.as_str()))
            .unwrap_or_else(|| panic!("no dead letter from {source}"))
    };

    let huge = letter(1);
    let key = std::str::from_utf8(huge.key().unwrap()).expect("a cut key is still UTF-8");
    assert!(
        key.len() <= MAX_KEY_BYTES
            && key.ends_with('…')
            && huge_key.starts_with(key.trim_end_matches('…')),
        "{key}"
    );
    let reason = header(huge, "dlq.reason").unwrap();
    assert!(
        reason.contains("record key too long: 1000000 bytes"),
        "{reason}"
    );
    assert_eq!(
        huge.payload(),
        Some(good("Huge Key").as_bytes()),
        "the original value, whole"
    );
    assert_eq!(header(huge, "dlq.original_size"), None);

    for (offset, original) in [(3, &near_broker_limit), (5, &past_input_limit)] {
        let cut = letter(offset);
        let reason = header(cut, "dlq.reason").unwrap();
        assert!(
            reason.contains(&format!("record too large: {} bytes", original.len())),
            "{reason}"
        );
        assert_eq!(
            cut.payload(),
            Some(&original.as_bytes()[..DEAD_LETTER_COPY_BYTES]),
            "its first {DEAD_LETTER_COPY_BYTES} bytes"
        );
        assert_eq!(
            header(cut, "dlq.original_size"),
            Some(original.len().to_string())
        );
        assert!(cut.key().unwrap().len() <= MAX_KEY_BYTES);
    }

    let at_limit = letter(6);
    let reason = header(at_limit, "dlq.reason").unwrap();
    assert!(
        !reason.contains("too large") && reason.contains("Names") && reason.contains("too long"),
        "read, then refused: {reason}"
    );
    assert_eq!(
        at_limit.payload(),
        Some(at_input_limit.as_bytes()),
        "kept whole"
    );
    assert_eq!(header(at_limit, "dlq.original_size"), None);

    let log_text = assert_bounded_log(&log);
    assert!(
        !log_text.contains("will retry") && !log_text.contains("panic"),
        "nothing retried, nothing panicked:\n{log_text}"
    );
    assert!(
        log_text.contains("scored=4 dead_lettered=4"),
        "final counts:\n{log_text}"
    );
}

/// Creates `topic` with one partition and the given `max.message.bytes`.
async fn create_limited_topic(kafka: &Kafka, topic: &str, max_message_bytes: usize) {
    let admin: AdminClient<DefaultClientContext> = kafka.config(&[]).create().unwrap();
    let limit = max_message_bytes.to_string();
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", &limit);
    let results = admin
        .create_topics(&[new], &AdminOptions::new())
        .await
        .unwrap();
    for result in results {
        result.unwrap_or_else(|(name, e)| panic!("creating {name}: {e}"));
    }
}

/// The broker refuses for good what the scorer produces (topics with a small `max.message.bytes`):
/// a prediction too large for the predictions topic becomes a dead letter; a dead letter too large
/// for its topic becomes one without the record's copy, naming its original size; the records
/// around it are scored, nothing is retried forever, and the scorer stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_the_broker_refuses_for_good_fall_back_to_dead_letters_and_the_stream_goes_on() {
    let p = pipeline().await;
    let model = trained_model(22);
    let now = "2024-01-01T00:00:00.000Z";
    // 300 four-byte characters: the longest valid name, 1,200 bytes, and in the prediction too.
    let long_name = "😀".repeat(300);
    let small = good("Small");
    let big = good(&long_name);
    let small_prediction =
        server::scorer::score_payload("small-0", Some(small.as_bytes()), &model, now)
            .unwrap()
            .len();
    let big_prediction = server::scorer::score_payload("big-0", Some(big.as_bytes()), &model, now)
        .unwrap()
        .len();
    // A batch of one record carries about 100 bytes besides its key and value.
    let predictions_limit = small_prediction + 300;
    assert!(
        big_prediction > predictions_limit + 300,
        "{big_prediction} vs {predictions_limit}"
    );
    // Too small for the big record with its headers; large enough for the headers alone.
    let dead_letters_limit = 1_000;
    assert!(big.len() > dead_letters_limit + 200);

    for (case, dead_letter_limit) in [("a", None), ("b", Some(dead_letters_limit))] {
        let topics = Topics {
            predictions: format!("small-predictions-{case}"),
            dead_letter: format!("small-dead-letters-{case}"),
            input: format!("input-{case}"),
            partitions: 1,
            ..p.kafka.topics.clone()
        };
        let kafka = Kafka {
            topics,
            ..p.kafka.clone()
        };
        kafka
            .ensure_topics(&[(&kafka.topics.input, 1, false)])
            .await
            .unwrap();
        create_limited_topic(&kafka, &kafka.topics.predictions, predictions_limit).await;
        match dead_letter_limit {
            Some(limit) => create_limited_topic(&kafka, &kafka.topics.dead_letter, limit).await,
            None => kafka
                .ensure_topics(&[(&kafka.topics.dead_letter, 1, false)])
                .await
                .unwrap(),
        }
        let (stop_tx, stop) = stop_switch();
        let (_m, models) = tokio::sync::watch::channel(model::Lineup::from(model.clone()));
        let scorer = Scorer::new(kafka.clone(), format!("scorer-refused-{case}"), models);
        let stats = scorer.stats.clone();
        let task = tokio::spawn(scorer.run(stop));

        // One at a time, each after the previous one's outcome: each prediction alone in its batch.
        let producer = kafka.idempotent_producer().unwrap();
        let sends = [
            ("small-0", &small),
            ("big-0", &big),
            ("small-1", &small),
            ("big-1", &big),
            ("small-2", &small),
        ];
        for (i, (key, payload)) in sends.iter().enumerate() {
            producer
                .send(
                    FutureRecord::to(&kafka.topics.input)
                        .key(*key)
                        .payload(payload.as_str()),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            wait_until(
                &format!("case {case}: an outcome for {key}"),
                TIMEOUT,
                || stats.scored.get() + stats.dead_lettered.get() + stats.dropped.get() > i as u64,
            )
            .await;
        }
        let scored = read_topic(&kafka, &kafka.topics.predictions, TIMEOUT, |m| m.len() >= 3);
        assert_eq!(
            scored.iter().map(key_text).collect::<Vec<_>>(),
            ["small-0", "small-1", "small-2"],
            "case {case}"
        );
        let dead = read_topic(&kafka, &kafka.topics.dead_letter, TIMEOUT, |m| m.len() >= 2);
        assert_eq!(
            dead.iter().map(key_text).collect::<Vec<_>>(),
            ["big-0", "big-1"],
            "case {case}: one dead letter each"
        );
        for letter in &dead {
            let reason = header(letter, "dlq.reason").unwrap();
            assert_eq!(
                header(letter, "dlq.source").unwrap(),
                format!(
                    "{}-0-{}",
                    kafka.topics.input,
                    if key_text(letter) == "big-0" { 1 } else { 3 }
                )
            );
            match case {
                "a" => {
                    assert!(
                        reason.contains("the broker refused this record's prediction")
                            && reason.contains("too large"),
                        "{reason}"
                    );
                    assert_eq!(
                        letter.payload(),
                        Some(big.as_bytes()),
                        "the original record, whole"
                    );
                    assert_eq!(header(letter, "dlq.original_size"), None);
                }
                _ => {
                    assert!(
                        reason.contains("the broker refused this dead letter whole"),
                        "{reason}"
                    );
                    assert_eq!(
                        letter.payload().unwrap_or_default(),
                        b"",
                        "no copy fits: none"
                    );
                    assert_eq!(
                        header(letter, "dlq.original_size"),
                        Some(big.len().to_string())
                    );
                }
            }
        }
        assert_eq!(stats.scored.get(), 3);
        assert_eq!(stats.dead_lettered.get(), 2);
        assert_eq!(stats.dropped.get(), 0);
        // Each refusal leads to something smaller: no attempt is doomed to fail again.
        let refusals = stats.produce_errors.get();
        eprintln!("case {case}: {refusals} refusals by the broker for 2 records");
        assert_eq!(refusals, if case == "a" { 2 } else { 4 }, "case {case}");
        stop_tx.cancel();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("stops")
            .unwrap()
            .expect("stops cleanly");
    }
}

/// Under load, with a predictions topic whose `max.message.bytes` is below the producer's batch
/// size: the broker refuses a too-large batch as a whole, so the scorer's batches must stay within
/// the topic's limit, or every good record batched with a too-large one (or with enough others)
/// would be dead-lettered. Only the records whose own prediction is too large are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_on_a_topic_with_a_small_message_limit_dead_letters_only_the_records_too_large_for_it(
) {
    let p = pipeline().await;
    let model = trained_model(22);
    let (small, big) = (good("Small"), good(&"😀".repeat(300)));
    let size = |id: &str, record: &str| {
        server::scorer::score_payload(id, Some(record.as_bytes()), &model, "now")
            .unwrap()
            .len()
    };
    // Room for two small predictions per batch, not for one big one.
    let limit = 2 * size("r-0000", &small) + 300;
    assert!(
        size("r-0000", &big) > limit,
        "{} {limit}",
        size("r-0000", &big)
    );
    let topics = Topics {
        predictions: "limited-predictions".into(),
        input: "burst".into(),
        dead_letter: "burst-dead-letters".into(),
        partitions: 1,
        ..p.kafka.topics.clone()
    };
    let kafka = Kafka {
        topics,
        ..p.kafka.clone()
    };
    kafka
        .ensure_topics(&[
            (&kafka.topics.input, 1, false),
            (&kafka.topics.dead_letter, 1, false),
        ])
        .await
        .unwrap();
    create_limited_topic(&kafka, &kafka.topics.predictions, limit).await;

    // Each refusal costs the idempotent producer about 0.1 s (measured: 2,000 records, 286
    // refused, 35 s), so fewer records here.
    const N: usize = 700;
    let is_big = |i: usize| i % 7 == 3;
    let producer = kafka.idempotent_producer().unwrap();
    let keys: Vec<String> = (0..N).map(|i| format!("r-{i:04}")).collect();
    let sends = keys.iter().enumerate().map(|(i, key)| {
        let payload = if is_big(i) { &big } else { &small };
        producer.send(
            FutureRecord::to(&kafka.topics.input)
                .key(key)
                .payload(payload),
            Duration::from_secs(30),
        )
    });
    for result in futures::future::join_all(sends).await {
        result.unwrap();
    }
    let (stop_tx, stop) = stop_switch();
    let (_m, models) = tokio::sync::watch::channel(model::Lineup::from(model.clone()));
    let scorer = Scorer::new(kafka.clone(), "scorer-burst", models);
    let stats = scorer.stats.clone();
    let task = tokio::spawn(scorer.run(stop));
    wait_until("every record's outcome", TIMEOUT, || {
        stats.scored.get() + stats.dead_lettered.get() + stats.dropped.get() >= N as u64
    })
    .await;
    stop_tx.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("stops")
        .unwrap()
        .expect("stops cleanly");

    let bigs = (0..N).filter(|&i| is_big(i)).count();
    let refusals = stats.produce_errors.get();
    eprintln!(
        "burst of {N} on a topic limited to {limit} bytes: {} scored, {} dead-lettered, {refusals} refusals",
        stats.scored.get(), stats.dead_lettered.get()
    );
    let scored: HashSet<String> = read_topic(&kafka, &kafka.topics.predictions, TIMEOUT, |m| {
        m.len() >= N - bigs
    })
    .iter()
    .map(key_text)
    .collect();
    let expected: HashSet<String> = (0..N)
        .filter(|&i| !is_big(i))
        .map(|i| keys[i].clone())
        .collect();
    assert_eq!(
        scored.len(),
        expected.len(),
        "every small record scored, and only those"
    );
    assert_eq!(scored, expected);
    let dead = read_topic(&kafka, &kafka.topics.dead_letter, TIMEOUT, |m| {
        m.len() >= bigs
    });
    assert_eq!(
        dead.len(),
        bigs,
        "only the records whose prediction is too large are dead-lettered"
    );
    assert!(dead
        .iter()
        .all(|m| is_big(key_text(m)[2..].parse().unwrap())));
    assert!(dead.iter().all(|m| header(m, "dlq.reason")
        .unwrap()
        .contains("the broker refused this record's prediction")));
    assert_eq!(
        refusals as usize, bigs,
        "each big record refused once, alone"
    );
}
