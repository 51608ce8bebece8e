//! The web tier scaled out on the real broker process: several web servers and scorers share one
//! broker, and each web server gets the replies to its own requests on its own reply topic.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use model::synth::{generate_customers, GenerateOptions};
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use server::backend::{BackendOptions, PipelineBackend};
use server::kafka::{partition_count, Kafka, Topics, REPLY_TO_HEADER};
use server::scorer::Scorer;
use server::supervisor::Supervisor;
use tokio::sync::watch;

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(90);

/// The same connection, for reading topics of one partition with `read_topic`.
fn one_partition(kafka: &Kafka) -> Kafka {
    Kafka {
        topics: Topics {
            partitions: 1,
            ..kafka.topics.clone()
        },
        ..kafka.clone()
    }
}

fn keys(messages: &[rdkafka::message::OwnedMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_web_servers_and_three_scorers_each_server_gets_the_replies_to_its_own_requests() {
    const SERVERS: [&str; 3] = ["web-a", "web-b", "web-c"];
    const PER_SERVER: usize = 100;
    let p = pipeline().await;
    let model = trained_model(11);
    let (_model_tx, model_rx) = watch::channel(model::Lineup::from(model.clone()));
    let (stop_tx, stop) = stop_switch();

    let mut scorers = Vec::new();
    let mut scorer_stats = Vec::new();
    let mut scorer_health = Vec::new();
    for _ in 0..3 {
        let scorer = Scorer::new(p.kafka.clone(), "web-tier-scorers", model_rx.clone());
        scorer_stats.push(scorer.stats.clone());
        scorer_health.push(scorer.health.clone());
        scorers.push(tokio::spawn(scorer.run(stop.clone())));
    }
    wait_until(
        "each of the three scorers to hold a partition",
        TIMEOUT,
        || scorer_health.iter().all(|h| h.assigned()),
    )
    .await;

    let backend_stop = CancellationToken::new();
    let mut backend_tasks = Supervisor::new(backend_stop.clone());
    let mut backends = Vec::new();
    for id in SERVERS {
        let options = BackendOptions {
            instance_id: id.into(),
            ..BackendOptions::default()
        };
        let backend = PipelineBackend::start(
            p.kafka.clone(),
            options,
            Arc::default(),
            app::PipelineStatus::default,
            &mut backend_tasks,
        )
        .await
        .unwrap();
        assert_eq!(
            backend.replies().reply_topic(),
            format!("test3-replies-{id}")
        );
        backends.push(backend);
    }
    let health = backend_tasks.health.clone();
    let backend_tasks = tokio::spawn(backend_tasks.run());

    // Load on all three at once: every request of every server in flight together.
    let customers = generate_customers(&GenerateOptions {
        rows: SERVERS.len() * PER_SERVER,
        seed: 12,
        messy_fraction: 0.0,
    });
    let mut requests = Vec::new();
    for (server, backend) in backends.iter().enumerate() {
        for customer in &customers[server * PER_SERVER..(server + 1) * PER_SERVER] {
            let (backend, record) = (backend.clone(), customer.to_raw());
            requests.push((
                server,
                tokio::spawn(async move { app::predict_record(&*backend, record).await }),
            ));
        }
    }
    let mut answered: Vec<HashSet<String>> = vec![HashSet::new(); SERVERS.len()];
    for (server, request) in requests {
        let reply = request.await.unwrap().unwrap_or_else(|e| {
            panic!(
                "{}: a request failed (none may time out): {e}",
                SERVERS[server]
            )
        });
        assert_eq!(reply.prediction.model_version, model.version);
        assert!(
            reply.prediction.id.starts_with("web-"),
            "{}",
            reply.prediction.id
        );
        answered[server].insert(reply.prediction.id);
    }
    let all: HashSet<String> = answered.iter().flatten().cloned().collect();
    assert_eq!(
        all.len(),
        SERVERS.len() * PER_SERVER,
        "every request got its own prediction, no id twice"
    );

    // Each reply topic holds exactly the replies to its own server's requests.
    for (server, backend) in backends.iter().enumerate() {
        let replies = read_topic(
            &one_partition(&p.kafka),
            backend.replies().reply_topic(),
            TIMEOUT,
            |m| m.len() >= PER_SERVER,
        );
        let on_topic: HashSet<String> = keys(&replies).into_iter().collect();
        assert_eq!(
            on_topic, answered[server],
            "{}'s reply topic holds its own replies and no other's",
            SERVERS[server]
        );
    }
    // The predictions topic has them all, and so has every server's live feed.
    let predictions = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        all.is_subset(&predictions_by_id(m).into_keys().collect())
    });
    assert!(all.is_subset(&predictions_by_id(&predictions).into_keys().collect()));
    for (server, backend) in backends.iter().enumerate() {
        wait_until(
            &format!("{}'s live feed to show every prediction", SERVERS[server]),
            TIMEOUT,
            || {
                let csv = backend.live().export_csv(5.0);
                all.iter().all(|id| csv.contains(id.as_str()))
            },
        )
        .await;
    }
    for (i, stats) in scorer_stats.iter().enumerate() {
        eprintln!("scorer {i}: {} scored", stats.scored.get());
    }

    assert!(
        health.failures().is_empty(),
        "no task of the web servers failed: {:?}",
        health.failures()
    );

    stop_tx.cancel();
    backend_stop.cancel();
    for scorer in scorers {
        scorer.await.unwrap().unwrap();
    }
    // A task that ends at the stop may be taken for one that ended early (the supervisor's wait
    // races the two); what matters here is that every task ended in time.
    if let Err(e) = backend_tasks.await.unwrap() {
        assert!(e.to_string().contains("ended unexpectedly"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reply_to_that_is_not_a_reply_topic_is_ignored_and_its_record_still_scored() {
    let p = pipeline().await;
    let topics = p.kafka.topics.clone();
    let control = topics.reply_topic("control");
    p.kafka.ensure_reply_topic(&control).await.unwrap();
    let hostile = [
        topics.models.clone(),
        topics.predictions.clone(),
        topics.input.clone(),
        topics.dead_letter.clone(),
        "test3-replies-x/../".into(),
        "test3-replies-".into(),
        format!("{control} "),
        "../../churn-models".into(),
    ];
    // A legal reply topic that does not exist: the reply fails, without creating it or holding
    // the scorer up.
    let missing = topics.reply_topic("nobody");
    let producer = p.kafka.idempotent_producer().unwrap();
    let record = serde_json::to_vec(&trained_customer()).unwrap();
    let mut sent = Vec::new();
    for (i, reply_to) in hostile.iter().chain([&missing, &control]).enumerate() {
        let key = format!("r-{i}");
        let headers = OwnedHeaders::new().insert(Header {
            key: REPLY_TO_HEADER,
            value: Some(reply_to.as_str()),
        });
        producer
            .send(
                FutureRecord::to(&topics.input)
                    .key(&key)
                    .payload(&record)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        sent.push(key);
    }
    // Not UTF-8 at all.
    let headers = OwnedHeaders::new().insert(Header {
        key: REPLY_TO_HEADER,
        value: Some(&[0xff, 0xfe][..]),
    });
    producer
        .send(
            FutureRecord::to(&topics.input)
                .key("r-bytes")
                .payload(&record)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    sent.push("r-bytes".into());

    let (stop_tx, stop) = stop_switch();
    let (_model_tx, model_rx) = watch::channel(model::Lineup::from(trained_model(13)));
    let task = tokio::spawn(Scorer::new(p.kafka.clone(), "scorer-reply-to", model_rx).run(stop));

    let scored = read_topic(&p.kafka, &topics.predictions, TIMEOUT, |m| {
        predictions_by_id(m).len() >= sent.len()
    });
    let mut copies: HashMap<String, usize> = HashMap::new();
    for key in keys(&scored) {
        *copies.entry(key).or_default() += 1;
    }
    for key in &sent {
        assert_eq!(
            copies.get(key),
            Some(&1),
            "{key} is scored, once (a reply to the predictions topic would be a second copy)"
        );
    }
    let control_replies = read_topic(&one_partition(&p.kafka), &control, TIMEOUT, |m| {
        !m.is_empty()
    });
    assert_eq!(
        keys(&control_replies),
        vec![format!("r-{}", hostile.len() + 1)],
        "only the record that named it"
    );

    // Nothing was written anywhere else.
    let quiet = Duration::from_secs(3);
    let models = read_topic(&one_partition(&p.kafka), &topics.models, quiet, |_| false);
    assert!(models.is_empty(), "the models topic: {:?}", keys(&models));
    let dead = read_topic(&p.kafka, &topics.dead_letter, quiet, |_| false);
    assert!(dead.is_empty(), "the dead-letter topic: {:?}", keys(&dead));
    let input = read_topic(&p.kafka, &topics.input, quiet, |_| false);
    assert_eq!(
        input.len(),
        sent.len(),
        "the input topic: {:?}",
        keys(&input)
    );
    let probe: BaseConsumer = p.kafka.consumer_config("probe", &[]).create().unwrap();
    let found = tokio::task::spawn_blocking(move || {
        partition_count(&probe, &missing, Duration::from_secs(10))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(found, 0, "a reply to a missing topic does not create it");

    stop_tx.cancel();
    task.await.unwrap().unwrap();
}

/// A valid input record, as the web server sends it.
fn trained_customer() -> model::RawCustomer {
    let mut customer = generate_customers(&GenerateOptions {
        rows: 1,
        seed: 14,
        messy_fraction: 0.0,
    })
    .remove(0);
    customer.churn = None;
    customer.to_raw()
}
