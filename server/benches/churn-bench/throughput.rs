//! Throughput: the broker's own ceilings (produce only, consume only) and the pipeline through
//! the scorer, run after run on fresh topics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use server::kafka::Kafka;
use server::scorer::Scorer;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{line, records, row, summary, topics, Args};

/// Produces every record; the clock starts once the producer is connected (one record, also the
/// first of the data, delivered), as the pipeline's clock starts at its first record.
pub(crate) async fn produce_all(
    kafka: &Kafka,
    topic: &str,
    data: &[(String, Vec<u8>)],
) -> Result<Duration> {
    let producer = kafka.idempotent_producer()?;
    let ((key, payload), data) = data.split_first().context("no records")?;
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(60),
        )
        .await
        .map_err(|(e, _)| e)?;
    let started = Instant::now();
    // A mark to attach a profiler to, as for the pipeline.
    eprintln!("produce started");
    let mut in_flight = futures::stream::FuturesUnordered::new();
    for (key, payload) in data {
        in_flight.push(producer.send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(60),
        ));
        if in_flight.len() >= 50_000 {
            in_flight
                .next()
                .await
                .expect("non-empty")
                .map_err(|(e, _)| e)?;
        }
    }
    while let Some(result) = in_flight.next().await {
        result.map_err(|(e, _)| e)?;
    }
    Ok(started.elapsed())
}

fn consume_all(kafka: &Kafka, topic: &str, n: usize) -> Result<Duration> {
    let consumer: BaseConsumer = kafka
        .consumer_config("bench-reader", &[("enable.auto.commit", "false")])
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..kafka.topics.partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    // The clock starts at the first record, as the pipeline's does.
    match consumer.poll(Duration::from_secs(10)) {
        Some(Ok(_)) => {}
        Some(Err(e)) => bail!("consume: {e}"),
        None => bail!("consume: no first record"),
    }
    let started = Instant::now();
    let mut seen = 1;
    while seen < n {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => bail!("consume: {e}"),
            None => bail!("consume stalled at {seen} of {n}"),
        }
    }
    Ok(started.elapsed())
}

pub async fn throughput(kafka: &Kafka, args: &Args, model: Arc<model::ChurnModel>) -> Result<f64> {
    let data = records(args.records);
    let n = args.records as f64;
    let (mut produce, mut consume, mut pipeline) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.warmup + args.repeat {
        let kafka = Kafka {
            topics: topics(&run.to_string()),
            ..kafka.clone()
        };
        kafka.ensure_pipeline_topics().await?;
        let produce_rate = (n - 1.0)
            / produce_all(&kafka, &kafka.topics.input, &data)
                .await?
                .as_secs_f64();
        let k = kafka.clone();
        let input = kafka.topics.input.clone();
        let records = args.records;
        let consume_rate = (n - 1.0)
            / tokio::task::spawn_blocking(move || consume_all(&k, &input, records))
                .await??
                .as_secs_f64();
        // The scorer from an already filled input topic to the predictions topic.
        let lineup = model::Lineup::from(model.clone());
        let pipeline_rate = score_all(
            &kafka,
            &format!("bench-scorer-{run}"),
            lineup,
            args.records,
            run,
        )
        .await?;
        let counted = if run < args.warmup {
            "warm-up, not counted"
        } else {
            "counted"
        };
        eprintln!("run {run}: produce {produce_rate:.0}/s, consume {consume_rate:.0}/s, pipeline {pipeline_rate:.0}/s ({counted})");
        if run >= args.warmup {
            produce.push(produce_rate);
            consume.push(consume_rate);
            pipeline.push(pipeline_rate);
        }
        // The in-memory broker would otherwise hold every repeat's records (gigabytes), and each
        // repeat would run slower than the one before.
        drop_topics(&kafka).await;
    }
    // The machine's speed drifts between repeats; each repeat's ratio compares runs made moments
    // apart, so the ratio is summarized per repeat rather than as a ratio of medians.
    let ratios: Vec<f64> = (0..args.repeat)
        .map(|i| pipeline[i] / produce[i].min(consume[i]))
        .collect();
    row(
        "broker ceiling: produce only (idempotent, acks=all)",
        "records/s",
        produce,
    );
    row("broker ceiling: consume only", "records/s", consume);
    let ours = row(
        "pipeline: input -> scorer -> predictions",
        "records/s",
        pipeline,
    );
    let (median, min, max) = summary(ratios);
    line(
        "pipeline / slower ceiling, per repeat (≥ 0.5)",
        format!("{median:.2}"),
        &format!("{min:>10.2} – {max:<10.2}"),
        "ratio",
    );
    Ok(ours)
}

/// Runs a scorer with `lineup` (group `group`) over the input topic, already holding `records`
/// records, until it has scored them all: its rate in records per second.
pub(crate) async fn score_all(
    kafka: &Kafka,
    group: &str,
    lineup: model::Lineup,
    records: usize,
    run: usize,
) -> Result<f64> {
    let stop_tx = CancellationToken::new();
    let stop = stop_tx.clone();
    let (_model_tx, models) = watch::channel(lineup);
    let scorer = Scorer::new(kafka.clone(), group.to_owned(), models);
    let (stats, health) = (scorer.stats.clone(), scorer.health.clone());
    let task = tokio::spawn(scorer.run(stop));
    while !health.assigned() || stats.consumed.get() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The clock starts at the first fetched batch; those records' scoring and delivery still
    // fall inside it, so only the rest are counted (this errs against the pipeline).
    let started = Instant::now();
    // A mark to attach a profiler to (`perf record -p`) for the pipeline phase alone.
    eprintln!("run {run}: pipeline started ({group})");
    let before = stats.consumed.get() as f64;
    while stats.scored.get() < records as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = (records as f64 - before) / started.elapsed().as_secs_f64();
    stop_tx.cancel();
    task.await??;
    Ok(rate)
}

/// Deletes a repeat's topics; a broker that refuses only costs memory.
pub(crate) async fn drop_topics(kafka: &Kafka) {
    let t = &kafka.topics;
    let names = [
        t.input.as_str(),
        t.predictions.as_str(),
        t.dead_letter.as_str(),
        t.stats.as_str(),
        t.labels.as_str(),
    ];
    let deleted = async {
        let admin: AdminClient<DefaultClientContext> = kafka.config(&[]).create()?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.delete_topics(&names, &options).await? {
            match result {
                // A run that never wrote to a topic (the shadow run has no stats or labels) never
                // created it: nothing to delete.
                Err((_, rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)) | Ok(_) => {}
                Err((name, code)) => bail!("{name}: {code}"),
            }
        }
        anyhow::Ok(())
    };
    if let Err(e) = deleted.await {
        eprintln!(
            "could not delete the repeat's topics ({e}); the broker keeps their records in memory"
        );
    }
}
