//! The `LoadTest` custom resource (`ricochet.dev/v1alpha1`), in the style of the k6 Operator.
//!
//! The same document runs locally (`loadgen run scenario.yaml`) and in a cluster
//! (`kubectl apply -f scenario.yaml`). These types mirror what the user wrote; unknown
//! fields are errors. Typed, validated values (durations, rates) are derived from them by
//! `loadgen`'s `Plan`.

mod spec;

pub use spec::*;

/// The `apiVersion` of a `LoadTest` document.
pub const API_VERSION: &str = "ricochet.dev/v1alpha1";

/// The `kind` of a `LoadTest` document.
pub const KIND: &str = "LoadTest";
