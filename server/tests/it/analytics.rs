//! Stream analytics on the real broker: the stats topic reports the numbers the replayed file
//! implies, per segment, with two scorer instances sharing the stream and no double counting;
//! and the Prometheus counters match the records replayed; the dashboard's reader skips garbage
//! on the stats topic and reads every partition the broker reports.
//!
//! Over 400 lines: four end-to-end scenarios on one broker, each read best as one story; they
//! share only the helpers at the top.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use model::analytics::{QualityCounts, SegmentCounts, Totals, WindowPartial};
use model::segments::Segments;
use model::synth::{generate_csv, generate_customers, GenerateOptions};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use server::analytics::{self, AnalyzeOptions};
use server::csv_io::CustomerCsv;
use server::health::Health;
use server::metrics::PipelineMetrics;
use server::replay::{replay, ReplayOptions};
use server::scorer::Scorer;
use server::stats_view::{follow_stats, StatsView};

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// The stats topic's messages added up as the dashboard does; every one must be a sound partial.
fn view_of(messages: &[OwnedMessage]) -> Totals {
    let mut view = StatsView::default();
    let now = chrono::Utc::now().timestamp_millis();
    for m in messages {
        view.read(m.payload().unwrap(), now)
            .expect("the processor publishes sound partials");
    }
    view.totals_since(i64::MIN)
}

/// Samples each scorer's `assigned` flag until stopped: which ones held partitions at some point.
fn watch_assignments(
    health: &[Arc<Health>],
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Vec<bool>> {
    let health = health.to_vec();
    tokio::spawn(async move {
        let mut held = vec![false; health.len()];
        while !stop.is_cancelled() {
            for (held, h) in held.iter_mut().zip(&health) {
                *held |= h.assigned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        held
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn window_stats_match_the_replayed_file_with_two_scorers_and_metrics_count_every_record() {
    let p = pipeline().await;
    const N: usize = 600;
    let csv = p.csv(N, 21);
    let model = trained_model(21);

    // What the stats must say: every customer of the file, scored offline, by segment.
    let (customers, bad) = CustomerCsv::open(&csv).unwrap().customers();
    assert!(bad.is_empty());
    let mut expected: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    // Tenure is measured at scoring time: the scorers score within seconds of now.
    let now = chrono::Utc::now().naive_utc();
    for customer in &customers {
        let churn = model.score(customer, now).churn;
        for key in Segments::of(customer, now).keys() {
            let e = expected.entry(key).or_default();
            e.0 += 1;
            e.1 += u64::from(churn);
        }
    }

    let (stop_tx, stop) = stop_switch();
    let (_model_tx, models) = tokio::sync::watch::channel(model::Lineup::from(model.clone()));
    let metrics = [
        Arc::new(PipelineMetrics::default()),
        Arc::new(PipelineMetrics::default()),
    ];
    let health = [Arc::new(Health::default()), Arc::new(Health::default())];
    let scorers: Vec<_> = metrics
        .iter()
        .zip(&health)
        .map(|(m, h)| {
            let scorer = Scorer::new(p.kafka.clone(), "scorer-stats", models.clone())
                .with_metrics(m.clone())
                .with_health(h.clone());
            tokio::spawn(scorer.run(stop.clone()))
        })
        .collect();
    let (held_tx, held_stop) = stop_switch();
    let held = watch_assignments(&health, held_stop);
    let options = AnalyzeOptions {
        window: Duration::from_secs(1),
        lateness: Duration::from_millis(500),
        ..Default::default()
    };
    let analytics = tokio::spawn(analytics::run(
        p.kafka.clone(),
        options,
        models.clone(),
        stop.clone(),
    ));
    let replay_options = ReplayOptions {
        file: csv,
        rate: 300.0,
        repeat: false,
        limit: None,
        id_prefix: "s".into(),
        show_progress: false,
    };
    let (_never, no_stop) = stop_switch();
    assert_eq!(
        replay(&p.kafka, &replay_options, no_stop)
            .await
            .unwrap()
            .sent,
        N as u64
    );

    let messages = read_topic(&p.kafka, &p.kafka.topics.stats, TIMEOUT, |m| {
        view_of(m).segment("all").count >= N as u64
    });
    let totals = view_of(&messages);
    assert_eq!(
        totals.segment("all").count,
        N as u64,
        "every prediction counted once, by two scorers and per-partition windows"
    );
    let reported: BTreeMap<String, (u64, u64)> = totals
        .segments
        .keys()
        .map(|key| {
            let s = totals.segment(key);
            (key.clone(), (s.count, s.churn_predicted))
        })
        .collect();
    assert_eq!(
        reported, expected,
        "per-segment counts and predicted churners"
    );
    let quality = &totals.quality()[&model.version];
    assert_eq!(
        quality.labelled, N as u64,
        "every replayed record carried its outcome"
    );
    assert!(quality.roc_auc > 0.7, "live ROC-AUC {}", quality.roc_auc);
    assert!(
        totals.drift().is_some(),
        "drift measured against the model's training scores"
    );

    // The Prometheus exposition of both scorers, parsed, adds up to the records replayed.
    let mut scored = 0.0;
    for m in &metrics {
        let text = m.render();
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        for sample in scrape
            .samples
            .iter()
            .filter(|s| s.metric == "churn_records_scored_total")
        {
            if let prometheus_parse::Value::Counter(v) = sample.value {
                scored += v;
            }
        }
    }
    assert!(
        scored >= N as f64,
        "scored {scored} of {N} (duplicates allowed, none missing)"
    );
    held_tx.cancel();
    assert_eq!(
        held.await.unwrap(),
        [true, true],
        "both scorers held partitions while the file streamed"
    );

    stop_tx.cancel();
    for s in scorers {
        s.await.unwrap().unwrap();
    }
    analytics.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outcomes_arriving_later_on_the_labels_topic_join_their_predictions_across_a_restart() {
    let p = pipeline().await;
    const N: usize = 300;
    let model = trained_model(41);
    let options = GenerateOptions {
        rows: N,
        seed: 41,
        messy_fraction: 0.0,
    };
    // The file carries no outcomes: they arrive later, on their own topic.
    let csv = p.dir.path().join("no-labels.csv");
    let text: String = generate_csv(&options)
        .lines()
        .map(|l| format!("{}\n", l.rsplit_once(',').unwrap().0))
        .collect();
    std::fs::write(&csv, text).unwrap();
    let customers = generate_customers(&options);

    let (stop_tx, stop) = stop_switch();
    let (_model_tx, models) = tokio::sync::watch::channel(model::Lineup::from(model.clone()));
    let scorer = tokio::spawn(
        Scorer::new(p.kafka.clone(), "scorer-labels", models.clone()).run(stop.clone()),
    );
    let window = AnalyzeOptions {
        window: Duration::from_secs(1),
        lateness: Duration::from_millis(500),
        ..Default::default()
    };
    let (first_stop_tx, first_stop) = stop_switch();
    let first = tokio::spawn(analytics::run(
        p.kafka.clone(),
        window.clone(),
        models.clone(),
        first_stop,
    ));
    let replay_options = ReplayOptions {
        file: csv,
        rate: 0.0,
        repeat: false,
        limit: None,
        id_prefix: "lab".into(),
        show_progress: false,
    };
    let (_never, no_stop) = stop_switch();
    replay(&p.kafka, &replay_options, no_stop).await.unwrap();
    let counted = view_of;
    read_topic(&p.kafka, &p.kafka.topics.stats, TIMEOUT, |m| {
        counted(m).segment("all").count >= N as u64
    });

    // The analytics processor restarts; only then do the outcomes arrive.
    first_stop_tx.cancel();
    first.await.unwrap().unwrap();
    let second = tokio::spawn(analytics::run(
        p.kafka.clone(),
        window,
        models,
        stop.clone(),
    ));
    let producer = p.kafka.idempotent_producer().unwrap();
    let mut expected = model::quality::Confusion::default();
    for (i, customer) in customers.iter().enumerate() {
        let actual = customer.churn.unwrap();
        expected.count(
            model.score(customer, chrono::Utc::now().naive_utc()).churn,
            actual,
        );
        let (key, payload) = (
            format!("lab-0-{}", i + 2),
            format!(r#"{{"Churn": {}}}"#, u8::from(actual)),
        );
        producer
            .send(
                FutureRecord::to(&p.kafka.topics.labels)
                    .key(&key)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let labelled = |m: &[OwnedMessage]| {
        counted(m)
            .quality()
            .get(&model.version)
            .map_or(0, |q| q.labelled)
    };
    let messages = read_topic(&p.kafka, &p.kafka.topics.stats, TIMEOUT, |m| {
        labelled(m) >= N as u64
    });
    let totals = counted(&messages);
    assert_eq!(
        totals.quality[&model.version].confusion, expected,
        "every outcome joined to its prediction once"
    );

    stop_tx.cancel();
    scorer.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
}

/// One window of one partition with `count` records, as a processor would publish it.
fn partial(start_ms: i64, partition: i32, count: u64) -> WindowPartial {
    WindowPartial {
        window_start_ms: start_ms,
        window_ms: 1_000,
        partition,
        revision: 0,
        segments: BTreeMap::from([(
            "all".to_owned(),
            SegmentCounts {
                count,
                churn_predicted: 0,
                sum_probability: 0.0,
            },
        )]),
        drift_version: None,
        drift_bins: vec![],
        quality: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_on_the_stats_topic_does_not_stop_the_dashboard_from_counting_the_real_windows() {
    let p = pipeline().await;
    let topic = &p.kafka.topics.stats;
    let now = chrono::Utc::now().timestamp_millis() / 1_000 * 1_000;
    let mut short = partial(now - 3_000, 0, 4);
    short.quality.insert(
        "m".into(),
        QualityCounts {
            churner_bins: vec![1, 2],
            ..Default::default()
        },
    );
    let far_future = partial(now + 365 * 86_400_000, 1, 1_000);
    let messages: Vec<(i32, Vec<u8>)> = vec![
        (0, serde_json::to_vec(&partial(now - 2_000, 0, 5)).unwrap()),
        (0, b"not json at all".to_vec()),
        (1, serde_json::to_vec(&short).unwrap()),
        (1, serde_json::to_vec(&far_future).unwrap()),
        (2, br#"{"window_start_ms": 0}"#.to_vec()),
        (2, serde_json::to_vec(&partial(now - 2_000, 2, 7)).unwrap()),
    ];
    let producer = p.kafka.idempotent_producer().unwrap();
    for (i, (partition, payload)) in messages.iter().enumerate() {
        let key = i.to_string();
        let record = FutureRecord::to(topic)
            .partition(*partition)
            .key(&key)
            .payload(payload);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
    }

    let view = Arc::new(Mutex::new(StatsView::default()));
    let (stop_tx, stop) = stop_switch();
    let follower = tokio::spawn(follow_stats(p.kafka.clone(), view.clone(), stop));
    let counted = || {
        view.lock()
            .unwrap()
            .totals_since(i64::MIN)
            .segment("all")
            .count
    };
    wait_until("the real windows counted", TIMEOUT, || counted() == 12).await;
    wait_until("every bad message seen", TIMEOUT, || {
        let v = view.lock().unwrap();
        (v.malformed, v.future_dated) == (3, 1)
    })
    .await;
    let dashboard = view.lock().unwrap().dashboard(now, &[], vec![]);
    assert_eq!(
        dashboard
            .windows
            .iter()
            .map(|w| w.count)
            .collect::<Vec<_>>(),
        vec![12],
        "one window, both partitions"
    );

    // More real windows keep arriving, and are counted: the reader did not stop.
    let later = serde_json::to_vec(&partial(now - 1_000, 1, 3)).unwrap();
    producer
        .send(
            FutureRecord::to(topic)
                .partition(1)
                .key("later")
                .payload(&later),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    wait_until("the later window counted", TIMEOUT, || counted() == 15).await;

    stop_tx.cancel();
    follower.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_reads_the_partitions_the_broker_reports_not_the_configured_count() {
    let mut p = pipeline().await;
    // A stats topic that does not exist yet, and will have more partitions than configured.
    p.kafka.topics.stats = "churn-stats-wide".into();
    let view = Arc::new(Mutex::new(StatsView::default()));
    let (stop_tx, stop) = stop_switch();
    let follower = tokio::spawn(follow_stats(p.kafka.clone(), view.clone(), stop));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let wide = p.kafka.topics.partitions + 2;
    p.kafka
        .ensure_topics(&[(&p.kafka.topics.stats, wide, true)])
        .await
        .unwrap();

    let now = chrono::Utc::now().timestamp_millis() / 1_000 * 1_000;
    let producer = p.kafka.idempotent_producer().unwrap();
    for partition in 0..wide {
        let payload = serde_json::to_vec(&partial(now - 1_000, partition, 1)).unwrap();
        let record = FutureRecord::to(&p.kafka.topics.stats)
            .partition(partition)
            .key("w")
            .payload(&payload);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
    }
    let counted = || {
        view.lock()
            .unwrap()
            .totals_since(i64::MIN)
            .segment("all")
            .count
    };
    wait_until("a window from every partition", TIMEOUT, || {
        counted() == wide as u64
    })
    .await;

    stop_tx.cancel();
    follower.await.unwrap().unwrap();
}
