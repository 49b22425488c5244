//! The telemetry round trip of one `loadgen run`: which requests are sampled, which
//! verifiers check them (the embedded OTLP sink and the echo-server's `/metrics`, or
//! Tempo/Jaeger, Loki and Prometheus/Mimir), the pipeline's expected keep rate per request
//! class, and the `telemetry_*` metrics the thresholds judge.
//!
//! # Sampling
//!
//! `telemetry.sample.rate` keeps each completed request (one that got a response, any
//! status) with that probability; `perSecond` keeps at most so many per second (a GCRA
//! token bucket, one second of burst). The default is `perSecond: 100`. A sampled request
//! costs one small record in a bounded channel per verifier; a full channel drops the
//! sample and counts it (`samplesDropped`), it never blocks the load.
//!
//! # Expected keep rates (sampling-aware verification)
//!
//! A pipeline that tail-samples keeps some traces on purpose. `telemetry.expectKeep` lists
//! request classes (by status, by a service-time bound, or by request name; first match
//! wins) with the probability each is kept; a request no class matches is expected to be
//! kept. Classes apply to traces and logs (the echo-server's `telemetryDrop` drops both,
//! as a collector dropping a whole request would); exemplars are not sampled by class.
//!
//! For each class the observed keep rate `found / (found + missing)` gets a 99.9 % Wilson
//! score interval; the class passes when the declared probability lies inside it, and its
//! verdict is reported as a threshold `telemetry_<signal>_keep{class:<name>}`. Only what
//! should have been kept counts as missing: every miss of a class kept with probability 1,
//! and for a class with probability `p < 1` that failed (kept less than declared) the
//! shortfall `p·n − found`. The missing rate divides that by the samples expected to be
//! kept (`n` for probability-1 classes, `p·n` for the others).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ricochet_crds::{BackendSpec, KeepClass, SecretRef, TelemetrySpec};
use ricochet_reports::model::{
    ExporterCounts, KeepClassSummary, SignalSummary, TelemetrySummary, ThresholdResult, Verdict,
};
use tokio_util::sync::CancellationToken;

use crate::client::{Exchange, random_u64};
use crate::duration::parse_duration;
use crate::evaluate::{Judgement, Selected, judge_selected};
use crate::summary::trend_stats;
use crate::thresholds::{Aggregation, Threshold};
use crate::verify::exposition::{self, ExpositionVerifier};
use crate::verify::http::{Auth, Endpoint, HttpBackend, Secret};
use crate::verify::loki::LokiVerifier;
use crate::verify::pipeline::Pipeline;
use crate::verify::prometheus::{EXEMPLAR_METRIC, ExemplarVerifier, PrometheusClient};
use crate::verify::tempo::{TraceApi, TraceVerifier};
use crate::verify::{PollPolicy, Rate, RateLimiter, Sample, Signal, Tally, TraceId, Verifier};

/// Default sampling when `telemetry.sample` is omitted.
pub const DEFAULT_PER_SECOND: f64 = 100.0;
/// Default `maxQueriesPerSecond`.
pub const DEFAULT_MAX_QPS: f64 = 20.0;
/// Samples each verifier's channel holds before new ones are dropped.
pub const CHANNEL_CAPACITY: usize = 65_536;
/// Trace ids the embedded sink remembers per signal.
pub const SINK_CAPACITY: usize = 1_000_000;

/// A `telemetry` field that is wrong: its path under `spec.telemetry` and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Full field path, e.g. `spec.telemetry.sample.rate`.
    pub field: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

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
    pub fn read(&self) -> Result<Secret, crate::verify::VerifyError> {
        match &self.from {
            SecretFrom::Env(v) => Secret::from_env(v),
            SecretFrom::File(p) => Secret::from_file(p),
        }
        .map_err(|e| crate::verify::VerifyError::SecretOf {
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
    fn endpoint(&self) -> Result<Endpoint, crate::verify::VerifyError> {
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
    fn matches(&self, request: &str, status: u16, service_time: Duration) -> bool {
        self.status.is_none_or(|m| m.matches(status))
            && self.min_latency.is_none_or(|l| service_time >= l)
            && self.request.as_deref().is_none_or(|r| r == request)
    }
}

/// `spec.telemetry`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryPlan {
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
    pub fn embedded_default() -> Self {
        Self {
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

    /// Validates `spec.telemetry`; `base_dir` resolves relative file paths.
    pub fn from_spec(spec: &TelemetrySpec, base_dir: &Path) -> Result<Self, FieldError> {
        const P: &str = "spec.telemetry";
        let mut plan = Self::embedded_default();
        if let Some(s) = &spec.sample {
            plan.sample = match (s.rate, s.per_second) {
                (Some(r), None) if r > 0.0 && r <= 1.0 => SamplePolicy::Rate(r),
                (Some(r), None) => {
                    return Err(field_err(
                        format!("{P}.sample.rate"),
                        format!("must be a fraction > 0 and <= 1, got {r}"),
                    ));
                }
                (None, Some(n)) if n.is_finite() && n > 0.0 => SamplePolicy::PerSecond(n),
                (None, Some(n)) => {
                    return Err(field_err(
                        format!("{P}.sample.perSecond"),
                        format!("must be a finite number > 0, got {n}"),
                    ));
                }
                _ => {
                    return Err(field_err(
                        format!("{P}.sample"),
                        "needs exactly one of `rate` (a fraction, e.g. 0.01) or `perSecond` (e.g. 100)",
                    ));
                }
            };
        }
        let dur = |field: &str, text: &str| {
            parse_duration(text).map_err(|e| field_err(format!("{P}.{field}"), e.to_string()))
        };
        if let Some(t) = &spec.settle_timeout {
            plan.poll.settle_timeout = dur("settleTimeout", t)?;
            if plan.poll.settle_timeout.is_zero() {
                return Err(field_err(
                    format!("{P}.settleTimeout"),
                    "must be longer than 0s, e.g. `30s`",
                ));
            }
        }
        if let Some(t) = &spec.poll_interval {
            let d = dur("pollInterval", t)?;
            if d < Duration::from_millis(10) {
                return Err(field_err(
                    format!("{P}.pollInterval"),
                    "must be at least 10ms, e.g. `250ms`",
                ));
            }
            plan.poll.initial_interval = d;
            plan.poll.max_interval = plan.poll.max_interval.max(d);
        }
        if let Some(q) = spec.max_queries_per_second {
            if !(q.is_finite() && q > 0.0) {
                return Err(field_err(
                    format!("{P}.maxQueriesPerSecond"),
                    format!("must be a finite number > 0, got {q}"),
                ));
            }
            plan.max_queries_per_second = q;
        }
        if let Some(t) = &spec.traces {
            plan.traces = Some(match (&t.tempo, &t.jaeger) {
                (Some(b), None) => {
                    TraceBackendPlan::Tempo(backend(&format!("{P}.traces.tempo"), b, base_dir)?)
                }
                (None, Some(b)) => {
                    TraceBackendPlan::Jaeger(backend(&format!("{P}.traces.jaeger"), b, base_dir)?)
                }
                _ => {
                    return Err(field_err(
                        format!("{P}.traces"),
                        "needs exactly one of `tempo` or `jaeger`, e.g. `{tempo: {url: http://tempo:3200}}`",
                    ));
                }
            });
        }
        if let Some(l) = &spec.logs {
            let f = format!("{P}.logs.loki");
            let sel = l.loki.selector.trim();
            if !(sel.starts_with('{') && sel.ends_with('}')) {
                return Err(field_err(
                    format!("{f}.selector"),
                    format!(
                        "`{sel}` is not a LogQL stream selector; expected e.g. `{{app=\"echo-server\"}}`"
                    ),
                ));
            }
            plan.logs = Some((backend(&f, &l.loki.backend, base_dir)?, sel.to_owned()));
        }
        if let Some(m) = &spec.metrics {
            let f = format!("{P}.metrics.prometheus");
            let metric = m
                .prometheus
                .metric
                .clone()
                .unwrap_or_else(|| EXEMPLAR_METRIC.to_owned());
            plan.metrics = Some((backend(&f, &m.prometheus.backend, base_dir)?, metric));
        }
        for (i, c) in spec.expect_keep.iter().enumerate() {
            plan.classes
                .push(keep_class(&format!("{P}.expectKeep[{i}]"), c)?);
        }
        if plan.classes.len() >= usize::from(u8::MAX) {
            return Err(field_err(
                format!("{P}.expectKeep"),
                "at most 254 classes are supported",
            ));
        }
        Ok(plan)
    }
}

/// The source of a secret reference at `field`: exactly one of `env` and `file`.
pub(crate) fn secret(
    field: &str,
    s: &SecretRef,
    base_dir: &Path,
) -> Result<SecretSource, FieldError> {
    let from = match (&s.env, &s.file) {
        (Some(v), None) if !v.is_empty() => SecretFrom::Env(v.clone()),
        (None, Some(f)) if !f.is_empty() => SecretFrom::File(base_dir.join(f)),
        _ => {
            return Err(field_err(
                field,
                "needs exactly one of `env` (a variable name) or `file` (a path); secrets are never written in the document",
            ));
        }
    };
    Ok(SecretSource {
        field: field.to_owned(),
        from,
    })
}

fn backend(field: &str, b: &BackendSpec, base_dir: &Path) -> Result<BackendPlan, FieldError> {
    Endpoint::new(&b.url).map_err(|e| field_err(format!("{field}.url"), e.to_string()))?;
    if let Some(t) = &b.tenant
        && !t.bytes().all(|c| (0x20..0x7f).contains(&c))
    {
        return Err(field_err(
            format!("{field}.tenant"),
            "must be printable ASCII (it is sent as X-Scope-OrgID)",
        ));
    }
    if b.bearer_token.is_some() && b.basic_auth.is_some() {
        return Err(field_err(
            field,
            "has both `bearerToken` and `basicAuth`; choose one",
        ));
    }
    let timeout = match &b.timeout {
        Some(t) => {
            parse_duration(t).map_err(|e| field_err(format!("{field}.timeout"), e.to_string()))?
        }
        None => Duration::from_secs(10),
    };
    Ok(BackendPlan {
        url: b.url.clone(),
        tenant: b.tenant.clone(),
        bearer: b
            .bearer_token
            .as_ref()
            .map(|s| secret(&format!("{field}.bearerToken"), s, base_dir))
            .transpose()?,
        basic: b
            .basic_auth
            .as_ref()
            .map(|a| {
                secret(
                    &format!("{field}.basicAuth.password"),
                    &a.password,
                    base_dir,
                )
                .map(|p| (a.username.clone(), p))
            })
            .transpose()?,
        ca_file: b.ca_file.as_ref().map(|f| base_dir.join(f)),
        timeout,
    })
}

fn keep_class(field: &str, c: &KeepClass) -> Result<KeepClassPlan, FieldError> {
    if c.name.trim().is_empty() {
        return Err(field_err(format!("{field}.name"), "must not be empty"));
    }
    if !(0.0..=1.0).contains(&c.keep) {
        return Err(field_err(
            format!("{field}.keep"),
            format!("must be a probability between 0 and 1, got {}", c.keep),
        ));
    }
    let status = match c.status.as_deref() {
        None => None,
        Some(s) => Some(parse_status(s).ok_or_else(|| {
            field_err(
                format!("{field}.status"),
                format!("`{s}` is neither a status (100-599) nor a class such as `5xx`"),
            )
        })?),
    };
    let min_latency = c
        .min_latency
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| field_err(format!("{field}.minLatency"), e.to_string()))?;
    Ok(KeepClassPlan {
        name: c.name.clone(),
        keep: c.keep,
        status,
        min_latency,
        request: c.request.clone(),
    })
}

fn parse_status(s: &str) -> Option<StatusMatch> {
    let b = s.as_bytes();
    match b {
        [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => {
            Some(StatusMatch::Class(u16::from(d - b'0')))
        }
        _ => s
            .parse::<u16>()
            .ok()
            .filter(|n| (100..=599).contains(n))
            .map(StatusMatch::Exact),
    }
}

/// Spans a request's trace should hold: `width × depth + 1` for `/storm` (as the
/// echo-server reports), else 1.
pub fn expected_spans(path_and_query: &str) -> usize {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    if !path.trim_end_matches('/').ends_with("/storm") {
        return 1;
    }
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(1)
    };
    param("width")
        .saturating_mul(param("depth"))
        .saturating_add(1)
}

/// Chooses requests for verification and hands them to the verifiers; shared by every
/// worker of a run.
#[derive(Debug)]
pub struct Sampler {
    policy: SamplePolicy,
    classes: Vec<KeepClassPlan>,
    pipeline: Arc<Pipeline>,
    origin: Instant,
    /// GCRA theoretical arrival time, ns since `origin` (`perSecond`).
    tat: AtomicU64,
    sampled: AtomicU64,
}

/// What a worker knows about a completed request, for [`Sampler::offer`].
#[derive(Debug, Clone, Copy)]
pub struct Completed<'a> {
    /// Scenario name.
    pub scenario: &'a Arc<str>,
    /// Request name.
    pub request: &'a Arc<str>,
    /// Expected span count.
    pub expected_spans: usize,
    /// Scheduled instant.
    pub scheduled: Instant,
    /// The exchange.
    pub exchange: &'a Exchange,
}

impl Sampler {
    fn new(policy: SamplePolicy, classes: Vec<KeepClassPlan>, pipeline: Arc<Pipeline>) -> Self {
        Self {
            policy,
            classes,
            pipeline,
            origin: Instant::now(),
            tat: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
        }
    }

    fn take(&self) -> bool {
        match self.policy {
            SamplePolicy::Rate(r) => {
                r >= 1.0 || (random_u64() >> 11) as f64 / (1u64 << 53) as f64 <= r
            }
            SamplePolicy::PerSecond(n) => {
                let interval = (1e9 / n) as u64;
                let burst = 1_000_000_000u64;
                let now = self.origin.elapsed().as_nanos() as u64;
                let mut tat = self.tat.load(Ordering::Relaxed);
                loop {
                    let next = tat.max(now) + interval;
                    if next.saturating_sub(now) > burst + interval {
                        return false;
                    }
                    match self.tat.compare_exchange_weak(
                        tat,
                        next,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return true,
                        Err(t) => tat = t,
                    }
                }
            }
        }
    }

    /// The keep class of a request: its index in `expectKeep`, or the class count for none.
    pub fn class_of(&self, request: &str, status: u16, service_time: Duration) -> u8 {
        let i = self
            .classes
            .iter()
            .position(|c| c.matches(request, status, service_time))
            .unwrap_or(self.classes.len());
        u8::try_from(i).unwrap_or(u8::MAX)
    }

    /// Considers a completed request for verification (cheap when not sampled).
    pub fn offer(&self, c: Completed<'_>) {
        if !self.take() {
            return;
        }
        let ex = c.exchange;
        let now = SystemTime::now();
        let since_end = ex.end.elapsed();
        let service_time = ex.end.saturating_duration_since(ex.sent);
        let sample = Sample {
            trace_id: TraceId(ex.ids.trace_id_bytes()),
            request_id: Arc::from(ex.ids.request_id_hex()),
            tenant: None,
            scenario: c.scenario.clone(),
            scheduled: c.scheduled,
            completed: ex.end,
            completed_at: now.checked_sub(since_end).unwrap_or(now),
            expected_spans: c.expected_spans,
            request: c.request.clone(),
            status: ex.status,
            service_time,
            class: self.class_of(c.request, ex.status, service_time),
        };
        self.sampled.fetch_add(1, Ordering::Relaxed);
        self.pipeline.submit(&sample);
    }

    /// Requests sampled so far.
    pub fn sampled(&self) -> u64 {
        self.sampled.load(Ordering::Relaxed)
    }
}

/// The embedded echo-server's side of the default: where its `/metrics` is.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedMetrics {
    /// The echo-server's address.
    pub addr: std::net::SocketAddr,
}

/// Verification could not start (bad secret, CA file, URL).
#[derive(Debug, thiserror::Error)]
#[error("telemetry verification cannot start: {0}")]
pub struct StartError(#[from] pub crate::verify::VerifyError);

/// The verifiers of a run and their shared sampler.
#[derive(Debug)]
pub struct Verification {
    sampler: Arc<Sampler>,
    pipeline: Arc<Pipeline>,
    backends: Vec<String>,
    plan: TelemetryPlan,
    red: Option<RedSource>,
}

/// Routes that are not workload: scrapes and probes, left out of the RED total.
const NOT_WORKLOAD: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

/// The echo-server's request counter (the `_count` of its duration histogram).
const REQUEST_COUNT: &str = "http_server_request_duration_seconds_count";

/// Where the server-side request total (the RED "rate" counter) is read.
#[derive(Debug)]
enum RedSource {
    /// The echo-server's own `/metrics`.
    Exposition(ExpositionVerifier),
    /// Prometheus or Mimir, with the PromQL of the total.
    Prometheus(PrometheusClient, String),
}

impl RedSource {
    async fn total(&self) -> Option<f64> {
        match self {
            Self::Exposition(e) => {
                let (text, _) = e.scrape().await.ok()?;
                let all = exposition::sum(&text, REQUEST_COUNT, &[]);
                let skip: f64 = NOT_WORKLOAD
                    .iter()
                    .map(|r| exposition::sum(&text, REQUEST_COUNT, &[("http_route", r)]))
                    .sum();
                Some(all - skip)
            }
            Self::Prometheus(c, q) => c.total(q).await.ok().map(|t| t.unwrap_or(0.0)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Exposition(_) => "echo-server /metrics".to_owned(),
            Self::Prometheus(c, _) => format!("prometheus {}", c.backend().base_for_display()),
        }
    }
}

impl Verification {
    /// Starts one polling task per verifier: the embedded sink's (`sink`) and the
    /// echo-server's `/metrics` when the plan names no backend, else the configured
    /// backends. Needs a Tokio runtime.
    pub fn start(
        plan: &TelemetryPlan,
        sink: Option<&crate::sink::Sink>,
        embedded: Option<EmbeddedMetrics>,
        cancel: CancellationToken,
    ) -> Result<Self, StartError> {
        let limiter = RateLimiter::per_second(plan.max_queries_per_second)?;
        let mut verifiers: Vec<Arc<dyn Verifier>> = Vec::new();
        let mut backends = Vec::new();
        if let Some(sink) = sink {
            verifiers.push(Arc::new(sink.verifier(Signal::Traces)));
            backends.push(format!("embedded OTLP sink {}", sink.grpc_endpoint()));
            verifiers.push(Arc::new(sink.verifier(Signal::Logs)));
            backends.push(format!("embedded OTLP sink {}", sink.grpc_endpoint()));
        }
        let mut red = None;
        if let Some(e) = embedded {
            let url = format!("http://{}/", e.addr);
            let b = HttpBackend::new(
                "echo-server",
                &Endpoint::new(&url)?,
                RateLimiter::unlimited(),
            )?;
            verifiers.push(Arc::new(ExpositionVerifier::new(b, SINK_CAPACITY)));
            backends.push(format!("echo-server /metrics {url}"));
            let b = HttpBackend::new(
                "echo-server",
                &Endpoint::new(&url)?,
                RateLimiter::unlimited(),
            )?;
            red = Some(RedSource::Exposition(ExpositionVerifier::new(b, 1)));
        }
        if let Some(t) = &plan.traces {
            let (name, api, b) = match t {
                TraceBackendPlan::Tempo(b) => ("tempo", TraceApi::Tempo, b),
                TraceBackendPlan::Jaeger(b) => ("jaeger", TraceApi::Jaeger, b),
            };
            let backend = HttpBackend::new(name, &b.endpoint()?, limiter.clone())?;
            backends.push(format!("{name} {}", backend.base_for_display()));
            verifiers.push(Arc::new(TraceVerifier::new(backend, api, false)));
        }
        if let Some((b, selector)) = &plan.logs {
            let backend = HttpBackend::new("loki", &b.endpoint()?, limiter.clone())?;
            backends.push(format!("loki {}", backend.base_for_display()));
            verifiers.push(Arc::new(LokiVerifier::new(backend, selector.clone())));
        }
        if let Some((b, metric)) = &plan.metrics {
            let count = metric.replace("_bucket", "_count");
            red = Some(RedSource::Prometheus(
                PrometheusClient::new(HttpBackend::new(
                    "prometheus",
                    &b.endpoint()?,
                    limiter.clone(),
                )?),
                format!("sum({count}{{http_route!~\"{}\"}})", NOT_WORKLOAD.join("|")),
            ));
            let backend = HttpBackend::new("prometheus", &b.endpoint()?, limiter)?;
            backends.push(format!("prometheus {}", backend.base_for_display()));
            verifiers.push(Arc::new(
                ExemplarVerifier::new(backend).with_metric(metric.clone()),
            ));
        }
        let pipeline = Arc::new(Pipeline::start(
            verifiers,
            plan.poll.clone(),
            CHANNEL_CAPACITY,
            cancel,
        ));
        let sampler = Arc::new(Sampler::new(
            plan.sample,
            plan.classes.clone(),
            pipeline.clone(),
        ));
        Ok(Self {
            sampler,
            pipeline,
            backends,
            plan: plan.clone(),
            red,
        })
    }

    /// The server-side request total (workload routes) and where it was read; `None`
    /// without a metrics source or when it cannot be read.
    pub async fn requests_total(&self) -> Option<(f64, String)> {
        let red = self.red.as_ref()?;
        Some((red.total().await?, red.describe()))
    }

    /// The settle timeout.
    pub fn settle_timeout(&self) -> Duration {
        self.plan.poll.settle_timeout
    }

    /// The sampler the workers offer completed requests to.
    pub fn sampler(&self) -> Arc<Sampler> {
        self.sampler.clone()
    }

    /// The results so far (live thresholds).
    pub fn snapshot(&self) -> Results {
        self.results(self.pipeline.snapshot())
    }

    /// Stops sampling, waits for pending samples to settle (at most `settleTimeout` after
    /// the last completion; Ctrl-C cancels the wait and settles them unknown), and returns
    /// the results.
    pub async fn finish(&self) -> Results {
        let tallies = self.pipeline.finish().await;
        self.results(tallies)
    }

    fn results(&self, tallies: Vec<Tally>) -> Results {
        Results {
            signals: tallies
                .into_iter()
                .zip(&self.backends)
                .map(|(t, b)| (b.clone(), t))
                .collect(),
            classes: self.plan.classes.clone(),
            sample: self.plan.sample,
            settle_timeout: self.plan.poll.settle_timeout,
            sampled: self.sampler.sampled(),
            dropped: self.pipeline.dropped().into_iter().sum(),
        }
    }
}

/// Verification results: one tally per verifier, with the class expectations.
#[derive(Debug, Clone)]
pub struct Results {
    /// `(backend description, tally)` per verifier.
    pub signals: Vec<(String, Tally)>,
    /// Expected keep classes.
    pub classes: Vec<KeepClassPlan>,
    /// The sampling policy.
    pub sample: SamplePolicy,
    /// The settle timeout.
    pub settle_timeout: Duration,
    /// Requests sampled.
    pub sampled: u64,
    /// Samples dropped because a verifier's channel was full.
    pub dropped: u64,
}

/// The verdict on one keep class of one signal.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassVerdict {
    /// Class name (`default` for requests no class matched).
    pub name: String,
    /// Declared keep probability.
    pub declared: f64,
    /// Found and answered-missing samples (the observed rate's denominator).
    pub n: u64,
    /// Found samples.
    pub found: u64,
    /// Unchecked samples.
    pub unknown: u64,
    /// Observed keep rate and its 99.9 % Wilson interval ([`wilson`]).
    pub observed: Option<(f64, f64, f64)>,
    /// Pass, fail, or unknown (unchecked samples, or none).
    pub verdict: Verdict,
    /// Samples attributed as missing: misses of a probability-1 class, the shortfall of a
    /// failed class.
    pub attributed_missing: f64,
    /// Samples expected to be kept.
    pub expected_kept: f64,
}

/// 99.9 % Wilson score interval of `k` successes in `n` trials. 99.9 %, not 95 %: a
/// nightly gate judging several classes must not fail one run in twenty on a policy that
/// holds; a real deviation (0.10 kept where 0.5 was declared) still stands out after a
/// few dozen samples.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 3.290_526_731_491_926_f64;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    // Exact at the edges: all kept means the interval reaches 1 (rounding of center +
    // half can land just below it), none kept that it reaches 0.
    let lo = if k == 0.0 {
        0.0
    } else {
        (center - half).max(0.0)
    };
    let hi = if k == n {
        1.0
    } else {
        (center + half).min(1.0)
    };
    (lo, hi)
}

impl Results {
    fn tally(&self, signal: Signal) -> Option<&Tally> {
        self.signals
            .iter()
            .map(|(_, t)| t)
            .find(|t| t.signal == signal)
    }

    /// The per-class verdicts of a signal (traces and logs; empty for exemplars and when
    /// no class is declared).
    pub fn class_verdicts(&self, t: &Tally) -> Vec<ClassVerdict> {
        if self.classes.is_empty() || t.signal == Signal::Metrics {
            return Vec::new();
        }
        let mut out = Vec::new();
        for i in 0..=self.classes.len() {
            let counts = t.by_class.get(i).copied().unwrap_or_default();
            let (name, declared) = match self.classes.get(i) {
                Some(c) => (c.name.clone(), c.keep),
                None => ("default".to_owned(), 1.0),
            };
            let n = counts.found + counts.missing;
            if n + counts.unknown == 0 {
                continue;
            }
            let rate = (n > 0).then(|| {
                let (lo, hi) = wilson(counts.found, n);
                (counts.found as f64 / n as f64, lo, hi)
            });
            let verdict = match rate {
                _ if counts.unknown > 0 => Verdict::Unknown,
                None => Verdict::Unknown,
                Some((_, lo, hi)) if (lo..=hi).contains(&declared) => Verdict::Pass,
                Some(_) => Verdict::Fail,
            };
            let attributed_missing = if declared >= 1.0 {
                counts.missing as f64
            } else {
                match rate {
                    Some((_, _, hi)) if hi < declared => {
                        (declared * n as f64 - counts.found as f64).max(0.0)
                    }
                    _ => 0.0,
                }
            };
            out.push(ClassVerdict {
                name,
                declared,
                n,
                found: counts.found,
                unknown: counts.unknown,
                observed: rate,
                verdict,
                attributed_missing,
                expected_kept: declared * n as f64,
            });
        }
        out
    }

    /// `telemetry_<signal>_missing`, counting only what should have been kept.
    pub fn missing_rate(&self, t: &Tally) -> Rate {
        let classes = self.class_verdicts(t);
        if classes.is_empty() {
            return t.missing_rate();
        }
        let missing: f64 = classes.iter().map(|c| c.attributed_missing).sum();
        let expected: f64 = classes.iter().map(|c| c.expected_kept).sum();
        if t.samples() == 0 {
            return Rate::NoSamples;
        }
        let rate = if expected > 0.0 {
            missing / expected
        } else {
            0.0
        };
        match t.missing_rate() {
            Rate::Unknown { reason, .. } => {
                let unknown = t.unknown as f64;
                Rate::Unknown {
                    reason,
                    lower: rate,
                    upper: ((missing + unknown) / (expected + unknown)).min(1.0),
                }
            }
            _ => Rate::Known(rate),
        }
    }

    /// Judges a `telemetry_*` threshold.
    pub fn judge(&self, th: &Threshold) -> Judgement {
        let Some((signal, what)) = parse_metric(&th.metric) else {
            return Judgement::unknown(format!("`{}` is not a telemetry metric", th.metric));
        };
        let Some(t) = self.tally(signal) else {
            return Judgement::unknown(format!(
                "no {} backend was verified in this run, so `{}` was not measured",
                signal.metric_label(),
                th.metric
            ));
        };
        let no_data = format!("no sampled request's {} settled", signal.metric_label());
        let rate = |r: Rate, bad: u64| -> Judgement {
            match r {
                Rate::NoSamples => Judgement::unknown(no_data.clone()),
                Rate::Unknown {
                    reason,
                    lower,
                    upper,
                } => Judgement::unknown(format!(
                    "the rate lies between {lower:.4} and {upper:.4}: {reason}"
                )),
                Rate::Known(v) => {
                    let total = 1_000_000_000u64;
                    let selected = match th.aggregation {
                        Aggregation::Count => Selected::Counter(bad),
                        _ => Selected::Rate {
                            passes: (v * total as f64).round() as u64,
                            total,
                        },
                    };
                    judge_selected(th, &selected, 1.0, &no_data)
                }
            }
        };
        match what {
            "missing" => rate(self.missing_rate(t), t.missing),
            "incomplete" => rate(t.incomplete_rate(), t.incomplete),
            "unknown" => rate(t.unknown_rate(), t.unknown),
            "ingest_latency" => judge_selected(
                th,
                &Selected::Trend(t.ingest_latency.clone()),
                1.0,
                &no_data,
            ),
            _ => judge_selected(
                th,
                &Selected::Trend(t.query_duration.clone()),
                1.0,
                &no_data,
            ),
        }
    }

    /// The summary section.
    pub fn summary(&self) -> TelemetrySummary {
        let signals = self
            .signals
            .iter()
            .map(|(backend, t)| {
                let missing_rate = match self.missing_rate(t) {
                    Rate::Known(v) => Some(v),
                    _ => None,
                };
                SignalSummary {
                    signal: match t.signal {
                        Signal::Traces => "traces",
                        Signal::Logs => "logs",
                        Signal::Metrics => "metrics",
                    }
                    .to_owned(),
                    backend: backend.clone(),
                    sampled: t.samples() + t.superseded,
                    found: t.found,
                    missing: t.missing,
                    unknown: t.unknown,
                    incomplete: t.incomplete,
                    ingest_latency: trend_stats(&t.ingest_latency),
                    ingest_percentiles: Vec::new(),
                    superseded: t.superseded,
                    missing_rate,
                    query_duration: trend_stats(&t.query_duration),
                    unknown_reasons: t.unknown_reasons.clone(),
                    classes: self
                        .class_verdicts(t)
                        .into_iter()
                        .map(|c| KeepClassSummary {
                            name: c.name,
                            declared: c.declared,
                            samples: c.n,
                            found: c.found,
                            unknown: c.unknown,
                            observed: c.observed.map(|o| o.0),
                            lower: c.observed.map(|o| o.1),
                            upper: c.observed.map(|o| o.2),
                            verdict: c.verdict,
                        })
                        .collect(),
                }
            })
            .collect();
        TelemetrySummary {
            signals,
            sampling: Some(self.sample.describe()),
            settle_timeout_secs: Some(self.settle_timeout.as_secs_f64()),
            samples_dropped: self.dropped,
            exporter: Vec::new(),
            recovery_secs: None,
            requests: None,
        }
    }
}

impl Results {
    /// One threshold result per declared keep class and signal (the `default` class is
    /// judged by the `telemetry_*_missing` thresholds instead): pass when the declared
    /// probability lies inside the observed rate's 99.9 % interval.
    pub fn class_results(&self) -> Vec<ThresholdResult> {
        let mut out = Vec::new();
        for (_, t) in &self.signals {
            for c in self.class_verdicts(t) {
                if c.name == "default" && !self.classes.iter().any(|k| k.name == "default") {
                    continue;
                }
                let reason = match c.observed {
                    Some((o, lo, hi)) => format!(
                        "observed keep {o:.4} (99.9% interval {lo:.4}–{hi:.4}) over {} samples; declared {}",
                        c.n, c.declared
                    ),
                    None => "no sample of this class settled".to_owned(),
                };
                let reason = if c.unknown > 0 {
                    format!("{reason}; {} samples could not be checked", c.unknown)
                } else {
                    reason
                };
                out.push(ThresholdResult {
                    metric: format!(
                        "telemetry_{}_keep{{class:{}}}",
                        t.signal.metric_label(),
                        c.name
                    ),
                    expression: format!("keep≈{}", c.declared),
                    observed: c.observed.map(|o| o.0),
                    limit: c.declared,
                    verdict: c.verdict,
                    reason: Some(reason),
                    abort_on_fail: false,
                    window_secs: None,
                    phase: None,
                });
            }
        }
        out
    }

    /// Seconds from `storm_end` until the traces' ingest latency (mean per second of
    /// completion) is back within 1.5× of its mean before `storm_start`; `None` without a
    /// baseline or when it never recovered within the run.
    pub fn recovery_secs(&self, storm_start: Duration, storm_end: Duration) -> Option<f64> {
        let t = self.tally(Signal::Traces)?;
        let series = &t.ingest_series;
        let (s0, s1) = (storm_start.as_secs() as usize, storm_end.as_secs() as usize);
        let (n, sum) = series
            .iter()
            .take(s0)
            .fold((0u64, 0u64), |(n, s), (c, u)| (n + c, s + u));
        if n == 0 {
            return None;
        }
        let baseline = sum as f64 / n as f64;
        series
            .iter()
            .enumerate()
            .skip(s1)
            .find(|(_, (c, u))| *c > 0 && (*u as f64 / *c as f64) <= 1.5 * baseline)
            .map(|(i, _)| (i as f64 - storm_end.as_secs_f64()).max(0.0))
    }
}

/// The echo-server exporter's counters as `/healthz` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExporterReading {
    /// Spans: exported, failed, dropped.
    pub spans: (u64, u64, u64),
    /// Logs: exported, failed, dropped.
    pub logs: (u64, u64, u64),
    /// Requests whose telemetry chaos dropped on purpose.
    pub chaos_dropped: u64,
}

impl ExporterReading {
    /// Reads `GET {base}/healthz` of an echo-server (plain HTTP); `None` when it cannot.
    pub async fn read(base: &str) -> Option<Self> {
        use http_body_util::BodyExt as _;
        let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let uri: http::Uri = format!("{}/healthz", base.trim_end_matches('/'))
            .parse()
            .ok()?;
        let fetch = async {
            let resp = client.get(uri).await.ok()?;
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            serde_json::from_slice::<serde_json::Value>(&body).ok()
        };
        let v = tokio::time::timeout(Duration::from_secs(3), fetch)
            .await
            .ok()??;
        let e = v.get("exporter")?;
        let triple = |o: &serde_json::Value| {
            let n = |k: &str| o.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            (n("exported"), n("failed"), n("dropped"))
        };
        Some(Self {
            spans: triple(e),
            logs: e.get("logs").map(triple).unwrap_or_default(),
            chaos_dropped: e
                .get("chaos_dropped")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
        })
    }

    /// After minus before, as the summary's exporter counts.
    pub fn delta(before: &Self, after: &Self) -> Vec<ExporterCounts> {
        let d = |a: (u64, u64, u64), b: (u64, u64, u64)| {
            (
                a.0.saturating_sub(b.0),
                a.1.saturating_sub(b.1),
                a.2.saturating_sub(b.2),
            )
        };
        let chaos = after.chaos_dropped.saturating_sub(before.chaos_dropped);
        let (s, l) = (d(after.spans, before.spans), d(after.logs, before.logs));
        vec![
            ExporterCounts {
                signal: "spans".into(),
                accepted: s.0,
                refused: s.1,
                dropped: s.2 + chaos,
            },
            ExporterCounts {
                signal: "logs".into(),
                accepted: l.0,
                refused: l.1,
                dropped: l.2 + chaos,
            },
        ]
    }
}

/// `telemetry_trace_missing` → `(Traces, "missing")`.
pub fn parse_metric(metric: &str) -> Option<(Signal, &str)> {
    let rest = metric.strip_prefix("telemetry_")?;
    let (signal, what) = rest.split_once('_')?;
    let signal = match signal {
        "trace" => Signal::Traces,
        "log" => Signal::Logs,
        "metric" => Signal::Metrics,
        _ => return None,
    };
    matches!(
        what,
        "missing" | "unknown" | "ingest_latency" | "query_duration"
    )
    .then_some((signal, what))
    .or_else(|| (signal == Signal::Traces && what == "incomplete").then_some((signal, what)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_paths_expect_width_times_depth_plus_one_spans() {
        assert_eq!(expected_spans("/api/orders"), 1);
        assert_eq!(expected_spans("/storm?width=10&depth=5"), 51);
        assert_eq!(expected_spans("/storm?depth=3"), 4);
        assert_eq!(expected_spans("/storm"), 2);
    }

    #[test]
    fn wilson_intervals_cover_the_truth_and_shrink_with_n() {
        let (lo, hi) = wilson(100, 1000);
        assert!(lo < 0.1 && hi > 0.1 && hi - lo < 0.07, "{lo} {hi}");
        let (lo, hi) = wilson(10, 100);
        assert!(hi - lo > 0.1);
        assert_eq!(wilson(50, 50).1, 1.0);
        // All kept: the interval reaches 1 exactly, whatever the rounding, for every n.
        assert!((1..5000).all(|n| wilson(n, n).1 == 1.0 && wilson(0, n).0 == 0.0));
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn the_per_second_sampler_keeps_one_second_of_burst_then_the_rate() {
        let p = Arc::new(Pipeline::start(
            Vec::new(),
            PollPolicy::default(),
            1,
            CancellationToken::new(),
        ));
        let s = Sampler::new(SamplePolicy::PerSecond(100.0), Vec::new(), p);
        let taken = (0..10_000).filter(|_| s.take()).count();
        assert!((100..=102).contains(&taken), "{taken}");
    }

    #[test]
    fn telemetry_metric_names_parse() {
        assert_eq!(
            parse_metric("telemetry_trace_missing"),
            Some((Signal::Traces, "missing"))
        );
        assert_eq!(
            parse_metric("telemetry_log_ingest_latency"),
            Some((Signal::Logs, "ingest_latency"))
        );
        assert_eq!(
            parse_metric("telemetry_trace_incomplete"),
            Some((Signal::Traces, "incomplete"))
        );
        assert_eq!(parse_metric("telemetry_log_incomplete"), None);
        assert_eq!(parse_metric("http_req_failed"), None);
    }

    #[test]
    fn classes_count_as_missing_only_what_should_have_been_kept() {
        let classes = vec![
            KeepClassPlan {
                name: "errors".into(),
                keep: 1.0,
                status: Some(StatusMatch::Class(5)),
                min_latency: None,
                request: None,
            },
            KeepClassPlan {
                name: "baseline".into(),
                keep: 0.1,
                status: None,
                min_latency: None,
                request: None,
            },
        ];
        let mut t = Tally::new(Signal::Traces);
        t.found = 300;
        t.missing = 1800;
        t.by_class = vec![
            crate::verify::ClassCounts {
                found: 100,
                missing: 0,
                unknown: 0,
            },
            crate::verify::ClassCounts {
                found: 200,
                missing: 1800,
                unknown: 0,
            },
        ];
        let r = Results {
            signals: vec![("sink".into(), t.clone())],
            classes: classes.clone(),
            sample: SamplePolicy::Rate(1.0),
            settle_timeout: Duration::from_secs(1),
            sampled: 2100,
            dropped: 0,
        };
        let v = r.class_verdicts(&t);
        assert_eq!(v[0].verdict, Verdict::Pass);
        assert_eq!(v[1].verdict, Verdict::Pass, "{:?}", v[1]);
        assert_eq!(r.missing_rate(&t), Rate::Known(0.0));
        // Declared 0.5 but 10 % kept: the class fails and its shortfall is missing.
        let mut half = classes;
        half[1].keep = 0.5;
        let r = Results { classes: half, ..r };
        let v = r.class_verdicts(&t);
        assert_eq!(v[1].verdict, Verdict::Fail);
        assert_eq!(v[1].attributed_missing, 800.0);
        assert_eq!(r.missing_rate(&t), Rate::Known(800.0 / 1100.0));
    }
}
