//! The web server's link to the pipeline: publishes form submissions, routes their predictions
//! back, and fans the prediction stream out to every browser.
//!
//! Replies: each web server instance reads every partition of the predictions topic by
//! assignment (no consumer group, from the end), so with several instances behind a load balancer
//! each one sees the replies to its own requests and none is stolen; a reply is matched to its
//! waiting request by record id through a bounded map of pending requests.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use app::{Backend, Dashboard, FeedEvent, PipelineStatus, PredictError, SecondStats};
use model::{Customer, Prediction};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{broadcast, oneshot, watch};

use crate::dashboard::{follow_stats, watch_lag, StatsView};
use crate::kafka::{tail_payloads, Kafka};
use crate::metrics::PipelineMetrics;

/// Predictions kept for the snapshot a browser gets when it connects.
const RECENT: usize = 200;
/// Seconds of throughput history kept for the chart.
const HISTORY_SECONDS: usize = 300;

/// Predictions kept for the CSV export and the riskiest-customers list.
const HISTORY: usize = 20_000;

#[derive(Debug, Clone)]
pub struct HubOptions {
    /// How long a submission waits for its prediction.
    pub reply_timeout: Duration,
    /// Most submissions waiting at once; more are refused (429) instead of piling up.
    pub max_pending: usize,
    /// The scorer's consumer group, whose lag the dashboard shows.
    pub scorer_group: String,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions { reply_timeout: Duration::from_secs(5), max_pending: 10_000, scorer_group: "churn-scorer".into() }
    }
}

type Pending = Mutex<HashMap<String, oneshot::Sender<Prediction>>>;

#[derive(Default)]
struct Window {
    /// Closed seconds, oldest first.
    seconds: VecDeque<SecondStats>,
    /// Seconds still counting, by Unix second.
    open: std::collections::BTreeMap<i64, SecondStats>,
    recent: VecDeque<Prediction>,
    /// (received at, in Unix ms; prediction), oldest first.
    history: VecDeque<(i64, Prediction)>,
}

pub struct Hub {
    kafka: Kafka,
    producer: FutureProducer,
    options: HubOptions,
    pending: Arc<Pending>,
    events: broadcast::Sender<FeedEvent>,
    window: Arc<Mutex<Window>>,
    status: Box<dyn Fn() -> PipelineStatus + Send + Sync>,
    stats: Arc<Mutex<StatsView>>,
    pub metrics: Arc<PipelineMetrics>,
    /// Whether the broker answered the last probe.
    pub broker_ok: Arc<AtomicBool>,
}

fn now_second() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Hub {
    /// Starts reading the predictions topic; runs until `shutdown`.
    pub async fn start(
        kafka: Kafka,
        options: HubOptions,
        metrics: Arc<PipelineMetrics>,
        status: impl Fn() -> PipelineStatus + Send + Sync + 'static,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Hub>> {
        let producer = kafka
            .config(&[
                // Not idempotent on purpose: a retried submission is merely scored twice, and an
                // idempotent producer must rebuild its state after timeouts while the broker is down.
                ("acks", "all"),
                ("linger.ms", "0"),
                // A person is waiting: give up on an unreachable broker within seconds.
                ("message.timeout.ms", "3000"),
            ])
            .create()
            .context("creating the web producer")?;
        let consumer = replies_consumer(&kafka).await?;
        let (events, _) = broadcast::channel(1024);
        let hub = Arc::new(Hub {
            kafka,
            producer,
            options,
            pending: Arc::default(),
            events,
            window: Arc::default(),
            status: Box::new(status),
            stats: Arc::default(),
            metrics,
            broker_ok: Arc::new(AtomicBool::new(true)),
        });
        tokio::spawn(read_replies(consumer, hub.pending.clone(), hub.events.clone(), hub.window.clone(), shutdown.clone()));
        tokio::spawn(close_seconds(hub.events.clone(), hub.window.clone(), shutdown.clone()));
        let (kafka, stats) = (hub.kafka.clone(), hub.stats.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = follow_stats(kafka, stats, stop).await {
                tracing::warn!("dashboard stats unavailable: {e:#}");
            }
        });
        let (kafka, group, metrics, ok) =
            (hub.kafka.clone(), hub.options.scorer_group.clone(), hub.metrics.clone(), hub.broker_ok.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = watch_lag(kafka, group, metrics, ok, stop).await {
                tracing::warn!("consumer lag unavailable: {e:#}");
            }
        });
        tokio::spawn(push_dashboard(hub.clone(), shutdown));
        Ok(hub)
    }

    pub fn pending(&self) -> usize {
        self.pending.lock().expect("pending map").len()
    }

    /// The stream analytics as of now.
    pub fn dashboard(&self) -> Dashboard {
        let now = chrono::Utc::now().timestamp_millis();
        let recent: Vec<Prediction> = {
            let w = self.window.lock().expect("window");
            w.history.iter().filter(|(at, _)| *at >= now - 5 * 60_000).map(|(_, p)| p.clone()).collect()
        };
        let lag = self.metrics.lag.lock().expect("lag").clone();
        self.stats.lock().expect("stats view").dashboard(now, &recent, lag)
    }

    /// Predictions received in the last `minutes`, oldest first, as CSV.
    pub fn export_csv(&self, minutes: f64) -> String {
        let since = chrono::Utc::now().timestamp_millis() - (minutes * 60_000.0) as i64;
        let mut out = String::from("id,scored_at,name,churn_probability,churn,threshold,model_version,top_factors\n");
        let w = self.window.lock().expect("window");
        for (_, p) in w.history.iter().filter(|(at, _)| *at >= since) {
            let cells = [
                p.id.clone(),
                p.scored_at.clone(),
                p.name.clone(),
                format!("{:.6}", p.churn_probability),
                u8::from(p.churn).to_string(),
                format!("{:.6}", p.threshold),
                p.model_version.clone(),
                model::describe_all(&p.top_factors),
            ];
            let line: Vec<String> = cells.iter().map(|c| model::synth::csv_cell(c)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        out
    }
}

async fn replies_consumer(kafka: &Kafka) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = kafka
        // The group id is required by librdkafka but unused: partitions are assigned, never subscribed.
        .consumer_config("churn-web-replies", &[
            ("enable.auto.commit", "false"),
            ("fetch.wait.max.ms", "5"),
        ])
        .create()
        .context("creating the replies consumer")?;
    let topic = kafka.topics.predictions.clone();
    let partitions = {
        let consumer = &consumer;
        tokio::task::block_in_place(|| consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)))
            .with_context(|| format!("reading the partitions of {topic}"))?
            .topics()
            .first()
            .map(|t| t.partitions().len() as i32)
            .unwrap_or(0)
    };
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions.max(1) {
        assignment.add_partition_offset(&topic, partition, Offset::End)?;
    }
    consumer.assign(&assignment).with_context(|| format!("reading {topic}"))?;
    Ok(consumer)
}

async fn read_replies(
    consumer: StreamConsumer,
    pending: Arc<Pending>,
    events: broadcast::Sender<FeedEvent>,
    window: Arc<Mutex<Window>>,
    shutdown: watch::Receiver<bool>,
) {
    tail_payloads(&consumer, "replies consumer", shutdown, |payload| {
        let Ok(prediction) = serde_json::from_slice::<Prediction>(payload) else {
            return;
        };
        if let Some(waiting) = pending.lock().expect("pending map").remove(&prediction.id) {
            let _ = waiting.send(prediction.clone());
        }
        {
            let mut w = window.lock().expect("window");
            let second = now_second();
            let bucket = w.open.entry(second).or_insert(SecondStats { second, ..Default::default() });
            bucket.predictions += 1;
            bucket.churners += u64::from(prediction.churn);
            w.recent.push_back(prediction.clone());
            while w.recent.len() > RECENT {
                w.recent.pop_front();
            }
            w.history.push_back((chrono::Utc::now().timestamp_millis(), prediction.clone()));
            while w.history.len() > HISTORY {
                w.history.pop_front();
            }
        }
        let _ = events.send(FeedEvent::Prediction(prediction));
    })
    .await;
}

/// Closes each second, busy or not, so the chart shows quiet times too.
async fn close_seconds(events: broadcast::Sender<FeedEvent>, window: Arc<Mutex<Window>>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_closed = now_second() - 1;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        let now = now_second();
        let mut closed = Vec::new();
        {
            let mut w = window.lock().expect("window");
            for second in (last_closed + 1)..now {
                let stats = w.open.remove(&second).unwrap_or(SecondStats { second, ..Default::default() });
                w.seconds.push_back(stats);
                closed.push(stats);
            }
            // Anything older (a clock step backwards) is dropped rather than kept forever.
            w.open.retain(|&second, _| second >= now);
            while w.seconds.len() > HISTORY_SECONDS {
                w.seconds.pop_front();
            }
        }
        last_closed = now - 1;
        for stats in closed {
            let _ = events.send(FeedEvent::Second(stats));
        }
    }
}

/// Pushes fresh analytics and pipeline counters to every browser every two seconds.
async fn push_dashboard(hub: Arc<Hub>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        if hub.events.receiver_count() > 0 {
            let _ = hub.events.send(FeedEvent::Status(hub.status()));
            let _ = hub.events.send(FeedEvent::Dashboard(hub.dashboard()));
        }
    }
}

/// Removes a request from the pending map however its wait ends (reply, timeout, or the
/// browser going away), so the map never grows without bound.
struct PendingGuard {
    pending: Arc<Pending>,
    id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending.lock().expect("pending map").remove(&self.id);
    }
}

impl Backend for Hub {
    fn status(&self) -> PipelineStatus {
        (self.status)()
    }

    fn predict(
        &self,
        customer: Customer,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Prediction, PredictError>> + Send>> {
        let id = format!("web-{:032x}", rand::random::<u128>());
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("pending map");
            if pending.len() >= self.options.max_pending {
                return Box::pin(async { Err(PredictError::Busy) });
            }
            pending.insert(id.clone(), tx);
        }
        let guard = PendingGuard { pending: self.pending.clone(), id: id.clone() };
        let producer = self.producer.clone();
        let topic = self.kafka.topics.input.clone();
        let timeout = self.options.reply_timeout;
        Box::pin(async move {
            let _guard = guard;
            let payload = serde_json::to_vec(&customer.to_raw()).expect("records serialize");
            producer
                .send(FutureRecord::to(&topic).key(&id).payload(&payload), Duration::from_secs(1))
                .await
                .map_err(|(e, _)| PredictError::BrokerUnavailable(e.to_string()))?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(prediction)) => Ok(prediction),
                _ => Err(PredictError::Timeout(timeout.as_secs().max(1))),
            }
        })
    }

    fn feed(&self) -> (FeedEvent, broadcast::Receiver<FeedEvent>) {
        // Subscribe before taking the snapshot so nothing falls between them.
        let receiver = self.events.subscribe();
        let w = self.window.lock().expect("window");
        let snapshot = FeedEvent::Snapshot {
            recent: w.recent.iter().cloned().collect(),
            seconds: w.seconds.iter().copied().collect(),
            status: self.status(),
        };
        (snapshot, receiver)
    }

    fn sample(&self) -> Customer {
        let options = model::synth::GenerateOptions { rows: 1, seed: rand::random(), messy_fraction: 0.0 };
        let mut customer = model::synth::generate_customers(&options).remove(0);
        customer.churn = None;
        customer
    }
}
