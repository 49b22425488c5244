//! `spec.telemetry` as the verifiers take it: sampling, backends, secrets, keep classes.
//! The engine lowers the user's document into a [`TelemetryPlan`]; this crate only reads it.

use std::path::PathBuf;
use std::time::Duration;

use crate::http::{Auth, Endpoint, Secret};
use crate::{PollPolicy, VerifyError};

/// Default sampling when `telemetry.sample` is omitted.
pub const DEFAULT_PER_SECOND: f64 = 100.0;
/// Default `maxQueriesPerSecond`.
pub const DEFAULT_MAX_QPS: f64 = 20.0;
/// Samples each verifier's channel holds before new ones are dropped.
pub const CHANNEL_CAPACITY: usize = 65_536;
/// Trace ids the embedded sink remembers per signal.
pub const SINK_CAPACITY: usize = 1_000_000;

/// How requests are chosen for verification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplePolicy {
    /// Each completed request with this probability.
    Rate(f64),
    /// At most this many per second.
    PerSecond(f64),
}

impl SamplePolicy {
    /// `rate 0.01` or `100/s`, for reports.
    pub fn describe(&self) -> String {
        match self {
            Self::Rate(r) => format!("rate {r}"),
            Self::PerSecond(n) => format!("{n}/s"),
        }
    }
}

/// Where a secret is read from at run start, and the scenario field that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    /// The field path, e.g. `spec.telemetry.traces.tempo.bearerToken`.
    pub field: String,
    /// The variable or file.
    pub from: SecretFrom,
}

/// An environment variable or a file (trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    /// An environment variable.
    Env(String),
    /// A file (trimmed).
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret; an error names the field that asked for it.
    pub fn read(&self) -> Result<Secret, VerifyError> {
        match &self.from {
            SecretFrom::Env(v) => Secret::from_env(v),
            SecretFrom::File(p) => Secret::from_file(p),
        }
        .map_err(|e| VerifyError::SecretOf {
            field: self.field.clone(),
            error: Box::new(e),
        })
    }
}

/// One backend's connection settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendPlan {
    /// Base URL.
    pub url: String,
    /// `X-Scope-OrgID`.
    pub tenant: Option<String>,
    /// Bearer token source.
    pub bearer: Option<SecretSource>,
    /// Basic auth user and password source.
    pub basic: Option<(String, SecretSource)>,
    /// Extra CA certificates.
    pub ca_file: Option<PathBuf>,
    /// Per-query timeout.
    pub timeout: Duration,
}

impl BackendPlan {
    /// The endpoint to query, with its tenant, CA and auth (secrets read now).
    pub fn endpoint(&self) -> Result<Endpoint, VerifyError> {
        let mut e = Endpoint::new(&self.url)?;
        e.timeout = self.timeout;
        if let Some(t) = &self.tenant {
            e = e.with_tenant(t.clone());
        }
        if let Some(ca) = &self.ca_file {
            e = e.with_ca_file(ca.clone());
        }
        if let Some(b) = &self.bearer {
            e = e.with_auth(Auth::Bearer { token: b.read()? });
        } else if let Some((username, p)) = &self.basic {
            e = e.with_auth(Auth::Basic {
                username: username.clone(),
                password: p.read()?,
            });
        }
        Ok(e)
    }
}

/// Which trace query API.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceBackendPlan {
    /// Tempo.
    Tempo(BackendPlan),
    /// Jaeger query.
    Jaeger(BackendPlan),
}

/// A request class and its expected keep probability.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepClassPlan {
    /// Name in reports.
    pub name: String,
    /// Keep probability, 0..=1.
    pub keep: f64,
    /// Exact status (`500`) or class (`5` for `5xx`).
    pub status: Option<StatusMatch>,
    /// Service time at least this.
    pub min_latency: Option<Duration>,
    /// Request name.
    pub request: Option<String>,
}

/// A status or a status class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// One status.
    Exact(u16),
    /// `Nxx`.
    Class(u16),
}

impl StatusMatch {
    fn matches(self, status: u16) -> bool {
        match self {
            Self::Exact(s) => s == status,
            Self::Class(c) => status / 100 == c,
        }
    }
}

impl KeepClassPlan {
    /// True when a request of this name, status and service time is in the class.
    pub fn matches(&self, request: &str, status: u16, service_time: Duration) -> bool {
        self.status.is_none_or(|m| m.matches(status))
            && self.min_latency.is_none_or(|l| service_time >= l)
            && self.request.as_deref().is_none_or(|r| r == request)
    }
}

/// What the verifiers read off the echo-server's own metrics (the engine fills it from
/// the echo-server's contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMetrics {
    /// The request-duration histogram (`_bucket` carries exemplars, `_count` the total).
    pub histogram: String,
    /// Routes left out of the request total (probes and scrapes).
    pub probe_routes: Vec<String>,
}

/// `spec.telemetry`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryPlan {
    /// The echo-server's metric names.
    pub server: ServerMetrics,
    /// Which requests are verified.
    pub sample: SamplePolicy,
    /// Polling schedule and settle timeout.
    pub poll: PollPolicy,
    /// Query budget across backends.
    pub max_queries_per_second: f64,
    /// Trace backend.
    pub traces: Option<TraceBackendPlan>,
    /// Loki and its stream selector.
    pub logs: Option<(BackendPlan, String)>,
    /// Prometheus and the exemplar histogram.
    pub metrics: Option<(BackendPlan, String)>,
    /// Expected keep probabilities.
    pub classes: Vec<KeepClassPlan>,
}

impl TelemetryPlan {
    /// The embedded default: the sink, `perSecond: 100`, settle 30 s.
    pub fn embedded_default(server: ServerMetrics) -> Self {
        Self {
            server,
            sample: SamplePolicy::PerSecond(DEFAULT_PER_SECOND),
            poll: PollPolicy::default(),
            max_queries_per_second: DEFAULT_MAX_QPS,
            traces: None,
            logs: None,
            metrics: None,
            classes: Vec::new(),
        }
    }

    /// True when no backend is configured: the embedded sink verifies.
    pub fn uses_sink(&self) -> bool {
        self.traces.is_none() && self.logs.is_none() && self.metrics.is_none()
    }
}
