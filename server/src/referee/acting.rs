//! Acting on a verdict (`--auto-promote`): the decision's record with its evidence first, then
//! the seats it changes, in the order of `EventKind::seat_changes` (the promotion protocol).
//! Every write is idempotent (the event's key names the duel; a seat holds one model), so a
//! decision cut short is written again from its start while the lineup is still on its way.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use model::duel::Evidence;
use model::lifecycle::{EventKind, Lineup, ModelEvent, SeatChange, Side};
use model::ChurnModel;
use tokio_util::sync::CancellationToken;

use crate::model_store::ModelsWriter;

/// Who the decision records say acted.
pub(super) const BY: &str = "auto-promote";
/// After the stop, how long a decision being written may still take: the seats are best not
/// left half changed, but the supervisor's grace is short.
/// (With the consumer's and the producer's closes, at most `CLOSE_WAIT` each, within
/// `supervisor::STOP_GRACE`.)
const FINISH_ON_STOP: Duration = Duration::from_secs(2);

/// A decision to write, with the models it moves.
#[derive(Debug, Clone)]
pub(super) struct Decided {
    pub(super) kind: EventKind,
    pub(super) champion: Arc<ChurnModel>,
    pub(super) challenger: Arc<ChurnModel>,
    /// When the duel began, as the history says (`LifecycleView::duel_start`).
    pub(super) duel_began_ms: Option<i64>,
    pub(super) evidence: Evidence,
}

/// Where a decision stands against the lineup in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// The lineup is the duel's, or one the decision passes through: (re)write it.
    Due,
    /// The lineup is the one the decision leaves.
    Done,
    /// Someone else changed the lineup meanwhile: the decision no longer applies.
    Overtaken,
}

type Versions = (String, Option<String>);

fn versions(lineup: &Lineup) -> Versions {
    (
        lineup.champion.version.clone(),
        lineup.challenger.as_ref().map(|c| c.version.clone()),
    )
}

impl Decided {
    fn model(&self, side: Side) -> &ChurnModel {
        match side {
            Side::Champion => &self.champion,
            Side::Challenger => &self.challenger,
        }
    }

    /// The lineups the decision passes through: the duel's, then one after each seat change.
    fn lineups(&self) -> Vec<Versions> {
        let mut at = (
            self.champion.version.clone(),
            Some(self.challenger.version.clone()),
        );
        let mut all = vec![at.clone()];
        for change in self.kind.seat_changes() {
            match *change {
                SeatChange::Challenger(side) => at.1 = side.map(|s| self.model(s).version.clone()),
                SeatChange::Champion(side) => at.0 = self.model(side).version.clone(),
            }
            all.push(at.clone());
        }
        all
    }

    pub(super) fn progress(&self, lineup: &Lineup) -> Progress {
        let now = versions(lineup);
        let lineups = self.lineups();
        let (last, on_the_way) = lineups.split_last().expect("the duel's lineup at least");
        if now == *last {
            Progress::Done
        } else if on_the_way.contains(&now) {
            Progress::Due
        } else {
            Progress::Overtaken
        }
    }

    async fn write(&self, writer: &ModelsWriter) -> Result<()> {
        let event = ModelEvent::decision(
            self.kind,
            &self.champion.version,
            &self.challenger.version,
            self.duel_began_ms,
            self.evidence,
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            BY,
        );
        writer.event(&event).await?;
        for change in self.kind.seat_changes() {
            match *change {
                SeatChange::Challenger(side) => {
                    writer.challenger(side.map(|s| self.model(s))).await?
                }
                SeatChange::Champion(side) => writer.champion(self.model(side)).await?,
            }
        }
        Ok(())
    }

    /// Writes the decision: its event, then its seats. A stop meanwhile leaves it
    /// FINISH_ON_STOP to finish.
    pub(super) async fn carry_out(
        &self,
        writer: &ModelsWriter,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let work = self.write(writer);
        tokio::pin!(work);
        tokio::select! {
            done = &mut work => done,
            _ = shutdown.cancelled() => tokio::time::timeout(FINISH_ON_STOP, work)
                .await
                .unwrap_or_else(|_| Err(anyhow!("stopped before the decision was written whole"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(version: &str) -> Arc<ChurnModel> {
        let customers = model::synth::generate_customers(&model::synth::GenerateOptions {
            rows: 100,
            seed: 1,
            messy_fraction: 0.0,
        });
        let mut m =
            model::train::train(&customers, &Default::default(), "t".into(), |_| {}).unwrap();
        m.version = version.into();
        Arc::new(m)
    }

    fn lineup(champion: &Arc<ChurnModel>, challenger: Option<&Arc<ChurnModel>>) -> Lineup {
        Lineup {
            champion: champion.clone(),
            challenger: challenger.cloned(),
        }
    }

    #[test]
    fn a_decision_is_due_until_its_lineup_is_reached_and_abandoned_when_overtaken() {
        let (a, b, c) = (model("m-a"), model("m-b"), model("m-c"));
        let decided = |kind| Decided {
            kind,
            champion: a.clone(),
            challenger: b.clone(),
            duel_began_ms: Some(1),
            evidence: model::duel::Duel::new(Default::default())
                .unwrap()
                .decision()
                .evidence,
        };
        let promoted = decided(EventKind::Promoted);
        assert_eq!(promoted.progress(&lineup(&a, Some(&b))), Progress::Due);
        // Halfway: the promoted model is already champion (and so, for a moment, in both seats).
        assert_eq!(promoted.progress(&lineup(&b, Some(&b))), Progress::Due);
        assert_eq!(
            promoted.progress(&lineup(&a, Some(&a))),
            Progress::Overtaken
        );
        assert_eq!(promoted.progress(&lineup(&b, Some(&a))), Progress::Done);
        // A champion published by hand meanwhile, or the challenger withdrawn: not ours to undo.
        assert_eq!(
            promoted.progress(&lineup(&c, Some(&b))),
            Progress::Overtaken
        );
        assert_eq!(promoted.progress(&lineup(&a, None)), Progress::Overtaken);

        // After a promotion the duel is b (champion) against a: rolling back.
        let rolled_back = Decided {
            kind: EventKind::RolledBack,
            champion: b.clone(),
            challenger: a.clone(),
            ..decided(EventKind::RolledBack)
        };
        assert_eq!(rolled_back.progress(&lineup(&b, Some(&a))), Progress::Due);
        assert_eq!(rolled_back.progress(&lineup(&a, Some(&a))), Progress::Due);
        assert_eq!(rolled_back.progress(&lineup(&b, None)), Progress::Overtaken);
        assert_eq!(rolled_back.progress(&lineup(&a, None)), Progress::Done);

        let rejected = decided(EventKind::Rejected);
        assert_eq!(rejected.progress(&lineup(&a, Some(&b))), Progress::Due);
        assert_eq!(rejected.progress(&lineup(&a, None)), Progress::Done);
        assert_eq!(
            rejected.progress(&lineup(&a, Some(&c))),
            Progress::Overtaken
        );
    }
}
