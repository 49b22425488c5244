//! Query checks: a PromQL or LogQL instant query asked of the run's Prometheus/Mimir or
//! Loki, returning its series. An answer that is the backend's own error (`bad_data`, a
//! LogQL parse error) keeps the backend's message; an answer that is not the backend at
//! all (an ingress's page, a redirect, a `401`) is named as such
//! ([`HttpBackend::foreign_reason`]).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::http::{Answer, HttpBackend, Unavailable};
use crate::prometheus::{PrometheusClient, VectorSample, parse_vector};

/// The query language, which decides the backend and its API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// PromQL against Prometheus or Mimir (`GET /api/v1/query`).
    PromQl,
    /// A LogQL metric query against Loki (`GET /loki/api/v1/query`).
    LogQl,
}

impl Language {
    /// `promql` or `logql`, as the spec's field names them.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::PromQl => "promql",
            Language::LogQl => "logql",
        }
    }
}

/// One series' value at an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesValue {
    /// The series' labels (empty for a scalar).
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Asks instant queries of one backend.
#[derive(Debug)]
pub enum QueryClient {
    /// PromQL.
    Prometheus(PrometheusClient),
    /// LogQL.
    Loki(HttpBackend),
}

impl QueryClient {
    /// A client for `language` over `backend` (Prometheus for PromQL, Loki for LogQL).
    pub fn new(language: Language, backend: HttpBackend) -> Self {
        match language {
            Language::PromQl => Self::Prometheus(PrometheusClient::new(backend)),
            Language::LogQl => Self::Loki(backend),
        }
    }

    fn backend(&self) -> &HttpBackend {
        match self {
            Self::Prometheus(p) => p.backend(),
            Self::Loki(b) => b,
        }
    }

    /// `prometheus http://prom:9090` (never credentials).
    pub fn describe(&self) -> String {
        let b = self.backend();
        format!("{} {}", b.name(), b.base_for_display())
    }

    /// Evaluates `expr` now. `Ok` with no series is the backend's own "nothing matches";
    /// `Err` is one sentence: the backend's error message, or why no answer came.
    pub async fn instant(&self, expr: &str) -> Result<Vec<SeriesValue>, Unavailable> {
        let samples = match self {
            Self::Prometheus(p) => p.instant(expr).await?,
            Self::Loki(b) => {
                let a = b
                    .get("loki/api/v1/query", &[("query", expr)], "application/json")
                    .await?;
                loki_vector(b, &a).map_err(|reason| Unavailable {
                    reason,
                    took: vec![a.took],
                })?
            }
        };
        Ok(samples
            .into_iter()
            .map(|VectorSample { labels, value, .. }| SeriesValue {
                labels: labels.into_iter().collect(),
                value,
            })
            .collect())
    }
}

/// Loki's answer to an instant query: its vector, or its own error (a `400` with a plain
/// text message such as `parse error at line 1, col 24: ...`), or what came back instead.
fn loki_vector(b: &HttpBackend, a: &Answer) -> Result<Vec<VectorSample>, String> {
    let own_error = a.status.is_client_error()
        && !matches!(a.status.as_u16(), 401 | 403 | 404)
        && a.media_type().as_deref() == Some("text/plain");
    if own_error {
        return Err(format!(
            "loki ({}) answered {}: {}",
            a.url,
            a.status.as_u16(),
            a.snippet()
        ));
    }
    if !a.status.is_success() || !a.is_json() {
        return Err(b.foreign_reason(a, "Loki"));
    }
    let v: Value = serde_json::from_slice(&a.body).map_err(|_| b.foreign_reason(a, "Loki"))?;
    if v.get("status").and_then(Value::as_str) != Some("success") {
        return Err(b.foreign_reason(a, "Loki"));
    }
    let data = v.get("data").unwrap_or(&Value::Null);
    if data.get("resultType").and_then(Value::as_str) == Some("streams") {
        return Err(format!(
            "loki ({}) answered log lines (`streams`), not a metric: a LogQL query check must be a metric query, e.g. `sum(count_over_time({{app=\"x\"}} |= \"error\" [1m]))`",
            a.url
        ));
    }
    parse_vector(data).map_err(|e| format!("loki ({}) answered an unexpected body: {e}", a.url))
}
