//! The churn pipeline's I/O side: the embedded broker, Kafka clients, the replay producer, the
//! scorer service, CSV files, the model store (files and the models topic), and the web server.
//! The `churn` binary (main.rs, one module per command under commands/) wires them up.

pub mod analytics;
pub mod args;
pub mod auth;
pub mod backend;
pub mod broker;
pub mod csv_io;
pub mod csv_scoring;
pub mod error_id;
pub mod health;
pub mod kafka;
pub mod labelled;
pub mod lag_monitor;
pub mod live_feed;
pub mod metrics;
pub mod model_store;
pub mod referee;
pub mod replay;
pub mod replies;
pub mod scorer;
pub mod shutdown;
pub mod signing_key;
pub mod stats_view;
pub mod storage_monitor;
pub mod supervisor;
pub mod web;
