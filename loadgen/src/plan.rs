//! A `LoadTest` spec validated into typed values: the [`Plan`] the engine runs.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::thresholds::Threshold;

/// A validated load test, ready to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The LoadTest's `metadata.name` (or the file stem when absent).
    pub name: String,
    /// The scenario file, when loaded from one.
    pub source: Option<PathBuf>,
    /// Where the load goes.
    pub target: TargetPlan,
    /// The GA multiplier in force, when rates derive from `traffic`.
    pub multiplier: Option<f64>,
    /// Scenarios, run in parallel.
    pub scenarios: Vec<ScenarioPlan>,
    /// Thresholds, in the order written.
    pub thresholds: Vec<Threshold>,
}

/// Where the load goes.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetPlan {
    /// An echo-server started in-process on an ephemeral loopback port.
    Embedded,
    /// A running service.
    Url(TargetUrl),
}

/// A running service and how to talk to it.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetUrl {
    /// Base URI (scheme, authority, optional path prefix).
    pub base: http::Uri,
    /// Speak HTTP/2 (prior knowledge) instead of HTTP/1.1.
    pub http2: bool,
    /// Upper bound of open connections per scenario.
    pub max_connections: NonZeroU32,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// One scenario, validated.
#[derive(Clone, Debug)]
pub struct ScenarioPlan {
    /// Unique name (`scenario` tag).
    pub name: String,
    /// How iterations are scheduled.
    pub executor: Executor,
    /// Offset from the run's start.
    pub start_time: Duration,
    /// Time granted to in-flight iterations after the scenario ends.
    pub graceful_stop: Duration,
    /// Bound on concurrent iterations; beyond it iterations are dropped and counted.
    pub max_in_flight: NonZeroU32,
    /// Extra tags on every sample.
    pub tags: BTreeMap<String, String>,
    /// Requests, picked per iteration by weight.
    pub requests: Vec<RequestPlan>,
}

/// How a scenario schedules iterations.
#[derive(Clone, Debug, PartialEq)]
pub enum Executor {
    /// A fixed arrival rate (iterations per second, finite and > 0) for a duration.
    ConstantArrivalRate {
        /// Iterations per second.
        rate: f64,
        /// How long.
        duration: Duration,
    },
    /// An arrival rate ramped linearly through stages.
    RampingArrivalRate {
        /// Rate at the start (iterations per second, >= 0).
        start_rate: f64,
        /// Stages; `target` is a rate.
        stages: Vec<StagePlan>,
    },
    /// A fixed number of closed-loop virtual users for a duration.
    ConstantVus {
        /// Virtual users.
        vus: NonZeroU32,
        /// How long.
        duration: Duration,
    },
    /// A number of closed-loop virtual users ramped through stages.
    RampingVus {
        /// VUs at the start.
        start_vus: u32,
        /// Stages; `target` is a number of VUs.
        stages: Vec<StagePlan>,
    },
}

/// One stage of a ramping executor.
#[derive(Clone, Debug, PartialEq)]
pub struct StagePlan {
    /// Rate or VUs reached at the end of the stage (finite, >= 0).
    pub target: f64,
    /// Length of the stage.
    pub duration: Duration,
    /// Phase name that thresholds can be scoped to.
    pub name: Option<String>,
}

/// One request, validated.
#[derive(Clone, Debug)]
pub struct RequestPlan {
    /// Name (`name` tag).
    pub name: String,
    /// HTTP method.
    pub method: http::Method,
    /// Path and query appended to the target's base.
    pub path_and_query: String,
    /// Extra headers.
    pub headers: http::HeaderMap,
    /// Body (inline or read from `bodyFile`), empty when none.
    pub body: Bytes,
    /// Relative weight (>= 1).
    pub weight: NonZeroU32,
    /// Record time to first and last byte of a streamed response.
    pub stream: bool,
}
