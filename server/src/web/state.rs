//! What the web server's handlers need, in one `AppState`: each handler takes only its part
//! (`State<Arc<Health>>`, `State<BackendHandle>`, ...) through `FromRef`.

use std::sync::Arc;

use app::{Backend, BackendHandle, OUTPUT_NAME};
use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;

use super::guard::Guard;
use super::WebOptions;
use crate::auth::Auth;
use crate::backend::PipelineBackend;
use crate::health::Health;
use crate::live_feed::LiveFeed;
use crate::metrics::PipelineMetrics;
use crate::model_store::ModelTrust;

#[derive(Clone)]
pub struct AppState {
    /// The pipeline, for the JSON API and the Leptos app's server functions.
    pub backend: BackendHandle,
    /// The prediction stream's recent past, for the CSV export.
    pub live: Arc<LiveFeed>,
    pub health: Arc<Health>,
    pub metrics: Arc<PipelineMetrics>,
    pub leptos: LeptosOptions,
    /// Whether this process runs a scorer, which readiness then requires to hold partitions.
    pub runs_scorer: bool,
    /// The checks before any handler, and the per-client counters.
    pub guard: Guard,
    /// What an uploaded model must prove: what the scorers require.
    pub model_trust: ModelTrust,
    /// Accounts, tokens, sessions: who may see what.
    pub auth: Arc<Auth>,
}

impl AppState {
    /// The state of a web server on the running pipeline.
    pub fn new(options: &WebOptions, pipeline: Arc<PipelineBackend>) -> AppState {
        let (live, health, metrics) = (
            pipeline.live().clone(),
            pipeline.health().clone(),
            pipeline.metrics().clone(),
        );
        let trust = pipeline.model_trust().clone();
        AppState::with_parts(options, pipeline, live, health, metrics).with_model_trust(trust)
    }

    /// The state with `trust` for uploaded models (the default checks the content hash only).
    pub fn with_model_trust(mut self, trust: ModelTrust) -> AppState {
        self.model_trust = trust;
        self
    }

    /// The state from its parts: any `Backend` (the tests use one without Kafka).
    pub fn with_parts(
        options: &WebOptions,
        backend: Arc<dyn Backend>,
        live: Arc<LiveFeed>,
        health: Arc<Health>,
        metrics: Arc<PipelineMetrics>,
    ) -> AppState {
        let leptos = LeptosOptions::builder()
            .output_name(OUTPUT_NAME)
            .site_root(options.site_root.to_string_lossy().as_ref())
            .site_pkg_dir("pkg")
            .site_addr(options.addr)
            .build();
        AppState {
            backend: BackendHandle(backend),
            live,
            health,
            metrics,
            leptos,
            runs_scorer: options.runs_scorer,
            guard: Guard::new(options.guard.clone()),
            model_trust: ModelTrust::default(),
            auth: Arc::new(Auth::new(options.auth.clone(), &options.site_root)),
        }
    }
}

impl FromRef<AppState> for BackendHandle {
    fn from_ref(state: &AppState) -> Self {
        state.backend.clone()
    }
}

impl FromRef<AppState> for Arc<LiveFeed> {
    fn from_ref(state: &AppState) -> Self {
        state.live.clone()
    }
}

impl FromRef<AppState> for Arc<Health> {
    fn from_ref(state: &AppState) -> Self {
        state.health.clone()
    }
}

impl FromRef<AppState> for Arc<PipelineMetrics> {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

impl FromRef<AppState> for ModelTrust {
    fn from_ref(state: &AppState) -> Self {
        state.model_trust.clone()
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

impl FromRef<AppState> for Arc<Auth> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}
