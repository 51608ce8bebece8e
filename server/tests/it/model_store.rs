//! Live model updates on the real broker: publish a model while the stream flows, and every
//! later prediction carries the new version, with no record lost or unscored.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::Message;
use server::model_store::{follow, publish, Followed, ModelTrust};
use server::replay::{replay, ReplayOptions};
use server::scorer::Scorer;

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_published_model_replaces_the_running_one_without_losing_records() {
    let p = pipeline().await;
    let (model_a, model_b) = (trained_model(1), trained_model(2));
    assert_ne!(model_a.version, model_b.version);
    publish(&p.kafka, &model_a).await.unwrap();

    // At start the newest published model wins over the local file.
    let (stop_tx, stop) = stop_switch();
    let (Followed { lineup: models, .. }, follower) = follow(
        &p.kafka,
        Some((*model_b).clone()),
        ModelTrust::default(),
        stop.clone(),
    )
    .await
    .unwrap();
    // The caller runs the follow task (the commands hand it to their supervisor).
    let follower = tokio::spawn(follower);
    assert_eq!(models.borrow().champion.version, model_a.version);

    const N: usize = 2000;
    let csv = p.csv(N, 4);
    let kafka = p.kafka.clone();
    let stream_stop = stop.clone();
    let producer = tokio::spawn(async move {
        let options = ReplayOptions {
            file: csv,
            rate: 800.0,
            repeat: false,
            limit: None,
            id_prefix: "swap".into(),
            show_progress: false,
        };
        replay(&kafka, &options, stream_stop).await
    });
    let scorer = Scorer::new(p.kafka.clone(), "scorer-swap", models.clone());
    let stats = scorer.stats.clone();
    let task = tokio::spawn(scorer.run(stop.clone()));

    wait_until("part of the stream to be scored with A", TIMEOUT, || {
        stats.scored.get() >= 300
    })
    .await;
    publish(&p.kafka, &model_b).await.unwrap();
    let mut watching = models.clone();
    tokio::time::timeout(
        TIMEOUT,
        watching.wait_for(|m| m.champion.version == model_b.version),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(producer.await.unwrap().unwrap().sent, N as u64);

    let messages = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        predictions_by_id(m).len() >= N
    });
    let by_id = predictions_by_id(&messages);
    let expected: HashSet<String> = (2..N + 2).map(|line| format!("swap-0-{line}")).collect();
    assert_eq!(
        by_id.keys().cloned().collect::<HashSet<_>>(),
        expected,
        "no record lost or unscored"
    );

    // Per partition, in offset order: A's predictions, then only B's.
    let mut versions: HashMap<i32, Vec<String>> = HashMap::new();
    for m in &messages {
        let prediction: model::Prediction = serde_json::from_slice(m.payload().unwrap()).unwrap();
        versions
            .entry(m.partition())
            .or_default()
            .push(prediction.model_version);
    }
    let mut saw = HashSet::new();
    for sequence in versions.values() {
        let first_b = sequence
            .iter()
            .position(|v| *v == model_b.version)
            .unwrap_or(sequence.len());
        assert!(
            sequence[first_b..].iter().all(|v| *v == model_b.version),
            "no A after B in a partition"
        );
        saw.extend(sequence.iter().cloned());
    }
    assert_eq!(
        saw,
        HashSet::from([model_a.version.clone(), model_b.version.clone()])
    );

    stop_tx.cancel();
    task.await.unwrap().unwrap();
    follower.await.unwrap().unwrap();
}

/// From the topic, as from a file: a model edited after training, signed with another key or
/// stripped of its signature is refused and counted, and the model in use stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_that_do_not_verify_are_refused_from_the_topic() {
    let p = pipeline().await;
    let key = model::SigningKey::from_bytes(vec![7; 32]).unwrap();
    let other_key = model::SigningKey::from_bytes(vec![8; 32]).unwrap();
    let signed = |seed| {
        let mut model = (*trained_model(seed)).clone();
        model.sign(&key);
        model
    };
    let (good, newer) = (signed(1), signed(2));
    // Each refused one has a version of its own, so a swap to it could not go unnoticed.
    let mut weight = good.clone();
    weight.features[0].coefficient += 1.0;
    weight.version = "m-edited-weight".into();
    let mut threshold = good.clone();
    threshold.threshold = 0.01;
    threshold.version = "m-edited-threshold".into();
    let mut other = newer.clone();
    other.version = "m-other-key".into();
    other.sign(&other_key);
    let mut stripped = newer.clone();
    stripped.version = "m-stripped".into();
    stripped.seal();

    for model in [&good, &weight, &other] {
        publish(&p.kafka, model).await.unwrap();
    }
    let trust = ModelTrust::signed_by(key.clone());
    let (stop_tx, stop) = stop_switch();
    let (Followed { lineup: models, .. }, follower) =
        follow(&p.kafka, None, trust.clone(), stop.clone())
            .await
            .unwrap();
    assert_eq!(
        models.borrow().champion.version,
        good.version,
        "the newest that verifies"
    );
    assert_eq!(trust.refused(), 2);
    let follower = tokio::spawn(follower);

    for model in [&threshold, &stripped] {
        publish(&p.kafka, model).await.unwrap();
    }
    wait_until("both to be refused", TIMEOUT, || trust.refused() >= 4).await;
    assert_eq!(
        models.borrow().champion.version,
        good.version,
        "the model in use stays"
    );

    publish(&p.kafka, &newer).await.unwrap();
    let mut watching = models.clone();
    tokio::time::timeout(
        TIMEOUT,
        watching.wait_for(|m| m.champion.version == newer.version),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(trust.refused(), 4);

    // Without a key, the hash is still checked: the edited ones stay out, the signed ones are in.
    let hash_only = ModelTrust::default();
    let (Followed { lineup: models, .. }, no_follower) =
        follow(&p.kafka, None, hash_only.clone(), stop.clone())
            .await
            .unwrap();
    assert_eq!(models.borrow().champion.version, newer.version);
    assert_eq!(hash_only.refused(), 2, "the two edited models");
    drop(no_follower);

    stop_tx.cancel();
    follower.await.unwrap().unwrap();
}
