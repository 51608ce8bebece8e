//! The pipeline end to end on the real broker process: replay -> scorer -> predictions and
//! dead letters.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use server::replay::{replay, ReplayOptions};
use server::scorer::Scorer;

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(90);

fn replay_options(file: std::path::PathBuf, prefix: &str) -> ReplayOptions {
    ReplayOptions {
        file,
        rate: 0.0,
        repeat: false,
        limit: None,
        id_prefix: prefix.into(),
        show_progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_replayed_record_gets_exactly_one_id_on_the_predictions_topic() {
    let p = pipeline().await;
    const N: usize = 300;
    let csv = p.csv(N, 1);
    let model = trained_model(1);
    let (stop_tx, stop) = stop_switch();

    let summary = replay(&p.kafka, &replay_options(csv, "t1"), stop.clone())
        .await
        .unwrap();
    assert_eq!(summary.sent, N as u64);

    let (_model_tx, model_rx) = tokio::sync::watch::channel(model::Lineup::from(model.clone()));
    let scorer = Scorer::new(p.kafka.clone(), "scorer-t1", model_rx);
    let (stats, health) = (scorer.stats.clone(), scorer.health.clone());
    let task = tokio::spawn(scorer.run(stop.clone()));

    let messages = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        predictions_by_id(m).len() >= N
    });
    let predictions = predictions_by_id(&messages);
    // CSV line numbers: the header is line 1, customers start at line 2.
    let expected: HashSet<String> = (2..N + 2).map(|line| format!("t1-0-{line}")).collect();
    assert_eq!(
        predictions.keys().cloned().collect::<HashSet<_>>(),
        expected
    );
    for prediction in predictions.values() {
        assert!((0.0..=1.0).contains(&prediction.churn_probability));
        assert_eq!(prediction.model_version, model.version);
        assert_eq!(
            prediction.churn,
            prediction.churn_probability >= model.threshold
        );
        assert!(!prediction.top_factors.is_empty());
    }
    assert!(health.assigned());

    // Exactly one: once the scorer has stopped (nothing more on its way), the topic holds N
    // messages for N records, not merely N distinct ids.
    stop_tx.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        stats.scored.get(),
        N as u64,
        "the scorer counted each record once"
    );
    assert_eq!(
        topic_size(&p.kafka, &p.kafka.topics.predictions),
        N as i64,
        "N prediction messages for N records in a clean run"
    );
    let all = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        m.len() >= N
    });
    assert_eq!(
        predictions_by_id(&all).len(),
        N,
        "each for a different record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_go_to_the_dead_letter_topic_and_good_ones_after_them_are_scored() {
    let p = pipeline().await;
    let producer = p.kafka.idempotent_producer().unwrap();
    let good = |name: &str| {
        format!(
            r#"{{"Names":"{name}","Age":42,"Total_Purchase":9000.5,"Account_Manager":0,"Years":5.1,
                "Num_Sites":10,"Onboard_date":"2011-03-04 05:06:07","Location":"1 Main St, AK 1","Company":"X"}}"#
        )
    };
    let poison: [(&str, String, &str); 4] = [
        (
            "bad-json",
            "{\"Names\": \"Ann\", ".into(),
            "not a JSON customer record",
        ),
        (
            "missing-field",
            good("Bo").replace(r#""Num_Sites":10,"#, ""),
            "Num_Sites: is missing",
        ),
        (
            "negative-age",
            good("Cy").replace(r#""Age":42"#, r#""Age":-5"#),
            "Age: must be between",
        ),
        (
            "wrong-type",
            good("Di").replace(r#""Years":5.1"#, r#""Years":"five""#),
            "Years: must be a number",
        ),
    ];
    let topic = p.kafka.topics.input.clone();
    for (key, payload, _) in &poison {
        producer
            .send(
                FutureRecord::to(&topic).key(*key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    for i in 0..5 {
        let (key, payload) = (format!("good-{i}"), good(&format!("Good {i}")));
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    // The original Python producer sends no key: such records still get a stable id.
    let unkeyed = good("No Key");
    producer
        .send(
            FutureRecord::<(), _>::to(&topic).payload(&unkeyed),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let (stop_tx, stop) = stop_switch();
    let (_model_tx, model_rx) = tokio::sync::watch::channel(model::Lineup::from(trained_model(2)));
    let task = tokio::spawn(Scorer::new(p.kafka.clone(), "scorer-t2", model_rx).run(stop));

    let dead = read_topic(&p.kafka, &p.kafka.topics.dead_letter, TIMEOUT, |m| {
        m.len() >= poison.len()
    });
    assert_eq!(dead.len(), poison.len());
    for (key, payload, reason) in &poison {
        let letter = dead
            .iter()
            .find(|m| m.key() == Some(key.as_bytes()))
            .unwrap_or_else(|| panic!("{key} is in the dead-letter topic"));
        assert_eq!(
            letter.payload(),
            Some(payload.as_bytes()),
            "the original bytes are kept"
        );
        let why = header(letter, "dlq.reason").expect("a reason header");
        assert!(why.contains(reason), "{key}: {why}");
        assert!(header(letter, "dlq.source")
            .unwrap()
            .starts_with(&format!("{topic}-")));
    }

    let scored = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        predictions_by_id(m).len() >= 6
    });
    let ids: HashSet<String> = predictions_by_id(&scored).into_keys().collect();
    for i in 0..5 {
        assert!(ids.contains(&format!("good-{i}")), "{ids:?}");
    }
    let unkeyed_id = ids
        .iter()
        .find(|id| !id.starts_with("good-"))
        .expect("the unkeyed record is scored");
    assert!(unkeyed_id.starts_with(&format!("{topic}-")), "{unkeyed_id}");
    assert_eq!(ids.len(), 6);

    stop_tx.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scorer_stopped_mid_stream_and_restarted_leaves_no_record_unscored() {
    let p = pipeline().await;
    const N: usize = 3000;
    let csv = p.csv(N, 3);
    let model = trained_model(3);
    let (_model_tx, model_rx) = tokio::sync::watch::channel(model::Lineup::from(model));
    // The stream arrives while the scorer runs, so stopping it lands mid-stream.
    let (_never, no_stop) = stop_switch();
    let kafka = p.kafka.clone();
    let producer = tokio::spawn(async move {
        replay(
            &kafka,
            &ReplayOptions {
                rate: 2000.0,
                ..replay_options(csv, "t3")
            },
            no_stop,
        )
        .await
    });

    // First scorer: stop it once it has scored part of the stream.
    let (stop_tx, stop) = stop_switch();
    let first = Scorer::new(p.kafka.clone(), "scorer-t3", model_rx.clone());
    let stats = first.stats.clone();
    let task = tokio::spawn(first.run(stop));
    wait_until(
        "the first scorer to score part of the stream",
        TIMEOUT,
        || stats.scored.get() >= 300,
    )
    .await;
    stop_tx.cancel();
    task.await.unwrap().unwrap();
    let scored_by_first = stats.scored.get();
    assert_eq!(producer.await.unwrap().unwrap().sent, N as u64);

    // Second scorer, same group: it resumes from the committed offsets.
    let (stop_tx, stop) = stop_switch();
    let second = Scorer::new(p.kafka.clone(), "scorer-t3", model_rx);
    let second_stats = second.stats.clone();
    let task = tokio::spawn(second.run(stop));
    let messages = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        predictions_by_id(m).len() >= N
    });
    let ids: HashSet<String> = predictions_by_id(&messages).into_keys().collect();
    let expected: HashSet<String> = (2..N + 2).map(|line| format!("t3-0-{line}")).collect();
    assert_eq!(ids, expected, "every record is scored");
    let duplicates = messages.len() - ids.len();
    eprintln!(
        "first scorer: {scored_by_first}, second: {}, duplicates: {duplicates}",
        second_stats.scored.get()
    );
    assert!(
        scored_by_first < N as u64,
        "the first scorer stopped mid-stream"
    );
    // The second scorer resumed from the committed offsets instead of starting over.
    assert!(second_stats.scored.get() < N as u64);

    stop_tx.cancel();
    task.await.unwrap().unwrap();
}

/// Batches are scored in parallel, but each partition's predictions come out in the order its
/// records went in (several batches' worth here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn predictions_keep_the_input_order_within_each_partition() {
    let p = pipeline().await;
    const N: usize = 9_000;
    let csv = p.csv(N, 3);
    let (stop_tx, stop) = stop_switch();
    replay(&p.kafka, &replay_options(csv, "o"), stop.clone())
        .await
        .unwrap();

    let (_model_tx, model_rx) = tokio::sync::watch::channel(model::Lineup::from(trained_model(3)));
    let task =
        tokio::spawn(Scorer::new(p.kafka.clone(), "scorer-order", model_rx).run(stop.clone()));
    let keys_by_partition = |messages: &[rdkafka::message::OwnedMessage]| {
        let mut by_partition: std::collections::BTreeMap<i32, Vec<(i64, Vec<u8>)>> =
            Default::default();
        for m in messages {
            by_partition
                .entry(m.partition())
                .or_default()
                .push((m.offset(), m.key().unwrap().to_vec()));
        }
        by_partition
            .into_values()
            .map(|mut keyed| {
                keyed.sort();
                keyed.into_iter().map(|(_, key)| key).collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let input = read_topic(&p.kafka, &p.kafka.topics.input, TIMEOUT, |m| m.len() >= N);
    let output = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        m.len() >= N
    });
    assert_eq!(output.len(), N, "a clean run scores each record once");
    assert_eq!(keys_by_partition(&output), keys_by_partition(&input));

    stop_tx.cancel();
    task.await.unwrap().unwrap();
}
