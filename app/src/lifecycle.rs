//! The model lifecycle on screen, for every signed-in user: the live duel of champion and
//! challenger, and the history of publications, promotions and rollbacks.
//!
//! The server renders both cards' insides (`render`) and pushes the markup over the live feed
//! whenever the lifecycle changes; the browser swaps it in. So the browser bundle carries
//! neither the lifecycle's types and their JSON decoders nor these views and their words
//! (hydrated, they cost it 18 KiB gzipped).

use leptos::prelude::*;
#[cfg(feature = "ssr")]
use model::lifecycle::LifecycleView;
use serde::{Deserialize, Serialize};

use crate::live::LiveState;

#[cfg(feature = "ssr")]
mod render;

/// The lifecycle as the browser receives it: ready-made cards.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LifecycleCards {
    /// The seated challenger's version, if any (the Models page offers to withdraw it).
    pub challenger: Option<String>,
    /// Inner HTML of the duel card.
    pub duel: String,
    /// Inner HTML of the history card.
    pub history: String,
}

impl LifecycleCards {
    /// Both cards for `lifecycle`, rendered.
    #[cfg(feature = "ssr")]
    pub fn of(lifecycle: &LifecycleView) -> Self {
        LifecycleCards {
            challenger: lifecycle.challenger.clone(),
            duel: render::inside(Card::Duel, Some(lifecycle)),
            history: render::inside(Card::History, Some(lifecycle)),
        }
    }
}

/// Which lifecycle card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    Duel,
    History,
}

/// The card's inside as the live feed last sent it, or before it has sent any.
fn inside(live: LiveState, card: Card) -> String {
    live.lifecycle.with(|cards| match (cards, card) {
        (Some(cards), Card::Duel) => cards.duel.clone(),
        (Some(cards), Card::History) => cards.history.clone(),
        (None, _) => before_the_feed(card),
    })
}

/// Only the server renders the cards before the feed: hydration keeps the server's markup (it
/// does not rewrite inner HTML), and the browser only ever replaces it with the feed's.
fn before_the_feed(card: Card) -> String {
    #[cfg(feature = "ssr")]
    return render::inside(card, None);
    #[cfg(not(feature = "ssr"))]
    {
        let _ = card;
        String::new()
    }
}

/// The live duel, or why there is none.
#[component]
pub fn DuelCard() -> impl IntoView {
    let live = expect_context::<LiveState>();
    view! {
        <section class="card duel" id="duel" aria-labelledby="duel-title"
            inner_html=move || inside(live, Card::Duel)></section>
    }
}

/// Who changed the lineup, when, and on what evidence; newest first.
#[component]
pub fn HistoryCard() -> impl IntoView {
    let live = expect_context::<LiveState>();
    view! {
        <section class="card" aria-labelledby="history-title"
            inner_html=move || inside(live, Card::History)></section>
    }
}
