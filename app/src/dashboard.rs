//! The dashboard: what the stream is doing, from the stats topic, pushed live.
//!
//! The server renders the body (`render`) for each user's role whenever fresh analytics arrive
//! and pushes the markup over the live feed; the browser swaps it in. So the browser bundle
//! carries neither the analytics' JSON decoders nor the body's views (hydrated, they cost it
//! 15 KiB gzipped).

use leptos::prelude::*;

use crate::access::{signed_in_user, Role};
use crate::lifecycle::{DuelCard, HistoryCard};
use crate::live::LiveState;

#[cfg(feature = "ssr")]
mod render;
#[cfg(feature = "ssr")]
pub use render::body;

#[component]
pub fn DashboardPage() -> impl IntoView {
    let live = expect_context::<LiveState>();
    // Customer names (the riskiest list, the CSV export) are for analysts; the server sends a
    // viewer none, and the page does not offer them.
    let names = signed_in_user().is_some_and(|user| user.can(Role::Analyst));
    view! {
        <section class="card dash-head">
            <div class="card-head">
                <h1>"Stream analytics"</h1>
                <span class="conn" class:on=move || live.connected()>
                    {move || if live.connected() { "● live" } else { "○ connecting…" }}
                </span>
            </div>
            <p class="lead">"Tumbling windows computed by the stream processor and published to Kafka; every web server shows the same numbers."</p>
            {names.then(|| view! {
                <div class="export">
                    "Download predictions as CSV: "
                    <a href="/export/predictions.csv?minutes=5" id="export-5" download="predictions-5min.csv">"last 5 minutes"</a>
                    " · "
                    <a href="/export/predictions.csv?minutes=60" download="predictions-60min.csv">"last hour"</a>
                </div>
            })}
        </section>
        // `display: contents`: the body's cards sit in the page's grid as if unwrapped.
        <div class="dash-body" inner_html=move || {
            live.dashboard.get().unwrap_or_else(|| before_the_feed(names))
        }></div>
        <DuelCard/>
        <HistoryCard/>
    }
}

/// Only the server renders the body before the feed: hydration keeps the server's markup (it
/// does not rewrite inner HTML), and the browser only ever replaces it with the feed's.
fn before_the_feed(names: bool) -> String {
    #[cfg(feature = "ssr")]
    return render::body(None, names);
    #[cfg(not(feature = "ssr"))]
    {
        let _ = names;
        String::new()
    }
}
