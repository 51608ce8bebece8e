//! The router on a fake backend: every status the web layer answers, without Kafka, a broker or
//! a socket (`oneshot`), in milliseconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use app::{Backend, FeedEvent, PipelineStatus, PredictError};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use leptos::server_fn::ServerFn;
use model::{Customer, Prediction};
use serde_json::Value;
use tower::ServiceExt;

use super::{router_with_state, AppState, WebOptions, MAX_BODY_BYTES};
use crate::health::Health;
use crate::live_feed::LiveFeed;

/// A pipeline that answers every submission the same way.
pub(crate) struct Fake(pub(crate) Result<Prediction, PredictError>);

impl Backend for Fake {
    fn status(&self) -> PipelineStatus {
        PipelineStatus::default()
    }

    fn predict(
        &self,
        _: Customer,
    ) -> Pin<Box<dyn Future<Output = Result<Prediction, PredictError>> + Send>> {
        let answer = self.0.clone();
        Box::pin(async move { answer })
    }

    fn feed(&self) -> (FeedEvent, tokio::sync::broadcast::Receiver<FeedEvent>) {
        LiveFeed::default().subscribe(self.status())
    }

    fn sample(&self) -> Customer {
        let options = model::synth::GenerateOptions {
            rows: 1,
            seed: 1,
            messy_fraction: 0.0,
        };
        model::synth::generate_customers(&options).remove(0)
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
    let data_dir = tempfile::tempdir().expect("a temp dir").keep();
    let (_, token) =
        crate::auth::tokens::create(&data_dir, app::Role::Admin, "tests", chrono::Utc::now())
            .expect("a token");
    let options = WebOptions {
        addr: ([127, 0, 0, 1], 0).into(),
        site_root: std::env::temp_dir(),
        runs_scorer,
        auth: crate::auth::AuthOptions::new(data_dir),
    };
    let bearer = format!("Bearer {}", token.expose());
    router_with_state(AppState::with_parts(
        &options,
        Arc::new(Fake(answer)),
        Arc::default(),
        health,
        Arc::default(),
    ))
    .layer(axum::middleware::map_request(
        move |mut request: Request<Body>| {
            let bearer = header::HeaderValue::from_str(&bearer).expect("a header");
            async move {
                request.headers_mut().insert(header::AUTHORIZATION, bearer);
                request
            }
        },
    ))
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
    health.record_failure("live feed reader ended unexpectedly".into());
    let (status, body) = answer(router, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body["failed_tasks"][0],
        "live feed reader ended unexpectedly"
    );
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
