//! The integration tests, in one binary (one link, one process): the pipeline on a real broker
//! process and the real `churn` binary. `cargo test -p server --test it reliability::` runs one
//! module's tests.
//!
//! Tests run in parallel threads of this one process: each starts its own broker on its own port
//! (`support::pipeline`), so topics, groups and offsets are the test's own; child processes get
//! their settings as arguments and environment of their own, never this process's. The first
//! failure ends the whole binary (see `support::fail_fast_on_panic`).

mod analytics;
mod config;
mod hostile;
mod inspect;
mod model_store;
mod pipeline;
mod promotion;
mod reliability;
mod retrain;
mod secured;
mod stops;
mod support;
mod web_tier;
