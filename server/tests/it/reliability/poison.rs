//! A flood of poison between good records.

use std::collections::HashSet;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use server::scorer::Scorer;

use super::*;

/// Ten kinds of garbage a real topic sees.
fn poison(rng: &mut impl Rng, i: usize) -> Vec<u8> {
    let good = r#"{"Names":"P","Age":40,"Total_Purchase":100,"Account_Manager":1,"Years":3,"Num_Sites":8,"Onboard_date":"2010-01-01 00:00:00","Location":"x","Company":"y"}"#;
    match i % 10 {
        0 => (0..rng.gen_range(1..200)).map(|_| rng.gen()).collect(),
        1 => good.as_bytes()[..rng.gen_range(1..good.len() - 1)].to_vec(),
        2 => good
            .replace(
                r#""Names":"P""#,
                &format!(r#""Names":"{}""#, "N".repeat(50_000)),
            )
            .into_bytes(),
        3 => good.replace(r#""Age":40"#, r#""Age":[40]"#).into_bytes(),
        4 => good.replace(r#""Age":40"#, r#""Age":"NaN""#).into_bytes(),
        5 => good
            .replace(r#""Total_Purchase":100"#, r#""Total_Purchase":1e999"#)
            .into_bytes(),
        6 => good
            .replace(
                r#""Age":40"#,
                &format!(r#""Age":{}"#, -rng.gen_range(1..1_000_000)),
            )
            .into_bytes(),
        7 => br#"{"name":"P","age":40,"churn":"maybe","unknown":{"a":1}}"#.to_vec(),
        8 => format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)).into_bytes(),
        _ => good
            .replace(r#""Num_Sites":8"#, r#""Num_Sites":"inf""#)
            .into_bytes(),
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
    let poison_keys: HashSet<String> = sends
        .iter()
        .filter(|(k, _)| k.starts_with("poison"))
        .map(|(k, _)| k.clone())
        .collect();
    let good_keys: HashSet<String> = sends
        .iter()
        .filter(|(k, _)| k.starts_with("good"))
        .map(|(k, _)| k.clone())
        .collect();
    futures::future::join_all(sends.iter().map(|(k, v)| {
        producer.send(
            FutureRecord::to(&topic)
                .key(k.as_str())
                .payload(v.as_slice()),
            Duration::from_secs(30),
        )
    }))
    .await
    .into_iter()
    .for_each(|r| assert!(r.is_ok()));

    let (stop_tx, stop) = stop_switch();
    let (_m, models) = tokio::sync::watch::channel(model::Lineup::from(trained_model(4)));
    let task = tokio::spawn(Scorer::new(p.kafka.clone(), "scorer-poison", models).run(stop));

    let dead = read_topic(&p.kafka, &p.kafka.topics.dead_letter, TIMEOUT, |m| {
        m.iter()
            .filter_map(|m| m.key())
            .collect::<HashSet<_>>()
            .len()
            >= poison_keys.len()
    });
    let dead_keys: HashSet<String> = dead
        .iter()
        .map(|m| String::from_utf8_lossy(m.key().unwrap()).into_owned())
        .collect();
    assert_eq!(
        dead_keys, poison_keys,
        "every poison record is dead-lettered"
    );
    assert!(
        dead.iter()
            .all(|m| header(m, "dlq.reason").is_some_and(|r| !r.is_empty())),
        "each with a reason"
    );
    let scored = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        predictions_by_id(m).len() >= good_keys.len()
    });
    assert_eq!(
        predictions_by_id(&scored)
            .into_keys()
            .collect::<HashSet<_>>(),
        good_keys,
        "every good record is scored"
    );
    stop_tx.cancel();
    task.await
        .unwrap()
        .expect("the scorer never panicked and stopped cleanly");
}
