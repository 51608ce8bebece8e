//! Counting one input message (a prediction or a labels message) into its partition's windows,
//! and skipping, with a log line, what cannot be counted.

use std::panic::{catch_unwind, AssertUnwindSafe};

use model::analytics::{Source, WindowAggregator, WindowPartial};
use model::message::outcome_label;
use model::Prediction;

use crate::kafka::SkipLog;
use crate::supervisor::panic_message;

/// Why an input message was not counted.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unusable {
    #[error("not a prediction: {0}")]
    Prediction(serde_json::Error),
    #[error("a labels message needs the record id as its key and a Churn value")]
    Outcome,
}

/// One message as the processor counts it.
pub(super) struct Input<'a> {
    pub(super) source: Source,
    pub(super) offset: i64,
    pub(super) timestamp_ms: i64,
    pub(super) key: Option<&'a [u8]>,
    pub(super) payload: &'a [u8],
}

/// Counts one message into its partition's windows; returns the closed window it revised, if
/// any.
pub(super) fn count(
    aggregator: &mut WindowAggregator,
    input: &Input,
    now_ms: i64,
) -> Result<Option<WindowPartial>, Unusable> {
    let Input {
        source,
        offset,
        timestamp_ms,
        key,
        payload,
    } = *input;
    match source {
        Source::Predictions => {
            let prediction: Prediction =
                serde_json::from_slice(payload).map_err(Unusable::Prediction)?;
            Ok(aggregator.observe(offset, timestamp_ms, now_ms, &prediction))
        }
        Source::Outcomes => match (key.map(String::from_utf8_lossy), outcome_label(payload)) {
            (Some(id), Some(actual)) => {
                Ok(aggregator.observe_outcome(offset, timestamp_ms, now_ms, &id, actual))
            }
            _ => Err(Unusable::Outcome),
        },
    }
}

/// What the processor skipped, each logged without flooding.
pub(super) struct Skipped {
    pub(super) unusable: SkipLog,
    pub(super) panics: SkipLog,
}

impl Default for Skipped {
    fn default() -> Self {
        Skipped {
            unusable: SkipLog::new("analytics: skipping an input message"),
            panics: SkipLog::new("analytics: counting a message panicked (a bug), skipping it"),
        }
    }
}

/// Runs `work` on one message with a panic in it (a bug) caught: that message is skipped and
/// logged, and the stream goes on. The aggregator may keep part of the message's counts; that
/// is all it costs.
pub(super) fn isolated(
    payload: &[u8],
    skipped: &mut Skipped,
    work: impl FnOnce() -> Result<Option<WindowPartial>, Unusable>,
) -> Option<WindowPartial> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(revised)) => revised,
        Ok(Err(unusable)) => {
            skipped.unusable.skip(&unusable, payload);
            None
        }
        Err(panic) => {
            skipped
                .panics
                .skip(&format!("panicked: {}", panic_message(&*panic)), payload);
            None
        }
    }
}
