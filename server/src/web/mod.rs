//! The web server: server-side rendering of the Leptos app, its server functions, the static
//! bundle (WASM, JS, CSS) built by scripts/build.sh, and the operational routes.

mod errors;
pub mod guard;
pub mod listener;
#[cfg(test)]
mod network_tests;
mod state;
#[cfg(test)]
pub(crate) mod tests;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use app::{shell, BackendHandle, CurrentUser, Page, PredictReply, Seat};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Json, Router};
use leptos::prelude::*;
use leptos_axum::{AxumRouteListing, LeptosRoutes};
use leptos_router::{Method, SsrMode};
use model::lifecycle::LifecycleView;
use tokio_util::sync::CancellationToken;

pub use errors::{status_of, ApiError};
pub use guard::GuardOptions;
pub use listener::{ConnectionLimits, TlsFiles};
pub use state::AppState;

use crate::auth::{self, AuthOptions};
use crate::backend::PipelineBackend;
use crate::live_feed::LiveFeed;
use crate::metrics::{self, PipelineMetrics};
use crate::model_store::ModelTrust;

#[derive(Debug, Clone)]
pub struct WebOptions {
    pub addr: SocketAddr,
    /// Where the built site lives: pkg/churn.js, pkg/churn_bg.wasm, pkg/churn.css, assets.
    pub site_root: PathBuf,
    /// Whether this process runs a scorer, which readiness then requires to hold partitions.
    pub runs_scorer: bool,
    /// What the server refuses before any handler: foreign hosts and origins, floods.
    pub guard: GuardOptions,
    /// HTTPS when set.
    pub tls: Option<TlsFiles>,
    pub connections: ConnectionLimits,
    /// Who may see what: accounts, sessions, tokens, the sign-on proxy.
    pub auth: AuthOptions,
}

impl WebOptions {
    /// Plain HTTP with the default protections, accounts in `auth`.
    pub fn new(
        addr: SocketAddr,
        site_root: PathBuf,
        runs_scorer: bool,
        auth: AuthOptions,
    ) -> WebOptions {
        WebOptions {
            addr,
            site_root,
            runs_scorer,
            guard: GuardOptions::default(),
            tls: None,
            connections: ConnectionLimits::default(),
            auth,
        }
    }
}

#[derive(serde::Deserialize)]
struct ExportQuery {
    minutes: Option<f64>,
}

/// Largest request body accepted: the scorer's own limit on a record (a customer record is a
/// few hundred bytes).
pub const MAX_BODY_BYTES: usize = model::record::MAX_RECORD_BYTES;

/// `POST /api/v1/predict`: the form's path for programs — a JSON record in, a JSON prediction out.
async fn predict_json(
    State(backend): State<BackendHandle>,
    body: Result<Json<model::RawCustomer>, JsonRejection>,
) -> Result<Json<PredictReply>, ApiError> {
    let Json(record) = body?;
    Ok(Json(app::predict_record(backend.0.as_ref(), record).await?))
}

/// Largest model file `POST /api/v1/models` accepts: a model is a few KiB, far more than a
/// record, so this route has its own limit.
pub const MAX_MODEL_BYTES: usize = 1024 * 1024;

/// `?seat=champion|challenger` on `/api/v1/models`.
#[derive(serde::Deserialize)]
struct SeatQuery {
    seat: Option<String>,
}

/// The seat a request names; `default` when it names none (`None`: it must name one).
fn seat_of(
    query: Result<Query<SeatQuery>, QueryRejection>,
    default: Option<Seat>,
) -> Result<Seat, ApiError> {
    let text = query
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "{}: use ?seat=champion or ?seat=challenger",
                e.body_text()
            ))
        })?
        .0
        .seat;
    match (text.as_deref(), default) {
        (None, Some(seat)) => Ok(seat),
        (None, None) => Err(ApiError::BadRequest(
            "name the seat: ?seat=challenger".to_owned(),
        )),
        (Some(text), _) => Seat::parse(text).ok_or_else(|| {
            let text = model::record::truncate_utf8(text, 40);
            ApiError::BadRequest(format!(
                "unknown seat {text:?}: use ?seat=champion (the default) or ?seat=challenger"
            ))
        }),
    }
}

/// `POST /api/v1/models[?seat=challenger]` (for admins): a model file's JSON in, verified
/// exactly as the scorers will verify it (content hash, and signature when this server has a
/// signing key), then published to the models topic as champion (the default) or challenger,
/// recorded as done by the signed-in user. 200 with the version and seat; 422 with the reason
/// when refused; 400 for an unknown seat.
async fn publish_model(
    State(backend): State<BackendHandle>,
    State(trust): State<ModelTrust>,
    Extension(user): Extension<CurrentUser>,
    query: Result<Query<SeatQuery>, QueryRejection>,
    body: String,
) -> Result<Json<serde_json::Value>, ApiError> {
    let seat = seat_of(query, Some(Seat::Champion))?;
    let model = trust.verify(&body).map_err(|refusal| {
        let reason = refusal.to_string();
        // Cut: the reason may quote the upload (its version, a value of the wrong type).
        let reason = model::record::truncate_utf8(&reason, 300).into_owned();
        tracing::warn!(by = %user.name, "refused an uploaded model: {reason}");
        ApiError::ModelRefused(reason)
    })?;
    let version = model.version.clone();
    backend
        .0
        .publish_model(model, seat, user.name.clone())
        .await?;
    tracing::info!(%version, seat = seat.name(), by = %user.name, "published an uploaded model");
    Ok(Json(
        serde_json::json!({ "version": version, "seat": seat.name() }),
    ))
}

/// `DELETE /api/v1/models?seat=challenger` (for admins): withdraws the challenger. The champion
/// cannot be withdrawn (scorers need a model): publish another one instead.
async fn withdraw_model(
    State(backend): State<BackendHandle>,
    Extension(user): Extension<CurrentUser>,
    query: Result<Query<SeatQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match seat_of(query, None)? {
        Seat::Champion => Err(ApiError::BadRequest(
            "the champion cannot be withdrawn (the scorers need a model): publish another champion instead".to_owned(),
        )),
        Seat::Challenger => {
            backend.0.withdraw_challenger(user.name.clone()).await?;
            tracing::info!(by = %user.name, "withdrew the challenger");
            Ok(Json(serde_json::json!({ "withdrawn": "challenger" })))
        }
    }
}

/// `GET /api/v1/models` (for admins): the lifecycle as the app shows it — champion, challenger,
/// the duel and the history — as JSON.
async fn lifecycle(State(backend): State<BackendHandle>) -> Json<LifecycleView> {
    let view = backend.0.lifecycle().borrow().clone();
    Json(LifecycleView::clone(&view))
}

/// `GET /metrics`: the Prometheus text exposition.
async fn prometheus(State(metrics): State<Arc<PipelineMetrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics.render(),
    )
}

/// `GET /readyz`: 200 when ready, 503 otherwise, with what readiness knows as JSON.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let readiness = state.health.readiness(state.runs_scorer);
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}

/// `GET /export/predictions.csv?minutes=5`: the predictions received lately.
async fn export_csv(
    State(live): State<Arc<LiveFeed>>,
    Query(q): Query<ExportQuery>,
) -> impl IntoResponse {
    let minutes = q
        .minutes
        .filter(|m| m.is_finite() && *m > 0.0)
        .unwrap_or(5.0);
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"predictions-{minutes}min.csv\""),
            ),
        ],
        live.export_csv(minutes),
    )
}

/// Operational routes: Prometheus metrics, liveness, readiness, CSV export, and the JSON API.
/// A table, so that a test can check that the route policy (`auth::policy`) names each one.
fn ops_routes() -> [(&'static str, MethodRouter<AppState>); 5] {
    [
        ("/api/v1/predict", post(predict_json)),
        ("/healthz", get(|| async { "ok" })),
        ("/metrics", get(prometheus)),
        ("/readyz", get(readyz)),
        ("/export/predictions.csv", get(export_csv)),
    ]
}

/// Every path the router serves besides the pages and the server functions.
#[cfg(test)]
pub(crate) fn route_paths() -> Vec<&'static str> {
    let ops = ops_routes().map(|(path, _)| path);
    let sign_in = auth::login::routes::<AppState>().map(|(path, _)| path);
    ops.into_iter()
        .chain(sign_in)
        .chain([MODEL_UPLOAD_PATH])
        .collect()
}

const MODEL_UPLOAD_PATH: &str = "/api/v1/models";

/// Operational routes with their own body limit, outside the router's small one.
fn model_upload_routes() -> Router<AppState> {
    Router::new()
        .route(
            MODEL_UPLOAD_PATH,
            post(publish_model).delete(withdraw_model).get(lifecycle),
        )
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_MODEL_BYTES,
        ))
}

/// The web app on the running pipeline.
pub fn router(options: &WebOptions, pipeline: Arc<PipelineBackend>) -> Router {
    router_with_state(AppState::new(options, pipeline))
}

/// The web app on any state: every route, the server functions, and the static files.
pub fn router_with_state(state: AppState) -> Router {
    // The app has no client-side router (it keeps the bundle small): its pages are listed here.
    let routes = Page::ROUTES
        .iter()
        .map(|(path, _)| {
            AxumRouteListing::new(path.to_string(), SsrMode::default(), [Method::Get], vec![])
        })
        .collect();
    let backend = state.backend.clone();
    let context = move || provide_context(backend.clone());
    let own_routes = ops_routes().into_iter().chain(auth::login::routes());
    let routes = own_routes
        .fold(Router::new(), |router, (path, route)| {
            router.route(path, route)
        })
        .leptos_routes_with_context(&state, routes, context, {
            let leptos_options = state.leptos.clone();
            move || shell(leptos_options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::map_response(errors::server_fn_status))
        // Oversized bodies get 413 before any handler reads them.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .merge(model_upload_routes());
    // From the inside out: the per-client limits (per user, so after the next), who is asking
    // and whether they may (every request but static files and sign-in needs a user), then the
    // checks that need no identity (origin, host, timeout, headers).
    let routes = guard::inner_layers(routes, &state.guard).layer(
        axum::middleware::from_fn_with_state(state.auth.clone(), auth::check::require_access),
    );
    // A panic in a handler (a bug) answers 500 for that request, with the security headers;
    // the server goes on.
    let routes = routes.layer(tower_http::catch_panic::CatchPanicLayer::new());
    guard::outer_layers(routes, &state.guard).with_state(state)
}

/// Takes the web app's address, so that a busy port fails the command before anything starts.
pub async fn bind(options: &WebOptions) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(options.addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: pick another address with --addr",
                options.addr
            )
        })
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    options: WebOptions,
    pipeline: Arc<PipelineBackend>,
    shutdown: CancellationToken,
) -> Result<()> {
    if !options
        .site_root
        .join("pkg")
        .join(format!("{}_bg.wasm", app::OUTPUT_NAME))
        .is_file()
    {
        tracing::warn!(site_root = %options.site_root.display(),
            "the browser bundle is missing: the page will render but not hydrate; build it with scripts/build.sh");
    }
    let app = router(&options, pipeline);
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!(
        "Customer churn is up: open {scheme}://{}",
        listener.local_addr()?
    );
    listener::serve(
        listener,
        app,
        options.tls.as_ref(),
        &options.connections,
        shutdown,
    )
    .await
}

/// `/metrics` alone on its own listener (`--metrics-addr`), open there: for an internal
/// interface that only the scraper reaches.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<PipelineMetrics>,
    shutdown: CancellationToken,
) -> Result<()> {
    let app = Router::new()
        .route("/metrics", get(prometheus))
        .with_state(metrics);
    let stop = shutdown.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .into_future();
    // A scraper holding a half-sent request must not hold the stop: 2 s, then it is dropped.
    tokio::select! {
        served = served => served.context("metrics server failed"),
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        } => Ok(()),
    }
}
