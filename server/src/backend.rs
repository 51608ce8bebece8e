//! The pipeline as the web app sees it (`app::Backend`): submissions go out and come back through
//! the reply routing, the live feed fans every prediction out to the browsers, and the dashboard
//! is the stats topic's view with the recent predictions and the scorer's lag.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use app::{Backend, Dashboard, FeedEvent, LifecycleCards, PipelineStatus, PredictError, Seat};
use model::lifecycle::LifecycleView;
use model::{Customer, Prediction};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::kafka::Kafka;
use crate::lag_monitor::watch_lag;
use crate::live_feed::{push_dashboard, LiveFeed};
use crate::metrics::PipelineMetrics;
use crate::model_store::{self, ModelTrust};
use crate::replies::{default_instance_id, Replies};
use crate::stats_view::{follow_stats, StatsView};
use crate::supervisor::Supervisor;

#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// How long a submission waits for its prediction.
    pub reply_timeout: Duration,
    /// Most submissions waiting at once; more are refused (429) instead of piling up.
    pub max_pending: usize,
    /// The scorer's consumer group, whose lag the dashboard shows.
    pub scorer_group: String,
    /// Names this web server's reply topic: unique per instance (`parse_instance_id` checks it).
    pub instance_id: String,
    /// What an uploaded model must prove (`POST /api/v1/models`): what the scorers require.
    pub model_trust: ModelTrust,
    /// The model lifecycle as the models topic says (`Followed::lifecycle`), for the app.
    pub lifecycle: watch::Receiver<Arc<LifecycleView>>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            reply_timeout: Duration::from_secs(5),
            max_pending: 10_000,
            scorer_group: crate::kafka::DEFAULT_SCORER_GROUP.into(),
            instance_id: default_instance_id(format!("pid{}", std::process::id())),
            model_trust: ModelTrust::default(),
            // Nothing follows the models topic: an empty lifecycle that never changes.
            lifecycle: watch::channel(Arc::default()).1,
        }
    }
}

/// The web server's link to the pipeline.
pub struct PipelineBackend {
    replies: Replies,
    live: Arc<LiveFeed>,
    stats: Arc<Mutex<StatsView>>,
    status: Box<dyn Fn() -> PipelineStatus + Send + Sync>,
    metrics: Arc<PipelineMetrics>,
    /// This process's readiness: the lag probe reports the broker's there.
    health: Arc<Health>,
    /// For publishing uploaded models.
    kafka: Kafka,
    model_trust: ModelTrust,
    lifecycle: watch::Receiver<Arc<LifecycleView>>,
    lifecycle_cards: watch::Receiver<Arc<LifecycleCards>>,
}

impl PipelineBackend {
    /// Creates this instance's reply topic and starts reading it (before any submission can be
    /// sent), and the predictions topic for the live feed; its tasks run under `tasks` until the stop.
    pub async fn start(
        kafka: Kafka,
        options: BackendOptions,
        metrics: Arc<PipelineMetrics>,
        status: impl Fn() -> PipelineStatus + Send + Sync + 'static,
        tasks: &mut Supervisor,
    ) -> Result<Arc<PipelineBackend>> {
        let shutdown = tasks.shutdown();
        let pending_gauge = metrics.pending_requests.clone();
        let replies = Replies::start(
            &kafka,
            &options.instance_id,
            options.reply_timeout,
            options.max_pending,
            pending_gauge,
            tasks,
        )
        .await?;
        let live = LiveFeed::start(&kafka, tasks).await?;
        let (cards, lifecycle_cards) =
            watch::channel(Arc::new(LifecycleCards::of(&options.lifecycle.borrow())));
        tasks.spawn(
            "lifecycle cards",
            render_lifecycle(options.lifecycle.clone(), cards, shutdown.clone()),
        );
        let backend = Arc::new(PipelineBackend {
            replies,
            live,
            stats: Arc::default(),
            status: Box::new(status),
            metrics,
            health: tasks.health.clone(),
            kafka: kafka.clone(),
            model_trust: options.model_trust.clone(),
            lifecycle: options.lifecycle.clone(),
            lifecycle_cards,
        });
        tasks.spawn(
            "dashboard stats reader",
            follow_stats(kafka.clone(), backend.stats.clone(), shutdown.clone()),
        );
        let (metrics, health) = (backend.metrics.clone(), backend.health.clone());
        tasks.spawn(
            "consumer lag monitor",
            watch_lag(
                kafka,
                options.scorer_group,
                metrics,
                health,
                shutdown.clone(),
            ),
        );
        let current = {
            let backend = backend.clone();
            move || (backend.status(), backend.dashboard())
        };
        let push = push_dashboard(backend.live.clone(), current, shutdown);
        tasks.spawn("dashboard pusher", async move {
            push.await;
            Ok(())
        });
        Ok(backend)
    }

    /// This instance's reply routing (its topic, the requests waiting).
    pub fn replies(&self) -> &Replies {
        &self.replies
    }

    /// The prediction stream's recent past, which the CSV export reads.
    pub fn live(&self) -> &Arc<LiveFeed> {
        &self.live
    }

    pub fn metrics(&self) -> &Arc<PipelineMetrics> {
        &self.metrics
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// What an uploaded model must prove: what this process's scorers require.
    pub fn model_trust(&self) -> &ModelTrust {
        &self.model_trust
    }

    /// The stream analytics as of now.
    pub fn dashboard(&self) -> Dashboard {
        let now = chrono::Utc::now().timestamp_millis();
        let recent = self.live.since(now - 5 * 60_000);
        let lag = self.metrics.lag();
        self.stats
            .lock()
            .expect("stats view")
            .dashboard(now, &recent, lag)
    }
}

impl Backend for PipelineBackend {
    fn status(&self) -> PipelineStatus {
        (self.status)()
    }

    fn predict(
        &self,
        customer: Customer,
    ) -> Pin<Box<dyn Future<Output = Result<Prediction, PredictError>> + Send>> {
        self.replies.request(customer)
    }

    fn feed(&self) -> (FeedEvent, broadcast::Receiver<FeedEvent>) {
        self.live.subscribe(self.status())
    }

    fn sample(&self) -> Customer {
        let options = model::synth::GenerateOptions {
            rows: 1,
            seed: rand::random(),
            messy_fraction: 0.0,
        };
        let mut customer = model::synth::generate_customers(&options).remove(0);
        customer.churn = None;
        customer
    }

    fn publish_model(
        &self,
        model: model::ChurnModel,
        seat: Seat,
        by: String,
    ) -> Pin<Box<dyn Future<Output = Result<(), PredictError>> + Send>> {
        let kafka = self.kafka.clone();
        Box::pin(async move {
            let published = match seat {
                Seat::Champion => model_store::publish_champion(&kafka, &model, &by).await,
                Seat::Challenger => model_store::publish_challenger(&kafka, &model, &by).await,
            };
            published.map_err(|e| broker_error("publishing an uploaded model", &e))
        })
    }

    fn withdraw_challenger(
        &self,
        by: String,
    ) -> Pin<Box<dyn Future<Output = Result<(), PredictError>> + Send>> {
        let kafka = self.kafka.clone();
        Box::pin(async move {
            model_store::withdraw_challenger(&kafka, &by)
                .await
                .map_err(|e| broker_error("withdrawing the challenger", &e))
        })
    }

    fn lifecycle(&self) -> watch::Receiver<Arc<LifecycleView>> {
        self.lifecycle.clone()
    }

    fn lifecycle_cards(&self) -> watch::Receiver<Arc<LifecycleCards>> {
        self.lifecycle_cards.clone()
    }
}

/// Renders the lifecycle's cards once per change, for every browser this server feeds (here,
/// not in `model_store::follow`: scorers follow the models topic too and show no cards).
async fn render_lifecycle(
    mut lifecycle: watch::Receiver<Arc<LifecycleView>>,
    cards: watch::Sender<Arc<LifecycleCards>>,
    shutdown: CancellationToken,
) -> Result<()> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = lifecycle.changed() => if changed.is_err() {
                // Nothing follows the models topic (or no longer): the cards stay as they are.
                shutdown.cancelled().await;
                break;
            },
        }
        let now = Arc::clone(&lifecycle.borrow_and_update());
        cards.send_replace(Arc::new(LifecycleCards::of(&now)));
    }
    Ok(())
}

/// The broker did not take a record: the details go to the log under an id, the id to the user.
fn broker_error(doing: &str, error: &anyhow::Error) -> PredictError {
    PredictError::BrokerUnavailable(crate::error_id::log(doing, &format!("{error:#}")))
}
