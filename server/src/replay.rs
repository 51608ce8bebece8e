//! The replay producer: streams a customer CSV into the input topic, keyed by record id,
//! rate-limited, optionally looping, and never dropping what it has queued.

use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use anyhow::{bail, Context, Result};
use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use model::{Field, RawCustomer, Scalar};
use rdkafka::producer::FutureRecord;
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
    pub sent: u64,
    /// Rows the CSV parser could not read (reported with their line numbers).
    pub unreadable: u64,
    pub passes: u64,
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

pub async fn replay(
    kafka: &Kafka,
    options: &ReplayOptions,
    stop: CancellationToken,
) -> Result<ReplaySummary> {
    if !(options.rate >= 0.0 && options.rate.is_finite()) {
        bail!("--rate must be 0 (unlimited) or a positive number of records per second");
    }
    let producer = kafka.idempotent_producer()?;
    let topic = kafka.topics.input.as_str();
    let bar = progress_bar(options)?;
    let interval = (options.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / options.rate));
    let mut next_send = Instant::now();
    let mut summary = ReplaySummary::default();
    let mut in_flight = FuturesUnordered::new();
    const MAX_IN_FLIGHT: usize = 50_000;

    'passes: loop {
        let mut csv = CustomerCsv::open(&options.file)?;
        let mut rows_this_pass = 0u64;
        for row in csv.rows() {
            if stop.is_cancelled() || options.limit.is_some_and(|l| summary.sent >= l) {
                break 'passes;
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
                    _ = stop.cancelled() => break 'passes,
                }
            }
            let id = format!("{}-{}-{}", options.id_prefix, summary.passes, row.line);
            let payload = serde_json::to_vec(&to_wire(&row.raw)).expect("records serialize");
            let producer = producer.clone();
            in_flight.push(async move {
                let record = FutureRecord::to(topic).key(&id).payload(&payload);
                producer
                    .send(record, Duration::from_secs(60))
                    .await
                    .map_err(|(e, _)| e)
            });
            summary.sent += 1;
            rows_this_pass += 1;
            bar.inc(1);
            // Bound memory: wait for deliveries when too many are queued.
            while in_flight.len() >= MAX_IN_FLIGHT {
                if let Some(result) = in_flight.next().await {
                    result.context("delivery to Kafka failed")?;
                }
            }
            while let Some(Some(result)) = futures::FutureExt::now_or_never(in_flight.next()) {
                result.context("delivery to Kafka failed")?;
            }
        }
        summary.passes += 1;
        if !options.repeat || rows_this_pass == 0 {
            break;
        }
    }

    // Flush: every queued record is delivered (or reported) before we return.
    bar.set_message("flushing");
    while let Some(result) = in_flight.next().await {
        result.context("delivery to Kafka failed")?;
    }
    bar.finish_and_clear();
    Ok(summary)
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
