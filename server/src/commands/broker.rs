//! `churn broker`: the embedded broker in the foreground.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use server::broker::{BrokerOptions, EmbeddedBroker, Storage};
use server::kafka::{Kafka, KafkaArgs, DEFAULT_EMBEDDED_PORT};

/// Where the embedded broker listens and keeps its data (`churn broker`, and `churn serve` when it
/// starts one).
#[derive(clap::Args)]
pub struct BrokerArgs {
    /// Port of the embedded broker on 127.0.0.1.
    #[arg(long, env = "CHURN_BROKER_PORT", default_value_t = DEFAULT_EMBEDDED_PORT)]
    pub broker_port: u16,
    /// Directory for the broker's durable storage and log.
    #[arg(long, env = "CHURN_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

pub async fn run(args: &BrokerArgs, kafka_args: &KafkaArgs) -> Result<()> {
    let broker = start_embedded(args)?;
    println!(
        "embedded broker listening on {} (Ctrl-C to stop)",
        broker.address()
    );
    Kafka::new(broker.address(), kafka_args)
        .ensure_pipeline_topics()
        .await?;
    server::shutdown::on_signals().cancelled().await;
    Ok(())
}

/// Starts the embedded broker with durable SQLite storage under `--data-dir`.
pub fn start_embedded(args: &BrokerArgs) -> Result<EmbeddedBroker> {
    let dir = args.data_dir.join("broker");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_file = Some(std::fs::canonicalize(&dir)?.join("nisshi.log"));
    EmbeddedBroker::start(BrokerOptions {
        port: args.broker_port,
        storage: Storage::Sqlite(dir),
        initial_rebalance_delay: Duration::from_secs(3),
        log_file,
    })
}
