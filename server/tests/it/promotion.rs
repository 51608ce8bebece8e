//! The referee on the real broker: a truly better challenger is promoted by live outcomes, with
//! its evidence on the models topic, every scorer switches and no record is lost or scored by
//! neither model; and a promotion that turns out worse is rolled back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use model::duel::{DuelConfig, Metric, SequentialTest};
use model::lifecycle::{EventKind, LifecycleView, ModelEvent};
use model::synth::{generate_customers, GenerateOptions};
use model::ChurnModel;
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use server::kafka::Kafka;
use server::metrics::PipelineMetrics;
use server::model_store::{
    follow, publish_challenger, publish_champion, Followed, ModelTrust, ModelsWriter,
};
use server::referee::{self, RefereeOptions};
use server::replay::{replay, ReplayOptions};
use server::scorer::Scorer;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(90);

/// A model that learnt nothing: trained on labels shuffled against the features, so its scores
/// hover around the base rate whatever the customer (truly worse than one that learnt).
fn clueless_model() -> Arc<ChurnModel> {
    let mut customers = generate_customers(&GenerateOptions {
        rows: 600,
        seed: 11,
        messy_fraction: 0.0,
    });
    let labels: Vec<Option<bool>> = customers.iter().map(|c| c.churn).collect();
    for (i, customer) in customers.iter_mut().enumerate() {
        // A fixed permutation (7919 is prime to 600): deterministic.
        customer.churn = labels[(i * 7919 + 1) % labels.len()];
    }
    let trained =
        model::train::train(&customers, &Default::default(), "clueless".into(), |_| {}).unwrap();
    Arc::new(trained)
}

/// Follows the models topic as a scorer or referee does, its follower running until `stop`.
pub(crate) async fn follow_models(kafka: &Kafka, stop: &CancellationToken) -> Followed {
    let (followed, follower) = follow(kafka, None, ModelTrust::default(), stop.clone())
        .await
        .unwrap();
    tokio::spawn(follower);
    followed
}

/// The referee with auto-promote and a small minimum, as the commands run it.
pub(crate) fn start_referee(
    p: &Pipeline,
    followed: &Followed,
    stop: &CancellationToken,
) -> (
    Arc<PipelineMetrics>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let metrics = Arc::new(PipelineMetrics::default());
    let options = RefereeOptions {
        duel: DuelConfig {
            min_records: 300,
            ..Default::default()
        },
        auto_promote: true,
        publish_every: Duration::from_millis(500),
    };
    let task = referee::start(
        p.kafka.clone(),
        options,
        followed,
        metrics.clone(),
        stop.clone(),
    )
    .unwrap();
    (metrics, tokio::spawn(task))
}

/// A scorer in `group` following the models topic on its own, as each `churn score` does.
pub(crate) async fn start_scorer(
    p: &Pipeline,
    group: &str,
    stop: &CancellationToken,
) -> Arc<PipelineMetrics> {
    let (followed, follower) = follow(&p.kafka, None, ModelTrust::default(), stop.clone())
        .await
        .unwrap();
    tokio::spawn(follower);
    let scorer = Scorer::new(p.kafka.clone(), group, followed.lineup);
    let stats = scorer.stats.clone();
    tokio::spawn(scorer.run(stop.clone()));
    stats
}

/// Replays `rows` labelled records at `rate` a second (0: as fast as they go).
async fn replay_rows(
    p: &Pipeline,
    rows: usize,
    rate: f64,
    seed: u64,
    prefix: &str,
    stop: &CancellationToken,
) {
    let options = ReplayOptions {
        file: p.csv(rows, seed),
        rate,
        repeat: false,
        limit: None,
        id_prefix: prefix.into(),
        show_progress: false,
    };
    let sent = replay(&p.kafka, &options, stop.clone()).await.unwrap();
    assert_eq!(sent.sent, rows as u64);
}

/// Waits for the lifecycle to hold an event of `kind`; returns it.
pub(crate) async fn event_appears(
    lifecycle: &mut watch::Receiver<Arc<LifecycleView>>,
    kind: EventKind,
) -> ModelEvent {
    let waited = tokio::time::timeout(
        TIMEOUT,
        lifecycle.wait_for(|v| v.history.iter().any(|e| e.kind == kind)),
    )
    .await
    .map(|view| Arc::clone(&view.unwrap()));
    let Ok(view) = waited else {
        let now = lifecycle.borrow();
        panic!(
            "no {kind:?} record within {TIMEOUT:?}; the duel: {:?}; history: {:?}",
            now.duel
                .as_ref()
                .map(|d| (d.report.as_ref().map(|r| r.records), d.decision)),
            now.history
        )
    };
    view.history
        .iter()
        .find(|e| e.kind == kind)
        .cloned()
        .unwrap()
}

/// The evidence a decision record must carry: the sample, the metric, the interval, the test,
/// and an interval on the side of its verdict.
pub(crate) fn assert_evidence(event: &ModelEvent, challenger_better: bool) {
    let evidence = event.evidence.expect("a decision carries its evidence");
    assert!(evidence.records >= 300, "{evidence:?}");
    assert!(evidence.churners >= 50 && evidence.records - evidence.churners >= 50);
    assert_eq!(evidence.metric, Metric::BrierReduction);
    assert_eq!(
        evidence.test,
        SequentialTest::EmpiricalBernsteinConfidenceSequence
    );
    let (low, high) = evidence.interval.unwrap();
    if challenger_better {
        assert!(low > 0.0, "{evidence:?}");
    } else {
        assert!(high < 0.0, "{evidence:?}");
    }
    assert_eq!(event.by, "auto-promote");
}

fn predictions(messages: &[OwnedMessage]) -> Vec<(i32, model::Prediction)> {
    messages
        .iter()
        .map(|m| {
            (
                m.partition(),
                serde_json::from_slice(m.payload().unwrap()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_better_challenger_is_promoted_and_every_scorer_switches_without_losing_a_record() {
    let p = pipeline().await;
    let (worse, better) = (clueless_model(), trained_model(2));
    publish_champion(&p.kafka, &worse, "test").await.unwrap();
    publish_challenger(&p.kafka, &better, "test").await.unwrap();

    let (stop_tx, stop) = stop_switch();
    let scorers = [
        start_scorer(&p, "promotion-scorers", &stop).await,
        start_scorer(&p, "promotion-scorers", &stop).await,
    ];
    let watching = follow_models(&p.kafka, &stop).await;
    assert_eq!(watching.lineup.borrow().champion.version, worse.version);
    let (duel_metrics, _) = start_referee(&p, &watching, &stop);
    assert_eq!(duel_metrics.duel_verdict.get(), 0);

    // Labelled records (the replayed history carries Churn), slowly enough for the duel to
    // decide while they flow: the first verdict is acted on, mid-stream.
    const BEFORE: usize = 3000;
    replay_rows(&p, BEFORE, 600.0, 21, "before", &stop).await;
    let mut lifecycle = watching.lifecycle.clone();
    let promoted = event_appears(&mut lifecycle, EventKind::Promoted).await;
    assert_evidence(&promoted, true);
    assert!(
        promoted.evidence.unwrap().records < BEFORE as u64 * 9 / 10,
        "decided at the first verdict, not at the end: {:?}",
        promoted.evidence
    );
    assert_eq!(promoted.champion_before.as_deref(), Some(&*worse.version));
    assert_eq!(promoted.champion_after.as_deref(), Some(&*better.version));
    assert_eq!(promoted.challenger_after.as_deref(), Some(&*worse.version));
    // The lineup follows: the better one is champion, and the replaced one is watched as
    // challenger in the next duel, the one that could roll the promotion back. The stream goes
    // on meanwhile, so that duel may already have confirmed the promotion (and withdrawn the
    // replaced model): either is right, and each is checked.
    let mut lineup = watching.lineup.clone();
    tokio::time::timeout(
        TIMEOUT,
        lineup.wait_for(|l| l.champion.version == better.version),
    )
    .await
    .expect("the promotion's seats on the topic")
    .unwrap();
    let watched = tokio::time::timeout(
        TIMEOUT,
        lifecycle.wait_for(|v| {
            let next_duel = v.duel.as_ref().is_some_and(|d| {
                d.after_promotion
                    && d.auto_promote
                    && d.champion == better.version
                    && d.challenger == worse.version
            });
            next_duel || v.history.iter().any(|e| e.kind == EventKind::Confirmed)
        }),
    )
    .await
    .expect("the duel after the promotion")
    .unwrap()
    .clone();
    if let Some(confirmed) = watched
        .history
        .iter()
        .find(|e| e.kind == EventKind::Confirmed)
    {
        assert_evidence(confirmed, false);
        assert_eq!(confirmed.champion_after.as_deref(), Some(&*better.version));
        assert_eq!(confirmed.challenger_after, None);
    }
    assert!(
        !watched
            .history
            .iter()
            .any(|e| e.kind == EventKind::RolledBack),
        "the better model stays"
    );

    // More records: every scorer switches, and each of them scores with the new champion.
    const AFTER: usize = 600;
    replay_rows(&p, AFTER, 0.0, 22, "after", &stop).await;
    for (i, stats) in scorers.iter().enumerate() {
        wait_until(
            &format!("scorer {i} to use the promoted model"),
            TIMEOUT,
            || stats.model_version() == better.version,
        )
        .await;
    }

    let messages = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        predictions_by_id(m).len() >= BEFORE + AFTER
    });
    let all = predictions(&messages);
    // No record lost, none scored by neither model.
    let expected: HashSet<String> = (2..BEFORE + 2)
        .map(|line| format!("before-0-{line}"))
        .chain((2..AFTER + 2).map(|line| format!("after-0-{line}")))
        .collect();
    let scored: HashSet<String> = all.iter().map(|(_, p)| p.id.clone()).collect();
    assert_eq!(scored, expected, "every record has a prediction");
    let versions = HashSet::from([worse.version.clone(), better.version.clone()]);
    for (_, prediction) in &all {
        assert!(
            versions.contains(&prediction.model_version),
            "{prediction:?}"
        );
    }
    // Per partition, in offset order: once the promoted model scored, only it did; and every
    // partition's records after the switch are the promoted model's.
    let mut by_partition: HashMap<i32, Vec<&model::Prediction>> = HashMap::new();
    for (partition, prediction) in &all {
        by_partition.entry(*partition).or_default().push(prediction);
    }
    assert_eq!(by_partition.len() as i32, p.kafka.topics.partitions);
    for (partition, sequence) in &by_partition {
        let first = sequence
            .iter()
            .position(|p| p.model_version == better.version)
            .unwrap_or_else(|| panic!("partition {partition} never switched"));
        assert!(
            sequence[first..]
                .iter()
                .all(|p| p.model_version == better.version),
            "partition {partition}: the replaced model scored after the promoted one"
        );
        assert!(sequence.iter().any(|p| p.id.starts_with("after-")));
        assert!(sequence
            .iter()
            .filter(|p| p.id.starts_with("after-"))
            .all(|p| p.model_version == better.version));
    }

    stop_tx.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promotion_that_does_worse_than_the_model_it_replaced_is_rolled_back() {
    let p = pipeline().await;
    let (good, worse) = (trained_model(2), clueless_model());
    // The lineup a promotion of the worse model would leave: its record, then the seats.
    publish_champion(&p.kafka, &good, "test").await.unwrap();
    let writer = ModelsWriter::new(&p.kafka).unwrap();
    let evidence = model::duel::Duel::new(Default::default())
        .unwrap()
        .decision()
        .evidence;
    let wrong = ModelEvent::decision(
        EventKind::Promoted,
        &good.version,
        &worse.version,
        None,
        evidence,
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "a hasty hand",
    );
    writer.event(&wrong).await.unwrap();
    writer.champion(&worse).await.unwrap();
    writer.challenger(Some(&*good)).await.unwrap();

    let (stop_tx, stop) = stop_switch();
    let scorer = start_scorer(&p, "rollback-scorers", &stop).await;
    let watching = follow_models(&p.kafka, &stop).await;
    assert_eq!(watching.lineup.borrow().champion.version, worse.version);
    start_referee(&p, &watching, &stop);

    replay_rows(&p, 3000, 0.0, 31, "before", &stop).await;
    let mut lifecycle = watching.lifecycle.clone();
    let rolled_back = event_appears(&mut lifecycle, EventKind::RolledBack).await;
    assert_evidence(&rolled_back, true);
    assert_eq!(
        rolled_back.champion_before.as_deref(),
        Some(&*worse.version)
    );
    assert_eq!(rolled_back.champion_after.as_deref(), Some(&*good.version));
    assert_eq!(rolled_back.challenger_after, None);
    let mut lineup = watching.lineup.clone();
    tokio::time::timeout(
        TIMEOUT,
        lineup.wait_for(|l| l.champion.version == good.version && l.challenger.is_none()),
    )
    .await
    .expect("the rollback's seats on the topic")
    .unwrap();
    // The duel it ended is off the app's view, and no promotion was decided on the way.
    assert!(lifecycle.borrow().duel.is_none());
    assert!(!lifecycle
        .borrow()
        .history
        .iter()
        .any(|e| e.kind == EventKind::Promoted && e.by == "auto-promote"));

    replay_rows(&p, 300, 0.0, 32, "after", &stop).await;
    wait_until(
        "the scorer to use the model rolled back to",
        TIMEOUT,
        || scorer.model_version() == good.version,
    )
    .await;
    let messages = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        predictions_by_id(m).len() >= 3300
    });
    let after: Vec<_> = predictions(&messages)
        .into_iter()
        .filter(|(_, p)| p.id.starts_with("after-"))
        .collect();
    let ids: HashSet<&str> = after.iter().map(|(_, p)| p.id.as_str()).collect();
    assert_eq!(ids.len(), 300);
    assert!(after
        .iter()
        .all(|(_, p)| p.model_version == good.version && p.challenger.is_none()));

    stop_tx.cancel();
}

/// Every wait of the referee is bounded: stopped mid-duel with the broker hung, it ends within
/// the supervisor's grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_referee_stops_within_the_grace_with_the_broker_hung_mid_duel() {
    let p = pipeline().await;
    let (champion, challenger) = (clueless_model(), trained_model(2));
    publish_champion(&p.kafka, &champion, "test").await.unwrap();
    publish_challenger(&p.kafka, &challenger, "test")
        .await
        .unwrap();
    let (stop_tx, stop) = stop_switch();
    let _scorer = start_scorer(&p, "hung-scorers", &stop).await;
    let watching = follow_models(&p.kafka, &stop).await;
    let (metrics, referee) = start_referee(&p, &watching, &stop);
    replay_rows(&p, 200, 0.0, 41, "hung", &stop).await;
    // Reading the duel: it counts records (fewer than decide anything).
    wait_until("the duel to count records", TIMEOUT, || {
        metrics.duel_records.get() > 0
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-STOP", &p.broker.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Long enough for a publish of the figures to be waiting on the hung broker.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped_at = std::time::Instant::now();
    stop_tx.cancel();
    let ended = tokio::time::timeout(server::supervisor::STOP_GRACE, referee).await;
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &p.broker.pid().to_string()])
        .status();
    ended
        .expect("the referee ends within the grace")
        .unwrap()
        .unwrap();
    assert!(stopped_at.elapsed() < server::supervisor::STOP_GRACE);
    assert_eq!(metrics.duel_records.get(), 0, "no duel shown once stopped");
}

/// What the referee published last, when it has figures: (records, churners, the paired Brier
/// gain's estimate, updated_at).
fn published_figures(view: &LifecycleView) -> Option<(u64, u64, f64, String)> {
    let duel = view.duel.as_ref()?;
    let report = duel.report.as_ref()?;
    Some((
        report.records,
        report.churners,
        report.gains.brier.value,
        duel.updated_at.clone(),
    ))
}

/// A restarted referee rebuilds the same duel from the topics: the same records, churners and
/// paired gain as the one before it, read back from where the pair began.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_referee_rebuilds_the_same_duel() {
    let p = pipeline().await;
    let (champion, challenger) = (clueless_model(), trained_model(2));
    publish_champion(&p.kafka, &champion, "test").await.unwrap();
    publish_challenger(&p.kafka, &challenger, "test")
        .await
        .unwrap();
    let (stop_all, stop) = stop_switch();
    start_scorer(&p, "restart-scorers", &stop).await;
    const ROWS: usize = 1500;
    replay_rows(&p, ROWS, 0.0, 31, "restart", &stop).await;

    let reporting = RefereeOptions {
        auto_promote: false,
        publish_every: Duration::from_millis(300),
        ..Default::default()
    };
    let run_referee = |stop: CancellationToken| {
        let (kafka, options) = (p.kafka.clone(), reporting);
        async move {
            let (followed, follower) = follow(&kafka, None, ModelTrust::default(), stop.clone())
                .await
                .unwrap();
            tokio::spawn(follower);
            let task = referee::start(
                kafka,
                options,
                &followed,
                Arc::new(PipelineMetrics::default()),
                stop,
            )
            .unwrap();
            (followed.lifecycle, tokio::spawn(task))
        }
    };
    let all_counted = |v: &Arc<LifecycleView>| {
        published_figures(v).is_some_and(|(records, ..)| records == ROWS as u64)
    };

    let (first_stop, first_token) = stop_switch();
    let (mut first_view, first) = run_referee(first_token).await;
    let before = tokio::time::timeout(TIMEOUT, first_view.wait_for(all_counted))
        .await
        .expect("the first referee counts every labelled record")
        .unwrap()
        .clone();
    first_stop.cancel();
    first.await.unwrap().unwrap();
    let (records, churners, gain, updated_at) = published_figures(&before).unwrap();

    let (second_stop, second_token) = stop_switch();
    let (mut second_view, second) = run_referee(second_token).await;
    let after = tokio::time::timeout(
        TIMEOUT,
        second_view.wait_for(|v| {
            all_counted(v) && published_figures(v).is_some_and(|f| f.3 != updated_at)
        }),
    )
    .await
    .expect("the restarted referee publishes the duel again")
    .unwrap()
    .clone();
    let (records_again, churners_again, gain_again, _) = published_figures(&after).unwrap();
    assert_eq!((records_again, churners_again), (records, churners));
    assert!(
        (gain_again - gain).abs() < 1e-12,
        "the same records give the same mean: {gain} then {gain_again}"
    );
    second_stop.cancel();
    second.await.unwrap().unwrap();
    stop_all.cancel();
}

/// The duel fed by outcomes on the labels topic, as in production: the records carry no label,
/// their outcomes come later (keyed by record id, some twice: at-least-once; that each counts
/// once is `duel::pairing`'s property test), and the better challenger is promoted on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outcomes_arriving_later_on_the_labels_topic_decide_the_duel() {
    use crate::retrain::{now_ms, send_all, wire, Outgoing};
    let p = pipeline().await;
    let (worse, better) = (clueless_model(), trained_model(2));
    publish_champion(&p.kafka, &worse, "test").await.unwrap();
    publish_challenger(&p.kafka, &better, "test").await.unwrap();
    let (stop_tx, stop) = stop_switch();
    start_scorer(&p, "outcome-scorers", &stop).await;
    let watching = follow_models(&p.kafka, &stop).await;
    let (_, referee) = start_referee(&p, &watching, &stop);

    const ROWS: usize = 2500;
    let customers = generate_customers(&GenerateOptions {
        rows: ROWS,
        seed: 41,
        messy_fraction: 0.0,
    });
    let (input, labels) = (&p.kafka.topics.input, &p.kafka.topics.labels);
    let records: Vec<Outgoing> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| (input.clone(), format!("o-{i}"), wire(c, None), now_ms()))
        .collect();
    send_all(&p.kafka, &records).await;
    // Scored without a label: no duel record yet.
    let messages = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        predictions_by_id(m).len() >= ROWS
    });
    let scored = predictions_by_id(&messages);
    assert!(scored
        .values()
        .all(|p| p.actual_churn.is_none() && p.challenger.is_some()));
    assert!(watching
        .lifecycle
        .borrow()
        .history
        .iter()
        .all(|e| !e.kind.is_decision()));

    // The outcomes, later; every fifth twice.
    let outcomes: Vec<Outgoing> = customers
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            let outcome = format!(r#"{{"Churn": {}}}"#, u8::from(c.churn.unwrap()));
            let copies = if i % 5 == 0 { 2 } else { 1 };
            std::iter::repeat_n(
                (
                    labels.clone(),
                    format!("o-{i}"),
                    outcome.into_bytes(),
                    now_ms(),
                ),
                copies,
            )
        })
        .collect();
    send_all(&p.kafka, &outcomes).await;
    let mut lifecycle = watching.lifecycle.clone();
    let promoted = event_appears(&mut lifecycle, EventKind::Promoted).await;
    assert_evidence(&promoted, true);
    assert_eq!(promoted.champion_after.as_deref(), Some(&*better.version));

    stop_tx.cancel();
    referee.await.unwrap().unwrap();
}
