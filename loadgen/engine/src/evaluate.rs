//! Threshold evaluation with k6 semantics over merged [`Stats`].
//!
//! A threshold selects the series whose tag set contains its filter (scenario, name,
//! method, status and the scenario's own tags), merges their histograms (percentiles are
//! never averaged) and compares one aggregate with the limit. No samples → `Unknown`,
//! which fails the gate closed, with the reason.
//!
//! [`crate::judge::Evidence::judge_threshold`] decides what each threshold is judged on
//! (the whole run, a phase, its windows, or the telemetry tallies) and calls into here.

use std::collections::BTreeMap;

use ricochet_reports::model::TrendStats;
use ricochet_reports::model::Verdict;

use crate::metric::Metric;
use crate::plan::{Executor, Plan};
use crate::stats::{Hist, ScenarioKey, SeriesKey, SeriesStats, Stats, merge_hist, new_hist};
use crate::thresholds::{Aggregation, Comparison, Threshold};

/// Names of the tags of every series, resolved from the plan.
#[derive(Clone, Debug)]
pub struct TagIndex {
    scenarios: Vec<ScenarioTags>,
}

#[derive(Clone, Debug)]
struct ScenarioTags {
    name: String,
    tags: BTreeMap<String, String>,
    requests: Vec<(String, String)>,
    stage_names: Vec<Option<String>>,
}

impl TagIndex {
    /// The index of `plan`'s scenarios.
    pub fn new(plan: &Plan) -> Self {
        Self {
            scenarios: plan
                .scenarios
                .iter()
                .map(|s| ScenarioTags {
                    name: s.name.clone(),
                    tags: s.tags.clone(),
                    requests: s
                        .requests
                        .iter()
                        .map(|r| (r.name.clone(), r.method.as_str().to_owned()))
                        .collect(),
                    stage_names: match &s.executor {
                        Executor::RampingArrivalRate { stages, .. }
                        | Executor::RampingVus { stages, .. } => {
                            stages.iter().map(|st| st.name.clone()).collect()
                        }
                        _ => Vec::new(),
                    },
                })
                .collect(),
        }
    }

    /// Name of scenario `i`.
    pub fn scenario_name(&self, i: u16) -> &str {
        self.scenarios
            .get(usize::from(i))
            .map_or("?", |s| s.name.as_str())
    }

    /// Name of request `r` of scenario `s`.
    pub fn request_name(&self, s: u16, r: u16) -> &str {
        self.scenarios
            .get(usize::from(s))
            .and_then(|sc| sc.requests.get(usize::from(r)))
            .map_or("?", |r| r.0.as_str())
    }

    fn phase_matches(&self, scenario: u16, phase: u16, want: Option<&str>) -> bool {
        let Some(want) = want else { return true };
        phase > 0
            && self
                .scenarios
                .get(usize::from(scenario))
                .and_then(|s| s.stage_names.get(usize::from(phase) - 1))
                .is_some_and(|n| n.as_deref() == Some(want))
    }

    /// Whether a request series carries every tag of `filter` (and falls in `phase`).
    pub fn series_matches(
        &self,
        key: &SeriesKey,
        filter: &BTreeMap<String, String>,
        phase: Option<&str>,
    ) -> bool {
        let Some(sc) = self.scenarios.get(usize::from(key.scenario)) else {
            return false;
        };
        if !self.phase_matches(key.scenario, key.phase, phase) {
            return false;
        }
        let request = sc.requests.get(usize::from(key.request));
        filter.iter().all(|(k, v)| match k.as_str() {
            "scenario" => sc.name == *v,
            "name" => request.is_some_and(|r| r.0 == *v),
            "method" => request.is_some_and(|r| r.1.eq_ignore_ascii_case(v)),
            "status" => key.status.to_string() == *v,
            "expected_response" => (key.status > 0 && key.status < 400).to_string() == *v,
            other => sc.tags.get(other) == Some(v),
        })
    }

    /// Whether scenario-level counters carry every tag of `filter` (and fall in `phase`).
    pub fn scenario_matches(
        &self,
        key: &ScenarioKey,
        filter: &BTreeMap<String, String>,
        phase: Option<&str>,
    ) -> bool {
        let Some(sc) = self.scenarios.get(usize::from(key.scenario)) else {
            return false;
        };
        if !self.phase_matches(key.scenario, key.phase, phase) {
            return false;
        }
        filter.iter().all(|(k, v)| match k.as_str() {
            "scenario" => sc.name == *v,
            "name" | "method" | "status" | "expected_response" => false,
            other => sc.tags.get(other) == Some(v),
        })
    }

    /// Whether any scenario of the plan could produce samples matching `filter`.
    pub fn filter_possible(&self, filter: &BTreeMap<String, String>) -> bool {
        self.scenarios.iter().any(|sc| {
            filter.iter().all(|(k, v)| match k.as_str() {
                "scenario" => sc.name == *v,
                "name" => sc.requests.iter().any(|r| r.0 == *v),
                "method" => sc.requests.iter().any(|r| r.1.eq_ignore_ascii_case(v)),
                "status" | "expected_response" => true,
                other => sc.tags.get(other) == Some(v),
            })
        })
    }
}

/// The samples of one metric selected by a filter.
#[derive(Clone, Debug)]
pub enum Selected {
    /// A merged distribution, µs.
    Trend(Hist),
    /// `passes` true samples of `total`.
    Rate {
        /// True samples (failed requests).
        passes: u64,
        /// All samples.
        total: u64,
    },
    /// A count.
    Counter(u64),
}

/// Selects the samples of `metric` matching `filter` (and `phase`); `None` for a metric
/// not measured from requests (the telemetry metrics).
pub fn select(
    metric: Metric,
    filter: &BTreeMap<String, String>,
    phase: Option<&str>,
    stats: &Stats,
    index: &TagIndex,
) -> Option<Selected> {
    let series = || {
        stats
            .series
            .iter()
            .filter(move |(k, _)| index.series_matches(k, filter, phase))
            .map(|(_, s)| s)
    };
    let scenarios = || {
        stats
            .scenarios
            .iter()
            .filter(move |(k, _)| index.scenario_matches(k, filter, phase))
            .map(|(_, c)| c)
    };
    let trend: fn(&SeriesStats) -> Option<&Hist> = match metric {
        Metric::HttpReqFailed => {
            return Some(Selected::Rate {
                passes: series().map(|s| s.failed).sum(),
                total: series().map(|s| s.requests).sum(),
            });
        }
        Metric::HttpReqs => return Some(Selected::Counter(series().map(|s| s.requests).sum())),
        Metric::DataSent => return Some(Selected::Counter(series().map(|s| s.data_sent).sum())),
        Metric::DataReceived => {
            return Some(Selected::Counter(series().map(|s| s.data_received).sum()));
        }
        Metric::Iterations => {
            return Some(Selected::Counter(scenarios().map(|c| c.iterations).sum()));
        }
        Metric::DroppedIterations => {
            return Some(Selected::Counter(scenarios().map(|c| c.dropped).sum()));
        }
        Metric::InterruptedIterations => {
            return Some(Selected::Counter(scenarios().map(|c| c.interrupted).sum()));
        }
        Metric::HttpReqDuration => |s| Some(&s.duration),
        Metric::HttpReqWaiting => |s| Some(&s.waiting),
        Metric::HttpStreamDuration => |s| s.stream.as_ref(),
        Metric::HttpReqServiceDuration => |s| Some(&s.service),
        Metric::HttpReqScheduleLag => |s| Some(&s.schedule_lag),
        Metric::HttpReqBlocked => |s| Some(&s.blocked),
        Metric::HttpReqConnecting => |s| s.connecting.as_ref(),
        Metric::HttpReqTlsHandshaking => |s| s.tls_handshaking.as_ref(),
        Metric::Telemetry(_) | Metric::Query | Metric::Alert(_) => return None,
    };
    let mut h = new_hist();
    for src in series().filter_map(trend) {
        merge_hist(&mut h, src);
    }
    Some(Selected::Trend(h))
}

/// Microseconds to milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A threshold's outcome over some samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// The computed value, in the expression's unit.
    pub observed: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why `Unknown`, or what failed.
    pub reason: Option<String>,
}

impl Judgement {
    /// An unknown verdict with its reason.
    pub fn unknown(reason: String) -> Self {
        Self {
            observed: None,
            verdict: Verdict::Unknown,
            reason: Some(reason),
        }
    }
}

/// The judgement of a threshold whose metric this run did not measure.
pub(crate) fn not_measured(th: &Threshold) -> Judgement {
    Judgement::unknown(format!(
        "metric `{}` is not measured by this run (telemetry verification did not run or the name is unknown)",
        th.metric
    ))
}

pub(crate) fn aggregation_name(a: Aggregation) -> String {
    match a {
        Aggregation::Percentile(p) => format!("p({p})"),
        Aggregation::Avg => "avg".into(),
        Aggregation::Med => "med".into(),
        Aggregation::Min => "min".into(),
        Aggregation::Max => "max".into(),
        Aggregation::Count => "count".into(),
        Aggregation::Rate => "rate".into(),
        Aggregation::Last => "last".into(),
    }
}

/// Judges `th` over `stats` covering `seconds` of time (for counter rates); `phase`
/// restricts to samples scheduled in that phase.
pub fn judge(
    th: &Threshold,
    stats: &Stats,
    index: &TagIndex,
    phase: Option<&str>,
    seconds: f64,
) -> Judgement {
    let Some(selected) = select(th.metric, &th.filter, phase, stats, index) else {
        return not_measured(th);
    };
    if let Selected::Counter(0) = selected
        && !index.filter_possible(&th.filter)
    {
        return Judgement::unknown(format!(
            "no scenario of this plan produces samples tagged `{}`",
            th.key
        ));
    }
    let mut no_data = format!("no samples of `{}` were recorded", th.key);
    if let Some(p) = phase {
        no_data.push_str(&format!(" in phase `{p}`"));
    }
    judge_selected(th, &selected, seconds, &no_data)
}

/// Judges `th` over already selected samples covering `seconds`; `no_data` is the
/// reason given when there are none.
pub fn judge_selected(
    th: &Threshold,
    selected: &Selected,
    seconds: f64,
    no_data: &str,
) -> Judgement {
    let no_data = || Judgement::unknown(no_data.to_owned());
    let inapplicable = |kind: &str| {
        Judgement::unknown(format!(
            "`{}` does not apply to the {kind} metric `{}`",
            aggregation_name(th.aggregation),
            th.metric
        ))
    };
    let observed = match selected {
        Selected::Trend(h) => {
            if h.is_empty() {
                return no_data();
            }
            match th.aggregation {
                Aggregation::Percentile(p) => ms(h.value_at_quantile((p / 100.0).clamp(0.0, 1.0))),
                Aggregation::Avg => h.mean() / 1000.0,
                Aggregation::Med => ms(h.value_at_quantile(0.5)),
                Aggregation::Min => ms(h.min()),
                Aggregation::Max => ms(h.max()),
                Aggregation::Count => h.len() as f64,
                Aggregation::Rate => h.len() as f64 / seconds.max(1e-9),
                Aggregation::Last => return inapplicable("trend"),
            }
        }
        Selected::Rate { passes, total } => {
            let (passes, total) = (*passes, *total);
            if total == 0 {
                return no_data();
            }
            match th.aggregation {
                Aggregation::Rate => passes as f64 / total as f64,
                Aggregation::Count => passes as f64,
                _ => return inapplicable("rate"),
            }
        }
        Selected::Counter(n) => {
            let n = *n;
            match th.aggregation {
                Aggregation::Count => n as f64,
                Aggregation::Rate => n as f64 / seconds.max(1e-9),
                _ => return inapplicable("counter"),
            }
        }
    };
    let pass = th.comparison.holds(observed, th.limit);
    Judgement {
        observed: Some(observed),
        verdict: if pass { Verdict::Pass } else { Verdict::Fail },
        reason: None,
    }
}

/// Whether `a` is a worse observation than `b` for this comparison.
pub fn worse(cmp: Comparison, a: f64, b: f64) -> bool {
    match cmp {
        Comparison::Lt | Comparison::Le => a > b,
        Comparison::Gt | Comparison::Ge => a < b,
        Comparison::Eq | Comparison::Ne => false,
    }
}

/// Trend statistics of `h` (µs) in ms, `None` when empty.
pub fn trend_stats(h: &Hist) -> Option<TrendStats> {
    (!h.is_empty()).then(|| TrendStats {
        min: ms(h.min()),
        avg: h.mean() / 1000.0,
        med: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thresholds::parse_condition;
    use std::time::Duration;

    fn plan() -> Plan {
        crate::testing::plan_with(vec![crate::testing::scenario("api", 10.0, "/api/x")])
    }

    fn threshold(
        metric: Metric,
        filter: &[(&str, &str)],
        agg: Aggregation,
        cmp: Comparison,
        limit: f64,
    ) -> Threshold {
        Threshold {
            key: metric.name().into(),
            metric,
            filter: filter
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            expression: "x".into(),
            aggregation: agg,
            comparison: cmp,
            limit,
            abort_on_fail: false,
            delay_abort_eval: Duration::ZERO,
            scope: crate::thresholds::Scope::Run,
        }
    }

    fn stats_with(latencies_ms: &[u64], status: u16) -> Stats {
        crate::testing::requests(0, 0, status, latencies_ms)
    }

    #[test]
    fn percentile_threshold_fails_when_latency_exceeds_the_limit() {
        let p = plan();
        let idx = TagIndex::new(&p);
        let st = stats_with(&[20, 21, 22], 200);
        let j = judge(
            &threshold(
                Metric::HttpReqDuration,
                &[],
                Aggregation::Percentile(99.0),
                Comparison::Lt,
                1.0,
            ),
            &st,
            &idx,
            None,
            1.0,
        );
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.observed.is_some_and(|o| o >= 20.0));
    }

    #[test]
    fn tag_filter_on_another_scenario_has_no_data_and_is_unknown() {
        let p = plan();
        let idx = TagIndex::new(&p);
        let st = stats_with(&[5], 200);
        let j = judge(
            &threshold(
                Metric::HttpReqDuration,
                &[("scenario", "chat")],
                Aggregation::Avg,
                Comparison::Lt,
                100.0,
            ),
            &st,
            &idx,
            None,
            1.0,
        );
        assert_eq!(j.verdict, Verdict::Unknown);
        assert!(j.reason.is_some());
        let j = judge(
            &threshold(
                Metric::HttpReqDuration,
                &[("scenario", "api"), ("status", "200")],
                Aggregation::Avg,
                Comparison::Lt,
                100.0,
            ),
            &st,
            &idx,
            None,
            1.0,
        );
        assert_eq!(j.verdict, Verdict::Pass);
    }

    #[test]
    fn failed_rate_counts_error_statuses() {
        let p = plan();
        let idx = TagIndex::new(&p);
        let mut st = stats_with(&[1, 1, 1], 200);
        st.merge(&stats_with(&[1], 503));
        let j = judge(
            &threshold(
                Metric::HttpReqFailed,
                &[],
                Aggregation::Rate,
                Comparison::Lt,
                0.3,
            ),
            &st,
            &idx,
            None,
            1.0,
        );
        assert_eq!(j.observed, Some(0.25));
        assert_eq!(j.verdict, Verdict::Pass);
    }

    #[test]
    fn unmeasured_metric_is_unknown() {
        let p = plan();
        let idx = TagIndex::new(&p);
        let j = judge(
            &threshold(
                Metric::Telemetry(crate::metric::RoundTrip::Missing(
                    ricochet_verify::Signal::Traces,
                )),
                &[],
                Aggregation::Rate,
                Comparison::Lt,
                0.1,
            ),
            &Stats::default(),
            &idx,
            None,
            1.0,
        );
        assert_eq!(j.verdict, Verdict::Unknown);
    }

    #[test]
    fn a_limit_written_in_another_unit_equals_the_observed_value() {
        // `min==1005us` is 1005 × 0.001 = 1.0050000000000001 ms; the observed minimum is
        // 1005 / 1000 = 1.005 ms. Exact float equality would fail this `==` and pass `!=`.
        let mut st = Stats::default();
        let series = st
            .series
            .entry(SeriesKey {
                scenario: 0,
                request: 0,
                status: 200,
                phase: 0,
            })
            .or_default();
        series.requests = 1;
        crate::stats::record_duration(&mut series.duration, Duration::from_micros(1005));
        let p = plan();
        let idx = TagIndex::new(&p);
        for (condition, verdict) in [
            ("min==1005us", Verdict::Pass),
            ("min!=1005us", Verdict::Fail),
            ("min==1006us", Verdict::Fail),
        ] {
            let (agg, cmp, limit) = parse_condition(Metric::HttpReqDuration, condition).unwrap();
            let th = threshold(Metric::HttpReqDuration, &[], agg, cmp, limit);
            let j = judge(&th, &st, &idx, None, 1.0);
            assert_eq!(j.observed, Some(1.005), "{condition}");
            assert_eq!(j.verdict, verdict, "{condition}");
        }
    }
}
