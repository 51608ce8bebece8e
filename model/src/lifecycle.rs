//! The model lifecycle as it travels on the models topic: which model is champion, which one is
//! challenger (scored in the shadow), how their live duel stands, and the history of promotions
//! and rollbacks with their evidence.
//!
//! The models topic is compacted and every record is keyed by what it is ([`Key`]): compaction
//! keeps the newest champion, challenger and duel, and every event (each has a key of its own).
//! Only champion and challenger records are models, verified before use; events and the duel
//! are for people to read, and nothing acts on them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::duel::{Decision, DuelReport, Evidence};
use crate::model_file::ChurnModel;

/// The key of the champion: every prediction users see is its. (The key every model was
/// published under before challengers existed, so older topics read the same.)
pub const CHAMPION_KEY: &str = "churn-model";
/// The key of the challenger; a record without a value (a tombstone) withdraws it.
pub const CHALLENGER_KEY: &str = "churn-challenger";
/// The key of the live duel's newest figures.
pub const DUEL_KEY: &str = "churn-duel";
/// Events are keyed with this prefix and something unique to each.
pub const EVENT_KEY_PREFIX: &str = "churn-event/";
/// Longest key read: longer ones are not ours (and are not worth a log line each).
pub const MAX_KEY_BYTES: usize = 256;

/// What a models-topic record is, by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Champion,
    Challenger,
    Duel,
    Event,
    /// Not one of ours: skipped.
    Other,
}

impl Key {
    /// A record without a key is the champion, as every model was before keys had meanings.
    pub fn of(key: Option<&[u8]>) -> Key {
        match key {
            None => Key::Champion,
            Some(k) if k == CHAMPION_KEY.as_bytes() => Key::Champion,
            Some(k) if k == CHALLENGER_KEY.as_bytes() => Key::Challenger,
            Some(k) if k == DUEL_KEY.as_bytes() => Key::Duel,
            Some(k) if k.starts_with(EVENT_KEY_PREFIX.as_bytes()) && k.len() <= MAX_KEY_BYTES => {
                Key::Event
            }
            Some(_) => Key::Other,
        }
    }
}

/// The models in use: the champion scores for users; the challenger, when there is one, is
/// scored on the same records in the shadow.
#[derive(Debug, Clone, PartialEq)]
pub struct Lineup {
    pub champion: Arc<ChurnModel>,
    pub challenger: Option<Arc<ChurnModel>>,
}

impl From<Arc<ChurnModel>> for Lineup {
    fn from(champion: Arc<ChurnModel>) -> Self {
        Lineup {
            champion,
            challenger: None,
        }
    }
}

impl From<ChurnModel> for Lineup {
    fn from(champion: ChurnModel) -> Self {
        Arc::new(champion).into()
    }
}

impl Lineup {
    /// The model to score in the shadow: the challenger, unless it is the champion itself (a
    /// moment during a promotion, or the same file published to both seats).
    pub fn shadow(&self) -> Option<&Arc<ChurnModel>> {
        self.challenger
            .as_ref()
            .filter(|c| c.version != self.champion.version)
    }
}

/// What happened to the lineup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A champion published by hand (`churn publish`, the app).
    ChampionPublished,
    /// A challenger published (by hand, or by `churn retrain`).
    ChallengerPublished,
    /// The challenger withdrawn by hand.
    ChallengerWithdrawn,
    /// The duel found the challenger better: it became champion, and the champion it replaced
    /// became the challenger, watched for a rollback.
    Promoted,
    /// The duel found the champion better: the challenger was withdrawn.
    Rejected,
    /// After a promotion, the duel found the replaced model better again: it is champion again.
    RolledBack,
    /// After a promotion, the duel found the promoted model better again: the replaced one was
    /// withdrawn.
    Confirmed,
}

impl EventKind {
    pub fn describe(self) -> &'static str {
        match self {
            Self::ChampionPublished => "champion published",
            Self::ChallengerPublished => "challenger published",
            Self::ChallengerWithdrawn => "challenger withdrawn",
            Self::Promoted => "challenger promoted",
            Self::Rejected => "challenger rejected",
            Self::RolledBack => "promotion rolled back",
            Self::Confirmed => "promotion confirmed",
        }
    }

    /// Whether a duel decided it (and its record carries the evidence).
    pub fn is_decision(self) -> bool {
        matches!(
            self,
            Self::Promoted | Self::Rejected | Self::RolledBack | Self::Confirmed
        )
    }
}

/// One change of the lineup, as recorded on the models topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEvent {
    pub kind: EventKind,
    /// RFC 3339.
    pub at: String,
    /// The champion before and after (the same when only the challenger changed).
    pub champion_before: Option<String>,
    pub champion_after: Option<String>,
    /// The challenger after the event, if any.
    pub challenger_after: Option<String>,
    /// For decisions: the duel's evidence (sample size, metric, interval, test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// Who: "auto-promote", "churn publish", "churn retrain", or a user's name.
    pub by: String,
}

impl ModelEvent {
    /// The record's key. A decision's key names the duel it ends, so two referees that reach
    /// the same verdict write one record (compaction keeps one); a hand action's names its time.
    pub fn key(&self) -> String {
        let kind = serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let name = |v: &Option<String>| v.as_deref().unwrap_or("none").to_owned();
        if self.kind.is_decision() {
            format!(
                "{EVENT_KEY_PREFIX}{kind}/{}/{}",
                name(&self.champion_before),
                name(&self.champion_after)
            )
        } else {
            format!(
                "{EVENT_KEY_PREFIX}{kind}/{}/{}/{}",
                self.at,
                name(&self.champion_after),
                name(&self.challenger_after)
            )
        }
    }
}

/// The live duel's newest figures, as the referee publishes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuelStatus {
    pub champion: String,
    pub challenger: String,
    /// The challenger is the champion a promotion replaced: `ChallengerBetter` rolls back.
    pub after_promotion: bool,
    /// Whether the referee acts on the verdict (`--auto-promote`) or only reports it.
    pub auto_promote: bool,
    /// None before two labelled records.
    pub report: Option<DuelReport>,
    pub decision: Decision,
    /// RFC 3339.
    pub updated_at: String,
}

/// Most events a follower keeps for display.
pub const HISTORY_KEPT: usize = 100;

/// What the app shows of the lifecycle: the lineup's versions, the duel and the history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LifecycleView {
    pub champion: Option<String>,
    pub challenger: Option<String>,
    pub duel: Option<DuelStatus>,
    /// Oldest first, at most HISTORY_KEPT.
    pub history: Vec<ModelEvent>,
}

impl LifecycleView {
    /// Adds an event to the history, once per key (a decision two referees both wrote).
    pub fn record(&mut self, event: ModelEvent) {
        let key = event.key();
        if self.history.iter().any(|e| e.key() == key) {
            return;
        }
        self.history.push(event);
        self.history.sort_by(|a, b| a.at.cmp(&b.at));
        let excess = self.history.len().saturating_sub(HISTORY_KEPT);
        self.history.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_by_their_meaning() {
        assert_eq!(Key::of(None), Key::Champion);
        assert_eq!(Key::of(Some(b"churn-model")), Key::Champion);
        assert_eq!(Key::of(Some(b"churn-challenger")), Key::Challenger);
        assert_eq!(Key::of(Some(b"churn-duel")), Key::Duel);
        assert_eq!(Key::of(Some(b"churn-event/promoted/a/b")), Key::Event);
        assert_eq!(Key::of(Some(b"churn-model2")), Key::Other);
        assert_eq!(Key::of(Some(b"")), Key::Other);
        let long = format!("{EVENT_KEY_PREFIX}{}", "x".repeat(MAX_KEY_BYTES));
        assert_eq!(Key::of(Some(long.as_bytes())), Key::Other);
    }

    fn event(kind: EventKind, at: &str) -> ModelEvent {
        ModelEvent {
            kind,
            at: at.into(),
            champion_before: Some("m-a".into()),
            champion_after: Some("m-b".into()),
            challenger_after: Some("m-a".into()),
            evidence: None,
            by: "auto-promote".into(),
        }
    }

    #[test]
    fn a_decision_is_recorded_once_and_the_history_is_bounded() {
        let mut view = LifecycleView::default();
        view.record(event(EventKind::Promoted, "2026-01-01T00:00:00Z"));
        // Another referee's record of the same decision, seconds later.
        view.record(event(EventKind::Promoted, "2026-01-01T00:00:03Z"));
        assert_eq!(view.history.len(), 1);
        for second in 0..(2 * HISTORY_KEPT) {
            view.record(event(
                EventKind::ChallengerPublished,
                &format!("2026-01-02T00:{:02}:{:02}Z", second / 60, second % 60),
            ));
        }
        assert_eq!(view.history.len(), HISTORY_KEPT);
        assert!(view.history.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(view.history[0].at.starts_with("2026-01-02"));
    }
}
