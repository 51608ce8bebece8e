//! `churn topics`: every topic with partitions, offsets, record counts, retention and cleanup
//! policy; `--apply-retention` sets `--retention` on the pipeline's existing stream topics.

use std::time::Duration;

use anyhow::Result;
use server::kafka::inspect::{self, TopicInfo};
use server::kafka::{Kafka, KafkaArgs};

use super::table::aligned;

/// `churn topics`'s flags.
#[derive(clap::Args)]
pub struct TopicsArgs {
    /// Print JSON (an array of topics, offsets per partition, retention in ms) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Set retention.ms to --retention (default 7d) on the pipeline's existing input,
    /// predictions, dead-letter and outcome topics — nothing else of theirs changes — and say
    /// what changed. Window stats get their expiry (compact,delete, at most a day); models stay
    /// compacted.
    #[arg(long)]
    pub apply_retention: bool,
}

pub async fn run(args: &TopicsArgs, kafka_args: &KafkaArgs) -> Result<()> {
    let kafka = super::reach(kafka_args).await?;
    if args.apply_retention {
        return apply_retention(&kafka, args.json).await;
    }
    let topics = inspect::describe_topics(&kafka).await?;
    if args.json {
        super::print_stdout(&(serde_json::to_string_pretty(&topics)? + "\n"))?;
    } else {
        super::print_stdout(&table(&topics))?;
    }
    Ok(())
}

async fn apply_retention(kafka: &Kafka, json: bool) -> Result<()> {
    let changes = inspect::apply_retention(kafka).await?;
    if json {
        super::print_stdout(&(serde_json::to_string_pretty(&changes)? + "\n"))?;
        return Ok(());
    }
    if changes.is_empty() {
        super::print_stdout(
            "none of the pipeline's stream topics exists yet: nothing to change\n",
        )?;
    }
    for change in &changes {
        let before = change.before_ms.map_or("not set".to_owned(), retention);
        let after = retention(change.after_ms);
        if before == after {
            super::print_stdout(&format!(
                "{}: retention {after} (unchanged)\n",
                change.topic
            ))?;
        } else {
            super::print_stdout(&format!(
                "{}: retention {before} -> {after}\n",
                change.topic
            ))?;
        }
    }
    Ok(())
}

/// A retention.ms for people: "7days", "1h 30m", "forever" (negative: Kafka keeps everything).
pub fn retention(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_duration(Duration::from_millis(ms)).to_string(),
        Err(_) => "forever".to_owned(),
    }
}

fn table(topics: &[TopicInfo]) -> String {
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|t| {
            let offsets: Vec<String> = t
                .partitions
                .iter()
                .map(|p| format!("{}:{}-{}", p.partition, p.low, p.high))
                .collect();
            vec![
                t.name.clone(),
                t.partitions.len().to_string(),
                t.records.to_string(),
                // Not reported: the topic has none of its own, the broker's default applies.
                t.retention_ms.map_or("default".to_owned(), retention),
                t.cleanup_policy
                    .clone()
                    .unwrap_or_else(|| "default".to_owned()),
                offsets.join(" "),
            ]
        })
        .collect();
    aligned(
        &[
            "TOPIC",
            "PARTITIONS",
            "RECORDS",
            "RETENTION",
            "CLEANUP",
            "OFFSETS (partition:low-high)",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn retention_reads_as_a_duration() {
        assert_eq!(super::retention(604_800_000), "7days");
        assert_eq!(super::retention(3_000), "3s");
        assert_eq!(super::retention(-1), "forever");
        assert_eq!(super::retention(0), "0s");
    }
}
