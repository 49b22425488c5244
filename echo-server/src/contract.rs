//! What loadgen relies on, typed once: the names and documents the echo-server and its
//! load generator share. Change one here and both sides change.
//!
//! - [`TRACEPARENT`]: the header whose trace id the echo-server continues (its server
//!   span, log line and exemplar carry it), which loadgen injects per request.
//! - [`DURATION_METRIC`]: the request-duration histogram of `/metrics`, whose buckets
//!   carry the trace ids as exemplars and whose `_count` is the server-side request total.
//! - [`Health`]: the `/healthz` document, with the exporter's counters loadgen reads before
//!   and after a run.
//! - [`RUN_HEADER`], [`RunAccount`], [`TraceFates`]: run accounting, per run and per trace
//!   id, at `GET /runs/{run}` and `GET /runs/{run}/traces?ids=…`; [`REPLICA_HEADER`] names
//!   the replica that answered; [`PROBE_HEADER`] / [`PROBE_METRIC`]: metric probes.

use serde::{Deserialize, Serialize};

use crate::ChaosSpec;
use crate::telemetry::ExporterHealth;
pub use crate::telemetry::TRACEPARENT;

/// The request-duration histogram's name (its series are `_bucket`, `_sum`, `_count`).
pub const DURATION_METRIC: &str = "http_server_request_duration_seconds";

/// Routes that are not workload (scrapes and probes), left out of request totals. The run
/// accounting routes (`/runs/…`) are not recorded in the metrics at all.
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

/// The request header naming the run a request belongs to (loadgen sends its run id on
/// every request). The echo-server accounts per run: [`RunAccount`] at `GET /runs/{run}`,
/// [`TraceFates`] at `GET /runs/{run}/traces?ids=…`. Requests without it are not tracked.
pub const RUN_HEADER: &str = "x-ricochet-run";

/// The response header in which the echo-server names itself: the replica that served the
/// request (`--replica`, else `POD_NAME`, else the host name).
pub const REPLICA_HEADER: &str = "x-ricochet-replica";

/// The request header that makes a request a metric probe: its value is a slot number
/// below [`PROBE_SLOTS`]. The echo-server counts it in [`PROBE_METRIC`]`{slot, replica}`
/// with the request's trace id as that series' exemplar.
pub const PROBE_HEADER: &str = "x-ricochet-probe";

/// The probe counter: one series per slot and replica, each carrying the last probe's
/// trace id as its exemplar.
pub const PROBE_METRIC: &str = "ricochet_probe_requests_total";

/// Probe slots, and so the most probe series one replica exposes.
pub const PROBE_SLOTS: u16 = 64;

/// Longest run id the echo-server accepts in [`RUN_HEADER`] (longer ones are not
/// tracked); a run id is 1 to 64 characters of `[A-Za-z0-9._-]`.
pub const MAX_RUN_ID_LEN: usize = 64;

/// Most trace ids one `GET /runs/{run}/traces?ids=…` may ask about.
pub const MAX_FATE_IDS: usize = 256;

/// Export counters of one signal for one run, on one replica.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunExports {
    /// Items (spans, log records) the run's requests produced.
    pub emitted: u64,
    /// Items in exports the backend acknowledged.
    pub accepted: u64,
    /// Items in exports the backend refused (after retries): 429, 5xx, gRPC
    /// `RESOURCE_EXHAUSTED`/`UNAVAILABLE`, or any other refusal.
    pub refused: u64,
    /// Items dropped before export because the queue was full.
    pub dropped: u64,
    /// Items chaos dropped on purpose (`dropTelemetry`): injected loss.
    pub chaos_dropped: u64,
}

/// `GET /runs/{run}`: what one replica did for one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunAccount {
    /// The replica that answers (as in [`REPLICA_HEADER`]).
    pub replica: String,
    /// The run id asked about.
    pub run: String,
    /// Workload requests of the run this replica served.
    pub requests: u64,
    /// Of those, requests whose telemetry chaos dropped on purpose.
    pub chaos_dropped_requests: u64,
    /// Spans.
    pub spans: RunExports,
    /// Log records.
    pub logs: RunExports,
    /// The latest export refusal that hit the run's items (`traces: …` or `logs: …`), if
    /// any.
    #[serde(default)]
    pub last_refusal: Option<String>,
}

/// What became of one signal's items of one traced request.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fate {
    /// Items produced.
    pub emitted: u32,
    /// Items acknowledged by the backend.
    pub accepted: u32,
    /// Items refused by the backend.
    pub refused: u32,
    /// Items dropped before export (queue full).
    pub dropped: u32,
    /// Items chaos dropped on purpose.
    pub chaos_dropped: u32,
    /// When the last acknowledged export carrying its items was acknowledged (Unix ns).
    pub acked_at_unix_nanos: Option<u64>,
}

impl Fate {
    /// Items still waiting for their export's answer.
    pub fn pending(&self) -> u32 {
        self.emitted
            .saturating_sub(self.accepted + self.refused + self.dropped + self.chaos_dropped)
    }
}

/// One trace id's fate on one replica.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TraceFate {
    /// The trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// Its spans.
    pub spans: Fate,
    /// Its log records.
    pub logs: Fate,
}

/// `GET /runs/{run}/traces?ids=a,b,…`: the fates this replica knows of the ids asked; an
/// id it never served (or no longer remembers) is absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TraceFates {
    /// The replica that answers.
    pub replica: String,
    /// The run id asked about.
    pub run: String,
    /// The known fates, in no particular order.
    pub fates: Vec<TraceFate>,
}
