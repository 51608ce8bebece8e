//! The live view: predictions streaming through the pipeline, pushed over a websocket server
//! function, and a chart of throughput and churn rate over the last minutes.

use std::collections::VecDeque;

use leptos::prelude::*;
use model::format::percent;
use model::Prediction;

#[cfg(feature = "hydrate")]
use crate::api::LiveEvent;
use crate::api::SecondStats;
use crate::chart::{Column, RateChart};
use crate::pushed::Card;

/// Rows kept in the feed.
#[cfg(feature = "hydrate")]
const FEED_ROWS: usize = 50;
/// Seconds kept for the chart.
const CHART_SECONDS: usize = 180;

/// The live stream as the browser holds it; one websocket serves every page.
#[derive(Clone, Copy)]
pub struct LiveState {
    feed: RwSignal<VecDeque<Prediction>>,
    seconds: RwSignal<VecDeque<SecondStats>>,
    paused: RwSignal<bool>,
    missed: RwSignal<u64>,
    connected: RwSignal<bool>,
    received: RwSignal<u64>,
    /// Each pushed card's inner HTML as the server last sent it, by `Card` (`card`).
    cards: [RwSignal<Option<String>>; Card::ALL.len()],
    /// The seated challenger's version, as the models topic says.
    pub challenger: RwSignal<Option<String>>,
}

impl LiveState {
    pub fn new() -> Self {
        LiveState {
            feed: RwSignal::new(VecDeque::new()),
            seconds: RwSignal::new(VecDeque::new()),
            paused: RwSignal::new(false),
            missed: RwSignal::new(0),
            connected: RwSignal::new(false),
            received: RwSignal::new(0),
            cards: Card::ALL.map(|_| RwSignal::new(None)),
            challenger: RwSignal::new(None),
        }
    }

    /// `card`'s inner HTML as the server last sent it (`None`: not yet).
    pub fn card(&self, card: Card) -> RwSignal<Option<String>> {
        self.cards[card as usize]
    }

    /// Opens the live connection in the browser (nothing to do on the server).
    pub fn connect(self) {
        #[cfg(feature = "hydrate")]
        connect(self);
    }

    pub fn connected(&self) -> bool {
        self.connected.get()
    }

    #[cfg(feature = "hydrate")]
    fn apply(&self, event: LiveEvent) {
        match event {
            LiveEvent::Snapshot { recent, seconds } => {
                self.seconds.set(
                    seconds
                        .into_iter()
                        .rev()
                        .take(CHART_SECONDS)
                        .rev()
                        .collect(),
                );
                if !self.paused.get_untracked() {
                    self.feed
                        .set(recent.into_iter().rev().take(FEED_ROWS).collect());
                }
            }
            LiveEvent::Prediction(prediction) => {
                self.received.update(|n| *n += 1);
                if self.paused.get_untracked() {
                    self.missed.update(|n| *n += 1);
                } else {
                    self.feed.update(|feed| {
                        feed.push_front(*prediction);
                        feed.truncate(FEED_ROWS);
                    });
                }
            }
            LiveEvent::Second(second) => self.seconds.update(|s| {
                s.push_back(second);
                while s.len() > CHART_SECONDS {
                    s.pop_front();
                }
            }),
            LiveEvent::Card(card, markup) => {
                // Unchanged markup is not swapped: the user's scroll position and selection stay.
                let slot = self.card(card);
                if slot.with_untracked(|now| now.as_deref() != Some(&*markup)) {
                    slot.set(Some(markup.to_string()));
                }
            }
            LiveEvent::Challenger(version) => self.challenger.set(version),
        }
    }
}

#[cfg(feature = "hydrate")]
async fn sleep_ms(ms: u64) {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    set_timeout(
        move || {
            let _ = tx.send(());
        },
        std::time::Duration::from_millis(ms),
    );
    let _ = rx.await;
}

/// Keeps a websocket open, reconnecting with a short back-off whenever it drops.
#[cfg(feature = "hydrate")]
fn connect(state: LiveState) {
    use futures::StreamExt;
    leptos::task::spawn_local(async move {
        loop {
            // The sender stays alive for the whole connection: dropping it would close the socket.
            let (_keep_open, input) =
                futures::channel::mpsc::channel::<Result<(), ServerFnError>>(1);
            if let Ok(mut events) = crate::api::live_feed(input.into()).await {
                state.connected.set(true);
                while let Some(Ok(event)) = events.next().await {
                    state.apply(event);
                }
            }
            state.connected.set(false);
            sleep_ms(1000).await;
        }
    });
}

pub(crate) fn time_of(rfc3339: &str) -> String {
    rfc3339.get(11..19).unwrap_or(rfc3339).to_owned()
}

#[component]
pub fn LivePanel() -> impl IntoView {
    let state = expect_context::<LiveState>();

    let toggle = move |_| {
        state.paused.update(|p| *p = !*p);
        if !state.paused.get_untracked() {
            state.missed.set(0);
        }
    };
    view! {
        <section class="card live" aria-labelledby="live-title">
            <div class="card-head">
                <h2 id="live-title">"Live predictions"</h2>
                <span class="conn" class:on=move || state.connected.get()>
                    {move || if state.connected.get() { "● live" } else { "○ connecting…" }}
                </span>
                <button type="button" id="pause" class="secondary" on:click=toggle
                    aria-pressed=move || state.paused.get().to_string()>
                    {move || if state.paused.get() { "Resume" } else { "Pause" }}
                </button>
            </div>
            <Chart seconds=state.seconds/>
            <p class="feed-note">
                {move || if state.paused.get() {
                    format!("Paused — {} new predictions not shown", state.missed.get())
                } else {
                    format!("{} predictions received, newest first", state.received.get())
                }}
            </p>
            <div class="feed-wrap">
                <table class="feed" id="feed">
                    <thead><tr>
                        <th>"Time"</th><th>"Customer"</th><th>"Churn risk"</th><th>"Top factor"</th><th>"Model"</th>
                    </tr></thead>
                    <tbody>
                        <For each=move || state.feed.get() key=|p| (p.id.clone(), p.scored_at.clone(), p.model_version.clone()) let:p>
                            <tr class:risk=p.churn>
                                <td class="num">{time_of(&p.scored_at)}</td>
                                <td>{p.name.clone()}</td>
                                <td>
                                    <span class="minibar"><span style=format!("width:{}", percent(p.churn_probability, 1))></span></span>
                                    <span class="num">{percent(p.churn_probability, 0)}</span>
                                </td>
                                <td class="factor">{p.top_factors.first().map(|f| f.describe()).unwrap_or_default()}</td>
                                <td class="mono">{p.model_version.clone()}</td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </div>
        </section>
    }
}

/// Throughput bars and churn-rate line over the last minutes, drawn as SVG.
#[component]
fn Chart(seconds: RwSignal<VecDeque<SecondStats>>) -> impl IntoView {
    let drawing = move || {
        let data = seconds.get();
        // Churn rate per second, smoothed over 10 s so one customer does not swing the line.
        let columns: Vec<Column> = (0..data.len())
            .map(|i| {
                let (p, c) = data
                    .range(i.saturating_sub(9)..=i)
                    .fold((0, 0), |(p, c), s| (p + s.predictions, c + s.churners));
                Column {
                    count: data[i].predictions,
                    rate: (p > 0).then(|| c as f64 / p as f64),
                }
            })
            .collect();
        let total: u64 = data.iter().rev().take(60).map(|s| s.predictions).sum();
        let churned: u64 = data.iter().rev().take(60).map(|s| s.churners).sum();
        let rate = if total > 0 {
            churned as f64 / total as f64
        } else {
            0.0
        };
        let seconds_covered = data.len().clamp(1, 60) as f64;
        view! {
            <RateChart columns=columns slots=CHART_SECONDS id="live-chart"
                aria_label=format!("Throughput and churn rate over the last {CHART_SECONDS} seconds")
                max_label=Box::new(|max| format!("{max:.0}/s max"))
                rate_label="churn rate (10 s avg) 0–100%" start_label=format!("−{CHART_SECONDS} s")/>
            <div class="kpis">
                <div><span class="kpi" id="kpi-throughput">{format!("{:.1}", total as f64 / seconds_covered)}</span>" predictions/s (last minute)"</div>
                <div><span class="kpi" id="kpi-rate">{percent(rate, 0)}</span>" predicted to churn (last minute)"</div>
            </div>
        }
    };
    view! { <div class="chart-wrap">{drawing}</div> }
}
