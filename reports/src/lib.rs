//! Rendering of a ricochet run's results from its `summary.json`.
//!
//! [`model::Summary`] is the versioned schema that `loadgen run --out DIR` writes and
//! every renderer reads.

pub mod model;

pub use model::{SCHEMA_VERSION, Summary};
