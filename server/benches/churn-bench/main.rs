//! `churn-bench`: the numbers behind BENCHMARKS.md, measured side by side in one run on the
//! embedded broker. Run by hand (not in CI):
//!
//!     cargo bench -p server --bench churn-bench -- [--records 200000] [--repeat 3] [--python]
//!
//! Prints one table; each figure is the median of the repeats with the min–max range.
//!
//! The cost of a challenger scored in the shadow alone: `-- --only shadow`.
//!
//! The memory soak instead (`soak.rs`): `cargo bench -p server --bench churn-bench -- --soak 30m
//! --rate 3000`.
//!
//! A bench target without the test harness, so no build but `cargo bench` (and `--all-targets`)
//! compiles it. `cargo bench` passes `--bench`; without it, as under `cargo test --all-targets`,
//! it only checks its arguments and measures nothing (a run takes minutes and a broker).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod latency;
mod scoring;
mod shadow;
mod soak;
mod throughput;
mod wasm;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use model::synth::{generate_customers, GenerateOptions};
use server::broker::{BrokerOptions, EmbeddedBroker};
use server::kafka::{Kafka, Topics};
use server::replay::to_wire;

use latency::latency;
use scoring::scoring;
use throughput::throughput;
use wasm::wasm_size;

#[derive(Parser)]
#[command(
    name = "churn-bench",
    bin_name = "cargo bench -p server --bench churn-bench --",
    about = "Benchmarks of the churn pipeline on the embedded broker"
)]
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
    /// Instead of the benchmarks: the memory soak for this long ("30m", "90s", "1h"): `churn
    /// serve` and `churn replay` at --rate on the embedded broker, RSS sampled per process.
    #[arg(long, value_parser = soak::parse_duration)]
    soak: Option<Duration>,
    /// Records per second replayed during the soak.
    #[arg(long, default_value_t = 3_000.0, value_parser = server::args::rate)]
    rate: f64,
    /// Seconds between the soak's memory samples.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    sample_secs: u64,
    /// The soak fails when a process's RSS grows faster than this over its second half (MB/min).
    #[arg(long, default_value_t = 1.0)]
    max_slope: f64,
    /// The soak's broker keeps its data in memory instead of SQLite: much faster (SQLite storage
    /// took about 400 records/s on the reference machine), but its RSS then grows with the data.
    #[arg(long)]
    memory_broker: bool,
    /// The soak's topic retention ("10m", "1h"; `churn serve --retention`): the SQLite broker's
    /// sweep then keeps its database at about this much traffic (the in-memory broker ignores
    /// it and keeps everything). 3,000 records/s under the product's
    /// 7 days would be ~800 GB on disk (~1.4 MB/s measured), which nobody runs on the embedded
    /// broker; an operator at this rate shortens it.
    #[arg(long, default_value = "10m", value_parser = server::kafka::parse_retention)]
    retention: Duration,
    /// Passed by `cargo bench`: measure. Without it (`cargo test --all-targets`) nothing runs.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Scoring,
    Throughput,
    /// The pipeline without and with a challenger scored in the shadow: its cost in %.
    Shadow,
    Latency,
    Wasm,
}

/// Median and range of repeated measurements.
fn summary(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// One table row of repeated measurements: median and range; returns the median.
fn row(name: &str, unit: &str, values: Vec<f64>) -> f64 {
    let (median, min, max) = summary(values);
    line(
        name,
        format!("{median:.0}"),
        &format!("{min:>10.0} – {max:<10.0}"),
        unit,
    );
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
        ..Topics::default()
    }
}

fn records(n: usize) -> Vec<(String, Vec<u8>)> {
    let customers = generate_customers(&GenerateOptions {
        rows: 10_000,
        seed: 5,
        messy_fraction: 0.0,
    });
    (0..n)
        .map(|i| {
            let json = serde_json::to_vec(&to_wire(&customers[i % customers.len()].to_raw()))
                .expect("serializes");
            (format!("b-{i}"), json)
        })
        .collect()
}

fn python_peer(kafka: &Kafka, args: &Args, csv: &std::path::Path) -> Result<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/python_peer.py");
    let output = std::process::Command::new("python3")
        .args([
            script,
            "--brokers",
            &kafka.brokers,
            "--csv",
            &csv.to_string_lossy(),
            "--records",
            &args.python_records.to_string(),
        ])
        .output()
        .context("running benches/python_peer.py")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("records_per_second="))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| {
            format!(
                "python peer failed: {}{}",
                text,
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    Ok(rate)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !args.bench {
        // `cargo test --all-targets` runs this without the harness: the soak's arithmetic is
        // checked here, cheaply.
        soak::self_check();
        println!("churn-bench measures only under `cargo bench -p server --bench churn-bench`");
        return Ok(());
    }
    if let Some(duration) = args.soak {
        return soak::soak(&soak::SoakOptions {
            duration,
            rate: args.rate,
            sample_every: Duration::from_secs(args.sample_secs),
            max_slope_mb_per_min: args.max_slope,
            memory_broker: args.memory_broker,
            retention: args.retention,
        })
        .await;
    }
    let broker = EmbeddedBroker::start(BrokerOptions::for_tests())?;
    let kafka = Kafka {
        properties: args.properties.clone(),
        ..Kafka::at(broker.address())
    };
    kafka.check_reachable(Duration::from_secs(10)).await?;
    let customers = generate_customers(&GenerateOptions {
        rows: 5_000,
        seed: 9,
        messy_fraction: 0.0,
    });
    let model = Arc::new(model::train::train(
        &customers,
        &Default::default(),
        "bench".into(),
        |_| {},
    )?);
    println!(
        "churn-bench on {} cores; {} records per throughput run, {} repeats (after {} warm-up)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.records,
        args.repeat,
        args.warmup
    );
    line("measure", "median", "min – max", "unit");
    println!(
        "|{}|{}|{}|{}|",
        "-".repeat(46),
        "-".repeat(14),
        "-".repeat(25),
        "-".repeat(12)
    );
    let runs = |part: Part| args.only.is_empty() || args.only.contains(&part);
    if runs(Part::Scoring) {
        scoring(&model, &customers, args.repeat);
    }
    // Latency first: its memory figures are then not inflated by the throughput runs' records.
    if runs(Part::Latency) {
        latency(&kafka, &args, model.clone(), &customers[0]).await?;
    }
    let ours = if runs(Part::Throughput) {
        Some(throughput(&kafka, &args, model.clone()).await?)
    } else {
        None
    };
    if runs(Part::Shadow) {
        // Another model (other customers): a challenger that differs from the champion.
        let others = generate_customers(&GenerateOptions {
            rows: 5_000,
            seed: 10,
            messy_fraction: 0.0,
        });
        let challenger = model::train::train(&others, &Default::default(), "bench".into(), |_| {})?;
        shadow::shadow_cost(&kafka, &args, model.clone(), Arc::new(challenger)).await?;
    }
    if let (Some(ours), true) = (ours, args.python) {
        let dir = tempfile_dir()?;
        let csv = dir.join("customers.csv");
        std::fs::write(
            &csv,
            model::synth::generate_csv(&GenerateOptions {
                rows: 5_000,
                seed: 9,
                messy_fraction: 0.0,
            }),
        )?;
        let peer = python_peer(&kafka, &args, &csv)?;
        line(
            "python peer (kafka-python + pandas + sklearn)",
            format!("{peer:.0}"),
            "",
            "records/s",
        );
        line(
            "ours / python peer",
            format!("{:.0}", ours / peer),
            "goal ≥ 100",
            "ratio",
        );
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
