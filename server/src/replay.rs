//! The replay producer: streams a customer CSV into the input topic, keyed by record id,
//! rate-limited, optionally looping, and never dropping what it has queued.

use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use anyhow::{bail, Context, Result};
use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use model::{Field, RawCustomer, Scalar};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::time::Instant;

use crate::csv_io::CustomerCsv;
use crate::kafka::Kafka;

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub file: PathBuf,
    /// Records per second; 0 sends as fast as the broker takes them.
    pub rate: f64,
    /// Start again at the first row after the last, until stopped.
    pub repeat: bool,
    /// Stop after this many records in all.
    pub limit: Option<u64>,
    /// Record ids are `{prefix}-{pass}-{line}`: unique per run, pass and row.
    pub id_prefix: String,
    pub show_progress: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Records the broker confirmed.
    pub sent: u64,
    /// Records handed to the producer whose delivery the broker had not confirmed when the stop
    /// gave up waiting (`STOP_DELIVERY_WAIT`): the topic may or may not have them.
    pub unconfirmed: u64,
    /// Rows the CSV parser could not read (reported with their line numbers).
    pub unreadable: u64,
    pub passes: u64,
}

impl ReplaySummary {
    /// Adds another run's counts (a replay started over after an error).
    pub fn add(&mut self, other: &ReplaySummary) {
        self.sent += other.sent;
        self.unconfirmed += other.unconfirmed;
        self.unreadable += other.unreadable;
        self.passes += other.passes;
    }
}

/// The record in the original producer's JSON shape: numbers where the cell is numeric.
pub fn to_wire(raw: &RawCustomer) -> RawCustomer {
    let mut wire = raw.clone();
    for field in Field::ALL {
        let is_text_field = matches!(
            field,
            Field::Names | Field::OnboardDate | Field::Location | Field::Company
        );
        if let (false, Some(Scalar::Text(text))) = (is_text_field, raw.get(field)) {
            if let Ok(number) = text.trim().parse::<f64>() {
                if number.is_finite() {
                    wire.set(field, Some(Scalar::Number(number)));
                }
            }
        }
    }
    wire
}

/// A short random prefix so two replays never share record ids.
pub fn random_prefix() -> String {
    format!("r{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// After the stop, how long the records already handed to the producer may still be awaited: with
/// the broker away librdkafka would wait its delivery timeout (5 minutes) for each.
pub const STOP_DELIVERY_WAIT: Duration = Duration::from_secs(4);
/// Most records handed to the producer and not yet confirmed; bounds memory when the broker is
/// slow or away. At 50,000 `churn replay` reached 81 MB through the embedded broker's stalls
/// (`churn-bench --soak`, 3,000 records/s: each waiting record holds its payload, key, delivery
/// future and librdkafka's copy, ~1 KB); 10,000 is still 3 s of that rate, and as many as
/// librdkafka's largest batch (`batch.num.messages`; at ~400 bytes a record its 1 MB
/// `batch.size` ends a batch at ~2,500), so sending as fast as possible keeps whole batches in
/// flight.
const MAX_IN_FLIGHT: usize = 10_000;

/// Streams the file into the input topic until it ends (or `limit`, or forever with `repeat`) or
/// `stop`. Returns what the broker confirmed; an error when a delivery failed before the stop.
pub async fn replay(
    kafka: &Kafka,
    options: &ReplayOptions,
    stop: CancellationToken,
) -> Result<ReplaySummary> {
    if !(options.rate >= 0.0 && options.rate.is_finite()) {
        bail!("--rate must be 0 (unlimited) or a positive number of records per second");
    }
    let producer = kafka.bulk_producer()?;
    let bar = progress_bar(options)?;
    let mut summary = ReplaySummary::default();
    let mut in_flight = FuturesUnordered::new();
    let streamed = stream(
        &producer,
        &kafka.topics.input,
        options,
        &stop,
        &bar,
        &mut summary,
        &mut in_flight,
    )
    .await;
    if let Err(e) = streamed {
        drop(in_flight);
        crate::kafka::close_within(producer, "replay producer").await;
        return Err(e);
    }
    // Every queued record is delivered (or reported) before we return; after the stop, only for
    // `STOP_DELIVERY_WAIT`.
    bar.set_message("flushing");
    let flushed = async {
        while let Some(result) = in_flight.next().await {
            confirm(result, &mut summary, stop.is_cancelled())?;
        }
        anyhow::Ok(())
    };
    let flushed = tokio::select! {
        flushed = flushed => flushed,
        _ = stopped_for(&stop, STOP_DELIVERY_WAIT) => Ok(()),
    };
    summary.unconfirmed += in_flight.len() as u64;
    drop(in_flight);
    bar.finish_and_clear();
    if summary.unconfirmed > 0 {
        tracing::warn!(
            "{} records not confirmed by the broker after {} s: the input topic may or may not \
             have them",
            summary.unconfirmed,
            STOP_DELIVERY_WAIT.as_secs()
        );
    }
    // Dropping a producer purges and flushes it: not on a runtime thread, and not for long.
    crate::kafka::close_within(producer, "replay producer").await;
    flushed.map(|()| summary)
}

/// Hands the file's rows to the producer, paced, until the file (or the limit) ends or `stop`.
async fn stream<'a>(
    producer: &FutureProducer,
    topic: &'a str,
    options: &ReplayOptions,
    stop: &CancellationToken,
    bar: &ProgressBar,
    summary: &mut ReplaySummary,
    in_flight: &mut FuturesUnordered<Delivery<'a>>,
) -> Result<()> {
    let interval = (options.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / options.rate));
    let mut next_send = Instant::now();
    let mut handed = 0u64;
    loop {
        let mut csv = CustomerCsv::open(&options.file)?;
        let mut rows_this_pass = 0u64;
        for row in csv.rows() {
            if stop.is_cancelled() || options.limit.is_some_and(|l| handed >= l) {
                return Ok(());
            }
            let row = match row {
                Ok(row) => row,
                Err(e) => {
                    bar.suspend(|| tracing::warn!("skipping {e}"));
                    summary.unreadable += 1;
                    continue;
                }
            };
            if let Some(interval) = interval {
                next_send += interval;
                tokio::select! {
                    _ = tokio::time::sleep_until(next_send) => {}
                    _ = stop.cancelled() => return Ok(()),
                }
            }
            let id = format!("{}-{}-{}", options.id_prefix, summary.passes, row.line);
            let payload = serde_json::to_vec(&to_wire(&row.raw)).expect("records serialize");
            let producer = producer.clone();
            in_flight.push(Box::pin(async move {
                let record = FutureRecord::to(topic).key(&id).payload(&payload);
                producer
                    .send(record, Duration::from_secs(60))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
            }));
            handed += 1;
            rows_this_pass += 1;
            bar.inc(1);
            // Bound memory: wait for deliveries when too many are queued (a broker away), but
            // not past the stop.
            while in_flight.len() >= MAX_IN_FLIGHT {
                tokio::select! {
                    Some(result) = in_flight.next() => confirm(result, summary, false)?,
                    _ = stop.cancelled() => return Ok(()),
                }
            }
            while let Some(Some(result)) = futures::FutureExt::now_or_never(in_flight.next()) {
                confirm(result, summary, false)?;
            }
        }
        summary.passes += 1;
        if !options.repeat || rows_this_pass == 0 {
            return Ok(());
        }
    }
}

/// One record's delivery, as the producer reports it.
type Delivery<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = KafkaResult<()>> + Send + 'a>>;

/// Counts a confirmed delivery; a failed one is an error, unless the stop purged it.
fn confirm(result: KafkaResult<()>, summary: &mut ReplaySummary, stopping: bool) -> Result<()> {
    match result {
        Ok(()) => {
            summary.sent += 1;
            Ok(())
        }
        Err(_) if stopping => {
            summary.unconfirmed += 1;
            Ok(())
        }
        Err(e) => Err(e).context("delivery to Kafka failed"),
    }
}

/// Resolves `grace` after the stop was asked for.
async fn stopped_for(stop: &CancellationToken, grace: Duration) {
    stop.cancelled().await;
    tokio::time::sleep(grace).await;
}

fn progress_bar(options: &ReplayOptions) -> Result<ProgressBar> {
    if !options.show_progress {
        return Ok(ProgressBar::hidden());
    }
    let total = if options.repeat {
        options.limit
    } else {
        let rows = CustomerCsv::open(&options.file)?.rows().count() as u64;
        Some(options.limit.map_or(rows, |l| l.min(rows)))
    };
    Ok(match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{spinner} replay [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta}) {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} replay {pos} records ({per_sec}) {msg}")
                .expect("valid template"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With nobody at the broker address, every record stays unconfirmed: the stop still ends the
    /// replay within its wait, cleanly, counting what it abandoned, and nothing as sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_with_the_broker_away_abandons_the_unconfirmed_within_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("customers.csv");
        let csv = model::synth::generate_csv(&model::synth::GenerateOptions {
            rows: 50,
            seed: 3,
            messy_fraction: 0.0,
        });
        std::fs::write(&file, csv).unwrap();
        let options = ReplayOptions {
            file,
            rate: 1_000.0,
            repeat: true,
            limit: None,
            id_prefix: "away".into(),
            show_progress: false,
        };
        let nowhere = Kafka::at(format!("127.0.0.1:{}", crate::broker::free_port()));
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stopper.cancel();
        });
        let started = std::time::Instant::now();
        let summary = replay(&nowhere, &options, stop)
            .await
            .expect("a clean stop");
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(300) + STOP_DELIVERY_WAIT + Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(summary.sent, 0, "{summary:?}");
        assert!(summary.unconfirmed >= 100, "{summary:?}");
    }

    #[test]
    fn numeric_cells_travel_as_numbers_text_stays_text() {
        let raw = RawCustomer::from_text_cells([
            (Field::Names, "123"),
            (Field::Age, "42"),
            (Field::Churn, "yes"),
            (Field::OnboardDate, "2013-08-30 07:00:40"),
        ]);
        let wire = to_wire(&raw);
        assert_eq!(wire.age, Some(Scalar::Number(42.0)));
        assert_eq!(wire.names, Some(Scalar::Text("123".into())));
        assert_eq!(wire.churn, Some(Scalar::Text("yes".into())));
        let json = serde_json::to_string(&wire).unwrap();
        assert!(json.contains(r#""Age":42.0"#), "{json}");
    }
}
