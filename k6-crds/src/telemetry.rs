//! `spec.telemetry` (round-trip verification: sampling, backends, expected keep rates) and
//! `spec.chaos` (a timeline of faults applied through the echo-server's admin API).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Round-trip verification of the telemetry the sampled requests produced.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TelemetrySpec {
    /// Which requests are verified (default: `perSecond: 100`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleSpec>,
    /// How long after a request completes its telemetry may still arrive (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_timeout: Option<String>,
    /// First poll this long after completion, doubling up to 5s (default 250ms); it bounds
    /// the resolution of the ingest latency against a real backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<String>,
    /// Queries per second across all backends (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queries_per_second: Option<f64>,
    /// Where traces are looked up; omitted with no other backend: the embedded OTLP sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<TracesBackend>,
    /// Where log lines are looked up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogsBackend>,
    /// Where exemplars are looked up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsBackend>,
    /// The pipeline's sampling policy: expected keep probability per request class, first
    /// match wins; requests no class matches are expected to be kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_keep: Vec<KeepClass>,
}

/// Which completed requests are verified: a fraction, or at most so many per second.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SampleSpec {
    /// Fraction of completed requests, 0 < rate <= 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// At most this many requests per second (token bucket, no burst beyond one second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<f64>,
}

/// A trace backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TracesBackend {
    /// Grafana Tempo (`GET /api/traces/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempo: Option<BackendSpec>,
    /// Jaeger query (`GET /api/traces/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jaeger: Option<BackendSpec>,
}

/// A log backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogsBackend {
    /// Grafana Loki (`GET /loki/api/v1/query_range`).
    pub loki: LokiSpec,
}

/// Loki and the stream the echo-server's log lines land in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LokiSpec {
    /// Connection.
    #[serde(flatten)]
    pub backend: BackendSpec,
    /// LogQL stream selector, e.g. `{app="echo-server"}`.
    pub selector: String,
}

/// A metrics backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsBackend {
    /// Prometheus or Mimir (`GET /api/v1/query_exemplars`).
    pub prometheus: PrometheusSpec,
}

/// Prometheus and the histogram whose exemplars carry trace ids.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Connection.
    #[serde(flatten)]
    pub backend: BackendSpec,
    /// The request-duration histogram whose `_count` is the server-side request total
    /// (default `http_server_request_duration_seconds_bucket`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// How often Prometheus scrapes the echo-server (default `15s`). A metric probe's slot
    /// is used again only after twice this, so each probe's exemplar lives through a
    /// scrape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<String>,
}

/// How to reach one backend. Credentials come from the environment or a file, never from
/// the document itself.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendSpec {
    /// Base URL, e.g. `http://tempo:3200`.
    pub url: String,
    /// `X-Scope-OrgID` tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `Authorization: Bearer` token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<SecretRef>,
    /// HTTP basic auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthSpec>,
    /// PEM file of extra CA certificates to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Per-query timeout (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// HTTP basic credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuthSpec {
    /// User name (e.g. a Grafana Cloud instance id); not secret.
    pub username: String,
    /// Password.
    pub password: SecretRef,
}

/// Where a secret is read from: an environment variable or a file (e.g. a mounted Secret).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretRef {
    /// Environment variable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// File path; surrounding whitespace is trimmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// One class of requests and the probability the pipeline keeps its telemetry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeepClass {
    /// Class name in reports, e.g. `errors`, `slow`, `baseline`.
    pub name: String,
    /// Probability in 0..=1 that a request of this class is kept.
    pub keep: f64,
    /// Matches a status (`500`) or a status class (`5xx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Matches requests whose service time is at least this, e.g. `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_latency: Option<String>,
    /// Matches a request by its `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// The echo-server's admin API, for `spec.chaos`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminSpec {
    /// Base URL of the admin listener, e.g. `http://echo-server-admin:9091`.
    pub url: String,
    /// The admin bearer token.
    pub token: SecretRef,
}

/// One fault of the chaos timeline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChaosEventSpec {
    /// Name, which alert drills refer to (`alerts.expect[].during`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the fault starts, from the run's start, e.g. `60s`.
    pub at: String,
    /// How long it lasts, e.g. `30s` (default: until the end of the run).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// What is applied.
    pub fault: FaultSpec,
}

/// Faults applied together; at least one field. Overlapping events combine, the later
/// event winning for a fault both set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultSpec {
    /// Fraction of requests whose spans and log record are not emitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_drop_rate: Option<f64>,
    /// Fraction of requests answered with `errorStatus` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Status of injected errors (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_status: Option<u16>,
    /// Added latency: `50ms`, `uniform:10ms:50ms` or `exp:20ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
    /// Only requests of this route template, e.g. `/api/{*path}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Only requests whose (final) status is in this class, e.g. `2xx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_class: Option<String>,
}
