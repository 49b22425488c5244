//! Measurements: HdrHistogram-backed [`Stats`], merged exactly, and the sharded
//! [`Recorder`] the hot loop writes to.
//!
//! Every request lands in one series, keyed by scenario, request, status and phase; the
//! tag set of a series (scenario, name, method, status, the scenario's tags) is resolved
//! from the plan when thresholds are judged or the summary is written. Workers record into
//! a per-thread shard holding one bucket per second of completion; the collector takes the
//! buckets on every tick and merges them with `Histogram::add`. Nothing per request is
//! kept, so memory does not grow with the run's length.
//!
//! A request that got no answer (status 0) is also counted by its [`ErrorCause`], in a
//! fixed array per series ([`Stats::errors`]).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

pub use ricochet_verify::hist::{Hist, SIGFIG, merge_hist, new_hist, record_duration};

pub use crate::client::ErrorCause;

/// Identifies one series of samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Index of the scenario in the plan.
    pub scenario: u16,
    /// Index of the request in the scenario.
    pub request: u16,
    /// HTTP status, 0 when no response arrived.
    pub status: u16,
    /// Stage index + 1 in which the iteration was scheduled, 0 for executors without stages.
    pub phase: u16,
}

/// Identifies scenario-level counters (iterations, dropped iterations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScenarioKey {
    /// Index of the scenario in the plan.
    pub scenario: u16,
    /// Stage index + 1, 0 for executors without stages.
    pub phase: u16,
}

/// Measurements of one series.
#[derive(Clone, Debug)]
pub struct SeriesStats {
    /// Completed requests (`http_reqs`).
    pub requests: u64,
    /// Of those, failed (`http_req_failed`).
    pub failed: u64,
    /// Bytes sent (`data_sent`).
    pub data_sent: u64,
    /// Bytes received (`data_received`).
    pub data_received: u64,
    /// `http_req_duration`: completion − scheduled instant.
    pub duration: Hist,
    /// `http_req_waiting`: first byte − scheduled instant.
    pub waiting: Hist,
    /// `http_req_service_duration`: completion − actual send.
    pub service: Hist,
    /// `http_req_schedule_lag`: the iteration's start on the client − its scheduled
    /// instant: how late the generator itself was.
    pub schedule_lag: Hist,
    /// `http_req_blocked`: actual send − the iteration's start: waiting for a free
    /// connection slot and, for a new connection, its TCP connect.
    pub blocked: Hist,
    /// `http_stream_duration`: last byte − scheduled instant (streamed requests only).
    pub stream: Option<Hist>,
    /// `http_req_connecting`: the TCP connect of requests that opened their connection.
    pub connecting: Option<Hist>,
    /// `http_req_tls_handshaking`: the TLS handshake of `https://` requests that opened
    /// their connection.
    pub tls_handshaking: Option<Hist>,
}

impl Default for SeriesStats {
    fn default() -> Self {
        Self {
            requests: 0,
            failed: 0,
            data_sent: 0,
            data_received: 0,
            duration: new_hist(),
            waiting: new_hist(),
            service: new_hist(),
            schedule_lag: new_hist(),
            blocked: new_hist(),
            stream: None,
            connecting: None,
            tls_handshaking: None,
        }
    }
}

impl SeriesStats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &SeriesStats) {
        self.requests += other.requests;
        self.failed += other.failed;
        self.data_sent += other.data_sent;
        self.data_received += other.data_received;
        merge_hist(&mut self.duration, &other.duration);
        merge_hist(&mut self.waiting, &other.waiting);
        merge_hist(&mut self.service, &other.service);
        merge_hist(&mut self.schedule_lag, &other.schedule_lag);
        merge_hist(&mut self.blocked, &other.blocked);
        for (dst, src) in [
            (&mut self.stream, &other.stream),
            (&mut self.connecting, &other.connecting),
            (&mut self.tls_handshaking, &other.tls_handshaking),
        ] {
            if let Some(src) = src {
                merge_hist(dst.get_or_insert_with(new_hist), src);
            }
        }
    }
}

/// Scenario-level counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScenarioCounters {
    /// Completed iterations.
    pub iterations: u64,
    /// Iterations not started: `maxInFlight` was reached, or the scenario ended before
    /// the dispatcher got to them (k6's "lack of VUs or time").
    pub dropped: u64,
    /// Iterations started but cut off after `gracefulStop` (not otherwise recorded).
    pub interrupted: u64,
}

/// Requests that got no answer, one counter per [`ErrorCause`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; ErrorCause::ALL.len()]);

impl ErrorCounts {
    /// Counts one request failed for `cause`.
    pub fn add(&mut self, cause: ErrorCause) {
        self.0[cause.index()] += 1;
    }

    /// Counts `n` requests failed for `cause`.
    pub fn add_n(&mut self, cause: ErrorCause, n: u64) {
        self.0[cause.index()] += n;
    }

    /// Requests failed for `cause`.
    pub fn get(&self, cause: ErrorCause) -> u64 {
        self.0[cause.index()]
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// Requests without an answer, whatever the cause.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Every cause with its count, in [`ErrorCause::ALL`] order (zeros included).
    pub fn iter(&self) -> impl Iterator<Item = (ErrorCause, u64)> + '_ {
        ErrorCause::ALL.into_iter().map(|c| (c, self.get(c)))
    }
}

/// A set of series; mergeable exactly.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Per-series measurements.
    pub series: HashMap<SeriesKey, SeriesStats>,
    /// Per-scenario counters.
    pub scenarios: HashMap<ScenarioKey, ScenarioCounters>,
    /// Requests without an answer by cause, per series (all of status 0).
    pub errors: HashMap<SeriesKey, ErrorCounts>,
}

impl Stats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        for (k, s) in &other.series {
            self.series.entry(*k).or_default().merge(s);
        }
        for (k, c) in &other.scenarios {
            let e = self.scenarios.entry(*k).or_default();
            e.iterations += c.iterations;
            e.dropped += c.dropped;
            e.interrupted += c.interrupted;
        }
        for (k, e) in &other.errors {
            self.errors.entry(*k).or_default().merge(e);
        }
    }

    /// Records one request that got no answer, counted under `cause`.
    pub fn record_failure(&mut self, s: &Measurement, cause: ErrorCause) {
        self.record(s);
        self.errors.entry(s.key).or_default().add(cause);
    }

    /// The causes of the series `include` selects, summed.
    pub fn error_counts(&self, mut include: impl FnMut(&SeriesKey) -> bool) -> ErrorCounts {
        let mut sum = ErrorCounts::default();
        for (k, e) in &self.errors {
            if include(k) {
                sum.merge(e);
            }
        }
        sum
    }

    /// Records one finished request.
    pub fn record(&mut self, s: &Measurement) {
        let series = self.series.entry(s.key).or_default();
        series.requests += 1;
        series.failed += u64::from(s.failed);
        series.data_sent += s.bytes_sent;
        series.data_received += s.bytes_received;
        record_duration(
            &mut series.duration,
            s.end.saturating_duration_since(s.scheduled),
        );
        record_duration(
            &mut series.waiting,
            s.first_byte.saturating_duration_since(s.scheduled),
        );
        record_duration(&mut series.service, s.end.saturating_duration_since(s.sent));
        record_duration(
            &mut series.schedule_lag,
            s.started.saturating_duration_since(s.scheduled),
        );
        record_duration(
            &mut series.blocked,
            s.sent.saturating_duration_since(s.started),
        );
        if s.stream {
            record_duration(
                series.stream.get_or_insert_with(new_hist),
                s.end.saturating_duration_since(s.scheduled),
            );
        }
        if let Some(c) = s.connected {
            record_duration(series.connecting.get_or_insert_with(new_hist), c.connecting);
            if let Some(tls) = c.tls_handshaking {
                record_duration(series.tls_handshaking.get_or_insert_with(new_hist), tls);
            }
        }
        self.scenarios
            .entry(ScenarioKey {
                scenario: s.key.scenario,
                phase: s.key.phase,
            })
            .or_default()
            .iterations += 1;
    }

    /// Counts one dropped iteration.
    pub fn record_dropped(&mut self, key: ScenarioKey) {
        self.record_dropped_many(key, 1);
    }

    /// Counts `n` dropped iterations.
    pub fn record_dropped_many(&mut self, key: ScenarioKey, n: u64) {
        let c = &mut self.scenarios.entry(key).or_default().dropped;
        *c = c.saturating_add(n);
    }

    /// Counts one interrupted iteration.
    pub fn record_interrupted(&mut self, key: ScenarioKey) {
        self.scenarios.entry(key).or_default().interrupted += 1;
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.scenarios.is_empty()
    }
}

/// One finished request, as the worker saw it.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    /// Its series.
    pub key: SeriesKey,
    /// Failed: transport error, timeout or status >= 400.
    pub failed: bool,
    /// Whether the request was streamed (`http_stream_duration` is recorded).
    pub stream: bool,
    /// The intended instant of the iteration (open model) or its start (closed model).
    pub scheduled: Instant,
    /// When the iteration began to run on the client (the dispatcher handed it over).
    pub started: Instant,
    /// When the request was handed to the connection.
    pub sent: Instant,
    /// First byte of the response (headers; first body chunk when streamed).
    pub first_byte: Instant,
    /// Last byte of the response, or the error.
    pub end: Instant,
    /// Request bytes (approximate wire size).
    pub bytes_sent: u64,
    /// Response bytes (approximate wire size).
    pub bytes_received: u64,
    /// How the request's connection was opened, when the request opened it.
    pub connected: Option<crate::client::Connected>,
}

/// One shard: buckets of [`Stats`] by second of completion since the run's start.
#[derive(Debug, Default)]
struct Shard {
    buckets: Vec<(u32, Stats)>,
}

impl Shard {
    fn bucket(&mut self, sec: u32) -> &mut Stats {
        let pos = match self.buckets.iter().rposition(|(s, _)| *s == sec) {
            Some(pos) => pos,
            None => {
                self.buckets.push((sec, Stats::default()));
                self.buckets.len() - 1
            }
        };
        &mut self.buckets[pos].1
    }
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn thread_index() -> usize {
    THREAD_INDEX.with(|c| {
        let mut i = c.get();
        if i == usize::MAX {
            i = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
            c.set(i);
        }
        i
    })
}

/// Where workers record: one mutex-guarded shard per thread (uncontended), drained by the
/// collector. No message per request.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    shards: Box<[Mutex<Shard>]>,
    responses: AtomicU64,
    connect_errors: AtomicU64,
    last_connect_error: Mutex<Option<String>>,
    failures: [AtomicU64; ErrorCause::ALL.len()],
    first_failures: Mutex<[Option<String>; ErrorCause::ALL.len()]>,
    panics: AtomicU64,
    first_panic: Mutex<Option<String>>,
}

impl Recorder {
    /// A recorder for a run that started at `start`.
    pub fn new(start: Instant) -> Self {
        let n = std::thread::available_parallelism().map_or(4, |n| n.get()) * 2 + 8;
        Self {
            start,
            shards: (0..n).map(|_| Mutex::new(Shard::default())).collect(),
            responses: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            last_connect_error: Mutex::new(None),
            failures: std::array::from_fn(|_| AtomicU64::new(0)),
            first_failures: Mutex::default(),
            panics: AtomicU64::new(0),
            first_panic: Mutex::new(None),
        }
    }

    /// The run's start.
    pub fn start(&self) -> Instant {
        self.start
    }

    fn second_of(&self, at: Instant) -> u32 {
        u32::try_from(at.saturating_duration_since(self.start).as_secs()).unwrap_or(u32::MAX)
    }

    fn with_shard<R>(&self, f: impl FnOnce(&mut Shard) -> R) -> R {
        let shard = &self.shards[thread_index() % self.shards.len()];
        let mut guard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Records a finished request into the bucket of its completion second.
    pub fn record(&self, sample: &Measurement) {
        let sec = self.second_of(sample.end);
        self.with_shard(|s| s.bucket(sec).record(sample));
    }

    /// Records a request that got no answer, counted under `cause`, into the bucket of its
    /// completion second.
    pub fn record_failure(&self, sample: &Measurement, cause: ErrorCause) {
        let sec = self.second_of(sample.end);
        self.with_shard(|s| s.bucket(sec).record_failure(sample, cause));
    }

    /// Notes a request that failed for `cause`; the first `detail` of each cause is kept
    /// (a lock only then: later failures cost one atomic add).
    pub fn note_failure(&self, cause: ErrorCause, detail: &str) {
        if self.failures[cause.index()].fetch_add(1, Ordering::Relaxed) == 0 {
            let mut first = self
                .first_failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            first[cause.index()] = Some(detail.to_owned());
        }
    }

    /// What the first request that failed for `cause` saw, e.g. `connection reset by peer`.
    pub fn first_failure(&self, cause: ErrorCause) -> Option<String> {
        self.first_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[cause.index()]
        .clone()
    }

    /// Counts a dropped iteration at `at`.
    pub fn record_dropped(&self, key: ScenarioKey, at: Instant) {
        let sec = self.second_of(at);
        self.with_shard(|s| s.bucket(sec).record_dropped(key));
    }

    /// Counts `n` iterations intended from `at` on that were not started.
    pub fn record_dropped_many(&self, key: ScenarioKey, at: Instant, n: u64) {
        let sec = self.second_of(at);
        self.with_shard(|s| s.bucket(sec).record_dropped_many(key, n));
    }

    /// Notes that a task of the run panicked (`what`: which, and the panic's message when
    /// known); the first note is kept, the rest counted.
    pub fn note_panic(&self, what: String) {
        self.panics.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert(what);
    }

    /// `(panicked tasks, the first one's note)`, once any task panicked.
    pub fn panics(&self) -> Option<(u64, String)> {
        let n = self.panics.load(Ordering::Relaxed);
        if n == 0 {
            return None;
        }
        let first = self
            .first_panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        Some((n, first))
    }

    /// Counts an iteration cut off by the hard stop at `at`.
    pub fn record_interrupted(&self, key: ScenarioKey, at: Instant) {
        let sec = self.second_of(at);
        self.with_shard(|s| s.bucket(sec).record_interrupted(key));
    }

    /// Notes that a response (any status) arrived.
    pub fn note_response(&self) {
        self.responses.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes a failure to connect to the target.
    pub fn note_connect_error(&self, message: &str) {
        if self.connect_errors.fetch_add(1, Ordering::Relaxed) == 0 {
            let mut last = self
                .last_connect_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *last = Some(message.to_owned());
        }
    }

    /// `(responses, connect errors, first connect error)` so far.
    pub fn reachability(&self) -> (u64, u64, Option<String>) {
        let last = self
            .last_connect_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (
            self.responses.load(Ordering::Relaxed),
            self.connect_errors.load(Ordering::Relaxed),
            last,
        )
    }

    /// Takes everything recorded so far, merged per completion second, in order.
    pub fn drain(&self) -> Vec<(u32, Stats)> {
        let mut out: Vec<(u32, Stats)> = Vec::new();
        for shard in self.shards.iter() {
            let buckets = {
                let mut guard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                std::mem::take(&mut guard.buckets)
            };
            for (sec, stats) in buckets {
                match out.iter_mut().find(|(s, _)| *s == sec) {
                    Some((_, acc)) => acc.merge(&stats),
                    None => out.push((sec, stats)),
                }
            }
        }
        out.sort_by_key(|(s, _)| *s);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use proptest::prelude::*;

    fn sample(at: Instant, scheduled_us: u64, end_us: u64, status: u16) -> Measurement {
        let scheduled = at + Duration::from_micros(scheduled_us);
        Measurement {
            key: SeriesKey {
                scenario: 0,
                request: 0,
                status,
                phase: 0,
            },
            failed: status >= 400,
            stream: false,
            scheduled,
            started: scheduled,
            sent: scheduled,
            first_byte: scheduled,
            end: scheduled + Duration::from_micros(end_us),
            bytes_sent: 10,
            bytes_received: 20,
            connected: None,
        }
    }

    #[test]
    fn recorder_drains_buckets_by_completion_second() {
        let t0 = Instant::now();
        let r = Recorder::new(t0);
        r.record(&sample(t0, 0, 500, 200));
        r.record(&sample(t0, 1_200_000, 500, 503));
        r.record_dropped(
            ScenarioKey {
                scenario: 0,
                phase: 0,
            },
            t0,
        );
        let buckets = r.drain();
        assert_eq!(buckets.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(
            buckets[0].1.scenarios[&ScenarioKey {
                scenario: 0,
                phase: 0
            }]
                .dropped,
            1
        );
        assert!(r.drain().is_empty());
    }

    #[test]
    fn latency_is_measured_from_the_scheduled_instant() {
        let t0 = Instant::now();
        let mut s = sample(t0, 0, 0, 200);
        s.started = s.scheduled + Duration::from_millis(300);
        s.sent = s.started;
        s.end = s.sent + Duration::from_millis(10);
        let mut st = Stats::default();
        st.record(&s);
        let series = &st.series[&s.key];
        assert!(series.duration.max() >= 309_000);
        assert!(series.service.max() < 11_000);
        assert!(series.schedule_lag.max() >= 299_000);
        assert!(series.blocked.max() < 1_000);
    }

    #[test]
    fn waiting_for_a_connection_is_blocked_time_not_schedule_lag() {
        let t0 = Instant::now();
        let mut s = sample(t0, 0, 0, 200);
        s.started = s.scheduled + Duration::from_micros(40);
        s.sent = s.started + Duration::from_millis(200);
        s.end = s.sent + Duration::from_millis(10);
        let mut st = Stats::default();
        st.record(&s);
        let series = &st.series[&s.key];
        assert!(series.schedule_lag.max() < 100);
        assert!((199_000..201_000).contains(&series.blocked.max()));
        // The open-model latency still counts the wait.
        assert!(series.duration.max() >= 210_000);
    }

    #[test]
    fn failures_are_counted_by_cause_per_series_and_merge_exactly() {
        let t0 = Instant::now();
        let r = Recorder::new(t0);
        let failed = |request| Measurement {
            key: SeriesKey {
                scenario: 0,
                request,
                status: 0,
                phase: 0,
            },
            ..sample(t0, 0, 500, 0)
        };
        r.record_failure(&failed(0), ErrorCause::Timeout);
        r.record_failure(&failed(0), ErrorCause::Timeout);
        r.record_failure(&failed(1), ErrorCause::Reset);
        r.record(&sample(t0, 0, 500, 503));
        r.note_failure(ErrorCause::Reset, "connection reset by peer");
        r.note_failure(ErrorCause::Reset, "a later detail is not kept");
        assert_eq!(
            r.first_failure(ErrorCause::Reset).as_deref(),
            Some("connection reset by peer")
        );
        assert_eq!(r.first_failure(ErrorCause::Timeout), None);

        let mut merged = Stats::default();
        for (_, s) in r.drain() {
            merged.merge(&s);
            merged.merge(&s);
        }
        let all = merged.error_counts(|_| true);
        assert_eq!(all.get(ErrorCause::Timeout), 4);
        assert_eq!(all.get(ErrorCause::Reset), 2);
        assert_eq!(all.total(), 6);
        let first = merged.error_counts(|k| k.request == 0);
        assert_eq!(
            first.iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>(),
            vec![(ErrorCause::Timeout, 4)]
        );
        // Failed samples are requests like any other; a 503 has no cause.
        let requests: u64 = merged.series.values().map(|s| s.requests).sum();
        assert_eq!(requests, 8);
    }

    proptest! {
        #[test]
        fn merged_histogram_equals_histogram_of_all_samples(
            parts in proptest::collection::vec(proptest::collection::vec(1u64..10_000_000, 0..200), 1..6)
        ) {
            let mut all = new_hist();
            let mut merged = Stats::default();
            let t0 = Instant::now();
            for part in &parts {
                let mut st = Stats::default();
                for &v in part {
                    let _ = all.record(v);
                    st.record(&sample(t0, 0, v, 200));
                }
                merged.merge(&st);
            }
            let n: u64 = parts.iter().map(|p| p.len() as u64).sum();
            if n == 0 {
                prop_assert!(merged.series.is_empty());
            } else {
                let s = &merged.series.values().next().map(|s| s.duration.clone()).unwrap_or_else(new_hist);
                prop_assert_eq!(s.len(), all.len());
                prop_assert_eq!(s.max(), all.max());
                prop_assert_eq!(s.min(), all.min());
                for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                    prop_assert_eq!(s.value_at_quantile(q), all.value_at_quantile(q));
                }
                prop_assert_eq!(merged.series.values().map(|s| s.requests).sum::<u64>(), n);
                prop_assert_eq!(merged.series.values().map(|s| s.data_sent).sum::<u64>(), n * 10);
                let it: u64 = merged.scenarios.values().map(|c| c.iterations).sum();
                prop_assert_eq!(it, n);
            }
        }
    }
}
