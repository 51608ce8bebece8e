//! What the browser and the server say to each other: types, server functions, and the
//! backend interface the server binary implements (Kafka lives there, not here).

use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use leptos::server_fn::{BoxedStream, Websocket};
use model::{FieldError, Prediction, RawCustomer};
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use crate::access::{signed_in_user, CurrentUser, Role};
use crate::lifecycle::LifecycleCards;

/// A snapshot of the pipeline, shown on the page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineStatus {
    pub brokers: String,
    pub input_topic: String,
    pub predictions_topic: String,
    pub model_version: String,
    pub consumed: u64,
    pub scored: u64,
    pub dead_lettered: u64,
    /// What the broker holds (admins only): `None` until first measured.
    #[serde(default)]
    pub storage: Option<StorageStatus>,
}

/// Disk held by the pipeline, measured every 15 s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StorageStatus {
    /// The embedded broker's data directory in bytes; `None` on a cluster (`--brokers`).
    pub data_dir_bytes: Option<u64>,
    /// Records each topic holds now (high minus low watermark, all partitions), by name.
    pub topic_records: Vec<(String, i64)>,
}

impl StorageStatus {
    /// `1.2 GB`-style, for people.
    pub fn human_bytes(bytes: u64) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"];
        let mut value = bytes as f64;
        let mut unit = 0;
        while value >= 1000.0 && unit < units.len() - 1 {
            value /= 1000.0;
            unit += 1;
        }
        if unit == 0 {
            format!("{bytes} B")
        } else {
            format!("{value:.1} {}", units[unit])
        }
    }
}

/// A prediction for a submitted customer, with the time the round trip took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictReply {
    pub prediction: Prediction,
    /// Browser-independent: measured on the server from publish to reply.
    pub round_trip_ms: f64,
}

/// Why a submission got no prediction. Each case is something a person can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum PredictError {
    #[error("some fields need fixing")]
    Invalid(Vec<FieldError>),
    /// The id of the error in the server log, where its details stay.
    #[error(
        "Kafka is not reachable right now. Nothing was sent; try again in a moment (error id {0})."
    )]
    BrokerUnavailable(String),
    #[error("no prediction arrived within {0} s: is the scorer running?")]
    Timeout(u64),
    #[error("the server is busy with too many requests; try again in a moment")]
    Busy,
    #[error("the pipeline is not running in this server")]
    NotRunning,
    #[error("the request was malformed: {0}")]
    BadRequest(String),
    #[error("could not reach the server: {0}")]
    Transport(String),
    #[error("sign in first: open /login, or send an API token (churn tokens create)")]
    SignInRequired,
    #[error("{0}")]
    Forbidden(String),
}

impl FromServerFnError for PredictError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // The client sent something the function cannot read: its fault, not ours.
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::Deserialization(_) => {
                PredictError::BadRequest(value.to_string())
            }
            other => PredictError::Transport(other.to_string()),
        }
    }
}

/// Predictions and throughput of one second, for the live chart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondStats {
    /// Unix time in seconds.
    pub second: i64,
    pub predictions: u64,
    pub churners: u64,
}

/// One window of the stream, all segments and partitions added up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowPoint {
    pub start_ms: i64,
    pub count: u64,
    pub churn_predicted: u64,
    pub mean_probability: f64,
}

/// The stream analytics, as the dashboard shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    pub window_ms: i64,
    /// Recent windows, oldest first.
    pub windows: Vec<WindowPoint>,
    /// Segment breakdown over the last `summary_minutes`.
    pub summary_minutes: u32,
    pub segments: Vec<(String, model::analytics::SegmentSummary)>,
    pub drift: Option<model::analytics::DriftSummary>,
    /// Live quality per model version, from records that carried their outcome.
    pub quality: Vec<(String, model::analytics::QualitySummary)>,
    /// The riskiest recent customers, riskiest first.
    pub riskiest: Vec<Prediction>,
    /// Scorer consumer lag per input partition.
    pub lag: Vec<(i32, i64)>,
}

/// What the live feed pushes to the browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeedEvent {
    /// Sent first on every (re)connection: the recent past, newest last.
    Snapshot {
        recent: Vec<Prediction>,
        seconds: Vec<SecondStats>,
        status: PipelineStatus,
    },
    Prediction(Prediction),
    /// A second has closed.
    Second(SecondStats),
    /// Fresh stream analytics, as the backend publishes them. Never sent as they are:
    /// `for_role` renders them into a `DashboardBody` for the user who receives them.
    #[serde(skip)]
    Dashboard(Dashboard),
    /// Fresh stream analytics as the dashboard's body (HTML), rendered on the server for the
    /// receiving user's role. The browser swaps it in: it needs no decoder and no views for the
    /// analytics.
    DashboardBody(String),
    /// Fresh pipeline counters.
    Status(PipelineStatus),
    /// The model lifecycle (champion, challenger, duel, history), as cards rendered on the
    /// server: sent after the snapshot and whenever it changes. For every signed-in user: it
    /// names models, not customers.
    Lifecycle(LifecycleCards),
}

/// Where a published model sits: the champion answers users; the challenger is scored in the
/// shadow beside it, for the duel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seat {
    Champion,
    Challenger,
}

impl Seat {
    pub fn name(self) -> &'static str {
        match self {
            Seat::Champion => "champion",
            Seat::Challenger => "challenger",
        }
    }

    /// `champion` or `challenger`, as the upload's `?seat=` says it.
    pub fn parse(text: &str) -> Option<Seat> {
        [Seat::Champion, Seat::Challenger]
            .into_iter()
            .find(|seat| seat.name() == text)
    }
}

impl FeedEvent {
    /// What `role` may receive of this event: a viewer gets aggregates only (no prediction, so no
    /// customer name), and only an admin gets the broker and topic settings. Analytics go out
    /// as the dashboard's body, rendered for the role.
    #[cfg(feature = "ssr")]
    pub fn for_role(self, role: Role) -> Option<FeedEvent> {
        let names = role >= Role::Analyst;
        let status = |status: PipelineStatus| {
            if role >= Role::Admin {
                status
            } else {
                PipelineStatus {
                    brokers: String::new(),
                    input_topic: String::new(),
                    predictions_topic: String::new(),
                    storage: None,
                    ..status
                }
            }
        };
        match self {
            FeedEvent::Snapshot {
                recent,
                seconds,
                status: now,
            } => Some(FeedEvent::Snapshot {
                recent: if names { recent } else { Vec::new() },
                seconds,
                status: status(now),
            }),
            FeedEvent::Prediction(prediction) => names.then_some(FeedEvent::Prediction(prediction)),
            FeedEvent::Second(second) => Some(FeedEvent::Second(second)),
            FeedEvent::Dashboard(mut dashboard) => {
                if !names {
                    dashboard.riskiest.clear();
                }
                let body = crate::dashboard::body(Some(&dashboard), names);
                Some(FeedEvent::DashboardBody(body))
            }
            // Bodies are rendered here, for the receiving role; the backend publishes none.
            FeedEvent::DashboardBody(_) => None,
            FeedEvent::Status(now) => Some(FeedEvent::Status(status(now))),
            FeedEvent::Lifecycle(view) => Some(FeedEvent::Lifecycle(view)),
        }
    }
}

#[cfg(feature = "ssr")]
pub use backend::{Backend, BackendHandle};

impl PredictError {
    /// A JSON body for API clients: the message, and the field errors when there are any.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            PredictError::Invalid(fields) => {
                serde_json::json!({ "error": self.to_string(), "fields": fields })
            }
            other => serde_json::json!({ "error": other.to_string() }),
        }
    }
}

#[cfg(feature = "ssr")]
mod backend {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    use model::lifecycle::LifecycleView;
    use model::{Customer, Prediction};

    use super::{FeedEvent, PipelineStatus, PredictError, Seat};

    /// The pipeline as the web app needs it; the server binary implements it over Kafka.
    pub trait Backend: Send + Sync + 'static {
        fn status(&self) -> PipelineStatus;
        /// Publishes the customer and waits for its prediction.
        fn predict(
            &self,
            customer: Customer,
        ) -> Pin<Box<dyn Future<Output = Result<Prediction, PredictError>> + Send>>;
        /// The recent past as a snapshot, and a subscription to what comes next.
        fn feed(&self) -> (FeedEvent, tokio::sync::broadcast::Receiver<FeedEvent>);
        /// A plausible customer, for first-time users.
        fn sample(&self) -> Customer;
        /// Publishes a model, already verified, to the models topic in `seat`, recorded in the
        /// history as done `by` (the signed-in user): as champion every scorer switches to it,
        /// as challenger every scorer scores it in the shadow. `BrokerUnavailable` when the
        /// broker did not take it.
        fn publish_model(
            &self,
            model: model::ChurnModel,
            seat: Seat,
            by: String,
        ) -> Pin<Box<dyn Future<Output = Result<(), PredictError>> + Send>>;
        /// Withdraws the challenger (recorded as done `by`): scorers stop scoring it.
        fn withdraw_challenger(
            &self,
            by: String,
        ) -> Pin<Box<dyn Future<Output = Result<(), PredictError>> + Send>>;
        /// The model lifecycle as the models topic says now, and every change after.
        fn lifecycle(&self) -> tokio::sync::watch::Receiver<Arc<LifecycleView>>;
    }

    #[derive(Clone)]
    pub struct BackendHandle(pub Arc<dyn Backend>);
}

#[cfg(feature = "ssr")]
fn backend() -> Option<BackendHandle> {
    use_context::<BackendHandle>()
}

/// The signed-in user when they have at least `role`. The server's request check already
/// refused everyone else; the server functions check again, in case a route is ever mislabelled.
#[cfg(feature = "ssr")]
fn require(role: Role) -> Result<CurrentUser, PredictError> {
    match signed_in_user() {
        None => Err(PredictError::SignInRequired),
        Some(user) if user.can(role) => Ok(user),
        Some(user) => Err(PredictError::Forbidden(format!(
            "this needs the {role} role and {} is {}: ask an admin (churn users add NAME --role {role})",
            user.name, user.role
        ))),
    }
}

/// The one submission path, for the server function and the JSON API alike: validate again
/// (never trust the client), publish to Kafka, await the prediction.
#[cfg(feature = "ssr")]
pub async fn predict_record(
    backend: &dyn Backend,
    record: RawCustomer,
) -> Result<PredictReply, PredictError> {
    let customer = model::validate(&record).map_err(|errors| PredictError::Invalid(errors.0))?;
    let started = std::time::Instant::now();
    let prediction = backend.predict(customer).await?;
    Ok(PredictReply {
        prediction,
        round_trip_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Publishes the record to Kafka and awaits its prediction. The web server answers each error
/// with its HTTP status (the server's one mapping of errors to statuses).
#[server(endpoint = "predict")]
pub async fn predict(record: RawCustomer) -> Result<PredictReply, PredictError> {
    require(Role::Analyst)?;
    match backend() {
        Some(backend) => predict_record(backend.0.as_ref(), record).await,
        None => Err(PredictError::NotRunning),
    }
}

/// A sample customer to fill the form with.
#[server(endpoint = "sample_customer")]
pub async fn sample_customer() -> Result<RawCustomer, PredictError> {
    require(Role::Analyst)?;
    let backend = backend().ok_or(PredictError::NotRunning)?;
    Ok(backend.0.sample().to_raw())
}

/// The live feed: a snapshot of the recent past, then every prediction and every closed second,
/// each as the signed-in user's role may see it (`FeedEvent::for_role`).
#[server(protocol = Websocket<JsonEncoding, JsonEncoding>, endpoint = "live_feed")]
pub async fn live_feed(
    input: BoxedStream<(), ServerFnError>,
) -> Result<BoxedStream<FeedEvent, ServerFnError>, ServerFnError> {
    use futures::{SinkExt, StreamExt};
    use tokio::sync::broadcast::error::RecvError;

    let role = require(Role::Viewer)
        .map_err(|e| ServerFnError::new(e.to_string()))?
        .role;
    let backend =
        backend().ok_or_else(|| ServerFnError::new(PredictError::NotRunning.to_string()))?;
    let (snapshot, mut events) = backend.0.feed();
    let snapshot = snapshot.for_role(role);
    let mut lifecycle = backend.0.lifecycle();
    let (mut tx, rx) = futures::channel::mpsc::channel(256);
    let mut input = input;
    // The server's per-client limit on live connections: held while this connection lasts.
    let slot = use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<crate::FeedSlot>().cloned());
    tokio::spawn(async move {
        let _slot = slot;
        if let Some(snapshot) = snapshot {
            if tx.send(Ok(snapshot)).await.is_err() {
                return;
            }
        }
        // The lifecycle as it is now, then at each change (a stopped follower sends no more).
        let mut lifecycle_open = true;
        let now = lifecycle_event(&mut lifecycle);
        if tx.send(Ok(now)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                // The browser went away: stop.
                message = input.next() => if message.is_none() { break },
                changed = lifecycle.changed(), if lifecycle_open => match changed {
                    Ok(()) => if tx.send(Ok(lifecycle_event(&mut lifecycle))).await.is_err() { break },
                    Err(_) => lifecycle_open = false,
                },
                event = events.recv() => match event {
                    Ok(event) => match event.for_role(role) {
                        Some(event) => if tx.send(Ok(event)).await.is_err() { break },
                        None => continue,
                    },
                    // A slow browser misses some predictions rather than slowing the pipeline.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                },
            }
        }
    });
    Ok(rx.into())
}

/// The lifecycle as a feed event, marking it seen.
#[cfg(feature = "ssr")]
fn lifecycle_event(
    lifecycle: &mut tokio::sync::watch::Receiver<std::sync::Arc<model::lifecycle::LifecycleView>>,
) -> FeedEvent {
    // Rendered outside the watch's lock, so the follower is never kept waiting by it.
    let now = std::sync::Arc::clone(&lifecycle.borrow_and_update());
    FeedEvent::Lifecycle(LifecycleCards::of(&now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction() -> Prediction {
        serde_json::from_value(serde_json::json!({
            "id": "c-1", "name": "Ann Secret", "churn_probability": 0.9, "churn": true,
            "threshold": 0.5, "model_version": "m-1", "scored_at": "2024-01-01T00:00:00.000Z",
            "top_factors": []
        }))
        .expect("a prediction")
    }

    fn status() -> PipelineStatus {
        PipelineStatus {
            brokers: "kafka1:9093".into(),
            input_topic: "in".into(),
            predictions_topic: "out".into(),
            model_version: "m-1".into(),
            scored: 7,
            storage: Some(StorageStatus {
                data_dir_bytes: Some(123_456_789),
                topic_records: vec![("secret-topic".into(), 5)],
            }),
            ..Default::default()
        }
    }

    fn every_event() -> Vec<FeedEvent> {
        vec![
            FeedEvent::Snapshot {
                recent: vec![prediction()],
                seconds: vec![SecondStats::default()],
                status: status(),
            },
            FeedEvent::Prediction(prediction()),
            FeedEvent::Second(SecondStats::default()),
            FeedEvent::Dashboard(Dashboard {
                riskiest: vec![prediction()],
                window_ms: 10_000,
                ..Default::default()
            }),
            FeedEvent::Status(status()),
            FeedEvent::Lifecycle(LifecycleCards::of(&model::lifecycle::LifecycleView {
                champion: Some("m-1".into()),
                challenger: Some("m-2".into()),
                ..Default::default()
            })),
        ]
    }

    fn sent(role: Role) -> String {
        let events: Vec<FeedEvent> = every_event()
            .into_iter()
            .filter_map(|e| e.for_role(role))
            .collect();
        serde_json::to_string(&events).unwrap()
    }

    #[test]
    fn seats_are_read_by_their_exact_names() {
        assert_eq!(Seat::parse("champion"), Some(Seat::Champion));
        assert_eq!(Seat::parse("challenger"), Some(Seat::Challenger));
        for wrong in [
            "",
            "Challenger",
            "challenger ",
            "shadow",
            "champion,challenger",
        ] {
            assert_eq!(Seat::parse(wrong), None, "{wrong:?}");
        }
        for seat in [Seat::Champion, Seat::Challenger] {
            let json = serde_json::to_string(&seat).unwrap();
            assert_eq!(json, format!("\"{}\"", seat.name()));
        }
    }

    #[test]
    fn a_viewer_receives_no_customer_name_and_no_broker() {
        let text = sent(Role::Viewer);
        for secret in [
            "Ann Secret",
            "c-1",
            "kafka1",
            "\"in\"",
            "\"out\"",
            "secret-topic",
            "123456789",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let events: Vec<_> = every_event()
            .into_iter()
            .filter_map(|e| e.for_role(Role::Viewer))
            .collect();
        assert_eq!(events.len(), 5, "no Prediction event");
        assert!(
            matches!(events.last(), Some(FeedEvent::Lifecycle(v)) if v.challenger.as_deref() == Some("m-2")),
            "every signed-in user sees the duel's models"
        );
        assert!(text.contains("\"scored\":7"), "aggregates stay: {text}");
        assert!(text.contains("per 10 s window"), "{text}");
        assert!(!text.contains("riskiest"), "no riskiest list: {text}");
    }

    /// The analytics go out only as a body rendered for the receiving role: a body that did not
    /// come from `for_role` (rendered for someone else) is never passed on.
    #[test]
    fn analytics_are_sent_rendered_for_the_role_and_never_raw() {
        for role in [Role::Viewer, Role::Analyst, Role::Admin] {
            let dashboard = every_event()
                .into_iter()
                .filter_map(|e| e.for_role(role))
                .find_map(|e| match e {
                    FeedEvent::DashboardBody(body) => Some(body),
                    FeedEvent::Dashboard(_) => panic!("raw analytics for {role:?}"),
                    _ => None,
                })
                .expect("a body");
            assert_eq!(
                dashboard.contains(r#"id="riskiest""#),
                role >= Role::Analyst,
                "{role:?}: {dashboard}"
            );
            let foreign = FeedEvent::DashboardBody("<p>someone else's</p>".into());
            assert_eq!(foreign.for_role(role), None, "{role:?}");
        }
        // Never serialized raw, even by mistake: the analytics have no wire form.
        let raw = FeedEvent::Dashboard(Dashboard::default());
        assert!(serde_json::to_string(&raw).is_err());
    }

    #[test]
    fn an_analyst_receives_names_but_no_broker_and_an_admin_everything() {
        let analyst = sent(Role::Analyst);
        assert!(analyst.contains("Ann Secret"));
        assert!(
            !analyst.contains("kafka1")
                && !analyst.contains("\"in\"")
                && !analyst.contains("secret-topic"),
            "{analyst}"
        );
        let admin = sent(Role::Admin);
        assert!(admin.contains("kafka1") && admin.contains("\"out\""));
        // Every event unchanged, but the analytics, which go out rendered.
        let all: Vec<_> = every_event()
            .into_iter()
            .filter(|e| !matches!(e, FeedEvent::Dashboard(_)))
            .collect();
        let kept: Vec<_> = every_event()
            .into_iter()
            .filter_map(|e| e.for_role(Role::Admin))
            .filter(|e| !matches!(e, FeedEvent::DashboardBody(_)))
            .collect();
        assert_eq!(all, kept, "an admin gets every event unchanged");
    }
}
