//! Bounded disk: the embedded broker on SQLite deletes records past `--retention`, and its data
//! dir stops growing while records keep arriving.

use std::path::Path;
use std::time::{Duration, Instant};

use server::broker::{BrokerOptions, Storage};

use crate::support::*;

/// Bytes of every file under `dir` (the SQLite database, its WAL and shared-memory files).
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// (records held, records ever written) of a topic's partitions, from the watermarks.
fn held_and_written(kafka: &server::kafka::Kafka, topic: &str) -> (i64, i64) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = kafka.consumer_config("size-probe", &[]).create().unwrap();
    (0..kafka.topics.partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .unwrap_or((0, 0))
        })
        .fold((0, 0), |(held, written), (low, high)| {
            (held + high - low, written + high)
        })
}

/// `churn replay --loop` into a topic created with a 3 s retention, on a broker sweeping every
/// second: the records written keep growing, the records held and the data dir level off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_stops_growing_under_continuous_replay() {
    let retention = Duration::from_secs(3);
    let p = pipeline_with(|dir| BrokerOptions {
        storage: Storage::Sqlite(dir.join("broker")),
        sweep_every: Some(server::broker::sweep_interval(retention)),
        ..BrokerOptions::for_tests()
    })
    .await;
    let data_dir = p.dir.path().join("broker");
    let mut kafka = p.kafka.clone();
    kafka.topics.retention = retention;
    kafka.topics.input = "replayed".into();
    kafka.ensure_pipeline_topics().await.unwrap();
    let csv = p.csv(500, 4);
    let _replay = churn(&[
        "replay",
        csv.to_str().unwrap(),
        "--loop",
        "--rate",
        "800",
        "--brokers",
        &kafka.brokers,
        "--input-topic",
        "replayed",
        "--retention",
        "3s",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .map(Running)
    .unwrap();

    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(36) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (held, written) = held_and_written(&kafka, "replayed");
        let size = dir_size(&data_dir);
        eprintln!(
            "{:>4.0}s written {written:>7} held {held:>6} dir {size:>10} bytes ({} per record held)",
            started.elapsed().as_secs_f64(),
            size / held.max(1) as u64
        );
        samples.push((written, held, size));
    }
    let third = samples.len() / 3;
    let (middle, last) = (&samples[third..2 * third], &samples[2 * third..]);
    let written_then = middle[0].0;
    let written_now = last.last().unwrap().0;
    assert!(
        written_now > written_then + 5_000,
        "replay kept writing: {written_then} -> {written_now}"
    );
    let max_held = samples.iter().map(|s| s.1).max().unwrap();
    assert!(
        max_held < 800 * 20,
        "at most ~3 s of records plus a sweep or two are held, not all {written_now}: {max_held}"
    );
    let middle_size = middle.iter().map(|s| s.2).max().unwrap();
    let last_size = last.iter().map(|s| s.2).max().unwrap();
    assert!(
        last_size <= middle_size + middle_size / 5,
        "the data dir stopped growing: {middle_size} bytes in the middle third, {last_size} in \
         the last, while {} more records were written",
        written_now - written_then
    );
}

/// Bytes on disk per record at steady state, for the README's cost of a day: 40,000 records
/// replayed and scored (input and prediction each), the SQLite file's growth divided by them.
/// A measurement, not a check: `cargo test -p server --test it measure_disk -- --ignored
/// --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for the README, run by hand"]
async fn measure_disk_bytes_per_record() {
    use server::replay::{replay, ReplayOptions};
    use server::scorer::Scorer;
    const N: u64 = 40_000;
    let p = pipeline_with(|dir| BrokerOptions {
        storage: Storage::Sqlite(dir.join("broker")),
        ..BrokerOptions::for_tests()
    })
    .await;
    let data_dir = p.dir.path().join("broker");
    let db = || std::fs::metadata(data_dir.join("nisshi.db")).map_or(0, |m| m.len());
    // Warm up past the WAL's own size (it is reused, never truncated) and the schema.
    let warm = ReplayOptions {
        file: p.csv(2_000, 5),
        rate: 0.0,
        repeat: false,
        limit: None,
        id_prefix: "warm".into(),
        show_progress: false,
    };
    let (_never, no_stop) = stop_switch();
    replay(&p.kafka, &warm, no_stop.clone()).await.unwrap();
    let (before_all, before_db) = (dir_size(&data_dir), db());
    let options = ReplayOptions {
        limit: Some(N),
        repeat: true,
        id_prefix: "m".into(),
        ..warm
    };
    replay(&p.kafka, &options, no_stop.clone()).await.unwrap();
    let (after_input_all, after_input_db) = (dir_size(&data_dir), db());
    let (_m, models) = tokio::sync::watch::channel(model::Lineup::from(trained_model(3)));
    let scorer = Scorer::new(p.kafka.clone(), "measure", models);
    let stats = scorer.stats.clone();
    let (stop_tx, stop) = stop_switch();
    let task = tokio::spawn(scorer.run(stop));
    wait_until("all scored", Duration::from_secs(300), || {
        stats.scored.get() >= N + 2_000
    })
    .await;
    stop_tx.cancel();
    let _ = task.await;
    let (after_all, after_db) = (dir_size(&data_dir), db());
    eprintln!(
        "input: {} bytes per record (db file {}); prediction: {} (db file {}); dir {after_all}",
        (after_input_all - before_all) / N,
        (after_input_db - before_db) / N,
        (after_all - after_input_all) / N,
        (after_db - after_input_db) / N,
    );
}
