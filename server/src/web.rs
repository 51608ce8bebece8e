//! The web server: server-side rendering of the Leptos app, its server functions, and the
//! static bundle (WASM, JS, CSS) built by scripts/build.sh.

use tokio_util::sync::CancellationToken;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use app::{shell, BackendHandle, Page, OUTPUT_NAME};
use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::extract::rejection::JsonRejection;
use axum::routing::{get, post};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{AxumRouteListing, LeptosRoutes};
use leptos_router::{Method, SsrMode};

use crate::hub::Hub;

#[derive(Debug, Clone)]
pub struct WebOptions {
    pub addr: SocketAddr,
    /// Where the built site lives: pkg/churn.js, pkg/churn_bg.wasm, pkg/churn.css, assets.
    pub site_root: PathBuf,
    /// Whether this process runs a scorer, which readiness then requires to hold partitions.
    pub runs_scorer: bool,
}

#[derive(serde::Deserialize)]
struct ExportQuery {
    minutes: Option<f64>,
}

/// Largest request body accepted: the scorer's own limit on a record (a customer record is a
/// few hundred bytes).
pub const MAX_BODY_BYTES: usize = model::record::MAX_RECORD_BYTES;

/// `POST /api/v1/predict`: the form's path for programs — a JSON record in, a JSON prediction out.
async fn predict_json(hub: Arc<Hub>, body: Result<axum::Json<model::RawCustomer>, JsonRejection>) -> axum::response::Response {
    let record = match body {
        Ok(axum::Json(record)) => record,
        Err(rejection) => {
            let error = serde_json::json!({ "error": format!("not a customer record: {}", rejection.body_text()) });
            return (rejection.status(), axum::Json(error)).into_response();
        }
    };
    match app::predict_record(hub.as_ref(), record).await {
        Ok(reply) => axum::Json(reply).into_response(),
        Err(error) => {
            let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, axum::Json(error.to_json())).into_response()
        }
    }
}

/// Server functions answer every error with 500; a `PredictError` knows its proper status
/// (400 for an unreadable payload, 429 when busy, ...), so the response gets that one.
async fn server_fn_status(response: axum::response::Response) -> axum::response::Response {
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR || !response.headers().contains_key("serverfnerror") {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.unwrap_or_default();
    if let Ok(error) = serde_json::from_slice::<app::PredictError>(&bytes) {
        parts.status = StatusCode::from_u16(error.status()).unwrap_or(parts.status);
    }
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Operational routes: Prometheus metrics, liveness, readiness, CSV export, and the JSON API.
fn ops_routes(hub: Arc<Hub>, runs_scorer: bool) -> Router<LeptosOptions> {
    let metrics_hub = hub.clone();
    let ready_hub = hub.clone();
    let api_hub = hub.clone();
    Router::new()
        .route("/api/v1/predict", post(move |body| predict_json(api_hub.clone(), body)))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let hub = metrics_hub.clone();
                async move {
                    hub.metrics.pending_requests.store(hub.pending() as u64, Ordering::Relaxed);
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], hub.metrics.render())
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let hub = ready_hub.clone();
                async move {
                    let broker = hub.broker_ok.load(Ordering::Relaxed);
                    let assigned = !runs_scorer || hub.metrics.assigned.load(Ordering::Relaxed);
                    let model = !hub.metrics.model_version.lock().expect("model version").is_empty() || !runs_scorer;
                    let failed_tasks = hub.health.failures();
                    let body = serde_json::json!({ "broker_reachable": broker, "model_loaded": model,
                                                   "consumer_assigned": assigned, "failed_tasks": failed_tasks });
                    let ok = broker && assigned && model && failed_tasks.is_empty();
                    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                    (status, axum::Json(body))
                }
            }),
        )
        .route(
            "/export/predictions.csv",
            get(move |Query(q): Query<ExportQuery>| {
                let hub = hub.clone();
                async move {
                    let minutes = q.minutes.filter(|m| m.is_finite() && *m > 0.0).unwrap_or(5.0);
                    (
                        [
                            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"predictions-{minutes}min.csv\"")),
                        ],
                        hub.export_csv(minutes),
                    )
                        .into_response()
                }
            }),
        )
}

pub fn router(options: &WebOptions, hub: Arc<Hub>) -> Router {
    let backend = BackendHandle(hub.clone());
    let leptos_options = LeptosOptions::builder()
        .output_name(OUTPUT_NAME)
        .site_root(options.site_root.to_string_lossy().as_ref())
        .site_pkg_dir("pkg")
        .site_addr(options.addr)
        .build();
    // The app has no client-side router (it keeps the bundle small): its pages are listed here.
    let routes = Page::ROUTES
        .iter()
        .map(|(path, _)| AxumRouteListing::new(path.to_string(), SsrMode::default(), [Method::Get], vec![]))
        .collect();
    let context = move || provide_context(backend.clone());
    Router::new()
        .merge(ops_routes(hub, options.runs_scorer))
        .leptos_routes_with_context(&leptos_options, routes, context, {
            let leptos_options = leptos_options.clone();
            move || shell(leptos_options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(shell))
        .layer(axum::middleware::map_response(server_fn_status))
        // Oversized bodies get 413 before any handler reads them.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        // A panic in a handler (a bug) answers 500 for that request; the server goes on.
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(leptos_options)
}

/// Takes the web app's address, so that a busy port fails the command before anything starts.
pub async fn bind(options: &WebOptions) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(options.addr)
        .await
        .with_context(|| format!("cannot listen on {}: pick another address with --addr", options.addr))
}

pub async fn serve(listener: tokio::net::TcpListener, options: WebOptions, hub: Arc<Hub>, shutdown: CancellationToken) -> Result<()> {
    if !options.site_root.join("pkg").join(format!("{OUTPUT_NAME}_bg.wasm")).is_file() {
        tracing::warn!(site_root = %options.site_root.display(),
            "the browser bundle is missing: the page will render but not hydrate; build it with scripts/build.sh");
    }
    let app = router(&options, hub);
    println!("Customer churn is up: open http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
        })
        .await
        .context("web server failed")
}
