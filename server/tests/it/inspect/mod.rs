//! The look-inside commands (`churn topics`, `tail`, `groups`) and bounded disk (retention), on a
//! real broker process.

mod groups;
mod retention;
mod tail;
mod topics;
