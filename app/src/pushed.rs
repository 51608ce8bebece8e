//! Cards pushed as markup: the server renders them for the receiving user's role and sends their
//! inner HTML over the live feed (`LiveEvent::Card`); the browser sets it. So the browser carries
//! neither the cards' views nor decoders for their data (measured savings in BENCHMARKS.md).
//!
//! Each card is rendered once per distinct view where its data arrives ([`PushedCard`], one per
//! range of roles that sees the same markup), not once per connection, and travels as an
//! `Arc<str>`: a queued copy is a pointer. The one exception is the Pipeline card in the snapshot
//! a (re)connecting browser starts from, rendered for that browser's role.
//!
//! Before the feed has sent a card, the server renders its placeholder into the page; hydration
//! leaves server-rendered inner HTML alone (tachys does not rewrite it: the leptos version is
//! pinned in Cargo.toml for this, and an end-to-end test checks it), so the browser needs none.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::live::LiveState;

/// Which pushed card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Card {
    /// The Pipeline card (brokers, topics and storage for admins only).
    Status,
    /// The dashboard's figures, charts, segments and quality.
    Dashboard,
    /// The riskiest recent customers (names: analysts and admins only).
    Riskiest,
    /// The champion against the challenger.
    Duel,
    /// The model history.
    History,
}

impl Card {
    pub const ALL: [Card; 5] = [
        Card::Status,
        Card::Dashboard,
        Card::Riskiest,
        Card::Duel,
        Card::History,
    ];
}

/// One card rendered for the roles in `roles` (who all see the same markup).
#[cfg(feature = "ssr")]
#[derive(Debug, Clone, PartialEq)]
pub struct PushedCard {
    pub card: Card,
    pub roles: std::ops::RangeInclusive<crate::access::Role>,
    pub markup: std::sync::Arc<str>,
}

#[cfg(feature = "ssr")]
impl PushedCard {
    pub fn new(
        card: Card,
        roles: std::ops::RangeInclusive<crate::access::Role>,
        markup: String,
    ) -> Self {
        PushedCard {
            card,
            roles,
            markup: markup.into(),
        }
    }
}

/// `view` as HTML, the way a server-rendered page writes it (text and attributes escaped).
#[cfg(feature = "ssr")]
pub fn render_html<V: RenderHtml>(view: impl FnOnce() -> V) -> String {
    // Views are created under an owner, as on a page; nothing here is reactive.
    Owner::new().with(|| view().to_html())
}

/// What the page shows in `card` until the feed sends it: rendered by the server only (the
/// browser keeps the server's markup on hydration, see the module's comment).
pub fn before_the_feed(card: Card) -> String {
    #[cfg(feature = "ssr")]
    return match card {
        Card::Status => crate::status::render(None, false),
        Card::Dashboard => crate::dashboard::render::body(None),
        Card::Riskiest => crate::dashboard::render::riskiest(None),
        Card::Duel => crate::lifecycle::render::duel(None),
        Card::History => crate::lifecycle::render::history(None),
    };
    #[cfg(not(feature = "ssr"))]
    {
        let _ = card;
        String::new()
    }
}

/// The inner HTML of `card` as the live feed last sent it, or its placeholder: for `inner_html`.
pub fn markup(live: LiveState, card: Card) -> impl Fn() -> String + Copy {
    move || {
        live.card(card)
            .get()
            .unwrap_or_else(|| before_the_feed(card))
    }
}
