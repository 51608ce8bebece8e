//! What waits to be sent to one browser over the live feed while its socket is busy.
//!
//! Predictions and seconds are news: kept in order, the oldest dropped beyond the limit (a slow
//! browser misses some rather than slowing the pipeline or holding memory). Cards and the
//! challenger are state: a newer one replaces the one still waiting, so a stalled connection
//! holds at most one of each.

use std::collections::VecDeque;

use crate::api::LiveEvent;

pub struct Outbox {
    queue: VecDeque<LiveEvent>,
    limit: usize,
}

impl Outbox {
    /// An outbox holding at most `limit` events (at least one of each kind of state).
    pub fn new(limit: usize) -> Self {
        Outbox {
            queue: VecDeque::new(),
            limit: limit.max(crate::pushed::Card::ALL.len() + 2),
        }
    }

    pub fn push(&mut self, event: LiveEvent) {
        match &event {
            LiveEvent::Card(card, _) => self
                .queue
                .retain(|waiting| !matches!(waiting, LiveEvent::Card(c, _) if c == card)),
            LiveEvent::Challenger(_) => self
                .queue
                .retain(|waiting| !matches!(waiting, LiveEvent::Challenger(_))),
            _ => {}
        }
        self.queue.push_back(event);
        while self.queue.len() > self.limit {
            let news = self
                .queue
                .iter()
                .position(|e| matches!(e, LiveEvent::Prediction(_) | LiveEvent::Second(_)));
            match news {
                Some(oldest) => drop(self.queue.remove(oldest)),
                None => break,
            }
        }
    }

    /// The next event to send, oldest first.
    pub fn pop(&mut self) -> Option<LiveEvent> {
        self.queue.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SecondStats;
    use crate::pushed::Card;

    fn card(card: Card, markup: &str) -> LiveEvent {
        LiveEvent::Card(card, markup.into())
    }

    fn second(second: i64) -> LiveEvent {
        LiveEvent::Second(SecondStats {
            second,
            ..Default::default()
        })
    }

    fn drain(outbox: &mut Outbox) -> Vec<LiveEvent> {
        std::iter::from_fn(|| outbox.pop()).collect()
    }

    #[test]
    fn a_stalled_connection_keeps_only_the_latest_of_each_card() {
        let mut outbox = Outbox::new(256);
        outbox.push(LiveEvent::Snapshot {
            recent: Vec::new(),
            seconds: Vec::new(),
        });
        // Ten minutes of pushes every two seconds, nothing sent meanwhile.
        for n in 0..300 {
            outbox.push(card(Card::Status, &format!("status {n}")));
            outbox.push(card(Card::Dashboard, &format!("body {n}")));
            outbox.push(card(Card::Riskiest, &format!("riskiest {n}")));
            outbox.push(LiveEvent::Challenger(Some(format!("m-{n}"))));
        }
        outbox.push(card(Card::Duel, "duel"));
        assert_eq!(outbox.len(), 6);
        let sent = drain(&mut outbox);
        assert!(
            matches!(sent[0], LiveEvent::Snapshot { .. }),
            "the snapshot stays first"
        );
        for latest in [
            card(Card::Status, "status 299"),
            card(Card::Dashboard, "body 299"),
            card(Card::Riskiest, "riskiest 299"),
            LiveEvent::Challenger(Some("m-299".into())),
            card(Card::Duel, "duel"),
        ] {
            assert!(sent.contains(&latest), "{latest:?} in {sent:?}");
        }
        assert!(outbox.is_empty());
    }

    #[test]
    fn news_is_kept_in_order_and_the_oldest_dropped_beyond_the_limit_but_never_a_card() {
        let mut outbox = Outbox::new(10);
        outbox.push(card(Card::History, "history"));
        for n in 0..100 {
            outbox.push(second(n));
        }
        outbox.push(card(Card::Status, "status"));
        let sent = drain(&mut outbox);
        assert_eq!(sent.len(), 10);
        assert_eq!(
            sent[0],
            card(Card::History, "history"),
            "a card outlives newer news"
        );
        assert_eq!(sent[9], card(Card::Status, "status"));
        let seconds: Vec<_> = sent[1..9]
            .iter()
            .map(|e| match e {
                LiveEvent::Second(s) => s.second,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            seconds,
            (92..100).collect::<Vec<_>>(),
            "the newest, in order"
        );
    }

    #[test]
    fn a_limit_too_small_still_holds_every_kind_of_state() {
        let mut outbox = Outbox::new(0);
        for kind in Card::ALL {
            outbox.push(card(kind, "x"));
        }
        outbox.push(LiveEvent::Challenger(None));
        outbox.push(second(1));
        outbox.push(second(2));
        let sent = drain(&mut outbox);
        assert_eq!(sent.len(), Card::ALL.len() + 2);
        assert_eq!(sent.last(), Some(&second(2)));
    }
}
