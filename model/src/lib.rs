//! The churn domain, pure: schema, validation, features, scoring and explanations, metrics.
//! No I/O, so the same rules compile into the scorer and into the browser (wasm32).
//! Training and synthetic data live behind the `train` feature to keep linfa out of the bundle.

pub mod analytics;
pub mod features;
pub mod message;
pub mod metrics;
pub mod record;
pub mod schema;
pub mod scoring;
pub mod segments;
pub mod validate;

#[cfg(feature = "train")]
pub mod synth;
#[cfg(feature = "train")]
pub mod train;

pub use features::Feature;
pub use message::Prediction;
pub use schema::{Customer, Field, RawCustomer, Scalar};
pub use scoring::{describe_all, ChurnModel, Contribution, ModelFileError, Score};
pub use validate::{validate, validate_field, FieldError, ValidationErrors};
