//! The churn web app: Leptos components (rendered on the server, hydrated in the browser) and
//! the server functions they call.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::StaticSegment;
use serde::{Deserialize, Serialize};

/// The bundle's file names under /pkg (churn.js, churn_bg.wasm, churn.css).
pub const OUTPUT_NAME: &str = "churn";

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
}

/// How the server answers status questions; provided as context by the server binary.
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct StatusSource(pub std::sync::Arc<dyn Fn() -> PipelineStatus + Send + Sync>);

#[server]
pub async fn get_pipeline_status() -> Result<PipelineStatus, ServerFnError> {
    let source = use_context::<StatusSource>()
        .ok_or_else(|| ServerFnError::new("the pipeline is not running in this server"))?;
    Ok((source.0)())
}

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="churn" href=format!("/pkg/{OUTPUT_NAME}.css")/>
        <Title text="Customer churn — live"/>
        <Router>
            <header class="topbar">
                <span class="brand">"Customer churn"</span>
                <span class="tagline">"real-time churn prediction on Kafka"</span>
            </header>
            <main>
                <Routes fallback=|| view! { <p>"Page not found."</p> }>
                    <Route path=StaticSegment("") view=HomePage/>
                </Routes>
            </main>
        </Router>
    }
}

#[component]
fn HomePage() -> impl IntoView {
    let refresh = RwSignal::new(0u32);
    let status = Resource::new(move || refresh.get(), |_| get_pipeline_status());
    view! {
        <section class="card">
            <h1>"Pipeline"</h1>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || status.get().map(|result| match result {
                    Ok(s) => view! { <StatusView status=s/> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                })}
            </Transition>
            <button id="refresh" on:click=move |_| refresh.update(|n| *n += 1)>"Refresh"</button>
        </section>
    }
}

#[component]
fn StatusView(status: PipelineStatus) -> impl IntoView {
    view! {
        <dl class="status">
            <dt>"Brokers"</dt><dd>{status.brokers}</dd>
            <dt>"Records in"</dt><dd>{status.input_topic}</dd>
            <dt>"Predictions out"</dt><dd>{status.predictions_topic}</dd>
            <dt>"Model"</dt><dd class="model-version">{status.model_version}</dd>
            <dt>"Scored"</dt><dd class="scored">{status.scored}</dd>
            <dt>"Dead-lettered"</dt><dd>{status.dead_lettered}</dd>
        </dl>
    }
}
