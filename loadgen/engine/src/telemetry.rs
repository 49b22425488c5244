//! The engine's side of the telemetry round trip of one `loadgen run`: the `telemetry_*`
//! thresholds judged on `ricochet-verify`'s [`Results`], the keep classes' verdicts, the
//! summary's telemetry section.
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

use ricochet_reports::model::{
    KeepClassSummary, MissingSplit, ReplicaCounts, SignalSummary, TelemetrySummary,
    ThresholdResult, Verdict,
};
use ricochet_verify::verification::Results;
use ricochet_verify::{Rate, Signal, Tally};

use crate::evaluate::{Judgement, Selected, judge_selected, trend_stats};
use crate::metric::{Metric, RoundTrip};
use crate::thresholds::{Aggregation, Threshold};

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

/// The engine's reading of verification [`Results`]: keep-class verdicts, the
/// `telemetry_*` thresholds judged, the summary section.
pub trait TelemetryJudge {
    /// The per-class verdicts of a signal (traces and logs; empty for exemplars and when
    /// no class is declared).
    fn class_verdicts(&self, t: &Tally) -> Vec<ClassVerdict>;
    /// `telemetry_<signal>_missing`, counting only what should have been kept.
    fn missing_rate(&self, t: &Tally) -> Rate;
    /// Judges a `telemetry_*` threshold.
    fn judge(&self, th: &Threshold) -> Judgement;
    /// The summary section.
    fn summary(&self) -> TelemetrySummary;
    /// One threshold result per declared keep class and signal (the `default` class is
    /// judged by the `telemetry_*_missing` thresholds instead): pass when the declared
    /// probability lies inside the observed rate's 99.9 % interval.
    fn class_results(&self) -> Vec<ThresholdResult>;
}

impl TelemetryJudge for Results {
    fn class_verdicts(&self, t: &Tally) -> Vec<ClassVerdict> {
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
    fn missing_rate(&self, t: &Tally) -> Rate {
        if let Some(reason) = self.suspicion(t.signal) {
            // Asking the wrong place is not loss: unknown, the true rate anywhere up to
            // what was measured.
            return Rate::Unknown {
                reason,
                lower: 0.0,
                upper: 1.0,
            };
        }
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
    fn judge(&self, th: &Threshold) -> Judgement {
        let Metric::Telemetry(what) = th.metric else {
            return Judgement::unknown(format!("`{}` is not a telemetry metric", th.metric));
        };
        let signal = what.signal();
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
            RoundTrip::Missing(_) => rate(self.missing_rate(t), t.missing),
            RoundTrip::TraceIncomplete => rate(t.incomplete_rate(), t.incomplete),
            RoundTrip::Unknown(_) => rate(t.unknown_rate(), t.unknown),
            RoundTrip::IngestLatency(_) => judge_selected(
                th,
                &Selected::Trend(t.ingest_latency.clone()),
                1.0,
                &no_data,
            ),
            RoundTrip::QueryDuration(_) => judge_selected(
                th,
                &Selected::Trend(t.query_duration.clone()),
                1.0,
                &no_data,
            ),
            RoundTrip::ExportWait(_) => {
                judge_selected(th, &Selected::Trend(t.export_wait.clone()), 1.0, &no_data)
            }
            RoundTrip::BackendLatency(_) => judge_selected(
                th,
                &Selected::Trend(t.backend_latency.clone()),
                1.0,
                &no_data,
            ),
        }
    }

    /// The summary section.
    fn summary(&self) -> TelemetrySummary {
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
                    latency_probes: t.ingest_latency.len(),
                    first_asked_late: t.first_asked_late,
                    presence_only: t.presence_only,
                    export_wait: trend_stats(&t.export_wait),
                    backend_latency: trend_stats(&t.backend_latency),
                    acknowledged_probes: t.backend_latency.len(),
                    extra_spans: t.extra_spans,
                    by_replica: t
                        .by_replica
                        .iter()
                        .map(|(r, c)| {
                            let counts = ReplicaCounts {
                                found: c.found,
                                missing: c.missing,
                                unknown: c.unknown,
                            };
                            (r.clone(), counts)
                        })
                        .collect(),
                    // Exemplars do not go through the workload's OTLP exporter: no ledger.
                    missing_split: (t.signal != Signal::Metrics).then(|| {
                        let m = &t.missing_split;
                        MissingSplit {
                            refused: m.refused,
                            dropped: m.dropped,
                            injected: m.injected,
                            after_acceptance: m.after_acceptance,
                            unaccounted: m.unaccounted,
                        }
                    }),
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
            probe_schedule_ms: self
                .probe_schedule
                .iter()
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect(),
            metric_probes: self.tally(Signal::Metrics).map(|_| self.probes),
            exporter: Vec::new(),
            exporter_source: None,
            recovery_secs: None,
            requests: None,
        }
    }

    fn class_results(&self) -> Vec<ThresholdResult> {
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ricochet_verify::plan::{KeepClassPlan, SamplePolicy, StatusMatch};

    use super::*;

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
    fn telemetry_metric_names_parse() {
        let telemetry = |name: &str| match Metric::parse(name) {
            Some(Metric::Telemetry(r)) => Some(r),
            _ => None,
        };
        assert_eq!(
            telemetry("telemetry_trace_missing"),
            Some(RoundTrip::Missing(Signal::Traces))
        );
        assert_eq!(
            telemetry("telemetry_log_ingest_latency"),
            Some(RoundTrip::IngestLatency(Signal::Logs))
        );
        assert_eq!(
            telemetry("telemetry_trace_incomplete"),
            Some(RoundTrip::TraceIncomplete)
        );
        assert_eq!(RoundTrip::TraceIncomplete.signal(), Signal::Traces);
        assert_eq!(telemetry("telemetry_log_incomplete"), None);
        assert_eq!(telemetry("http_req_failed"), None);
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
            ricochet_verify::ClassCounts {
                found: 100,
                missing: 0,
                unknown: 0,
            },
            ricochet_verify::ClassCounts {
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
            probes: 0,
            probe_schedule: Vec::new(),
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

    // See: issue #14. What the tally measured is shown, each where it belongs.
    #[test]
    fn the_summary_shows_every_measurement_of_the_tallies() {
        use ricochet_verify::fate::MissingSplit as Split;
        use ricochet_verify::hist::record_duration;

        let mut traces = Tally::new(Signal::Traces);
        traces.found = 5;
        traces.missing = 4;
        traces.extra_spans = 9;
        traces.first_asked_late = 1;
        traces.presence_only = 2;
        traces.missing_split = Split {
            refused: 1,
            dropped: 0,
            injected: 2,
            after_acceptance: 1,
            unaccounted: 0,
        };
        for ms in [30, 40] {
            record_duration(&mut traces.ingest_latency, Duration::from_millis(ms));
        }
        record_duration(&mut traces.export_wait, Duration::from_millis(10));
        record_duration(&mut traces.backend_latency, Duration::from_millis(20));
        let mut metrics = Tally::new(Signal::Metrics);
        metrics.found = 3;
        metrics.missing = 1;
        let schedule = ricochet_verify::PollPolicy::default().schedule(true);
        let r = Results {
            signals: vec![("tempo".into(), traces), ("prometheus".into(), metrics)],
            classes: Vec::new(),
            sample: SamplePolicy::Rate(1.0),
            settle_timeout: Duration::from_secs(30),
            sampled: 9,
            dropped: 1,
            probes: 6,
            probe_schedule: schedule,
        };
        let s = r.summary();
        let t = &s.signals[0];
        assert_eq!(
            (
                t.extra_spans,
                t.latency_probes,
                t.first_asked_late,
                t.presence_only
            ),
            (9, 2, 1, 2)
        );
        assert_eq!(t.acknowledged_probes, 1);
        // HdrHistogram precision: within 0.1 %.
        let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < want * 1e-3);
        assert!(near(t.export_wait.map(|w| w.med), 10.0), "{t:?}");
        assert!(near(t.backend_latency.map(|b| b.med), 20.0), "{t:?}");
        assert_eq!(
            t.missing_split,
            Some(MissingSplit {
                refused: 1,
                dropped: 0,
                injected: 2,
                after_acceptance: 1,
                unaccounted: 0,
            })
        );
        // Exemplars are not exported through the ledger: no split is claimed for them.
        assert_eq!(s.signals[1].missing_split, None);
        assert_eq!(s.metric_probes, Some(6));
        assert_eq!(s.samples_dropped, 1);
        assert_eq!(s.probe_schedule_ms[..5], [25.0, 50.0, 75.0, 100.0, 150.0]);
        assert_eq!(s.probe_schedule_ms.last(), Some(&30_000.0));
    }
}
