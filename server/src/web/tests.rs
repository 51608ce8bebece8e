//! The router on a fake backend: every status the web layer answers, without Kafka, a broker or
//! a socket (`oneshot`), in milliseconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use app::{Backend, FeedEvent, PipelineStatus, PredictError, Seat};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use leptos::server_fn::ServerFn;
use model::lifecycle::LifecycleView;
use model::{ChurnModel, Customer, Prediction};
use serde_json::Value;
use tower::ServiceExt;

use super::{router_with_state, AppState, WebOptions, MAX_BODY_BYTES};
use crate::health::Health;
use crate::live_feed::LiveFeed;
use crate::model_store::ModelTrust;

/// What a fake backend published: the model, its seat and who; `None` for a withdrawal.
type Published = Vec<(Option<ChurnModel>, Seat, String)>;

/// A pipeline that answers every submission the same way, and every model upload with
/// `publishing` (keeping the models it published).
pub(crate) struct Fake {
    answer: Result<Prediction, PredictError>,
    publishing: Result<(), PredictError>,
    published: Arc<Mutex<Published>>,
    lifecycle: tokio::sync::watch::Receiver<Arc<LifecycleView>>,
}

impl Fake {
    pub(crate) fn answering(answer: Result<Prediction, PredictError>) -> Fake {
        Fake {
            answer,
            publishing: Ok(()),
            published: Arc::default(),
            lifecycle: tokio::sync::watch::channel(Arc::default()).1,
        }
    }
}

impl Backend for Fake {
    fn status(&self) -> PipelineStatus {
        PipelineStatus::default()
    }

    fn predict(
        &self,
        _: Customer,
    ) -> Pin<Box<dyn Future<Output = Result<Prediction, PredictError>> + Send>> {
        let answer = self.answer.clone();
        Box::pin(async move { answer })
    }

    fn feed(&self) -> (FeedEvent, tokio::sync::broadcast::Receiver<FeedEvent>) {
        // One feed for all fakes, kept alive so that a subscription stays open as in the server.
        static FEED: std::sync::OnceLock<LiveFeed> = std::sync::OnceLock::new();
        FEED.get_or_init(LiveFeed::default).subscribe(self.status())
    }

    fn sample(&self) -> Customer {
        let options = model::synth::GenerateOptions {
            rows: 1,
            seed: 1,
            messy_fraction: 0.0,
        };
        model::synth::generate_customers(&options).remove(0)
    }

    fn publish_model(
        &self,
        model: ChurnModel,
        seat: Seat,
        by: String,
    ) -> Pin<Box<dyn Future<Output = Result<(), PredictError>> + Send>> {
        let (answer, published) = (self.publishing.clone(), self.published.clone());
        Box::pin(async move {
            if answer.is_ok() {
                published.lock().unwrap().push((Some(model), seat, by));
            }
            answer
        })
    }

    fn withdraw_challenger(
        &self,
        by: String,
    ) -> Pin<Box<dyn Future<Output = Result<(), PredictError>> + Send>> {
        let (answer, published) = (self.publishing.clone(), self.published.clone());
        Box::pin(async move {
            if answer.is_ok() {
                published.lock().unwrap().push((None, Seat::Challenger, by));
            }
            answer
        })
    }

    fn lifecycle(&self) -> tokio::sync::watch::Receiver<Arc<LifecycleView>> {
        self.lifecycle.clone()
    }

    fn lifecycle_cards(&self) -> tokio::sync::watch::Receiver<Arc<app::LifecycleCards>> {
        let now = app::LifecycleCards::of(&self.lifecycle.borrow());
        tokio::sync::watch::channel(Arc::new(now)).1
    }
}

pub(crate) fn prediction() -> Prediction {
    serde_json::from_value(serde_json::json!({
        "id": "web-1", "name": "Flood", "churn_probability": 0.25, "churn": false, "threshold": 0.5,
        "model_version": "m-1", "scored_at": "2024-01-01T00:00:00.000Z", "top_factors": []
    }))
    .expect("a prediction")
}

/// The router as `churn serve` builds it, on a fake backend answering `answer`; every request
/// carries an admin's API token (access itself is tested in `auth::tests`).
fn router_with(
    answer: Result<Prediction, PredictError>,
    health: Arc<Health>,
    runs_scorer: bool,
) -> Router {
    router_on(
        Fake::answering(answer),
        health,
        runs_scorer,
        ModelTrust::default(),
    )
}

/// Options for a test router: accounts in a fresh temp dir holding one admin API token, which
/// `with_token` puts on every request.
pub(crate) fn test_options(runs_scorer: bool) -> (WebOptions, String) {
    let data_dir = tempfile::tempdir().expect("a temp dir").keep();
    let (_, token) =
        crate::auth::tokens::create(&data_dir, app::Role::Admin, "tests", chrono::Utc::now())
            .expect("a token");
    let options = WebOptions::new(
        ([127, 0, 0, 1], 0).into(),
        std::env::temp_dir(),
        runs_scorer,
        crate::auth::AuthOptions::new(data_dir),
    );
    (options, format!("Bearer {}", token.expose()))
}

/// Every request through `router` carries `bearer`.
pub(crate) fn with_token(router: Router, bearer: String) -> Router {
    router.layer(axum::middleware::map_request(
        move |mut request: Request<Body>| {
            let bearer = header::HeaderValue::from_str(&bearer).expect("a header");
            async move {
                request.headers_mut().insert(header::AUTHORIZATION, bearer);
                request
            }
        },
    ))
}

/// The router on `fake`, with `trust` for uploaded models; every request carries an admin's
/// API token (access itself is tested in `auth::tests`).
fn router_on(fake: Fake, health: Arc<Health>, runs_scorer: bool, trust: ModelTrust) -> Router {
    let (options, bearer) = test_options(runs_scorer);
    let router = router_with_state(
        AppState::with_parts(
            &options,
            Arc::new(fake),
            Arc::default(),
            health,
            Arc::default(),
        )
        .with_model_trust(trust),
    );
    with_token(router, bearer)
}

/// The router as `churn serve` builds it with `options`, on a fake backend that predicts;
/// every request carries `bearer`.
pub(super) fn fake_router_with(options: &WebOptions, bearer: String) -> Router {
    let router = router_with_state(AppState::with_parts(
        options,
        Arc::new(Fake::answering(Ok(prediction()))),
        Arc::default(),
        Arc::default(),
        Arc::default(),
    ));
    with_token(router, bearer)
}

fn router(answer: Result<Prediction, PredictError>) -> Router {
    router_with(answer, Arc::default(), false)
}

/// A customer record that validates.
pub(crate) const RECORD: &str = r#"{"Names": "Flood", "Age": 40, "Total_Purchase": 5000, "Account_Manager": 0, "Years": 4,
    "Num_Sites": 8, "Onboard_date": "2012-05-06 07:08:09", "Location": "1 Main St, Springfield, IL 62701", "Company": "X"}"#;

fn post(path: &str, content_type: &str, body: impl Into<String>) -> Request<Body> {
    let body = body.into();
    Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .expect("a request")
}

/// The status and the body (as JSON when it is JSON, else as a string).
async fn answer(router: Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.oneshot(request).await.expect("the router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, body)
}

async fn predict_json(
    answer_with: Result<Prediction, PredictError>,
    body: &str,
) -> (StatusCode, Value) {
    answer(
        router(answer_with),
        post("/api/v1/predict", "application/json", body),
    )
    .await
}

/// The `predict` server function's path, as the browser calls it.
fn server_fn_path() -> &'static str {
    <app::api::Predict as ServerFn>::PATH
}

#[tokio::test]
async fn a_prediction_is_200_with_its_round_trip() {
    let (status, body) = predict_json(Ok(prediction()), RECORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["prediction"]["id"], "web-1");
    assert!(body["round_trip_ms"].is_number());
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400() {
    let (status, body) = predict_json(Ok(prediction()), "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("not a customer record: "),
        "{body}"
    );
}

#[tokio::test]
async fn an_oversized_body_is_413_on_the_api_and_on_the_server_function() {
    let big = "a".repeat(MAX_BODY_BYTES + 1);
    for (path, content_type) in [
        ("/api/v1/predict", "application/json"),
        (server_fn_path(), "application/x-www-form-urlencoded"),
    ] {
        let (status, _) = answer(
            router(Ok(prediction())),
            post(path, content_type, big.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
    }
}

#[tokio::test]
async fn an_invalid_record_is_422_with_its_field_errors() {
    let (status, body) = predict_json(Ok(prediction()), r#"{"Names": "A", "Age": -4}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["field"] == "Age"),
        "{body}"
    );
}

#[tokio::test]
async fn too_many_waiting_is_429() {
    let (status, body) = predict_json(Err(PredictError::Busy), RECORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"], PredictError::Busy.to_string());
}

#[tokio::test]
async fn a_broker_away_is_503() {
    let (status, _) =
        predict_json(Err(PredictError::BrokerUnavailable("down".into())), RECORD).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn no_reply_in_time_is_504() {
    let (status, body) = predict_json(Err(PredictError::Timeout(5)), RECORD).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["error"], PredictError::Timeout(5).to_string());
}

#[tokio::test]
async fn readiness_is_503_until_the_scorer_holds_partitions_and_then_200() {
    let health = Arc::new(Health::default());
    let router = router_with(Ok(prediction()), health.clone(), true);
    let (status, body) = answer(
        router.clone(),
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let expected = serde_json::json!({ "broker_reachable": true, "model_loaded": false, "consumer_assigned": false, "failed_tasks": [] });
    assert_eq!(body, expected);
    health.set_assigned(true);
    health.set_model_version("m-1");
    let (status, _) = answer(
        router.clone(),
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    health.record_failure(
        "live feed reader",
        "live feed reader ended unexpectedly".into(),
    );
    let (status, body) = answer(router, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["failed_tasks"][0], "live feed reader");
}

#[tokio::test]
async fn the_server_function_answers_the_same_statuses_as_the_api() {
    let garbage = post(
        server_fn_path(),
        "application/x-www-form-urlencoded",
        "garbage=%%%",
    );
    let (status, body) = answer(router(Ok(prediction())), garbage).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("BadRequest"), "{body}");

    let invalid = post(
        server_fn_path(),
        "application/x-www-form-urlencoded",
        "record[Names]=A&record[Age]=-4",
    );
    let (status, body) = answer(router(Ok(prediction())), invalid).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let record: serde_json::Map<String, Value> = serde_json::from_str(RECORD).unwrap();
    let form: Vec<String> = record
        .iter()
        .map(|(k, v)| {
            format!(
                "record[{k}]={}",
                v.to_string()
                    .trim_matches('"')
                    .replace(' ', "+")
                    .replace(',', "%2C")
            )
        })
        .collect();
    let busy = post(
        server_fn_path(),
        "application/x-www-form-urlencoded",
        form.join("&"),
    );
    let (status, body) = answer(router(Err(PredictError::Busy)), busy).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

#[tokio::test]
async fn operational_routes_answer() {
    let router = router(Ok(prediction()));
    let (status, body) = answer(
        router.clone(),
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, Value::String("ok".into())));

    let response = router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&text)
        .lines()
        .any(|l| l == "churn_pending_requests 0"));

    let response = router
        .oneshot(
            Request::get("/export/predictions.csv?minutes=2")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename=\"predictions-2min.csv\""
    );
}

// What the guard refuses, on the whole router (`guard::tests` has its decisions in detail).

fn with_headers(mut request: Request<Body>, pairs: &[(&'static str, &str)]) -> Request<Body> {
    for (name, value) in pairs {
        request
            .headers_mut()
            .insert(*name, value.parse().expect("a header value"));
    }
    request
}

#[tokio::test]
async fn a_host_name_not_allowed_is_400_everywhere_and_an_address_passes() {
    for path in [
        "/",
        "/dashboard",
        "/api/v1/predict",
        "/healthz",
        "/pkg/churn.js",
    ] {
        let request = with_headers(
            Request::get(path).body(Body::empty()).unwrap(),
            &[("host", "rebind.evil.example:3000")],
        );
        let (status, body) = answer(router(Ok(prediction())), request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(body.to_string().contains("--allowed-hosts"), "{body}");
    }
    let request = with_headers(
        Request::get("/healthz").body(Body::empty()).unwrap(),
        &[("host", "127.0.0.1:3000")],
    );
    assert_eq!(
        answer(router(Ok(prediction())), request).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_foreign_origin_cannot_submit_or_open_the_live_feed() {
    let foreign = [
        ("host", "127.0.0.1:3000"),
        ("origin", "http://evil.example"),
    ];
    for request in [
        post("/api/v1/predict", "application/json", RECORD),
        post(server_fn_path(), "application/x-www-form-urlencoded", "a=b"),
    ] {
        let path = request.uri().path().to_owned();
        let (status, _) = answer(router(Ok(prediction())), with_headers(request, &foreign)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let upgrade = with_headers(
        Request::get(<app::api::LiveFeed as ServerFn>::PATH)
            .body(Body::empty())
            .unwrap(),
        &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    );
    let (status, _) = answer(router(Ok(prediction())), with_headers(upgrade, &foreign)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "websocket");
    // The same submission from the app's own page goes through.
    let own = with_headers(
        post("/api/v1/predict", "application/json", RECORD),
        &[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://127.0.0.1:3000"),
        ],
    );
    assert_eq!(
        answer(router(Ok(prediction())), own).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_pages_a_nonce_they_use() {
    let router = router(Ok(prediction()));
    for request in [
        Request::get("/").body(Body::empty()).unwrap(),
        Request::get("/no-such-page").body(Body::empty()).unwrap(),
        Request::get("/healthz").body(Body::empty()).unwrap(),
        with_headers(
            Request::get("/").body(Body::empty()).unwrap(),
            &[("host", "evil.example")],
        ),
        post("/api/v1/predict", "application/json", "{"),
    ] {
        let path = request.uri().path().to_owned();
        let response = router.clone().oneshot(request).await.unwrap();
        let headers = response.headers().clone();
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin", "{path}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
        if path == "/" && response.status() == StatusCode::OK {
            let nonce = csp
                .split("'nonce-")
                .nth(1)
                .and_then(|rest| rest.split('\'').next())
                .expect("a nonce in the policy");
            let page = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let page = String::from_utf8_lossy(&page);
            let scripts = page.matches("<script").count();
            assert!(scripts > 0, "{page}");
            assert_eq!(
                page.matches(&format!("nonce=\"{nonce}\"")).count(),
                scripts,
                "every inline script carries this page's nonce: {page}"
            );
        }
    }
    // Each page gets its own nonce.
    let policy = |response: axum::response::Response| {
        response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let first = policy(
        router
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap(),
    );
    let second = policy(
        router
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap(),
    );
    assert_ne!(first, second);
}

#[tokio::test]
async fn a_flood_of_submissions_from_one_client_is_429_with_retry_after() {
    let (mut options, bearer) = test_options(false);
    options.guard.limits.submit_per_second = 1.try_into().unwrap();
    options.guard.limits.submit_burst = 3.try_into().unwrap();
    let router = fake_router_with(&options, bearer);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = router
            .clone()
            .oneshot(post("/api/v1/predict", "application/json", RECORD))
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = response.headers()[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&wait), "{wait}");
        }
        statuses.push(response.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

fn trained_model() -> ChurnModel {
    let customers = model::synth::generate_customers(&model::synth::GenerateOptions {
        rows: 200,
        seed: 3,
        messy_fraction: 0.0,
    });
    model::train::train(&customers, &Default::default(), "t".into(), |_| {}).unwrap()
}

fn key(byte: u8) -> model::SigningKey {
    model::SigningKey::from_bytes(vec![byte; 32]).unwrap()
}

/// Uploads `body` as a model to a router whose uploads need `trust`; the answer, and what the
/// backend published.
async fn upload(trust: ModelTrust, body: String) -> (StatusCode, Value, Vec<ChurnModel>) {
    let fake = Fake::answering(Ok(prediction()));
    let published = fake.published.clone();
    let router = router_on(fake, Arc::default(), false, trust);
    let (status, body) = answer(router, post("/api/v1/models", "application/json", body)).await;
    let published = published
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(model, _, _)| model.clone())
        .collect();
    (status, body, published)
}

#[tokio::test]
async fn an_uploaded_model_is_verified_and_published() {
    let model = trained_model();
    let (status, body, published) = upload(ModelTrust::default(), model.to_json()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], model.version.as_str());
    assert_eq!(published, std::slice::from_ref(&model));

    // A model is bigger than the router's limit on other bodies; layout does not matter.
    let padded = format!("{}{}", model.to_json(), " ".repeat(4 * MAX_BODY_BYTES));
    let (status, body, _) = upload(ModelTrust::default(), padded).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let huge = format!("{}{}", model.to_json(), " ".repeat(super::MAX_MODEL_BYTES));
    let (status, _, published) = upload(ModelTrust::default(), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(published.is_empty());
}

#[tokio::test]
async fn an_uploaded_model_the_scorers_would_refuse_is_422_and_not_published() {
    let model = trained_model();
    let mut weight = model.clone();
    weight.features[2].coefficient *= 2.0;
    let mut threshold = model.clone();
    threshold.threshold = 0.99;
    let mut unsealed: Value = serde_json::from_str(&model.to_json()).unwrap();
    unsealed.as_object_mut().unwrap().remove("integrity");
    let mut old_schema = unsealed.clone();
    old_schema["schema_version"] = 1.into();
    let mut huge_value: Value = serde_json::from_str(&model.to_json()).unwrap();
    huge_value["threshold"] = "A".repeat(100_000).into();
    let huge_value = huge_value.to_string();
    for (what, body, reason) in [
        (
            "a weight changed",
            weight.to_json(),
            "changed after training",
        ),
        (
            "the threshold changed",
            threshold.to_json(),
            "changed after training",
        ),
        ("no seal", unsealed.to_string(), "no content hash"),
        ("schema 1", old_schema.to_string(), "retrain"),
        ("not a model", "{\"hello\": 1}".into(), "not a churn model"),
        ("not JSON", "=cmd|".into(), "not a churn model"),
        ("a huge wrong value", huge_value, "damaged"),
    ] {
        let (status, body, published) = upload(ModelTrust::default(), body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(reason),
            "{what}: {body}"
        );
        assert!(body.to_string().len() < 1000, "{what}: the reason is cut");
        assert!(published.is_empty(), "{what}");
    }
}

#[tokio::test]
async fn with_a_signing_key_only_models_signed_with_it_are_published() {
    let trust = || ModelTrust::signed_by(key(1));
    let mut signed = trained_model();
    signed.sign(&key(1));
    let (status, body, published) = upload(trust(), signed.to_json()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(published, [signed.clone()]);

    let mut other_key = trained_model();
    other_key.sign(&key(2));
    let mut stripped = signed.clone();
    stripped.integrity.signature = None;
    let mut rehashed = signed.clone();
    rehashed.threshold = 0.01;
    rehashed.integrity.sha256 = rehashed.content_hash();
    for (what, model, reason) in [
        ("another key", other_key, "does not verify"),
        ("signature stripped", stripped, "not signed"),
        ("unsigned", trained_model(), "not signed"),
        ("edited and rehashed", rehashed, "does not verify"),
    ] {
        let (status, body, published) = upload(trust(), model.to_json()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(reason),
            "{what}: {body}"
        );
        assert!(published.is_empty(), "{what}");
    }
}

/// What librdkafka says when a broker is away, with the broker's address and a topic name.
const BROKER_TEXT: &str = "Message production error: MessageTimedOut (Local: Message timed out) \
    on costumerchurn: 10.0.0.7:9092/bootstrap: Connect to ipv4#10.0.0.7:9092 failed: Connection refused";

/// The error a backend gives for a broker away, made the way the pipeline makes it.
fn broker_away() -> PredictError {
    PredictError::BrokerUnavailable(crate::error_id::log("testing", &BROKER_TEXT))
}

/// Fails when any piece of the broker's text is in `body`.
fn assert_no_broker_text(what: &str, body: &Value) {
    let body = body.to_string();
    for piece in [
        "10.0.0.7",
        "9092",
        "MessageTimedOut",
        "Local:",
        "costumerchurn",
        "bootstrap",
        "refused",
    ] {
        assert!(
            !body.contains(piece),
            "{what}: {piece:?} reached the client: {body}"
        );
    }
}

#[tokio::test]
async fn no_internal_error_text_reaches_any_response() {
    // The JSON API: 503, with an error id and no detail.
    let (status, body) = predict_json(Err(broker_away()), RECORD).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_no_broker_text("the JSON API", &body);
    assert!(
        body["error"].as_str().unwrap().contains("error id "),
        "{body}"
    );

    // The server function, as the browser calls it.
    let record: serde_json::Map<String, Value> = serde_json::from_str(RECORD).unwrap();
    let form: Vec<String> = record
        .iter()
        .map(|(k, v)| {
            let v = v.to_string();
            let v = v.trim_matches('"').replace(' ', "+").replace(',', "%2C");
            format!("record[{k}]={v}")
        })
        .collect();
    let request = post(
        server_fn_path(),
        "application/x-www-form-urlencoded",
        form.join("&"),
    );
    let (status, body) = answer(router(Err(broker_away())), request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_no_broker_text("the server function", &body);

    // A model upload the broker does not take.
    let fake = Fake {
        publishing: Err(broker_away()),
        ..Fake::answering(Ok(prediction()))
    };
    let router = router_on(fake, Arc::default(), false, ModelTrust::default());
    let upload = post(
        "/api/v1/models",
        "application/json",
        trained_model().to_json(),
    );
    let (status, body) = answer(router, upload).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_no_broker_text("a model upload", &body);

    // Readiness, open to anyone: a task failed with the broker's words.
    let health = Arc::new(Health::default());
    health.record_failure("scorer", format!("scorer failed: {BROKER_TEXT}"));
    health.set_broker_ok(false);
    let router = router_with(Ok(prediction()), health, true);
    let (status, body) = answer(router, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_no_broker_text("/readyz", &body);
    assert_eq!(body["failed_tasks"], serde_json::json!(["scorer"]));
}

/// The router on `fake`, with `trust` for uploads, every request carrying a token of `role`;
/// the token's user name too.
fn router_as(role: app::Role, fake: Fake, trust: ModelTrust) -> (Router, String) {
    let (options, _) = test_options(false);
    let (token, secret) =
        crate::auth::tokens::create(&options.auth.data_dir, role, "seat", chrono::Utc::now())
            .expect("a token");
    let router = router_with_state(
        AppState::with_parts(
            &options,
            Arc::new(fake),
            Arc::default(),
            Arc::default(),
            Arc::default(),
        )
        .with_model_trust(trust),
    );
    let name = format!("token:{}", token.id);
    (
        with_token(router, format!("Bearer {}", secret.expose())),
        name,
    )
}

fn request(method: &str, path: &str, body: String) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .expect("a request")
}

/// `method path` with `body`, as `role`: the answer, what the backend published, and the
/// token's user name.
async fn as_role(
    role: app::Role,
    trust: ModelTrust,
    method: &str,
    path: &str,
    body: String,
) -> (StatusCode, Value, Published, String) {
    let fake = Fake::answering(Ok(prediction()));
    let published = fake.published.clone();
    let (router, name) = router_as(role, fake, trust);
    let (status, body) = answer(router, request(method, path, body)).await;
    let published = published.lock().unwrap().clone();
    (status, body, published, name)
}

#[tokio::test]
async fn an_admin_publishes_in_the_seat_asked_for_and_is_named_as_who() {
    let model = trained_model();
    for (path, seat) in [
        ("/api/v1/models", Seat::Champion),
        ("/api/v1/models?seat=champion", Seat::Champion),
        ("/api/v1/models?seat=challenger", Seat::Challenger),
    ] {
        let (status, body, published, name) = as_role(
            app::Role::Admin,
            ModelTrust::default(),
            "POST",
            path,
            model.to_json(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["seat"], seat.name(), "{path}");
        assert_eq!(body["version"], model.version.as_str());
        assert_eq!(published, [(Some(model.clone()), seat, name)], "{path}");
    }
    let (status, body, published, name) = as_role(
        app::Role::Admin,
        ModelTrust::default(),
        "DELETE",
        "/api/v1/models?seat=challenger",
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(published, [(None, Seat::Challenger, name)]);
}

#[tokio::test]
async fn an_unknown_seat_or_a_withdrawn_champion_is_refused_and_nothing_changes() {
    let model = trained_model();
    for (method, path, says) in [
        ("POST", "/api/v1/models?seat=shadow", "unknown seat"),
        ("POST", "/api/v1/models?seat=Challenger", "unknown seat"),
        ("POST", "/api/v1/models?seat=", "unknown seat"),
        (
            "POST",
            "/api/v1/models?seat=challenger&seat=champion",
            "seat",
        ),
        ("DELETE", "/api/v1/models", "name the seat"),
        (
            "DELETE",
            "/api/v1/models?seat=champion",
            "publish another champion",
        ),
        ("DELETE", "/api/v1/models?seat=both", "unknown seat"),
    ] {
        let (status, body, published, _) = as_role(
            app::Role::Admin,
            ModelTrust::default(),
            method,
            path,
            model.to_json(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{method} {path}: {body}"
        );
        assert!(published.is_empty(), "{method} {path}");
    }
    // A hostile seat name is cut before it is quoted back.
    let long = format!("/api/v1/models?seat={}", "x".repeat(5000));
    let (status, body, _, _) = as_role(
        app::Role::Admin,
        ModelTrust::default(),
        "POST",
        &long,
        model.to_json(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().len() < 300, "{body}");
}

#[tokio::test]
async fn a_viewer_or_an_analyst_can_neither_publish_nor_withdraw_nor_read_the_lineup() {
    let model = trained_model();
    for role in [app::Role::Viewer, app::Role::Analyst] {
        for (method, path) in [
            ("POST", "/api/v1/models"),
            ("POST", "/api/v1/models?seat=challenger"),
            ("DELETE", "/api/v1/models?seat=challenger"),
            ("GET", "/api/v1/models"),
        ] {
            let (status, body, published, _) =
                as_role(role, ModelTrust::default(), method, path, model.to_json()).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{role} {method} {path}: {body}"
            );
            assert!(
                body["error"].as_str().unwrap().contains("admin"),
                "{role}: {body}"
            );
            assert!(published.is_empty(), "{role} {method} {path}");
        }
    }
}

#[tokio::test]
async fn a_tampered_or_wrongly_signed_model_is_refused_for_either_seat() {
    let mut signed = trained_model();
    signed.sign(&key(1));
    let mut weight = signed.clone();
    weight.features[0].coefficient += 0.5;
    let mut rehashed = signed.clone();
    rehashed.threshold = 0.01;
    rehashed.integrity.sha256 = rehashed.content_hash();
    let mut other_key = trained_model();
    other_key.sign(&key(2));
    for seat in ["champion", "challenger"] {
        let path = format!("/api/v1/models?seat={seat}");
        for (what, body, reason) in [
            (
                "a weight changed",
                weight.to_json(),
                "changed after training",
            ),
            ("edited and rehashed", rehashed.to_json(), "does not verify"),
            ("another key", other_key.to_json(), "does not verify"),
            ("unsigned", trained_model().to_json(), "not signed"),
            (
                "not a model",
                "{\"seat\": \"challenger\"}".into(),
                "not a churn model",
            ),
        ] {
            let (status, answer, published, _) = as_role(
                app::Role::Admin,
                ModelTrust::signed_by(key(1)),
                "POST",
                &path,
                body,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{seat}, {what}: {answer}"
            );
            assert!(
                answer["error"].as_str().unwrap().contains(reason),
                "{seat}, {what}: {answer}"
            );
            assert!(published.is_empty(), "{seat}, {what}");
        }
        let (status, _, published, _) = as_role(
            app::Role::Admin,
            ModelTrust::signed_by(key(1)),
            "POST",
            &path,
            signed.to_json(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{seat}: the signed one passes");
        assert_eq!(published.len(), 1);
    }
}

#[tokio::test]
async fn an_admin_reads_the_lifecycle_the_follower_holds() {
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(LifecycleView::default()));
    let fake = Fake {
        lifecycle: rx,
        ..Fake::answering(Ok(prediction()))
    };
    let (router, _) = router_as(app::Role::Admin, fake, ModelTrust::default());
    let view = LifecycleView {
        champion: Some("m-a".into()),
        challenger: Some("m-b".into()),
        ..Default::default()
    };
    tx.send(Arc::new(view.clone())).unwrap();
    let (status, body) = answer(router, request("GET", "/api/v1/models", String::new())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_value::<LifecycleView>(body).unwrap(), view);
}
