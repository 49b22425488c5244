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
    /// Iterations not started because `maxInFlight` was reached (all scenarios).
    pub dropped_iterations: u64,
    /// Whole-run time series, one point per second.
    pub time_series: Vec<TimePoint>,
    /// Telemetry round-trip results, when verification ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetrySummary>,
    /// Faults applied during the run, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chaos: Vec<ChaosEvent>,
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
    /// How the run ended.
    pub outcome: Outcome,
    /// The process exit code the outcome maps to (0, 1 or 3).
    pub exit_code: u8,
    /// Why the run ended early, if it did (abortOnFail, signal, target failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
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
    /// This scenario's time series, one point per second.
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

/// One second of a time series.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimePoint {
    /// Start of the second, seconds since run start.
    pub t: f64,
    /// Planned arrivals in this second (open model), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rps: Option<f64>,
    /// Requests completed in this second.
    pub requests: u64,
    /// Of those, failed.
    pub errors: u64,
    /// Iterations dropped in this second.
    pub dropped: u64,
    /// Latency percentiles of the requests completed in this second, ms (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// See `p50_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    /// See `p50_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelemetrySummary {
    /// One entry per verified signal (traces, logs, metrics).
    pub signals: Vec<SignalSummary>,
}

/// Round-trip result of one signal.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalSummary {
    /// `traces`, `logs` or `metrics`.
    pub signal: String,
    /// Backend kind and URL, e.g. `tempo http://tempo:3200` (never credentials).
    pub backend: String,
    /// Requests sampled for verification.
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
    /// Ingest latency (first seen minus request completion), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_latency: Option<TrendStats>,
    /// Percentile spectrum of the ingest latency (HDR plot), ms; optional, added in
    /// schema version 1 without a bump. When empty, renderers plot `ingestLatency`'s
    /// percentiles instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingest_percentiles: Vec<PercentilePoint>,
}

/// A fault applied during the run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChaosEvent {
    /// Human-readable fault, e.g. `telemetryDropRate=0.05`.
    pub fault: String,
    /// Applied, seconds since run start.
    pub start_secs: f64,
    /// Removed, seconds since run start.
    pub end_secs: f64,
}
