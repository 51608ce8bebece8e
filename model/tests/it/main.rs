//! The model crate's integration tests, in one binary (one link instead of one per file): the
//! record parser and validator's properties, and the scorer's whole per-record path.

mod properties;
mod support;
mod whole_path;
