//! Whether this process is ready (`/readyz`): its scorer holds partitions, the broker answers,
//! a model is loaded, and none of its tasks failed. Counters live in the metrics, not here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What readiness knows. One per process, shared by its tasks (the supervisor owns it).
#[derive(Debug)]
pub struct Health {
    /// The tasks that failed: their names, and why.
    failures: Mutex<Vec<(String, String)>>,
    /// True while this process's scorer holds at least one input partition.
    assigned: AtomicBool,
    /// True once this process's scorer has held a partition (tests check both scorers worked).
    ever_assigned: AtomicBool,
    /// Whether the broker answered the last probe.
    broker_ok: AtomicBool,
    /// Whether this process's scorer has a model.
    model_loaded: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            failures: Mutex::default(),
            assigned: AtomicBool::new(false),
            ever_assigned: AtomicBool::new(false),
            // Reachable until a probe says otherwise: the commands check the broker before starting.
            broker_ok: AtomicBool::new(true),
            model_loaded: AtomicBool::new(false),
        }
    }
}

/// The readiness answer: the body of `/readyz` (field names are an interface: keep them).
/// Fields in alphabetical order, the order the body has always had. `/readyz` is open to anyone:
/// it holds statuses and task names only, never an error's text (broker addresses, topic names,
/// librdkafka's words), which stays in the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    pub broker_reachable: bool,
    pub consumer_assigned: bool,
    /// The names of the tasks that failed, e.g. "scorer".
    pub failed_tasks: Vec<String>,
    pub model_loaded: bool,
}

impl Readiness {
    /// Ready: 200; otherwise 503.
    pub fn is_ready(&self) -> bool {
        self.broker_reachable
            && self.consumer_assigned
            && self.model_loaded
            && self.failed_tasks.is_empty()
    }
}

impl Health {
    /// Records that `task` failed, and why (for the log and the command's exit, not for `/readyz`).
    pub fn record_failure(&self, task: &str, failure: String) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((task.to_owned(), failure));
    }

    /// Every failure so far, e.g. "scorer ended unexpectedly".
    pub fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, failure)| failure.clone())
            .collect()
    }

    /// The names of the tasks that failed so far.
    pub fn failed_tasks(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(task, _)| task.clone())
            .collect()
    }

    /// Whether the scorer holds partitions now (after each rebalance).
    pub fn set_assigned(&self, held: bool) {
        self.assigned.store(held, Ordering::SeqCst);
        if held {
            self.ever_assigned.store(true, Ordering::SeqCst);
        }
    }

    pub fn assigned(&self) -> bool {
        self.assigned.load(Ordering::SeqCst)
    }

    pub fn ever_assigned(&self) -> bool {
        self.ever_assigned.load(Ordering::SeqCst)
    }

    pub fn set_broker_ok(&self, ok: bool) {
        self.broker_ok.store(ok, Ordering::Relaxed);
    }

    pub fn broker_ok(&self) -> bool {
        self.broker_ok.load(Ordering::Relaxed)
    }

    /// The scorer's model, by version (empty: none yet).
    pub fn set_model_version(&self, version: &str) {
        self.model_loaded
            .store(!version.is_empty(), Ordering::Relaxed);
    }

    pub fn model_loaded(&self) -> bool {
        self.model_loaded.load(Ordering::Relaxed)
    }

    /// The readiness answer. Without a scorer in this process (`runs_scorer` false), neither
    /// partitions nor a model are required.
    pub fn readiness(&self, runs_scorer: bool) -> Readiness {
        Readiness {
            broker_reachable: self.broker_ok(),
            consumer_assigned: !runs_scorer || self.assigned(),
            failed_tasks: self.failed_tasks(),
            model_loaded: !runs_scorer || self.model_loaded(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoring() -> Health {
        let health = Health::default();
        health.set_assigned(true);
        health.set_model_version("m-1");
        health
    }

    #[test]
    fn ready_when_the_scorer_holds_partitions_with_a_model_and_the_broker_answers() {
        let readiness = scoring().readiness(true);
        assert!(readiness.is_ready());
        let body = serde_json::to_value(&readiness).unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "broker_reachable": true, "model_loaded": true, "consumer_assigned": true, "failed_tasks": [] })
        );
    }

    #[test]
    fn each_missing_condition_makes_it_unready() {
        let fresh = Health::default();
        let readiness = fresh.readiness(true);
        assert!(!readiness.is_ready());
        assert!(
            readiness.broker_reachable && !readiness.consumer_assigned && !readiness.model_loaded
        );

        let broker_away = scoring();
        broker_away.set_broker_ok(false);
        assert!(!broker_away.readiness(true).is_ready());

        let revoked = scoring();
        revoked.set_assigned(false);
        assert!(!revoked.readiness(true).is_ready());
        assert!(revoked.ever_assigned(), "it did hold partitions once");

        let failed = scoring();
        failed.record_failure(
            "replies reader",
            "replies reader panicked: poisoned lock".into(),
        );
        let readiness = failed.readiness(true);
        assert!(!readiness.is_ready());
        assert_eq!(readiness.failed_tasks, vec!["replies reader".to_owned()]);
        assert_eq!(
            failed.failures(),
            vec!["replies reader panicked: poisoned lock".to_owned()]
        );
    }

    #[test]
    fn the_body_never_carries_an_error_text() {
        let health = scoring();
        let detail = "KafkaError (Client creation error: Connect to ipv4#10.0.0.7:9092 failed: \
                      Connection refused) on topic costumerchurn";
        health.record_failure("scorer", format!("scorer failed: {detail}"));
        health.set_broker_ok(false);
        let body = serde_json::to_string(&health.readiness(true)).unwrap();
        for secret in ["10.0.0.7", "9092", "Kafka", "costumerchurn", "refused"] {
            assert!(!body.contains(secret), "{secret} in {body}");
        }
        assert!(body.contains(r#""failed_tasks":["scorer"]"#), "{body}");
    }

    #[test]
    fn without_a_scorer_partitions_and_a_model_are_not_required() {
        let web_only = Health::default();
        assert!(web_only.readiness(false).is_ready());
        web_only.set_broker_ok(false);
        assert!(!web_only.readiness(false).is_ready());
    }

    #[test]
    fn the_body_keeps_its_field_order() {
        let text = serde_json::to_string(&Health::default().readiness(false)).unwrap();
        assert_eq!(
            text,
            r#"{"broker_reachable":true,"consumer_assigned":true,"failed_tasks":[],"model_loaded":true}"#
        );
    }
}
