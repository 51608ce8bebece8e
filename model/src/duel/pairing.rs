//! Shadowed predictions joined with their labels, feeding one [`Duel`] between one champion and
//! one challenger: what the referee (`server/src/referee/`) keeps while it reads the predictions
//! and labels topics.
//!
//! A record counts once it has both scores and a label. The scores come from a prediction that
//! the champion made and that carries the challenger's shadow score
//! ([`Prediction::challenger`]); the label from the prediction's own `actual_churn` (replayed
//! history), or from an outcome on the labels topic, which may arrive before or after its
//! prediction. Delivery is at least once, so the same prediction or outcome can come twice (a
//! producer's retry, a scorer's re-read after a rebalance): **each record counts once**, the
//! first time it is complete; whatever comes for it later is a duplicate.
//!
//! **Memory** is bounded like the analytics' remembered predictions (`analytics::aggregator`):
//! a record is held by a keyed 64-bit hash of its id (never the id), with its two probabilities
//! as `f32` (eight significant digits are plenty for a Brier score), its label, or only the fact
//! that it is settled (counted, or not of this duel); about 40 bytes with the tables' slack,
//! whatever the id's length. At most [`PairingBounds::records`] records are held, none older
//! than [`PairingBounds::age_ms`]; the oldest go first. A record forgotten before its partner
//! arrived is not counted, and one re-delivered after it was forgotten would count again: the
//! bounds cover a day and 200,000 records, far longer than a re-delivery takes.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use crate::message::Prediction;

use super::{Duel, DuelConfig, DuelError};

/// Most records held at once (about 8 MB when full).
pub const PAIRING_RECORDS: usize = 200_000;
/// How long a record waits for its partner: outcomes that come later than a day after their
/// prediction are not counted (the analytics' `REMEMBER_FOR_MS`, the same span).
pub const PAIRING_AGE_MS: i64 = 24 * 3_600_000;

/// How much a [`Pairing`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairingBounds {
    /// Most records held.
    pub records: usize,
    /// Records older than this (by their timestamp, against the clock passed to
    /// [`Pairing::forget_older`]) are forgotten.
    pub age_ms: i64,
}

impl Default for PairingBounds {
    fn default() -> Self {
        Self {
            records: PAIRING_RECORDS,
            age_ms: PAIRING_AGE_MS,
        }
    }
}

/// What became of one prediction or outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Its record is complete and the duel counted it.
    Counted,
    /// Held until its partner (the label, or the prediction) arrives.
    Waiting,
    /// Its record was already counted or is already waiting: a re-delivery.
    Duplicate,
    /// A prediction of other models (before the challenger, another challenger, no shadow
    /// score): not this duel's. Its record is settled, so its outcome does not wait.
    OtherPair,
    /// A probability that is not one: skipped, nothing held.
    Refused(DuelError),
}

/// What a held record is waiting for, or that it is settled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Held {
    Scored {
        champion: f32,
        challenger: f32,
    },
    Labelled(bool),
    /// Counted, or not this duel's: anything more for it is a duplicate.
    Settled,
}

/// Counts of what a pairing saw, for the log and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairingCounts {
    pub counted: u64,
    pub duplicates: u64,
    pub other_pair: u64,
    pub refused: u64,
    /// Records forgotten (bounds) while still waiting for their partner.
    pub forgotten_waiting: u64,
}

/// The join of one champion's and one challenger's predictions with their labels, and the duel
/// they feed. See the module docs.
#[derive(Debug)]
pub struct Pairing {
    champion: String,
    challenger: String,
    duel: Duel,
    bounds: PairingBounds,
    /// Random keys: nobody can make two ids collide on purpose. By chance, two among 200,000
    /// collide with a probability of about 1e-9.
    hasher: RandomState,
    held: HashMap<u64, Held>,
    /// (timestamp, key) in arrival order, for forgetting.
    order: VecDeque<(i64, u64)>,
    counts: PairingCounts,
}

impl Pairing {
    /// A pairing for the duel of `champion` and `challenger` (model versions).
    pub fn new(
        champion: impl Into<String>,
        challenger: impl Into<String>,
        config: DuelConfig,
        bounds: PairingBounds,
    ) -> Result<Self, DuelError> {
        Ok(Self {
            champion: champion.into(),
            challenger: challenger.into(),
            duel: Duel::new(config)?,
            bounds: PairingBounds {
                records: bounds.records.max(1),
                age_ms: bounds.age_ms.max(0),
            },
            hasher: RandomState::new(),
            held: HashMap::new(),
            order: VecDeque::new(),
            counts: PairingCounts::default(),
        })
    }

    pub fn champion(&self) -> &str {
        &self.champion
    }

    pub fn challenger(&self) -> &str {
        &self.challenger
    }

    /// Whether this pairing is the duel of these two versions.
    pub fn is_between(&self, champion: &str, challenger: &str) -> bool {
        self.champion == champion && self.challenger == challenger
    }

    pub fn duel(&self) -> &Duel {
        &self.duel
    }

    pub fn counts(&self) -> PairingCounts {
        self.counts
    }

    /// Records held now (waiting or settled).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn key(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// A prediction read from the predictions topic at `timestamp_ms`.
    pub fn prediction(&mut self, timestamp_ms: i64, prediction: &Prediction) -> Seen {
        let key = self.key(&prediction.id);
        let shadow = prediction.challenger.as_ref();
        let ours = prediction.model_version == self.champion
            && shadow.is_some_and(|s| s.model_version == self.challenger);
        let seen = match (ours, shadow) {
            (true, Some(shadow)) => {
                let (champion, challenger) =
                    (prediction.churn_probability, shadow.churn_probability);
                if let Err(e) = probabilities(champion, challenger) {
                    self.counts.refused += 1;
                    return Seen::Refused(e);
                }
                match self.held.get(&key).copied() {
                    None => match prediction.actual_churn {
                        Some(label) => self.count(timestamp_ms, key, label, champion, challenger),
                        None => {
                            let scored = Held::Scored {
                                champion: champion as f32,
                                challenger: challenger as f32,
                            };
                            self.hold(timestamp_ms, key, scored);
                            Seen::Waiting
                        }
                    },
                    Some(Held::Labelled(label)) => {
                        self.count(timestamp_ms, key, label, champion, challenger)
                    }
                    Some(Held::Scored { .. } | Held::Settled) => Seen::Duplicate,
                }
            }
            _ => {
                match self.held.get_mut(&key) {
                    None => self.hold(timestamp_ms, key, Held::Settled),
                    // Waiting for a prediction of this duel: one of other models is no partner
                    // (the record was scored again after a switch), and the label is spent.
                    Some(held @ Held::Labelled(_)) => *held = Held::Settled,
                    Some(Held::Scored { .. } | Held::Settled) => {}
                }
                Seen::OtherPair
            }
        };
        match seen {
            Seen::Duplicate => self.counts.duplicates += 1,
            Seen::OtherPair => self.counts.other_pair += 1,
            _ => {}
        }
        seen
    }

    /// An outcome (the true label of record `id`) read from the labels topic at
    /// `timestamp_ms`.
    pub fn outcome(&mut self, timestamp_ms: i64, id: &str, churned: bool) -> Seen {
        let key = self.key(id);
        match self.held.get(&key).copied() {
            None => {
                self.hold(timestamp_ms, key, Held::Labelled(churned));
                Seen::Waiting
            }
            Some(Held::Scored {
                champion,
                challenger,
            }) => self.count(
                timestamp_ms,
                key,
                churned,
                f64::from(champion),
                f64::from(challenger),
            ),
            Some(Held::Labelled(_) | Held::Settled) => {
                self.counts.duplicates += 1;
                Seen::Duplicate
            }
        }
    }

    fn count(
        &mut self,
        timestamp_ms: i64,
        key: u64,
        label: bool,
        champion: f64,
        challenger: f64,
    ) -> Seen {
        // Checked before anything was held, so the duel refuses nothing here; f32 → f64 stays
        // in [0, 1].
        if let Err(e) = self.duel.observe(label, champion, challenger) {
            self.counts.refused += 1;
            return Seen::Refused(e);
        }
        self.counts.counted += 1;
        // Held as settled from now on, so a re-delivery or another outcome for it is a
        // duplicate. (A record counted at once, its label in the prediction, is held from now.)
        self.hold(timestamp_ms, key, Held::Settled);
        Seen::Counted
    }

    fn hold(&mut self, timestamp_ms: i64, key: u64, held: Held) {
        if self.held.insert(key, held).is_none() {
            self.order.push_back((timestamp_ms, key));
        }
        self.forget_beyond_count();
    }

    fn forget_beyond_count(&mut self) {
        while self.held.len() > self.bounds.records {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            if let Some(Held::Scored { .. } | Held::Labelled(_)) = self.held.remove(&key) {
                self.counts.forgotten_waiting += 1;
            }
        }
    }

    /// Forgets records stamped more than the age bound before `now_ms`, oldest first (in
    /// arrival order: one stamped later than those behind it holds them until it goes).
    pub fn forget_older(&mut self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(self.bounds.age_ms);
        while self.order.front().is_some_and(|&(at, _)| at < horizon) {
            self.forget_oldest();
        }
    }
}

fn probabilities(champion: f64, challenger: f64) -> Result<(), DuelError> {
    for (model, value) in [("champion", champion), ("challenger", challenger)] {
        if !(0.0..=1.0).contains(&value) {
            return Err(DuelError::Probability { model, value });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
