//! The collector's state: run totals, the per-second time series (overall and per
//! scenario) and the tumbling windows of windowed thresholds.
//!
//! Buckets drained from the [`crate::stats::Recorder`] are merged into the totals at
//! once (so live threshold checks see everything) and into the open second they belong
//! to; a second is finalized — reduced to a [`TimePoint`] and dropped — two seconds after
//! it ends. Windowed thresholds keep only the series they select, per window, and judge
//! and discard each window as soon as it is complete.

use std::collections::BTreeMap;
use std::time::Duration;

use ricochet_reports::model::{TimePoint, Verdict};

use crate::evaluate::{Judgement, TagIndex, judge, ms, worse};
use crate::plan::Plan;
use crate::schedule::RateProfile;
use crate::stats::{Stats, merge_hist, new_hist};
use crate::thresholds::{Scope, Threshold};

/// Tumbling-window state of one windowed threshold.
#[derive(Debug)]
struct WindowState {
    threshold: usize,
    len: u32,
    current: Option<(u32, Stats)>,
    tally: WindowTally,
}

/// The verdicts of a windowed threshold's windows so far: how many were judged, the worst
/// and the first failing one.
#[derive(Debug, Default, Clone)]
pub struct WindowTally {
    judged: u32,
    worst: Option<(f64, u32)>,
    first_failure: Option<(f64, u32)>,
    last_reason: Option<String>,
}

impl WindowTally {
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

    /// Whether a window failed.
    pub fn failed(&self) -> bool {
        self.first_failure.is_some()
    }

    /// The threshold's verdict over its windows of `len` seconds: failed when any window
    /// failed (naming the first and the worst), unknown when none had samples.
    pub fn judgement(&self, len: u32) -> Judgement {
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
                    tally: WindowTally::default(),
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

    /// Seconds finalized so far.
    pub fn finalized_seconds(&self) -> u32 {
        self.next_second
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
        self.windows[w].tally.add(th, window, j);
        if self.keep_windows {
            self.closed.push(ClosedWindow {
                threshold,
                index: window,
                stats: acc,
            });
        }
    }

    /// Whether a windowed threshold has already failed in a completed window.
    pub fn window_failed(&self, threshold: usize) -> bool {
        self.windows
            .iter()
            .any(|w| w.threshold == threshold && w.tally.failed())
    }

    /// Judges threshold `i` on everything so far (`elapsed` seconds of run time).
    pub fn judge_threshold(&self, i: usize, elapsed: f64) -> Judgement {
        let th = &self.thresholds[i];
        match &th.scope {
            Scope::Run => judge(th, &self.totals, &self.index, None, elapsed),
            Scope::Phase(name) => judge(th, &self.totals, &self.index, Some(name), elapsed),
            Scope::Window(_) => self.judge_windows(i),
        }
    }

    fn judge_windows(&self, i: usize) -> Judgement {
        let Some(state) = self.windows.iter().find(|w| w.threshold == i) else {
            return Judgement {
                observed: None,
                verdict: Verdict::Unknown,
                reason: Some("window state missing".into()),
            };
        };
        state.tally.judgement(state.len)
    }

    /// Latest finalized overall point.
    pub fn last_point(&self) -> Option<&TimePoint> {
        self.series.last()
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

/// A window length in whole seconds (at least 1).
pub fn window_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs_f64().round() as u64)
        .unwrap_or(u32::MAX)
        .max(1)
}

fn set_percentiles(p: &mut TimePoint, h: &crate::stats::Hist) {
    if !h.is_empty() {
        p.p50_ms = Some(ms(h.value_at_quantile(0.5)));
        p.p95_ms = Some(ms(h.value_at_quantile(0.95)));
        p.p99_ms = Some(ms(h.value_at_quantile(0.99)));
    }
}
