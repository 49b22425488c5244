//! One run's verification: the verifiers a [`TelemetryPlan`] asks for, started as polling
//! tasks behind one shared [`Sampler`], and their [`Results`].

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::exposition::{self, ExpositionVerifier};
use crate::fate::ExportLedger;
use crate::http::{Endpoint, HttpBackend};
use crate::loki::LokiVerifier;
use crate::pipeline::Pipeline;
use crate::plan::{
    CHANNEL_CAPACITY, KeepClassPlan, SINK_CAPACITY, SamplePolicy, TelemetryPlan, TraceBackendPlan,
};
use crate::prometheus::{ExemplarVerifier, PrometheusClient};
use crate::recent::Retention;
use crate::sampler::{ProbeSlots, Sampler};
use crate::tempo::{TraceApi, TraceVerifier};
use crate::{PollPolicy, RateLimiter, Signal, Tally, Verifier, VerifyError};

/// The embedded echo-server's side of the default: where its `/metrics` is.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedMetrics {
    /// The echo-server's address.
    pub addr: std::net::SocketAddr,
}

/// Verification could not start (bad secret, CA file, URL).
#[derive(Debug, thiserror::Error)]
#[error("telemetry verification cannot start: {0}")]
pub struct StartError(#[from] pub VerifyError);

/// The verifiers of a run and their shared sampler.
#[derive(Debug)]
pub struct Verification {
    sampler: Arc<Sampler>,
    pipeline: Arc<Pipeline>,
    backends: Vec<String>,
    plan: TelemetryPlan,
    red: Option<RedSource>,
    limiter: RateLimiter,
}

/// Where the server-side request total (the RED "rate" counter) is read.
#[derive(Debug)]
enum RedSource {
    /// The echo-server's own `/metrics`: the verifier, the request counter (the
    /// histogram's `_count`) and the routes left out.
    Exposition(Box<ExpositionVerifier>, String, Vec<String>),
    /// Prometheus or Mimir, with the PromQL of the total.
    Prometheus(Box<PrometheusClient>, String),
}

impl RedSource {
    async fn total(&self) -> Option<f64> {
        match self {
            Self::Exposition(e, count, probes) => {
                let (text, _) = e.scrape().await.ok()?;
                let all = exposition::sum(&text, count, &[]);
                let skip: f64 = probes
                    .iter()
                    .map(|r| exposition::sum(&text, count, &[("http_route", r)]))
                    .sum();
                Some(all - skip)
            }
            Self::Prometheus(c, q) => c.total(q).await.ok().map(|t| t.unwrap_or(0.0)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Exposition(..) => "echo-server /metrics".to_owned(),
            Self::Prometheus(c, _) => format!("prometheus {}", c.backend().base_for_display()),
        }
    }
}

impl Verification {
    /// Starts one polling task per verifier: the embedded sink's (`sink`) and the
    /// echo-server's `/metrics` when the plan names no backend, else the configured
    /// backends. `ledger` is the workload's export ledger, when it can be read: trace and
    /// log verifiers then split missing samples by export fate and time probes from their
    /// export's acknowledgement. Needs a Tokio runtime.
    pub fn start(
        plan: &TelemetryPlan,
        sink: Option<&crate::sink::Sink>,
        embedded: Option<EmbeddedMetrics>,
        ledger: Option<Arc<dyn ExportLedger>>,
        cancel: CancellationToken,
    ) -> Result<Self, StartError> {
        let limiter = RateLimiter::per_second(plan.max_queries_per_second)?;
        let shared = limiter.clone();
        // Verifiers that spend the query budget poll a few latency probes on time and ask
        // the other samples for presence only; the sink and `/metrics` cost nothing.
        let budgeted = PollPolicy {
            latency_probes: Some(plan.latency_probes()),
            ..plan.poll.clone()
        };
        let mut verifiers: Vec<(Arc<dyn Verifier>, PollPolicy)> = Vec::new();
        let mut backends = Vec::new();
        if let Some(sink) = sink {
            verifiers.push((Arc::new(sink.verifier(Signal::Traces)), plan.poll.clone()));
            backends.push(format!("embedded OTLP sink {}", sink.grpc_endpoint()));
            verifiers.push((Arc::new(sink.verifier(Signal::Logs)), plan.poll.clone()));
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
            let limits = Retention {
                capacity: SINK_CAPACITY,
                retention: plan.poll.retention(),
            };
            verifiers.push((
                Arc::new(ExpositionVerifier::new(b, limits)),
                plan.poll.clone(),
            ));
            backends.push(format!("echo-server /metrics {url}"));
            let b = HttpBackend::new(
                "echo-server",
                &Endpoint::new(&url)?,
                RateLimiter::unlimited(),
            )?;
            red = Some(RedSource::Exposition(
                Box::new(ExpositionVerifier::new(
                    b,
                    Retention {
                        capacity: 1,
                        retention: Duration::ZERO,
                    },
                )),
                format!("{}_count", plan.server.histogram),
                plan.server.probe_routes.clone(),
            ));
        }
        if let Some(t) = &plan.traces {
            let (name, api, b) = match t {
                TraceBackendPlan::Tempo(b) => ("tempo", TraceApi::Tempo, b),
                TraceBackendPlan::Jaeger(b) => ("jaeger", TraceApi::Jaeger, b),
            };
            let backend = HttpBackend::new(name, &b.endpoint()?, limiter.clone())?;
            backends.push(format!("{name} {}", backend.base_for_display()));
            verifiers.push((
                Arc::new(TraceVerifier::new(backend, api, false)),
                budgeted.clone(),
            ));
        }
        if let Some((b, selector)) = &plan.logs {
            let backend = HttpBackend::new("loki", &b.endpoint()?, limiter.clone())?;
            backends.push(format!("loki {}", backend.base_for_display()));
            verifiers.push((
                Arc::new(LokiVerifier::new(backend, selector.clone())),
                budgeted.clone(),
            ));
        }
        if let Some((b, metric)) = &plan.metrics {
            let count = metric.replace("_bucket", "_count");
            red = Some(RedSource::Prometheus(
                Box::new(PrometheusClient::new(HttpBackend::new(
                    "prometheus",
                    &b.endpoint()?,
                    limiter.clone(),
                )?)),
                format!(
                    "sum({count}{{http_route!~\"{}\"}})",
                    plan.server.probe_routes.join("|")
                ),
            ));
            let backend = HttpBackend::new("prometheus", &b.endpoint()?, limiter)?;
            backends.push(format!("prometheus {}", backend.base_for_display()));
            verifiers.push((
                Arc::new(ExemplarVerifier::new(
                    backend,
                    plan.server.probe_metric.clone(),
                )),
                budgeted,
            ));
        }
        let pipeline = Arc::new(Pipeline::start_each(
            verifiers,
            ledger,
            CHANNEL_CAPACITY,
            cancel,
        ));
        let probes = (embedded.is_some() || plan.metrics.is_some()).then(|| {
            ProbeSlots::share(
                plan.server.probe_slots,
                plan.probe_reuse(),
                plan.probe_share,
            )
        });
        let sampler = Arc::new(Sampler::new(
            plan.sample,
            plan.classes.clone(),
            pipeline.clone(),
            probes,
        ));
        Ok(Self {
            sampler,
            pipeline,
            backends,
            plan: plan.clone(),
            red,
            limiter: shared,
        })
    }

    /// The run's `maxQueriesPerSecond` budget, which the verifiers share with the query
    /// checks and alert reads.
    pub fn limiter(&self) -> RateLimiter {
        self.limiter.clone()
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
            probes: self.sampler.probes(),
            probe_schedule: self.plan.poll.schedule(true),
        }
    }
}

/// Fewest missing samples that make an all-missing answer suspect.
const MIN_SUSPECT: u64 = 5;

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
    /// Metric probes sent ([`Sampler::probes`]): requests that carried a probe slot.
    pub probes: u64,
    /// A latency probe's look-ups after its anchor ([`PollPolicy::schedule`]), the last
    /// at the settle timeout: the resolution of the ingest latency.
    pub probe_schedule: Vec<Duration>,
}

impl Results {
    /// The tally of `signal`, when a verifier of it ran.
    pub fn tally(&self, signal: Signal) -> Option<&Tally> {
        self.signals
            .iter()
            .map(|(_, t)| t)
            .find(|t| t.signal == signal)
    }

    /// Why the missing samples of `signal` are suspect rather than loss: every one was
    /// answered "not found" while the workload's exporter had every one of them accepted
    /// (and, for traces, the log lines of the same requests were found). That is the
    /// signature of asking the wrong place (a tenant, a URL), not of a pipeline losing
    /// data; `None` otherwise.
    pub fn suspicion(&self, signal: Signal) -> Option<String> {
        let t = self.tally(signal)?;
        let accepted_all = t.missing > 0 && t.missing_split.after_acceptance == t.missing;
        if t.found > 0 || t.missing < MIN_SUSPECT || !accepted_all {
            return None;
        }
        let logs = match (signal, self.tally(Signal::Logs)) {
            (Signal::Traces, Some(l)) if l.found == 0 => return None,
            (Signal::Traces, Some(l)) => format!(" and {} of their log lines were found", l.found),
            _ => String::new(),
        };
        let backend = self
            .signals
            .iter()
            .find(|(_, t)| t.signal == signal)
            .map_or("the backend", |(b, _)| b.as_str());
        Some(format!(
            "{backend} answered \"not found\" for all {} sampled {}s, although the echo-server's exports carrying them were accepted{logs}: check the URL and the tenant (X-Scope-OrgID) before reading this as pipeline loss",
            t.missing,
            signal.metric_label()
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn results(traces_accepted: u64, logs_found: u64) -> Results {
        let mut traces = Tally::new(Signal::Traces);
        traces.missing = 10;
        traces.missing_split.after_acceptance = traces_accepted;
        traces.missing_split.unaccounted = 10 - traces_accepted;
        let mut logs = Tally::new(Signal::Logs);
        logs.found = logs_found;
        logs.missing = 10 - logs_found;
        Results {
            signals: vec![
                ("tempo http://tempo:3200/".into(), traces),
                ("loki http://loki:3100/".into(), logs),
            ],
            classes: Vec::new(),
            sample: SamplePolicy::Rate(1.0),
            settle_timeout: Duration::from_secs(30),
            sampled: 10,
            dropped: 0,
            probes: 0,
            probe_schedule: Vec::new(),
        }
    }

    #[test]
    fn all_traces_missing_though_exported_and_logged_is_suspect_not_loss() {
        let why = results(10, 10).suspicion(Signal::Traces).expect("suspect");
        assert!(
            why.starts_with(
                "tempo http://tempo:3200/ answered \"not found\" for all 10 sampled traces"
            ) && why.contains("10 of their log lines were found")
                && why.contains("check the URL and the tenant"),
            "{why}"
        );
        // One export not confirmed accepted, or no log line found: plain loss.
        assert_eq!(results(9, 10).suspicion(Signal::Traces), None);
        assert_eq!(results(10, 0).suspicion(Signal::Traces), None);
    }
}
