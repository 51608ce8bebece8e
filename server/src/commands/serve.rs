//! `churn serve`: the web app, with the scorer and the analytics in-process (and the embedded
//! broker unless --brokers).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use app::Role;
use axum::http::HeaderName;
use server::analytics::{self, AnalyzeOptions};
use server::args;
use server::auth::{AuthOptions, ProxyOptions};
use server::backend::{BackendOptions, PipelineBackend};
use server::kafka::KafkaArgs;
use server::metrics::PipelineMetrics;
use server::replay::{replay, ReplaySummary};
use server::scorer::Scorer;
use server::shutdown::during_start_up;
use server::supervisor::Supervisor;
use server::web::WebOptions;

use super::broker::{while_broker_lives, BrokerArgs};
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
    /// Do not run the stream-analytics processor and the referee in this process (run `churn
    /// analyze` separately).
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
    #[command(flatten)]
    access: AccessArgs,
    /// The champion's duel with a challenger (run with the analytics).
    #[command(flatten)]
    referee: super::referee::RefereeArgs,
}

/// Who may see what (accounts live in --data-dir: `churn users`, `churn tokens`).
#[derive(clap::Args)]
pub struct AccessArgs {
    /// Sessions end this many hours after sign-in (and after 2 idle hours).
    #[arg(long, env = "CHURN_SESSION_HOURS", default_value_t = 12.0, allow_negative_numbers = true, value_parser = positive_hours)]
    session_hours: f64,
    /// Print a fresh one-time admin sign-in address at every start (scripts/run.sh passes it).
    #[arg(long)]
    login_link: bool,
    /// Mark the session cookie Secure: set this when a TLS proxy is in front.
    #[arg(long)]
    secure_cookies: bool,
    /// Behind a company's single sign-on: the header naming the user, e.g. X-Forwarded-User.
    /// Needs --trusted-proxies; from any other peer the header is ignored.
    #[arg(long, requires = "trusted_proxies")]
    trust_proxy_header: Option<HeaderName>,
    /// The sign-on proxies' IP addresses, comma-separated, e.g. 10.0.0.5,10.0.0.6.
    #[arg(long, value_delimiter = ',', requires = "trust_proxy_header")]
    trusted_proxies: Vec<IpAddr>,
    /// The role of a user the proxy names who has no account here (default: refused, 403).
    #[arg(long, requires = "trust_proxy_header")]
    proxy_default_role: Option<Role>,
    /// Serve /metrics on this address instead, open there (an internal interface only the
    /// scraper reaches); the web port then answers 404 for it. Default: on the web port, for an
    /// API token (`churn tokens create --role viewer`) or a signed-in admin.
    #[arg(long, env = "CHURN_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
}

fn positive_hours(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(hours) if hours.is_finite() && hours > 0.0 && hours <= 24.0 * 365.0 => Ok(hours),
        _ => Err(format!(
            "{text:?} is not a number of hours between 0 and 8760"
        )),
    }
}

impl AccessArgs {
    fn options(&self, data_dir: &std::path::Path) -> AuthOptions {
        AuthOptions {
            session_lifetime: Duration::from_secs_f64(self.session_hours * 3600.0),
            secure_cookies: self.secure_cookies,
            proxy: self.trust_proxy_header.clone().map(|header| ProxyOptions {
                header,
                trusted: self
                    .trusted_proxies
                    .iter()
                    .map(|ip| ip.to_canonical())
                    .collect(),
                default_role: self.proxy_default_role,
            }),
            metrics_elsewhere: self.metrics_addr.is_some(),
            ..AuthOptions::new(data_dir.to_owned())
        }
    }
}

pub async fn run(args: ServeArgs, kafka_args: &KafkaArgs) -> Result<()> {
    // Every phase from here on ends at the stop, start-up included.
    let stop = server::shutdown::on_signals();
    // A bad key file stops the command before anything starts.
    let model_trust = args.score.signing.trust()?;
    // Embedded broker unless the user named a cluster; reuse one already on the port.
    let (broker, kafka) = super::broker::for_serve(&args.broker, args.secure_broker, kafka_args)?;
    // Until the supervisor watches it, each start-up step fails as soon as the embedded broker
    // dies, saying so.
    let started = async {
        kafka.check_reachable(Duration::from_secs(15)).await?;
        kafka.ensure_pipeline_topics().await?;
        server::kafka::inspect::warn_on_retention_differences(&kafka).await;
        anyhow::Ok(())
    };
    during_start_up(&stop, while_broker_lives(broker.as_ref(), started)).await?;
    let mut tasks = Supervisor::new(stop.clone());
    if let Some(broker) = &broker {
        // The embedded broker dying fails the server like any other of its tasks: logged, in
        // `/readyz` while the server stops, and the exit is non-zero.
        let (exited, stop) = (broker.exited(), tasks.shutdown());
        tasks.spawn("broker watch", async move {
            stop.run_until_cancelled(exited).await.map_or(Ok(()), Err)
        });
    }
    let metrics = Arc::new(PipelineMetrics::default());
    let model_trust = model_trust.counting_into(metrics.models_refused.clone());
    let models = super::follow_models(&kafka, &args.score.model, model_trust.clone(), &mut tasks);
    let followed = during_start_up(&stop, while_broker_lives(broker.as_ref(), models)).await?;
    let model_rx = followed.lineup.clone();
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
            let mut total = ReplaySummary::default();
            while !stop.is_cancelled() {
                match replay(&kafka, &options, stop.clone()).await {
                    // A looping replay returns before the stop only for a file without usable rows.
                    Ok(summary) if !stop.is_cancelled() => {
                        total.add(&summary);
                        tracing::warn!(file = %options.file.display(), "nothing to replay: the file has no usable rows");
                        stop.cancelled().await;
                    }
                    Ok(summary) => total.add(&summary),
                    Err(e) => {
                        tracing::warn!("replay stopped, starting over in 5 s: {e:#}");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                            _ = stop.cancelled() => {}
                        }
                    }
                }
            }
            super::replay::log_stopped(&total);
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
            model_version: model_rx.borrow().champion.version.clone(),
            consumed: stats.consumed.get(),
            scored: stats.scored.get(),
            dead_lettered: stats.dead_lettered.get(),
            storage: stats.storage(),
        }
    };
    // The embedded broker's files are under the data dir (also when `churn broker` runs it).
    let broker_dir = kafka_args
        .brokers
        .is_none()
        .then(|| args.broker.data_dir.join("broker"));
    tasks.spawn(
        "storage monitor",
        server::storage_monitor::watch_storage(
            kafka.clone(),
            broker_dir,
            metrics.clone(),
            tasks.shutdown(),
        ),
    );
    if !args.no_analytics {
        let options = AnalyzeOptions {
            window: Duration::from_secs_f64(args.window_secs),
            ..Default::default()
        };
        tasks.spawn(
            "analytics",
            analytics::run(kafka.clone(), options, model_rx.clone(), tasks.shutdown()),
        );
        let referee = server::referee::start(
            kafka.clone(),
            args.referee.options(),
            &followed,
            metrics.clone(),
            tasks.shutdown(),
        )?;
        tasks.spawn("referee", referee);
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
        lifecycle: followed.lifecycle.clone(),
    };
    let backend =
        PipelineBackend::start(kafka.clone(), backend_options, metrics, status, &mut tasks);
    let backend = during_start_up(&stop, while_broker_lives(broker.as_ref(), backend)).await?;
    let mut web = WebOptions::new(
        args.addr,
        args.site_root.clone(),
        !args.no_scorer,
        args.access.options(&args.broker.data_dir),
    );
    args.security.apply(&mut web);
    // A session cookie must not travel over plain HTTP once the app speaks HTTPS.
    web.auth.secure_cookies |= web.tls.is_some();
    let listener = server::web::bind(&web).await?;
    if let Some(addr) = args.access.metrics_addr {
        let metrics_listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}: pick another --metrics-addr"))?;
        tasks.spawn(
            "metrics server",
            server::web::serve_metrics(
                metrics_listener,
                backend.metrics().clone(),
                tasks.shutdown(),
            ),
        );
    }
    super::users::announce_sign_in(
        &args.broker.data_dir,
        &format!(
            "{}://{}",
            if web.tls.is_some() { "https" } else { "http" },
            listener.local_addr()?
        ),
        args.access.login_link,
    )?;
    tasks.spawn(
        "web server",
        server::web::serve(listener, web, backend, tasks.shutdown()),
    );
    // Until Ctrl-C or SIGTERM, or the first task to fail (then the exit code is non-zero).
    tasks.run().await
}
