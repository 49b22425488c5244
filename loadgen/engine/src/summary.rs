//! Results → `summary.json` ([`ricochet_reports::model::Summary`]), and [`Reach`]: whether
//! a run measured anything at all.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ricochet_reports::model::{
    MetricKind as ModelKind, MetricSummary, Outcome, PercentilePoint, Phase, RunInfo,
    SCHEMA_VERSION, ScenarioSummary, Summary, ThresholdResult,
};

use crate::aggregate::Aggregator;
use crate::evaluate::{Selected, ms, select, trend_stats};
use crate::metric::Metric;
use crate::plan::Plan;
use crate::stats::{ErrorCause, ErrorCounts, Stats, merge_hist, new_hist};
use crate::thresholds::Scope;
use crate::worker::Pacing;

/// The metrics reported per request name, for scenarios with more than one request.
const PER_REQUEST: [Metric; 3] = [
    Metric::HttpReqs,
    Metric::HttpReqDuration,
    Metric::HttpReqFailed,
];

/// Percentiles of each scenario's latency spectrum.
pub const SPECTRUM: [f64; 14] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.9, 99.99, 99.999, 100.0,
];

/// How a run went, beside its measurements.
#[derive(Clone, Debug)]
pub struct RunFacts {
    /// Target base URL.
    pub target: String,
    /// Whether the target was the embedded echo-server.
    pub embedded: bool,
    /// Wall-clock start.
    pub started_at: SystemTime,
    /// Wall-clock end.
    pub ended_at: SystemTime,
    /// Run time, seconds.
    pub duration_secs: f64,
    /// Outcome.
    pub outcome: Outcome,
    /// Exit code it maps to.
    pub exit: crate::Exit,
    /// Why the run ended early.
    pub stop_reason: Option<String>,
    /// Pacing of arrival-rate scenarios, when there were any.
    pub pacing: Option<Pacing>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn metric_summary(selected: &Selected, seconds: f64) -> MetricSummary {
    let per_sec = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    match selected {
        Selected::Trend(h) => MetricSummary {
            kind: ModelKind::Trend,
            count: h.len(),
            rate: per_sec(h.len()),
            passes: None,
            trend: trend_stats(h),
            errors: BTreeMap::new(),
        },
        Selected::Rate { passes, total } => MetricSummary {
            kind: ModelKind::Rate,
            count: *total,
            rate: if *total > 0 {
                *passes as f64 / *total as f64
            } else {
                0.0
            },
            passes: Some(*passes),
            trend: None,
            errors: BTreeMap::new(),
        },
        Selected::Counter(n) => MetricSummary {
            kind: ModelKind::Counter,
            count: *n,
            rate: per_sec(*n),
            passes: None,
            trend: None,
            errors: BTreeMap::new(),
        },
    }
}

/// The non-zero counts of `errors` by cause name, as `summary.json` holds them.
fn error_map(errors: &ErrorCounts) -> BTreeMap<String, u64> {
    errors
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (c.name().to_owned(), n))
        .collect()
}

/// k6 syntax of a metric key: `name` or `name{k:v,k:v}`.
pub fn metric_key(name: &str, filter: &BTreeMap<String, String>) -> String {
    if filter.is_empty() {
        return name.to_owned();
    }
    let tags: Vec<String> = filter.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("{name}{{{}}}", tags.join(","))
}

fn metrics(plan: &Plan, agg: &Aggregator, seconds: f64) -> BTreeMap<String, MetricSummary> {
    let stats = &agg.totals;
    let index = agg.index();
    let mut out = BTreeMap::new();
    let mut add = |metric: Metric, filter: &BTreeMap<String, String>| {
        if let Some(sel) = select(metric, filter, None, stats, index) {
            if let Selected::Trend(h) = &sel
                && h.is_empty()
                && matches!(
                    metric,
                    Metric::HttpStreamDuration
                        | Metric::HttpReqConnecting
                        | Metric::HttpReqTlsHandshaking
                )
            {
                return;
            }
            let mut summary = metric_summary(&sel, seconds);
            if metric == Metric::HttpReqFailed {
                summary.errors =
                    error_map(&stats.error_counts(|k| index.series_matches(k, filter, None)));
            }
            out.insert(metric_key(metric.name(), filter), summary);
        }
    };
    let none = BTreeMap::new();
    for m in Metric::ALL {
        add(m, &none);
    }
    for sc in &plan.scenarios {
        let f: BTreeMap<String, String> = [("scenario".to_owned(), sc.name.clone())].into();
        for m in Metric::ALL {
            add(m, &f);
        }
        if sc.requests.len() > 1 {
            for r in &sc.requests {
                let mut f = f.clone();
                f.insert("name".into(), r.name.clone());
                for m in PER_REQUEST {
                    add(m, &f);
                }
            }
        }
    }
    for th in &plan.thresholds {
        if !th.filter.is_empty() {
            add(th.metric, &th.filter);
        }
    }
    out
}

fn scenario_summaries(plan: &Plan, agg: &Aggregator) -> Vec<ScenarioSummary> {
    plan.scenarios
        .iter()
        .enumerate()
        .map(|(i, sc)| {
            let idx = u16::try_from(i).unwrap_or(u16::MAX);
            let mut h = new_hist();
            for (_, s) in agg.totals.series.iter().filter(|(k, _)| k.scenario == idx) {
                merge_hist(&mut h, &s.duration);
            }
            let latency_percentiles = if h.is_empty() {
                Vec::new()
            } else {
                SPECTRUM
                    .iter()
                    .map(|&p| PercentilePoint {
                        percentile: p,
                        value_ms: ms(h.value_at_quantile(p / 100.0)),
                    })
                    .collect()
            };
            ScenarioSummary {
                name: sc.name.clone(),
                executor: sc.executor.name().to_owned(),
                target_rps: sc.executor.peak_rate(),
                vus: sc.executor.peak_vus(),
                start_secs: sc.start_time.as_secs_f64(),
                duration_secs: sc.duration().as_secs_f64(),
                phases: sc
                    .phases()
                    .into_iter()
                    .map(|p| Phase {
                        name: p.name,
                        start_secs: p.start.as_secs_f64(),
                        end_secs: p.end.as_secs_f64(),
                    })
                    .collect(),
                latency_percentiles,
                time_series: agg.scenario_series.get(i).cloned().unwrap_or_default(),
            }
        })
        .collect()
}

/// The `summary.json` of a run.
pub fn build(
    plan: &Plan,
    facts: &RunFacts,
    agg: &Aggregator,
    thresholds: Vec<ThresholdResult>,
) -> Summary {
    let seconds = facts.duration_secs;
    let total_rate = plan.total_peak_rate();
    Summary {
        schema_version: SCHEMA_VERSION,
        run: RunInfo {
            name: plan.name.clone(),
            source: plan.source.as_ref().map(|p| p.display().to_string()),
            target: facts.target.clone(),
            embedded: facts.embedded,
            loadgen_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: rfc3339(facts.started_at),
            ended_at: rfc3339(facts.ended_at),
            duration_secs: seconds,
            target_rps: (total_rate > 0.0).then_some(total_rate),
            multiplier: plan.multiplier,
            pacing: facts.pacing.map(|p| p.name().to_owned()),
            outcome: facts.outcome,
            exit_code: facts.exit.code(),
            stop_reason: facts.stop_reason.clone(),
            insecure_skip_verify: matches!(
                &plan.target,
                crate::plan::TargetPlan::Url(u) if u.tls.insecure_skip_verify
            ),
        },
        scenarios: scenario_summaries(plan, agg),
        metrics: metrics(plan, agg, seconds),
        thresholds,
        dropped_iterations: agg.totals.scenarios.values().map(|c| c.dropped).sum(),
        time_series: agg.series.clone(),
        telemetry: None,
        platform: None,
        outputs: Vec::new(),
        chaos: Vec::new(),
    }
}

/// A threshold result from its judgement.
pub fn threshold_result(
    th: &crate::thresholds::Threshold,
    j: crate::evaluate::Judgement,
) -> ThresholdResult {
    ThresholdResult {
        metric: th.key.clone(),
        expression: th.expression.clone(),
        observed: j.observed,
        limit: th.limit,
        verdict: j.verdict,
        reason: j.reason,
        abort_on_fail: th.abort_on_fail,
        window_secs: match th.scope {
            Scope::Window(d) => Some(d.as_secs_f64()),
            _ => None,
        },
        phase: match &th.scope {
            Scope::Phase(p) => Some(p.clone()),
            _ => None,
        },
    }
}

/// What a run's requests got back: the facts behind "a run that measured nothing never
/// passes" (DESIGN.md), worded for the run's one error sentence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// Requests answered, with any status.
    pub answered: u64,
    /// Requests that got no answer, by cause.
    pub errors: ErrorCounts,
    /// Iterations cut off in flight after `gracefulStop` (sent, never answered).
    pub interrupted: u64,
    /// Iterations not started.
    pub dropped: u64,
}

/// The leading cause of a run without answers: a request cause, or iterations cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unanswered {
    Cause(ErrorCause),
    CutOff,
}

impl Reach {
    /// The reach of everything in `stats`.
    pub fn of(stats: &Stats) -> Self {
        Self {
            answered: stats
                .series
                .iter()
                .filter(|(k, _)| k.status != 0)
                .map(|(_, s)| s.requests)
                .sum(),
            errors: stats.error_counts(|_| true),
            interrupted: stats.scenarios.values().map(|c| c.interrupted).sum(),
            dropped: stats.scenarios.values().map(|c| c.dropped).sum(),
        }
    }

    /// Requests sent: answered, failed without an answer, or cut off in flight.
    pub fn sent(&self) -> u64 {
        self.answered + self.errors.total() + self.interrupted
    }

    /// When requests were sent and none got an answer, the sentence saying so: the leading
    /// cause with its count against `url`, `first` detail of that cause when it adds
    /// something, and the other counts, e.g. `no request got an answer: 1200 of 1200 timed
    /// out after 10s waiting on http://127.0.0.1:4100 (0 refused, 0 reset)`.
    pub fn no_answer(
        &self,
        url: &str,
        timeout: Duration,
        first: impl Fn(ErrorCause) -> Option<String>,
    ) -> Option<String> {
        let sent = self.sent();
        if self.answered > 0 || sent == 0 {
            return None;
        }
        let counts: Vec<(Unanswered, u64)> = self
            .errors
            .iter()
            .map(|(c, n)| (Unanswered::Cause(c), n))
            .chain([(Unanswered::CutOff, self.interrupted)])
            .collect();
        // The most frequent; on a tie, the first in `ErrorCause::ALL` order.
        let (lead, n) = counts
            .iter()
            .copied()
            .fold(
                (Unanswered::CutOff, 0),
                |best, c| if c.1 > best.1 { c } else { best },
            );
        let lead_text = match lead {
            Unanswered::Cause(c) => match c {
                ErrorCause::Timeout => format!(
                    "timed out after {} waiting on {url}",
                    humantime::format_duration(timeout)
                ),
                ErrorCause::Refused => format!("had their connection refused by {url}"),
                ErrorCause::Reset => format!("had their connection reset or closed by {url}"),
                ErrorCause::Dns => format!("could not resolve the host of {url}"),
                ErrorCause::Connect => format!("could not connect to {url}"),
                ErrorCause::Protocol => format!("got an answer from {url} that is not valid HTTP"),
                ErrorCause::Tls => format!("failed the TLS handshake with {url}"),
            },
            Unanswered::CutOff => {
                format!("were still waiting on {url} when the run cut them off")
            }
        };
        let mut notes = Vec::new();
        if let Unanswered::Cause(c) = lead
            && !matches!(c, ErrorCause::Timeout | ErrorCause::Refused)
            && let Some(detail) = first(c).filter(|d| !d.is_empty())
        {
            notes.push(detail);
        }
        // The other counts: always timeouts, refusals and resets (a zero there says
        // something), and any other cause that occurred.
        let others: Vec<String> = counts
            .iter()
            .filter(|(u, k)| {
                *u != lead
                    && (*k > 0
                        || matches!(
                            u,
                            Unanswered::Cause(
                                ErrorCause::Timeout | ErrorCause::Refused | ErrorCause::Reset
                            )
                        ))
            })
            .map(|(u, k)| match u {
                Unanswered::Cause(ErrorCause::Timeout) => format!("{k} timed out"),
                Unanswered::Cause(c) => format!("{k} {}", c.name()),
                Unanswered::CutOff => format!("{k} cut off unanswered"),
            })
            .collect();
        if !others.is_empty() {
            notes.push(others.join(", "));
        }
        Some(format!(
            "no request got an answer: {n} of {sent} {lead_text} ({})",
            notes.join("; ")
        ))
    }

    /// When no request was sent at all, the sentence saying so, over a run of `seconds`.
    pub fn nothing_sent(&self, seconds: f64) -> Option<String> {
        if self.sent() > 0 {
            return None;
        }
        Some(if self.dropped > 0 {
            format!(
                "no request was sent: all {} iterations the scenarios planned were dropped (maxInFlight reached, or the scenario ended before they could start)",
                self.dropped
            )
        } else {
            format!("no request was sent: the scenarios scheduled no iteration in {seconds:.1}s")
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::stats::{Measurement, ScenarioKey, SeriesKey};

    fn failed(stats: &mut Stats, cause: ErrorCause, n: usize) {
        let t = Instant::now();
        for _ in 0..n {
            stats.record_failure(
                &Measurement {
                    key: SeriesKey {
                        scenario: 0,
                        request: 0,
                        status: 0,
                        phase: 0,
                    },
                    failed: true,
                    stream: false,
                    scheduled: t,
                    started: t,
                    sent: t,
                    first_byte: t,
                    end: t,
                    bytes_sent: 1,
                    bytes_received: 0,
                    connected: None,
                },
                cause,
            );
        }
    }

    const URL: &str = "http://127.0.0.1:4100";

    fn sentence(stats: &Stats, first: Option<&str>) -> Option<String> {
        Reach::of(stats).no_answer(URL, Duration::from_secs(10), |_| first.map(str::to_owned))
    }

    #[test]
    fn a_run_where_every_request_timed_out_names_the_timeout_and_the_other_counts() {
        let mut stats = Stats::default();
        failed(&mut stats, ErrorCause::Timeout, 1200);
        assert_eq!(
            sentence(&stats, None).as_deref(),
            Some(
                "no request got an answer: 1200 of 1200 timed out after 10s waiting on http://127.0.0.1:4100 (0 refused, 0 reset)"
            )
        );
    }

    #[test]
    fn the_leading_cause_comes_first_with_its_first_detail_and_every_other_cause_after() {
        let mut stats = Stats::default();
        failed(&mut stats, ErrorCause::Reset, 7);
        failed(&mut stats, ErrorCause::Protocol, 2);
        stats
            .scenarios
            .entry(ScenarioKey {
                scenario: 0,
                phase: 0,
            })
            .or_default()
            .interrupted = 1;
        assert_eq!(
            sentence(&stats, Some("connection reset by peer")).as_deref(),
            Some(
                "no request got an answer: 7 of 10 had their connection reset or closed by http://127.0.0.1:4100 (connection reset by peer; 0 timed out, 0 refused, 2 protocol, 1 cut off unanswered)"
            )
        );
    }

    #[test]
    fn iterations_cut_off_in_flight_count_as_sent_without_an_answer() {
        let mut stats = Stats::default();
        stats
            .scenarios
            .entry(ScenarioKey {
                scenario: 0,
                phase: 0,
            })
            .or_default()
            .interrupted = 4;
        let reach = Reach::of(&stats);
        assert_eq!(reach.sent(), 4);
        assert_eq!(reach.nothing_sent(1.0), None);
        assert_eq!(
            sentence(&stats, None).as_deref(),
            Some(
                "no request got an answer: 4 of 4 were still waiting on http://127.0.0.1:4100 when the run cut them off (0 timed out, 0 refused, 0 reset)"
            )
        );
    }

    #[test]
    fn one_answer_of_any_status_is_enough_and_no_request_is_its_own_sentence() {
        let mut stats = crate::testing::requests(0, 0, 503, &[10]);
        failed(&mut stats, ErrorCause::Timeout, 50);
        assert_eq!(sentence(&stats, None), None);
        assert_eq!(Reach::of(&stats).nothing_sent(1.0), None);

        let empty = Reach::of(&Stats::default());
        assert_eq!(sentence(&Stats::default(), None), None);
        assert_eq!(
            empty.nothing_sent(2.0).as_deref(),
            Some("no request was sent: the scenarios scheduled no iteration in 2.0s")
        );
        let mut dropped = Stats::default();
        dropped.record_dropped_many(
            ScenarioKey {
                scenario: 0,
                phase: 0,
            },
            3,
        );
        assert!(
            Reach::of(&dropped)
                .nothing_sent(2.0)
                .is_some_and(|s| s.starts_with("no request was sent: all 3 iterations")),
        );
    }

    #[test]
    fn error_counts_become_the_non_zero_causes_by_name() {
        let mut stats = Stats::default();
        failed(&mut stats, ErrorCause::Timeout, 3);
        failed(&mut stats, ErrorCause::Refused, 1);
        let map = error_map(&stats.error_counts(|_| true));
        assert_eq!(
            map,
            BTreeMap::from([("refused".to_owned(), 1), ("timeout".to_owned(), 3)])
        );
    }
}
