//! A runner's partial results and their exact merge.
//!
//! Each runner writes its [`Stats`] as a [`Partial`]: every series keyed by *names*
//! (scenario, request) rather than plan indices — a runner whose part of a scenario is zero
//! does not run it, so indices differ between runners — with its counters and its
//! HdrHistograms serialized (V2 + DEFLATE, base64). The operator maps names back to the
//! whole run's plan and merges with `Histogram::add`: percentiles of the merged data are
//! those of one histogram over all samples; nothing is averaged.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use ricochet_crds::{ThresholdVerdict, Verdict};
use ricochet_reports::model::Verdict as ModelVerdict;
use serde::{Deserialize, Serialize};

use crate::evaluate::{TagIndex, judge};
use crate::plan::Plan;
use crate::stats::{Hist, ScenarioCounters, ScenarioKey, SeriesKey, SeriesStats, Stats};
use crate::thresholds::Scope;

/// Version of the [`Partial`] format.
pub const PARTIAL_VERSION: u32 = 1;

/// A partial result cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum PartialError {
    /// A histogram could not be serialized.
    #[error("cannot serialize a histogram of series {series}: {message}")]
    Serialize {
        /// Which series.
        series: String,
        /// The serializer's message.
        message: String,
    },
    /// A histogram could not be read back.
    #[error("runner {runner}: cannot read the `{field}` histogram of series {series}: {message}")]
    Deserialize {
        /// Which runner.
        runner: u32,
        /// Which series.
        series: String,
        /// Which histogram.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// A name does not exist in the run's plan.
    #[error("runner {runner}: {what} `{name}` is not in the run's plan")]
    UnknownName {
        /// Which runner.
        runner: u32,
        /// `scenario` or `request`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The document is not a partial result.
    #[error(
        "runner {runner}: the partial result is not valid JSON of format {PARTIAL_VERSION}: {message}"
    )]
    Format {
        /// Which runner.
        runner: u32,
        /// Why.
        message: String,
    },
}

/// One runner's measurements.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Partial {
    /// Format version ([`PARTIAL_VERSION`]).
    pub version: u32,
    /// Runner index.
    pub runner: u32,
    /// Seconds the runner's load ran (for counter rates).
    pub elapsed_seconds: f64,
    /// Per-series measurements.
    pub series: Vec<PartialSeries>,
    /// Per-scenario counters.
    pub scenarios: Vec<PartialScenario>,
}

/// One series, keyed by names.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartialSeries {
    /// Scenario name.
    pub scenario: String,
    /// Request name.
    pub request: String,
    /// HTTP status, 0 without a response.
    pub status: u16,
    /// Stage index + 1, 0 without stages.
    pub phase: u16,
    /// Completed requests.
    pub requests: u64,
    /// Failed requests.
    pub failed: u64,
    /// Bytes sent.
    pub data_sent: u64,
    /// Bytes received.
    pub data_received: u64,
    /// `http_req_duration`, V2+DEFLATE, base64.
    pub duration: String,
    /// `http_req_waiting`.
    pub waiting: String,
    /// `http_req_service_duration`.
    pub service: String,
    /// `http_req_schedule_lag`.
    pub schedule_lag: String,
    /// `http_stream_duration`, streamed requests only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
}

/// One scenario's counters, keyed by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartialScenario {
    /// Scenario name.
    pub scenario: String,
    /// Stage index + 1, 0 without stages.
    pub phase: u16,
    /// Completed iterations.
    pub iterations: u64,
    /// Dropped iterations.
    pub dropped: u64,
    /// Interrupted iterations.
    pub interrupted: u64,
}

fn encode(h: &Hist, series: &str) -> Result<String, PartialError> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| PartialError::Serialize {
            series: series.to_owned(),
            message: format!("{e:?}"),
        })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

fn decode(
    text: &str,
    runner: u32,
    series: &str,
    field: &'static str,
) -> Result<Hist, PartialError> {
    let err = |message: String| PartialError::Deserialize {
        runner,
        series: series.to_owned(),
        field,
        message,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| err(e.to_string()))?;
    let mut h: Hist = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| err(format!("{e:?}")))?;
    h.auto(true);
    Ok(h)
}

impl Partial {
    /// `stats` of runner `runner`, whose plan is `plan`, as a partial result.
    pub fn from_stats(
        stats: &Stats,
        plan: &Plan,
        runner: u32,
        elapsed_seconds: f64,
    ) -> Result<Partial, PartialError> {
        let index = TagIndex::new(plan);
        let mut keys: Vec<&SeriesKey> = stats.series.keys().collect();
        keys.sort();
        let mut series = Vec::with_capacity(keys.len());
        for key in keys {
            let s = &stats.series[key];
            let scenario = index.scenario_name(key.scenario).to_owned();
            let request = index.request_name(key.scenario, key.request).to_owned();
            let label = format!("{scenario}/{request}/{}/{}", key.status, key.phase);
            series.push(PartialSeries {
                duration: encode(&s.duration, &label)?,
                waiting: encode(&s.waiting, &label)?,
                service: encode(&s.service, &label)?,
                schedule_lag: encode(&s.schedule_lag, &label)?,
                stream: s.stream.as_ref().map(|h| encode(h, &label)).transpose()?,
                scenario,
                request,
                status: key.status,
                phase: key.phase,
                requests: s.requests,
                failed: s.failed,
                data_sent: s.data_sent,
                data_received: s.data_received,
            });
        }
        let mut skeys: Vec<&ScenarioKey> = stats.scenarios.keys().collect();
        skeys.sort();
        let scenarios = skeys
            .into_iter()
            .map(|k| {
                let c = stats.scenarios[k];
                PartialScenario {
                    scenario: index.scenario_name(k.scenario).to_owned(),
                    phase: k.phase,
                    iterations: c.iterations,
                    dropped: c.dropped,
                    interrupted: c.interrupted,
                }
            })
            .collect();
        Ok(Partial {
            version: PARTIAL_VERSION,
            runner,
            elapsed_seconds,
            series,
            scenarios,
        })
    }

    /// Reads the JSON a runner wrote.
    pub fn from_json(text: &str, runner: u32) -> Result<Partial, PartialError> {
        let p: Partial = serde_json::from_str(text).map_err(|e| PartialError::Format {
            runner,
            message: e.to_string(),
        })?;
        if p.version != PARTIAL_VERSION {
            return Err(PartialError::Format {
                runner,
                message: format!("version {} is not {PARTIAL_VERSION}", p.version),
            });
        }
        Ok(p)
    }

    /// The JSON a runner writes.
    pub fn to_json(&self) -> String {
        // Plain data (strings, integers, finite floats): serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Adds this partial result into `into`, whose indices are those of the whole run's `plan`.
    pub fn merge_into(&self, plan: &Plan, into: &mut Stats) -> Result<(), PartialError> {
        let scenario_index = |name: &str| {
            plan.scenarios
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| PartialError::UnknownName {
                    runner: self.runner,
                    what: "scenario",
                    name: name.to_owned(),
                })
        };
        for s in &self.series {
            let si = scenario_index(&s.scenario)?;
            let ri = plan.scenarios[si]
                .requests
                .iter()
                .position(|r| r.name == s.request)
                .ok_or_else(|| PartialError::UnknownName {
                    runner: self.runner,
                    what: "request",
                    name: s.request.clone(),
                })?;
            let label = format!("{}/{}/{}/{}", s.scenario, s.request, s.status, s.phase);
            let part = SeriesStats {
                requests: s.requests,
                failed: s.failed,
                data_sent: s.data_sent,
                data_received: s.data_received,
                duration: decode(&s.duration, self.runner, &label, "duration")?,
                waiting: decode(&s.waiting, self.runner, &label, "waiting")?,
                service: decode(&s.service, self.runner, &label, "service")?,
                schedule_lag: decode(&s.schedule_lag, self.runner, &label, "scheduleLag")?,
                stream: s
                    .stream
                    .as_deref()
                    .map(|t| decode(t, self.runner, &label, "stream"))
                    .transpose()?,
            };
            let key = SeriesKey {
                scenario: si as u16,
                request: ri as u16,
                status: s.status,
                phase: s.phase,
            };
            into.series.entry(key).or_default().merge(&part);
        }
        for c in &self.scenarios {
            let key = ScenarioKey {
                scenario: scenario_index(&c.scenario)? as u16,
                phase: c.phase,
            };
            let e: &mut ScenarioCounters = into.scenarios.entry(key).or_default();
            e.iterations += c.iterations;
            e.dropped += c.dropped;
            e.interrupted += c.interrupted;
        }
        Ok(())
    }
}

/// Every runner's partial result merged into one [`Stats`] over the whole run's `plan`,
/// and the longest runner's elapsed seconds.
pub fn merge_partials(plan: &Plan, partials: &[Partial]) -> Result<(Stats, f64), PartialError> {
    let mut stats = Stats::default();
    let mut elapsed: f64 = 0.0;
    for p in partials {
        p.merge_into(plan, &mut stats)?;
        elapsed = elapsed.max(p.elapsed_seconds);
    }
    Ok((stats, elapsed))
}

/// The merged results judged: per-threshold verdicts (in the order written) and the run's
/// verdict. Windowed thresholds need per-second data the partials do not carry yet; they
/// are `Unknown` (failing closed) with that reason.
pub fn judge_merged(plan: &Plan, stats: &Stats, elapsed: f64) -> (Vec<ThresholdVerdict>, Verdict) {
    let index = TagIndex::new(plan);
    let verdicts: Vec<ThresholdVerdict> = plan
        .thresholds
        .iter()
        .map(|th| {
            let j = match &th.scope {
                Scope::Run => judge(th, stats, &index, None, elapsed),
                Scope::Phase(name) => judge(th, stats, &index, Some(name), elapsed),
                Scope::Window(_) => crate::evaluate::Judgement {
                    observed: None,
                    verdict: ModelVerdict::Unknown,
                    reason: Some(
                        "windowed thresholds are not judged across runners yet (partials carry run totals only)".into(),
                    ),
                },
            };
            ThresholdVerdict {
                metric: th.key.clone(),
                condition: th.expression.clone(),
                verdict: match j.verdict {
                    ModelVerdict::Pass => Verdict::Pass,
                    ModelVerdict::Fail => Verdict::Fail,
                    ModelVerdict::Unknown => Verdict::Unknown,
                },
                observed: j.observed.map(|v| format!("{}", (v * 1000.0).round() / 1000.0)),
                reason: j.reason,
            }
        })
        .collect();
    let verdict = if verdicts.iter().any(|v| v.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if verdicts.iter().any(|v| v.verdict == Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Pass
    };
    (verdicts, verdict)
}

/// p99 of `http_req_duration` over every series, e.g. `612.3ms`; `None` without samples.
pub fn p99(stats: &Stats) -> Option<String> {
    let mut h = crate::stats::new_hist();
    for s in stats.series.values() {
        crate::stats::merge_hist(&mut h, &s.duration);
    }
    (!h.is_empty()).then(|| format!("{}ms", crate::evaluate::ms(h.value_at_quantile(0.99))))
}

/// Merged counters for the status: requests, failures, dropped and interrupted iterations.
pub fn counters(stats: &Stats) -> BTreeMap<String, u64> {
    let mut c = BTreeMap::new();
    c.insert(
        "http_reqs".into(),
        stats.series.values().map(|s| s.requests).sum(),
    );
    c.insert(
        "http_req_failed".into(),
        stats.series.values().map(|s| s.failed).sum(),
    );
    c.insert(
        "iterations".into(),
        stats.scenarios.values().map(|s| s.iterations).sum(),
    );
    c.insert(
        "dropped_iterations".into(),
        stats.scenarios.values().map(|s| s.dropped).sum(),
    );
    c.insert(
        "interrupted_iterations".into(),
        stats.scenarios.values().map(|s| s.interrupted).sum(),
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Overrides;
    use crate::stats::{merge_hist, new_hist, record_duration};
    use proptest::prelude::*;
    use std::path::Path;
    use std::time::Duration;

    fn plan() -> Plan {
        let spec: ricochet_crds::LoadTestSpec = serde_saphyr::from_str(
            "scenarios:\n- {name: api, executor: constant-arrival-rate, rate: 100, duration: 10s, requests: [{name: get, path: /a}, {name: post, method: POST, path: /b}]}\n- {name: chat, executor: constant-arrival-rate, rate: 10, duration: 10s, requests: [{name: stream, method: POST, path: /c, stream: true}]}\nthresholds:\n  http_req_duration{scenario:api}: [\"p(99)<800ms\"]\n  http_req_failed: [\"rate<0.01\"]\n",
        )
        .unwrap();
        Plan::from_spec("t", &spec, Path::new("."), &Overrides::default()).unwrap()
    }

    fn stats_of(samples: &[(u16, u64)]) -> Stats {
        let mut stats = Stats::default();
        for &(request, us) in samples {
            let key = SeriesKey {
                scenario: 0,
                request,
                status: 200,
                phase: 0,
            };
            let s = stats.series.entry(key).or_default();
            s.requests += 1;
            record_duration(&mut s.duration, Duration::from_micros(us));
            stats
                .scenarios
                .entry(ScenarioKey {
                    scenario: 0,
                    phase: 0,
                })
                .or_default()
                .iterations += 1;
        }
        stats
    }

    fn all_durations(stats: &Stats) -> Hist {
        let mut h = new_hist();
        for s in stats.series.values() {
            merge_hist(&mut h, &s.duration);
        }
        h
    }

    proptest! {
        // Merge exactness (issue 6): one recorded latency set split across N runners'
        // partial histograms, serialized and merged back, has the same p50/p99/max as
        // one histogram over all samples.
        #[test]
        fn merged_partials_have_the_percentiles_of_one_histogram_over_all_samples(
            samples in proptest::collection::vec((0u16..2, 1u64..60_000_000), 1..400),
            n in 1usize..9,
            assign in proptest::collection::vec(0usize..64, 400),
        ) {
            let plan = plan();
            let single = stats_of(&samples);
            let mut parts = vec![Vec::new(); n];
            for (i, s) in samples.iter().enumerate() {
                parts[assign[i] % n].push(*s);
            }
            let partials: Vec<Partial> = parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let json = Partial::from_stats(&stats_of(p), &plan, i as u32, 10.0).unwrap().to_json();
                    Partial::from_json(&json, i as u32).unwrap()
                })
                .collect();
            let (merged, _) = merge_partials(&plan, &partials).unwrap();
            let (a, b) = (all_durations(&merged), all_durations(&single));
            prop_assert_eq!(a.len(), b.len());
            for q in [0.5, 0.99, 1.0] {
                prop_assert_eq!(a.value_at_quantile(q), b.value_at_quantile(q));
            }
            prop_assert_eq!(a.max(), b.max());
            prop_assert_eq!(counters(&merged), counters(&single));
        }
    }

    #[test]
    fn merged_results_are_judged_with_the_run_thresholds() {
        let plan = plan();
        let fast = stats_of(&[(0, 1_000); 50]);
        let slow = stats_of(&[(1, 900_000); 10]);
        let partials = [
            Partial::from_stats(&fast, &plan, 0, 10.0).unwrap(),
            Partial::from_stats(&slow, &plan, 1, 10.0).unwrap(),
        ];
        let (stats, elapsed) = merge_partials(&plan, &partials).unwrap();
        let (verdicts, verdict) = judge_merged(&plan, &stats, elapsed);
        // Runner 0 alone would pass p99<800ms; merged, 10 of 60 samples at 900ms fail it.
        assert_eq!(verdicts[0].verdict, Verdict::Fail, "{verdicts:?}");
        assert_eq!(verdicts[1].verdict, Verdict::Pass);
        assert_eq!(verdict, Verdict::Fail);
        assert_eq!(counters(&stats)["http_reqs"], 60);
        assert!(p99(&stats).unwrap().starts_with("900"), "{:?}", p99(&stats));
    }

    #[test]
    fn a_partial_naming_an_unknown_scenario_is_refused_with_the_runner() {
        let plan = plan();
        let mut p = Partial::from_stats(&stats_of(&[(0, 5)]), &plan, 3, 1.0).unwrap();
        p.series[0].scenario = "nope".into();
        let err = merge_partials(&plan, &[p]).unwrap_err().to_string();
        assert_eq!(err, "runner 3: scenario `nope` is not in the run's plan");
        let err = Partial::from_json("{}", 2).unwrap_err().to_string();
        assert!(
            err.starts_with("runner 2: the partial result is not valid JSON"),
            "{err}"
        );
    }
}
