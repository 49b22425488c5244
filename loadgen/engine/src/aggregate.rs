//! The collector's state: run totals, the time series (overall and per scenario) and
//! the tumbling windows of windowed thresholds.
//!
//! Buckets drained from the [`crate::stats::Recorder`] are merged into the totals at
//! once (so live threshold checks see everything) and into the open second they belong
//! to; a second is finalized two seconds after it ends and dropped. Finalized seconds are
//! folded into the open point of the time series, which becomes a [`TimePoint`] once it
//! holds [`point_width`] seconds: one second for plans of up to [`MAX_POINTS`] seconds,
//! more for longer ones, so a series never holds more than [`MAX_POINTS`] points however
//! long the run. A point's counts are sums over its seconds and its percentiles come from
//! the merged histogram of its seconds (exact, never averaged).
//!
//! Windowed thresholds keep only the series they select, per window, and judge and
//! discard each window as soon as it is complete; runners also keep the closed windows
//! for the operator, up to what a partial result could ever carry
//! ([`KEPT_WINDOWS_BUDGET_BYTES`]).

use std::collections::BTreeMap;

use ricochet_reports::model::TimePoint;

use crate::evaluate::{TagIndex, judge, ms};
use crate::judge::{
    Evidence, PlatformEvidence, TelemetryEvidence, WindowTally, Windows, window_secs,
};
use crate::plan::Plan;
use crate::schedule::RateProfile;
use crate::stats::{Hist, Stats, merge_hist, new_hist};
use crate::thresholds::{Scope, Threshold};

/// Most points a time series holds (3 h of one-second points). A plan that may last longer
/// gets wider points ([`point_width`]); `summary.json` then holds at most this many points
/// per series, whatever the run's length.
pub const MAX_POINTS: u32 = 10_800;

/// The width, in whole seconds, of every point of the time series of a run of `plan`: the
/// fewest seconds that fit the plan's longest possible run (every scenario's end plus its
/// graceful stop, [`Plan::max_duration`]) into [`MAX_POINTS`] points, at least 1.
///
/// Derived from the plan alone, so a run's width is known before it starts and is the
/// same for every run of the plan.
pub fn point_width(plan: &Plan) -> u32 {
    let d = plan.max_duration();
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs.div_ceil(u64::from(MAX_POINTS)))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// The most bytes of closed windows a runner keeps for the operator: the size of the
/// largest partial result a runner writes (the operator's `MAX_PARTIAL_BYTES`; a
/// ConfigMap holds at most 1 MiB). Windows are kept until a lower bound of their encoded
/// size ([`ClosedWindow::min_encoded_bytes`]) passes it; later windows could never be
/// sent, so they are not kept: the runner finds its windows too large for its ConfigMap
/// and reports them omitted, and the operator judges the windowed thresholds unknown.
pub const KEPT_WINDOWS_BUDGET_BYTES: usize = 900 * 1024;

/// A lower bound of the bytes one closed window takes in a partial result, without its
/// series and scenario counters.
pub const WINDOW_MIN_BYTES: usize = 80;

/// A lower bound of the bytes one series of a closed window takes in a partial result
/// (its names, counters and five serialized histograms).
pub const WINDOW_SERIES_MIN_BYTES: usize = 384;

/// A lower bound of the bytes one scenario counter of a closed window takes in a partial
/// result.
pub const WINDOW_SCENARIO_MIN_BYTES: usize = 64;

/// The open window of one windowed threshold.
#[derive(Debug)]
struct WindowState {
    threshold: usize,
    len: u32,
    current: Option<(u32, Stats)>,
}

/// One scenario's part of the open point.
#[derive(Debug)]
struct PointAcc {
    requests: u64,
    errors: u64,
    dropped: u64,
    duration: Hist,
}

impl PointAcc {
    fn new() -> Self {
        Self {
            requests: 0,
            errors: 0,
            dropped: 0,
            duration: new_hist(),
        }
    }

    /// Empty again, keeping the histogram's allocation.
    fn reset(&mut self) {
        self.requests = 0;
        self.errors = 0;
        self.dropped = 0;
        self.duration.reset();
    }
}

/// The point being filled: `secs` finalized seconds from `start`, per scenario.
#[derive(Debug)]
struct OpenPoint {
    start: u32,
    secs: u32,
    scenarios: Vec<PointAcc>,
}

/// What the collector knows so far.
#[derive(Debug)]
pub struct Aggregator {
    index: TagIndex,
    thresholds: Vec<Threshold>,
    profiles: Vec<(f64, Option<RateProfile>)>,
    /// Everything recorded so far.
    pub totals: Stats,
    open: BTreeMap<u32, Stats>,
    next_second: u32,
    width: u32,
    point: OpenPoint,
    /// One point per [`Aggregator::point_width`] finalized seconds, whole run; at most
    /// [`MAX_POINTS`].
    pub series: Vec<TimePoint>,
    /// The same points per scenario (plan order).
    pub scenario_series: Vec<Vec<TimePoint>>,
    windows: Vec<WindowState>,
    tallies: BTreeMap<usize, WindowTally>,
    /// Keep each closed window's selected stats (runners: the operator judges windows on
    /// the merge of every runner's).
    keep_windows: bool,
    closed: Vec<ClosedWindow>,
    /// Lower bound of the encoded size of `closed`.
    kept_bytes: usize,
}

/// The stats one windowed threshold selected in one closed window.
#[derive(Debug, Clone)]
pub struct ClosedWindow {
    /// The threshold (index in the plan).
    pub threshold: usize,
    /// Window index (`second / window length`).
    pub index: u32,
    /// Its stats, filtered by the threshold's tags.
    pub stats: Stats,
}

impl ClosedWindow {
    /// A lower bound of the bytes this window takes in a runner's partial result.
    pub fn min_encoded_bytes(&self) -> usize {
        WINDOW_MIN_BYTES
            + self.stats.series.len() * WINDOW_SERIES_MIN_BYTES
            + self.stats.scenarios.len() * WINDOW_SCENARIO_MIN_BYTES
    }
}

impl Aggregator {
    /// An empty aggregator for `plan`.
    pub fn new(plan: &Plan) -> Self {
        let windows = plan
            .thresholds
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t.scope {
                Scope::Window(d) => Some(WindowState {
                    threshold: i,
                    len: window_secs(d),
                    current: None,
                }),
                _ => None,
            })
            .collect();
        let width = point_width(plan);
        Self {
            index: TagIndex::new(plan),
            thresholds: plan.thresholds.clone(),
            profiles: plan
                .scenarios
                .iter()
                .map(|s| (s.start_time.as_secs_f64(), RateProfile::of(&s.executor)))
                .collect(),
            totals: Stats::default(),
            open: BTreeMap::new(),
            next_second: 0,
            width,
            point: OpenPoint {
                start: 0,
                secs: 0,
                scenarios: plan.scenarios.iter().map(|_| PointAcc::new()).collect(),
            },
            series: Vec::new(),
            scenario_series: vec![Vec::new(); plan.scenarios.len()],
            windows,
            tallies: WindowTally::for_thresholds(&plan.thresholds),
            keep_windows: false,
            closed: Vec::new(),
            kept_bytes: 0,
        }
    }

    /// Seconds per point of the time series ([`point_width`] of the plan).
    pub fn point_width(&self) -> u32 {
        self.width
    }

    /// Keeps every closed window's stats ([`Aggregator::closed_windows`]).
    pub fn keep_window_stats(&mut self) {
        self.keep_windows = true;
    }

    /// The closed windows' stats, when kept: every closed window, or, once a lower bound
    /// of their encoded size passed [`KEPT_WINDOWS_BUDGET_BYTES`], the first ones (already
    /// too many for a partial result).
    pub fn closed_windows(&self) -> &[ClosedWindow] {
        &self.closed
    }

    /// The tag index.
    pub fn index(&self) -> &TagIndex {
        &self.index
    }

    /// Merges drained buckets and finalizes every second before `finalize_before`.
    pub fn absorb(&mut self, buckets: Vec<(u32, Stats)>, finalize_before: u32) {
        for (sec, stats) in buckets {
            self.totals.merge(&stats);
            // A straggler for an already finalized second goes to the oldest open one.
            let sec = sec.max(self.next_second);
            match self.open.get_mut(&sec) {
                Some(acc) => acc.merge(&stats),
                None => {
                    self.open.insert(sec, stats);
                }
            }
        }
        while self.next_second < finalize_before {
            let sec = self.next_second;
            let stats = self.open.remove(&sec).unwrap_or_default();
            self.finalize(sec, &stats);
            self.next_second += 1;
        }
    }

    /// Finalizes everything up to and including the second `last`, and closes windows.
    pub fn finish(&mut self, last: u32) {
        let until = self
            .open
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(last)
            .saturating_add(1);
        self.absorb(Vec::new(), until);
        self.emit_point();
        for w in 0..self.windows.len() {
            self.close_window(w);
        }
    }

    /// Planned arrivals per second of `scenario` over `secs` seconds from `sec`.
    fn planned(&self, scenario: usize, sec: u32, secs: u32) -> Option<f64> {
        let (start, profile) = self.profiles.get(scenario)?;
        let p = profile.as_ref()?;
        let from = f64::from(sec) - start;
        let secs = f64::from(secs.max(1));
        Some(p.planned_between(from, from + secs) / secs)
    }

    fn finalize(&mut self, sec: u32, stats: &Stats) {
        if self.point.secs == 0 {
            self.point.start = sec;
        }
        for (i, acc) in self.point.scenarios.iter_mut().enumerate() {
            let idx = u16::try_from(i).unwrap_or(u16::MAX);
            for (_, s) in stats.series.iter().filter(|(k, _)| k.scenario == idx) {
                acc.requests += s.requests;
                acc.errors += s.failed;
                merge_hist(&mut acc.duration, &s.duration);
            }
            acc.dropped += stats
                .scenarios
                .iter()
                .filter(|(k, _)| k.scenario == idx)
                .map(|(_, c)| c.dropped)
                .sum::<u64>();
        }
        self.point.secs += 1;
        // The last point a series may hold takes every later second (a run that outlasts
        // its plan, stragglers); `finish` closes it.
        if self.point.secs >= self.width && self.series.len() + 1 < MAX_POINTS as usize {
            self.emit_point();
        }
        for w in 0..self.windows.len() {
            self.window_add(w, sec, stats);
        }
    }

    /// Turns the open point, if it holds any second, into a point of every series.
    fn emit_point(&mut self) {
        let (start, secs) = (self.point.start, self.point.secs);
        if secs == 0 {
            return;
        }
        let t = f64::from(start);
        let mut all = new_hist();
        let mut overall = TimePoint::empty(t, secs);
        for i in 0..self.point.scenarios.len() {
            let target_rps = self.planned(i, start, secs);
            let acc = &mut self.point.scenarios[i];
            let mut p = TimePoint {
                target_rps,
                requests: acc.requests,
                errors: acc.errors,
                dropped: acc.dropped,
                ..TimePoint::empty(t, secs)
            };
            set_percentiles(&mut p, &acc.duration);
            merge_hist(&mut all, &acc.duration);
            overall.requests += p.requests;
            overall.errors += p.errors;
            overall.dropped += p.dropped;
            if let Some(t) = p.target_rps {
                overall.target_rps = Some(overall.target_rps.unwrap_or(0.0) + t);
            }
            if let Some(series) = self.scenario_series.get_mut(i) {
                series.push(p);
            }
            acc.reset();
        }
        set_percentiles(&mut overall, &all);
        self.series.push(overall);
        self.point.secs = 0;
    }

    fn window_add(&mut self, w: usize, sec: u32, stats: &Stats) {
        let window = sec / self.windows[w].len.max(1);
        if self.windows[w]
            .current
            .as_ref()
            .is_some_and(|(i, _)| *i != window)
        {
            self.close_window(w);
        }
        let th = &self.thresholds[self.windows[w].threshold];
        let mut filtered = Stats::default();
        for (k, s) in &stats.series {
            if self.index.series_matches(k, &th.filter, None) {
                filtered.series.insert(*k, s.clone());
            }
        }
        for (k, c) in &stats.scenarios {
            if self.index.scenario_matches(k, &th.filter, None) {
                filtered.scenarios.insert(*k, *c);
            }
        }
        let state = &mut self.windows[w];
        match &mut state.current {
            Some((_, acc)) => acc.merge(&filtered),
            None => state.current = Some((window, filtered)),
        }
    }

    fn close_window(&mut self, w: usize) {
        let Some((window, acc)) = self.windows[w].current.take() else {
            return;
        };
        let threshold = self.windows[w].threshold;
        let th = &self.thresholds[threshold];
        let len = self.windows[w].len;
        let j = judge(th, &acc, &self.index, None, f64::from(len));
        if let Some(tally) = self.tallies.get_mut(&threshold) {
            tally.add(th, window, j);
        }
        if self.keep_windows && self.kept_bytes <= KEPT_WINDOWS_BUDGET_BYTES {
            let closed = ClosedWindow {
                threshold,
                index: window,
                stats: acc,
            };
            self.kept_bytes += closed.min_encoded_bytes();
            self.closed.push(closed);
        }
    }

    /// What the thresholds are judged on so far (`elapsed` seconds of run time), with the
    /// telemetry tallies of `telemetry`.
    pub fn evidence<'a>(&'a self, elapsed: f64, telemetry: TelemetryEvidence<'a>) -> Evidence<'a> {
        Evidence {
            thresholds: &self.thresholds,
            stats: &self.totals,
            index: &self.index,
            seconds: elapsed,
            windows: Windows::Tallied(&self.tallies),
            telemetry,
            platform: PlatformEvidence::Unavailable(
                "the plan has no `queries` or `alerts`, so no platform check ran",
            ),
        }
    }

    /// p99 of `http_req_duration` over the whole run so far, ms.
    pub fn p99_so_far(&self) -> Option<f64> {
        let mut h = new_hist();
        for s in self.totals.series.values() {
            merge_hist(&mut h, &s.duration);
        }
        (!h.is_empty()).then(|| ms(h.value_at_quantile(0.99)))
    }

    /// `(requests, failed, dropped)` so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let reqs = self.totals.series.values().map(|s| s.requests).sum();
        let failed = self.totals.series.values().map(|s| s.failed).sum();
        let dropped = self.totals.scenarios.values().map(|c| c.dropped).sum();
        (reqs, failed, dropped)
    }
}

fn set_percentiles(p: &mut TimePoint, h: &Hist) {
    if !h.is_empty() {
        p.p50_ms = Some(ms(h.value_at_quantile(0.5)));
        p.p95_ms = Some(ms(h.value_at_quantile(0.95)));
        p.p99_ms = Some(ms(h.value_at_quantile(0.99)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ricochet_reports::model::Verdict;

    use super::*;
    use crate::evaluate::Judgement;
    use crate::metric::Metric;
    use crate::plan::Executor;
    use crate::stats::ScenarioKey;
    use crate::testing::{plan_with, requests, scenario, threshold};
    use crate::thresholds::{Aggregation, Comparison};

    /// Two scenarios, `api` (10/s) and `chat` (5/s), for one second each.
    fn plan() -> Plan {
        plan_with(vec![
            scenario("api", 10.0, "/api"),
            scenario("chat", 5.0, "/chat"),
        ])
    }

    /// `p(99)<100ms` on `http_req_duration{scenario:api}` in windows of `secs`.
    fn windowed(secs: u64) -> Threshold {
        let mut th = threshold(
            Metric::HttpReqDuration,
            &[("scenario", "api")],
            Aggregation::Percentile(99.0),
            Comparison::Lt,
            100.0,
        );
        th.scope = Scope::Window(Duration::from_secs(secs));
        th
    }

    fn judge_first(agg: &Aggregator, elapsed: f64) -> Judgement {
        agg.evidence(elapsed, TelemetryEvidence::NotVerified)
            .judge_threshold(0)
    }

    #[test]
    fn absorbed_seconds_become_points_once_finalized() {
        let mut agg = Aggregator::new(&plan());
        let mut first = requests(0, 0, 200, &[10, 20]);
        first.merge(&requests(0, 0, 503, &[30]));
        first.merge(&requests(1, 0, 200, &[40]));
        first.record_dropped(ScenarioKey {
            scenario: 1,
            phase: 0,
        });
        agg.absorb(vec![(0, first), (1, requests(0, 0, 200, &[50]))], 1);
        assert_eq!(agg.series.len(), 1, "only second 0 is finalized");
        assert_eq!(agg.counts(), (5, 1, 1), "totals hold every second");
        let p = &agg.series[0];
        assert_eq!(p.t, 0.0);
        assert_eq!((p.requests, p.errors, p.dropped), (4, 1, 1));
        assert_eq!(p.target_rps, Some(15.0));
        assert!(p.p50_ms.is_some_and(|v| (20.0..21.0).contains(&v)), "{p:?}");
        assert!(p.p99_ms.is_some_and(|v| (40.0..41.0).contains(&v)), "{p:?}");
        let (api, chat) = (&agg.scenario_series[0][0], &agg.scenario_series[1][0]);
        assert_eq!((api.requests, api.errors, api.dropped), (3, 1, 0));
        assert_eq!((chat.requests, chat.errors, chat.dropped), (1, 0, 1));
        assert_eq!((api.target_rps, chat.target_rps), (Some(10.0), Some(5.0)));

        agg.absorb(Vec::new(), 3);
        let points: Vec<_> = agg.series.iter().map(|p| (p.t, p.requests)).collect();
        assert_eq!(points, vec![(0.0, 4), (1.0, 1), (2.0, 0)]);
        assert_eq!(
            agg.series[2].p99_ms, None,
            "an empty second has no percentiles"
        );
        assert_eq!(agg.scenario_series[1].len(), 3);
    }

    #[test]
    fn a_straggler_for_a_finalized_second_counts_in_the_oldest_open_one() {
        let mut agg = Aggregator::new(&plan());
        agg.absorb(vec![(0, requests(0, 0, 200, &[10]))], 1);
        agg.absorb(vec![(0, requests(0, 0, 200, &[10, 10]))], 2);
        let points: Vec<_> = agg.series.iter().map(|p| (p.t, p.requests)).collect();
        assert_eq!(points, vec![(0.0, 1), (1.0, 2)]);
        assert_eq!(agg.counts().0, 3);
    }

    #[test]
    fn finish_finalizes_up_to_the_last_second_and_every_open_one() {
        let mut agg = Aggregator::new(&plan());
        agg.absorb(vec![(4, requests(0, 0, 200, &[10]))], 0);
        assert!(agg.series.is_empty());
        agg.finish(2);
        assert_eq!(agg.series.len(), 5, "seconds 0 to 4");
        assert_eq!(agg.series[4].requests, 1);

        let mut agg = Aggregator::new(&plan());
        agg.finish(2);
        assert_eq!(agg.series.len(), 3, "seconds 0 to 2");
    }

    #[test]
    fn a_window_threshold_fails_once_a_complete_window_failed() {
        let mut p = plan();
        p.thresholds = vec![windowed(2)];
        let mut agg = Aggregator::new(&p);
        let fast = || requests(0, 0, 200, &[10, 20]);
        let slow = || requests(0, 0, 200, &[500]);
        // The other scenario's slow samples are not selected.
        let chat = || requests(1, 0, 200, &[900]);
        agg.absorb(vec![(0, fast()), (1, fast()), (2, slow()), (2, chat())], 3);
        let live = judge_first(&agg, 3.0);
        assert_eq!(
            live.verdict,
            Verdict::Pass,
            "window 2 is still open: {live:?}"
        );
        assert_eq!(
            live.reason.as_deref(),
            Some("1 windows passed; worst window 1 (0s–2s)")
        );

        agg.absorb(vec![(3, fast()), (4, fast())], 5);
        let failed = judge_first(&agg, 5.0);
        assert_eq!(failed.verdict, Verdict::Fail, "{failed:?}");
        assert!(failed.observed.is_some_and(|v| (500.0..501.0).contains(&v)));
        assert_eq!(
            failed.reason.as_deref(),
            Some(
                "window 2 (2s–4s) failed first with 500.223; worst window 2 (2s–4s) observed 500.223"
            )
        );
        // Over the whole run, one slow request among many fast ones passes: only a window
        // sees it.
        let mut whole = windowed(2);
        whole.scope = Scope::Run;
        p.thresholds = vec![whole];
        let mut agg = Aggregator::new(&p);
        let mut many = requests(0, 0, 200, &[10; 200]);
        many.merge(&slow());
        agg.absorb(vec![(0, many)], 1);
        assert_eq!(judge_first(&agg, 1.0).verdict, Verdict::Pass);
    }

    #[test]
    fn a_window_without_samples_is_unknown_with_the_reason() {
        let mut p = plan();
        p.thresholds = vec![windowed(1)];
        let mut agg = Aggregator::new(&p);
        agg.absorb(vec![(0, requests(1, 0, 200, &[10]))], 0);
        agg.finish(1);
        let j = judge_first(&agg, 2.0);
        assert_eq!(j.verdict, Verdict::Unknown);
        assert_eq!(
            j.reason.as_deref(),
            Some("no samples of `http_req_duration{scenario:api}` were recorded")
        );

        let agg = Aggregator::new(&p);
        let j = judge_first(&agg, 0.0);
        assert_eq!(
            (j.verdict, j.reason.as_deref()),
            (Verdict::Unknown, Some("no window had samples"))
        );
    }

    #[test]
    fn kept_windows_hold_only_the_samples_their_threshold_selects() {
        let mut p = plan();
        p.thresholds = vec![
            threshold(
                Metric::HttpReqs,
                &[],
                Aggregation::Count,
                Comparison::Gt,
                0.0,
            ),
            windowed(1),
        ];
        let mut agg = Aggregator::new(&p);
        agg.keep_window_stats();
        let mut second = requests(0, 0, 200, &[10, 10]);
        second.merge(&requests(1, 0, 200, &[10]));
        agg.absorb(vec![(0, second.clone()), (1, second)], 0);
        agg.finish(1);
        let closed: Vec<_> = agg
            .closed_windows()
            .iter()
            .map(|c| {
                let requests: u64 = c.stats.series.values().map(|s| s.requests).sum();
                let scenarios: Vec<u16> = c.stats.series.keys().map(|k| k.scenario).collect();
                (c.threshold, c.index, requests, scenarios)
            })
            .collect();
        assert_eq!(closed, vec![(1, 0, 2, vec![0]), (1, 1, 2, vec![0])]);
    }

    /// `api` at 2/s for `days` days, without a graceful stop.
    fn long_plan(days: u64) -> Plan {
        let mut api = scenario("api", 2.0, "/api");
        api.executor = Executor::ConstantArrivalRate {
            rate: 2.0,
            duration: Duration::from_secs(days * 86_400),
        };
        api.graceful_stop = Duration::ZERO;
        plan_with(vec![api])
    }

    #[test]
    fn a_plan_of_up_to_max_points_seconds_keeps_one_second_points() {
        assert_eq!(Aggregator::new(&plan()).point_width(), 1);
        let mut p = plan();
        p.scenarios[0].executor = Executor::ConstantArrivalRate {
            rate: 1.0,
            duration: Duration::from_secs(u64::from(MAX_POINTS)),
        };
        p.scenarios[0].graceful_stop = Duration::ZERO;
        assert_eq!(point_width(&p), 1);
        // One second more, or a graceful stop, and the points double.
        p.scenarios[0].graceful_stop = Duration::from_millis(1);
        assert_eq!(point_width(&p), 2);
    }

    // See: issue #15 item 3 (memory bound under any accepted plan).
    #[test]
    fn a_31_day_plan_sums_each_points_seconds_and_takes_percentiles_of_their_merge() {
        let mut agg = Aggregator::new(&long_plan(31));
        let width = agg.point_width();
        assert_eq!(width, (31 * 86_400_u32).div_ceil(MAX_POINTS));
        assert_eq!(width, 248);
        // One 10 ms request a second; in the first point, second 5 has three at 900 ms and
        // second 6 one at 5 s (a dropped iteration too): the point's p99 is 900 ms, neither
        // the mean nor the worst of its seconds' p99s.
        let second = |sec: u32| match sec {
            5 => requests(0, 0, 503, &[900, 900, 900]),
            6 => {
                let mut s = requests(0, 0, 200, &[5_000]);
                s.record_dropped(ScenarioKey {
                    scenario: 0,
                    phase: 0,
                });
                s
            }
            _ => requests(0, 0, 200, &[10]),
        };
        let last = 2 * width + 10;
        let mut merged = new_hist();
        for sec in 0..=last {
            let s = second(sec);
            if sec < width {
                for series in s.series.values() {
                    merge_hist(&mut merged, &series.duration);
                }
            }
            agg.absorb(vec![(sec, s)], sec.saturating_sub(1));
        }
        agg.finish(last);
        let widths: Vec<_> = agg.series.iter().map(|p| (p.t, p.width_secs)).collect();
        assert_eq!(widths, vec![(0.0, 248), (248.0, 248), (496.0, 11)]);
        let first = &agg.series[0];
        assert_eq!(
            (first.requests, first.errors, first.dropped),
            (246 + 3 + 1, 3, 1)
        );
        assert_eq!(first.p99_ms, Some(ms(merged.value_at_quantile(0.99))));
        assert!(
            first.p99_ms.is_some_and(|v| (900.0..901.0).contains(&v)),
            "{first:?}"
        );
        assert_eq!(first.target_rps, Some(2.0), "a per-second rate");
        assert_eq!(first.rps(), 250.0 / 248.0);
        let tail = &agg.series[2];
        assert_eq!((tail.requests, tail.target_rps), (11, Some(2.0)));
        assert_eq!(agg.scenario_series[0], agg.series, "one scenario");
        let total: u64 = agg.series.iter().map(|p| p.requests).sum();
        assert_eq!(total, agg.counts().0);
    }

    #[test]
    fn a_long_run_never_holds_more_than_max_points_per_series() {
        let mut agg = Aggregator::new(&long_plan(31));
        // An hour past the plan's end (a run outlasting its plan): the last point takes it.
        let secs = 31 * 86_400 + 3_600;
        agg.absorb(vec![(secs - 1, requests(0, 0, 200, &[10]))], secs / 2);
        assert!(agg.series.len() <= MAX_POINTS as usize);
        agg.finish(secs - 1);
        assert_eq!(agg.series.len(), MAX_POINTS as usize);
        assert_eq!(agg.scenario_series[0].len(), MAX_POINTS as usize);
        let covered: u32 = agg.series.iter().map(|p| p.width_secs).sum();
        assert_eq!(covered, secs);
        let last = agg.series[agg.series.len() - 1];
        assert_eq!((last.width_secs, last.requests), (248 + 3_600, 1));
    }

    #[test]
    fn kept_windows_stop_once_they_could_not_fit_a_partial_result() {
        let mut p = long_plan(1);
        p.thresholds = vec![windowed(1)];
        let mut agg = Aggregator::new(&p);
        agg.keep_window_stats();
        // Windows without samples: the cheapest to keep, so the most of them.
        agg.absorb(Vec::new(), 40_000);
        let kept = agg.closed_windows();
        let bytes: usize = kept.iter().map(ClosedWindow::min_encoded_bytes).sum();
        assert_eq!(kept.len(), KEPT_WINDOWS_BUDGET_BYTES / WINDOW_MIN_BYTES + 1);
        assert!(
            bytes > KEPT_WINDOWS_BUDGET_BYTES,
            "too many to send: {bytes}"
        );
        // The verdicts still cover every window.
        let j = judge_first(&agg, 40_000.0);
        assert_eq!(j.verdict, Verdict::Unknown);
    }

    #[test]
    fn the_live_p99_covers_every_absorbed_sample() {
        let mut agg = Aggregator::new(&plan());
        assert_eq!(agg.p99_so_far(), None);
        let latencies: Vec<u64> = (1..=100).collect();
        agg.absorb(vec![(7, requests(0, 0, 200, &latencies))], 0);
        assert!(agg.series.is_empty(), "nothing finalized yet");
        let p99 = agg.p99_so_far();
        assert!(p99.is_some_and(|v| (99.0..99.1).contains(&v)), "{p99:?}");
        agg.absorb(vec![(7, requests(1, 0, 200, &[1000; 10]))], 0);
        let p99 = agg.p99_so_far();
        assert!(
            p99.is_some_and(|v| (1000.0..1001.0).contains(&v)),
            "{p99:?}"
        );
    }
}
