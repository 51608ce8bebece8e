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

use crate::duel::{Decision, DuelReport, Evidence, Verdict};
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

/// A model of a duel, by the seat it held when the duel decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Champion,
    Challenger,
}

/// One seat a decision changes, written after its event and in the order given: the
/// champion's seat first, so that a stop between the writes leaves the decided champion serving
/// (only a promotion's rollback watch is then missing; `churn publish --challenger` restores it).
/// Between the two writes the same model sits in both seats for a moment, and nothing is scored
/// in the shadow (the promotion protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatChange {
    /// The challenger's seat takes this model, or is emptied (a tombstone).
    Challenger(Option<Side>),
    /// The champion's seat takes this model.
    Champion(Side),
}

impl EventKind {
    /// What a duel's verdict leads to. A duel after a promotion has the promoted model as
    /// champion and the one it replaced as challenger, so there a better challenger means
    /// rolling back, a better champion confirming the promotion. Undecided leads nowhere.
    pub fn of_verdict(verdict: Verdict, after_promotion: bool) -> Option<EventKind> {
        match (verdict, after_promotion) {
            (Verdict::Undecided, _) => None,
            (Verdict::ChallengerBetter, false) => Some(Self::Promoted),
            (Verdict::ChampionBetter, false) => Some(Self::Rejected),
            (Verdict::ChallengerBetter, true) => Some(Self::RolledBack),
            (Verdict::ChampionBetter, true) => Some(Self::Confirmed),
        }
    }

    /// The seats a decision changes, in order, after its event: promoted, the challenger
    /// becomes champion and the champion it replaces is watched as challenger (for a rollback);
    /// rolled back, the replaced model is champion again, with no challenger; rejected or
    /// confirmed, the challenger is withdrawn. Hand actions change nothing here (their callers
    /// write their own seats).
    pub fn seat_changes(self) -> &'static [SeatChange] {
        match self {
            Self::Promoted => &[
                SeatChange::Champion(Side::Challenger),
                SeatChange::Challenger(Some(Side::Champion)),
            ],
            Self::RolledBack => &[
                SeatChange::Champion(Side::Challenger),
                SeatChange::Challenger(None),
            ],
            Self::Rejected | Self::Confirmed => &[SeatChange::Challenger(None)],
            Self::ChampionPublished | Self::ChallengerPublished | Self::ChallengerWithdrawn => &[],
        }
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
    /// The challenger before and after the event, if any (before: decisions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenger_before: Option<String>,
    pub challenger_after: Option<String>,
    /// For decisions: when the duel began (milliseconds since the epoch, from the history), so
    /// the same pair decided again later (after a rollback) is a record of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duel_began_ms: Option<i64>,
    /// For decisions: the duel's evidence (sample size, metric, interval, test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// Who: "auto-promote", "churn publish", "churn retrain", or a user's name.
    pub by: String,
}

impl ModelEvent {
    /// The record of a duel's decision between `champion` and `challenger` (versions), with
    /// its evidence: the lineup before, and after its [`EventKind::seat_changes`].
    pub fn decision(
        kind: EventKind,
        champion: &str,
        challenger: &str,
        duel_began_ms: Option<i64>,
        evidence: Evidence,
        at: String,
        by: &str,
    ) -> ModelEvent {
        let version = |side: Side| match side {
            Side::Champion => champion.to_owned(),
            Side::Challenger => challenger.to_owned(),
        };
        let (mut champion_after, mut challenger_after) =
            (champion.to_owned(), Some(challenger.to_owned()));
        for change in kind.seat_changes() {
            match *change {
                SeatChange::Challenger(side) => challenger_after = side.map(version),
                SeatChange::Champion(side) => champion_after = version(side),
            }
        }
        ModelEvent {
            kind,
            at,
            champion_before: Some(champion.to_owned()),
            champion_after: Some(champion_after),
            challenger_before: Some(challenger.to_owned()),
            challenger_after,
            duel_began_ms,
            evidence: Some(evidence),
            by: by.to_owned(),
        }
    }

    /// The record's key. A decision's key names the duel it ends (its pair and when it began),
    /// so two referees that reach the same verdict write one record (compaction keeps one),
    /// and the same pair decided again in a later duel writes another; a hand action's names
    /// its time.
    pub fn key(&self) -> String {
        let kind = serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let name = |v: &Option<String>| v.as_deref().unwrap_or("none").to_owned();
        if self.kind.is_decision() {
            let began = self
                .duel_began_ms
                .map_or_else(|| "-".to_owned(), |ms| ms.to_string());
            format!(
                "{EVENT_KEY_PREFIX}{kind}/{}/{}/{began}",
                name(&self.champion_before),
                name(&self.challenger_before)
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

/// How far after this host's clock an event's time may be (clocks of hosts running NTP differ
/// by far less): a later one is forged or broken, and would sort after every real event for ever.
pub const EVENT_FUTURE_TOLERANCE_MS: i64 = 5 * 60_000;

/// Why an event is not taken into the history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventRefused {
    #[error("its time {0:?} is not an RFC 3339 time")]
    Time(String),
    #[error("its time {0} is after this host's clock")]
    Future(String),
}

/// An event's time in milliseconds since the epoch, when it is an RFC 3339 time.
fn event_ms(event: &ModelEvent) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(&event.at)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl LifecycleView {
    /// Adds an event to the history (at this host's time `now_ms`), once per key (a decision
    /// two referees both wrote), in time order. An event whose time is not a time, or is in the
    /// future, is refused: the history and the duel's start (`duel_start`) read it.
    pub fn record(&mut self, event: ModelEvent, now_ms: i64) -> Result<(), EventRefused> {
        let at = event_ms(&event).ok_or_else(|| {
            EventRefused::Time(crate::record::truncate_utf8(&event.at, 64).into_owned())
        })?;
        if at > now_ms.saturating_add(EVENT_FUTURE_TOLERANCE_MS) {
            return Err(EventRefused::Future(event.at));
        }
        let key = event.key();
        if self.history.iter().any(|e| e.key() == key) {
            return Ok(());
        }
        self.history.push(event);
        self.history
            .sort_by_key(|e| event_ms(e).unwrap_or(i64::MIN));
        let excess = self.history.len().saturating_sub(HISTORY_KEPT);
        self.history.drain(..excess);
        Ok(())
    }
}

/// When and how the duel between the lineup's two models began, as its history tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuelStart {
    /// Milliseconds since the epoch, by the clock of whoever wrote the event.
    pub at_ms: i64,
    /// A promotion set this pair: the challenger is the champion it replaced.
    pub after_promotion: bool,
}

impl LifecycleView {
    /// When the duel of `champion` and `challenger` began: the later of the newest events that
    /// put each in its seat (one event, for a promotion). None when the history names neither
    /// (kept records only go back HISTORY_KEPT events, and models published before events
    /// existed have none): the caller falls back on a bounded look back.
    pub fn duel_start(&self, champion: &str, challenger: &str) -> Option<DuelStart> {
        let named = |v: &Option<String>, version: &str| v.as_deref() == Some(version);
        let sets_champion = |e: &&ModelEvent| {
            matches!(
                e.kind,
                EventKind::ChampionPublished | EventKind::Promoted | EventKind::RolledBack
            ) && named(&e.champion_after, champion)
        };
        let sets_challenger = |e: &&ModelEvent| {
            matches!(e.kind, EventKind::ChallengerPublished | EventKind::Promoted)
                && named(&e.challenger_after, challenger)
        };
        let at = |e: &ModelEvent| {
            chrono::DateTime::parse_from_rfc3339(&e.at)
                .ok()
                .map(|t| t.timestamp_millis())
        };
        // The history is oldest first; the newest of each with a readable time.
        let newest = |wanted: &dyn Fn(&&ModelEvent) -> bool| {
            self.history
                .iter()
                .rev()
                .filter(wanted)
                .find_map(|e| Some((at(e)?, e)))
        };
        let (began, event) = match (newest(&sets_champion), newest(&sets_challenger)) {
            (Some(a), Some(b)) => std::cmp::max_by_key(a, b, |(at, _)| *at),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => return None,
        };
        Some(DuelStart {
            at_ms: began,
            after_promotion: event.kind == EventKind::Promoted
                && named(&event.champion_after, champion)
                && named(&event.challenger_after, challenger),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time after every event of the tests.
    const NOW: i64 = 1_900_000_000_000;

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
            challenger_before: None,
            challenger_after: Some("m-a".into()),
            duel_began_ms: None,
            evidence: None,
            by: "auto-promote".into(),
        }
    }

    #[test]
    fn a_decision_is_recorded_once_and_the_history_is_bounded() {
        let mut view = LifecycleView::default();
        view.record(event(EventKind::Promoted, "2026-01-01T00:00:00Z"), NOW)
            .unwrap();
        // Another referee's record of the same decision, seconds later.
        view.record(event(EventKind::Promoted, "2026-01-01T00:00:03Z"), NOW)
            .unwrap();
        assert_eq!(view.history.len(), 1);
        for second in 0..(2 * HISTORY_KEPT) {
            view.record(
                event(
                    EventKind::ChallengerPublished,
                    &format!("2026-01-02T00:{:02}:{:02}Z", second / 60, second % 60),
                ),
                NOW,
            )
            .unwrap();
        }
        assert_eq!(view.history.len(), HISTORY_KEPT);
        assert!(view.history.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(view.history[0].at.starts_with("2026-01-02"));
    }

    fn evidence() -> Evidence {
        crate::duel::Duel::new(Default::default())
            .unwrap()
            .decision()
            .evidence
    }

    #[test]
    fn each_verdict_leads_to_its_event_and_undecided_to_none() {
        use Verdict::*;
        assert_eq!(EventKind::of_verdict(Undecided, false), None);
        assert_eq!(EventKind::of_verdict(Undecided, true), None);
        assert_eq!(
            EventKind::of_verdict(ChallengerBetter, false),
            Some(EventKind::Promoted)
        );
        assert_eq!(
            EventKind::of_verdict(ChampionBetter, false),
            Some(EventKind::Rejected)
        );
        assert_eq!(
            EventKind::of_verdict(ChallengerBetter, true),
            Some(EventKind::RolledBack)
        );
        assert_eq!(
            EventKind::of_verdict(ChampionBetter, true),
            Some(EventKind::Confirmed)
        );
    }

    #[test]
    fn a_decision_records_the_lineup_it_leaves_and_its_evidence() {
        let decided = |kind| {
            ModelEvent::decision(
                kind,
                "m-a",
                "m-b",
                Some(1),
                evidence(),
                "t".into(),
                "auto-promote",
            )
        };
        let seats = |e: &ModelEvent| {
            (
                e.champion_before.clone().unwrap(),
                e.champion_after.clone().unwrap(),
                e.challenger_after.clone(),
            )
        };
        let s = |v: &str| v.to_owned();
        // Promoted: the challenger is champion, the replaced one watched as challenger.
        let promoted = decided(EventKind::Promoted);
        assert_eq!(seats(&promoted), (s("m-a"), s("m-b"), Some(s("m-a"))));
        assert!(promoted.evidence.is_some() && promoted.kind.is_decision());
        // In the duel after that promotion, "m-b" is champion and "m-a" challenger.
        let rolled_back = ModelEvent::decision(
            EventKind::RolledBack,
            "m-b",
            "m-a",
            Some(1),
            evidence(),
            "t".into(),
            "auto-promote",
        );
        assert_eq!(seats(&rolled_back), (s("m-b"), s("m-a"), None));
        assert_eq!(
            seats(&decided(EventKind::Rejected)),
            (s("m-a"), s("m-a"), None)
        );
        assert_eq!(
            seats(&decided(EventKind::Confirmed)),
            (s("m-a"), s("m-a"), None)
        );
        // The champion's seat is always written first: a stop between the two writes leaves
        // the decided champion serving (only the rollback watch is missing).
        for kind in [EventKind::Promoted, EventKind::RolledBack] {
            assert!(matches!(kind.seat_changes()[0], SeatChange::Champion(_)));
            assert!(matches!(kind.seat_changes()[1], SeatChange::Challenger(_)));
        }
        // Two referees deciding the same duel at different moments write one record.
        let later = ModelEvent::decision(
            EventKind::Promoted,
            "m-a",
            "m-b",
            Some(1),
            evidence(),
            "t2".into(),
            "auto-promote",
        );
        assert_eq!(promoted.key(), later.key());
        assert_ne!(promoted.key(), rolled_back.key());
    }

    fn hand(
        kind: EventKind,
        at: &str,
        champion: Option<&str>,
        challenger: Option<&str>,
    ) -> ModelEvent {
        ModelEvent {
            kind,
            at: at.into(),
            champion_before: None,
            champion_after: champion.map(str::to_owned),
            challenger_before: None,
            challenger_after: challenger.map(str::to_owned),
            duel_began_ms: None,
            evidence: None,
            by: "churn publish".into(),
        }
    }

    fn view(events: Vec<ModelEvent>) -> LifecycleView {
        let mut view = LifecycleView::default();
        for e in events {
            // An unreadable time is refused, and the rest of the history is read on.
            let _ = view.record(e, NOW);
        }
        view
    }

    fn ms(at: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(at)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn a_duel_starts_when_the_later_of_its_two_models_took_its_seat() {
        let (t1, t2, t3, t4) = (
            "2026-01-01T00:00:01.000Z",
            "2026-01-01T00:00:02.000Z",
            "2026-01-01T00:00:03.000Z",
            "2026-01-01T00:00:04.000Z",
        );
        let v = view(vec![
            hand(EventKind::ChampionPublished, t1, Some("m-a"), None),
            hand(EventKind::ChallengerPublished, t2, None, Some("m-b")),
        ]);
        assert_eq!(
            v.duel_start("m-a", "m-b"),
            Some(DuelStart {
                at_ms: ms(t2),
                after_promotion: false
            })
        );
        // A champion published by hand while the challenger stays: a new duel from then.
        let mut v = v;
        v.record(
            hand(EventKind::ChampionPublished, t3, Some("m-c"), None),
            NOW,
        )
        .unwrap();
        assert_eq!(v.duel_start("m-c", "m-b").unwrap().at_ms, ms(t3));
        // The same challenger published again later: the newest counts (an old duel of the
        // same pair is not this one).
        v.record(
            hand(EventKind::ChallengerPublished, t4, None, Some("m-b")),
            NOW,
        )
        .unwrap();
        assert_eq!(v.duel_start("m-c", "m-b").unwrap().at_ms, ms(t4));
        // Neither named: no start known.
        assert_eq!(v.duel_start("m-x", "m-y"), None);
        // Only one named: that one's time.
        assert_eq!(v.duel_start("m-x", "m-b").unwrap().at_ms, ms(t4));
    }

    #[test]
    fn a_promotion_starts_the_duel_that_may_roll_it_back() {
        let promoted = ModelEvent::decision(
            EventKind::Promoted,
            "m-a",
            "m-b",
            Some(1),
            evidence(),
            "2026-01-01T00:10:00.000Z".into(),
            "auto-promote",
        );
        let v = view(vec![
            hand(
                EventKind::ChampionPublished,
                "2026-01-01T00:00:00.000Z",
                Some("m-a"),
                None,
            ),
            hand(
                EventKind::ChallengerPublished,
                "2026-01-01T00:01:00.000Z",
                None,
                Some("m-b"),
            ),
            promoted,
        ]);
        assert_eq!(
            v.duel_start("m-b", "m-a"),
            Some(DuelStart {
                at_ms: ms("2026-01-01T00:10:00.000Z"),
                after_promotion: true
            })
        );
        // The first duel's pair is not after a promotion.
        assert!(!v.duel_start("m-a", "m-b").unwrap().after_promotion);
        // A hand-published challenger after the promotion starts an ordinary duel.
        let mut v = v;
        v.record(
            hand(
                EventKind::ChallengerPublished,
                "2026-01-01T00:20:00.000Z",
                None,
                Some("m-a"),
            ),
            NOW,
        )
        .unwrap();
        assert_eq!(
            v.duel_start("m-b", "m-a"),
            Some(DuelStart {
                at_ms: ms("2026-01-01T00:20:00.000Z"),
                after_promotion: false
            })
        );
        // An event whose time does not parse, or lies in the future, is refused: it would
        // otherwise sort after every real event and set every duel's start.
        let mut refused = LifecycleView::default();
        for at in [
            "yesterday",
            "9999-12-31T00:00:00Z",
            "2031-01-01T00:00:00Z",
            "",
        ] {
            let e = hand(EventKind::Promoted, at, Some("m-x"), None);
            assert!(refused.record(e, NOW).is_err(), "{at}");
        }
        let soon = chrono::DateTime::from_timestamp_millis(NOW + 60_000)
            .unwrap()
            .to_rfc3339();
        refused
            .record(
                hand(EventKind::ChampionPublished, &soon, Some("m-x"), None),
                NOW,
            )
            .expect("a clock a minute ahead is tolerated");
        assert_eq!(refused.history.len(), 1);
        let mut odd = view(vec![hand(
            EventKind::ChallengerPublished,
            "yesterday",
            None,
            Some("m-z"),
        )]);
        assert_eq!(odd.duel_start("m-a", "m-z"), None);
        odd.record(
            hand(
                EventKind::ChallengerPublished,
                "2026-01-01T00:00:00Z",
                None,
                Some("m-z"),
            ),
            NOW,
        )
        .unwrap();
        assert!(odd.duel_start("m-a", "m-z").is_some());
    }
}
