//! Metrics: Prometheus or Mimir (`base` = `http://mimir/prometheus`).
//!
//! - Exemplars: `GET /api/v1/query_exemplars?query=<bucket metric>&start&end` returns every
//!   exemplar of the window; one query answers a whole batch of samples. The echo-server
//!   keeps the **latest** exemplar per bucket and series, and Prometheus stores what it
//!   sees at each scrape, so under load only some requests' trace ids can ever become
//!   exemplars: the engine must judge the exemplar signal by "some sampled ids of each
//!   scrape interval appear" rather than treat every absent id as lost (see the module
//!   docs of [`super`]).
//! - RED totals: `GET /api/v1/query` ([`PrometheusClient::instant`]) for the server-side
//!   request counter, to compare with what loadgen sent; the PromQL query checks
//!   ([`crate::query`]).
//! - Alert state: `GET /api/v1/alerts` ([`PrometheusClient::alerts`]) for alert drills.
//!
//! Errors come back as JSON `{"status":"error","errorType":..,"error":..}` and become
//! unknown with that message. An answer that is not Prometheus' JSON at all (an ingress's
//! HTML 404, a gateway's `{"message":…}`, a login redirect, which is never followed, a
//! `401`) is unknown with a reason naming the URL and what came back; only an empty
//! success answer reads as "not there".

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::http::{Answer, HttpBackend, Unavailable};
use super::{BoxFuture, Check, Outcome, Sample, Signal, TraceId, Verifier};

/// A Prometheus-compatible HTTP API client.
#[derive(Debug)]
pub struct PrometheusClient {
    backend: HttpBackend,
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    /// Labels of the series.
    pub labels: HashMap<String, String>,
    /// Evaluation time.
    pub at: SystemTime,
    /// The value.
    pub value: f64,
}

/// One exemplar: its trace id, timestamp and the series it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The `trace_id` label.
    pub trace_id: TraceId,
    /// The exemplar's own timestamp (from the exposition, not the scrape).
    pub at: SystemTime,
    /// The observed value.
    pub value: f64,
    /// The probe series it belongs to: its `slot` and `replica` labels.
    pub series: ProbeSeries,
}

/// A probe series: `ricochet_probe_requests_total{slot, replica}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ProbeSeries {
    /// The `slot` label.
    pub slot: Option<u16>,
    /// The `replica` label.
    pub replica: Option<String>,
}

impl ProbeSeries {
    /// From a series' `slot` and `replica` label values.
    pub fn of(slot: Option<&str>, replica: Option<&str>) -> Self {
        Self {
            slot: slot.and_then(|s| s.parse().ok()),
            replica: replica.map(str::to_owned),
        }
    }
}

/// The newest exemplar timestamp of each probe series seen (bounded: at most
/// [`MAX_SERIES`] series; beyond, the oldest entry goes).
#[derive(Debug, Default)]
pub struct Newest(HashMap<ProbeSeries, SystemTime>);

/// Probe series remembered: 64 slots × 64 replicas.
pub const MAX_SERIES: usize = 4096;

impl Newest {
    /// Notes an exemplar.
    pub fn note(&mut self, e: &Exemplar) {
        if !self.0.contains_key(&e.series)
            && self.0.len() >= MAX_SERIES
            && let Some(oldest) = self
                .0
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
        {
            self.0.remove(&oldest);
        }
        let t = self.0.entry(e.series.clone()).or_insert(e.at);
        *t = (*t).max(e.at);
    }

    /// A probe not held is [`Outcome::Superseded`] only when its own series (its slot, on
    /// the replica that served it) shows an exemplar recorded after it completed: a later
    /// probe took the slot before any scrape saw this one. Otherwise it is
    /// [`Outcome::Missing`]; a request that was no probe is missing too.
    pub fn outcome_of_absent(&self, sample: &Sample) -> Outcome {
        let Some(slot) = sample.probe else {
            return Outcome::Missing;
        };
        let newer = self.0.iter().any(|(series, at)| {
            series.slot == Some(slot)
                && sample
                    .replica
                    .as_deref()
                    .is_none_or(|r| series.replica.as_deref() == Some(r))
                && *at > sample.completed_at
        });
        if newer {
            Outcome::Superseded
        } else {
            Outcome::Missing
        }
    }
}

impl PrometheusClient {
    /// Wraps a backend.
    pub fn new(backend: HttpBackend) -> Self {
        Self { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &HttpBackend {
        &self.backend
    }

    /// All exemplars of `query` between `start` and `end`.
    pub async fn exemplars(
        &self,
        query: &str,
        start: SystemTime,
        end: SystemTime,
    ) -> Result<(Vec<Exemplar>, Answer), Unavailable> {
        let (s, e) = (unix_secs(start), unix_secs(end));
        let a = self
            .backend
            .get(
                "api/v1/query_exemplars",
                &[("query", query), ("start", &s), ("end", &e)],
                "application/json",
            )
            .await?;
        let data = self.data(&a)?;
        let ex = parse_exemplars(&data).map_err(|e| self.unexpected(&a, &e))?;
        Ok((ex, a))
    }

    /// Evaluates `promql` now; an instant vector.
    pub async fn instant(&self, promql: &str) -> Result<Vec<VectorSample>, Unavailable> {
        let a = self
            .backend
            .get("api/v1/query", &[("query", promql)], "application/json")
            .await?;
        let data = self.data(&a)?;
        parse_vector(&data).map_err(|e| self.unexpected(&a, &e))
    }

    /// The alerting rules' active alerts (`GET /api/v1/alerts`): pending and firing, with
    /// their labels.
    pub async fn alerts(&self) -> Result<Vec<RuleAlert>, Unavailable> {
        let a = self
            .backend
            .get("api/v1/alerts", &[], "application/json")
            .await?;
        let data = self.data(&a)?;
        parse_rule_alerts(&data).map_err(|e| self.unexpected(&a, &e))
    }

    /// The sum of an instant query's values (e.g. `sum(http_server_request_duration_seconds_count)`); `None` when
    /// the vector is empty (no such series yet).
    pub async fn total(&self, promql: &str) -> Result<Option<f64>, Unavailable> {
        let v = self.instant(promql).await?;
        Ok((!v.is_empty()).then(|| v.iter().map(|s| s.value).sum()))
    }

    fn unexpected(&self, a: &Answer, e: &str) -> Unavailable {
        Unavailable {
            reason: format!(
                "{} ({}) answered {} with an unexpected body: {e}",
                self.backend.name(),
                a.url,
                a.status.as_u16()
            ),
            took: vec![a.took],
        }
    }

    /// `data` of a success answer, or the reason it is not one. Prometheus' own answers
    /// are JSON `{"status":"success","data":…}` or `{"status":"error","errorType":…,
    /// "error":…}`; anything else (a proxy's HTML 404, a gateway's JSON, a login redirect,
    /// a `401`, Prometheus' own plain-text `404 page not found` for a wrong path prefix) is
    /// not the API speaking and becomes unknown with what came back
    /// ([`HttpBackend::foreign_reason`]). An empty `data` (no exemplar, no series) is
    /// Prometheus' own "none": the caller reads it as missing.
    fn data(&self, a: &Answer) -> Result<Value, Unavailable> {
        let took = vec![a.took];
        let foreign = || Unavailable {
            reason: self.backend.foreign_reason(a, "Prometheus"),
            took: took.clone(),
        };
        if a.is_redirect() || a.is_html() || matches!(a.status.as_u16(), 401 | 403) {
            return Err(foreign());
        }
        let Ok(v) = serde_json::from_slice::<Value>(&a.body) else {
            return Err(foreign());
        };
        let Some(status) = v.get("status").and_then(Value::as_str) else {
            return Err(foreign());
        };
        if status == "success" && a.status.is_success() {
            return v
                .get("data")
                .cloned()
                .ok_or_else(|| self.unexpected(a, "no `data`"));
        }
        let kind = v
            .get("errorType")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let msg = v.get("error").and_then(Value::as_str).unwrap_or("");
        Err(Unavailable {
            reason: format!(
                "{} ({}) answered {} {kind}: {msg}",
                self.backend.name(),
                a.url,
                a.status.as_u16()
            ),
            took,
        })
    }
}

fn unix_secs(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// Prometheus times are unix seconds with millisecond precision; rounding to the
/// millisecond undoes the binary float error (`…279.715` is `…279.71499…` as f64).
fn secs_to_time(v: &Value) -> Option<SystemTime> {
    let s = v.as_f64()?;
    (s.is_finite() && s >= 0.0)
        .then(|| UNIX_EPOCH + Duration::from_millis((s * 1000.0).round() as u64))
}

/// Parses a `query_exemplars` `data` array.
pub fn parse_exemplars(data: &Value) -> Result<Vec<Exemplar>, String> {
    let mut out = Vec::new();
    for series in data.as_array().ok_or("`data` is not an array")? {
        let labels = series.get("seriesLabels");
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let probe = ProbeSeries::of(label("slot"), label("replica"));
        for ex in series
            .get("exemplars")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(id) = ex
                .get("labels")
                .and_then(|l| l.get("trace_id"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let Ok(trace_id) = id.parse() else { continue };
            let at = ex
                .get("timestamp")
                .and_then(secs_to_time)
                .ok_or("an exemplar timestamp is not a number")?;
            let value = ex
                .get("value")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            out.push(Exemplar {
                trace_id,
                at,
                value,
                series: probe.clone(),
            });
        }
    }
    Ok(out)
}

/// Parses an instant query's `data` (`resultType` `vector` or `scalar`).
pub fn parse_vector(data: &Value) -> Result<Vec<VectorSample>, String> {
    let point = |p: &Value| -> Result<(SystemTime, f64), String> {
        let at = p
            .get(0)
            .and_then(secs_to_time)
            .ok_or("a sample time is not a number")?;
        let value = p
            .get(1)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or("a sample value is not a number string")?;
        Ok((at, value))
    };
    match data.get("resultType").and_then(Value::as_str) {
        Some("vector") => data
            .get("result")
            .and_then(Value::as_array)
            .ok_or("`result` is not an array")?
            .iter()
            .map(|s| {
                let labels = s
                    .get("metric")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let (at, value) = point(s.get("value").unwrap_or(&Value::Null))?;
                Ok(VectorSample { labels, at, value })
            })
            .collect(),
        Some("scalar") => {
            let (at, value) = point(data.get("result").unwrap_or(&Value::Null))?;
            Ok(vec![VectorSample {
                labels: HashMap::new(),
                at,
                value,
            }])
        }
        other => Err(format!(
            "resultType is {other:?}, expected vector or scalar"
        )),
    }
}

/// One active alert of Prometheus' (or Mimir's ruler's) alerting rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleAlert {
    /// Its labels, `alertname` among them.
    pub labels: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
}

/// Parses `/api/v1/alerts`' `data` (`{"alerts": [{labels, state, ...}]}`).
pub fn parse_rule_alerts(data: &Value) -> Result<Vec<RuleAlert>, String> {
    data.get("alerts")
        .and_then(Value::as_array)
        .ok_or("`data.alerts` is not an array")?
        .iter()
        .map(|a| {
            let labels = string_map(a.get("labels")).ok_or("an alert has no `labels` object")?;
            let state = a
                .get("state")
                .and_then(Value::as_str)
                .ok_or("an alert has no `state`")?
                .to_owned();
            Ok(RuleAlert { labels, state })
        })
        .collect()
}

/// A JSON object of strings as a map; `None` when it is not an object.
pub(crate) fn string_map(v: Option<&Value>) -> Option<BTreeMap<String, String>> {
    Some(
        v?.as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
    )
}

/// Verifies that sampled trace ids appear as exemplars of a histogram's buckets.
#[derive(Debug)]
pub struct ExemplarVerifier {
    client: PrometheusClient,
    metric: String,
    skew: Duration,
}

impl ExemplarVerifier {
    /// Samples one exemplar query covers.
    pub const MAX_BATCH: usize = 500;

    /// Looks for exemplars of `metric` (a selector such as
    /// `http_server_request_duration_seconds_bucket`).
    pub fn new(backend: HttpBackend, metric: impl Into<String>) -> Self {
        Self {
            client: PrometheusClient::new(backend),
            metric: metric.into(),
            skew: Duration::from_secs(60),
        }
    }

    /// The client, for RED-total queries.
    pub fn client(&self) -> &PrometheusClient {
        &self.client
    }
}

impl Verifier for ExemplarVerifier {
    fn signal(&self) -> Signal {
        Signal::Metrics
    }

    fn name(&self) -> &str {
        self.client.backend.name()
    }

    fn max_batch(&self) -> usize {
        Self::MAX_BATCH
    }

    fn check<'a>(&'a self, samples: &'a [Sample]) -> BoxFuture<'a, Check> {
        Box::pin(async move {
            let earliest = samples
                .iter()
                .map(|s| s.completed_at)
                .min()
                .unwrap_or_else(SystemTime::now);
            let start = earliest.checked_sub(self.skew).unwrap_or(UNIX_EPOCH);
            let end = SystemTime::now() + self.skew;
            match self.client.exemplars(&self.metric, start, end).await {
                Err(u) => Check::all_unknown(samples.len(), &u.reason, u.took),
                Ok((ex, a)) => {
                    let mut seen: HashMap<TraceId, SystemTime> = HashMap::new();
                    let mut newest = Newest::default();
                    for e in ex {
                        newest.note(&e);
                        seen.entry(e.trace_id)
                            .and_modify(|t| *t = (*t).min(e.at))
                            .or_insert(e.at);
                    }
                    let outcomes = samples
                        .iter()
                        .map(|s| match seen.get(&s.trace_id) {
                            Some(at) => Outcome::Found {
                                first_seen: a.received,
                                spans: None,
                                extra_spans: None,
                                recorded_at: Some(*at),
                            },
                            None => newest.outcome_of_absent(s),
                        })
                        .collect();
                    Check {
                        outcomes,
                        query_durations: vec![a.took],
                    }
                }
            }
        })
    }
}
