//! The web server's link to the pipeline: publishes form submissions, routes their predictions
//! back, and fans the prediction stream out to every browser.
//!
//! Replies: each web server instance has its own reply topic, `<predictions>-replies-<instance
//! id>` (one partition, created at start, replies kept an hour), and names it in the header
//! `churn.reply-to` of every record it submits; the scorer sends a copy of the prediction there.
//! The instance reads only that topic (assigned, from its end as of the start), so with any number
//! of instances behind a load balancer each one reads the replies meant for it and no other's. A
//! reply is matched to its waiting request by record id through a bounded map of pending requests;
//! two instances given the same id would both read one topic, each ignoring the other's replies.
//!
//! The live feed (every prediction, the chart, the riskiest list, the CSV export) still reads
//! every partition of the predictions topic: every instance shows every prediction.

use tokio_util::sync::CancellationToken;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use app::{Backend, Dashboard, FeedEvent, PipelineStatus, PredictError, SecondStats};
use model::{Customer, Prediction};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{broadcast, oneshot};

use crate::dashboard::{follow_stats, watch_lag, StatsView};
use crate::kafka::{is_legal_topic, tail_payloads, Kafka, REPLY_TO_HEADER};
use crate::metrics::PipelineMetrics;
use crate::supervisor::{Health, Supervisor};

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
    /// Names this web server's reply topic: unique per instance (`parse_instance_id` checks it).
    pub instance_id: String,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            reply_timeout: Duration::from_secs(5),
            max_pending: 10_000,
            scorer_group: "churn-scorer".into(),
            instance_id: default_instance_id(format!("pid{}", std::process::id())),
        }
    }
}

/// Longest instance id: its reply topic's name must stay within Kafka's 249 bytes.
pub const MAX_INSTANCE_ID_BYTES: usize = 128;

/// An instance id as given on the command line: topic characters only, so that it names a topic.
pub fn parse_instance_id(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > MAX_INSTANCE_ID_BYTES || !is_legal_topic(text) {
        return Err(format!("must be 1 to {MAX_INSTANCE_ID_BYTES} of the characters a-z A-Z 0-9 . _ -"));
    }
    Ok(text.to_owned())
}

/// The instance id when none is given: this host's name and `suffix` (the listening port), with
/// anything a topic name may not hold replaced by `-`. Stable across restarts, so a restarted
/// instance reuses its reply topic rather than leaving one behind.
pub fn default_instance_id(suffix: impl std::fmt::Display) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "web".into());
    let id: String = format!("{host}-{suffix}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .collect();
    // Cut from the front: the suffix is what tells a host's instances apart.
    id[id.len().saturating_sub(MAX_INSTANCE_ID_BYTES)..].to_owned()
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
    reply_topic: String,
    /// `churn.reply-to: <reply_topic>`, put on every submitted record.
    reply_headers: OwnedHeaders,
    options: HubOptions,
    pending: Arc<Pending>,
    events: broadcast::Sender<FeedEvent>,
    window: Arc<Mutex<Window>>,
    status: Box<dyn Fn() -> PipelineStatus + Send + Sync>,
    stats: Arc<Mutex<StatsView>>,
    pub metrics: Arc<PipelineMetrics>,
    /// Whether the broker answered the last probe.
    pub broker_ok: Arc<AtomicBool>,
    /// Tasks of this process that failed, for readiness.
    pub health: Arc<Health>,
}

fn now_second() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Hub {
    /// Creates this instance's reply topic and starts reading it (before any submission can be
    /// sent), and the predictions topic for the live feed; its tasks run under `tasks` until the stop.
    pub async fn start(
        kafka: Kafka,
        options: HubOptions,
        metrics: Arc<PipelineMetrics>,
        status: impl Fn() -> PipelineStatus + Send + Sync + 'static,
        tasks: &mut Supervisor,
    ) -> Result<Arc<Hub>> {
        let shutdown = tasks.shutdown();
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
        let reply_topic = kafka.topics.reply_topic(&options.instance_id);
        if !is_legal_topic(&reply_topic) {
            anyhow::bail!("the reply topic {reply_topic:?} is not a legal topic name: choose a shorter instance id");
        }
        kafka.ensure_reply_topic(&reply_topic).await?;
        let replies = replies_consumer(&kafka, &reply_topic).await?;
        let feed = feed_consumer(&kafka).await?;
        tracing::info!(instance = %options.instance_id, reply_topic, "web server reading its replies");
        let reply_headers = OwnedHeaders::new().insert(Header { key: REPLY_TO_HEADER, value: Some(reply_topic.as_str()) });
        let (events, _) = broadcast::channel(1024);
        let hub = Arc::new(Hub {
            kafka,
            producer,
            reply_topic,
            reply_headers,
            options,
            pending: Arc::default(),
            events,
            window: Arc::default(),
            status: Box::new(status),
            stats: Arc::default(),
            metrics,
            broker_ok: Arc::new(AtomicBool::new(true)),
            health: tasks.health.clone(),
        });
        let replies = read_replies(replies, hub.pending.clone(), shutdown.clone());
        tasks.spawn("replies reader", async move {
            replies.await;
            Ok(())
        });
        let feed = read_feed(feed, hub.events.clone(), hub.window.clone(), shutdown.clone());
        tasks.spawn("live feed reader", async move {
            feed.await;
            Ok(())
        });
        let seconds = close_seconds(hub.events.clone(), hub.window.clone(), shutdown.clone());
        tasks.spawn("live chart clock", async move {
            seconds.await;
            Ok(())
        });
        tasks.spawn("dashboard stats reader", follow_stats(hub.kafka.clone(), hub.stats.clone(), shutdown.clone()));
        let (kafka, group, metrics, ok) =
            (hub.kafka.clone(), hub.options.scorer_group.clone(), hub.metrics.clone(), hub.broker_ok.clone());
        tasks.spawn("consumer lag monitor", watch_lag(kafka, group, metrics, ok, shutdown.clone()));
        let push = push_dashboard(hub.clone(), shutdown);
        tasks.spawn("dashboard pusher", async move {
            push.await;
            Ok(())
        });
        Ok(hub)
    }

    /// The topic this instance's replies arrive on.
    pub fn reply_topic(&self) -> &str {
        &self.reply_topic
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

/// Reads this instance's reply topic from its end as of now: the offset is taken here rather
/// than left to `Offset::End`, which librdkafka resolves later, after the first submissions'
/// replies might already be written.
async fn replies_consumer(kafka: &Kafka, topic: &str) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = kafka
        // The group id is required by librdkafka but unused: partitions are assigned, never subscribed.
        .consumer_config("churn-web-replies", &[
            ("enable.auto.commit", "false"),
            // A person is waiting: the broker must not hold an idle fetch long.
            ("fetch.wait.max.ms", "5"),
        ])
        .create()
        .context("creating the replies consumer")?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        // A topic just created may have no leader for a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let end = loop {
            match consumer.fetch_watermarks(&topic, 0, Duration::from_secs(5)) {
                Ok((_, high)) => break high,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(topic, "reply topic not ready yet: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e).with_context(|| format!("reading the end of the reply topic {topic}")),
            }
        };
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Offset(end))?;
        consumer.assign(&assignment).with_context(|| format!("reading {topic}"))?;
        Ok(consumer)
    })
    .await?
}

/// Reads every partition of the predictions topic from the end, for the live feed.
async fn feed_consumer(kafka: &Kafka) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = kafka
        // Unused group id, as for the replies.
        .consumer_config("churn-web-feed", &[
            ("enable.auto.commit", "false"),
            // The feed is for eyes, not for replies: a tenth of a second late is not seen, and an
            // idle topic costs each instance 20 times fewer fetches than at 5 ms.
            ("fetch.wait.max.ms", "100"),
        ])
        .create()
        .context("creating the live feed consumer")?;
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

/// Hands each reply to the request waiting for it; replies nobody waits for (timed out, or
/// another instance's under the same id) are dropped.
async fn read_replies(consumer: StreamConsumer, pending: Arc<Pending>, shutdown: CancellationToken) {
    tail_payloads(&consumer, "replies consumer", shutdown, |payload| {
        let Ok(prediction) = serde_json::from_slice::<Prediction>(payload) else {
            return;
        };
        if let Some(waiting) = pending.lock().expect("pending map").remove(&prediction.id) {
            let _ = waiting.send(prediction);
        }
    })
    .await;
}

async fn read_feed(
    consumer: StreamConsumer,
    events: broadcast::Sender<FeedEvent>,
    window: Arc<Mutex<Window>>,
    shutdown: CancellationToken,
) {
    tail_payloads(&consumer, "live feed consumer", shutdown, |payload| {
        let Ok(prediction) = serde_json::from_slice::<Prediction>(payload) else {
            return;
        };
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
async fn close_seconds(events: broadcast::Sender<FeedEvent>, window: Arc<Mutex<Window>>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_closed = now_second() - 1;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
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
async fn push_dashboard(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
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
        let headers = self.reply_headers.clone();
        let timeout = self.options.reply_timeout;
        Box::pin(async move {
            let _guard = guard;
            let payload = serde_json::to_vec(&customer.to_raw()).expect("records serialize");
            producer
                .send(FutureRecord::to(&topic).key(&id).payload(&payload).headers(headers), Duration::from_secs(1))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_name_topics() {
        assert_eq!(parse_instance_id("web-1.eu_a"), Ok("web-1.eu_a".into()));
        for bad in ["", "a/b", "a b", "..", "é", &"x".repeat(MAX_INSTANCE_ID_BYTES + 1)] {
            assert!(parse_instance_id(bad).is_err(), "{bad:?}");
        }
        let id = default_instance_id("3000");
        assert!(id.ends_with("-3000") && parse_instance_id(&id).is_ok(), "{id}");
        assert!(parse_instance_id(&default_instance_id(format!("{}:é/3000", "h".repeat(300)))).is_ok());
    }
}
