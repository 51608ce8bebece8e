//! The churn domain, pure: schema, validation, features, the model file, scoring and
//! explanations, quality measures, stream analytics.
//! No I/O, so the same rules compile into the scorer and into the browser (wasm32).
//! Training and synthetic data live behind the `train` feature to keep linfa out of the bundle.
//!
//! Module order, each using only earlier ones (format and spreadsheet use none):
//! schema → validate → features → quality → model_file ⇄ integrity (its seal) → scoring → segments → message → record → analytics → duel → lifecycle → synth → concept_drift → train

pub mod analytics;
pub mod duel;
pub mod features;
pub mod format;
pub mod integrity;
pub mod lifecycle;
pub mod message;
pub mod model_file;
pub mod quality;
pub mod record;
pub mod schema;
pub mod scoring;
pub mod segments;
pub mod spreadsheet;
pub mod validate;

#[cfg(feature = "train")]
pub mod concept_drift;
#[cfg(feature = "train")]
pub mod synth;
#[cfg(feature = "train")]
pub mod train;

pub use features::Feature;
pub use integrity::SigningKey;
pub use lifecycle::Lineup;
pub use message::Prediction;
pub use model_file::{ChurnModel, ModelFileError};
pub use schema::{Customer, Field, RawCustomer, Scalar};
pub use scoring::{describe_all, Contribution, Score};
pub use validate::{validate, validate_field, FieldError, ValidationErrors};
