//! ricochet's load generator.
//!
//! `loadgen run scenario.yaml` turns a `LoadTest` document into a validated [`plan::Plan`],
//! drives it open-model (latency measured from each request's scheduled instant), judges
//! k6-style [`thresholds`] and exits 0 (passed), 1 (a threshold failed), 2 (invalid
//! input) or 3 (the run could not be carried out).

pub mod cli;
pub mod duration;
pub mod load;
pub mod plan;
pub mod thresholds;

// The run side: schedules, hot loop, measurements, thresholds judged, summary.
pub mod aggregate;
pub mod chaos;
pub mod client;
pub mod embedded;
pub mod evaluate;
mod h1;
pub mod progress;
pub mod reporting;
pub mod roundtrip;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod summary;
pub mod testing;
pub mod worker;

// Telemetry round trip: backend verifiers and the embedded OTLP sink.
pub mod sink;
pub mod verify;

// In cluster: `loadgen operator` (LoadTestRun controller, schedules, exact merges).
pub mod operator;

pub use load::load_plan;
pub use plan::{Overrides, Plan, PlanError};
