//! Results → `summary.json` ([`ricochet_reports::model::Summary`]).

use std::collections::BTreeMap;
use std::time::SystemTime;

use ricochet_reports::model::{
    MetricKind as ModelKind, MetricSummary, Outcome, PercentilePoint, Phase, RunInfo,
    SCHEMA_VERSION, ScenarioSummary, Summary, ThresholdResult,
};

use crate::aggregate::Aggregator;
use crate::evaluate::{Selected, ms, select, trend_stats};
use crate::metric::Metric;
use crate::plan::Plan;
use crate::stats::{merge_hist, new_hist};
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
        },
        Selected::Counter(n) => MetricSummary {
            kind: ModelKind::Counter,
            count: *n,
            rate: per_sec(*n),
            passes: None,
            trend: None,
        },
    }
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
                && metric == Metric::HttpStreamDuration
            {
                return;
            }
            out.insert(
                metric_key(metric.name(), filter),
                metric_summary(&sel, seconds),
            );
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
        },
        scenarios: scenario_summaries(plan, agg),
        metrics: metrics(plan, agg, seconds),
        thresholds,
        dropped_iterations: agg.totals.scenarios.values().map(|c| c.dropped).sum(),
        time_series: agg.series.clone(),
        telemetry: None,
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
