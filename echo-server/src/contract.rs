//! What loadgen relies on, typed once: the names and documents the echo-server and its
//! load generator share. Change one here and both sides change.
//!
//! - [`TRACEPARENT`]: the header whose trace id the echo-server continues (its server
//!   span, log line and exemplar carry it), which loadgen injects per request.
//! - [`DURATION_METRIC`]: the request-duration histogram of `/metrics`, whose buckets
//!   carry the trace ids as exemplars and whose `_count` is the server-side request total.
//! - [`Health`]: the `/healthz` document, with the exporter's counters loadgen reads before
//!   and after a run.

use serde::{Deserialize, Serialize};

use crate::ChaosSpec;
use crate::telemetry::ExporterHealth;
pub use crate::telemetry::TRACEPARENT;

/// The request-duration histogram's name (its series are `_bucket`, `_sum`, `_count`).
pub const DURATION_METRIC: &str = "http_server_request_duration_seconds";

/// Routes that are not workload (scrapes and probes), left out of request totals.
pub const NOT_WORKLOAD_ROUTES: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

/// The `GET /healthz` document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// `ok`, or `degraded` while exports fail.
    pub status: String,
    /// `service.name`.
    pub service: String,
    /// The exporter's state and counters.
    pub exporter: ExporterHealth,
    /// The last trace ids the exporter confirmed exported.
    pub exported_trace_ids: Vec<String>,
    /// Request log lines dropped (stdout could not keep up).
    pub request_log_dropped: u64,
    /// The faults in force, if any.
    pub chaos: Option<ChaosSpec>,
}
