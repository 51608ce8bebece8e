//! What readiness (`/readyz`) knows beyond the pipeline's counters.

use std::sync::Mutex;

/// The tasks that failed, and why.
#[derive(Debug, Default)]
pub struct Health {
    failures: Mutex<Vec<String>>,
}

impl Health {
    pub fn record_failure(&self, failure: String) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).push(failure);
    }

    /// Every failure so far, e.g. "scorer ended unexpectedly".
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
