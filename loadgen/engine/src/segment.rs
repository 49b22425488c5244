//! A run's load split exactly between N runners: [`Plan::segment`], k6's execution
//! segment. Every runner gets the whole validated plan plus its index and the runner count,
//! and takes its segment of it.
//!
//! Rates are carried in thousandths of an iteration per second (an integer), and split like
//! a bill: every runner gets `total / n`, the first `total % n` runners one more
//! thousandth. The parts therefore sum to the total exactly and differ by at most 0.001/s.
//! Ramping executors split every stage target and the start rate the same way, so at any
//! instant the runners' linear ramps sum to the whole ramp. Virtual users split the same
//! way in whole users.

use std::num::NonZeroU32;

use ricochet_crds::Parallelism;
use ricochet_verify::plan::{SamplePolicy, TelemetryPlan};

use crate::Exit;
use crate::plan::chaos::ChaosPlan;
use crate::plan::{Executor, Plan, ScenarioPlan, StagePlan};
use crate::thresholds::{Scope, Threshold};

/// Thousandths of an iteration per second per iteration per second.
pub const RATE_SCALE: f64 = 1000.0;

/// The load cannot be split as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// `parallelism: auto` without a usable `maxRatePerRunner`.
    #[error(
        "spec.maxRatePerRunner: `parallelism: auto` needs a positive maxRatePerRunner (iterations per second one runner is given), got {}",
        .0.map_or_else(|| "none".to_owned(), |r| r.to_string())
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
    /// A runner index past the last runner.
    #[error(
        "--index: a run of {runners} runners has no runner {index}; valid indexes are 0 to {last}",
        last = runners.saturating_sub(1)
    )]
    NoSuchRunner {
        /// Runners of the run.
        runners: u32,
        /// The index asked for.
        index: u32,
    },
}

impl SplitError {
    /// The exit code of a command given this split: [`Exit::InvalidInput`].
    pub fn exit(&self) -> Exit {
        Exit::InvalidInput
    }
}

/// Runner `index`'s part of `total` units split `n` ways: the parts of `0..n` sum to
/// `total` exactly and differ by at most one unit.
pub fn part_units(total: u64, index: u32, n: NonZeroU32) -> u64 {
    let n = u64::from(n.get());
    total / n + u64::from(u64::from(index) < total % n)
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

/// Runner `index`'s part of `rate` split `n` ways, iterations per second, a whole number
/// of thousandths.
fn rate_part(rate: f64, index: u32, n: NonZeroU32) -> f64 {
    units_rate(part_units(rate_units(rate), index, n))
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

impl Plan {
    /// Runner `index`'s segment of this plan when it is split over `runners`: every rate
    /// (and VU count) replaced by the runner's exact part, `maxInFlight` divided (rounded
    /// up, at least 1), a scenario whose part is zero left out. Thresholds are dropped (the
    /// operator judges the merged results) except windowed ones, kept without `abortOnFail`
    /// so that the runner keeps each window's data; telemetry keeps its backends with
    /// `perSecond` sampling and the query budget divided by `runners` (a `rate` applies per
    /// request and stays); chaos goes to runner 0 alone.
    pub fn segment(&self, index: u32, runners: NonZeroU32) -> Result<Plan, SplitError> {
        if index >= runners.get() {
            return Err(SplitError::NoSuchRunner {
                runners: runners.get(),
                index,
            });
        }
        let scenarios: Vec<ScenarioPlan> = self
            .scenarios
            .iter()
            .filter_map(|s| {
                Some(ScenarioPlan {
                    executor: segment_executor(&s.executor, index, runners)?,
                    // A quotient of a non-zero count, rounded up: at least 1.
                    max_in_flight: NonZeroU32::new(s.max_in_flight.get().div_ceil(runners.get()))
                        .unwrap_or(NonZeroU32::MIN),
                    ..s.clone()
                })
            })
            .collect();
        if scenarios.is_empty() {
            return Err(SplitError::RunnerWithoutLoad {
                runners: runners.get(),
                index,
            });
        }
        Ok(Plan {
            name: self.name.clone(),
            source: self.source.clone(),
            target: self.target.clone(),
            multiplier: self.multiplier,
            scenarios,
            thresholds: runner_thresholds(&self.thresholds, index),
            telemetry: self
                .telemetry
                .as_ref()
                .map(|t| segment_telemetry(t, index, runners)),
            // The chaos timeline is applied once per run, by runner 0.
            chaos: if index == 0 {
                self.chaos.clone()
            } else {
                ChaosPlan::default()
            },
            // So are the query checks and alert drills.
            platform: if index == 0 {
                self.platform.clone()
            } else {
                crate::plan::platform::PlatformPlan::default()
            },
            output: self.output.clone(),
            embedded_listen: self.embedded_listen,
        })
    }

    /// Checks that each of `runners` segments has some load; the error names the first
    /// runner that would have none.
    pub fn check_segments(&self, runners: NonZeroU32) -> Result<(), SplitError> {
        let empty = (0..runners.get()).find(|&index| {
            self.scenarios
                .iter()
                .all(|s| segment_executor(&s.executor, index, runners).is_none())
        });
        match empty {
            Some(index) => Err(SplitError::RunnerWithoutLoad {
                runners: runners.get(),
                index,
            }),
            None => Ok(()),
        }
    }
}

/// The thresholds a runner keeps, never aborting: the windowed ones (the operator judges
/// every window on the merge of all runners'), and on runner 0 the platform checks' (it
/// alone runs them, and its partial result carries their verdicts).
fn runner_thresholds(thresholds: &[Threshold], index: u32) -> Vec<Threshold> {
    thresholds
        .iter()
        // Runner 0 runs the platform checks, so it judges their thresholds.
        .filter(|t| {
            if t.metric.is_platform() {
                index == 0
            } else {
                matches!(t.scope, Scope::Window(_))
            }
        })
        .map(|t| Threshold {
            abort_on_fail: false,
            ..t.clone()
        })
        .collect()
}

/// A runner's telemetry: `perSecond` sampling and the query budget divided by `n`, so the
/// run as a whole samples and queries as written; its own share of the probe slots.
fn segment_telemetry(t: &TelemetryPlan, index: u32, runners: NonZeroU32) -> TelemetryPlan {
    let n = f64::from(runners.get());
    TelemetryPlan {
        probe_share: (index, runners.get()),
        sample: match t.sample {
            SamplePolicy::PerSecond(p) => SamplePolicy::PerSecond(p / n),
            rate @ SamplePolicy::Rate(_) => rate,
        },
        max_queries_per_second: t.max_queries_per_second / n,
        ..t.clone()
    }
}

/// Runner `index`'s part of `executor` split `n` ways; `None` when the part is nothing.
fn segment_executor(executor: &Executor, index: u32, n: NonZeroU32) -> Option<Executor> {
    let stages = |part: &dyn Fn(f64) -> f64, stages: &[StagePlan]| -> Vec<StagePlan> {
        stages
            .iter()
            .map(|s| StagePlan {
                target: part(s.target),
                ..s.clone()
            })
            .collect()
    };
    let any_stage = |stages: &[StagePlan]| stages.iter().any(|s| s.target > 0.0);
    // Parts of a whole number of VUs are at most that number, so they fit a u32.
    let vus = |v: u64| part_units(v, index, n) as u32;
    match executor {
        Executor::ConstantArrivalRate { rate, duration } => {
            let rate = rate_part(*rate, index, n);
            (rate > 0.0).then_some(Executor::ConstantArrivalRate {
                rate,
                duration: *duration,
            })
        }
        Executor::RampingArrivalRate {
            start_rate,
            stages: s,
        } => {
            let start_rate = rate_part(*start_rate, index, n);
            let stages = stages(&|target| rate_part(target, index, n), s);
            (start_rate > 0.0 || any_stage(&stages))
                .then_some(Executor::RampingArrivalRate { start_rate, stages })
        }
        Executor::ConstantVus { vus: v, duration } => {
            NonZeroU32::new(vus(u64::from(v.get()))).map(|vus| Executor::ConstantVus {
                vus,
                duration: *duration,
            })
        }
        Executor::RampingVus {
            start_vus,
            stages: s,
        } => {
            let start_vus = vus(u64::from(*start_vus));
            let stages = stages(&|target| f64::from(vus(target.round() as u64)), s);
            (start_vus > 0 || any_stage(&stages))
                .then_some(Executor::RampingVus { start_vus, stages })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Overrides;
    use crate::schedule::RateProfile;
    use proptest::prelude::*;
    use ricochet_crds::LoadTestSpec;
    use std::path::Path;

    fn plan_of(spec: &LoadTestSpec) -> Plan {
        Plan::from_spec("t", spec, Path::new("."), &Overrides::default()).unwrap()
    }

    fn plan_yaml(yaml: &str) -> Plan {
        plan_of(&serde_saphyr::from_str(yaml).unwrap())
    }

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    /// Every runner's segment, `None` where a runner has no load.
    fn segments(plan: &Plan, n: NonZeroU32) -> Vec<Option<Plan>> {
        (0..n.get())
            .map(|i| match plan.segment(i, n) {
                Ok(p) => Some(p),
                Err(SplitError::RunnerWithoutLoad { .. }) => None,
                Err(e) => panic!("{e}"),
            })
            .collect()
    }

    /// A plan of constant or ramping arrival-rate scenarios, one per rate in thousandths.
    fn rate_plan(rates: &[u64], ramp: bool) -> Plan {
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
        plan_yaml(&format!("scenarios:\n{}\n", scenarios.join("\n")))
    }

    proptest! {
        #[test]
        fn parts_sum_to_the_total_exactly_and_differ_by_at_most_one_unit(
            total in 0u64..10_000_000_000, n in 1u32..512,
        ) {
            let parts: Vec<u64> = (0..n).map(|i| part_units(total, i, nz(n))).collect();
            prop_assert_eq!(parts.iter().sum::<u64>(), total);
            let (lo, hi) = (parts.iter().min().unwrap(), parts.iter().max().unwrap());
            prop_assert!(hi - lo <= 1);
        }

        #[test]
        fn a_part_in_thousandths_reads_back_as_the_same_thousandths(units in 0u64..100_000_000_000) {
            prop_assert_eq!(rate_units(units_rate(units)), units);
        }

        // For every scenario and every stage, the segments' rates sum to the plan's rate in
        // thousandths, exactly; a scenario whose part is zero is left out.
        #[test]
        fn segments_rates_sum_to_the_plans_rates_exactly(
            rates in proptest::collection::vec(1u64..5_000_000, 1..4),
            ramp in any::<bool>(),
            n in 1u32..40,
        ) {
            let plan = rate_plan(&rates, ramp);
            let n = nz(n);
            if plan.check_segments(n).is_err() {
                // Only when some runner would get nothing at all.
                prop_assert!(rates.iter().all(|r| *r < u64::from(n.get())));
                return Ok(());
            }
            let parts: Vec<Plan> = segments(&plan, n).into_iter().map(Option::unwrap).collect();
            for (si, scenario) in plan.scenarios.iter().enumerate() {
                let parts: Vec<&Executor> = parts
                    .iter()
                    .filter_map(|p| p.scenarios.iter().find(|x| x.name == scenario.name))
                    .map(|s| &s.executor)
                    .collect();
                prop_assert_eq!(parts.len() as u64, u64::from(n.get()).min(rates[si]));
                match &scenario.executor {
                    Executor::ConstantArrivalRate { rate, .. } => {
                        let sum: u64 = parts.iter().filter_map(|e| e.peak_rate()).map(rate_units).sum();
                        prop_assert_eq!(sum, rate_units(*rate), "scenario {}", si);
                    }
                    Executor::RampingArrivalRate { start_rate, stages } => {
                        let sum: u64 = parts
                            .iter()
                            .map(|e| match e {
                                Executor::RampingArrivalRate { start_rate, .. } => rate_units(*start_rate),
                                other => panic!("{other:?}"),
                            })
                            .sum();
                        prop_assert_eq!(sum, rate_units(*start_rate));
                        for (k, st) in stages.iter().enumerate() {
                            let sum: u64 = parts.iter().map(|e| rate_units(e.stages()[k].target)).sum();
                            prop_assert_eq!(sum, rate_units(st.target), "stage {}", k);
                        }
                    }
                    _ => unreachable!(),
                }
            }
        }

        // The open-model schedule follows: for a ramping and a constant scenario, the
        // segments' planned arrivals sum to the plan's.
        #[test]
        fn segments_planned_arrivals_sum_to_the_plans(
            ramp_rate in 1u64..5_000_000,
            constant_rate in 1u64..5_000_000,
            n in 1u32..40,
        ) {
            let (ramp, constant) = (units_rate(ramp_rate), units_rate(constant_rate));
            let plan = plan_yaml(&format!(
                "scenarios:\n\
                 - {{name: ramp, executor: ramping-arrival-rate, startRate: {ramp}, stages: [{{target: {constant}, duration: 7s}}, {{target: {ramp}, duration: 3s}}, {{target: 0, duration: 5s}}], requests: [{{name: r, path: /}}]}}\n\
                 - {{name: constant, executor: constant-arrival-rate, rate: {constant}, duration: 10s, requests: [{{name: r, path: /}}]}}\n"
            ));
            let n = nz(n);
            let parts = segments(&plan, n);
            for scenario in &plan.scenarios {
                let whole = RateProfile::of(&scenario.executor).unwrap().total();
                let sum: f64 = parts
                    .iter()
                    .flatten()
                    .filter_map(|p| p.scenarios.iter().find(|s| s.name == scenario.name))
                    .map(|s| RateProfile::of(&s.executor).unwrap().total())
                    .sum();
                prop_assert!(
                    (sum - whole).abs() <= 1e-9 * whole.max(1.0),
                    "{}: {} planned over {} runners, {} whole", scenario.name, sum, n, whole
                );
            }
        }
    }

    #[test]
    fn a_3x_ga_plan_splits_into_segments_whose_rates_sum_to_the_plan() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/api-3x-ga.yaml"),
        )
        .unwrap();
        let lt: ricochet_crds::LoadTest = serde_saphyr::from_str(&text).unwrap();
        let plan = plan_of(&lt.spec);
        let n = nz(7);
        plan.check_segments(n).unwrap();
        let parts: Vec<Plan> = (0..7).map(|i| plan.segment(i, n).unwrap()).collect();
        for (si, scenario) in plan.scenarios.iter().enumerate() {
            for (stage_i, stage) in scenario.executor.stages().iter().enumerate() {
                let sum: u64 = parts
                    .iter()
                    .map(|p| rate_units(p.scenarios[si].executor.stages()[stage_i].target))
                    .sum();
                assert_eq!(
                    sum,
                    rate_units(stage.target),
                    "{} stage {stage_i}",
                    scenario.name
                );
            }
        }
        // No runner judges a whole-run threshold; the operator does, on the merge.
        for p in &parts {
            assert!(
                p.thresholds
                    .iter()
                    .all(|t| matches!(t.scope, Scope::Window(_)) && !t.abort_on_fail)
            );
        }
        let total: f64 = parts.iter().map(Plan::total_peak_rate).sum();
        assert!((total - plan.total_peak_rate()).abs() < 1e-6);
    }

    #[test]
    fn vus_split_in_whole_users_and_a_runner_without_load_is_refused() {
        let plan = plan_yaml(
            "scenarios: [{name: v, executor: constant-vus, vus: 5, maxInFlight: 5, duration: 10s, requests: [{name: r, path: /}]}]",
        );
        let parts: Vec<Plan> = (0..2).map(|i| plan.segment(i, nz(2)).unwrap()).collect();
        let vus: Vec<Option<u32>> = parts
            .iter()
            .map(|p| p.scenarios[0].executor.peak_vus())
            .collect();
        assert_eq!(vus, [Some(3), Some(2)]);
        // Each runner holds at most its share of in-flight iterations, rounded up.
        assert_eq!(parts[0].scenarios[0].max_in_flight.get(), 3);
        let err = SplitError::RunnerWithoutLoad {
            runners: 6,
            index: 5,
        };
        assert_eq!(plan.check_segments(nz(6)).unwrap_err(), err);
        assert_eq!(plan.segment(5, nz(6)).unwrap_err(), err);
        assert_eq!(
            err.to_string(),
            "spec.parallelism: 6 runners leave runner 5 with no load; use at most as many runners as the smallest scenario has thousandths of an iteration per second (or virtual users)"
        );
        assert_eq!(
            plan.segment(2, nz(2)).unwrap_err().to_string(),
            "--index: a run of 2 runners has no runner 2; valid indexes are 0 to 1"
        );
    }

    #[test]
    fn a_runner_whose_part_of_a_scenario_is_zero_does_not_run_it() {
        let plan = plan_yaml(
            "scenarios:\n- {name: api, executor: constant-arrival-rate, rate: 90, duration: 10s, requests: [{name: x, path: /x}]}\n- {name: one, executor: constant-vus, vus: 1, duration: 10s, requests: [{name: x, path: /x}]}\n",
        );
        let names =
            |p: &Plan| -> Vec<String> { p.scenarios.iter().map(|s| s.name.clone()).collect() };
        assert_eq!(names(&plan.segment(0, nz(2)).unwrap()), ["api", "one"]);
        assert_eq!(names(&plan.segment(1, nz(2)).unwrap()), ["api"]);
    }

    #[test]
    fn auto_parallelism_divides_the_peak_rate_by_the_runner_maximum() {
        let plan = plan_yaml(
            "scenarios: [{name: a, executor: constant-arrival-rate, rate: 1000, duration: 10s, requests: [{name: r, path: /}]}]",
        );
        let n = runner_count(Some(Parallelism::Auto), Some(300.0), &plan).unwrap();
        assert_eq!(n.get(), 4);
        let e = runner_count(Some(Parallelism::Auto), None, &plan).unwrap_err();
        assert_eq!(e, SplitError::AutoWithoutMaxRate(None));
        assert!(e.to_string().ends_with("given), got none"), "{e}");
        let e = runner_count(Some(Parallelism::Auto), Some(-1.0), &plan).unwrap_err();
        assert!(e.to_string().ends_with("given), got -1"), "{e}");
        assert_eq!(runner_count(None, None, &plan).unwrap().get(), 1);
    }

    #[test]
    fn telemetry_is_split_and_chaos_goes_to_runner_0_only() {
        let plan = plan_yaml(
            "scenarios:\n- {name: api, executor: constant-arrival-rate, rate: 90, duration: 10s, requests: [{name: x, path: /x}]}\ntelemetry: {sample: {perSecond: 30}, maxQueriesPerSecond: 12}\nchaos: [{at: 1s, for: 2s, fault: {telemetryDropRate: 0.05}}]\n",
        );
        for i in 0..3 {
            let p = plan.segment(i, nz(3)).unwrap();
            assert!(p.thresholds.is_empty());
            let t = p.telemetry.as_ref().expect("telemetry carried");
            assert_eq!(t.sample, SamplePolicy::PerSecond(10.0));
            assert_eq!(t.max_queries_per_second, 4.0);
            assert_eq!(p.chaos.events.len(), usize::from(i == 0), "runner {i}");
        }
        // A sampling rate applies per request: every runner keeps it.
        let plan = plan_yaml(
            "scenarios:\n- {name: api, executor: constant-arrival-rate, rate: 90, duration: 10s, requests: [{name: x, path: /x}]}\ntelemetry: {sample: {rate: 0.5}}\n",
        );
        let t = plan.segment(1, nz(3)).unwrap().telemetry.unwrap();
        assert_eq!(t.sample, SamplePolicy::Rate(0.5));
    }

    #[test]
    fn windowed_thresholds_reach_runners_without_abort() {
        let plan = plan_yaml(
            "scenarios:\n- {name: api, executor: constant-arrival-rate, rate: 90, duration: 10s, requests: [{name: x, path: /x}]}\nthresholds:\n  http_req_duration: [\"p(99)<800ms\", {threshold: \"p(99)<800ms\", window: 1m, abortOnFail: true}]\n",
        );
        for i in 0..2 {
            let kept = plan.segment(i, nz(2)).unwrap().thresholds;
            assert_eq!(kept.len(), 1, "{kept:?}");
            assert_eq!(kept[0].key, "http_req_duration");
            assert_eq!(
                kept[0].scope,
                Scope::Window(std::time::Duration::from_secs(60))
            );
            assert!(!kept[0].abort_on_fail);
        }
    }
}
