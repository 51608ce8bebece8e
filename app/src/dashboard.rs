//! The dashboard: what the stream is doing, from the stats topic, pushed live.
//!
//! Two pushed cards (`pushed`), rendered on the server (`render`) whenever fresh analytics
//! arrive: the body (figures, charts, segments, quality; the same for every role) and the
//! riskiest customers (names: analysts and admins only). Hydrated, their views and the
//! analytics' decoders cost the bundle 15 KiB gzipped. The riskiest list is swapped inside its
//! scroll container, which stays put: a user scrolling it is not thrown back to the top.

use leptos::prelude::*;

use crate::access::{signed_in_user, Role};
use crate::lifecycle::{DuelCard, HistoryCard};
use crate::live::LiveState;
use crate::pushed::{markup, Card};

#[cfg(feature = "ssr")]
pub(crate) mod render;
#[cfg(feature = "ssr")]
pub use render::cards;

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
        <div class="dash-body" inner_html=markup(live, Card::Dashboard)></div>
        {names.then(|| view! {
            <section class="card" aria-labelledby="riskiest-title">
                <h2 id="riskiest-title">"Riskiest recent customers"</h2>
                <div class="feed-wrap" inner_html=markup(live, Card::Riskiest)></div>
            </section>
        })}
        <DuelCard/>
        <HistoryCard/>
    }
}
