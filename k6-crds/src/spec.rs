//! Serde types of the `LoadTest` spec, exactly as a user writes them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cluster::{CleanupPolicy, ConcurrencyPolicy, Parallelism, RunnerTemplate};
use crate::gates::{AlertsSpec, OutputSpec, QuerySpec};
use crate::run::Verdict;
use crate::telemetry::{AdminSpec, ChaosEventSpec, TelemetrySpec};

/// What a load test runs: target, traffic, scenarios and the thresholds that gate it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ricochet.dev",
    version = "v1alpha1",
    kind = "LoadTest",
    namespaced,
    shortname = "lt",
    status = "LoadTestStatus",
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Parallelism","type":"string","jsonPath":".spec.parallelism"}"#,
    printcolumn = r#"{"name":"Last run","type":"string","jsonPath":".status.lastRun"}"#,
    printcolumn = r#"{"name":"Last verdict","type":"string","jsonPath":".status.lastVerdict"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadTestSpec {
    /// The system under test; omitted: an embedded echo-server on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// GA baseline and multiplier from which scenario rates derive (`share`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
    /// Scenarios run in parallel, each with its own executor.
    pub scenarios: Vec<ScenarioSpec>,
    /// k6-style thresholds: metric expression (with optional `{tag:value}` filter) to
    /// a list of conditions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, Vec<ThresholdSpec>>,
    /// Telemetry round-trip verification; with an embedded target and no section, the
    /// embedded OTLP sink verifies up to 100 requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetrySpec>,
    /// Faults applied through the echo-server's admin API during the run, removed at the
    /// end (also when interrupted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chaos: Vec<ChaosEventSpec>,
    /// PromQL and LogQL queries evaluated during the run, judged by thresholds on
    /// `query{name:<name>}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<QuerySpec>,
    /// Alert drills: alerts that must fire, notify and resolve on the chaos timeline, or
    /// stay silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertsSpec>,
    /// Live outputs of loadgen's own metrics (Prometheus remote write, OTLP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputSpec>,

    // In cluster only (`loadgen operator`); `loadgen run` ignores these.
    /// Runner pods sharing each run, every rate split exactly between them (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<Parallelism>,
    /// With `parallelism: auto`: the most iterations per second one runner is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate_per_runner: Option<f64>,
    /// Cron schedule (5 fields, UTC, as a CronJob's) on which `LoadTestRun`s are created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// What happens when a scheduled run is due while the previous one still runs (default `Forbid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// Passed scheduled runs kept (default 3); older ones are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_runs_history_limit: Option<u32>,
    /// Failed scheduled runs kept (default 1); older ones are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_runs_history_limit: Option<u32>,
    /// Stop creating scheduled runs (running ones continue).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Overrides of the runner pods (image, resources, placement, env from Secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerTemplate>,
    /// What is kept after a run (keep on failure, TTL after finish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CleanupPolicy>,
}

/// What the operator last did with a `LoadTest`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadTestStatus {
    /// When the schedule last created (or, under `Forbid`, skipped) a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// Name of the most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// Verdict of the most recent finished run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verdict: Option<Verdict>,
    /// Runs of this LoadTest still in progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// Why the schedule cannot be followed, e.g. an invalid cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The system under test.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Target {
    /// Base URL, e.g. `http://echo-server.observability.svc:8080`.
    pub url: String,
    /// Use HTTP/2 (prior knowledge for `http://`) instead of HTTP/1.1.
    #[serde(default)]
    pub http2: bool,
    /// Upper bound of open connections per scenario (HTTP/1.1 keep-alive pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Per-request timeout, e.g. `30s` (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// The echo-server's admin API, needed by `spec.chaos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSpec>,
    /// Where each echo-server replica's own run accounting is read: URLs whose host
    /// resolves to the replicas, e.g. a headless Service
    /// `http://echo-server-headless.observability.svc:8080` (default: `url`, whose host
    /// may be one load-balanced address that hides the replicas).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    /// `https://` targets: a PEM file of CA certificates trusted beside the system roots,
    /// e.g. a mounted Secret's `/etc/ricochet/target-tls/ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// `https://` targets: the client certificate presented for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<ClientCert>,
    /// `https://` targets: accept any server certificate, unverified. Every report of the
    /// run says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// A client certificate and its private key, PEM files (e.g. a mounted `kubernetes.io/tls`
/// Secret's `tls.crt` and `tls.key`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientCert {
    /// The certificate chain, leaf first.
    pub cert_file: String,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

/// Traffic as a multiple of the GA baseline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Traffic {
    /// Requests per second the service carries at general availability.
    pub ga_baseline_rps: f64,
    /// Multiple of the baseline to run at (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
}

/// How a scenario schedules iterations (k6 executor names).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutorKind {
    /// Open model: a fixed arrival rate.
    ConstantArrivalRate,
    /// Open model: an arrival rate that follows `stages`.
    RampingArrivalRate,
    /// Closed model: a fixed number of virtual users looping.
    ConstantVus,
    /// Closed model: a number of virtual users that follows `stages`.
    RampingVus,
}

/// One scenario of a load test.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScenarioSpec {
    /// Unique name, used as the `scenario` tag.
    pub name: String,
    /// The executor.
    pub executor: ExecutorKind,
    /// Fraction of the total rate (`traffic.gaBaselineRps x multiplier`), arrival-rate executors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// Absolute arrival rate in iterations per second, arrival-rate executors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Rate at the start of a `ramping-arrival-rate` scenario (default 0); a fraction of the
    /// scenario's rate when it has `share` or `rate`. (`ramping-vus` starts from `vus`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_rate: Option<f64>,
    /// Number of virtual users of `constant-vus`; VUs at the start of `ramping-vus` (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vus: Option<u32>,
    /// Stages of ramping executors: target rate (or VUs) reached linearly over duration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    /// Duration of constant executors, e.g. `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Offset from the start of the run at which this scenario begins (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Time granted to in-flight iterations after the scenario ends (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_stop: Option<String>,
    /// Bound on concurrent iterations; beyond it iterations count as `dropped_iterations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Extra tags attached to every sample of this scenario.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Requests, picked per iteration by weight.
    pub requests: Vec<RequestSpec>,
}

/// One stage of a ramping executor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Stage {
    /// Rate (`ramping-arrival-rate`) or VUs (`ramping-vus`) reached linearly by the end of the
    /// stage; a fraction of the scenario's rate (1 = full) when the scenario has `share` or `rate`.
    pub target: f64,
    /// How long the stage lasts, e.g. `30s`.
    pub duration: String,
    /// Optional phase name (e.g. `ramp-up`, `steady`) that thresholds can be scoped to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One request of a scenario.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestSpec {
    /// Name, used as the `name` tag.
    pub name: String,
    /// HTTP method (default GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path and query, appended to the target URL.
    pub path: String,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Inline request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Path of a file whose contents are the body (relative to the scenario file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_file: Option<String>,
    /// Relative weight when a scenario has several requests (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// A streamed response: time to first and last byte are recorded.
    #[serde(default)]
    pub stream: bool,
}

/// One threshold condition: a k6 expression, or the expression with options.
// Deserialized by hand rather than `#[serde(untagged)]`, so that a mistake inside the
// detailed form (an unknown field, a missing `threshold`) is reported as such, with its
// position, instead of "data did not match any variant". Its schema is written by hand
// too: a Kubernetes structural schema cannot say "string or object", so the API server
// accepts any value here and `loadgen` validates it.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum ThresholdSpec {
    /// `"p(99)<800ms"`.
    Expression(String),
    /// The expression with abort and scoping options.
    Detailed(ThresholdDetail),
}

/// A threshold with options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ThresholdDetail {
    /// The k6 expression, e.g. `rate<0.003`.
    pub threshold: String,
    /// Stop the run as soon as the threshold fails.
    #[serde(default)]
    pub abort_on_fail: bool,
    /// Do not evaluate for abort before this much of the run has passed, e.g. `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_abort_eval: Option<String>,
    /// Judge every tumbling window of this length (e.g. `1m`); fails if any window fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Judge only samples scheduled during the stages with this name (e.g. `steady`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

impl JsonSchema for ThresholdSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ThresholdSpec".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A k6 condition such as `p(99)<800ms`, or a map with `threshold` and the options `abortOnFail`, `delayAbortEval`, `window`, `phase`.",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

impl<'de> Deserialize<'de> for ThresholdSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ThresholdSpec;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a threshold expression such as \"p(99)<800ms\", or a map with `threshold`, `abortOnFail`, `delayAbortEval`, `window`, `phase`",
                )
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ThresholdSpec::Expression(v.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                ThresholdDetail::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ThresholdSpec::Detailed)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}
