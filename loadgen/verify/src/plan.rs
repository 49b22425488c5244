//! `spec.telemetry` as the verifiers take it: sampling, backends, secrets, keep classes.
//! The engine lowers the user's document into a [`TelemetryPlan`]; this crate only reads it.

use std::path::PathBuf;
use std::time::Duration;

use crate::http::{Auth, Endpoint, Secret};
use crate::{PollPolicy, VerifyError};

/// Default sampling when `telemetry.sample` is omitted.
pub const DEFAULT_PER_SECOND: f64 = 100.0;
/// Default Prometheus scrape interval (`metrics.prometheus.scrapeInterval`).
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(15);
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
    /// The metric probe counter whose series carry the probes' exemplars.
    pub probe_metric: String,
    /// Probe slots the echo-server keeps series for.
    pub probe_slots: u16,
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
    /// Prometheus and the request-duration histogram.
    pub metrics: Option<(BackendPlan, String)>,
    /// How often Prometheus scrapes the echo-server.
    pub scrape_interval: Duration,
    /// This process's share of the probe slots when a run is split over runners:
    /// `(runner index, runners)`; `(0, 1)` for a whole run.
    pub probe_share: (u32, u32),
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
            scrape_interval: DEFAULT_SCRAPE_INTERVAL,
            probe_share: (0, 1),
            classes: Vec::new(),
        }
    }

    /// How long a metric probe slot rests before it is used again: two scrape intervals
    /// and a second behind Prometheus; a second against the echo-server's own `/metrics`,
    /// which the verifier scrapes itself within a few tens of milliseconds of each probe.
    pub fn probe_reuse(&self) -> Duration {
        if self.metrics.is_some() {
            self.scrape_interval * 2 + Duration::from_secs(1)
        } else {
            Duration::from_secs(1)
        }
    }

    /// Metric probes per second at most.
    pub fn probes_per_second(&self) -> f64 {
        f64::from(self.server.probe_slots) / self.probe_reuse().as_secs_f64()
    }

    /// True when no backend is configured: the embedded sink verifies.
    pub fn uses_sink(&self) -> bool {
        self.traces.is_none() && self.logs.is_none() && self.metrics.is_none()
    }
}

/// Latency probes per second, all budgeted backends together, as a share of the query
/// budget: one twentieth of it (1/s at the default 20 queries/s), each probe taking
/// several look-ups on its fine schedule.
const PROBE_SHARE: f64 = 0.05;

/// Look-ups a latency probe is assumed to take: its fine steps up to 2 initial intervals
/// after its anchor (eight, up to 500 ms by default), when most backends hold a trace.
const PROBE_HORIZON_INTERVALS: u32 = 2;

/// The share of the query budget the default sampling is fitted to, leaving room for
/// samples that take more than one look-up.
pub const DEFAULT_HEADROOM: f64 = 0.8;

/// Ids one query of each budgeted backend covers.
const TRACE_BATCH: usize = 1;

/// The query demand of one budgeted backend.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryDemand {
    /// `tempo`, `jaeger`, `loki` or `prometheus`.
    pub backend: &'static str,
    /// Queries per second while samples arrive at the planned rate.
    pub per_second: f64,
}

/// The sampling asks for more queries than `maxQueriesPerSecond` can answer within
/// `settleTimeout`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "verifying {samples_per_second:.1} samples/s needs about {needed:.1} queries/s ({parts}) for {load_secs:.0}s of load, but maxQueriesPerSecond {budget} answers at most {affordable:.1}/s over the load plus settleTimeout {settle_secs:.0}s: set `sample: {{perSecond: {fits}}}` or less, or raise maxQueriesPerSecond"
)]
pub struct BudgetShortfall {
    /// Samples per second the sampling implies.
    pub samples_per_second: f64,
    /// Queries per second they need, all backends.
    pub needed: f64,
    /// Per backend, e.g. `tempo 98.0/s, loki 0.4/s`.
    pub parts: String,
    /// The load's length, seconds.
    pub load_secs: f64,
    /// `maxQueriesPerSecond`.
    pub budget: f64,
    /// The average query rate the budget affords over the load: budget × (load + settle) / load.
    pub affordable: f64,
    /// `settleTimeout`, seconds.
    pub settle_secs: f64,
    /// The largest `perSecond` that fits, rounded down to 2 significant digits.
    pub fits: String,
}

impl TelemetryPlan {
    /// Latency probes per second for each budgeted backend: one a second per 20 queries of
    /// the budget, shared among the backends.
    pub fn latency_probes(&self) -> f64 {
        self.max_queries_per_second * PROBE_SHARE / self.budgeted().len().max(1) as f64
    }

    /// The budgeted backends and the ids one of their queries covers.
    fn budgeted(&self) -> Vec<(&'static str, usize)> {
        let mut out = Vec::new();
        match &self.traces {
            Some(TraceBackendPlan::Tempo(_)) => out.push(("tempo", TRACE_BATCH)),
            Some(TraceBackendPlan::Jaeger(_)) => out.push(("jaeger", TRACE_BATCH)),
            None => {}
        }
        if self.logs.is_some() {
            out.push(("loki", crate::loki::LokiVerifier::DEFAULT_BATCH));
        }
        if self.metrics.is_some() {
            out.push(("prometheus", crate::prometheus::ExemplarVerifier::MAX_BATCH));
        }
        out
    }

    /// Queries per second each budgeted backend needs to verify `samples_per_second`:
    /// latency probes on their fine steps, the other samples asked once for
    /// presence (batched where the backend allows, at least one query per half backoff
    /// ceiling). Found-at-first-look-up is assumed: this is the least they need.
    pub fn query_demand(&self, samples_per_second: f64) -> Vec<QueryDemand> {
        let s = samples_per_second.max(0.0);
        let probes = self.latency_probes().min(s);
        let probe_polls = self
            .poll
            .schedule(true)
            .iter()
            .filter(|t| **t <= self.poll.initial_interval * PROBE_HORIZON_INTERVALS)
            .count()
            .max(1) as f64;
        let presence = s - probes;
        let flush = 2.0 / self.poll.max_interval.as_secs_f64().max(1e-3);
        self.budgeted()
            .into_iter()
            .map(|(backend, batch)| {
                // Exemplars are verified on metric probes only, whatever the sampling.
                let (probes, presence) = if backend == "prometheus" {
                    let p = self.probes_per_second();
                    (
                        self.latency_probes().min(p),
                        (p - self.latency_probes()).max(0.0),
                    )
                } else {
                    (probes, presence)
                };
                let rest = if batch <= 1 {
                    presence
                } else {
                    (presence / batch as f64).max(presence.min(flush))
                };
                QueryDemand {
                    backend,
                    per_second: probes * probe_polls + rest,
                }
            })
            .collect()
    }

    /// Refuses sampling that the query budget cannot verify within `settleTimeout`: the
    /// queries `samples_per_second` needs over `load` must fit in what
    /// `maxQueriesPerSecond` answers over `load + settleTimeout`.
    pub fn check_budget(
        &self,
        samples_per_second: f64,
        load: Duration,
    ) -> Result<(), BudgetShortfall> {
        let load_secs = load.as_secs_f64();
        if load_secs <= 0.0 || self.budgeted().is_empty() {
            return Ok(());
        }
        let settle_secs = self.poll.settle_timeout.as_secs_f64();
        let affordable = self.max_queries_per_second * (load_secs + settle_secs) / load_secs;
        let total = |s: f64| -> f64 { self.query_demand(s).iter().map(|d| d.per_second).sum() };
        // Within rounding of the budget counts as fitting, so a suggested rate is accepted.
        let fits = |needed: f64| needed <= affordable * (1.0 + 1e-9);
        let needed = total(samples_per_second);
        if fits(needed) {
            return Ok(());
        }
        let (mut lo, mut hi) = (0.0, samples_per_second);
        for _ in 0..60 {
            let mid = (lo + hi) / 2.0;
            if fits(total(mid)) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Err(BudgetShortfall {
            samples_per_second,
            needed,
            parts: self
                .query_demand(samples_per_second)
                .iter()
                .map(|d| format!("{} {:.1}/s", d.backend, d.per_second))
                .collect::<Vec<_>>()
                .join(", "),
            load_secs,
            budget: self.max_queries_per_second,
            affordable,
            settle_secs,
            fits: round_down_2(lo),
        })
    }

    /// The default sampling for `load` at `samples_per_second` offered: [`DEFAULT_PER_SECOND`],
    /// lowered to what [`DEFAULT_HEADROOM`] of the query budget verifies within
    /// `settleTimeout` (the estimate assumes every sample found at its first look-up).
    pub fn fitted_default(&self, requests_per_second: f64, load: Duration) -> SamplePolicy {
        let want = DEFAULT_PER_SECOND.min(requests_per_second.max(0.0));
        let mut headroom = self.clone();
        headroom.max_queries_per_second *= DEFAULT_HEADROOM;
        match headroom.check_budget(want, load) {
            Ok(()) => SamplePolicy::PerSecond(DEFAULT_PER_SECOND),
            Err(short) => {
                let fits = short.fits.parse::<f64>().unwrap_or(0.0);
                SamplePolicy::PerSecond(fits.max(0.001))
            }
        }
    }
}

/// `x` rounded down to two significant digits, as text (`97.3` → `97`, `0.4567` → `0.45`).
fn round_down_2(x: f64) -> String {
    if x <= 0.0 || !x.is_finite() {
        return "0.001".to_owned();
    }
    let mag = 10f64.powi(x.log10().floor() as i32 - 1);
    let v = (x / mag + 1e-9).floor() * mag;
    let decimals = (-(x.log10().floor() as i32 - 1)).max(0) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_tempo() -> TelemetryPlan {
        let mut p = TelemetryPlan::embedded_default(ServerMetrics {
            histogram: "h".into(),
            probe_routes: vec![],
            probe_metric: "p".into(),
            probe_slots: 64,
        });
        p.traces = Some(TraceBackendPlan::Tempo(BackendPlan {
            url: "http://tempo:3200".into(),
            tenant: None,
            bearer: None,
            basic: None,
            ca_file: None,
            timeout: Duration::from_secs(5),
        }));
        p
    }

    #[test]
    fn per_id_backends_need_a_query_per_sample_and_the_default_does_not_fit() {
        let p = with_tempo();
        // 1 probe/s x 8 look-ups + 99 presence samples.
        let d = p.query_demand(100.0);
        assert_eq!(d.len(), 1);
        assert!((d[0].per_second - 107.0).abs() < 1e-9, "{d:?}");
        let e = p
            .check_budget(100.0, Duration::from_secs(330))
            .expect_err("100/s cannot be verified at 20 queries/s");
        let text = e.to_string();
        assert!(
            text.contains("107.0 queries/s") && text.contains("tempo 107.0/s"),
            "{text}"
        );
        // 20 x (330 + 30) / 330 = 21.8 q/s affords 8 for the probe + 13.8 presence
        // samples: 14.8 samples/s.
        assert_eq!(e.fits, "14");
        assert!(p.check_budget(14.0, Duration::from_secs(330)).is_ok());
        assert!(p.check_budget(15.0, Duration::from_secs(330)).is_err());
        // The default keeps a fifth of the budget spare: 0.8 probes/s x 8 + 11 samples/s.
        assert_eq!(
            p.fitted_default(500.0, Duration::from_secs(330)),
            SamplePolicy::PerSecond(11.0)
        );
    }

    #[test]
    fn batched_backends_and_the_sink_fit_the_default() {
        let mut p = with_tempo();
        p.traces = None;
        p.logs = Some((p_backend(), "{app=\"echo\"}".into()));
        assert!(p.check_budget(100.0, Duration::from_secs(60)).is_ok());
        let sink = TelemetryPlan::embedded_default(ServerMetrics {
            histogram: "h".into(),
            probe_routes: vec![],
            probe_metric: "p".into(),
            probe_slots: 64,
        });
        assert!(sink.check_budget(1e6, Duration::from_secs(60)).is_ok());
    }

    fn p_backend() -> BackendPlan {
        BackendPlan {
            url: "http://loki:3100".into(),
            tenant: None,
            bearer: None,
            basic: None,
            ca_file: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn three_backends_share_the_latency_probes_and_the_default_still_samples() {
        let mut p = with_tempo();
        p.logs = Some((p_backend(), "{app=\"echo\"}".into()));
        p.metrics = Some((p_backend(), "h".into()));
        // 1 probe a second in all: a third each.
        assert!((p.latency_probes() - 1.0 / 3.0).abs() < 1e-12);
        // Tempo's per-sample look-ups dominate: some 10 samples a second still fit.
        match p.fitted_default(500.0, Duration::from_secs(330)) {
            SamplePolicy::PerSecond(n) => assert!((8.0..=15.0).contains(&n), "{n}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rounding_down_keeps_two_digits() {
        assert_eq!(round_down_2(15.83), "15");
        assert_eq!(round_down_2(0.4567), "0.45");
        assert_eq!(round_down_2(1234.0), "1200");
    }
}
