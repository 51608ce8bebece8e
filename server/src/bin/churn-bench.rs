//! `churn-bench`: the numbers behind BENCHMARKS.md, measured side by side in one run on the
//! embedded broker. Run by hand (not in CI):
//!
//!     cargo run --release -p server --bin churn-bench -- [--records 200000] [--repeat 3] [--python]
//!
//! Prints one table; each figure is the median of the repeats with the min–max range.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use tokio_util::sync::CancellationToken;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use model::synth::{generate_customers, GenerateOptions};
use model::Customer;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use server::broker::{BrokerOptions, EmbeddedBroker};
use server::backend::{BackendOptions, PipelineBackend};
use server::health::Health;
use server::kafka::{Kafka, Topics};
use server::metrics::PipelineMetrics;
use server::replay::to_wire;
use server::scorer::Scorer;
use server::web::{self, WebOptions};
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "churn-bench", about = "Benchmarks of the churn pipeline on the embedded broker")]
struct Args {
    /// Records per throughput run (enough that start-up costs are noise).
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Repeats of each throughput measurement.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Throughput repeats run first and not counted: the first run in a process pays for its
    /// allocator's and the broker's first growth (measured up to a third slower).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Requests per client in the latency runs.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Web server instances (each with its own scorer) in the scale-out latency run, loaded
    /// together with as many clients each as one instance alone; 1 skips the run.
    #[arg(long, default_value_t = 3)]
    web_instances: usize,
    /// Also run the Python peer (benches/python_peer.py; creates its own venv).
    #[arg(long)]
    python: bool,
    /// Records for the Python peer (it is slow).
    #[arg(long, default_value_t = 3_000)]
    python_records: usize,
    /// A librdkafka property for every client of the run, e.g. -X compression.type=lz4.
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = server::kafka::parse_property)]
    properties: Vec<(String, String)>,
    /// Run only these parts (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Scoring,
    Throughput,
    Latency,
    Wasm,
}

/// Median and range of repeated measurements.
fn summary(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

/// One table row of repeated measurements: median and range; returns the median.
fn row(name: &str, unit: &str, values: Vec<f64>) -> f64 {
    let (median, min, max) = summary(values);
    line(name, format!("{median:.0}"), &format!("{min:>10.0} – {max:<10.0}"), unit);
    median
}

/// One table row: a value, and a range or note.
fn line(name: &str, value: impl std::fmt::Display, note: &str, unit: &str) {
    println!("| {name:<44} | {value:>12} | {note:>23} | {unit:<10} |");
}

fn topics(run: &str) -> Topics {
    Topics {
        input: format!("bench-in-{run}"),
        predictions: format!("bench-out-{run}"),
        dead_letter: format!("bench-dlq-{run}"),
        models: "bench-models".into(),
        stats: format!("bench-stats-{run}"),
        labels: format!("bench-labels-{run}"),
        partitions: 3,
        replication: 1,
    }
}

fn records(n: usize) -> Vec<(String, Vec<u8>)> {
    let customers = generate_customers(&GenerateOptions { rows: 10_000, seed: 5, messy_fraction: 0.0 });
    (0..n)
        .map(|i| {
            let json = serde_json::to_vec(&to_wire(&customers[i % customers.len()].to_raw())).expect("serializes");
            (format!("b-{i}"), json)
        })
        .collect()
}

/// Produces every record; the clock starts once the producer is connected (one record, also the
/// first of the data, delivered), as the pipeline's clock starts at its first record.
async fn produce_all(kafka: &Kafka, topic: &str, data: &[(String, Vec<u8>)]) -> Result<Duration> {
    let producer = kafka.idempotent_producer()?;
    let ((key, payload), data) = data.split_first().context("no records")?;
    producer.send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(60)).await.map_err(|(e, _)| e)?;
    let started = Instant::now();
    // A mark to attach a profiler to, as for the pipeline.
    eprintln!("produce started");
    let mut in_flight = futures::stream::FuturesUnordered::new();
    for (key, payload) in data {
        in_flight.push(producer.send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(60)));
        if in_flight.len() >= 50_000 {
            in_flight.next().await.expect("non-empty").map_err(|(e, _)| e)?;
        }
    }
    while let Some(result) = in_flight.next().await {
        result.map_err(|(e, _)| e)?;
    }
    Ok(started.elapsed())
}

fn consume_all(kafka: &Kafka, topic: &str, n: usize) -> Result<Duration> {
    let consumer: BaseConsumer = kafka.consumer_config("bench-reader", &[("enable.auto.commit", "false")]).create()?;
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

async fn throughput(kafka: &Kafka, args: &Args, model: Arc<model::ChurnModel>) -> Result<f64> {
    let data = records(args.records);
    let n = args.records as f64;
    let (mut produce, mut consume, mut pipeline) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.warmup + args.repeat {
        let kafka = Kafka { topics: topics(&run.to_string()), ..kafka.clone() };
        kafka.ensure_pipeline_topics().await?;
        let produce_rate = (n - 1.0) / produce_all(&kafka, &kafka.topics.input, &data).await?.as_secs_f64();
        let k = kafka.clone();
        let input = kafka.topics.input.clone();
        let records = args.records;
        let consume_rate = (n - 1.0) / tokio::task::spawn_blocking(move || consume_all(&k, &input, records)).await??.as_secs_f64();
        // The scorer from an already filled input topic to the predictions topic.
        let stop_tx = CancellationToken::new();
        let stop = stop_tx.clone();
        let (_model_tx, models) = watch::channel(model.clone());
        let scorer = Scorer::new(kafka.clone(), format!("bench-scorer-{run}"), models);
        let (stats, health) = (scorer.stats.clone(), scorer.health.clone());
        let task = tokio::spawn(scorer.run(stop));
        while !health.assigned() || stats.consumed.get() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The clock starts at the first fetched batch; those records' scoring and delivery still
        // fall inside it, so only the rest are counted (this errs against the pipeline).
        let started = Instant::now();
        // A mark to attach a profiler to (`perf record -p`) for the pipeline phase alone.
        eprintln!("run {run}: pipeline started");
        let before = stats.consumed.get() as f64;
        while stats.scored.get() < args.records as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pipeline_rate = (n - before) / started.elapsed().as_secs_f64();
        let counted = if run < args.warmup { "warm-up, not counted" } else { "counted" };
        eprintln!("run {run}: produce {produce_rate:.0}/s, consume {consume_rate:.0}/s, pipeline {pipeline_rate:.0}/s ({counted})");
        if run >= args.warmup {
            produce.push(produce_rate);
            consume.push(consume_rate);
            pipeline.push(pipeline_rate);
        }
        stop_tx.cancel();
        task.await??;
        // The in-memory broker would otherwise hold every repeat's records (gigabytes), and each
        // repeat would run slower than the one before.
        drop_topics(&kafka).await;
    }
    // The machine's speed drifts between repeats; each repeat's ratio compares runs made moments
    // apart, so the ratio is summarized per repeat rather than as a ratio of medians.
    let ratios: Vec<f64> = (0..args.repeat).map(|i| pipeline[i] / produce[i].min(consume[i])).collect();
    row("broker ceiling: produce only (idempotent, acks=all)", "records/s", produce);
    row("broker ceiling: consume only", "records/s", consume);
    let ours = row("pipeline: input -> scorer -> predictions", "records/s", pipeline);
    let (median, min, max) = summary(ratios);
    line("pipeline / slower ceiling, per repeat (≥ 0.5)", format!("{median:.2}"), &format!("{min:>10.2} – {max:<10.2}"), "ratio");
    Ok(ours)
}

/// Deletes a repeat's topics; a broker that refuses only costs memory.
async fn drop_topics(kafka: &Kafka) {
    let t = &kafka.topics;
    let names = [t.input.as_str(), t.predictions.as_str(), t.dead_letter.as_str(), t.stats.as_str(), t.labels.as_str()];
    let deleted = async {
        let admin: AdminClient<DefaultClientContext> = kafka.config(&[]).create()?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.delete_topics(&names, &options).await? {
            if let Err((name, code)) = result {
                bail!("{name}: {code}");
            }
        }
        anyhow::Ok(())
    };
    if let Err(e) = deleted.await {
        eprintln!("could not delete the repeat's topics ({e}); the broker keeps their records in memory");
    }
}

fn python_peer(kafka: &Kafka, args: &Args, csv: &std::path::Path) -> Result<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/python_peer.py");
    let output = std::process::Command::new("python3")
        .args([script, "--brokers", &kafka.brokers, "--csv", &csv.to_string_lossy(), "--records", &args.python_records.to_string()])
        .output()
        .context("running benches/python_peer.py")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("records_per_second="))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("python peer failed: {}{}", text, String::from_utf8_lossy(&output.stderr)))?;
    Ok(rate)
}

/// One HTTP/1.1 keep-alive connection posting JSON; returns each request's latency.
fn client(addr: SocketAddr, body: Vec<u8>, requests: usize) -> Result<Vec<f64>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let head = format!(
        "POST /api/v1/predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut latencies = Vec::with_capacity(requests);
    let mut buffer = vec![0u8; 64 * 1024];
    for _ in 0..requests {
        let started = Instant::now();
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        // Read headers, then exactly Content-Length bytes of body.
        let mut read = 0;
        let (header_end, length) = loop {
            let n = stream.read(&mut buffer[read..])?;
            if n == 0 {
                bail!("connection closed");
            }
            read += n;
            if let Some(end) = buffer[..read].windows(4).position(|w| w == b"\r\n\r\n") {
                let headers = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                if !headers.starts_with("http/1.1 200") {
                    bail!("request failed: {}", headers.lines().next().unwrap_or_default());
                }
                let length = headers
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .context("no content-length")?;
                break (end + 4, length);
            }
        };
        while read < header_end + length {
            read += stream.read(&mut buffer[read..])?;
        }
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())))
        .flatten()
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One web server as `churn serve` runs it: a scorer (in the group every instance shares) and a
/// pipeline backend with its own reply topic, serving the app on a free port.
struct Instance {
    addr: SocketAddr,
    health: Arc<Health>,
    scorer: tokio::task::JoinHandle<Result<()>>,
    hub_stop: CancellationToken,
    hub_tasks: tokio::task::JoinHandle<Result<()>>,
}

async fn start_instance(
    kafka: &Kafka,
    models: watch::Receiver<Arc<model::ChurnModel>>,
    id: usize,
    stop: CancellationToken,
) -> Result<Instance> {
    let metrics = Arc::new(PipelineMetrics::default());
    let scorer = Scorer::new(kafka.clone(), "bench-web-scorer", models).with_metrics(metrics.clone());
    let health = scorer.health.clone();
    let scorer = tokio::spawn(scorer.run(stop.clone()));
    let hub_stop = CancellationToken::new();
    let mut hub_tasks = server::supervisor::Supervisor::new(hub_stop.clone());
    let options = BackendOptions { instance_id: format!("bench-web-{id}"), ..BackendOptions::default() };
    let hub = PipelineBackend::start(kafka.clone(), options, metrics.clone(), app::PipelineStatus::default, &mut hub_tasks).await?;
    let hub_tasks = tokio::spawn(hub_tasks.run());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let options = WebOptions { addr, site_root: std::env::temp_dir(), runs_scorer: true };
    let app = web::router(&options, hub);
    let server_stop = stop;
    tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { server_stop.cancelled().await; }).await
    });
    Ok(Instance { addr, health, scorer, hub_stop, hub_tasks })
}

/// `clients` keep-alive clients on each of `addrs`, all at once: every request's latency (ms,
/// sorted) and the requests per second.
async fn load(addrs: &[SocketAddr], clients: usize, requests: usize, body: &[u8]) -> Result<(Vec<f64>, f64)> {
    let started = Instant::now();
    let handles: Vec<_> = addrs
        .iter()
        .flat_map(|&addr| std::iter::repeat_n(addr, clients))
        .map(|addr| { let body = body.to_vec(); tokio::task::spawn_blocking(move || client(addr, body, requests)) })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok((all, rate))
}

fn latency_row(what: &str, all: &[f64], rate: f64) {
    println!(
        "| {what:<44} | p50 {:>6.2} | p90 {:>6.2} p99 {:>6.2} | ms ({rate:.0}/s) |",
        percentile(all, 0.5), percentile(all, 0.9), percentile(all, 0.99)
    );
}

async fn latency(kafka: &Kafka, args: &Args, model: Arc<model::ChurnModel>, customer: &Customer) -> Result<()> {
    let kafka = Kafka { topics: topics("web"), ..kafka.clone() };
    kafka.ensure_pipeline_topics().await?;
    let stop_tx = CancellationToken::new();
    let stop = stop_tx.clone();
    let (_model_tx, models) = watch::channel(model);
    let mut instances = vec![start_instance(&kafka, models.clone(), 0, stop.clone()).await?];
    while !instances[0].health.assigned() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let idle_rss = rss_mb();
    // Background stream, as in production: replayed records flowing at 200/s.
    let background = {
        let kafka = kafka.clone();
        let data = records(100_000);
        let stop = stop.clone();
        tokio::spawn(async move {
            let producer = kafka.idempotent_producer().expect("producer");
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            for (key, payload) in &data {
                tokio::select! { _ = stop.cancelled() => break, _ = tick.tick() => {} }
                let _ = producer.send(FutureRecord::to(&kafka.topics.input).key(key).payload(payload), Duration::from_secs(5)).await;
            }
        })
    };
    let body = serde_json::to_vec(&customer.to_raw())?;
    // Warm-up: connections, consumer positions.
    load(&[instances[0].addr], 1, 20, &body).await?;
    let mut load_rss: f64 = 0.0;
    let mut one_instance_p99 = Vec::new();
    for clients in [1usize, 10, 50] {
        let (all, rate) = load(&[instances[0].addr], clients, args.requests, &body).await?;
        load_rss = load_rss.max(rss_mb());
        latency_row(&format!("submit round trip, {clients:>2} clients ({:>5} requests)", all.len()), &all, rate);
        one_instance_p99.push((clients, percentile(&all, 0.99)));
    }
    line("bench process RSS, idle (broker is separate)", format!("{idle_rss:.0}"), "", "MB");
    line("bench process RSS, under load", format!("{load_rss:.0}"), "", "MB");

    // Scale-out: more instances on the same broker, each loaded as the one alone was.
    let n = args.web_instances;
    if n > 1 {
        for id in 1..n {
            instances.push(start_instance(&kafka, models.clone(), id, stop.clone()).await?);
        }
        // Each scorer holds a partition once the group has settled (more scorers than partitions
        // leave some idle).
        let holders = n.min(kafka.topics.partitions as usize);
        while instances.iter().filter(|i| i.health.assigned()).count() < holders {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let addrs: Vec<SocketAddr> = instances.iter().map(|i| i.addr).collect();
        load(&addrs, 1, 20, &body).await?;
        for (clients, alone) in one_instance_p99.into_iter().filter(|&(c, _)| c <= 10) {
            let (all, rate) = load(&addrs, clients, args.requests, &body).await?;
            latency_row(&format!("{n} instances × {clients:>2} clients ({:>5} requests)", all.len()), &all, rate);
            let ratio = percentile(&all, 0.99) / alone;
            line(&format!("p99, {n} instances / 1, {clients:>2} clients each (≤ 2)"), format!("{ratio:.2}"), "", "ratio");
        }
    }

    stop_tx.cancel();
    background.await?;
    for instance in instances {
        instance.hub_stop.cancel();
        instance.scorer.await??;
        instance.hub_tasks.await??;
    }
    Ok(())
}

fn scoring(model: &model::ChurnModel, customers: &[Customer], repeat: usize) {
    let n = 1_000_000;
    let (mut single, mut batched) = (Vec::new(), Vec::new());
    for _ in 0..repeat {
        let started = Instant::now();
        let mut sink = 0.0;
        for i in 0..n {
            sink += model.score(&customers[i % customers.len()]).probability;
        }
        single.push(n as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        let batch: Vec<f64> = (0..n).map(|i| model.probability(&customers[i % customers.len()])).collect();
        batched.push(n as f64 / started.elapsed().as_secs_f64());
        std::hint::black_box((sink, batch));
    }
    row("model alone: score + explain, per record", "rows/s", single);
    row("model alone: probability, batched", "rows/s", batched);
    // What the scorer does per record besides Kafka: JSON in, validation, score, JSON out.
    let payloads: Vec<Vec<u8>> = customers.iter().map(|c| serde_json::to_vec(&to_wire(&c.to_raw())).expect("serializes")).collect();
    let mut records = Vec::new();
    let (n, mut bytes) = (300_000, 0);
    for _ in 0..repeat {
        let started = Instant::now();
        bytes = 0;
        for i in 0..n {
            let payload = &payloads[i % payloads.len()];
            let json = server::scorer::score_payload(&i.to_string(), Some(payload), model, "2026-01-01T00:00:00.000Z");
            bytes += json.expect("a valid record").len();
        }
        records.push(n as f64 / started.elapsed().as_secs_f64());
    }
    row("record in memory: parse, validate, score, explain, serialize", "records/s", records);
    let input_bytes: usize = payloads.iter().map(Vec::len).sum();
    line("message size, input / prediction (mean)", format!("{} / {}", input_bytes / payloads.len(), bytes / n), "", "bytes");
}

/// True when the module still has its function-names section: a dev build, not what users get.
fn has_names_section(wasm: &[u8]) -> bool {
    fn leb128(bytes: &[u8], at: &mut usize) -> Option<usize> {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
            shift += 7;
        }
    }
    let mut at = 8; // magic and version
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let Some(size) = leb128(wasm, &mut at) else { return false };
        let body = at;
        if id == 0 {
            let mut name_at = body;
            if let Some(len) = leb128(wasm, &mut name_at) {
                if wasm.get(name_at..name_at + len) == Some(b"name".as_slice()) {
                    return true;
                }
            }
        }
        at = body + size;
    }
    false
}

fn wasm_size() {
    let site = std::env::var("CHURN_SITE_ROOT").unwrap_or_else(|_| format!("{}/.cache/customer-churn/target/site", std::env::var("HOME").unwrap_or_default()));
    let path = format!("{site}/pkg/churn_bg.wasm");
    let Ok(wasm) = std::fs::read(&path) else {
        println!("| WASM bundle: not built ({path}): run scripts/build.sh release");
        return;
    };
    if has_names_section(&wasm) {
        println!("| WASM bundle: {path} is a dev build; run scripts/build.sh release first");
        return;
    }
    let gz = std::process::Command::new("sh").args(["-c", &format!("gzip -9c '{path}' | wc -c")]).output().ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<usize>().ok()).unwrap_or(0);
    line("WASM bundle (release), raw / gzipped", wasm.len() / 1024, &format!("{} gzipped (goal < 250)", gz / 1024), "KiB");
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let broker = EmbeddedBroker::start(BrokerOptions::for_tests())?;
    let kafka = Kafka { properties: args.properties.clone(), ..Kafka::at(broker.address()) };
    kafka.check_reachable(Duration::from_secs(10)).await?;
    let customers = generate_customers(&GenerateOptions { rows: 5_000, seed: 9, messy_fraction: 0.0 });
    let model = Arc::new(model::train::train(&customers, &Default::default(), "bench".into(), |_| {})?);
    println!("churn-bench on {} cores; {} records per throughput run, {} repeats (after {} warm-up)\n", std::thread::available_parallelism().map_or(0, |n| n.get()), args.records, args.repeat, args.warmup);
    line("measure", "median", "min – max", "unit");
    println!("|{}|{}|{}|{}|", "-".repeat(46), "-".repeat(14), "-".repeat(25), "-".repeat(12));
    let runs = |part: Part| args.only.is_empty() || args.only.contains(&part);
    if runs(Part::Scoring) {
        scoring(&model, &customers, args.repeat);
    }
    // Latency first: its memory figures are then not inflated by the throughput runs' records.
    if runs(Part::Latency) {
        latency(&kafka, &args, model.clone(), &customers[0]).await?;
    }
    let ours = if runs(Part::Throughput) { Some(throughput(&kafka, &args, model.clone()).await?) } else { None };
    if let (Some(ours), true) = (ours, args.python) {
        let dir = tempfile_dir()?;
        let csv = dir.join("customers.csv");
        std::fs::write(&csv, model::synth::generate_csv(&GenerateOptions { rows: 5_000, seed: 9, messy_fraction: 0.0 }))?;
        let peer = python_peer(&kafka, &args, &csv)?;
        line("python peer (kafka-python + pandas + sklearn)", format!("{peer:.0}"), "", "records/s");
        line("ours / python peer", format!("{:.0}", ours / peer), "goal ≥ 100", "ratio");
    }
    if runs(Part::Wasm) {
        wasm_size();
    }
    drop(broker);
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("churn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
