//! What the pipeline holds on disk, measured every 15 s for `/metrics` and the dashboard: the
//! records each topic holds, and the embedded broker's data directory in bytes — so an operator
//! sees retention working (or not) before the disk fills.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use app::StorageStatus;
use tokio_util::sync::CancellationToken;

use crate::kafka::inspect::describe_matching;
use crate::kafka::Kafka;
use crate::metrics::PipelineMetrics;

/// Often enough to watch a retention of minutes work; each probe lists every topic's offsets
/// and settings (a few small requests, ~10 ms of CPU).
pub const EVERY: Duration = Duration::from_secs(15);

/// Measures until `shutdown`; `data_dir` is the embedded broker's (none on a cluster). A failed
/// probe (broker away) keeps the last numbers and is logged at debug: the lag monitor and
/// `/readyz` already say the broker is away.
pub async fn watch_storage(
    kafka: Kafka,
    data_dir: Option<PathBuf>,
    metrics: Arc<PipelineMetrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let probe = async {
            // Ours only: on a shared cluster, other teams' topics are not ours to count.
            let topics = kafka.topics.clone();
            let topics =
                describe_matching(&kafka, move |name| topics.is_pipeline_topic(name)).await?;
            let bytes = match data_dir.clone() {
                Some(dir) => Some(tokio::task::spawn_blocking(move || dir_bytes(&dir)).await?),
                None => None,
            };
            anyhow::Ok(StorageStatus {
                data_dir_bytes: bytes,
                topic_records: topics.into_iter().map(|t| (t.name, t.records)).collect(),
            })
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            measured = probe => match measured {
                Ok(storage) => metrics.set_storage(storage),
                Err(e) => tracing::debug!("could not measure the broker's storage: {e:#}"),
            },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// The bytes of every file under `dir` (symbolic links not followed; unreadable parts skipped).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_counts_its_files_at_every_depth_and_not_its_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(dir.path().join("b/c/d"), vec![0u8; 234]).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("b/loop")).unwrap();
        assert_eq!(dir_bytes(dir.path()), 1234);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }

    #[test]
    fn storage_reaches_the_metrics_and_a_gone_topic_leaves_them() {
        let metrics = PipelineMetrics::default();
        metrics.set_storage(StorageStatus {
            data_dir_bytes: Some(5_000_000),
            topic_records: vec![("costumerchurn".into(), 42), ("old".into(), 7)],
        });
        let text = metrics.render();
        assert!(
            text.contains("churn_topic_records{topic=\"costumerchurn\"} 42"),
            "{text}"
        );
        assert!(
            text.contains("churn_topic_records{topic=\"old\"} 7"),
            "{text}"
        );
        assert!(text.contains("churn_broker_data_bytes 5000000"), "{text}");
        metrics.set_storage(StorageStatus {
            data_dir_bytes: None,
            topic_records: vec![("costumerchurn".into(), 40)],
        });
        let text = metrics.render();
        assert!(!text.contains("topic=\"old\""), "{text}");
        assert!(text.contains("churn_broker_data_bytes 0"), "{text}");
        assert_eq!(metrics.storage().unwrap().topic_records.len(), 1);
        assert_eq!(StorageStatus::human_bytes(999), "999 B");
        assert_eq!(StorageStatus::human_bytes(1_234_567), "1.2 MB");
    }
}
