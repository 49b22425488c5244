//! `ricochet-engine`: a `LoadTest` spec in, a run's outcome out.
//!
//! [`load::load_plan`] turns a `LoadTest` document into a validated [`plan::Plan`]
//! (located errors: file, line, column, field, what is valid); [`run::execute`] drives it
//! open-model, each request measured from its scheduled instant, judges k6-style
//! [`thresholds`] live and at the end, verifies the telemetry round trip through
//! `ricochet-verify`, and returns a [`run::RunOutcome`] with its [`Exit`] code;
//! `summary.json` and the other reports are written on every exit path once the run
//! started.
//!
//! This package holds the hot loop, so it links neither Kubernetes (kube, its runtime,
//! croner) nor gRPC (tonic) nor a command-line parser: the operator and the `loadgen`
//! binary sit above it. It depends on `ricochet-verify`, `ricochet-crds` (the document's
//! types), `ricochet-reports` (the summary model) and `echo-server` (the embedded target).
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use ricochet_engine::{Overrides, load_plan, run::{RunOptions, Stopper, execute}};
//! let plan = load_plan("scenarios/smoke.yaml".as_ref(), &Overrides::default()).unwrap();
//! let report = execute(&plan, &RunOptions::default(), Arc::new(Stopper::new())).await.unwrap();
//! println!("{:?}", report.exit);
//! # }
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod duration;
pub mod load;
pub mod metric;
pub mod plan;
pub mod segment;
pub mod thresholds;

pub mod accounting;
pub mod aggregate;
pub mod canary;
pub mod chaos;
pub mod client;
pub mod embedded;
pub mod evaluate;
mod h1;
pub mod judge;
pub mod live;
pub mod platform;
pub mod progress;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod summary;
pub mod telemetry;
pub mod tls;
pub mod worker;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;

/// Entry points for the fuzz harness (`ricochet-fuzz`); not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use load::load_plan;
pub use plan::{Overrides, Plan, PlanError};

/// How a run or a command ended, as the process exit code a CI gate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exit {
    /// 0: every threshold passed.
    Passed,
    /// 1: a threshold failed (or a comparison found a regression).
    ThresholdFailed,
    /// 2: the input was invalid (scenario, flags, a summary that cannot be read).
    InvalidInput,
    /// 3: the run could not be carried out (target, infrastructure, writing reports).
    RunFailed,
}

impl Exit {
    /// The process exit code: 0, 1, 2 or 3.
    pub fn code(self) -> u8 {
        match self {
            Self::Passed => 0,
            Self::ThresholdFailed => 1,
            Self::InvalidInput => 2,
            Self::RunFailed => 3,
        }
    }
}
