//! Latency: form submissions through the web API to their prediction and back, on one web server
//! and on several sharing the load.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use model::Customer;
use rdkafka::producer::FutureRecord;
use server::backend::{BackendOptions, PipelineBackend};
use server::health::Health;
use server::kafka::Kafka;
use server::metrics::PipelineMetrics;
use server::scorer::Scorer;
use server::web::{self, WebOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{line, records, topics, Args};

/// One HTTP/1.1 keep-alive connection posting JSON; returns each request's latency.
/// The web instances' data directory, with an analyst's API token every client sends.
fn bench_access() -> &'static (std::path::PathBuf, String) {
    static ACCESS: std::sync::OnceLock<(std::path::PathBuf, String)> = std::sync::OnceLock::new();
    ACCESS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir").keep();
        let (_, token) =
            server::auth::tokens::create(&dir, app::Role::Analyst, "bench", chrono::Utc::now())
                .expect("a token");
        (dir, token.expose().to_owned())
    })
}

fn client(addr: SocketAddr, body: Vec<u8>, requests: usize) -> Result<Vec<f64>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let head = format!(
        "POST /api/v1/predict HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        bench_access().1,
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
                    bail!(
                        "request failed: {}",
                        headers.lines().next().unwrap_or_default()
                    );
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
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            })
        })
        .flatten()
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One web server as `churn serve` runs it: a scorer (in the group every instance shares) and a
/// pipeline backend (reply routing on its own reply topic, live feed), serving the app on a free port.
struct Instance {
    addr: SocketAddr,
    health: Arc<Health>,
    scorer: tokio::task::JoinHandle<Result<()>>,
    backend_stop: CancellationToken,
    backend_tasks: tokio::task::JoinHandle<Result<()>>,
}

async fn start_instance(
    kafka: &Kafka,
    models: watch::Receiver<model::Lineup>,
    id: usize,
    stop: CancellationToken,
) -> Result<Instance> {
    let metrics = Arc::new(PipelineMetrics::default());
    let scorer =
        Scorer::new(kafka.clone(), "bench-web-scorer", models).with_metrics(metrics.clone());
    let health = scorer.health.clone();
    let scorer = tokio::spawn(scorer.run(stop.clone()));
    let backend_stop = CancellationToken::new();
    let mut backend_tasks = server::supervisor::Supervisor::new(backend_stop.clone());
    let options = BackendOptions {
        instance_id: format!("bench-web-{id}"),
        ..BackendOptions::default()
    };
    let backend = PipelineBackend::start(
        kafka.clone(),
        options,
        metrics.clone(),
        app::PipelineStatus::default,
        &mut backend_tasks,
    )
    .await?;
    let backend_tasks = tokio::spawn(backend_tasks.run());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut options = WebOptions::new(
        addr,
        std::env::temp_dir(),
        true,
        server::auth::AuthOptions::new(bench_access().0.clone()),
    );
    // Every client comes from 127.0.0.1, one key to the per-client submission limit: the bench
    // measures the pipeline's round trip, not the limiter's 429s.
    let unlimited = std::num::NonZeroU32::new(1_000_000).expect("not zero");
    options.guard.limits.submit_per_second = unlimited;
    options.guard.limits.submit_burst = unlimited;
    let app = web::router(&options, backend);
    let server_stop = stop;
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                server_stop.cancelled().await;
            })
            .await
    });
    Ok(Instance {
        addr,
        health,
        scorer,
        backend_stop,
        backend_tasks,
    })
}

/// `clients` keep-alive clients on each of `addrs`, all at once: every request's latency (ms,
/// sorted) and the requests per second.
async fn load(
    addrs: &[SocketAddr],
    clients: usize,
    requests: usize,
    body: &[u8],
) -> Result<(Vec<f64>, f64)> {
    let started = Instant::now();
    let handles: Vec<_> = addrs
        .iter()
        .flat_map(|&addr| std::iter::repeat_n(addr, clients))
        .map(|addr| {
            let body = body.to_vec();
            tokio::task::spawn_blocking(move || client(addr, body, requests))
        })
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
        percentile(all, 0.5),
        percentile(all, 0.9),
        percentile(all, 0.99)
    );
}

pub async fn latency(
    kafka: &Kafka,
    args: &Args,
    model: Arc<model::ChurnModel>,
    customer: &Customer,
) -> Result<()> {
    let kafka = Kafka {
        topics: topics("web"),
        ..kafka.clone()
    };
    kafka.ensure_pipeline_topics().await?;
    let stop_tx = CancellationToken::new();
    let stop = stop_tx.clone();
    let (_model_tx, models) = watch::channel(model::Lineup::from(model));
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
                let _ = producer
                    .send(
                        FutureRecord::to(&kafka.topics.input)
                            .key(key)
                            .payload(payload),
                        Duration::from_secs(5),
                    )
                    .await;
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
        latency_row(
            &format!(
                "submit round trip, {clients:>2} clients ({:>5} requests)",
                all.len()
            ),
            &all,
            rate,
        );
        one_instance_p99.push((clients, percentile(&all, 0.99)));
    }
    line(
        "bench process RSS, idle (broker is separate)",
        format!("{idle_rss:.0}"),
        "",
        "MB",
    );
    line(
        "bench process RSS, under load",
        format!("{load_rss:.0}"),
        "",
        "MB",
    );

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
            latency_row(
                &format!(
                    "{n} instances × {clients:>2} clients ({:>5} requests)",
                    all.len()
                ),
                &all,
                rate,
            );
            let ratio = percentile(&all, 0.99) / alone;
            line(
                &format!("p99, {n} instances / 1, {clients:>2} clients each (≤ 2)"),
                format!("{ratio:.2}"),
                "",
                "ratio",
            );
        }
    }

    stop_tx.cancel();
    background.await?;
    for instance in instances {
        instance.backend_stop.cancel();
        instance.scorer.await??;
        instance.backend_tasks.await??;
    }
    Ok(())
}
