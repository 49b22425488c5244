//! The collector's state: run totals, the per-second time series (overall and per
//! scenario) and the tumbling windows of windowed thresholds.
//!
//! Buckets drained from the [`crate::stats::Recorder`] are merged into the totals at
//! once (so live threshold checks see everything) and into the open second they belong
//! to; a second is finalized — reduced to a [`TimePoint`] and dropped — two seconds after
//! it ends. Windowed thresholds keep only the series they select, per window, and judge
//! and discard each window as soon as it is complete.

use std::collections::BTreeMap;

use ricochet_reports::model::TimePoint;

use crate::evaluate::{TagIndex, judge, ms};
use crate::judge::{Evidence, TelemetryEvidence, WindowTally, Windows, window_secs};
use crate::plan::Plan;
use crate::schedule::RateProfile;
use crate::stats::{Stats, merge_hist, new_hist};
use crate::thresholds::{Scope, Threshold};

/// The open window of one windowed threshold.
#[derive(Debug)]
struct WindowState {
    threshold: usize,
    len: u32,
    current: Option<(u32, Stats)>,
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
    /// One point per finalized second, whole run.
    pub series: Vec<TimePoint>,
    /// One point per finalized second, per scenario (plan order).
    pub scenario_series: Vec<Vec<TimePoint>>,
    windows: Vec<WindowState>,
    tallies: BTreeMap<usize, WindowTally>,
    /// Keep each closed window's selected stats (runners: the operator judges windows on
    /// the merge of every runner's).
    keep_windows: bool,
    closed: Vec<ClosedWindow>,
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
            series: Vec::new(),
            scenario_series: vec![Vec::new(); plan.scenarios.len()],
            windows,
            tallies: WindowTally::for_thresholds(&plan.thresholds),
            keep_windows: false,
            closed: Vec::new(),
        }
    }

    /// Keeps every closed window's stats ([`Aggregator::closed_windows`]).
    pub fn keep_window_stats(&mut self) {
        self.keep_windows = true;
    }

    /// The closed windows' stats, when kept.
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
        for w in 0..self.windows.len() {
            self.close_window(w);
        }
    }

    fn planned(&self, scenario: usize, sec: u32) -> Option<f64> {
        let (start, profile) = self.profiles.get(scenario)?;
        let p = profile.as_ref()?;
        let from = f64::from(sec) - start;
        Some(p.planned_between(from, from + 1.0))
    }

    fn finalize(&mut self, sec: u32, stats: &Stats) {
        let mut all = new_hist();
        let mut overall = TimePoint {
            t: f64::from(sec),
            target_rps: None,
            requests: 0,
            errors: 0,
            dropped: 0,
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
        };
        for i in 0..self.scenario_series.len() {
            let idx = u16::try_from(i).unwrap_or(u16::MAX);
            let mut h = new_hist();
            let mut p = TimePoint {
                t: f64::from(sec),
                target_rps: self.planned(i, sec),
                requests: 0,
                errors: 0,
                dropped: 0,
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
            };
            for (_, s) in stats.series.iter().filter(|(k, _)| k.scenario == idx) {
                p.requests += s.requests;
                p.errors += s.failed;
                merge_hist(&mut h, &s.duration);
            }
            p.dropped = stats
                .scenarios
                .iter()
                .filter(|(k, _)| k.scenario == idx)
                .map(|(_, c)| c.dropped)
                .sum();
            set_percentiles(&mut p, &h);
            merge_hist(&mut all, &h);
            overall.requests += p.requests;
            overall.errors += p.errors;
            overall.dropped += p.dropped;
            if let Some(t) = p.target_rps {
                overall.target_rps = Some(overall.target_rps.unwrap_or(0.0) + t);
            }
            self.scenario_series[i].push(p);
        }
        set_percentiles(&mut overall, &all);
        self.series.push(overall);
        for w in 0..self.windows.len() {
            self.window_add(w, sec, stats);
        }
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
        if self.keep_windows {
            self.closed.push(ClosedWindow {
                threshold,
                index: window,
                stats: acc,
            });
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

fn set_percentiles(p: &mut TimePoint, h: &crate::stats::Hist) {
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
