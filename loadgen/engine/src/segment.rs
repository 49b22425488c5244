//! Splitting a run's load exactly between N runners.
//!
//! Rates are carried in thousandths of an iteration per second (an integer), and split like
//! a bill: every runner gets `total / n`, the first `total % n` runners one more
//! thousandth. The parts therefore sum to the total exactly, differ by at most 0.001/s,
//! and each is written into the runner's spec as a decimal with at most three places,
//! which reads back as the same number. Ramping executors split every stage target and
//! the start rate the same way, so at any instant the runners' linear ramps sum to the
//! whole ramp. Virtual users split the same way in whole users.

use std::num::NonZeroU32;

use ricochet_crds::{LoadTestSpec, Parallelism, ScenarioSpec, Stage, ThresholdSpec};

use crate::duration::format_duration;
use crate::plan::{Executor, Plan, ScenarioPlan};

/// Thousandths of an iteration per second per iteration per second.
pub const RATE_SCALE: f64 = 1000.0;

/// The load cannot be split as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// `parallelism: auto` without a usable `maxRatePerRunner`.
    #[error(
        "spec.maxRatePerRunner: `parallelism: auto` needs a positive maxRatePerRunner (iterations per second one runner is given), got {0:?}"
    )]
    AutoWithoutMaxRate(Option<f64>),
    /// More runners than there is load to give each one some.
    #[error(
        "spec.parallelism: {runners} runners leave runner {index} with no load; use at most as many runners as the smallest scenario has thousandths of an iteration per second (or virtual users)"
    )]
    RunnerWithoutLoad {
        /// Runners asked for.
        runners: u32,
        /// The first runner left empty.
        index: u32,
    },
}

/// `total` thousandths split into `n` parts that sum to it exactly.
pub fn split_units(total: u64, n: NonZeroU32) -> Vec<u64> {
    let n64 = u64::from(n.get());
    let (each, extra) = (total / n64, total % n64);
    (0..n64).map(|i| each + u64::from(i < extra)).collect()
}

/// A rate in iterations per second as thousandths (rounded to the nearest).
pub fn rate_units(rate: f64) -> u64 {
    // Rates are finite and >= 0 once validated; `as` saturates anything else.
    (rate * RATE_SCALE).round() as u64
}

/// Thousandths back to iterations per second.
pub fn units_rate(units: u64) -> f64 {
    units as f64 / RATE_SCALE
}

/// `rate` split into `n` parts, iterations per second; the parts' thousandths sum to
/// `rate_units(rate)` exactly.
pub fn split_rate(rate: f64, n: NonZeroU32) -> Vec<f64> {
    split_units(rate_units(rate), n)
        .into_iter()
        .map(units_rate)
        .collect()
}

/// How many runners a run gets: the spec's number, or `ceil(peak rate / maxRatePerRunner)`.
pub fn runner_count(
    parallelism: Option<Parallelism>,
    max_rate_per_runner: Option<f64>,
    plan: &Plan,
) -> Result<NonZeroU32, SplitError> {
    match parallelism {
        None => Ok(NonZeroU32::MIN),
        Some(Parallelism::Runners(n)) => Ok(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)),
        Some(Parallelism::Auto) => match max_rate_per_runner {
            Some(max) if max.is_finite() && max > 0.0 => {
                let n = (plan.total_peak_rate() / max).ceil().clamp(1.0, 10_000.0) as u32;
                Ok(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
            }
            other => Err(SplitError::AutoWithoutMaxRate(other)),
        },
    }
}

/// The spec each of `n` runners runs: `spec` with every rate (and VU count) replaced by the
/// runner's exact part, taken from the validated `plan` (so `share`, `traffic` and the run's
/// overrides are already resolved), durations written out, in-cluster settings removed and
/// thresholds too (the operator judges the merged results), except windowed ones, kept
/// without `abortOnFail` so that each runner reports its data per window. `telemetry` is
/// kept with `perSecond` sampling and the query budget divided by `n`; `chaos` goes to
/// runner 0 alone. A runner whose part of a
/// scenario is zero does not run that scenario.
pub fn split_spec(
    spec: &LoadTestSpec,
    plan: &Plan,
    n: NonZeroU32,
) -> Result<Vec<LoadTestSpec>, SplitError> {
    let mut runners: Vec<LoadTestSpec> = (0..n.get())
        .map(|_| LoadTestSpec {
            target: spec.target.clone(),
            traffic: None,
            scenarios: Vec::new(),
            thresholds: windowed_thresholds(plan),
            telemetry: spec.telemetry.as_ref().map(|t| runner_telemetry(t, n)),
            chaos: Vec::new(),
            parallelism: None,
            max_rate_per_runner: None,
            schedule: None,
            concurrency_policy: None,
            successful_runs_history_limit: None,
            failed_runs_history_limit: None,
            suspend: false,
            runner: None,
            cleanup: None,
        })
        .collect();
    // The chaos timeline is applied once per run, by runner 0.
    if let Some(first) = runners.first_mut() {
        first.chaos = spec.chaos.clone();
    }
    for (written, planned) in spec.scenarios.iter().zip(&plan.scenarios) {
        for (runner, scenario) in runners.iter_mut().zip(split_scenario(written, planned, n)) {
            if let Some(scenario) = scenario {
                runner.scenarios.push(scenario);
            }
        }
    }
    if let Some(index) = runners.iter().position(|r| r.scenarios.is_empty()) {
        return Err(SplitError::RunnerWithoutLoad {
            runners: n.get(),
            index: index as u32,
        });
    }
    Ok(runners)
}

/// The plan's windowed thresholds, for runners to keep each window's data (never to
/// abort: the operator judges every window on the merge of all runners').
fn windowed_thresholds(plan: &Plan) -> std::collections::BTreeMap<String, Vec<ThresholdSpec>> {
    let mut out: std::collections::BTreeMap<String, Vec<ThresholdSpec>> = Default::default();
    for th in &plan.thresholds {
        if let crate::thresholds::Scope::Window(d) = th.scope {
            out.entry(th.key.clone())
                .or_default()
                .push(ThresholdSpec::Detailed(ricochet_crds::ThresholdDetail {
                    threshold: th.expression.clone(),
                    abort_on_fail: false,
                    delay_abort_eval: None,
                    window: Some(format_duration(d)),
                    phase: None,
                }));
        }
    }
    out
}

/// A runner's `telemetry`: the same backends and classes; `perSecond` sampling and the
/// query budget divided by `n`, so the run as a whole samples and queries as written (a
/// `rate` applies per request and stays).
fn runner_telemetry(
    t: &ricochet_crds::TelemetrySpec,
    n: NonZeroU32,
) -> ricochet_crds::TelemetrySpec {
    let n = f64::from(n.get());
    let mut t = t.clone();
    if let Some(s) = &mut t.sample
        && let Some(p) = s.per_second.as_mut()
    {
        *p /= n;
    }
    if t.sample.is_none() {
        t.sample = Some(ricochet_crds::SampleSpec {
            rate: None,
            per_second: Some(ricochet_verify::plan::DEFAULT_PER_SECOND / n),
        });
    }
    t.max_queries_per_second = Some(
        t.max_queries_per_second
            .unwrap_or(ricochet_verify::plan::DEFAULT_MAX_QPS)
            / n,
    );
    t
}

/// One scenario split `n` ways; `None` where a runner's part is nothing.
fn split_scenario(
    written: &ScenarioSpec,
    planned: &ScenarioPlan,
    n: NonZeroU32,
) -> Vec<Option<ScenarioSpec>> {
    let base = ScenarioSpec {
        share: None,
        rate: None,
        start_rate: None,
        vus: None,
        stages: Vec::new(),
        duration: None,
        start_time: Some(format_duration(planned.start_time)),
        graceful_stop: Some(format_duration(planned.graceful_stop)),
        // Each runner holds at most its share of in-flight iterations (at least 1).
        max_in_flight: Some(planned.max_in_flight.get().div_ceil(n.get()).max(1)),
        ..written.clone()
    };
    let stages = |parts: &[Vec<f64>], i: usize, stages: &[crate::plan::StagePlan]| {
        stages
            .iter()
            .zip(parts)
            .map(|(s, p)| Stage {
                target: p[i],
                duration: format_duration(s.duration),
                name: s.name.clone(),
            })
            .collect::<Vec<_>>()
    };
    let count = n.get() as usize;
    match &planned.executor {
        Executor::ConstantArrivalRate { rate, duration } => split_rate(*rate, n)
            .into_iter()
            .map(|part| {
                (part > 0.0).then(|| ScenarioSpec {
                    rate: Some(part),
                    duration: Some(format_duration(*duration)),
                    ..base.clone()
                })
            })
            .collect(),
        Executor::RampingArrivalRate {
            start_rate,
            stages: planned_stages,
        } => {
            let start = split_rate(*start_rate, n);
            let parts: Vec<Vec<f64>> = planned_stages
                .iter()
                .map(|s| split_rate(s.target, n))
                .collect();
            (0..count)
                .map(|i| {
                    let st = stages(&parts, i, planned_stages);
                    let any = start[i] > 0.0 || st.iter().any(|s| s.target > 0.0);
                    any.then(|| ScenarioSpec {
                        start_rate: (start[i] > 0.0).then_some(start[i]),
                        stages: st,
                        ..base.clone()
                    })
                })
                .collect()
        }
        Executor::ConstantVus { vus, duration } => split_units(u64::from(vus.get()), n)
            .into_iter()
            .map(|part| {
                (part > 0).then(|| ScenarioSpec {
                    vus: Some(part as u32),
                    duration: Some(format_duration(*duration)),
                    ..base.clone()
                })
            })
            .collect(),
        Executor::RampingVus {
            start_vus,
            stages: planned_stages,
        } => {
            let start = split_units(u64::from(*start_vus), n);
            let parts: Vec<Vec<f64>> = planned_stages
                .iter()
                .map(|s| {
                    split_units(s.target.round() as u64, n)
                        .into_iter()
                        .map(|u| u as f64)
                        .collect()
                })
                .collect();
            (0..count)
                .map(|i| {
                    let st = stages(&parts, i, planned_stages);
                    let any = start[i] > 0 || st.iter().any(|s| s.target > 0.0);
                    any.then(|| ScenarioSpec {
                        vus: (start[i] > 0).then_some(start[i] as u32),
                        stages: st,
                        ..base.clone()
                    })
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Overrides;
    use proptest::prelude::*;
    use std::path::Path;

    fn plan_of(spec: &LoadTestSpec) -> Plan {
        Plan::from_spec("t", spec, Path::new("."), &Overrides::default()).unwrap()
    }

    fn spec(yaml: &str) -> LoadTestSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    proptest! {
        #[test]
        fn parts_sum_to_the_total_exactly_and_differ_by_at_most_one_unit(
            total in 0u64..10_000_000_000, n in 1u32..512,
        ) {
            let parts = split_units(total, NonZeroU32::new(n).unwrap());
            prop_assert_eq!(parts.len(), n as usize);
            prop_assert_eq!(parts.iter().sum::<u64>(), total);
            let (lo, hi) = (parts.iter().min().unwrap(), parts.iter().max().unwrap());
            prop_assert!(hi - lo <= 1);
        }

        #[test]
        fn split_rates_read_back_as_the_same_thousandths(
            rate_milli in 1u64..100_000_000, n in 1u32..256,
        ) {
            let rate = units_rate(rate_milli);
            let parts = split_rate(rate, NonZeroU32::new(n).unwrap());
            // Written as YAML and read back (what the runner sees), every part is the
            // same number of thousandths, and they sum to the total.
            let yaml = serde_saphyr::to_string(&parts).unwrap();
            let back: Vec<f64> = serde_saphyr::from_str(&yaml).unwrap();
            prop_assert_eq!(&back, &parts);
            prop_assert_eq!(back.iter().map(|r| rate_units(*r)).sum::<u64>(), rate_milli);
        }
    }

    proptest! {
        // Whole specs: for every scenario and every stage, the runners' rates (as written
        // in their specs) sum to the plan's rate in thousandths, exactly.
        #[test]
        fn runner_specs_rates_sum_to_the_plans_rates_exactly(
            rates in proptest::collection::vec(1u64..5_000_000, 1..4),
            ramp in any::<bool>(),
            n in 1u32..40,
        ) {
            let scenarios: Vec<String> = rates
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let rate = units_rate(*r);
                    if ramp {
                        format!("- {{name: s{i}, executor: ramping-arrival-rate, startRate: {rate}, stages: [{{target: {rate}, duration: 10s}}, {{target: 0, duration: 5s}}], requests: [{{name: r, path: /}}]}}")
                    } else {
                        format!("- {{name: s{i}, executor: constant-arrival-rate, rate: {rate}, duration: 10s, requests: [{{name: r, path: /}}]}}")
                    }
                })
                .collect();
            let s = spec(&format!("scenarios:\n{}\n", scenarios.join("\n")));
            let plan = plan_of(&s);
            let n = NonZeroU32::new(n).unwrap();
            let Ok(runners) = split_spec(&s, &plan, n) else {
                // Only when some runner would get nothing at all.
                prop_assert!(rates.iter().all(|r| *r < u64::from(n.get())));
                return Ok(());
            };
            for (si, scenario) in plan.scenarios.iter().enumerate() {
                let parts: Vec<&ScenarioSpec> = runners
                    .iter()
                    .filter_map(|r| r.scenarios.iter().find(|x| x.name == scenario.name))
                    .collect();
                match &scenario.executor {
                    Executor::ConstantArrivalRate { rate, .. } => {
                        let sum: u64 = parts.iter().map(|p| rate_units(p.rate.unwrap())).sum();
                        prop_assert_eq!(sum, rate_units(*rate), "scenario {}", si);
                    }
                    Executor::RampingArrivalRate { start_rate, stages } => {
                        let sum: u64 = parts.iter().map(|p| rate_units(p.start_rate.unwrap_or(0.0))).sum();
                        prop_assert_eq!(sum, rate_units(*start_rate));
                        for (k, st) in stages.iter().enumerate() {
                            let sum: u64 = parts.iter().map(|p| rate_units(p.stages[k].target)).sum();
                            prop_assert_eq!(sum, rate_units(st.target), "stage {}", k);
                        }
                    }
                    _ => unreachable!(),
                }
            }
        }
    }

    #[test]
    fn a_3x_ga_spec_splits_into_runner_specs_whose_rates_sum_to_the_plan() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/api-3x-ga.yaml"),
        )
        .unwrap();
        let lt: ricochet_crds::LoadTest = serde_saphyr::from_str(&text).unwrap();
        let plan = plan_of(&lt.spec);
        let n = NonZeroU32::new(7).unwrap();
        let runners = split_spec(&lt.spec, &plan, n).unwrap();
        assert_eq!(runners.len(), 7);
        for (si, scenario) in plan.scenarios.iter().enumerate() {
            for (stage_i, stage) in scenario.executor.stages().iter().enumerate() {
                let sum: u64 = runners
                    .iter()
                    .map(|r| rate_units(r.scenarios[si].stages[stage_i].target))
                    .sum();
                assert_eq!(
                    sum,
                    rate_units(stage.target),
                    "{} stage {stage_i}",
                    scenario.name
                );
            }
        }
        // Every runner spec is itself a valid plan, without thresholds or cluster settings.
        for r in &runners {
            let p = plan_of(r);
            assert!(p.thresholds.is_empty());
            assert!(r.parallelism.is_none() && r.schedule.is_none());
        }
        let total: f64 = runners.iter().map(|r| plan_of(r).total_peak_rate()).sum();
        assert!((total - plan.total_peak_rate()).abs() < 1e-6);
    }

    #[test]
    fn vus_split_in_whole_users_and_a_runner_without_load_is_refused() {
        let s = spec(
            "scenarios: [{name: v, executor: constant-vus, vus: 5, duration: 10s, requests: [{name: r, path: /}]}]",
        );
        let plan = plan_of(&s);
        let runners = split_spec(&s, &plan, NonZeroU32::new(2).unwrap()).unwrap();
        let vus: Vec<u32> = runners
            .iter()
            .map(|r| r.scenarios[0].vus.unwrap())
            .collect();
        assert_eq!(vus, [3, 2]);
        let err = split_spec(&s, &plan, NonZeroU32::new(6).unwrap()).unwrap_err();
        assert_eq!(
            err,
            SplitError::RunnerWithoutLoad {
                runners: 6,
                index: 5
            }
        );
    }

    #[test]
    fn auto_parallelism_divides_the_peak_rate_by_the_runner_maximum() {
        let s = spec(
            "scenarios: [{name: a, executor: constant-arrival-rate, rate: 1000, duration: 10s, requests: [{name: r, path: /}]}]",
        );
        let plan = plan_of(&s);
        let n = runner_count(Some(Parallelism::Auto), Some(300.0), &plan).unwrap();
        assert_eq!(n.get(), 4);
        assert_eq!(
            runner_count(Some(Parallelism::Auto), None, &plan).unwrap_err(),
            SplitError::AutoWithoutMaxRate(None)
        );
        assert_eq!(runner_count(None, None, &plan).unwrap().get(), 1);
    }

    #[test]
    fn telemetry_is_split_and_chaos_goes_to_runner_0_only() {
        let spec = spec(
            "scenarios:\n- {name: api, executor: constant-arrival-rate, rate: 90, duration: 10s, requests: [{name: x, path: /x}]}\ntelemetry: {sample: {perSecond: 30}, maxQueriesPerSecond: 12}\nchaos: [{at: 1s, for: 2s, fault: {telemetryDropRate: 0.05}}]\n",
        );
        let plan = plan_of(&spec);
        let parts = split_spec(&spec, &plan, NonZeroU32::new(3).unwrap()).unwrap();
        for (i, p) in parts.iter().enumerate() {
            assert!(
                p.thresholds.is_empty(),
                "only windowed thresholds reach runners"
            );
            let t = p.telemetry.as_ref().expect("telemetry carried");
            assert_eq!(t.sample.as_ref().and_then(|s| s.per_second), Some(10.0));
            assert_eq!(t.max_queries_per_second, Some(4.0));
            assert_eq!(p.chaos.len(), usize::from(i == 0), "runner {i}");
        }
    }

    #[test]
    fn windowed_thresholds_reach_runners_without_abort() {
        let spec = spec(
            "scenarios:\n- {name: api, executor: constant-arrival-rate, rate: 90, duration: 10s, requests: [{name: x, path: /x}]}\nthresholds:\n  http_req_duration: [\"p(99)<800ms\", {threshold: \"p(99)<800ms\", window: 1m, abortOnFail: true}]\n",
        );
        let plan = plan_of(&spec);
        let parts = split_spec(&spec, &plan, NonZeroU32::new(2).unwrap()).unwrap();
        for p in &parts {
            let kept = &p.thresholds["http_req_duration"];
            assert_eq!(kept.len(), 1, "{kept:?}");
            let ThresholdSpec::Detailed(d) = &kept[0] else {
                panic!("{kept:?}")
            };
            assert_eq!(d.window.as_deref(), Some("1m"));
            assert!(!d.abort_on_fail);
        }
    }
}
