//! `churn`: the command line of the real-time churn pipeline.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use model::synth::{generate_csv, GenerateOptions};
use model::train::{stratified_folds, train, ThresholdRule, TrainOptions, TrainProgress};
use model::{ChurnModel, Feature};
use server::broker::{port_in_use, BrokerOptions, EmbeddedBroker, Storage};
use server::csv_io::CustomerCsv;
use server::backend::{BackendOptions, PipelineBackend};
use server::kafka::{Kafka, KafkaArgs, DEFAULT_EMBEDDED_PORT};
use server::replay::{random_prefix, replay, ReplayOptions};
use server::scorer::Scorer;
use server::web::WebOptions;
use server::analyze::{self, AnalyzeOptions};
use server::batch::score_file;
use server::metrics::PipelineMetrics;
use std::sync::Arc;
use server::args;
use server::supervisor::Supervisor;
use server::{model_file, models};

#[derive(Parser)]
#[command(name = "churn", version, about = "Real-time customer churn prediction on Apache Kafka",
          long_about = "Real-time customer churn prediction on Apache Kafka.\n\n\
    Customer records stream into a topic, a scorer predicts churn with a logistic-regression model, \
    and predictions stream out, with a web app to watch and query them. Runs on an embedded \
    Kafka-compatible broker by default, or on your cluster with --brokers.")]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Log filter, e.g. "info" or "debug,librdkafka=debug". librdkafka's own messages are off
    /// by default: while a broker is away every client repeats them; ours say it once per cause.
    #[arg(long, env = "CHURN_LOG", default_value = "info,rdkafka=off,librdkafka=off", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded Kafka-compatible broker in the foreground (durable SQLite storage).
    Broker(BrokerArgs),
    /// Write a realistic synthetic customer CSV (deterministic by seed).
    Generate(GenerateArgs),
    /// Train a churn model from a labelled CSV, with a cross-validated quality report.
    Train(TrainArgs),
    /// Publish a model file to the models topic: every running scorer and web server switches to it.
    Publish {
        #[arg(default_value = "data/model.json")]
        file: PathBuf,
    },
    /// Inspect model files.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Stream a customer CSV into the input topic, keyed, rate-limited, optionally looping.
    Replay(ReplayArgs),
    /// Run the scorer service: input topic -> model -> predictions topic (scales out by group).
    /// With --input and --output, score a CSV file offline instead.
    Score(ScoreArgs),
    /// Run the stream-analytics processor: windowed churn stats per segment -> stats topic.
    Analyze(AnalyzeArgs),
    /// Run the web app with the scorer in-process (and the embedded broker unless --brokers).
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct BrokerArgs {
    /// Port of the embedded broker on 127.0.0.1.
    #[arg(long, env = "CHURN_BROKER_PORT", default_value_t = DEFAULT_EMBEDDED_PORT)]
    broker_port: u16,
    /// Directory for the broker's durable storage and log.
    #[arg(long, env = "CHURN_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Number of customers.
    #[arg(long, default_value_t = 900)]
    rows: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of rows made messy on purpose (missing values, stray spaces, trailing columns, CRLF).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = args::share)]
    messy: f64,
    /// Output CSV file.
    #[arg(short, long, default_value = "data/customers.csv")]
    output: PathBuf,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Labelled customer CSV (with a Churn column).
    #[arg(short, long, default_value = "data/customers.csv")]
    input: PathBuf,
    /// Where to write the model file.
    #[arg(short, long, default_value = "data/model.json")]
    output: PathBuf,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(2..=100))]
    folds: u32,
    /// L2 penalty weight (1.0 matches scikit-learn's default C = 1).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = args::non_negative)]
    l2: f64,
    /// Seed for the fold assignment.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Features to use, comma-separated (default: all honest features:
    /// Age,Total_Purchase,Account_Manager,Years,Num_Sites,Tenure_Years).
    #[arg(long, value_delimiter = ',', value_parser = parse_feature)]
    features: Vec<Feature>,
    /// How to choose the decision threshold: `f1` (maximize F1) or `cost:RATIO` (a missed churner
    /// costs RATIO false alarms).
    #[arg(long, default_value = "f1")]
    threshold: ThresholdRule,
    /// Also publish the model to the models topic, so running scorers switch to it.
    #[arg(long)]
    publish: bool,
    /// Write each row's cross-validation fold to this CSV (row,fold), e.g. to compare with other tools.
    #[arg(long)]
    export_folds: Option<PathBuf>,
}

fn parse_feature(name: &str) -> Result<Feature, String> {
    Feature::from_name(name).ok_or_else(|| {
        format!("unknown feature {name:?}: choose from Age, Total_Purchase, Account_Manager, Years, Num_Sites, Tenure_Years")
    })
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Print a model file readably: version, features, weights, metrics.
    Info {
        #[arg(default_value = "data/model.json")]
        file: PathBuf,
    },
}

#[derive(clap::Args, Clone)]
struct ReplayArgs {
    /// Customer CSV to stream.
    #[arg(default_value = "data/customers.csv")]
    file: PathBuf,
    /// Records per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true, value_parser = args::rate)]
    rate: f64,
    /// Start over after the last row, until stopped (like the original producer).
    #[arg(long = "loop")]
    repeat: bool,
    /// Stop after this many records.
    #[arg(long)]
    limit: Option<u64>,
    /// Prefix of record ids (default: random per run).
    #[arg(long, value_parser = args::id_prefix)]
    id_prefix: Option<String>,
}

#[derive(clap::Args, Clone)]
struct ScoreArgs {
    /// Model file; used until (and unless) a newer model is published on the models topic.
    #[arg(short, long, env = "CHURN_MODEL", default_value = "data/model.json")]
    model: PathBuf,
    /// Consumer group: run more scorers with the same group to share the partitions.
    #[arg(long, env = "CHURN_GROUP", default_value = "churn-scorer")]
    group: String,
    /// Offline mode: score this CSV file instead of the stream (needs --output).
    #[arg(long, requires = "output")]
    input: Option<PathBuf>,
    /// Offline mode: where to write the scored CSV.
    #[arg(long, requires = "input")]
    output: Option<PathBuf>,
}

#[derive(clap::Args)]
struct AnalyzeArgs {
    /// Length of the tumbling windows in seconds.
    #[arg(long, env = "CHURN_WINDOW_SECS", default_value_t = 10.0, allow_negative_numbers = true, value_parser = args::positive_seconds)]
    window_secs: f64,
    /// Seconds after a window's end that late records still count in it before publication.
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true, value_parser = args::non_negative_seconds)]
    lateness_secs: f64,
    /// Consumer group: run more processors with the same group to share the partitions.
    #[arg(long, default_value = "churn-analytics")]
    group: String,
    /// Model file whose training scores drift is measured against (a published model wins).
    #[arg(short, long, env = "CHURN_MODEL", default_value = "data/model.json")]
    model: PathBuf,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address of the web app.
    #[arg(long, env = "CHURN_ADDR", default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// The built site (scripts/build.sh writes it).
    #[arg(long, env = "CHURN_SITE_ROOT", default_value = "target/site")]
    site_root: PathBuf,
    #[command(flatten)]
    score: ScoreArgs,
    /// Do not run the scorer in this process (run `churn score` separately).
    #[arg(long)]
    no_scorer: bool,
    /// Also replay this CSV into the input topic, looping, so predictions flow.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Replay rate in records per second.
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true, value_parser = args::rate)]
    replay_rate: f64,
    /// Do not run the stream-analytics processor in this process (run `churn analyze` separately).
    #[arg(long)]
    no_analytics: bool,
    /// Length of the analytics windows in seconds.
    #[arg(long, env = "CHURN_WINDOW_SECS", default_value_t = 10.0, allow_negative_numbers = true, value_parser = args::positive_seconds)]
    window_secs: f64,
    /// Most form submissions waiting at once; more are answered 429 instead of piling up.
    #[arg(long, default_value_t = 10_000, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    max_pending: u32,
    /// Seconds a form submission waits for its prediction.
    #[arg(long, env = "CHURN_REPLY_TIMEOUT", default_value_t = 5.0, allow_negative_numbers = true, value_parser = args::positive_seconds)]
    reply_timeout: f64,
    /// This web server's name among several: its replies come on the topic
    /// `<predictions topic>-replies-<id>`. Default: the host name and the --addr port.
    #[arg(long, env = "CHURN_INSTANCE_ID", value_parser = server::replies::parse_instance_id)]
    instance_id: Option<String>,
    #[command(flatten)]
    broker: BrokerArgs,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .with_context(|| format!("bad --log filter {:?}", cli.log))?,
        )
        .with_target(false)
        // Logs go to stderr; stdout carries results (reports, summaries).
        .with_writer(std::io::stderr)
        .init();
    // Panics go to the log cut short and at most one line a second: caught per-record panics
    // must not print an unbounded message (or a backtrace) for every bad record. The scorer logs
    // each such record itself, with its id.
    std::panic::set_hook(Box::new(|info| {
        use std::sync::atomic::{AtomicI64, AtomicU64};
        static LAST_SECOND: AtomicI64 = AtomicI64::new(i64::MIN);
        static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
        let second = chrono::Utc::now().timestamp();
        if LAST_SECOND.swap(second, Ordering::Relaxed) == second {
            SUPPRESSED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
        let message = server::supervisor::panic_message(info.payload());
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        tracing::error!(%location, suppressed, "panic: {}", model::record::truncate_utf8(message, 512));
    }));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(cli))
}

/// The cluster named by --brokers, or the local embedded broker; checked and with its topics.
async fn connect(args: &KafkaArgs) -> Result<Kafka> {
    let brokers = args.brokers.clone().unwrap_or_else(|| format!("127.0.0.1:{DEFAULT_EMBEDDED_PORT}"));
    let kafka = Kafka::new(brokers, args);
    kafka.check_reachable(Duration::from_secs(10)).await?;
    kafka.ensure_pipeline_topics().await?;
    Ok(kafka)
}

async fn publish_model(args: &KafkaArgs, model: &ChurnModel) -> Result<()> {
    let kafka = connect(args).await?;
    models::publish(&kafka, model).await?;
    println!("published {} to {}", model.version, kafka.topics.models);
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Broker(args) => {
            let broker = start_embedded(&args)?;
            println!("embedded broker listening on {} (Ctrl-C to stop)", broker.address());
            Kafka::new(broker.address(), &cli.kafka).ensure_pipeline_topics().await?;
            server::shutdown::on_signals().cancelled().await;
            Ok(())
        }
        Command::Generate(args) => generate(&args),
        Command::Train(args) => {
            let model = train_command(&args)?;
            if args.publish {
                publish_model(&cli.kafka, &model).await?;
            }
            Ok(())
        }
        Command::Publish { file } => publish_model(&cli.kafka, &model_file::load(&file)?).await,
        Command::Model { command: ModelCommand::Info { file } } => {
            print_model(&model_file::load(&file)?);
            Ok(())
        }
        Command::Replay(args) => {
            let kafka = connect(&cli.kafka).await?;
            let options = replay_options(&args, std::io::IsTerminal::is_terminal(&std::io::stderr()));
            let summary = replay(&kafka, &options, server::shutdown::on_signals()).await?;
            println!(
                "replayed {} records to {} ({} unreadable rows skipped, {} passes)",
                summary.sent, kafka.topics.input, summary.unreadable, summary.passes
            );
            Ok(())
        }
        Command::Score(ScoreArgs { input: Some(input), output: Some(output), model, .. }) => {
            let model = model_file::load(&model)?;
            let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let summary = score_file(&model, &input, &output, show)?;
            for e in summary.bad.iter().take(20) {
                eprintln!("skipped {e}");
            }
            if summary.bad.len() > 20 {
                eprintln!("... and {} more bad rows", summary.bad.len() - 20);
            }
            println!("scored {} customers into {} with model {} ({} bad rows skipped)",
                     summary.scored, output.display(), model.version, summary.bad.len());
            Ok(())
        }
        Command::Score(args) => {
            let kafka = connect(&cli.kafka).await?;
            let mut tasks = Supervisor::new(server::shutdown::on_signals());
            let (model_rx, follower) = models::follow(&kafka, load_optional(&args.model)?, tasks.shutdown()).await?;
            tasks.spawn("model follower", follower);
            tasks.spawn("scorer", Scorer::new(kafka, args.group, model_rx).run(tasks.shutdown()));
            tasks.run().await
        }
        Command::Analyze(args) => {
            let kafka = connect(&cli.kafka).await?;
            let mut tasks = Supervisor::new(server::shutdown::on_signals());
            let (model_rx, follower) = models::follow(&kafka, load_optional(&args.model)?, tasks.shutdown()).await?;
            tasks.spawn("model follower", follower);
            let options = AnalyzeOptions {
                group: args.group,
                window: Duration::from_secs_f64(args.window_secs),
                lateness: Duration::from_secs_f64(args.lateness_secs),
            };
            tasks.spawn("analytics", analyze::run(kafka, options, model_rx, tasks.shutdown()));
            tasks.run().await
        }
        Command::Serve(args) => serve(args, &cli.kafka).await,
    }
}

fn start_embedded(args: &BrokerArgs) -> Result<EmbeddedBroker> {
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

fn replay_options(args: &ReplayArgs, show_progress: bool) -> ReplayOptions {
    ReplayOptions {
        file: args.file.clone(),
        rate: args.rate,
        repeat: args.repeat,
        limit: args.limit,
        id_prefix: args.id_prefix.clone().unwrap_or_else(random_prefix),
        show_progress,
    }
}

fn generate(args: &GenerateArgs) -> Result<()> {
    let text = generate_csv(&GenerateOptions { rows: args.rows, seed: args.seed, messy_fraction: args.messy });
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.output, text).with_context(|| format!("writing {}", args.output.display()))?;
    println!("wrote {} customers to {}", args.rows, args.output.display());
    Ok(())
}

/// The model file if there is one; a missing file is fine when a model is published.
fn load_optional(path: &std::path::Path) -> Result<Option<ChurnModel>> {
    if path.exists() {
        model_file::load(path).map(Some)
    } else {
        tracing::info!(path = %path.display(), "no model file; expecting a published model");
        Ok(None)
    }
}

fn train_command(args: &TrainArgs) -> Result<ChurnModel> {
    let mut csv = CustomerCsv::open(&args.input)?;
    if !csv.has_labels() {
        bail!("{} has no Churn column: training needs the outcome of each customer", args.input.display());
    }
    let (customers, bad) = csv.customers();
    for e in bad.iter().take(20) {
        eprintln!("skipped {e}");
    }
    if bad.len() > 20 {
        eprintln!("... and {} more bad rows", bad.len() - 20);
    }
    let unlabelled = customers.iter().filter(|c| c.churn.is_none()).count();
    let customers: Vec<_> = customers.into_iter().filter(|c| c.churn.is_some()).collect();
    println!(
        "training on {} customers from {} ({} bad rows skipped, {} without a label skipped)",
        customers.len(), args.input.display(), bad.len(), unlabelled
    );
    let mut options = TrainOptions { l2: args.l2, folds: args.folds as usize, seed: args.seed, threshold_rule: args.threshold, ..Default::default() };
    if !args.features.is_empty() {
        options.features = args.features.clone();
    }
    if let Some(path) = &args.export_folds {
        let labels: Vec<bool> = customers.iter().map(|c| c.churn == Some(true)).collect();
        let folds = stratified_folds(&labels, args.folds as usize, args.seed);
        let mut text = String::from("row,fold\n");
        for (row, fold) in folds.iter().enumerate() {
            text.push_str(&format!("{row},{fold}\n"));
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let bar = ProgressBar::new(args.folds as u64 + 1).with_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}").expect("valid template").progress_chars("=> "),
    );
    bar.set_message("cross-validating");
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let model = train(&customers, &options, created_at, |p| match p {
        TrainProgress::Fold { done, .. } => bar.set_position(done as u64),
        TrainProgress::Final => bar.set_message("fitting the final model"),
    })?;
    bar.finish_and_clear();
    model_file::save(&model, &args.output)?;
    print_model(&model);
    println!("\nsaved {} to {}", model.version, args.output.display());
    Ok(model)
}

fn print_model(model: &ChurnModel) {
    let m = &model.metrics;
    println!("model {}  (trained {}, {} rows, {} churners)", model.version, model.created_at,
             model.training_data.rows, model.training_data.churners);
    println!("\n  {:<16} {:>10} {:>10} {:>12}", "feature", "mean", "std dev", "coefficient");
    for w in &model.features {
        println!("  {:<16} {:>10.3} {:>10.3} {:>+12.4}", w.feature.name(), w.mean, w.std_dev, w.coefficient);
    }
    println!("  {:<16} {:>10} {:>10} {:>+12.4}", "(intercept)", "", "", model.intercept);
    println!("\n  {} on {} rows", m.method, m.rows);
    let folds: Vec<String> = m.fold_roc_auc.iter().map(|a| format!("{a:.3}")).collect();
    let fold_mean = m.fold_roc_auc.iter().sum::<f64>() / m.fold_roc_auc.len().max(1) as f64;
    println!("  ROC-AUC   {:.4}   pooled; mean of folds {:.4} (folds: {})", m.roc_auc, fold_mean, folds.join(" "));
    println!("  accuracy  {:.4}   precision {:.4}   recall {:.4}   F1 {:.4}", m.accuracy, m.precision, m.recall, m.f1);
    println!("  log loss  {:.4}   Brier {:.4}   threshold {:.3} ({})", m.log_loss, m.brier, model.threshold,
             model.hyperparameters.threshold_rule);
    let c = &m.confusion;
    println!("\n  confusion      predicted churn   predicted stay");
    println!("  churned        {:>15} {:>16}", c.true_positive, c.false_negative);
    println!("  stayed         {:>15} {:>16}", c.false_positive, c.true_negative);
    if !m.calibration.is_empty() {
        println!("\n  calibration (deciles by score)\n  {:>6} {:>11} {:>10}", "rows", "predicted", "observed");
        for bin in &m.calibration {
            println!("  {:>6} {:>11.3} {:>10.3}", bin.count, bin.mean_predicted, bin.observed_rate);
        }
    }
}

async fn serve(args: ServeArgs, kafka_args: &KafkaArgs) -> Result<()> {
    // Embedded broker unless the user named a cluster; reuse one already on the port.
    let (_broker, brokers) = match kafka_args.brokers.clone() {
        Some(brokers) => (None, brokers),
        None if port_in_use(args.broker.broker_port) => {
            tracing::info!(port = args.broker.broker_port, "a broker is already running on the port; using it");
            (None, format!("127.0.0.1:{}", args.broker.broker_port))
        }
        None => {
            let broker = start_embedded(&args.broker)?;
            let address = broker.address();
            (Some(broker), address)
        }
    };
    let kafka = Kafka::new(brokers, kafka_args);
    kafka.check_reachable(Duration::from_secs(15)).await?;
    kafka.ensure_pipeline_topics().await?;
    let mut tasks = Supervisor::new(server::shutdown::on_signals());
    let (model_rx, follower) = models::follow(&kafka, load_optional(&args.score.model)?, tasks.shutdown()).await?;
    tasks.spawn("model follower", follower);
    let metrics = Arc::new(PipelineMetrics::default());
    let scorer = Scorer::new(kafka.clone(), args.score.group.clone(), model_rx.clone())
        .with_metrics(metrics.clone())
        .with_health(tasks.health.clone());
    let stats = metrics.clone();
    if !args.no_scorer {
        tasks.spawn("scorer", scorer.run(tasks.shutdown()));
    }
    if let Some(file) = &args.replay {
        let kafka = kafka.clone();
        let options = replay_options(
            &ReplayArgs { file: file.clone(), rate: args.replay_rate, repeat: true, limit: None, id_prefix: None },
            false,
        );
        let stop = tasks.shutdown();
        // The demo stream outlives a broker away for longer than a delivery timeout (60 s):
        // it starts over rather than ending the server.
        tasks.spawn("replay", async move {
            while !stop.is_cancelled() {
                match replay(&kafka, &options, stop.clone()).await {
                    // A looping replay returns before the stop only for a file without usable rows.
                    Ok(_) if !stop.is_cancelled() => {
                        tracing::warn!(file = %options.file.display(), "nothing to replay: the file has no usable rows");
                        stop.cancelled().await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!("replay stopped, starting over in 5 s: {e:#}");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                            _ = stop.cancelled() => {}
                        }
                    }
                }
            }
            Ok(())
        });
    }

    let status = {
        let kafka = kafka.clone();
        let model_rx = model_rx.clone();
        move || app::PipelineStatus {
            brokers: kafka.brokers.clone(),
            input_topic: kafka.topics.input.clone(),
            predictions_topic: kafka.topics.predictions.clone(),
            model_version: model_rx.borrow().version.clone(),
            consumed: stats.consumed.get(),
            scored: stats.scored.get(),
            dead_lettered: stats.dead_lettered.get(),
        }
    };
    if !args.no_analytics {
        let options = AnalyzeOptions { window: Duration::from_secs_f64(args.window_secs), ..Default::default() };
        tasks.spawn("analytics", analyze::run(kafka.clone(), options, model_rx.clone(), tasks.shutdown()));
    }
    let hub_options = BackendOptions {
        reply_timeout: Duration::from_secs_f64(args.reply_timeout),
        scorer_group: args.score.group.clone(),
        max_pending: args.max_pending as usize,
        instance_id: args.instance_id.clone().unwrap_or_else(|| server::replies::default_instance_id(args.addr.port())),
    };
    let hub = PipelineBackend::start(kafka.clone(), hub_options, metrics, status, &mut tasks).await?;
    let web = WebOptions { addr: args.addr, site_root: args.site_root.clone(), runs_scorer: !args.no_scorer };
    let listener = server::web::bind(&web).await?;
    tasks.spawn("web server", server::web::serve(listener, web, hub, tasks.shutdown()));
    // Until Ctrl-C or SIGTERM, or the first task to fail (then the exit code is non-zero).
    tasks.run().await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
