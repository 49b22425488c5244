//! `spec.queries` and `spec.alerts`: the platform's own signals as gate inputs. PromQL and
//! LogQL queries evaluated during the run and judged by thresholds on
//! `query{name:...}`; alert drills that expect an alert to fire, reach its receiver and
//! resolve on the chaos timeline, or to stay silent.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::telemetry::{BackendSpec, SecretRef};

/// A named query evaluated as an instant query during the run and once at its end.
/// Exactly one of `promql` and `logql`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QuerySpec {
    /// Unique name, used in thresholds as `query{name:<name>}`.
    pub name: String,
    /// A PromQL expression, asked of `spec.telemetry.metrics.prometheus`
    /// (`GET /api/v1/query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promql: Option<String>,
    /// A LogQL metric query, asked of `spec.telemetry.logs.loki` (`GET /loki/api/v1/query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logql: Option<String>,
    /// How often it is evaluated, e.g. `15s` (default 15s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// When the query returns several series, judge each one by its labels (the threshold
    /// fails if any series fails); otherwise several series are unknown: aggregate them in
    /// the query (`max(...)`) or pick one with a label filter in the threshold key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub each_series: bool,
}

/// Alert drills: alerts expected to fire, notify and resolve on the chaos timeline, and
/// alerts that must stay silent. Firing state is read from the Prometheus (or Mimir ruler)
/// of `spec.telemetry.metrics.prometheus` (`GET /api/v1/alerts`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertsSpec {
    /// Alertmanager's API v2 (`GET /api/v2/alerts`): whether an alert is active, silenced
    /// or inhibited there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<BackendSpec>,
    /// A webhook receiver loadgen hosts, which an Alertmanager route points at, so the
    /// notification itself is seen. Needed by `notifiesWithin` and `allowFiring`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<ReceiverSpec>,
    /// How often rule state and Alertmanager are read, e.g. `5s` (default 5s); it bounds
    /// the resolution of `alert_time_to_fire` and `alert_time_to_resolve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Alerts that must fire (and notify, and resolve) in time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<ExpectedAlertSpec>,
    /// Alerts that must stay silent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silent: Vec<SilentAlertSpec>,
}

/// loadgen's webhook receiver (Alertmanager's `webhook_configs`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReceiverSpec {
    /// Address to listen on, e.g. `127.0.0.1:9097`, or `0.0.0.0:9097` in a cluster.
    pub listen: String,
    /// Bearer token Alertmanager must send (`http_config.authorization`); without it any
    /// POST is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
}

/// An alert that must fire during a fault, reach the receiver, and resolve after it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectedAlertSpec {
    /// The `alertname`.
    pub alert: String,
    /// Labels the alert must carry, by equality.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub matchers: BTreeMap<String, String>,
    /// The `name` of a `spec.chaos` entry, or a phase (a stage `name`): the fault whose
    /// start `firesWithin` and `notifiesWithin` count from, and whose end
    /// `resolvesWithin` counts from.
    pub during: String,
    /// Longest time from the fault's start to the alert seen firing, e.g. `2m`.
    pub fires_within: String,
    /// Longest time from the fault's start to the receiver getting the firing
    /// notification, e.g. `3m` (needs `receiver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifies_within: Option<String>,
    /// Longest time from the fault's end to the alert no longer firing, e.g. `5m`; the run
    /// waits for it after the load ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolves_within: Option<String>,
}

/// An alert that must not fire (or, with `allowFiring`, must not reach the receiver).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SilentAlertSpec {
    /// The `alertname`.
    pub alert: String,
    /// Labels the alert must carry, by equality.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub matchers: BTreeMap<String, String>,
    /// A phase or `spec.chaos` entry name; omitted: the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub during: Option<String>,
    /// The alert may fire in Prometheus but must be silenced or inhibited: no firing
    /// notification may reach the receiver (needs `receiver`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_firing: bool,
}

/// Live outputs of loadgen's own metrics, pushed while the run goes (each runner of a
/// split run pushes its part, labelled `runner`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutputSpec {
    /// Prometheus remote write (Prometheus' receiver, Mimir, any compatible endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_remote_write: Option<RemoteWriteSpec>,
    /// OTLP metrics over HTTP/protobuf (`<url>/v1/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<BackendSpec>,
    /// How often the metrics are pushed, e.g. `5s` (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_interval: Option<String>,
    /// Metric name prefix: `ricochet` (default) or `k6`, so that dashboards made for k6's
    /// remote-write output keep working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub naming: Option<String>,
}

/// A Prometheus remote-write endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RemoteWriteSpec {
    /// Connection: `url` is the write endpoint, e.g. `http://prometheus:9090/api/v1/write`.
    #[serde(flatten)]
    pub backend: BackendSpec,
    /// The trend statistics pushed as gauges, as k6's `K6_PROMETHEUS_RW_TREND_STATS`
    /// (default `p(99)`): `p(N)`, `avg`, `med`, `min`, `max`, `count`, `sum`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trend_stats: Vec<String>,
    /// Push trends as Prometheus native histograms (`<name>_seconds`, exponential buckets
    /// of schema 3, about 9 % wide) instead of the `trendStats` gauges, as k6's
    /// `K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM`; the receiver must accept them
    /// (Prometheus: `--enable-feature=native-histograms`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub native_histograms: bool,
}
