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
use crate::pushed::Card;
#[cfg(feature = "ssr")]
use crate::pushed::PushedCard;

/// A snapshot of the pipeline, for the Pipeline card (rendered on the server: never sent as it is).
#[cfg(feature = "ssr")]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineStatus {
    pub brokers: String,
    pub input_topic: String,
    pub predictions_topic: String,
    pub model_version: String,
    pub consumed: u64,
    pub scored: u64,
    pub dead_lettered: u64,
    /// What the broker holds (admins only): `None` until first measured.
    pub storage: Option<StorageStatus>,
}

/// Disk held by the pipeline, measured every 15 s.
#[cfg(feature = "ssr")]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageStatus {
    /// The embedded broker's data directory in bytes; `None` on a cluster (`--brokers`).
    pub data_dir_bytes: Option<u64>,
    /// Records each topic holds now (high minus low watermark, all partitions), by name.
    pub topic_records: Vec<(String, i64)>,
}

#[cfg(feature = "ssr")]
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
#[cfg(feature = "ssr")]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowPoint {
    pub start_ms: i64,
    pub count: u64,
    pub churn_predicted: u64,
    pub mean_probability: f64,
}

/// The stream analytics, for the dashboard's cards (rendered on the server: never sent as they are).
#[cfg(feature = "ssr")]
#[derive(Debug, Clone, Default, PartialEq)]
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

/// What the backend publishes to the live feed. Never sent as it is (it has no wire form):
/// `for_role` turns each event into what one signed-in user may receive ([`LiveEvent`]).
#[cfg(feature = "ssr")]
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// The recent past, newest last: what a (re)connecting browser starts from.
    Snapshot {
        recent: Vec<Prediction>,
        seconds: Vec<SecondStats>,
        status: PipelineStatus,
    },
    Prediction(Prediction),
    /// A second has closed.
    Second(SecondStats),
    /// Fresh cards, each rendered once for the roles that see it: a receiver clones pointers.
    Cards(std::sync::Arc<[PushedCard]>),
}

/// What the live feed pushes to one browser: the backend's events as the user's role may see
/// them. Cards arrive rendered on the server for the user's role (`pushed`): the browser sets
/// their markup, so it carries neither decoders nor views for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LiveEvent {
    /// Sent first on every (re)connection: the recent past, newest last.
    Snapshot {
        recent: Vec<Prediction>,
        seconds: Vec<SecondStats>,
    },
    Prediction(Box<Prediction>),
    /// A second has closed.
    Second(SecondStats),
    /// A card's inner HTML: state, not news (only the latest of each card matters).
    Card(Card, std::sync::Arc<str>),
    /// The seated challenger's version, sent with the lifecycle cards (the Models page offers
    /// to withdraw it).
    Challenger(Option<String>),
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

#[cfg(feature = "ssr")]
impl FeedEvent {
    /// Fresh pipeline counters and analytics, each card rendered once for every view of it.
    pub fn cards(status: &PipelineStatus, dashboard: &Dashboard) -> FeedEvent {
        let cards = crate::status::cards(status)
            .into_iter()
            .chain(crate::dashboard::cards(dashboard));
        FeedEvent::Cards(cards.collect())
    }

    /// What `role` may receive of this event: a viewer gets aggregates only (no prediction, so no
    /// customer name), and only an admin gets the broker and topic settings. Cards go out as they
    /// were rendered for the role.
    pub fn for_role(self, role: Role) -> Vec<LiveEvent> {
        let names = role >= Role::Analyst;
        match self {
            FeedEvent::Snapshot {
                recent,
                seconds,
                status,
            } => {
                let status = crate::status::card(&status, role..=role);
                vec![
                    LiveEvent::Snapshot {
                        recent: if names { recent } else { Vec::new() },
                        seconds,
                    },
                    LiveEvent::Card(status.card, status.markup),
                ]
            }
            FeedEvent::Prediction(prediction) if names => {
                vec![LiveEvent::Prediction(Box::new(prediction))]
            }
            FeedEvent::Prediction(_) => Vec::new(),
            FeedEvent::Second(second) => vec![LiveEvent::Second(second)],
            FeedEvent::Cards(cards) => shown_to(&cards, role),
        }
    }
}

/// The cards among `cards` that `role` sees, as events.
#[cfg(feature = "ssr")]
fn shown_to(cards: &[PushedCard], role: Role) -> Vec<LiveEvent> {
    cards
        .iter()
        .filter(|c| c.roles.contains(&role))
        .map(|c| LiveEvent::Card(c.card, c.markup.clone()))
        .collect()
}

#[cfg(feature = "ssr")]
use crate::lifecycle::LifecycleCards;
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
    use crate::lifecycle::LifecycleCards;

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
        /// The lifecycle's cards, rendered once per change of `lifecycle` for every browser.
        fn lifecycle_cards(&self) -> tokio::sync::watch::Receiver<Arc<LifecycleCards>>;
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

/// Events waiting for one slow browser beyond the socket's own small queue; see `Outbox`.
#[cfg(feature = "ssr")]
const OUTBOX: usize = 256;

/// The live feed: a snapshot of the recent past, then every prediction, every closed second and
/// the pushed cards (Pipeline, dashboard, riskiest customers, duel, history) as they change,
/// each as the signed-in user's role may see it (`FeedEvent::for_role`).
#[server(protocol = Websocket<JsonEncoding, JsonEncoding>, endpoint = "live_feed")]
pub async fn live_feed(
    input: BoxedStream<(), ServerFnError>,
) -> Result<BoxedStream<LiveEvent, ServerFnError>, ServerFnError> {
    use futures::StreamExt;
    use tokio::sync::broadcast::error::RecvError;

    let role = require(Role::Viewer)
        .map_err(|e| ServerFnError::new(e.to_string()))?
        .role;
    let backend =
        backend().ok_or_else(|| ServerFnError::new(PredictError::NotRunning.to_string()))?;
    let (snapshot, mut events) = backend.0.feed();
    let snapshot = snapshot.for_role(role);
    let mut lifecycle = backend.0.lifecycle_cards();
    // Small: what waits beyond it waits in the outbox, where a newer card replaces an older one.
    let (mut tx, rx) = futures::channel::mpsc::channel(8);
    let mut input = input;
    // The server's per-client limit on live connections: held while this connection lasts.
    let slot = use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<crate::FeedSlot>().cloned());
    tokio::spawn(async move {
        let _slot = slot;
        let mut outbox = crate::outbox::Outbox::new(OUTBOX);
        snapshot.into_iter().for_each(|event| outbox.push(event));
        // The lifecycle as it is now, then at each change (a stopped follower sends no more).
        lifecycle_events(&mut lifecycle).for_each(|event| outbox.push(event));
        let mut lifecycle_open = true;
        loop {
            tokio::select! {
                // The browser went away: stop.
                message = input.next() => if message.is_none() { break },
                ready = std::future::poll_fn(|cx| tx.poll_ready(cx)), if !outbox.is_empty() => {
                    let Some(event) = outbox.pop() else { continue };
                    if ready.is_err() || tx.start_send(Ok(event)).is_err() { break }
                },
                changed = lifecycle.changed(), if lifecycle_open => match changed {
                    Ok(()) => lifecycle_events(&mut lifecycle).for_each(|event| outbox.push(event)),
                    Err(_) => lifecycle_open = false,
                },
                event = events.recv() => match event {
                    Ok(event) => event.for_role(role).into_iter().for_each(|event| outbox.push(event)),
                    // A slow browser misses some predictions rather than slowing the pipeline.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                },
            }
        }
    });
    Ok(rx.into())
}

/// The lifecycle's cards as feed events (for every role alike), marking them seen.
#[cfg(feature = "ssr")]
fn lifecycle_events(
    lifecycle: &mut tokio::sync::watch::Receiver<std::sync::Arc<LifecycleCards>>,
) -> impl Iterator<Item = LiveEvent> {
    // Pointers only: the cards were rendered once, where the lifecycle changed.
    let now = std::sync::Arc::clone(&lifecycle.borrow_and_update());
    let challenger = LiveEvent::Challenger(now.challenger.clone());
    std::iter::once(challenger).chain(shown_to(&now.cards, Role::Viewer))
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

    fn dashboard() -> Dashboard {
        Dashboard {
            riskiest: vec![prediction()],
            window_ms: 10_000,
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
            FeedEvent::cards(&status(), &dashboard()),
        ]
    }

    fn received(role: Role) -> Vec<LiveEvent> {
        every_event()
            .into_iter()
            .flat_map(|e| e.for_role(role))
            .collect()
    }

    /// What goes over the wire to a user of `role`, as text.
    fn sent(role: Role) -> String {
        serde_json::to_string(&received(role)).unwrap()
    }

    /// The rendered cards of `kind` that `role` receives, hydration markers left out.
    fn cards(role: Role, kind: Card) -> Vec<String> {
        received(role)
            .into_iter()
            .filter_map(|event| match event {
                LiveEvent::Card(card, markup) if card == kind => Some(markup.replace("<!>", "")),
                _ => None,
            })
            .collect()
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
            "in → out",
            "secret-topic",
            "123.5 MB",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let events = received(Role::Viewer);
        assert!(
            !events.iter().any(|e| matches!(e, LiveEvent::Prediction(_))),
            "no Prediction event"
        );
        assert!(
            matches!(&events[0], LiveEvent::Snapshot { recent, seconds } if recent.is_empty() && seconds.len() == 1),
            "a snapshot without predictions: {events:?}"
        );
        // Aggregates stay: the counters in both pipeline cards (snapshot and update), the windows.
        let status = cards(Role::Viewer, Card::Status);
        assert_eq!(status.len(), 2);
        for card in &status {
            assert!(card.contains(r#"class="scored num">7<"#), "{card}");
            assert!(!card.contains("Brokers"), "{card}");
        }
        let dashboard = cards(Role::Viewer, Card::Dashboard);
        assert_eq!(dashboard.len(), 1);
        assert!(dashboard[0].contains("per 10 s window"), "{dashboard:?}");
        assert!(!dashboard[0].contains("riskiest"), "{dashboard:?}");
        assert_eq!(cards(Role::Viewer, Card::Riskiest), Vec::<String>::new());
    }

    #[test]
    fn an_analyst_receives_names_but_no_broker_and_an_admin_everything() {
        let analyst = sent(Role::Analyst);
        assert!(analyst.contains("Ann Secret"));
        assert!(
            !analyst.contains("kafka1")
                && !analyst.contains("in → out")
                && !analyst.contains("secret-topic"),
            "{analyst}"
        );
        let events = received(Role::Analyst);
        assert!(events.contains(&LiveEvent::Prediction(Box::new(prediction()))));
        assert!(
            matches!(&events[0], LiveEvent::Snapshot { recent, .. } if recent == &vec![prediction()])
        );
        let riskiest = cards(Role::Analyst, Card::Riskiest);
        assert_eq!(riskiest.len(), 1);
        assert!(riskiest[0].contains(r#"id="riskiest""#), "{riskiest:?}");
        assert!(riskiest[0].contains("Ann Secret"), "{riskiest:?}");

        for card in cards(Role::Admin, Card::Status) {
            for part in ["kafka1:9093", "in → out", "secret-topic", "123.5 MB"] {
                assert!(card.contains(part), "{part} missing in {card}");
            }
        }
        assert!(cards(Role::Admin, Card::Riskiest)[0].contains("Ann Secret"));
        assert!(received(Role::Admin).contains(&LiveEvent::Prediction(Box::new(prediction()))));
    }

    #[test]
    fn cards_are_rendered_once_and_shared_by_every_receiver_of_a_role_view() {
        let event = FeedEvent::cards(&status(), &dashboard());
        let markup = |role: Role, kind: Card| {
            event
                .clone()
                .for_role(role)
                .into_iter()
                .find_map(|e| match e {
                    LiveEvent::Card(card, markup) if card == kind => Some(markup),
                    _ => None,
                })
                .expect("the card")
        };
        // The same allocation, not equal copies: receivers clone pointers, nobody renders again.
        let body = markup(Role::Viewer, Card::Dashboard);
        for role in [Role::Viewer, Role::Analyst, Role::Admin] {
            assert!(std::sync::Arc::ptr_eq(
                &body,
                &markup(role, Card::Dashboard)
            ));
        }
        assert!(std::sync::Arc::ptr_eq(
            &markup(Role::Viewer, Card::Status),
            &markup(Role::Analyst, Card::Status)
        ));
        assert!(!std::sync::Arc::ptr_eq(
            &markup(Role::Analyst, Card::Status),
            &markup(Role::Admin, Card::Status)
        ));
        assert!(std::sync::Arc::ptr_eq(
            &markup(Role::Analyst, Card::Riskiest),
            &markup(Role::Admin, Card::Riskiest)
        ));
    }

    #[test]
    fn the_lifecycle_cards_go_to_every_role_alike() {
        let view = model::lifecycle::LifecycleView {
            challenger: Some("m-2".into()),
            ..Default::default()
        };
        let (_tx, mut rx) =
            tokio::sync::watch::channel(std::sync::Arc::new(LifecycleCards::of(&view)));
        let events: Vec<_> = lifecycle_events(&mut rx).collect();
        assert_eq!(events[0], LiveEvent::Challenger(Some("m-2".into())));
        let kinds: Vec<_> = events[1..]
            .iter()
            .map(|e| match e {
                LiveEvent::Card(card, _) => *card,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, [Card::Duel, Card::History]);
        assert!(!rx.has_changed().unwrap(), "marked seen");
    }
}
