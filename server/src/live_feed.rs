//! The live feed: every prediction on the predictions topic, counted per second for the chart,
//! kept for the riskiest list and the CSV export, and broadcast to every browser with the
//! dashboard pushed every two seconds.
//!
//! It reads every partition of the predictions topic: every instance shows every prediction
//! (replies to this instance's own submissions arrive separately, see `replies`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use app::{Dashboard, FeedEvent, PipelineStatus, SecondStats};
use model::spreadsheet::write_record;
use model::Prediction;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::kafka::{tail_payloads, Kafka};
use crate::supervisor::Supervisor;

/// Predictions kept for the snapshot a browser gets when it connects.
const RECENT: usize = 200;
/// Seconds of throughput history kept for the chart.
const HISTORY_SECONDS: usize = 300;

/// Predictions kept for the CSV export and the riskiest-customers list.
const HISTORY: usize = 20_000;

#[derive(Default)]
struct Window {
    /// Closed seconds, oldest first.
    seconds: VecDeque<SecondStats>,
    /// Seconds still counting, by Unix second.
    open: BTreeMap<i64, SecondStats>,
    recent: VecDeque<Prediction>,
    /// (received at, in Unix ms; prediction), oldest first.
    history: VecDeque<(i64, Prediction)>,
}

/// The recent past of the prediction stream, and the browsers' subscription to what comes next.
pub struct LiveFeed {
    events: broadcast::Sender<FeedEvent>,
    window: Mutex<Window>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        LiveFeed {
            events: broadcast::channel(1024).0,
            window: Mutex::default(),
        }
    }
}

fn now_second() -> i64 {
    chrono::Utc::now().timestamp()
}

impl LiveFeed {
    /// Reads the predictions topic into a new feed, and closes its seconds; both run under
    /// `tasks` until the stop.
    pub async fn start(kafka: &Kafka, tasks: &mut Supervisor) -> Result<Arc<LiveFeed>> {
        let consumer = feed_consumer(kafka).await?;
        let feed = Arc::new(LiveFeed::default());
        let reader = read_feed(consumer, feed.clone(), tasks.shutdown());
        tasks.spawn("live feed reader", async move {
            reader.await;
            Ok(())
        });
        let seconds = close_seconds(feed.clone(), tasks.shutdown());
        tasks.spawn("live chart clock", async move {
            seconds.await;
            Ok(())
        });
        Ok(feed)
    }

    /// Takes one prediction in, received at `now_ms`, and passes it on to every browser; the
    /// challenger's shadow score is left out (users never see it).
    pub fn record(&self, prediction: Prediction, now_ms: i64) {
        let prediction = prediction.for_users();
        {
            let mut w = self.window.lock().expect("window");
            let second = now_ms.div_euclid(1000);
            let bucket = w.open.entry(second).or_insert(SecondStats {
                second,
                ..Default::default()
            });
            bucket.predictions += 1;
            bucket.churners += u64::from(prediction.churn);
            w.recent.push_back(prediction.clone());
            while w.recent.len() > RECENT {
                w.recent.pop_front();
            }
            w.history.push_back((now_ms, prediction.clone()));
            while w.history.len() > HISTORY {
                w.history.pop_front();
            }
        }
        let _ = self.events.send(FeedEvent::Prediction(prediction));
    }

    /// Closes every second after `last_closed` and before `now` (a Unix second), busy or not,
    /// and passes the closed ones on.
    fn close_seconds_until(&self, last_closed: i64, now: i64) {
        let mut closed = Vec::new();
        {
            let mut w = self.window.lock().expect("window");
            for second in (last_closed + 1)..now {
                let stats = w.open.remove(&second).unwrap_or(SecondStats {
                    second,
                    ..Default::default()
                });
                w.seconds.push_back(stats);
                closed.push(stats);
            }
            // Anything older (a clock step backwards) is dropped rather than kept forever.
            w.open.retain(|&second, _| second >= now);
            while w.seconds.len() > HISTORY_SECONDS {
                w.seconds.pop_front();
            }
        }
        for stats in closed {
            let _ = self.events.send(FeedEvent::Second(stats));
        }
    }

    /// The recent past as a snapshot (with `status`), and a subscription to what comes next.
    pub fn subscribe(&self, status: PipelineStatus) -> (FeedEvent, broadcast::Receiver<FeedEvent>) {
        // Subscribe before taking the snapshot so nothing falls between them.
        let receiver = self.events.subscribe();
        let w = self.window.lock().expect("window");
        let snapshot = FeedEvent::Snapshot {
            recent: w.recent.iter().cloned().collect(),
            seconds: w.seconds.iter().copied().collect(),
            status,
        };
        (snapshot, receiver)
    }

    /// Predictions received since `since_ms`, oldest first.
    pub fn since(&self, since_ms: i64) -> Vec<Prediction> {
        let w = self.window.lock().expect("window");
        w.history
            .iter()
            .filter(|(at, _)| *at >= since_ms)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Predictions received in the last `minutes`, oldest first, as CSV.
    pub fn export_csv(&self, minutes: f64) -> String {
        let since = chrono::Utc::now().timestamp_millis() - (minutes * 60_000.0) as i64;
        let mut out = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        let header = [
            "id",
            "scored_at",
            "name",
            "churn_probability",
            "churn",
            "threshold",
            "model_version",
            "top_factors",
        ];
        write_record(&mut out, header).expect("writing to memory cannot fail");
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
            // Through `spreadsheet`: ids and names come from whoever writes to the topics.
            write_record(&mut out, &cells).expect("writing to memory cannot fail");
        }
        let bytes = out.into_inner().expect("flushing to memory cannot fail");
        String::from_utf8(bytes).expect("the cells are UTF-8 text")
    }
}

/// Reads every partition of the predictions topic from the end, for the live feed.
async fn feed_consumer(kafka: &Kafka) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = kafka
        // The group id is required by librdkafka but unused: partitions are assigned, never subscribed.
        .consumer_config(
            "churn-web-feed",
            &[
                // The feed is for eyes, not for replies: it keeps librdkafka's 500 ms fetch wait
                // (at 100 ms an idle `churn serve` kept the embedded broker 5 points busier, see
                // `Kafka::INTERACTIVE_FETCH_WAIT_MS`).
                ("enable.auto.commit", "false"),
            ],
        )
        .create()
        .context("creating the live feed consumer")?;
    let topic = kafka.topics.predictions.clone();
    // On a thread of its own, not blocking this future: a stop meanwhile abandons the wait.
    let asked = {
        let topic = topic.clone();
        crate::kafka::on_own_thread(
            move || {
                let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10));
                (consumer, metadata)
            },
            Duration::from_secs(11),
        )
    };
    let (consumer, metadata) = asked
        .await
        .with_context(|| format!("no answer reading the partitions of {topic}"))?;
    let partitions = {
        metadata
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
    consumer
        .assign(&assignment)
        .with_context(|| format!("reading {topic}"))?;
    Ok(consumer)
}

async fn read_feed(consumer: StreamConsumer, feed: Arc<LiveFeed>, shutdown: CancellationToken) {
    tail_payloads(&consumer, "live feed consumer", shutdown, |payload| {
        if let Ok(prediction) = serde_json::from_slice::<Prediction>(payload) {
            feed.record(prediction, chrono::Utc::now().timestamp_millis());
        }
    })
    .await;
}

/// Closes each second, busy or not, so the chart shows quiet times too.
async fn close_seconds(feed: Arc<LiveFeed>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_closed = now_second() - 1;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = now_second();
        feed.close_seconds_until(last_closed, now);
        last_closed = now - 1;
    }
}

/// Pushes fresh analytics and pipeline counters to every browser every two seconds (when any
/// is connected): `current` gives them.
pub async fn push_dashboard(
    feed: Arc<LiveFeed>,
    current: impl Fn() -> (PipelineStatus, Dashboard),
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if feed.events.receiver_count() > 0 {
            // Rendered here, once for each view of each card; every connection forwards pointers.
            let (status, dashboard) = current();
            let _ = feed.events.send(FeedEvent::cards(&status, &dashboard));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(id: &str, churn: bool) -> Prediction {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": "A, \"B\"", "churn_probability": if churn { 0.9 } else { 0.1 }, "churn": churn,
            "threshold": 0.5, "model_version": "m-1", "scored_at": "2024-01-01T00:00:00.000Z", "top_factors": []
        }))
        .expect("a prediction")
    }

    #[test]
    fn seconds_are_counted_closed_in_order_and_pushed_with_each_prediction() {
        let feed = LiveFeed::default();
        let (_, mut events) = feed.subscribe(PipelineStatus::default());
        feed.record(prediction("a", true), 10_500);
        feed.record(prediction("b", false), 10_900);
        feed.record(prediction("c", true), 12_100);
        feed.close_seconds_until(9, 13);
        let (snapshot, _) = feed.subscribe(PipelineStatus::default());
        let FeedEvent::Snapshot {
            recent, seconds, ..
        } = snapshot
        else {
            panic!("a snapshot first")
        };
        assert_eq!(
            recent.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let counts: Vec<_> = seconds
            .iter()
            .map(|s| (s.second, s.predictions, s.churners))
            .collect();
        assert_eq!(
            counts,
            [(10, 2, 1), (11, 0, 0), (12, 1, 1)],
            "the quiet second is shown too"
        );
        let mut pushed = Vec::new();
        while let Ok(event) = events.try_recv() {
            pushed.push(event);
        }
        assert_eq!(pushed.len(), 6);
        assert!(matches!(&pushed[0], FeedEvent::Prediction(p) if p.id == "a"));
        assert!(matches!(
            pushed[5],
            FeedEvent::Second(SecondStats { second: 12, .. })
        ));
    }

    #[test]
    fn users_never_see_the_challengers_score() {
        let feed = LiveFeed::default();
        let (_, mut events) = feed.subscribe(PipelineStatus::default());
        let mut shadowed = prediction("a", true);
        shadowed.challenger = Some(model::message::ShadowScore {
            model_version: "m-2".into(),
            churn_probability: 0.2,
        });
        feed.record(shadowed, chrono::Utc::now().timestamp_millis());
        let FeedEvent::Prediction(pushed) = events.try_recv().unwrap() else {
            panic!("the prediction")
        };
        assert_eq!(pushed.challenger, None);
        assert_eq!(feed.since(0).len(), 1);
        assert!(feed.since(0).iter().all(|p| p.challenger.is_none()));
        assert!(!feed.export_csv(60.0).contains("m-2"));
    }

    #[test]
    fn hostile_text_in_every_column_is_exported_as_text() {
        let feed = LiveFeed::default();
        let now = chrono::Utc::now().timestamp_millis();
        let hostile = [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1+1",
            "-2+3",
            "@SUM(A1:A9)",
            "\t=1+1",
            "\r=1+1",
            "\u{feff}=1+1",
        ];
        for text in hostile {
            let mut p = prediction(text, true);
            p.name = text.into();
            p.model_version = text.into();
            p.scored_at = text.into();
            p.churn_probability = -0.5;
            feed.record(p, now);
        }
        let csv = feed.export_csv(5.0);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let mut rows = 0;
        for record in reader.records() {
            let record = record.unwrap();
            for cell in record.iter() {
                assert!(
                    !cell.starts_with(model::spreadsheet::FORMULA_STARTS),
                    "{cell:?} in {csv}"
                );
            }
            assert!(hostile.iter().any(|text| record[0] == format!("'{text}")));
            assert_eq!(&record[2], &record[0], "the name too");
            assert_eq!(
                &record[3], "'-0.500000",
                "a negative number from the topic too"
            );
            rows += 1;
        }
        assert_eq!(rows, hostile.len());
    }

    #[test]
    fn the_export_is_csv_of_the_last_minutes() {
        let feed = LiveFeed::default();
        let now = chrono::Utc::now().timestamp_millis();
        feed.record(prediction("old", false), now - 10 * 60_000);
        feed.record(prediction("new", true), now);
        let csv = feed.export_csv(5.0);
        let lines: Vec<_> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "id,scored_at,name,churn_probability,churn,threshold,model_version,top_factors"
        );
        assert_eq!(lines.len(), 2, "{csv}");
        assert!(
            lines[1].starts_with(
                "new,2024-01-01T00:00:00.000Z,\"A, \"\"B\"\"\",0.900000,1,0.500000,m-1,"
            ),
            "{csv}"
        );
        assert_eq!(feed.since(now - 60_000).len(), 1);
    }
}
