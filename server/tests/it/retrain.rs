//! Continuous training on the real broker, and the concept-drift proof end to end: records from
//! before a change in who churns (older than the window), records from after it (half labelled
//! by their own field, half by outcomes on the labels topic), hostile records; `churn retrain`
//! refuses while the window holds too little, then publishes a challenger trained on exactly the
//! drifted records, which ranks the drifted world far better than the frozen champion.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use model::concept_drift::{stream_with_drift, DRIFTED_TRUTH};
use model::lifecycle::EventKind;
use model::quality::roc_auc;
use model::synth::{generate_customers_under, GenerateOptions};
use model::{ChurnModel, Customer, Field, Scalar};
use rdkafka::producer::{FutureProducer, FutureRecord};
use server::kafka::Kafka;
use server::model_store::{follow, publish, Followed, ModelTrust};

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(120);
const BEFORE: usize = 1_500;
const AFTER: usize = 1_500;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One record to send: topic, key, value, timestamp (ms).
pub(crate) type Outgoing = (String, String, Vec<u8>, i64);

/// Sends every record at once (in batches, as a replay does) and waits for every acknowledgement.
pub(crate) async fn send_all(kafka: &Kafka, records: &[Outgoing]) {
    let producer: FutureProducer = kafka.bulk_producer().unwrap();
    let sends = records.iter().map(|(topic, key, value, timestamp_ms)| {
        producer.send(
            FutureRecord::to(topic)
                .key(key)
                .payload(value)
                .timestamp(*timestamp_ms),
            Duration::from_secs(30),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| e).unwrap();
    }
}

/// A customer as the input topic carries it, with its own `Churn` or none.
pub(crate) fn wire(customer: &Customer, own: Option<bool>) -> Vec<u8> {
    let mut raw = server::replay::to_wire(&customer.to_raw());
    raw.set(
        Field::Churn,
        own.map(|c| Scalar::Number(f64::from(u8::from(c)))),
    );
    serde_json::to_vec(&raw).unwrap()
}

fn auc(model: &ChurnModel, customers: &[Customer]) -> f64 {
    let at = customers.iter().map(|c| c.onboard_date).max().unwrap();
    let p: Vec<f64> = customers.iter().map(|c| model.probability(c, at)).collect();
    let labels: Vec<bool> = customers.iter().map(|c| c.churn.unwrap()).collect();
    roc_auc(&p, &labels)
}

/// `churn retrain` once (or with `extra` flags), its exit status and stderr.
fn retrain(kafka: &Kafka, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let mut args = vec![
        "retrain",
        "--brokers",
        &kafka.brokers,
        "--from-outcomes",
        "--window",
        "1h",
        "--min-records",
        "1000",
    ];
    args.extend_from_slice(extra);
    let out = churn(&args).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrain_publishes_a_challenger_trained_on_the_drifted_window_that_beats_the_champion() {
    let p = pipeline().await;
    let kafka = &p.kafka;
    let stream = stream_with_drift(
        &GenerateOptions {
            rows: BEFORE + AFTER,
            seed: 15,
            messy_fraction: 0.0,
        },
        BEFORE,
    );
    let (before, after) = stream.split_at(BEFORE);
    let champion = model::train::train(before, &Default::default(), "t".into(), |_| {}).unwrap();
    publish(kafka, &champion).await.unwrap();

    // Before the change: three hours ago, outside a one-hour window, labelled by their own field.
    let (input, labels) = (&kafka.topics.input, &kafka.topics.labels);
    let long_ago = now_ms() - 3 * 3600 * 1000;
    let old: Vec<Outgoing> = before
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                input.clone(),
                format!("old-{i}"),
                wire(c, c.churn),
                long_ago,
            )
        })
        .collect();
    send_all(kafka, &old).await;
    let (status, stderr) = retrain(kafka, &[]);
    assert!(!status.success(), "nothing recent to learn from: {stderr}");
    assert!(
        stderr.contains("only 0 labelled records") && stderr.contains("widen --window"),
        "says what to do: {stderr}"
    );

    // After the change: now. Even records carry their own Churn; odd ones none, and their
    // outcome comes on the labels topic. Every tenth odd record also carries a wrong own
    // label, which its outcome overrides.
    let mut overridden = 0;
    let mut new = Vec::new();
    for (i, c) in after.iter().enumerate() {
        let id = format!("new-{i}");
        let churned = c.churn.unwrap();
        let own = match i % 2 {
            0 => Some(churned),
            _ if i % 20 == 1 => {
                overridden += 1;
                Some(!churned)
            }
            _ => None,
        };
        new.push((input.clone(), id.clone(), wire(c, own), now_ms()));
        if i % 2 == 1 {
            let outcome = format!(r#"{{"Churn": {}}}"#, u8::from(churned));
            new.push((labels.clone(), id, outcome.into_bytes(), now_ms()));
        }
    }
    // Hostile neighbours: skipped and counted, never trained on.
    for (i, junk) in [&b"not json"[..], b"{}", br#"{"Age": -5, "Churn": 1}"#, b""]
        .iter()
        .enumerate()
    {
        new.push((input.clone(), format!("junk-{i}"), junk.to_vec(), now_ms()));
    }
    new.push((
        labels.clone(),
        "nobody".into(),
        br#"{"Churn": 1}"#.to_vec(),
        now_ms(),
    ));
    send_all(kafka, &new).await;
    // Sent after its good outcome, a bad one replaces nothing.
    send_all(
        kafka,
        &[(
            labels.clone(),
            "new-1".into(),
            b"garbage".to_vec(),
            now_ms(),
        )],
    )
    .await;

    // --every: the first round publishes, then it waits; SIGTERM ends it cleanly.
    let mut running = churn(&[
        "retrain",
        "--brokers",
        &kafka.brokers,
        "--from-outcomes",
        "--window",
        "1h",
        "--min-records",
        "1000",
        "--every",
        "1h",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .map(Running)
    .unwrap();

    let (stop_tx, stop) = stop_switch();
    let (Followed { lineup, lifecycle }, follower) =
        follow(kafka, None, ModelTrust::default(), stop.clone())
            .await
            .unwrap();
    let follower = tokio::spawn(follower);
    let mut watching = lineup.clone();
    tokio::time::timeout(TIMEOUT, watching.wait_for(|l| l.challenger.is_some()))
        .await
        .expect("a challenger appears on the models topic")
        .unwrap();
    let challenger = lineup.borrow().challenger.clone().unwrap();
    assert_eq!(
        lineup.borrow().champion.version,
        champion.version,
        "the champion stays"
    );
    assert_ne!(challenger.version, champion.version);
    assert_eq!(
        challenger.training_data.rows, AFTER,
        "trained on exactly the drifted window: no old record, no junk, every record labelled"
    );
    let expected_churners = after.iter().filter(|c| c.churn == Some(true)).count();
    assert_eq!(
        challenger.training_data.churners, expected_churners,
        "outcomes won over the {overridden} wrong own labels"
    );
    wait_until("the history to record it", TIMEOUT, || {
        lifecycle.borrow().history.iter().any(|e| {
            e.kind == EventKind::ChallengerPublished
                && e.by == "churn retrain"
                && e.challenger_after.as_deref() == Some(challenger.version.as_str())
        })
    })
    .await;

    // On fresh drifted records, the retrained challenger ranks far better than the champion.
    let fresh = generate_customers_under(
        &GenerateOptions {
            rows: 3_000,
            seed: 99,
            messy_fraction: 0.0,
        },
        &DRIFTED_TRUTH,
    );
    let (champion_auc, challenger_auc) = (auc(&champion, &fresh), auc(&challenger, &fresh));
    assert!(
        challenger_auc > champion_auc + 0.1,
        "challenger {challenger_auc:.3}, champion {champion_auc:.3}"
    );

    signal(&running.0, "TERM");
    let status = wait_exit(&mut running.0, server::shutdown::STOP_DEADLINE)
        .expect("stops within the deadline");
    let mut stderr = String::new();
    std::io::Read::read_to_string(running.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        status.success(),
        "a stop is a clean exit: {status:?}\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("{} records read", AFTER + 4))
            && stderr.contains(&format!("{} outcomes overrode", overridden))
            && stderr.contains("4 invalid")
            && stderr.contains("1 unusable"),
        "{stderr}"
    );

    stop_tx.cancel();
    follower.await.unwrap().unwrap();
}

/// With --every, a failed round is logged and tried again at the next, never fatal; a stop
/// between rounds is a clean exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_a_failed_round_is_retried_not_fatal() {
    let p = pipeline().await;
    let log = p.dir.path().join("retrain.log");
    let mut running = churn(&[
        "retrain",
        "--brokers",
        &p.kafka.brokers,
        "--window",
        "1h",
        "--every",
        "1s",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .map(Running)
    .unwrap();
    let failures = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("this retraining round failed")
            .count()
    };
    wait_until("three failed rounds", TIMEOUT, || failures() >= 3).await;
    assert!(running.0.try_wait().unwrap().is_none(), "still running");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("only 0 labelled records") && text.contains("pass --from-outcomes"),
        "{text}"
    );
    signal(&running.0, "INT");
    let status = wait_exit(&mut running.0, server::shutdown::STOP_DEADLINE)
        .expect("stops within the deadline");
    assert!(status.success(), "{status:?}");
}

/// The concept-drift proof, end to end on the broker: who churns changes; the frozen
/// champion's live AUC (from its own predictions on the topic) falls; `churn retrain` on the
/// recent window publishes a challenger; scored in the shadow on the live stream, it wins the
/// duel and the referee promotes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_concept_drift_the_retrained_challenger_wins_the_duel_and_is_promoted() {
    use crate::promotion::{
        assert_evidence, event_appears, follow_models, start_referee, start_scorer,
    };
    const RECENT: usize = 2_000;
    const LIVE: usize = 4_000;
    let p = pipeline().await;
    let kafka = &p.kafka;
    let stream = stream_with_drift(
        &GenerateOptions {
            rows: BEFORE + RECENT + LIVE,
            seed: 16,
            messy_fraction: 0.0,
        },
        BEFORE,
    );
    // A live stream's customers joined recently: the generator's onboard dates are years in the
    // past, and tenure is measured at scoring time (now), so they are moved to end today.
    let newest = stream.iter().map(|c| c.onboard_date).max().unwrap();
    let shift = chrono::Utc::now().naive_utc() - newest;
    let stream: Vec<Customer> = stream
        .into_iter()
        .map(|c| Customer {
            onboard_date: c.onboard_date + shift,
            ..c
        })
        .collect();
    let (before, after) = stream.split_at(BEFORE);
    let (recent, live) = after.split_at(RECENT);
    let champion = model::train::train(before, &Default::default(), "t".into(), |_| {}).unwrap();
    publish(kafka, &champion).await.unwrap();

    let (stop_tx, stop) = stop_switch();
    start_scorer(&p, "drift-scorers", &stop).await;
    let watching = follow_models(kafka, &stop).await;
    let (_, referee) = start_referee(&p, &watching, &stop);

    // Before the change (three hours ago, outside the retraining window), then after it.
    let input = &kafka.topics.input;
    let long_ago = now_ms() - 3 * 3600 * 1000;
    let sent = |prefix: &str, customers: &[Customer], at: i64| -> Vec<Outgoing> {
        customers
            .iter()
            .enumerate()
            .map(|(i, c)| (input.clone(), format!("{prefix}-{i}"), wire(c, c.churn), at))
            .collect()
    };
    send_all(kafka, &sent("old", before, long_ago)).await;
    send_all(kafka, &sent("recent", recent, now_ms())).await;

    // The frozen champion's live AUC, from its own predictions: high before, near chance after.
    let messages = read_topic(kafka, &kafka.topics.predictions, TIMEOUT, |m| {
        predictions_by_id(m).len() >= BEFORE + RECENT
    });
    let live_auc = |prefix: &str| {
        let (p, labels): (Vec<f64>, Vec<bool>) = predictions_by_id(&messages)
            .values()
            .filter(|p| p.id.starts_with(prefix))
            .map(|p| (p.churn_probability, p.actual_churn.unwrap()))
            .unzip();
        roc_auc(&p, &labels)
    };
    let (auc_before, auc_after) = (live_auc("old-"), live_auc("recent-"));
    assert!(
        auc_before > auc_after + 0.15,
        "the champion's live AUC falls: {auc_before:.3} before the change, {auc_after:.3} after"
    );

    // Retrained on the last hour (the recent records only): the challenger.
    let (status, stderr) = retrain(kafka, &[]);
    assert!(status.success(), "{stderr}");
    let mut lineup = watching.lineup.clone();
    tokio::time::timeout(TIMEOUT, lineup.wait_for(|l| l.challenger.is_some()))
        .await
        .expect("the retrained challenger on the models topic")
        .unwrap();
    let challenger = lineup.borrow().challenger.clone().unwrap();
    assert_eq!(challenger.training_data.rows, RECENT);
    // A second round while that challenger is in its duel publishes nothing: a new challenger
    // would start the duel over.
    let (status, stderr) = retrain(kafka, &[]);
    assert!(
        status.success()
            && stderr.contains("is in its duel")
            && stderr.contains("publishes nothing"),
        "{stderr}"
    );
    assert_eq!(
        lineup
            .borrow()
            .challenger
            .as_ref()
            .map(|c| c.version.clone()),
        Some(challenger.version.clone())
    );

    // The live stream, scored by both: the duel promotes the retrained model.
    send_all(kafka, &sent("live", live, now_ms())).await;
    let mut lifecycle = watching.lifecycle.clone();
    let promoted = event_appears(&mut lifecycle, EventKind::Promoted).await;
    assert_evidence(&promoted, true);
    assert_eq!(
        promoted.champion_before.as_deref(),
        Some(&*champion.version)
    );
    assert_eq!(
        promoted.challenger_before.as_deref(),
        Some(&*challenger.version)
    );
    assert_eq!(
        promoted.champion_after.as_deref(),
        Some(&*challenger.version)
    );
    tokio::time::timeout(
        TIMEOUT,
        lineup.wait_for(|l| l.champion.version == challenger.version),
    )
    .await
    .expect("every follower switches to the retrained champion")
    .unwrap();

    stop_tx.cancel();
    referee.await.unwrap().unwrap();
}
