//! `loadgen canary`: a plan run in back-to-back rounds for as long as the process lives (a
//! low, steady rate), each sampled request's round trip verified as in any run, and
//! `/metrics` for Prometheus to scrape.
//!
//! `/metrics` holds the live outputs' metrics ([`crate::live`]) as totals since the
//! canary started: counters, and trends and the telemetry legs (ingest latency, backend
//! latency, query duration) as histograms; plus the last round's threshold verdicts,
//! rounds by outcome, and the same figures over a rolling window
//! (`ricochet_canary_window_*{window="5m"}`: counts, and 0.5 / 0.9 / 0.99 quantiles
//! interpolated in the histograms' buckets). Memory is bounded whatever the uptime: a
//! round's data is dropped when it ends, after being folded into fixed-size totals, and
//! the window keeps at most [`WINDOW_SNAPSHOTS`] + 1 snapshots.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use ricochet_output::model::{Batch, Histogram, Kind, Series};
use ricochet_reports::model::{Outcome, ThresholdResult};
use ricochet_verify::verification::Results;
use tokio_util::sync::CancellationToken;

use crate::live::{Batcher, Flavor};
use crate::plan::Plan;
use crate::plan::output::Naming;
use crate::run::{Observer, RunError, RunOptions, RunOutcome, StopKind, Stopper, execute};
use crate::stats::Stats;

/// Snapshots the rolling window is made of: one every `window / WINDOW_SNAPSHOTS`.
pub const WINDOW_SNAPSHOTS: u32 = 10;
/// How long the canary waits before the next round after one that could not run (the
/// target unreachable, the embedded echo-server failing to start).
pub const RETRY_PAUSE: Duration = Duration::from_secs(10);
/// Most `/metrics` connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// The counters shown over the window, without the prefix.
const WINDOW_COUNTERS: [&str; 6] = [
    "http_reqs_total",
    "http_req_errors_total",
    "telemetry_sampled_total",
    "telemetry_found_total",
    "telemetry_missing_total",
    "telemetry_unknown_total",
];
/// The quantiles shown of each histogram over the window.
const WINDOW_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// How the canary runs.
#[derive(Debug, Clone)]
pub struct CanaryOptions {
    /// The rolling window of the `ricochet_canary_window_*` series.
    pub window: Duration,
    /// The `testid` label of every series.
    pub testid: String,
    /// How arrival-rate dispatchers wait, as for a run.
    pub pacing: crate::worker::Pacing,
}

/// The canary's state, shared by its rounds (as their [`Observer`]) and `/metrics`.
#[derive(Debug)]
pub struct Canary {
    plan: Plan,
    batcher: Batcher,
    window: Duration,
    state: Mutex<State>,
}

/// What a finished round left for `/metrics`.
#[derive(Debug, Clone)]
pub struct RoundReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Its thresholds' verdicts.
    pub thresholds: Vec<ThresholdResult>,
    /// How long it ran, seconds.
    pub duration_secs: f64,
    /// Why it failed, when it could not be carried out.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Finished rounds, merged.
    done: Option<Measured>,
    /// The running round, as of its last tick, and its time then.
    current: Option<(Duration, Measured)>,
    /// Rounds by outcome.
    rounds: BTreeMap<&'static str, u64>,
    last: Option<RoundReport>,
    /// Snapshots of the totals for the window, oldest first.
    snapshots: VecDeque<(Instant, Batch)>,
}

#[derive(Debug, Clone)]
struct Measured {
    stats: Stats,
    telemetry: Option<Results>,
}

impl Measured {
    fn empty() -> Self {
        Self {
            stats: Stats::default(),
            telemetry: None,
        }
    }

    fn merge(&mut self, other: &Measured) {
        self.stats.merge(&other.stats);
        match (&mut self.telemetry, &other.telemetry) {
            (Some(mine), Some(theirs)) => {
                for (_, t) in &theirs.signals {
                    match mine.signals.iter_mut().find(|(_, m)| m.signal == t.signal) {
                        Some((_, m)) => m.merge(t),
                        None => mine.signals.push((String::new(), t.clone())),
                    }
                }
                mine.sampled += theirs.sampled;
                mine.dropped += theirs.dropped;
                mine.probes += theirs.probes;
            }
            (mine @ None, Some(theirs)) => *mine = Some(theirs.clone()),
            _ => {}
        }
        // The per-second ingest series is a run's chart, not a total: dropping it keeps
        // the totals' size fixed however long the canary lives.
        for (_, t) in self.telemetry.iter_mut().flat_map(|r| r.signals.iter_mut()) {
            t.ingest_series = Vec::new();
        }
    }
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::Error => "error",
    }
}

impl Canary {
    /// A canary of `plan`, labelling every series with `testid`.
    pub fn new(plan: Plan, opts: &CanaryOptions) -> Self {
        let naming = plan.output.as_ref().map_or(Naming::Ricochet, |o| o.naming);
        let labels = vec![("testid".to_owned(), opts.testid.clone())];
        Self {
            plan,
            batcher: Batcher::new(naming, Vec::new(), labels),
            window: opts.window.max(Duration::from_secs(1)),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds a finished round into the totals.
    pub fn finish_round(&self, outcome: &RunOutcome) {
        let round = Measured {
            stats: outcome.stats.clone(),
            telemetry: outcome.telemetry.clone(),
        };
        let mut s = self.state();
        s.current = None;
        s.done.get_or_insert_with(Measured::empty).merge(&round);
        let run = &outcome.summary.run;
        *s.rounds.entry(outcome_label(run.outcome)).or_default() += 1;
        s.last = Some(RoundReport {
            outcome: run.outcome,
            thresholds: outcome.summary.thresholds.clone(),
            duration_secs: run.duration_secs,
            error: outcome.message.clone(),
        });
    }

    /// Everything since the canary started, finished rounds and the running one.
    fn totals(s: &State) -> Measured {
        let mut total = s.done.clone().unwrap_or_else(Measured::empty);
        if let Some((_, c)) = &s.current {
            total.merge(c);
        }
        total
    }

    fn totals_batch(&self, s: &State, at: SystemTime) -> Batch {
        let t = Self::totals(s);
        // Between rounds, past every scenario's end: no target rate, no fault active.
        let elapsed = s.current.as_ref().map_or(Duration::MAX, |c| c.0);
        self.batcher.batch(
            at,
            elapsed,
            &self.plan,
            &t.stats,
            t.telemetry.as_ref(),
            Flavor::Histograms,
        )
    }

    /// `/metrics`: the totals, the last round's verdicts, rounds by outcome and the
    /// rolling window, as exposition text.
    pub fn render(&self) -> String {
        let mut s = self.state();
        let now = Instant::now();
        let mut batch = self.totals_batch(&s, SystemTime::now());
        self.keep_snapshot(&mut s, now, &batch);
        let b = &self.batcher;
        for (outcome, n) in &s.rounds {
            batch.series.push(Series {
                name: b.name("canary_rounds_total"),
                labels: b.with(&[("outcome", outcome)]),
                value: *n as f64,
                kind: Kind::Counter,
            });
        }
        if let Some(last) = &s.last {
            batch.series.extend(b.threshold_series(&last.thresholds));
            batch.series.push(Series {
                name: b.name("canary_last_round_passed"),
                labels: b.with(&[("outcome", outcome_label(last.outcome))]),
                value: f64::from(u8::from(last.outcome == Outcome::Passed)),
                kind: Kind::Gauge,
            });
            batch.series.push(Series {
                name: b.name("canary_last_round_duration_seconds"),
                labels: b.with(&[]),
                value: last.duration_secs,
                kind: Kind::Gauge,
            });
        }
        batch.series.push(Series {
            name: b.name("canary_round_running"),
            labels: b.with(&[]),
            value: f64::from(u8::from(s.current.is_some())),
            kind: Kind::Gauge,
        });
        if let Some((_, old)) = s
            .snapshots
            .iter()
            .rev()
            .find(|(at, _)| now.duration_since(*at) >= self.window)
            .or(s.snapshots.front())
        {
            let window = crate::duration::format_duration(self.window);
            batch
                .series
                .extend(self.window_series(&batch, old, &window));
        }
        ricochet_output::exposition::render(&batch)
    }

    /// Keeps `batch` as a window snapshot when the last one is older than a step, and
    /// drops those the window no longer needs.
    fn keep_snapshot(&self, s: &mut State, now: Instant, batch: &Batch) {
        let step = self.window / WINDOW_SNAPSHOTS;
        if s.snapshots
            .back()
            .is_none_or(|(at, _)| now.duration_since(*at) >= step)
        {
            let mut kept = Batch::new(batch.at);
            kept.series = batch
                .series
                .iter()
                .filter(|x| self.windowed_counter(&x.name).is_some())
                .cloned()
                .collect();
            kept.histograms = batch.histograms.clone();
            s.snapshots.push_back((now, kept));
        }
        // Keep one snapshot at least a window old, and nothing older.
        while s.snapshots.len() > 1
            && s.snapshots
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= self.window)
        {
            s.snapshots.pop_front();
        }
    }

    /// `name` without its prefix and `_total`, when it is a windowed counter.
    fn windowed_counter<'n>(&self, name: &'n str) -> Option<&'n str> {
        let bare = name.strip_prefix(&self.batcher.name(""))?;
        WINDOW_COUNTERS
            .contains(&bare)
            .then(|| bare.trim_end_matches("_total"))
    }

    /// The increase of each windowed counter and the quantiles of each histogram between
    /// `old` and `now`.
    fn window_series(&self, now: &Batch, old: &Batch, window: &str) -> Vec<Series> {
        let mut out = Vec::new();
        for x in &now.series {
            let Some(bare) = self.windowed_counter(&x.name) else {
                continue;
            };
            let before = old
                .series
                .iter()
                .find(|o| o.name == x.name && o.labels == x.labels)
                .map_or(0.0, |o| o.value);
            let mut labels = x.labels.clone();
            labels.push(("window".into(), window.into()));
            out.push(Series {
                name: self.batcher.name(&format!("canary_window_{bare}")),
                labels,
                value: (x.value - before).max(0.0),
                kind: Kind::Gauge,
            });
        }
        for h in &now.histograms {
            let delta = match old
                .histograms
                .iter()
                .find(|o| o.name == h.name && o.labels == h.labels)
            {
                Some(o) => difference(h, o),
                None => h.clone(),
            };
            if delta.count == 0 {
                continue;
            }
            let bare = h
                .name
                .strip_prefix(&self.batcher.name(""))
                .unwrap_or(&h.name);
            for q in WINDOW_QUANTILES {
                let mut labels = h.labels.clone();
                labels.push(("quantile".into(), q.to_string()));
                labels.push(("window".into(), window.into()));
                out.push(Series {
                    name: self.batcher.name(&format!("canary_window_{bare}")),
                    labels,
                    value: quantile(&delta, q),
                    kind: Kind::Gauge,
                });
            }
        }
        out
    }

    /// Runs rounds until `shutdown`: each round is a run of the plan observed by this
    /// canary; `on_round` hears of each one that ended. A round that could not run is
    /// followed by [`RETRY_PAUSE`]. Errors only when a round could not start for a reason
    /// another round would meet too (invalid input): the first round's error is the
    /// canary's.
    pub async fn run(
        self: &Arc<Self>,
        opts: &CanaryOptions,
        shutdown: CancellationToken,
        mut on_round: impl FnMut(u64, &RunOutcome),
    ) -> Result<u64, RunError> {
        let mut rounds = 0u64;
        while !shutdown.is_cancelled() {
            let stopper = Arc::new(Stopper::new());
            let watch = tokio::spawn({
                let (stopper, shutdown) = (stopper.clone(), shutdown.clone());
                async move {
                    shutdown.cancelled().await;
                    stopper.stop(StopKind::Interrupted, "the canary was stopped");
                    stopper.hard.cancel();
                }
            });
            let run_opts = RunOptions {
                pacing: opts.pacing,
                testid: Some(opts.testid.clone()),
                observer: Some(self.clone()),
                ..RunOptions::default()
            };
            let outcome = execute(&self.plan, &run_opts, stopper).await;
            watch.abort();
            let outcome = outcome?;
            if shutdown.is_cancelled() {
                break;
            }
            rounds += 1;
            self.finish_round(&outcome);
            on_round(rounds, &outcome);
            if outcome.summary.run.outcome == Outcome::Error {
                tokio::select! {
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                    () = shutdown.cancelled() => {}
                }
            }
        }
        Ok(rounds)
    }
}

impl Observer for Canary {
    fn tick(&self, elapsed: Duration, stats: &Stats, telemetry: Option<&Results>) {
        let current = Measured {
            stats: stats.clone(),
            telemetry: telemetry.cloned(),
        };
        let now = Instant::now();
        let mut s = self.state();
        s.current = Some((elapsed, current));
        // Snapshots are taken at scrapes and at ticks, so the window holds whether or not
        // anything scrapes.
        if s.snapshots
            .back()
            .is_none_or(|(at, _)| now.duration_since(*at) >= self.window / WINDOW_SNAPSHOTS)
        {
            let batch = self.totals_batch(&s, SystemTime::now());
            self.keep_snapshot(&mut s, now, &batch);
        }
    }
}

/// Every metric name `/metrics` serves under the `ricochet` prefix (dashboards and alert
/// rules are checked against it): the live outputs' counters and gauges, histograms as
/// `_bucket`, `_sum` and `_count`, the canary's own series and the window's.
pub fn metric_names() -> Vec<String> {
    let histograms = crate::live::histogram_names();
    let mut out: Vec<String> = crate::live::metric_names()
        .into_iter()
        .filter(|n| !histograms.contains(n))
        .collect();
    for h in &histograms {
        out.extend(["bucket", "sum", "count"].map(|s| format!("{h}_{s}")));
        let bare = h.trim_start_matches("ricochet_");
        out.push(format!("ricochet_canary_window_{bare}"));
    }
    for c in WINDOW_COUNTERS {
        out.push(format!(
            "ricochet_canary_window_{}",
            c.trim_end_matches("_total")
        ));
    }
    out.extend(
        [
            "canary_rounds_total",
            "canary_last_round_passed",
            "canary_last_round_duration_seconds",
            "canary_round_running",
        ]
        .map(|n| format!("ricochet_{n}")),
    );
    out
}

/// `now - old`, bucket by bucket (both cumulative since the canary started).
fn difference(now: &Histogram, old: &Histogram) -> Histogram {
    let mut d = now.clone();
    if old.bounds != now.bounds {
        return d;
    }
    d.count = now.count.saturating_sub(old.count);
    d.sum = (now.sum - old.sum).max(0.0);
    for (c, o) in d.counts.iter_mut().zip(&old.counts) {
        *c = c.saturating_sub(*o);
    }
    d
}

/// The `q` quantile of `h`, interpolated linearly within its bucket as PromQL's
/// `histogram_quantile` does (the last finite bound when it falls above it).
fn quantile(h: &Histogram, q: f64) -> f64 {
    let total: u64 = h.counts.iter().sum();
    if total == 0 {
        return f64::NAN;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, n) in h.counts.iter().enumerate() {
        if (below + n) as f64 >= rank && *n > 0 {
            let Some(upper) = h.bounds.get(i) else {
                return h.bounds.last().copied().unwrap_or(f64::NAN);
            };
            let lower = if i == 0 { 0.0 } else { h.bounds[i - 1] };
            return lower + (upper - lower) * (rank - below as f64) / *n as f64;
        }
        below += n;
    }
    h.bounds.last().copied().unwrap_or(f64::NAN)
}

/// Serves `canary`'s `/metrics` (and `/healthz`) on `listener` over HTTP/1 until
/// `shutdown`; at most [`MAX_CONNECTIONS`] connections at once, each with a 10 s limit
/// to send its request head.
pub async fn serve(
    listener: tokio::net::TcpListener,
    canary: Arc<Canary>,
    shutdown: CancellationToken,
) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioIo, TokioTimer};

    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (sock, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            () = shutdown.cancelled() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let canary = canary.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let canary = canary.clone();
                async move {
                    let (status, content_type, body) = match (req.method(), req.uri().path()) {
                        (&hyper::Method::GET, "/metrics") => (
                            200,
                            ricochet_output::exposition::CONTENT_TYPE,
                            canary.render(),
                        ),
                        (&hyper::Method::GET, "/healthz") => (200, "text/plain", "ok\n".to_owned()),
                        _ => (404, "text/plain", "not found\n".to_owned()),
                    };
                    hyper::Response::builder()
                        .status(status)
                        .header(http::header::CONTENT_TYPE, content_type)
                        .body(Full::new(Bytes::from(body)))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(sock), service)
                .await;
            drop(permit);
        });
    }
}

/// Binds `addr` for [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(counts: Vec<u64>) -> Histogram {
        Histogram {
            name: "h".into(),
            labels: Vec::new(),
            count: counts.iter().sum(),
            sum: 0.0,
            bounds: vec![0.1, 0.2, 0.4],
            counts,
        }
    }

    #[test]
    fn window_quantiles_interpolate_within_the_bucket_of_the_difference() {
        let old = hist(vec![10, 0, 0, 0]);
        let now = hist(vec![10, 4, 4, 2]);
        let d = difference(&now, &old);
        assert_eq!((d.count, d.counts.clone()), (10, vec![0, 4, 4, 2]));
        // Rank 5 of 10 falls in (0.2, 0.4], 1 of its 4: 0.25.
        assert!((quantile(&d, 0.5) - 0.25).abs() < 1e-9);
        // Above the last bound: the last bound.
        assert_eq!(quantile(&d, 0.99), 0.4);
        assert!(quantile(&hist(vec![0, 0, 0, 0]), 0.5).is_nan());
    }
}
