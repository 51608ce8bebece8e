//! The scorer group's consumer lag, probed every few seconds for the metrics and the dashboard;
//! the probe also tells readiness whether the broker answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::kafka::{partition_count, Kafka};
use crate::metrics::PipelineMetrics;

/// Every few seconds: the scorer group's lag per input partition, and whether the broker answers.
pub async fn watch_lag(
    kafka: Kafka,
    scorer_group: String,
    metrics: Arc<PipelineMetrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<()> {
    // A consumer that only reads the group's committed offsets; it never joins the group.
    let consumer: BaseConsumer = kafka
        .consumer_config(&scorer_group, &[("enable.auto.commit", "false")])
        .create()
        .context("creating the lag monitor")?;
    let consumer = Arc::new(consumer);
    let topic = kafka.topics.input.clone();
    loop {
        let probe = consumer.clone();
        let topic = topic.clone();
        // The probe blocks for up to 3 s per call with the broker away (15 s in all): the stop
        // does not wait for it (the process exits without the abandoned thread).
        let probe = tokio::task::spawn_blocking(move || -> Result<Vec<(i32, i64)>> {
            // From the broker on every probe (one small request): an added partition shows at once.
            let partitions = partition_count(&*probe, &topic, Duration::from_secs(3))?;
            let mut wanted = TopicPartitionList::new();
            for p in 0..partitions {
                wanted.add_partition(&topic, p);
            }
            let committed = probe.committed_offsets(wanted, Duration::from_secs(3))?;
            let committed: HashMap<i32, i64> = committed
                .elements()
                .iter()
                .map(|e| {
                    (
                        e.partition(),
                        e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(0),
                    )
                })
                .collect();
            (0..partitions)
                .map(|p| {
                    let (low, high) = probe.fetch_watermarks(&topic, p, Duration::from_secs(3))?;
                    let done = committed.get(&p).copied().unwrap_or(low).max(low);
                    Ok((p, (high - done).max(0)))
                })
                .collect()
        });
        let Some(lag) = shutdown.run_until_cancelled(probe).await else {
            break;
        };
        let lag = lag?;
        match lag {
            Ok(lag) => {
                health.set_broker_ok(true);
                metrics.set_lag(lag);
            }
            Err(e) => {
                health.set_broker_ok(false);
                tracing::debug!("lag probe: {e:#}");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
        }
    }
    Ok(())
}
