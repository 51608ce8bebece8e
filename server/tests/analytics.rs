//! Stream analytics on the real broker: the stats topic reports the numbers the replayed file
//! implies, per segment, with two scorer instances sharing the stream and no double counting;
//! and the Prometheus counters match the records replayed.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use model::analytics::WindowPartial;
use model::segments::Segments;
use model::synth::{generate_csv, generate_customers, GenerateOptions};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use server::analyze::{self, AnalyzeOptions};
use server::csv_io::CustomerCsv;
use server::dashboard::StatsView;
use server::metrics::PipelineMetrics;
use server::replay::{replay, ReplayOptions};
use server::scorer::Scorer;

const TIMEOUT: Duration = Duration::from_secs(120);

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
    for customer in &customers {
        let churn = model.score(customer).churn;
        for key in Segments::of(customer, model.reference_date).keys() {
            let e = expected.entry(key).or_default();
            e.0 += 1;
            e.1 += u64::from(churn);
        }
    }

    let (stop_tx, stop) = stop_switch();
    let (_model_tx, models) = tokio::sync::watch::channel(model.clone());
    let metrics = [Arc::new(PipelineMetrics::default()), Arc::new(PipelineMetrics::default())];
    let scorers: Vec<_> = metrics
        .iter()
        .map(|m| {
            let scorer = Scorer::new(p.kafka.clone(), "scorer-stats", models.clone()).with_metrics(m.clone());
            tokio::spawn(scorer.run(stop.clone()))
        })
        .collect();
    let options = AnalyzeOptions { window: Duration::from_secs(1), lateness: Duration::from_millis(500), ..Default::default() };
    let analytics = tokio::spawn(analyze::run(p.kafka.clone(), options, models.clone(), stop.clone()));
    let replay_options = ReplayOptions { file: csv, rate: 300.0, repeat: false, limit: None, id_prefix: "s".into(), show_progress: false };
    let (_never, no_stop) = stop_switch();
    assert_eq!(replay(&p.kafka, &replay_options, no_stop).await.unwrap().sent, N as u64);

    let view_of = |messages: &[rdkafka::message::OwnedMessage]| {
        let mut view = StatsView::default();
        for m in messages {
            view.apply(serde_json::from_slice::<WindowPartial>(m.payload().unwrap()).unwrap());
        }
        view.totals_since(i64::MIN)
    };
    let messages = read_topic(&p.kafka, &p.kafka.topics.stats, TIMEOUT, |m| view_of(m).segment("all").count >= N as u64);
    let totals = view_of(&messages);
    assert_eq!(totals.segment("all").count, N as u64, "every prediction counted once, by two scorers and per-partition windows");
    let reported: BTreeMap<String, (u64, u64)> = totals
        .segments
        .keys()
        .map(|key| {
            let s = totals.segment(key);
            (key.clone(), (s.count, s.churn_predicted))
        })
        .collect();
    assert_eq!(reported, expected, "per-segment counts and predicted churners");
    let quality = &totals.quality()[&model.version];
    assert_eq!(quality.labelled, N as u64, "every replayed record carried its outcome");
    assert!(quality.roc_auc > 0.7, "live ROC-AUC {}", quality.roc_auc);
    assert!(totals.drift().is_some(), "drift measured against the model's training scores");

    // The Prometheus exposition of both scorers, parsed, adds up to the records replayed.
    let mut scored = 0.0;
    for m in &metrics {
        let text = m.render();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        for sample in scrape.samples.iter().filter(|s| s.metric == "churn_records_scored_total") {
            if let prometheus_parse::Value::Counter(v) = sample.value {
                scored += v;
            }
        }
    }
    assert!(scored >= N as f64, "scored {scored} of {N} (duplicates allowed, none missing)");

    stop_tx.send(true).unwrap();
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
    let options = GenerateOptions { rows: N, seed: 41, messy_fraction: 0.0 };
    // The file carries no outcomes: they arrive later, on their own topic.
    let csv = p.dir.path().join("no-labels.csv");
    let text: String = generate_csv(&options).lines().map(|l| format!("{}\n", l.rsplit_once(',').unwrap().0)).collect();
    std::fs::write(&csv, text).unwrap();
    let customers = generate_customers(&options);

    let (stop_tx, stop) = stop_switch();
    let (_model_tx, models) = tokio::sync::watch::channel(model.clone());
    let scorer = tokio::spawn(Scorer::new(p.kafka.clone(), "scorer-labels", models.clone()).run(stop.clone()));
    let window = AnalyzeOptions { window: Duration::from_secs(1), lateness: Duration::from_millis(500), ..Default::default() };
    let (first_stop_tx, first_stop) = stop_switch();
    let first = tokio::spawn(analyze::run(p.kafka.clone(), window.clone(), models.clone(), first_stop));
    let replay_options = ReplayOptions { file: csv, rate: 0.0, repeat: false, limit: None, id_prefix: "lab".into(), show_progress: false };
    let (_never, no_stop) = stop_switch();
    replay(&p.kafka, &replay_options, no_stop).await.unwrap();
    let counted = |messages: &[rdkafka::message::OwnedMessage]| {
        let mut view = StatsView::default();
        for m in messages {
            view.apply(serde_json::from_slice::<WindowPartial>(m.payload().unwrap()).unwrap());
        }
        view.totals_since(i64::MIN)
    };
    read_topic(&p.kafka, &p.kafka.topics.stats, TIMEOUT, |m| counted(m).segment("all").count >= N as u64);

    // The analytics processor restarts; only then do the outcomes arrive.
    first_stop_tx.send(true).unwrap();
    first.await.unwrap().unwrap();
    let second = tokio::spawn(analyze::run(p.kafka.clone(), window, models, stop.clone()));
    let producer = p.kafka.idempotent_producer().unwrap();
    let mut expected = model::metrics::Confusion::default();
    for (i, customer) in customers.iter().enumerate() {
        let actual = customer.churn.unwrap();
        expected.count(model.score(customer).churn, actual);
        let (key, payload) = (format!("lab-0-{}", i + 2), format!(r#"{{"Churn": {}}}"#, u8::from(actual)));
        producer.send(FutureRecord::to(&p.kafka.topics.labels).key(&key).payload(&payload), Duration::from_secs(10)).await.unwrap();
    }
    let labelled = |m: &[rdkafka::message::OwnedMessage]| counted(m).quality().get(&model.version).map_or(0, |q| q.labelled);
    let messages = read_topic(&p.kafka, &p.kafka.topics.stats, TIMEOUT, |m| labelled(m) >= N as u64);
    let totals = counted(&messages);
    assert_eq!(totals.quality[&model.version].confusion, expected, "every outcome joined to its prediction once");

    stop_tx.send(true).unwrap();
    scorer.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
}
