//! `churn broker`: the embedded broker in the foreground; and the broker `churn serve` uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use server::broker::{credentials_path, port_in_use, BrokerOptions, EmbeddedBroker, Storage};
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

/// `churn broker`'s flags.
#[derive(clap::Args)]
pub struct BrokerCommandArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Require clients to log in (SASL/SCRAM-SHA-512, user "churn"). The first secured start
    /// makes a random password and writes <data-dir>/kafka.properties (readable by you only);
    /// clients connect with --kafka-properties <data-dir>/kafka.properties.
    #[arg(long)]
    pub secure: bool,
}

pub async fn run(args: &BrokerCommandArgs, kafka_args: &KafkaArgs) -> Result<()> {
    let stop = server::shutdown::on_signals();
    let broker = start_embedded(&args.broker, args.secure, kafka_args)?;
    println!(
        "embedded broker listening on {} (Ctrl-C to stop)",
        broker.address()
    );
    let mut kafka = Kafka::new(broker.address(), kafka_args)?;
    if args.secure {
        let file = credentials_path(&args.broker.data_dir);
        println!(
            "it requires a login: clients connect with --kafka-properties {} \
             (user churn; the password is in that file only)",
            std::fs::canonicalize(&file)
                .unwrap_or_else(|_| file.clone())
                .display()
        );
        kafka = kafka.with_properties_file(&file)?;
    }
    let topics = while_broker_lives(Some(&broker), kafka.ensure_pipeline_topics());
    server::shutdown::during_start_up(&stop, topics).await?;
    tracing::info!("the pipeline's topics exist; serving until stopped");
    // A broker that died must not leave this command looking up: exit non-zero, so a supervisor
    // restarts it.
    if let Some(error) = stop.run_until_cancelled(broker.exited()).await {
        return Err(error);
    }
    // Dropping the handle stops the broker (its storage is transactional).
    drop(broker);
    tracing::info!("embedded broker stopped");
    Ok(())
}

/// Starts the embedded broker with durable SQLite storage under `--data-dir`; with `secure`, it
/// requires the login in `<data-dir>/kafka.properties` (made on the first secured start). It
/// deletes expired records often enough for `--retention` (`server::broker::sweep_interval`).
pub fn start_embedded(
    args: &BrokerArgs,
    secure: bool,
    kafka_args: &KafkaArgs,
) -> Result<EmbeddedBroker> {
    let dir = args.data_dir.join("broker");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_file = Some(std::fs::canonicalize(&dir)?.join("nisshi.log"));
    let options = BrokerOptions {
        port: args.broker_port,
        storage: Storage::Sqlite(dir),
        initial_rebalance_delay: Duration::from_secs(3),
        log_file,
        authentication: false,
        sweep_every: Some(server::broker::sweep_interval(kafka_args.topics.retention)),
    };
    let credentials = credentials_path(&args.data_dir);
    if secure {
        return server::broker::start_secured(options, &credentials);
    }
    if credentials.exists() {
        tracing::warn!(
            "{} holds a login for this broker, but it is starting without --secure: it lets \
             anyone in",
            credentials.display()
        );
    }
    EmbeddedBroker::start(options)
}

/// Runs a start-up step, failing it as soon as the embedded broker (if this command runs one)
/// dies meanwhile: the operator then reads "the embedded broker exited on its own" and its log
/// file, not a timeout of whatever the step was waiting for.
pub async fn while_broker_lives<T>(
    broker: Option<&EmbeddedBroker>,
    step: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let Some(broker) = broker else {
        return step.await;
    };
    tokio::select! {
        biased;
        result = step => result,
        error = broker.exited() => Err(error),
    }
}

/// The broker `churn serve` talks to: the cluster named by --brokers; else a broker already on
/// the port, or the embedded one, started here (kept running while the returned handle lives).
/// With `secure` the embedded broker requires a login, and the connection uses its credentials
/// file (settings of the user's own come after it, so they win).
pub fn for_serve(
    args: &BrokerArgs,
    secure: bool,
    kafka_args: &KafkaArgs,
) -> Result<(Option<EmbeddedBroker>, Kafka)> {
    if let Some(brokers) = &kafka_args.brokers {
        if secure {
            tracing::warn!(
                "--secure-broker is for the embedded broker; with --brokers it does nothing"
            );
        }
        return Ok((None, Kafka::new(brokers.clone(), kafka_args)?));
    }
    let broker = if port_in_use(args.broker_port) {
        tracing::info!(
            port = args.broker_port,
            "a broker is already running on the port; using it"
        );
        None
    } else {
        Some(start_embedded(args, secure, kafka_args)?)
    };
    let kafka = Kafka::new(format!("127.0.0.1:{}", args.broker_port), kafka_args)?;
    let kafka = match secure {
        true => with_credentials(kafka, &credentials_path(&args.data_dir))?,
        false => kafka,
    };
    Ok((broker, kafka))
}

fn with_credentials(kafka: Kafka, file: &Path) -> Result<Kafka> {
    kafka.with_properties_file(file).with_context(|| {
        format!(
            "the secured broker's credentials: start it once with `churn broker --secure` (or \
             `churn serve --secure-broker`), which writes {}",
            file.display()
        )
    })
}
