//! Every topic with its partitions, offsets, record counts and the settings that bound it
//! (`retention.ms`, `cleanup.policy`); and setting `--retention` on the pipeline's existing topics.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use serde::Serialize;

use super::{admin, blocking, probe, LOOKUP_TIMEOUT};
use crate::kafka::{retention_ms, Kafka, Topics, STATS_CLEANUP_POLICY};

/// One partition's offsets: records `low..high` are on the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionOffsets {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

/// A topic as `churn topics` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: Vec<PartitionOffsets>,
    /// high − low summed over partitions: the records on the broker (a compacted topic may hold
    /// fewer, its offsets have gaps).
    pub records: i64,
    /// `retention.ms` as the broker reports it; `None` when it does not say.
    pub retention_ms: Option<i64>,
    /// `cleanup.policy`: `delete`, `compact` or both.
    pub cleanup_policy: Option<String>,
}

/// The names of every topic on the cluster, sorted.
pub async fn topic_names(kafka: &Kafka) -> Result<Vec<String>> {
    let kafka = kafka.clone();
    blocking(move || {
        let consumer = probe(&kafka, "churn-inspect")?;
        let metadata = consumer
            .fetch_metadata(None, LOOKUP_TIMEOUT)
            .with_context(|| format!("listing the topics on {}", kafka.brokers))?;
        let mut names: Vec<String> = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .collect();
        names.sort();
        Ok(names)
    })
    .await
}

/// Every topic (internal ones such as `__consumer_offsets` too, when the broker lists them),
/// sorted by name, with offsets and settings.
pub async fn describe_topics(kafka: &Kafka) -> Result<Vec<TopicInfo>> {
    describe_matching(kafka, |_| true).await
}

/// `describe_topics` for the topics `wanted` picks only (the others cost no request).
pub async fn describe_matching(
    kafka: &Kafka,
    wanted: impl Fn(&str) -> bool + Send + 'static,
) -> Result<Vec<TopicInfo>> {
    let owned = kafka.clone();
    let mut topics = blocking(move || {
        let consumer = probe(&owned, "churn-inspect")?;
        let metadata = consumer
            .fetch_metadata(None, LOOKUP_TIMEOUT)
            .with_context(|| format!("listing the topics on {}", owned.brokers))?;
        let mut topics = Vec::new();
        for topic in metadata.topics().iter().filter(|t| wanted(t.name())) {
            let mut partitions = Vec::new();
            for partition in topic.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(topic.name(), partition.id(), LOOKUP_TIMEOUT)
                    .with_context(|| {
                        format!(
                            "reading the offsets of {} [{}]",
                            topic.name(),
                            partition.id()
                        )
                    })?;
                partitions.push(PartitionOffsets {
                    partition: partition.id(),
                    low,
                    high,
                });
            }
            partitions.sort_by_key(|p| p.partition);
            topics.push(TopicInfo {
                name: topic.name().to_owned(),
                records: partitions.iter().map(|p| (p.high - p.low).max(0)).sum(),
                partitions,
                retention_ms: None,
                cleanup_policy: None,
            });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    })
    .await?;
    let admin = admin(kafka)?;
    let specifiers: Vec<ResourceSpecifier> = topics
        .iter()
        .map(|t| ResourceSpecifier::Topic(&t.name))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(LOOKUP_TIMEOUT));
    let described = admin
        .describe_configs(&specifiers, &options)
        .await
        .with_context(|| format!("reading the topics' settings on {}", kafka.brokers))?;
    for (topic, config) in topics.iter_mut().zip(described) {
        // A topic whose settings cannot be read is still listed, without them.
        let Ok(config) = config else { continue };
        let value = |name: &str| config.get(name).and_then(|e| e.value.clone());
        topic.retention_ms = value("retention.ms").and_then(|v| v.trim().parse().ok());
        topic.cleanup_policy = value("cleanup.policy");
    }
    Ok(topics)
}

/// What `apply_retention` did to one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionChange {
    pub topic: String,
    /// `retention.ms` before, as the broker reported it.
    pub before_ms: Option<i64>,
    pub after_ms: i64,
}

/// The pipeline's existing topics whose retention is not what `--retention` (and the stats
/// expiry derived from it) says: what `apply_retention` would change. Compacted-only stream
/// topics are left alone, as `apply_retention` leaves them.
pub fn retention_differences(topics: &Topics, existing: &[TopicInfo]) -> Vec<RetentionChange> {
    let want = |retention: Duration| retention.as_millis() as i64;
    let streams = [
        &topics.input,
        &topics.predictions,
        &topics.dead_letter,
        &topics.labels,
    ];
    existing
        .iter()
        .filter_map(|t| {
            let after = if streams.contains(&&t.name) {
                if t.cleanup_policy.as_deref() == Some("compact") {
                    return None;
                }
                want(topics.retention)
            } else if t.name == topics.stats {
                want(topics.stats_retention())
            } else {
                return None;
            };
            (t.retention_ms != Some(after)).then(|| RetentionChange {
                topic: t.name.clone(),
                before_ms: t.retention_ms,
                after_ms: after,
            })
        })
        .collect()
}

/// Logs a warning for every pipeline topic that keeps records longer or shorter than
/// `--retention` says (a topic made before retention existed keeps them for ever): an operator
/// who changed `--retention` sees that it applies to new topics only until `churn topics
/// --apply-retention`. Best effort: a broker that cannot say is not an error here.
pub async fn warn_on_retention_differences(kafka: &Kafka) {
    let own = kafka.topics.clone();
    let described = describe_matching(kafka, move |name| own.is_pipeline_topic(name)).await;
    let existing = match described {
        Ok(existing) => existing,
        Err(e) => {
            tracing::debug!("could not compare the topics' retention with --retention: {e:#}");
            return;
        }
    };
    for change in retention_differences(&kafka.topics, &existing) {
        let shown = |ms: Option<i64>| match ms {
            Some(ms) if ms >= 0 => {
                humantime::format_duration(Duration::from_millis(ms as u64)).to_string()
            }
            Some(_) => "for ever".to_owned(),
            None => "as the broker's default".to_owned(),
        };
        tracing::warn!(
            topic = %change.topic,
            "topic keeps records {}, not {} as --retention says: run `churn topics --apply-retention` to apply it",
            shown(change.before_ms),
            shown(Some(change.after_ms))
        );
    }
}

/// Sets `retention.ms` to `--retention` on the pipeline's existing stream topics (input,
/// predictions, dead letters, outcomes), and on the window-stats topic its policy
/// (`compact,delete`) and `Topics::stats_retention` (topics made before stats expired grew for
/// ever), leaving every other setting as it is (IncrementalAlterConfigs); missing topics and the
/// models topic are left alone.
pub async fn apply_retention(kafka: &Kafka) -> Result<Vec<RetentionChange>> {
    let before = describe_topics(kafka).await?;
    let existing = |name: &str| before.iter().find(|t| t.name == name);
    let streams: Vec<&TopicInfo> = kafka
        .retained_topics()
        .iter()
        .filter_map(|name| existing(name))
        .filter(|t| t.cleanup_policy.as_deref() != Some("compact"))
        .collect();
    let stats = existing(&kafka.topics.stats);
    let admin = Arc::new(admin(kafka)?);
    let stream_value = retention_ms(kafka.topics.retention);
    set_configs(
        &admin,
        &streams,
        vec![("retention.ms".into(), stream_value)],
    )
    .await?;
    let stats_value = retention_ms(kafka.topics.stats_retention());
    set_configs(
        &admin,
        &stats.into_iter().collect::<Vec<_>>(),
        vec![
            ("cleanup.policy".into(), STATS_CLEANUP_POLICY.into()),
            ("retention.ms".into(), stats_value),
        ],
    )
    .await?;
    let change = |t: &TopicInfo, after: Duration| RetentionChange {
        topic: t.name.clone(),
        before_ms: t.retention_ms,
        after_ms: after.as_millis() as i64,
    };
    Ok(streams
        .into_iter()
        .map(|t| change(t, kafka.topics.retention))
        .chain(stats.map(|t| change(t, kafka.topics.stats_retention())))
        .collect())
}

/// Sets `settings` on `topics`, failing with every topic the broker refused (or left out of
/// its answer).
async fn set_configs(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    topics: &[&TopicInfo],
    settings: Vec<(String, String)>,
) -> Result<()> {
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let asked = names.clone();
    let admin = admin.clone();
    let outcomes = blocking(move || {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let settings: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        kafka_config_alter::set_topic_configs(&*admin, &names, &settings, LOOKUP_TIMEOUT)
            .context("setting topic configs")
    })
    .await?;
    let mut failed = Vec::new();
    for topic in &asked {
        match outcomes.iter().find(|(name, _)| name == topic) {
            Some((_, Ok(()))) => {}
            Some((_, Err(reason))) => failed.push(format!("{topic}: {reason}")),
            None => failed.push(format!("{topic}: no answer from the broker")),
        }
    }
    if !failed.is_empty() {
        bail!("could not set the retention of {}", failed.join("; "));
    }
    Ok(())
}
