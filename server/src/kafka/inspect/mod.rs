//! Looking inside the cluster for an operator: the topics with their offsets and settings
//! (`topics`, also setting `--retention` on existing ones), the records of one topic as JSON
//! (`records` reads, `render` turns one record into JSON, hostile bytes included), and the
//! consumer groups with their lag (`groups`). The `churn topics`, `tail` and `groups` commands
//! print what these return. Works on any cluster: only Kafka protocol calls through librdkafka.

mod groups;
mod records;
pub mod render;
#[cfg(test)]
mod tests;
mod topics;

pub use groups::{list_groups, GroupInfo, GroupMember, GroupOffset};
pub use records::{read_records, Ended, Start, TailOptions, MAX_LAST};
pub use topics::{
    apply_retention, describe_matching, describe_topics, retention_differences, topic_names,
    warn_on_retention_differences, PartitionOffsets, RetentionChange, TopicInfo,
};

use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;

use super::Kafka;

/// How long one look-up may take before the command gives up and says so.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A consumer that reads metadata and offsets, never joins a group and never commits.
fn probe(kafka: &Kafka, group: &str) -> Result<BaseConsumer> {
    kafka
        .consumer_config(
            group,
            &[
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
            ],
        )
        .create()
        .context("creating the Kafka client")
}

fn admin(kafka: &Kafka) -> Result<AdminClient<DefaultClientContext>> {
    kafka
        .config(&[])
        .create()
        .context("creating the Kafka admin client")
}

/// Runs blocking librdkafka look-ups off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a Kafka look-up panicked")?
}
