//! The model lifecycle on screen, for every signed-in user: the live duel of champion and
//! challenger, and the history of publications, promotions and rollbacks.
//!
//! Two pushed cards (`pushed`): the web server renders them (`render`) once per change of the
//! lifecycle (`LifecycleCards::of`) and every browser is sent the same markup. Hydrated, their
//! views, words and the lifecycle's decoders cost the bundle 18 KiB gzipped.

use leptos::prelude::*;

use crate::live::LiveState;
use crate::pushed::{markup, Card};

#[cfg(feature = "ssr")]
pub(crate) mod render;

/// The lifecycle as every signed-in user's browser is sent it, rendered once per change: it
/// names models, not customers, so every role sees the same.
#[cfg(feature = "ssr")]
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleCards {
    /// The seated challenger's version, if any (the Models page offers to withdraw it).
    pub challenger: Option<String>,
    /// The duel and history cards.
    pub cards: [crate::pushed::PushedCard; 2],
}

#[cfg(feature = "ssr")]
impl LifecycleCards {
    /// Both cards for `lifecycle`, rendered.
    pub fn of(lifecycle: &model::lifecycle::LifecycleView) -> Self {
        use crate::access::Role;
        use crate::pushed::PushedCard;
        let every_role = Role::Viewer..=Role::Admin;
        LifecycleCards {
            challenger: lifecycle.challenger.clone(),
            cards: [
                PushedCard::new(
                    Card::Duel,
                    every_role.clone(),
                    render::duel(Some(lifecycle)),
                ),
                PushedCard::new(Card::History, every_role, render::history(Some(lifecycle))),
            ],
        }
    }
}

/// The live duel, or why there is none.
#[component]
pub fn DuelCard() -> impl IntoView {
    let live = expect_context::<LiveState>();
    view! {
        <section class="card duel" id="duel" aria-labelledby="duel-title"
            inner_html=markup(live, Card::Duel)></section>
    }
}

/// Who changed the lineup, when, and on what evidence; newest first.
#[component]
pub fn HistoryCard() -> impl IntoView {
    let live = expect_context::<LiveState>();
    view! {
        <section class="card" aria-labelledby="history-title"
            inner_html=markup(live, Card::History)></section>
    }
}
