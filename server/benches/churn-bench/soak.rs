//! The soak: `churn serve` (web server, in-process scorer and analytics) and `churn replay` at a
//! steady rate on the embedded broker (SQLite storage, as `churn serve` runs it), for a long
//! while, with the resident memory (VmRSS) of each process sampled as it goes. Memory must level
//! off: the least-squares slope over the second half stays under a bound.
//!
//!     cargo bench -p server --bench churn-bench -- --soak 30m --rate 3000

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use model::synth::{generate_csv, GenerateOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use server::broker::{BrokerOptions, EmbeddedBroker, Storage};
use server::kafka::Kafka;

/// The soak's settings (from the command line).
pub struct SoakOptions {
    pub duration: Duration,
    pub rate: f64,
    pub sample_every: Duration,
    /// The most a process's RSS may grow over the second half, in MB per minute.
    pub max_slope_mb_per_min: f64,
    /// The broker keeps its data in memory rather than SQLite: its own RSS then grows with the
    /// data and is not held to the bound, but it takes far more records per second.
    pub memory_broker: bool,
    /// The pipeline topics' retention (`churn serve --retention`), with the broker sweeping at
    /// `server::broker::sweep_interval` of it, as `churn serve` runs its embedded broker.
    pub retention: Duration,
}

/// The RSS each process must stay under, in MB (the goal in BENCHMARKS.md, "Memory over time").
/// The in-memory broker holds its data, so it has none.
const SERVE_BOUND_MB: f64 = 250.0;
const REPLAY_BOUND_MB: f64 = 50.0;
const SQLITE_BROKER_BOUND_MB: f64 = 100.0;

/// "90s", "10m", "1h" or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{text:?}: use s, m or h, e.g. 30m")),
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(Duration::from_secs_f64(n * scale)),
        _ => Err(format!("{text:?} is not a positive duration, e.g. 30m")),
    }
}

/// A process whose memory is watched; killed if the soak ends early.
struct Watched {
    name: &'static str,
    pid: u32,
    child: Option<Child>,
    samples: Vec<(f64, f64)>,
    /// The RSS it must stay under, in MB (`None`: not held to one).
    bound_mb: Option<f64>,
    /// CPU seconds used when the soak started sampling.
    cpu_at_start: f64,
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// VmRSS of a process in MB (`None` once it is gone).
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) a process has used so far, in seconds (`None` once it is gone).
/// Read because a process that keeps a core busy is a cost too: an idle `churn serve` kept the
/// embedded broker at 85–95% of a core with 5 ms fetch waits (each parked Fetch re-reads storage).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields after it start past the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux when it cannot be asked).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
            .filter(|ticks: &f64| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// The least-squares slope of `(x, y)` points (0 with fewer than two).
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mean_x, mean_y) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let covariance: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if variance == 0.0 {
        0.0
    } else {
        covariance / variance
    }
}

fn churn(args: &[&str], log: &Path) -> Result<Child> {
    let file = std::fs::File::create(log)?;
    Command::new(env!("CARGO_BIN_EXE_churn"))
        .args(args)
        .env("CHURN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("starting churn")
}

/// Predictions written so far (the sum of the fresh topic's high watermarks: with a short
/// retention the low watermark moves, and `high - low` once printed -718/s); `None` when the
/// broker did not answer for a partition in time. Counting such a partition as 0 once printed
/// rates of -367,349 and +80,473 records/s around a broker stall.
fn predictions(consumer: &BaseConsumer, kafka: &Kafka) -> Option<i64> {
    (0..kafka.topics.partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(&kafka.topics.predictions, p, Duration::from_secs(5))
                .ok()
                .map(|(_low, high)| high)
        })
        .sum()
}

/// Runs the soak; fails when a process died, its memory kept growing or passed its bound, the
/// pipeline fell behind, or a command did not stop cleanly.
pub async fn soak(options: &SoakOptions) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let storage = match options.memory_broker {
        true => Storage::Memory,
        false => Storage::Sqlite(dir.path().join("broker")),
    };
    let broker = EmbeddedBroker::start(BrokerOptions {
        storage,
        sweep_every: Some(server::broker::sweep_interval(options.retention)),
        ..BrokerOptions::for_tests()
    })?;
    let mut kafka = Kafka::at(broker.address());
    kafka.topics.retention = options.retention;
    let retention = format!("{}ms", options.retention.as_millis());
    kafka.check_reachable(Duration::from_secs(10)).await?;
    kafka.ensure_pipeline_topics().await?;
    let csv = dir.path().join("customers.csv");
    std::fs::write(
        &csv,
        generate_csv(&GenerateOptions {
            rows: 10_000,
            seed: 7,
            messy_fraction: 0.02,
        }),
    )?;
    let customers = model::synth::generate_customers(&GenerateOptions {
        rows: 3_000,
        seed: 7,
        messy_fraction: 0.0,
    });
    let model = model::train::train(&customers, &Default::default(), "soak".into(), |_| {})?;
    let model_path = dir.path().join("model.json");
    server::model_store::save(&model, &model_path)?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let addr = format!("127.0.0.1:{}", server::broker::free_port());
    let serve = churn(
        &[
            "serve",
            "--brokers",
            &kafka.brokers,
            "--addr",
            &addr,
            "--site-root",
            &path(&dir.path().join("site")),
            "--data-dir",
            &path(&dir.path().join("data")),
            "--model",
            &path(&model_path),
            "--instance-id",
            "soak",
            "--retention",
            &retention,
        ],
        &dir.path().join("serve.log"),
    )?;
    let rate = options.rate.to_string();
    let replay = churn(
        &[
            "replay",
            &path(&csv),
            "--brokers",
            &kafka.brokers,
            "--rate",
            &rate,
            "--loop",
            "--retention",
            &retention,
        ],
        &dir.path().join("replay.log"),
    )?;
    let mut watched = [
        Watched {
            name: "serve (web, scorer, analytics)",
            pid: serve.id(),
            child: Some(serve),
            samples: Vec::new(),
            bound_mb: Some(SERVE_BOUND_MB),
            cpu_at_start: 0.0,
        },
        Watched {
            name: "replay",
            pid: replay.id(),
            child: Some(replay),
            samples: Vec::new(),
            bound_mb: Some(REPLAY_BOUND_MB),
            cpu_at_start: 0.0,
        },
        Watched {
            name: if options.memory_broker {
                "broker (nisshi, in memory: not bounded)"
            } else {
                "broker (nisshi, SQLite)"
            },
            pid: broker.pid(),
            child: None,
            samples: Vec::new(),
            bound_mb: (!options.memory_broker).then_some(SQLITE_BROKER_BOUND_MB),
            cpu_at_start: 0.0,
        },
    ];
    let probe: BaseConsumer = kafka.consumer_config("soak-probe", &[]).create()?;
    println!(
        "soak: {} min at {} records/s, RSS every {} s (logs in {})\n",
        options.duration.as_secs_f64() / 60.0,
        options.rate,
        options.sample_every.as_secs(),
        dir.path().display()
    );
    println!("| minute | serve MB | replay MB | broker MB | predictions/s |");
    println!("|-------:|---------:|----------:|----------:|--------------:|");
    let started = Instant::now();
    for w in &mut watched {
        w.cpu_at_start = cpu_seconds(w.pid).unwrap_or(0.0);
    }
    // The last count read (a sample whose count the broker did not give is skipped).
    let mut last = (started, predictions(&probe, &kafka).unwrap_or(0));
    // (minute, predictions so far), for the rate over the second half.
    let mut made: Vec<(f64, i64)> = Vec::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while started.elapsed() < options.duration {
        tokio::select! {
            _ = tokio::time::sleep(options.sample_every) => {}
            // Ctrl-C ends the soak early, with the processes stopped and the figures so far.
            _ = &mut interrupted => break,
        }
        let minute = started.elapsed().as_secs_f64() / 60.0;
        let mut row = format!("| {minute:>6.2} |");
        for w in &mut watched {
            let Some(mb) = rss_mb(w.pid) else {
                bail!(
                    "{} (pid {}) is gone after {minute:.1} min: see the logs in {}",
                    w.name,
                    w.pid,
                    dir.keep().display()
                );
            };
            w.samples.push((minute, mb));
            row.push_str(&format!(" {mb:>8.1} |"));
        }
        match predictions(&probe, &kafka) {
            Some(count) => {
                let now = (Instant::now(), count);
                made.push((minute, count));
                let per_second =
                    (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64();
                last = now;
                println!("{row} {per_second:>13.0} |");
            }
            None => println!("{row} {:>13} |", "no answer"),
        }
    }

    println!("\n| process | max RSS MB | bound MB | slope, 2nd half, MB/min | CPU, % of a core |");
    println!("|---|---:|---:|---:|---:|");
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let mut failures = Vec::new();
    let half = started.elapsed().as_secs_f64() / 60.0 / 2.0;
    for w in &watched {
        let second_half: Vec<(f64, f64)> =
            w.samples.iter().copied().filter(|s| s.0 >= half).collect();
        let max = w.samples.iter().map(|s| s.1).fold(0.0, f64::max);
        let slope = slope(&second_half);
        let cpu = cpu_seconds(w.pid).map_or(f64::NAN, |now| now - w.cpu_at_start);
        let bound = w.bound_mb.map_or("none".into(), |b| format!("{b:.0}"));
        println!(
            "| {} | {max:.1} | {bound} | {slope:+.2} | {:.0} |",
            w.name,
            cpu / elapsed * 100.0
        );
        let Some(bound) = w.bound_mb else { continue };
        if slope > options.max_slope_mb_per_min {
            failures.push(format!(
                "{} grows {slope:.2} MB/min (at most {})",
                w.name, options.max_slope_mb_per_min
            ));
        }
        if max > bound {
            failures.push(format!("{} reached {max:.0} MB (bound {bound:.0})", w.name));
        }
    }
    // Memory that stays flat because the pipeline stopped says nothing: it must have kept up.
    let kept_up = made
        .iter()
        .find(|m| m.0 >= half)
        .zip(made.last())
        .map(|(from, to)| (to.1 - from.1) as f64 / ((to.0 - from.0) * 60.0).max(1e-9));
    if let (Some(rate), true) = (kept_up, options.rate > 0.0) {
        println!("predictions over the second half: {rate:.0}/s");
        if rate < options.rate * 0.9 {
            failures.push(format!(
                "the pipeline fell behind: {rate:.0} predictions/s for {} records/s replayed",
                options.rate
            ));
        }
    }
    // The stop, timed: SIGTERM to the commands, as an operator would.
    for w in &mut watched {
        if let Some(child) = &mut w.child {
            let stop = Instant::now();
            let _ = Command::new("kill")
                .args(["-TERM", &w.pid.to_string()])
                .status();
            let status = child.wait()?;
            let took = stop.elapsed();
            w.child = None;
            println!(
                "{} stopped in {:.1} s ({status})",
                w.name,
                took.as_secs_f64()
            );
            // The product's promise (README, "Clean stops"): exit 0 within 10 s of SIGTERM.
            if !status.success() || took > Duration::from_secs(10) {
                failures.push(format!(
                    "{} stopped in {:.1} s with {status}",
                    w.name,
                    took.as_secs_f64()
                ));
            }
        }
    }
    drop(broker);
    if !failures.is_empty() {
        bail!(
            "soak failed: {} (logs kept in {})",
            failures.join("; "),
            dir.keep().display()
        );
    }
    println!(
        "\nsoak passed: every slope within {} MB/min, every RSS under its bound, predictions kept up",
        options.max_slope_mb_per_min
    );
    Ok(())
}

/// The soak's arithmetic, checked at every `cargo test --all-targets` (this bench has no test
/// harness, so it runs these when started without `--bench`).
pub fn self_check() {
    the_slope_of_a_line_is_its_gradient_and_a_flat_series_has_none();
    durations_take_a_unit();
}

fn the_slope_of_a_line_is_its_gradient_and_a_flat_series_has_none() {
    let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 7.0)).collect();
    assert!((slope(&line) - 3.0).abs() < 1e-9);
    assert_eq!(slope(&[(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)]), 0.0);
    assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
    assert_eq!(slope(&[(1.0, 5.0), (1.0, 9.0)]), 0.0, "no spread in x");
}

fn durations_take_a_unit() {
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
    assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    for bad in ["", "0m", "-5m", "10d", "m", "NaNm"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}
