//! `churn serve`: the web app, with the scorer and the analytics in-process (and the embedded
//! broker unless --brokers).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use server::analytics::{self, AnalyzeOptions};
use server::args;
use server::backend::{BackendOptions, PipelineBackend};
use server::kafka::KafkaArgs;
use server::metrics::PipelineMetrics;
use server::replay::replay;
use server::scorer::Scorer;
use server::supervisor::Supervisor;
use server::web::WebOptions;

use super::broker::BrokerArgs;
use super::replay::ReplayArgs;
use super::score::ScoreArgs;
use super::web_security::WebSecurityArgs;

#[derive(clap::Args)]
pub struct ServeArgs {
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
    #[command(flatten)]
    security: WebSecurityArgs,
    /// Start the embedded broker requiring a login (as `churn broker --secure`), and connect
    /// with its <data-dir>/kafka.properties.
    #[arg(long)]
    secure_broker: bool,
}

pub async fn run(args: ServeArgs, kafka_args: &KafkaArgs) -> Result<()> {
    // A bad key file stops the command before anything starts.
    let model_trust = args.score.signing.trust()?;
    // Embedded broker unless the user named a cluster; reuse one already on the port.
    let (_broker, kafka) = super::broker::for_serve(&args.broker, args.secure_broker, kafka_args)?;
    kafka.check_reachable(Duration::from_secs(15)).await?;
    kafka.ensure_pipeline_topics().await?;
    let mut tasks = Supervisor::new(server::shutdown::on_signals());
    let metrics = Arc::new(PipelineMetrics::default());
    let model_trust = model_trust.counting_into(metrics.models_refused.clone());
    let model_rx =
        super::follow_models(&kafka, &args.score.model, model_trust.clone(), &mut tasks).await?;
    let scorer = Scorer::new(kafka.clone(), args.score.group.clone(), model_rx.clone())
        .with_metrics(metrics.clone())
        .with_health(tasks.health.clone());
    let stats = metrics.clone();
    if !args.no_scorer {
        tasks.spawn("scorer", scorer.run(tasks.shutdown()));
    }
    if let Some(file) = &args.replay {
        let kafka = kafka.clone();
        let options = super::replay::options(
            &ReplayArgs {
                file: file.clone(),
                rate: args.replay_rate,
                repeat: true,
                limit: None,
                id_prefix: None,
            },
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
        let options = AnalyzeOptions {
            window: Duration::from_secs_f64(args.window_secs),
            ..Default::default()
        };
        tasks.spawn(
            "analytics",
            analytics::run(kafka.clone(), options, model_rx.clone(), tasks.shutdown()),
        );
    }
    let backend_options = BackendOptions {
        reply_timeout: Duration::from_secs_f64(args.reply_timeout),
        scorer_group: args.score.group.clone(),
        max_pending: args.max_pending as usize,
        instance_id: args
            .instance_id
            .clone()
            .unwrap_or_else(|| server::replies::default_instance_id(args.addr.port())),
        model_trust,
    };
    let backend =
        PipelineBackend::start(kafka.clone(), backend_options, metrics, status, &mut tasks).await?;
    let mut web = WebOptions::new(args.addr, args.site_root.clone(), !args.no_scorer);
    args.security.apply(&mut web);
    let listener = server::web::bind(&web).await?;
    tasks.spawn(
        "web server",
        server::web::serve(listener, web, backend, tasks.shutdown()),
    );
    // Until Ctrl-C or SIGTERM, or the first task to fail (then the exit code is non-zero).
    tasks.run().await
}
