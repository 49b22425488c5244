//! Where a run reports while it goes: a [`Snapshot`] per tick and [`Notice`]s (chaos
//! faults that could not be applied, the wait for telemetry to settle). The engine never
//! prints; the command line shows these on the terminal, a runner pod in its log.

use std::fmt;
use std::time::Duration;

/// What the collector knows at a tick.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// Since the run's start.
    pub elapsed: Duration,
    /// Planned run length.
    pub planned: Duration,
    /// Completed requests so far.
    pub requests: u64,
    /// Requests per second over the last tick.
    pub achieved_rps: f64,
    /// Planned arrivals per second now (open-model scenarios), if any.
    pub target_rps: Option<f64>,
    /// Failed requests so far.
    pub errors: u64,
    /// Dropped iterations so far.
    pub dropped: u64,
    /// p99 of `http_req_duration` so far, ms.
    pub p99_ms: Option<f64>,
}

impl Snapshot {
    /// One line: requests, rate achieved / planned, errors, dropped, p99.
    pub fn line(&self) -> String {
        let target = self
            .target_rps
            .map_or(String::new(), |t| format!("/{t:.0}"));
        let p99 = self.p99_ms.map_or("-".into(), |p| format!("{p:.2}ms"));
        format!(
            "{} reqs, {:.0}{target} req/s, {} errors, {} dropped, p99 {p99}",
            self.requests, self.achieved_rps, self.errors, self.dropped
        )
    }
}

/// Something the user should know while the run goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A chaos fault could not be applied or cleared (the run goes on).
    Chaos(String),
    /// The echo-server's exporter counters could not be read (the summary leaves them
    /// out).
    Exporter(String),
    /// A live output lost pushes (the load went on regardless).
    Output(String),
    /// The load finished; the run waits up to `settle_timeout` for the sampled requests'
    /// telemetry.
    Settling {
        /// The longest wait.
        settle_timeout: Duration,
    },
    /// The load finished; the run watches the drilled alerts until each is decided, at
    /// most this much longer.
    WatchingAlerts {
        /// The longest wait.
        at_most: Duration,
    },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chaos(e) => write!(f, "chaos: {e}"),
            Self::Exporter(e) => write!(f, "telemetry: {e}"),
            Self::Output(e) => write!(f, "output: {e}"),
            Self::Settling { settle_timeout } => write!(
                f,
                "load finished; waiting up to {} for the sampled requests' telemetry to settle (Ctrl-C to stop waiting)",
                crate::duration::format_duration(*settle_timeout)
            ),
            Self::WatchingAlerts { at_most } => write!(
                f,
                "load finished; watching the drilled alerts until each fired, notified and resolved as expected, at most {} more (Ctrl-C to stop waiting)",
                crate::duration::format_duration(*at_most)
            ),
        }
    }
}

/// Receives a run's progress. Every method has a default that does nothing.
pub trait ProgressSink: Send + Sync + fmt::Debug {
    /// A collection tick.
    fn update(&self, _snapshot: &Snapshot) {}
    /// The load has ended (before telemetry settles).
    fn finish(&self) {}
    /// A notice.
    fn notice(&self, _notice: &Notice) {}
}

/// A sink that drops everything (tests, library callers).
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl ProgressSink for Silent {}
