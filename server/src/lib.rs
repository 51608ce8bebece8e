//! The churn pipeline's I/O side: the embedded broker, Kafka clients, the replay producer, the
//! scorer service, CSV files, the model store (files and the models topic), and the web server.
//! The `churn` binary (main.rs, one module per command under commands/) wires them up.

pub mod analyze;
pub mod args;
pub mod batch;
pub mod broker;
pub mod csv_io;
pub mod dashboard;
pub mod health;
pub mod hub;
pub mod kafka;
pub mod metrics;
pub mod model_store;
pub mod replay;
pub mod scorer;
pub mod shutdown;
pub mod supervisor;
pub mod web;
