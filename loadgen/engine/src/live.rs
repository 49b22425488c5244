//! Live outputs: loadgen's own metrics pushed while the run goes, through
//! `ricochet-output`, to Prometheus remote write (trends as chosen percentile gauges, as
//! k6's remote-write output does by default) and OTLP (trends as histograms), every
//! `flushInterval` and once at the end with the verdicts.
//!
//! Names are `<prefix>_<metric>` with the prefix `ricochet` (or `k6`, so dashboards made
//! for k6 keep working): counters end in `_total` (`ricochet_http_reqs_total`), trend
//! gauges in the statistic (`ricochet_http_req_duration_p99`, seconds), OTLP histograms in
//! `_seconds`. Every series carries `testid` (the run's id) and, in a split run, `runner`.
//! A backend that is down never slows the load: batches queue boundedly, drops are
//! counted and reported at the end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use ricochet_output::model::{Batch, Histogram, Kind, NativeHistogram, Series};
use ricochet_output::target::{Auth, Options, Secret, Target};
use ricochet_output::{Output, TargetReport};
use ricochet_reports::model::{OutputReport, Summary, ThresholdResult, Verdict};
use ricochet_verify::Signal;
use ricochet_verify::hist::{Hist, merge_hist, new_hist};
use ricochet_verify::plan::BackendPlan;
use ricochet_verify::verification::Results;

use crate::client::ErrorCause;
use crate::metric::{Metric, RoundTrip};
use crate::plan::Plan;
use crate::plan::output::{Naming, TrendStat};
use crate::schedule::RateProfile;
use crate::stats::Stats;

/// Bounds of the OTLP latency histograms, seconds.
pub const BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Batches each target may hold queued.
const QUEUE: usize = 32;
/// How long the end of a run waits for the last pushes.
const FINISH_WAIT: Duration = Duration::from_secs(10);

/// A live output could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// A secret could not be read.
    #[error("spec.output: {0}")]
    Secret(#[from] ricochet_verify::VerifyError),
    /// The output refused its configuration.
    #[error("spec.output: {0}")]
    Output(#[from] ricochet_output::OutputError),
}

/// One tag set's counters.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    requests: u64,
    failed: u64,
    sent: u64,
    received: u64,
}

/// How trends are shown: remote write gets chosen statistics as gauges; OTLP and the
/// canary's `/metrics` get histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Each chosen trend statistic (`trendStats`) as a gauge.
    Gauges,
    /// An explicit-bucket histogram over [`BOUNDS`].
    Histograms,
    /// A native histogram of schema [`NATIVE_SCHEMA`] (remote write with
    /// `nativeHistograms`).
    NativeHistograms,
}

/// The schema of native histograms: 8 buckets per power of two, each about 9 % wide.
pub const NATIVE_SCHEMA: i8 = 3;

/// Turns a run's measurements into a [`Batch`]: the metric names (prefix), the labels
/// every series carries, and the trend statistics of [`Flavor::Gauges`].
#[derive(Debug, Clone)]
pub struct Batcher {
    naming: Naming,
    trend_stats: Vec<TrendStat>,
    labels: Vec<(String, String)>,
}

/// The live outputs of one run.
pub struct Live {
    outputs: Vec<(Output, Flavor)>,
    flush_interval: Duration,
    batcher: Batcher,
    last: Instant,
    started: Instant,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("batcher", &self.batcher)
            .finish_non_exhaustive()
    }
}

fn target(mut t: Target, b: &BackendPlan) -> Result<Target, LiveError> {
    t = t.with_timeout(b.timeout);
    if let Some(tenant) = &b.tenant {
        t = t.with_tenant(tenant.clone());
    }
    if let Some(ca) = &b.ca_file {
        t = t.with_ca_file(ca.clone());
    }
    if let Some(s) = &b.bearer {
        t = t.with_auth(Auth::Bearer(Secret::new(s.read()?.expose())));
    } else if let Some((user, s)) = &b.basic {
        t = t.with_auth(Auth::Basic {
            user: user.clone(),
            password: Secret::new(s.read()?.expose()),
        });
    }
    Ok(t)
}

impl Live {
    /// Starts the plan's outputs (`None` without any), labelling every series with
    /// `testid` and, for a runner of a split run, `runner`.
    pub fn start(
        plan: &Plan,
        testid: &str,
        runner: Option<u32>,
    ) -> Result<Option<Self>, LiveError> {
        let Some(p) = &plan.output else {
            return Ok(None);
        };
        let mut labels = vec![("testid".to_owned(), testid.to_owned())];
        if let Some(r) = runner {
            labels.push(("runner".to_owned(), r.to_string()));
        }
        let options = Options {
            queue: QUEUE,
            flush_interval: p.flush_interval,
            resource: labels.clone(),
        };
        let mut outputs = Vec::new();
        if let Some((b, _)) = &p.remote_write {
            let t = target(Target::remote_write(b.url.clone()), b)?;
            let flavor = if p.native_histograms {
                Flavor::NativeHistograms
            } else {
                Flavor::Gauges
            };
            outputs.push((Output::start(vec![t], options.clone())?, flavor));
        }
        if let Some(b) = &p.otlp {
            let t = target(Target::otlp(b.url.clone()), b)?;
            outputs.push((Output::start(vec![t], options)?, Flavor::Histograms));
        }
        let trend_stats = p
            .remote_write
            .as_ref()
            .map_or_else(Vec::new, |r| r.1.clone());
        Ok(Some(Self {
            outputs,
            flush_interval: p.flush_interval,
            batcher: Batcher::new(p.naming, trend_stats, labels),
            last: Instant::now(),
            started: Instant::now(),
        }))
    }

    /// Pushes the run's totals so far when a flush interval has passed since the last push.
    /// `judged` gives the thresholds' verdicts so far; it is called only when a push is due.
    pub fn tick(
        &mut self,
        plan: &Plan,
        stats: &Stats,
        telemetry: Option<&Results>,
        judged: impl FnOnce() -> Vec<ThresholdResult>,
    ) {
        if self.last.elapsed() < self.flush_interval {
            return;
        }
        self.last = Instant::now();
        self.offer(plan, stats, telemetry, &judged(), None);
    }

    fn offer(
        &self,
        plan: &Plan,
        stats: &Stats,
        telemetry: Option<&Results>,
        thresholds: &[ThresholdResult],
        end: Option<&Summary>,
    ) {
        let at = SystemTime::now();
        let b = &self.batcher;
        for (output, flavor) in &self.outputs {
            let elapsed = self.started.elapsed();
            let mut batch = b.batch(at, elapsed, plan, stats, telemetry, *flavor);
            batch.series.extend(b.threshold_series(thresholds));
            if let Some(summary) = end {
                batch.series.extend(b.run_series(summary));
            }
            // A batch of this module's making is well formed; a refusal would be a bug
            // here, and the run goes on regardless.
            let _ = output.offer(batch);
        }
    }

    /// Pushes the final totals and the verdicts, waits (boundedly) for the queues to
    /// drain, and reports what each target took.
    pub async fn finish(
        self,
        plan: &Plan,
        stats: &Stats,
        telemetry: Option<&Results>,
        summary: &Summary,
    ) -> Vec<OutputReport> {
        self.offer(plan, stats, telemetry, &summary.thresholds, Some(summary));
        let mut out = Vec::new();
        for (output, _) in self.outputs {
            out.extend(output.finish(FINISH_WAIT).await.into_iter().map(report));
        }
        out
    }
}

impl Batcher {
    /// A batcher naming metrics by `naming`, with `labels` on every series.
    pub fn new(naming: Naming, trend_stats: Vec<TrendStat>, labels: Vec<(String, String)>) -> Self {
        Self {
            naming,
            trend_stats,
            labels,
        }
    }

    /// The full name of `metric` (`ricochet_<metric>`).
    pub fn name(&self, metric: &str) -> String {
        format!("{}_{metric}", self.naming.prefix())
    }

    /// The common labels plus `extra`.
    pub fn with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut l = self.labels.clone();
        l.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        l
    }

    /// The run's totals so far as counters, gauges and trends: requests, data, failures
    /// and errors by cause per tag set, iterations, target rate, chaos phases, and the
    /// telemetry round trip per signal. `elapsed` is the run's time so far, for the
    /// target rate and the chaos phases.
    pub fn batch(
        &self,
        at: SystemTime,
        elapsed: Duration,
        plan: &Plan,
        stats: &Stats,
        telemetry: Option<&Results>,
        flavor: Flavor,
    ) -> Batch {
        let mut b = Batch::new(at);
        let counter = |name: String, labels, value: f64| Series {
            name,
            labels,
            value,
            kind: Kind::Counter,
        };
        let gauge = |name: String, labels, value: f64| Series {
            name,
            labels,
            value,
            kind: Kind::Gauge,
        };
        // Counters per tag set (scenario, name, method, status), phases merged.
        let mut per_tags: BTreeMap<(u16, u16, u16), Counts> = BTreeMap::new();
        let mut trends: BTreeMap<(u16, u16), [Hist; 6]> = BTreeMap::new();
        for (k, s) in &stats.series {
            let e = per_tags
                .entry((k.scenario, k.request, k.status))
                .or_default();
            e.requests += s.requests;
            e.failed += s.failed;
            e.sent += s.data_sent;
            e.received += s.data_received;
            let t = trends
                .entry((k.scenario, k.request))
                .or_insert_with(|| std::array::from_fn(|_| new_hist()));
            for (dst, src) in t.iter_mut().zip([
                Some(&s.duration),
                Some(&s.waiting),
                Some(&s.service),
                Some(&s.schedule_lag),
                Some(&s.blocked),
                s.stream.as_ref(),
            ]) {
                if let Some(src) = src {
                    merge_hist(dst, src);
                }
            }
        }
        let names = |s: u16, r: u16| {
            let sc = plan.scenarios.get(usize::from(s));
            let req = sc.and_then(|sc| sc.requests.get(usize::from(r)));
            (
                sc.map_or("", |sc| sc.name.as_str()),
                req.map_or("", |r| r.name.as_str()),
                req.map_or("", |r| r.method.as_str()),
            )
        };
        for ((s, r, status), c) in per_tags {
            let Counts {
                requests,
                failed,
                sent,
                received,
            } = c;
            let (scenario, name, method) = names(s, r);
            let status = status.to_string();
            let l = self.with(&[
                ("scenario", scenario),
                ("name", name),
                ("method", method),
                ("status", &status),
            ]);
            for (metric, n) in [
                ("http_reqs_total", requests),
                ("data_sent_total", sent),
                ("data_received_total", received),
            ] {
                b.series
                    .push(counter(self.name(metric), l.clone(), n as f64));
            }
            if requests > 0 {
                let rate = failed as f64 / requests as f64;
                b.series
                    .push(gauge(self.name("http_req_failed_rate"), l, rate));
            }
        }
        let mut causes: BTreeMap<(u16, u16, &'static str), u64> = BTreeMap::new();
        for (k, e) in &stats.errors {
            for cause in ErrorCause::ALL {
                let n = e.get(cause);
                if n > 0 {
                    *causes
                        .entry((k.scenario, k.request, cause.name()))
                        .or_default() += n;
                }
            }
        }
        for ((s, r, cause), n) in causes {
            let (scenario, name, _) = names(s, r);
            let l = self.with(&[("scenario", scenario), ("name", name), ("cause", cause)]);
            b.series
                .push(counter(self.name("http_req_errors_total"), l, n as f64));
        }
        let elapsed = elapsed.as_secs_f64();
        for sc in &plan.scenarios {
            if let Some(p) = RateProfile::of(&sc.executor) {
                let t = elapsed - sc.start_time.as_secs_f64();
                let rate = if t > 0.0 {
                    p.planned_between(t - 1.0, t)
                } else {
                    0.0
                };
                let l = self.with(&[("scenario", &sc.name)]);
                b.series.push(gauge(self.name("target_rate"), l, rate));
            }
        }
        for e in &plan.chaos.events {
            let until = e.until.unwrap_or_else(|| plan.max_duration());
            let on = elapsed >= e.at.as_secs_f64() && elapsed < until.as_secs_f64();
            let l = self.with(&[("fault", e.name.as_deref().unwrap_or(&e.label))]);
            b.series
                .push(gauge(self.name("chaos_active"), l, f64::from(u8::from(on))));
        }
        let mut scenarios: BTreeMap<u16, (u64, u64, u64)> = BTreeMap::new();
        for (k, c) in &stats.scenarios {
            let e = scenarios.entry(k.scenario).or_default();
            e.0 += c.iterations;
            e.1 += c.dropped;
            e.2 += c.interrupted;
        }
        for (s, (iterations, dropped, interrupted)) in scenarios {
            let l = self.with(&[("scenario", names(s, 0).0)]);
            for (metric, n) in [
                ("iterations_total", iterations),
                ("dropped_iterations_total", dropped),
                ("interrupted_iterations_total", interrupted),
            ] {
                b.series
                    .push(counter(self.name(metric), l.clone(), n as f64));
            }
        }
        for ((s, r), hists) in &trends {
            let (scenario, name, method) = names(*s, *r);
            let l = self.with(&[("scenario", scenario), ("name", name), ("method", method)]);
            for (metric, h) in TRENDS.iter().zip(hists) {
                self.trend(&mut b, *metric, &l, h, flavor);
            }
        }
        if let Some(t) = telemetry {
            for (_, tally) in &t.signals {
                let signal = tally.signal.metric_label();
                let l = self.with(&[("signal", signal)]);
                for (what, n) in [
                    ("sampled", tally.samples()),
                    ("found", tally.found),
                    ("missing", tally.missing),
                    ("unknown", tally.unknown),
                ] {
                    let name = self.name(&format!("telemetry_{what}_total"));
                    b.series.push(counter(name, l.clone(), n as f64));
                }
                let legs = [
                    (
                        RoundTrip::IngestLatency(tally.signal),
                        &tally.ingest_latency,
                    ),
                    (
                        RoundTrip::BackendLatency(tally.signal),
                        &tally.backend_latency,
                    ),
                    (
                        RoundTrip::QueryDuration(tally.signal),
                        &tally.query_duration,
                    ),
                ];
                for (leg, h) in legs {
                    self.trend(&mut b, Metric::Telemetry(leg), &l, h, flavor);
                }
            }
        }
        b
    }

    /// One trend of `metric` (µs): the chosen statistics as gauges in seconds, or an
    /// OTLP histogram; nothing when it has no values.
    fn trend(
        &self,
        b: &mut Batch,
        metric: Metric,
        labels: &[(String, String)],
        h: &Hist,
        flavor: Flavor,
    ) {
        if h.is_empty() {
            return;
        }
        match flavor {
            Flavor::Gauges => {
                for stat in &self.trend_stats {
                    b.series.push(Series {
                        name: self.name(&format!("{}_{}", metric.name(), stat.suffix())),
                        labels: labels.to_vec(),
                        value: trend_value(h, *stat),
                        kind: Kind::Gauge,
                    });
                }
            }
            Flavor::Histograms => b.histograms.push(histogram(
                self.name(&format!("{}_seconds", metric.name())),
                labels.to_vec(),
                h,
            )),
            Flavor::NativeHistograms => {
                let name = self.name(&format!("{}_seconds", metric.name()));
                let mut n = NativeHistogram::new(name, labels.to_vec(), NATIVE_SCHEMA);
                for v in h.iter_recorded() {
                    let secs = h.highest_equivalent(v.value_iterated_to()) as f64 / 1e6;
                    n.observe(secs, v.count_at_value());
                }
                b.native.push(n);
            }
        }
    }

    /// Per threshold its observed value and pass (1), fail (0) or unknown (-1), as judged
    /// so far (live) or at the end.
    pub fn threshold_series(&self, thresholds: &[ThresholdResult]) -> Vec<Series> {
        let mut out = Vec::new();
        for t in thresholds {
            let l = self.with(&[("threshold", &t.metric), ("expression", &t.expression)]);
            let v = match t.verdict {
                Verdict::Pass => 1.0,
                Verdict::Fail => 0.0,
                Verdict::Unknown => -1.0,
            };
            out.push(Series {
                name: self.name("threshold_passed"),
                labels: l.clone(),
                value: v,
                kind: Kind::Gauge,
            });
            if let Some(observed) = t.observed.filter(|o| o.is_finite()) {
                out.push(Series {
                    name: self.name("threshold_observed"),
                    labels: l,
                    value: observed,
                    kind: Kind::Gauge,
                });
            }
        }
        out
    }

    /// The run's verdict and duration.
    pub fn run_series(&self, summary: &Summary) -> Vec<Series> {
        let mut out = Vec::new();
        let outcome = format!("{:?}", summary.run.outcome).to_ascii_lowercase();
        out.push(Series {
            name: self.name("run_passed"),
            labels: self.with(&[("outcome", &outcome)]),
            value: f64::from(u8::from(summary.run.exit_code == 0)),
            kind: Kind::Gauge,
        });
        out.push(Series {
            name: self.name("run_duration_seconds"),
            labels: self.labels.clone(),
            value: summary.run.duration_secs,
            kind: Kind::Gauge,
        });
        out
    }
}

/// The trends pushed as statistics (remote write) or histograms (OTLP).
const TRENDS: [Metric; 6] = [
    Metric::HttpReqDuration,
    Metric::HttpReqWaiting,
    Metric::HttpReqServiceDuration,
    Metric::HttpReqScheduleLag,
    Metric::HttpReqBlocked,
    Metric::HttpStreamDuration,
];

/// The trends and round-trip legs, each pushed as statistics (remote write) or as a
/// histogram `<name>_seconds` (OTLP, the canary's `/metrics`).
fn trend_metrics() -> Vec<Metric> {
    let signals = [Signal::Traces, Signal::Logs, Signal::Metrics];
    let legs = signals.iter().flat_map(|&s| {
        [
            RoundTrip::IngestLatency(s),
            RoundTrip::BackendLatency(s),
            RoundTrip::QueryDuration(s),
        ]
    });
    TRENDS
        .iter()
        .copied()
        .chain(legs.map(Metric::Telemetry))
        .collect()
}

/// The histograms' names under the `ricochet` prefix (`ricochet_http_req_duration_seconds`).
pub fn histogram_names() -> Vec<String> {
    trend_metrics()
        .iter()
        .map(|m| format!("ricochet_{}_seconds", m.name()))
        .collect()
}

/// Every metric name the live outputs push under the `ricochet` prefix, with the trend
/// statistics `p(90)`, `p(95)`, `p(99)`, `p(99.9)`, `avg`, `med`, `min`, `max`, `count` and
/// `sum` (dashboards and alert rules are checked against it).
pub fn metric_names() -> Vec<String> {
    let stats = [
        TrendStat::Percentile(90.0),
        TrendStat::Percentile(95.0),
        TrendStat::Percentile(99.0),
        TrendStat::Percentile(99.9),
        TrendStat::Avg,
        TrendStat::Med,
        TrendStat::Min,
        TrendStat::Max,
        TrendStat::Count,
        TrendStat::Sum,
    ];
    let mut out: Vec<String> = [
        "http_reqs_total",
        "data_sent_total",
        "data_received_total",
        "http_req_failed_rate",
        "http_req_errors_total",
        "target_rate",
        "chaos_active",
        "iterations_total",
        "dropped_iterations_total",
        "interrupted_iterations_total",
        "telemetry_sampled_total",
        "telemetry_found_total",
        "telemetry_missing_total",
        "telemetry_unknown_total",
        "threshold_passed",
        "threshold_observed",
        "run_passed",
        "run_duration_seconds",
    ]
    .iter()
    .map(|n| format!("ricochet_{n}"))
    .collect();
    for m in trend_metrics() {
        out.extend(
            stats
                .iter()
                .map(|s| format!("ricochet_{}_{}", m.name(), s.suffix())),
        );
    }
    out.extend(histogram_names());
    out
}

/// A trend statistic of `h` (µs), in seconds (a count for `count`).
fn trend_value(h: &Hist, stat: TrendStat) -> f64 {
    let secs = |us: u64| us as f64 / 1e6;
    match stat {
        TrendStat::Percentile(p) => secs(h.value_at_quantile((p / 100.0).clamp(0.0, 1.0))),
        TrendStat::Avg => h.mean() / 1e6,
        TrendStat::Med => secs(h.value_at_quantile(0.5)),
        TrendStat::Min => secs(h.min()),
        TrendStat::Max => secs(h.max()),
        TrendStat::Count => h.len() as f64,
        TrendStat::Sum => h.mean() * h.len() as f64 / 1e6,
    }
}

/// `h` (µs) as an explicit-bucket histogram in seconds over [`BOUNDS`].
fn histogram(name: String, labels: Vec<(String, String)>, h: &Hist) -> Histogram {
    let mut counts = vec![0u64; BOUNDS.len() + 1];
    let mut sum = 0.0;
    for v in h.iter_recorded() {
        let secs = h.highest_equivalent(v.value_iterated_to()) as f64 / 1e6;
        let n = v.count_at_value();
        sum += secs * n as f64;
        let i = BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BOUNDS.len());
        counts[i] += n;
    }
    Histogram {
        name,
        labels,
        count: h.len(),
        sum,
        bounds: BOUNDS.to_vec(),
        counts,
    }
}

fn report(r: TargetReport) -> OutputReport {
    OutputReport {
        target: r.target,
        batches_sent: r.batches_sent,
        batches_failed: r.batches_failed,
        batches_dropped: r.batches_dropped,
        samples_sent: r.samples_sent,
        first_error: r.first_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{plan_with, requests, scenario};

    fn batcher(naming: Naming, trend_stats: Vec<TrendStat>) -> Batcher {
        Batcher::new(naming, trend_stats, vec![("testid".into(), "t-1".into())])
    }

    #[test]
    fn a_batch_holds_totals_per_tag_set_and_only_names_the_list_declares() {
        let plan = plan_with(vec![scenario("api", 10.0, "/api/x")]);
        let mut stats = requests(0, 1, 200, &[10, 20, 30]);
        stats.merge(&requests(0, 2, 200, &[40]));
        stats.merge(&requests(0, 1, 500, &[50]));
        let l = batcher(
            Naming::Ricochet,
            vec![TrendStat::Percentile(99.0), TrendStat::Count],
        );
        let b = l.batch(
            SystemTime::now(),
            Duration::ZERO,
            &plan,
            &stats,
            None,
            Flavor::Gauges,
        );
        let names = metric_names();
        for s in &b.series {
            assert!(names.contains(&s.name), "{} is not listed", s.name);
            assert!(s.labels.contains(&("testid".into(), "t-1".into())));
        }
        let reqs: Vec<&Series> = b
            .series
            .iter()
            .filter(|s| s.name == "ricochet_http_reqs_total")
            .collect();
        assert_eq!(reqs.len(), 2, "status 200 and 500, phases merged");
        assert_eq!(reqs.iter().map(|s| s.value).sum::<f64>(), 5.0);
        let count = b
            .series
            .iter()
            .find(|s| s.name == "ricochet_http_req_duration_count")
            .unwrap();
        assert_eq!(
            count.value, 5.0,
            "one trend series per scenario and request"
        );
        let histograms = l.batch(
            SystemTime::now(),
            Duration::ZERO,
            &plan,
            &stats,
            None,
            Flavor::Histograms,
        );
        let h = &histograms.histograms[0];
        assert_eq!(h.name, "ricochet_http_req_duration_seconds");
        assert!(names.contains(&h.name));
        assert_eq!((h.count, h.counts.iter().sum::<u64>()), (5, 5));

        let k6 = batcher(Naming::K6, Vec::new()).batch(
            SystemTime::now(),
            Duration::ZERO,
            &plan,
            &stats,
            None,
            Flavor::Gauges,
        );
        assert!(k6.series.iter().any(|s| s.name == "k6_http_reqs_total"));
    }
}
