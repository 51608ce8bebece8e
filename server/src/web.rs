//! The web server: server-side rendering of the Leptos app, its server functions, and the
//! static bundle (WASM, JS, CSS) built by scripts/build.sh.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use app::{shell, App, BackendHandle, OUTPUT_NAME};
use axum::routing::get;
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct WebOptions {
    pub addr: SocketAddr,
    /// Where the built site lives: pkg/churn.js, pkg/churn_bg.wasm, pkg/churn.css, assets.
    pub site_root: PathBuf,
}

pub fn router(options: &WebOptions, backend: BackendHandle) -> Router {
    let leptos_options = LeptosOptions::builder()
        .output_name(OUTPUT_NAME)
        .site_root(options.site_root.to_string_lossy().as_ref())
        .site_pkg_dir("pkg")
        .site_addr(options.addr)
        .build();
    let routes = generate_route_list(App);
    let context = move || provide_context(backend.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .leptos_routes_with_context(&leptos_options, routes, context, {
            let leptos_options = leptos_options.clone();
            move || shell(leptos_options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(leptos_options)
}

pub async fn serve(options: WebOptions, backend: BackendHandle, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    if !options.site_root.join("pkg").join(format!("{OUTPUT_NAME}_bg.wasm")).is_file() {
        tracing::warn!(site_root = %options.site_root.display(),
            "the browser bundle is missing: the page will render but not hydrate; build it with scripts/build.sh");
    }
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .with_context(|| format!("cannot listen on {}: pick another address with --addr", options.addr))?;
    let app = router(&options, backend);
    tracing::info!("web app on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
        .context("web server failed")
}
