//! The one judge: [`Evidence::judge_threshold`] decides what a threshold is judged on (the
//! whole run, a phase, its windows, or the telemetry tallies); the live abort checks, the
//! end of a run and the operator's merge of every runner all go through it. Windowed
//! thresholds keep a [`WindowTally`] of their windows' verdicts.

use std::collections::BTreeMap;
use std::time::Duration;

use ricochet_reports::model::Verdict;
use ricochet_verify::verification::Results;

use crate::evaluate::{Judgement, TagIndex, judge, not_measured, worse};
use crate::platform::Observed;
use crate::stats::Stats;
use crate::telemetry::TelemetryJudge as _;
use crate::thresholds::{Scope, Threshold};

/// Everything a plan's thresholds are judged on.
#[derive(Clone, Copy, Debug)]
pub struct Evidence<'a> {
    /// The plan's thresholds, in the order written.
    pub thresholds: &'a [Threshold],
    /// Every sample so far.
    pub stats: &'a Stats,
    /// The plan's tag index.
    pub index: &'a TagIndex,
    /// Seconds the samples cover (counter rates).
    pub seconds: f64,
    /// The windowed thresholds' verdicts.
    pub windows: Windows<'a>,
    /// The telemetry thresholds' tallies.
    pub telemetry: TelemetryEvidence<'a>,
    /// What the query checks and alert drills saw.
    pub platform: PlatformEvidence<'a>,
}

/// What `query` and `alert_*` thresholds are judged on.
#[derive(Clone, Copy, Debug)]
pub enum PlatformEvidence<'a> {
    /// The platform checks' observations, live or final.
    Observed(&'a Observed),
    /// No observations, for this reason.
    Unavailable(&'a str),
}

/// What windowed thresholds are judged on.
#[derive(Clone, Copy, Debug)]
pub enum Windows<'a> {
    /// The closed windows' tallies, by threshold index.
    Tallied(&'a BTreeMap<usize, WindowTally>),
    /// Windows cannot be judged, for this reason.
    Unavailable(&'a str),
}

/// What telemetry thresholds are judged on.
#[derive(Clone, Copy, Debug)]
pub enum TelemetryEvidence<'a> {
    /// The verifiers' tallies, live or settled.
    Verified(&'a Results),
    /// The run did not verify telemetry (or has not reported yet).
    NotVerified,
    /// No tallies, for this reason.
    Unavailable(&'a str),
}

impl Evidence<'_> {
    /// Judges threshold `i` on what its metric and scope select: the telemetry tallies, the
    /// whole run, one phase, or its windows (failing when any window failed).
    pub fn judge_threshold(&self, i: usize) -> Judgement {
        let Some(th) = self.thresholds.get(i) else {
            return Judgement::unknown(format!("no threshold {i} in this plan"));
        };
        if th.metric.is_platform() {
            return match self.platform {
                PlatformEvidence::Observed(o) => o.judge(th, self.seconds),
                PlatformEvidence::Unavailable(reason) => Judgement::unknown(reason.to_owned()),
            };
        }
        if th.metric.is_telemetry() {
            return match self.telemetry {
                TelemetryEvidence::Verified(results) => results.judge(th),
                TelemetryEvidence::NotVerified => not_measured(th),
                TelemetryEvidence::Unavailable(reason) => Judgement::unknown(reason.to_owned()),
            };
        }
        match (&th.scope, self.windows) {
            (Scope::Run, _) => judge(th, self.stats, self.index, None, self.seconds),
            (Scope::Phase(name), _) => judge(th, self.stats, self.index, Some(name), self.seconds),
            (Scope::Window(_), Windows::Tallied(tallies)) => match tallies.get(&i) {
                Some(tally) => tally.judgement(),
                None => Judgement::unknown("window state missing".into()),
            },
            (Scope::Window(_), Windows::Unavailable(reason)) => {
                Judgement::unknown(reason.to_owned())
            }
        }
    }
}

/// The verdicts of a windowed threshold's windows of `len` seconds so far: how many were
/// judged, the worst and the first failing one.
#[derive(Debug, Clone)]
pub struct WindowTally {
    len: u32,
    judged: u32,
    worst: Option<(f64, u32)>,
    first_failure: Option<(f64, u32)>,
    last_reason: Option<String>,
}

impl WindowTally {
    /// No window judged yet, of `len` seconds.
    pub fn new(len: u32) -> Self {
        Self {
            len,
            judged: 0,
            worst: None,
            first_failure: None,
            last_reason: None,
        }
    }

    /// An empty tally for every windowed threshold of `thresholds`, by index.
    pub fn for_thresholds(thresholds: &[Threshold]) -> BTreeMap<usize, WindowTally> {
        thresholds
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t.scope {
                // Query checks judge their own windows, on their own series.
                Scope::Window(d) if !t.metric.is_platform() => {
                    Some((i, WindowTally::new(window_secs(d))))
                }
                _ => None,
            })
            .collect()
    }

    /// The window length, seconds.
    pub fn window_secs(&self) -> u32 {
        self.len
    }

    /// Adds window `window`'s judgement of `th`.
    pub fn add(&mut self, th: &Threshold, window: u32, j: Judgement) {
        let Some(observed) = j.observed else {
            self.last_reason = j.reason;
            return;
        };
        self.judged += 1;
        if self
            .worst
            .is_none_or(|(v, _)| worse(th.comparison, observed, v))
        {
            self.worst = Some((observed, window));
        }
        if j.verdict == Verdict::Fail && self.first_failure.is_none() {
            self.first_failure = Some((observed, window));
        }
    }

    /// The threshold's verdict over its windows: failed when any window failed (naming
    /// the first and the worst), unknown when none had samples.
    pub fn judgement(&self) -> Judgement {
        let len = self.len;
        let span = |w: u32| {
            let from = w * len;
            format!("{from}s–{}s", from + len)
        };
        if let Some((v, w)) = self.first_failure {
            let (worst, ww) = self.worst.unwrap_or((v, w));
            return Judgement {
                observed: Some(worst),
                verdict: Verdict::Fail,
                reason: Some(format!(
                    "window {} ({}) failed first with {v:.3}; worst window {} ({}) observed {worst:.3}",
                    w + 1,
                    span(w),
                    ww + 1,
                    span(ww)
                )),
            };
        }
        match self.worst {
            Some((worst, ww)) => Judgement {
                observed: Some(worst),
                verdict: Verdict::Pass,
                reason: Some(format!(
                    "{} windows passed; worst window {} ({})",
                    self.judged,
                    ww + 1,
                    span(ww)
                )),
            },
            None => Judgement {
                observed: None,
                verdict: Verdict::Unknown,
                reason: Some(
                    self.last_reason
                        .clone()
                        .unwrap_or_else(|| "no window had samples".into()),
                ),
            },
        }
    }
}

/// A window length in whole seconds (at least 1).
pub fn window_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs_f64().round() as u64)
        .unwrap_or(u32::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use ricochet_verify::Signal;

    use super::*;
    use crate::metric::{Metric, RoundTrip};
    use crate::plan::{Executor, Plan};
    use crate::testing::{requests, stage, threshold};
    use crate::thresholds::{Aggregation, Comparison};

    fn ramping_plan() -> Plan {
        let mut sc = crate::testing::scenario("api", 10.0, "/api/x");
        sc.executor = Executor::RampingArrivalRate {
            start_rate: 0.0,
            stages: vec![
                stage(10.0, 1, Some("ramp-up")),
                stage(10.0, 1, Some("steady")),
            ],
        };
        crate::testing::plan_with(vec![sc])
    }

    #[test]
    fn the_one_judge_picks_the_samples_by_metric_and_scope() {
        let p = ramping_plan();
        let idx = TagIndex::new(&p);
        let mut st = requests(0, 1, 200, &[10, 10, 10]);
        st.merge(&requests(0, 2, 200, &[500, 500]));
        let p99 = |scope| Threshold {
            scope,
            ..threshold(
                Metric::HttpReqDuration,
                &[],
                Aggregation::Percentile(99.0),
                Comparison::Lt,
                100.0,
            )
        };
        let missing = threshold(
            Metric::Telemetry(RoundTrip::Missing(Signal::Traces)),
            &[],
            Aggregation::Rate,
            Comparison::Lt,
            0.01,
        );
        let thresholds = vec![
            p99(Scope::Run),
            p99(Scope::Phase("ramp-up".into())),
            p99(Scope::Phase("steady".into())),
            p99(Scope::Window(Duration::from_secs(1))),
            missing,
        ];
        let mut tally = WindowTally::new(1);
        tally.add(
            &thresholds[3],
            0,
            judge(&thresholds[3], &st, &idx, None, 1.0),
        );
        let tallies: BTreeMap<usize, WindowTally> = [(3, tally)].into();
        let no_tallies = BTreeMap::new();
        let evidence = Evidence {
            thresholds: &thresholds,
            stats: &st,
            index: &idx,
            seconds: 2.0,
            windows: Windows::Tallied(&tallies),
            telemetry: TelemetryEvidence::NotVerified,
            platform: PlatformEvidence::Unavailable("no platform checks"),
        };
        let verdict = |ev: &Evidence<'_>, i| ev.judge_threshold(i).verdict;
        assert_eq!(verdict(&evidence, 0), Verdict::Fail);
        assert_eq!(
            verdict(&evidence, 1),
            Verdict::Pass,
            "only the ramp-up samples"
        );
        assert_eq!(
            verdict(&evidence, 2),
            Verdict::Fail,
            "only the steady samples"
        );
        let window = evidence.judge_threshold(3);
        assert_eq!(window.verdict, Verdict::Fail);
        assert_eq!(
            window.reason.as_deref(),
            Some(
                "window 1 (0s–1s) failed first with 500.223; worst window 1 (0s–1s) observed 500.223"
            )
        );
        assert_eq!(
            evidence.judge_threshold(4).reason.as_deref(),
            Some(
                "metric `telemetry_trace_missing` is not measured by this run (telemetry verification did not run or the name is unknown)"
            )
        );
        assert_eq!(verdict(&evidence, 5), Verdict::Unknown);

        let results = Results {
            signals: Vec::new(),
            classes: Vec::new(),
            sample: ricochet_verify::plan::SamplePolicy::Rate(1.0),
            settle_timeout: Duration::from_secs(1),
            sampled: 0,
            dropped: 0,
            probes: 0,
            probe_schedule: Vec::new(),
        };
        let cases = [
            (
                Windows::Tallied(&no_tallies),
                TelemetryEvidence::Verified(&results),
                "window state missing",
                "no trace backend was verified in this run, so `telemetry_trace_missing` was not measured",
            ),
            (
                Windows::Unavailable("windows were omitted"),
                TelemetryEvidence::Unavailable("no runner reported"),
                "windows were omitted",
                "no runner reported",
            ),
        ];
        for (windows, telemetry, window_reason, telemetry_reason) in cases {
            let ev = Evidence {
                windows,
                telemetry,
                ..evidence
            };
            let (w, t) = (ev.judge_threshold(3), ev.judge_threshold(4));
            assert_eq!(
                (w.verdict, w.reason.as_deref()),
                (Verdict::Unknown, Some(window_reason))
            );
            assert_eq!(
                (t.verdict, t.reason.as_deref()),
                (Verdict::Unknown, Some(telemetry_reason))
            );
            assert_eq!(verdict(&ev, 0), Verdict::Fail);
        }
    }
}
