//! The `summary.json` schema: one run's results, versioned by [`SCHEMA_VERSION`].
//!
//! All durations and latencies are in milliseconds (`f64`); times within the run are
//! seconds since the run started. Adding an optional field keeps the version; renaming,
//! removing or changing the meaning of a field bumps it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The version of the schema this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// One run's results.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Always [`SCHEMA_VERSION`] for summaries this crate writes.
    pub schema_version: u32,
    /// What ran, when, against what, and how it ended.
    pub run: RunInfo,
    /// Per-scenario configuration, latency distribution and time series.
    pub scenarios: Vec<ScenarioSummary>,
    /// Every metric, keyed by name with an optional tag set in k6 syntax,
    /// e.g. `http_req_duration` or `http_req_duration{scenario:api}`.
    pub metrics: BTreeMap<String, MetricSummary>,
    /// Each threshold's verdict.
    pub thresholds: Vec<ThresholdResult>,
    /// Iterations not started: `maxInFlight` was reached, or the scenario ended before the
    /// dispatcher got to them (all scenarios).
    pub dropped_iterations: u64,
    /// Whole-run time series, one point per second (per `widthSecs` seconds in long
    /// runs, see [`TimePoint`]).
    pub time_series: Vec<TimePoint>,
    /// Telemetry round-trip results, when verification ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetrySummary>,
    /// Faults applied during the run, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chaos: Vec<ChaosEvent>,
    /// The platform's own signals: query series and alert drills, when the plan has
    /// `queries` or `alerts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSummary>,
    /// What each live output (`spec.output`, `--output`) took of loadgen's metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputReport>,
}

/// One live output's account of the run: batches pushed, failed and dropped.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputReport {
    /// Protocol and URL, never credentials (`remote-write http://prom:9090/api/v1/write`).
    pub target: String,
    /// Batches the endpoint accepted.
    pub batches_sent: u64,
    /// Batches tried and not accepted (refused, or still failing at their next flush).
    pub batches_failed: u64,
    /// Batches never tried: the queue was full (the endpoint too slow or down).
    pub batches_dropped: u64,
    /// Samples (remote write) or data points (OTLP) accepted.
    pub samples_sent: u64,
    /// The first reason something went wrong, naming the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Run metadata and outcome.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    /// The LoadTest's `metadata.name`.
    pub name: String,
    /// The scenario file the run was started from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Target base URL (the embedded echo-server's loopback URL when embedded).
    pub target: String,
    /// Whether the target was the embedded echo-server.
    pub embedded: bool,
    /// Version of the loadgen that ran.
    pub loadgen_version: String,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// End, RFC 3339 UTC.
    pub ended_at: String,
    /// Wall-clock duration in seconds.
    pub duration_secs: f64,
    /// Total planned arrival rate at full load (requests per second), if open-model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rps: Option<f64>,
    /// The GA multiplier in force, if the plan derives from `traffic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// How arrival-rate scenarios waited for each arrival (`spin` or `sleep`), which
    /// bounds `http_req_schedule_lag`; absent without arrival-rate scenarios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacing: Option<String>,
    /// How the run ended.
    pub outcome: Outcome,
    /// The process exit code the outcome maps to (0, 1 or 3).
    pub exit_code: u8,
    /// Why the run ended early, if it did (abortOnFail, signal, target failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// The target's TLS certificate went unverified (`spec.target.insecureSkipVerify`):
    /// whoever answered was measured, whether or not it was the service.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// How a run ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Every threshold passed.
    Passed,
    /// At least one threshold failed (or could not be judged: unknown fails closed).
    Failed,
    /// The run could not be carried out (target or infrastructure failure).
    Error,
}

/// One scenario's configuration and results.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioSummary {
    /// Scenario name.
    pub name: String,
    /// k6 executor name, e.g. `constant-arrival-rate`.
    pub executor: String,
    /// Planned arrival rate at full load (requests per second), open-model executors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rps: Option<f64>,
    /// Planned VUs at full load, closed-model executors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vus: Option<u32>,
    /// Offset of the scenario's start, seconds.
    pub start_secs: f64,
    /// Planned duration, seconds.
    pub duration_secs: f64,
    /// Named phases (stages) with their offsets, seconds since run start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
    /// Percentile spectrum of `http_req_duration` for this scenario (HDR plot).
    pub latency_percentiles: Vec<PercentilePoint>,
    /// This scenario's time series, points as in the whole run's.
    pub time_series: Vec<TimePoint>,
}

/// A named phase of a scenario.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    /// Phase name (a stage's `name`).
    pub name: String,
    /// Start, seconds since run start.
    pub start_secs: f64,
    /// End, seconds since run start.
    pub end_secs: f64,
}

/// One point of a percentile spectrum.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PercentilePoint {
    /// Percentile, 0..=100 (e.g. 99.9).
    pub percentile: f64,
    /// Latency at that percentile, ms.
    pub value_ms: f64,
}

/// One point of a time series: `width_secs` whole seconds starting at `t`.
///
/// A run's points are one second wide unless the plan is long: the engine keeps at most a
/// fixed number of points per series, so a long run's points each cover several seconds
/// (all of the same width, except that the last one may be shorter, or wider when the run
/// outlasted its plan). Counts are totals over the point's seconds; rates are per second;
/// percentiles are exact over the point's requests (histograms merged, never averaged).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimePoint {
    /// Start of the point, seconds since run start.
    pub t: f64,
    /// Seconds the point covers; absent (1) in summaries of one-second points, so files
    /// written before the field existed read as one second per point.
    #[serde(default = "one_sec", skip_serializing_if = "is_one_sec")]
    #[schemars(range(min = 1))]
    pub width_secs: u32,
    /// Planned arrivals per second over the point's seconds (open model), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rps: Option<f64>,
    /// Requests completed in the point's seconds (a total, not a rate).
    pub requests: u64,
    /// Of those, failed.
    pub errors: u64,
    /// Iterations dropped in the point's seconds (a total).
    pub dropped: u64,
    /// Latency percentiles of the requests completed in the point's seconds, ms (absent
    /// when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// See `p50_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    /// See `p50_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

impl TimePoint {
    /// An empty point of `width_secs` seconds at `t`: no target, no requests.
    pub fn empty(t: f64, width_secs: u32) -> Self {
        Self {
            t,
            width_secs,
            target_rps: None,
            requests: 0,
            errors: 0,
            dropped: 0,
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
        }
    }

    /// Seconds the point covers, at least 1 (a hand-written `widthSecs: 0` reads as 1).
    pub fn secs(&self) -> f64 {
        f64::from(self.width_secs.max(1))
    }

    /// Requests completed per second over the point.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.secs()
    }
}

fn one_sec() -> u32 {
    1
}

fn is_one_sec(n: &u32) -> bool {
    *n == 1
}

/// The kind of a metric, as in k6.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MetricKind {
    /// Cumulative count (`http_reqs`, `data_sent`).
    Counter,
    /// Fraction of true samples (`http_req_failed`).
    Rate,
    /// Distribution of values (`http_req_duration`).
    Trend,
}

/// One metric's aggregate over the run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSummary {
    /// Metric kind.
    pub kind: MetricKind,
    /// Counter: total; rate: number of samples; trend: number of values.
    pub count: u64,
    /// Counter: per second of run time; rate: fraction of true samples (0..=1); trend: values per second.
    pub rate: f64,
    /// Rate metrics: number of true samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passes: Option<u64>,
    /// Trend statistics, ms; absent for counters and rates, or when there were no values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<TrendStats>,
    /// `http_req_failed` only: the failed requests that got no answer, by cause (k6's
    /// `error_code`, by name): `timeout`, `refused`, `reset`, `dns`, `connect`,
    /// `protocol`, `tls`. Causes with no request are left out; the other failures
    /// (`passes` minus these) got an answer with status 400 or more.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
}

/// Distribution statistics of a trend metric, ms.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrendStats {
    /// Minimum.
    pub min: f64,
    /// Mean.
    pub avg: f64,
    /// Median.
    pub med: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// A threshold's verdict.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// The condition held.
    Pass,
    /// The condition did not hold.
    Fail,
    /// The condition could not be judged (no data, backend unreachable): fails the gate.
    Unknown,
}

/// One threshold and its verdict.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdResult {
    /// Metric with optional tag filter, as written: `http_req_duration{scenario:api}`.
    pub metric: String,
    /// The condition as written: `p(99)<800ms`.
    pub expression: String,
    /// Observed value, in the expression's unit of comparison (ms for durations; a
    /// fraction for rates); for windowed thresholds the worst window's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<f64>,
    /// The limit the expression compares against, same unit as `observed`.
    pub limit: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// Why the verdict is `unknown`, or which window failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether a failure aborts the run.
    pub abort_on_fail: bool,
    /// Window length (seconds) for windowed thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<f64>,
    /// Phase name for phase-scoped thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// Telemetry round-trip results.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelemetrySummary {
    /// One entry per verified signal (traces, logs, metrics).
    pub signals: Vec<SignalSummary>,
    /// How requests were sampled, e.g. `rate 0.01` or `100/s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<String>,
    /// How long after completion telemetry could still arrive, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_timeout_secs: Option<f64>,
    /// Samples not verified because a verifier's queue was full (each also counted as
    /// unknown in its signal).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub samples_dropped: u64,
    /// When a latency probe is looked up, ms after its anchor (its export's
    /// acknowledgement when the echo-server's ledger gave one, else its completion), the
    /// last at the settle timeout: ingest latency is measured to within one step of this
    /// schedule. Presence samples are asked later and carry no latency.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_schedule_ms: Vec<f64>,
    /// Metric probes sent (requests that carried a probe slot), when exemplars were
    /// verified; the `metrics` signal's `sampled` counts those that were answered and so
    /// verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_probes: Option<u64>,
    /// The echo-server exporter's counters for this run (what it emitted, what the
    /// pipeline accepted and refused, what never reached it), summed over the replicas
    /// read, when any could be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exporter: Vec<ExporterCounts>,
    /// Where the exporter counters were read: the replicas read, those that could not be,
    /// and whether the counts cover only some replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter_source: Option<ExporterSource>,
    /// The RED cross-check: requests loadgen got a response to, against the server-side
    /// request counter's increase over the run (workload routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestCount>,
    /// After the last load stage of a storm: seconds until the trace ingest latency was
    /// back to its pre-storm level (p95 of one second within 1.5× of the baseline's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_secs: Option<f64>,
}

/// Requests loadgen saw answered against what the server's counter says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestCount {
    /// Responses loadgen received.
    pub sent: u64,
    /// The server-side counter's increase.
    pub counted: f64,
    /// Where the counter was read (`echo-server /metrics`, `prometheus <url>`).
    pub source: String,
}

/// One exporter pipeline's counters for the run: the echo-server's accounting of the
/// requests that carried the run's id, so scrapes, probes and other runs are not counted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExporterCounts {
    /// `spans` or `logs`.
    pub signal: String,
    /// Items the workload produced for the run.
    #[serde(default)]
    pub emitted: u64,
    /// Items the collector accepted.
    pub accepted: u64,
    /// Items in exports the collector refused (429 / RESOURCE_EXHAUSTED, errors, partial
    /// success).
    pub refused: u64,
    /// Items dropped in the workload's export queue (full) before export. Not chaos:
    /// that is `injected` (files written before `injected` existed counted it here too).
    pub dropped: u64,
    /// Items chaos dropped on purpose (its telemetry drop): injected loss.
    #[serde(default)]
    pub injected: u64,
}

impl ExporterCounts {
    /// `injected / emitted`: the share of items chaos dropped on purpose; `None` when
    /// nothing was emitted.
    pub fn injected_fraction(&self) -> Option<f64> {
        (self.emitted > 0).then(|| self.injected as f64 / self.emitted as f64)
    }
}

/// Where the exporter counters were read.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExporterSource {
    /// The echo-server replicas whose run accounting was read, by name.
    pub replicas: Vec<String>,
    /// Why a replica could not be read, one sentence per address that failed: the counts
    /// leave it out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<String>,
    /// One address answered as several replicas (a load-balanced Service): the counts
    /// cover only the replicas that happened to answer.
    #[serde(default)]
    pub partial: bool,
    /// Workload requests of the run the replicas read served.
    #[serde(default)]
    pub requests: u64,
    /// Of those, requests whose telemetry chaos dropped on purpose: the injected loss in
    /// the unit the missing rates count (requests).
    #[serde(default)]
    pub chaos_dropped_requests: u64,
}

/// One replica's settled samples of one signal.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaCounts {
    /// Found.
    pub found: u64,
    /// Missing.
    pub missing: u64,
    /// Unknown.
    pub unknown: u64,
}

/// Missing samples by what the workload's exporter did with their telemetry (the
/// echo-server's export ledger). The five add up to the signal's `missing`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MissingSplit {
    /// Refused at export: the pipeline said no (backpressure, limits).
    pub refused: u64,
    /// Dropped in the workload's export queue (full).
    pub dropped: u64,
    /// Dropped on purpose by chaos: injected loss.
    pub injected: u64,
    /// Lost after acceptance: the pipeline said yes and lost it.
    pub after_acceptance: u64,
    /// The ledger could not tell (not read, not tracked, still pending).
    pub unaccounted: u64,
}

/// The observed keep rate of one request class.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeepClassSummary {
    /// Class name (`default`: no class matched; expected kept).
    pub name: String,
    /// Declared keep probability.
    pub declared: f64,
    /// Found plus missing samples.
    pub samples: u64,
    /// Found samples.
    pub found: u64,
    /// Unchecked samples.
    pub unknown: u64,
    /// Observed keep rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<f64>,
    /// Lower bound of its 99.9 % Wilson interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    /// Upper bound of its 99.9 % Wilson interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    /// Whether the declared probability lies inside the interval.
    pub verdict: Verdict,
}

/// Round-trip result of one signal.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalSummary {
    /// `traces`, `logs` or `metrics`.
    pub signal: String,
    /// Backend kind and URL, e.g. `tempo http://tempo:3200` (never credentials).
    pub backend: String,
    /// Requests sampled for verification that settled (found, missing, unknown or
    /// superseded); for `metrics`, the metric probes verified.
    pub sampled: u64,
    /// Found (complete, for traces).
    pub found: u64,
    /// Confirmed not present after `settleTimeout`.
    pub missing: u64,
    /// Could not be asked (backend down, error answers).
    pub unknown: u64,
    /// Traces found with fewer spans than expected.
    #[serde(default)]
    pub incomplete: u64,
    /// Ingest latency (first seen minus request completion), ms, of the `latencyProbes`
    /// found samples asked on time. It includes the workload's export wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_latency: Option<TrendStats>,
    /// Found samples whose ingest latency was measured: latency probes whose first
    /// look-up came on time (the values behind `ingestLatency`).
    #[serde(default)]
    pub latency_probes: u64,
    /// Found latency probes whose first look-up came late (the query budget was spent
    /// elsewhere): their latency would be the backlog, so it is not recorded.
    #[serde(default)]
    pub first_asked_late: u64,
    /// Found presence samples: asked whether, not when, they arrived (beyond the latency
    /// probes a query budget allows), so they carry no ingest latency.
    #[serde(default)]
    pub presence_only: u64,
    /// `telemetry_<signal>_export_wait`, ms: request completion until the workload's
    /// export carrying its telemetry was acknowledged (`acknowledgedProbes` probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_wait: Option<TrendStats>,
    /// `telemetry_<signal>_backend_latency`, ms: that acknowledgement until first seen
    /// queryable, the backend's part of the ingest latency (`acknowledgedProbes` probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_latency: Option<TrendStats>,
    /// Latency probes whose export's acknowledgement was known: the values behind
    /// `exportWait` and `backendLatency`.
    #[serde(default)]
    pub acknowledged_probes: u64,
    /// Spans of found traces that are not the echo-server's own (a sidecar's, an
    /// ingress's, another service's), counted apart: not part of completeness.
    #[serde(default)]
    pub extra_spans: u64,
    /// Found / missing / unknown per echo-server replica that served the requests (by
    /// the name it answered with), so loss confined to one replica shows as such.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_replica: BTreeMap<String, ReplicaCounts>,
    /// `missing` split by what the workload's exporter did with each sample; absent for
    /// exemplars, which that exporter does not carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_split: Option<MissingSplit>,
    /// Percentile spectrum of the ingest latency (HDR plot), ms; optional, added in
    /// schema version 1 without a bump. When empty, renderers plot `ingestLatency`'s
    /// percentiles instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingest_percentiles: Vec<PercentilePoint>,
    /// Exemplars taken over by a newer request before any scrape (neither found nor
    /// missing; exemplars keep one request per bucket).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub superseded: u64,
    /// `telemetry_<signal>_missing`: only what should have been kept; absent while
    /// unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_rate: Option<f64>,
    /// How long the backend took to answer, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_duration: Option<TrendStats>,
    /// Why samples could not be checked, with counts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown_reasons: BTreeMap<String, u64>,
    /// Observed keep rate per declared request class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<KeepClassSummary>,
}

/// The platform's own signals: what each query returned over the run and what each
/// drilled alert did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformSummary {
    /// Each `spec.queries` entry, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<QuerySummary>,
    /// Each expected and each silent alert, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertSummary>,
    /// loadgen's webhook receiver, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<ReceiverSummary>,
}

/// One query's evaluations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuerySummary {
    /// The query's name (`query{name:<name>}`).
    pub name: String,
    /// `promql` or `logql`.
    pub language: String,
    /// The expression as written.
    pub expr: String,
    /// Backend kind and URL (never credentials), e.g. `prometheus http://prom:9090`.
    pub backend: String,
    /// Seconds between evaluations.
    pub every_secs: f64,
    /// Evaluations asked.
    pub evaluations: u64,
    /// Evaluations that could not be asked or were refused, by reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
    /// Evaluations answered with no series.
    #[serde(default)]
    pub empty: u64,
    /// Every series returned, with its points.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<QuerySeries>,
}

/// One series of a query's answers over the run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuerySeries {
    /// The series' labels (empty for a scalar or an aggregate without `by`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `[seconds since run start, value]` per evaluation that returned this series.
    pub points: Vec<[f64; 2]>,
}

/// One drilled alert: what was expected, when it was seen firing, notified and
/// resolved, and its verdicts' inputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertSummary {
    /// The `alertname`.
    pub alert: String,
    /// Labels it must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub matchers: BTreeMap<String, String>,
    /// `fires` (expected to fire) or `silent`.
    pub expect: String,
    /// The chaos entry or phase it is tied to; absent: the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub during: Option<String>,
    /// Start of that fault or phase, seconds since run start.
    pub window_start_secs: f64,
    /// Its end, seconds since run start.
    pub window_end_secs: f64,
    /// Declared bounds, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fires_within_secs: Option<f64>,
    /// Declared bound from the fault's start to the notification, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifies_within_secs: Option<f64>,
    /// Declared bound from the fault's end to the alert resolved, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolves_within_secs: Option<f64>,
    /// `alert_time_to_fire`: fault start to first seen firing, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_fire_secs: Option<f64>,
    /// `alert_time_to_notify`: fault start to the firing notification received, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_notify_secs: Option<f64>,
    /// `alert_time_to_resolve`: fault end to first seen no longer firing, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_resolve_secs: Option<f64>,
    /// `alert_unexpected`: times it was seen firing (or notified) where it had to stay
    /// silent.
    #[serde(default)]
    pub unexpected: u64,
    /// What was seen, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<AlertEvent>,
    /// Why a part could not be judged (a source that could not be asked), by reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
}

/// One change seen in an alert's state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertEvent {
    /// Seconds since run start.
    pub t: f64,
    /// `prometheus`, `alertmanager` or `receiver`.
    pub source: String,
    /// What was seen: `pending`, `firing`, `resolved`, `active`, `suppressed`,
    /// `notified firing`, `notified resolved`, `gone`.
    pub state: String,
}

/// loadgen's webhook receiver.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverSummary {
    /// Where it listened.
    pub listen: String,
    /// Notifications accepted.
    pub notifications: u64,
    /// Requests refused (bad token, bad body, too large).
    #[serde(default)]
    pub refused: u64,
}

/// A fault applied during the run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChaosEvent {
    /// The entry's `name`, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Human-readable fault, e.g. `telemetryDropRate=0.05`.
    pub fault: String,
    /// Applied, seconds since run start.
    pub start_secs: f64,
    /// Removed, seconds since run start.
    pub end_secs: f64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
