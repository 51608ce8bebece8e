//! Joining customer records with their labels, in bounded memory, without Kafka: the outcomes
//! are gathered first, then each record is validated, labelled and kept if it is among the
//! newest `max_records`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use model::message::outcome_label;
use model::record::MAX_RECORD_BYTES;
use model::{validate, Customer, RawCustomer};

/// Where a message sits, for "newest": its timestamp (ms), then partition and offset, so that
/// ties have one order.
pub type Position = (i64, i32, i64);

/// The `capacity` newest items seen, by position; older ones are let go as newer arrive.
struct Newest<T> {
    capacity: usize,
    heap: BinaryHeap<Reverse<Entry<T>>>,
}

struct Entry<T> {
    at: Position,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl<T> Newest<T> {
    fn new(capacity: usize) -> Self {
        Newest {
            capacity,
            heap: BinaryHeap::new(),
        }
    }

    /// Keeps `item` if it is among the newest; returns whether one (it or an older one) was
    /// let go.
    fn push(&mut self, at: Position, item: T) -> bool {
        if self.heap.len() < self.capacity {
            self.heap.push(Reverse(Entry { at, item }));
            return false;
        }
        match self.heap.peek() {
            Some(Reverse(oldest)) if oldest.at < at => {
                self.heap.pop();
                self.heap.push(Reverse(Entry { at, item }));
            }
            _ => {}
        }
        true
    }

    /// Oldest first.
    fn into_sorted(self) -> Vec<(Position, T)> {
        let mut all: Vec<_> = self
            .heap
            .into_iter()
            .map(|Reverse(e)| (e.at, e.item))
            .collect();
        all.sort_by_key(|(at, _)| *at);
        all
    }
}

/// What reading and joining found, for the person running it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinCounts {
    /// Input records read in the window.
    pub records: u64,
    /// Records that are not a valid customer (not JSON, too large, a bad field): skipped.
    pub invalid: u64,
    /// Valid records with no label (no `Churn` of their own, no outcome): skipped.
    pub unlabelled: u64,
    /// Labelled by their own `Churn` field.
    pub by_record: u64,
    /// Labelled by an outcome.
    pub by_outcome: u64,
    /// Of those, records whose own `Churn` said otherwise (the outcome won).
    pub outcome_overrode_record: u64,
    /// Labelled records let go because newer ones filled `max_records`.
    pub over_limit: u64,
    /// Outcome messages read in the window.
    pub outcomes: u64,
    /// Outcome messages without a record id key or a readable `Churn`: skipped.
    pub outcomes_unusable: u64,
    /// Outcomes let go because newer ones filled `max_records`.
    pub outcomes_over_limit: u64,
}

/// The outcomes of a window: at most `capacity`, the newest; a record id's latest outcome wins.
pub struct Outcomes {
    newest: Newest<(String, bool)>,
    counts: JoinCounts,
}

impl Outcomes {
    pub fn new(capacity: usize) -> Self {
        Outcomes {
            newest: Newest::new(capacity),
            counts: JoinCounts::default(),
        }
    }

    /// One labels message: keyed by the record id, `{"Churn": 1}` as its value.
    pub fn add(&mut self, at: Position, key: Option<&[u8]>, payload: Option<&[u8]>) {
        self.counts.outcomes += 1;
        let id = key
            .and_then(|k| std::str::from_utf8(k).ok())
            .filter(|k| !k.trim().is_empty() && k.len() <= model::record::MAX_KEY_BYTES);
        match (id, payload.and_then(outcome_label)) {
            (Some(id), Some(churned)) => {
                if self.newest.push(at, (id.to_owned(), churned)) {
                    self.counts.outcomes_over_limit += 1;
                }
            }
            _ => self.counts.outcomes_unusable += 1,
        }
    }

    /// Ready to label records: id → outcome.
    pub fn into_joiner(self, max_records: usize) -> Joiner {
        let by_id = self
            .newest
            .into_sorted()
            .into_iter()
            .map(|(_, outcome)| outcome)
            .collect();
        Joiner {
            outcomes: by_id,
            kept: Newest::new(max_records),
            counts: self.counts,
        }
    }
}

/// Labels records as they are read and keeps the newest `max_records` labelled ones.
pub struct Joiner {
    outcomes: HashMap<String, bool>,
    kept: Newest<Customer>,
    counts: JoinCounts,
}

impl Joiner {
    /// Without outcomes: only records with their own `Churn` are labelled.
    pub fn records_only(max_records: usize) -> Self {
        Outcomes::new(0).into_joiner(max_records)
    }

    /// One input record: `id` is its record id (`server::scorer::record_id`).
    pub fn add(&mut self, at: Position, id: &str, payload: Option<&[u8]>) {
        self.counts.records += 1;
        let Some(mut customer) = parse(payload) else {
            self.counts.invalid += 1;
            return;
        };
        // An outcome wins over the record's own field: it was observed after the record was
        // sent, and it is what the live quality figures and the duel count too.
        let label = match (self.outcomes.get(id), customer.churn) {
            (Some(&outcome), own) => {
                self.counts.by_outcome += 1;
                if own.is_some_and(|own| own != outcome) {
                    self.counts.outcome_overrode_record += 1;
                }
                outcome
            }
            (None, Some(own)) => {
                self.counts.by_record += 1;
                own
            }
            (None, None) => {
                self.counts.unlabelled += 1;
                return;
            }
        };
        customer.churn = Some(label);
        if self.kept.push(at, customer) {
            self.counts.over_limit += 1;
        }
    }

    /// The labelled customers kept, oldest first, and the counts.
    pub fn finish(self) -> (Vec<Customer>, JoinCounts) {
        let customers = self
            .kept
            .into_sorted()
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        (customers, self.counts)
    }
}

/// A valid customer, or nothing: the scorer's rules (size, JSON, every field).
fn parse(payload: Option<&[u8]>) -> Option<Customer> {
    let payload = payload.filter(|p| !p.is_empty() && p.len() <= MAX_RECORD_BYTES)?;
    let raw: RawCustomer = serde_json::from_slice(payload).ok()?;
    validate(&raw).ok()
}
