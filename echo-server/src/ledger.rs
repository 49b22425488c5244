//! Run accounting: for requests that name their run in [`RUN_HEADER`], what they produced
//! and what became of it. Per run, a [`RunAccount`] (requests, and per signal the items
//! emitted, accepted, refused, dropped and chaos-dropped); per trace id, a [`TraceFate`].
//!
//! Items are counted as emitted when their request completes, before they are queued, and
//! settled when the export batch that carried them gets its final answer (after the
//! exporter's retries): each export batch carries marks saying which run ([`RunKey`]) and
//! trace its items belong to. Both tables are bounded: [`MAX_RUNS`] runs (least
//! recently used forgotten first), [`MAX_FATES`] trace ids for at most [`FATE_RETENTION`]
//! (oldest forgotten first), so memory stays flat however long the server runs.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use opentelemetry::trace::TraceId;

use crate::contract::{
    Fate, MAX_RUN_ID_LEN, RUN_HEADER, RunAccount, RunExports, TraceFate, TraceFates,
};
use crate::otlp::transport::Signal;

/// Runs tracked at once; a new run evicts the least recently used one (its counts are
/// then gone: `GET /runs/{run}` answers zeros).
pub const MAX_RUNS: usize = 32;

/// Trace ids whose fates are remembered at once, over all runs; beyond it the oldest are
/// forgotten first. Memory: 88 bytes an entry plus its index, some 36 MB when full and at
/// most about 50 MB once the indexes have doubled under churn (then they rehash in place).
pub const MAX_FATES: usize = 262_144;

/// How long a trace id's fate is remembered after its request completed: longer than any
/// verifier's settle timeout, short enough that a long soak does not grow memory.
pub const FATE_RETENTION: Duration = Duration::from_secs(10 * 60);

/// Independent locks over the fates (by trace id), so that requests completing on
/// different threads rarely wait for each other; each shard holds `MAX_FATES / 16`.
const FATE_SHARDS: usize = 16;

/// Whether `id` is a run id: 1 to [`MAX_RUN_ID_LEN`] characters of `[A-Za-z0-9._-]`.
pub fn is_run_id(id: &[u8]) -> bool {
    (1..=MAX_RUN_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A run's place in the run table: its slot and the generation that registered it there
/// (a slot reused for another run has another generation, so late answers for the evicted
/// run are not counted for the new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunKey {
    slot: u8,
    generation: u32,
}

/// A tracked request's run: its key and its counters (held, so that counting at
/// completion needs no second table lookup).
#[derive(Debug, Clone)]
pub struct Tracked {
    /// Where the run sits in the table.
    pub key: RunKey,
    counters: Arc<RunCounters>,
}

/// What a batch carries per run and trace: `items` consecutive items of trace `trace` of
/// run `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) run: RunKey,
    pub(crate) trace: TraceId,
    pub(crate) items: u32,
}

/// Items of one request, per signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Items {
    pub(crate) spans: u32,
    pub(crate) logs: u32,
}

impl Items {
    fn get(self, signal: Signal) -> u32 {
        match signal {
            Signal::Traces => self.spans,
            Signal::Logs => self.logs,
        }
    }
}

/// What happened to a request's items before any export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Produced {
    /// Queued for export.
    Emitted,
    /// Refused by a full (or closed) queue, after being counted as emitted.
    Dropped,
    /// Not made at all: chaos `telemetryDrop` (counted as emitted and chaos-dropped).
    ChaosDropped,
}

const SIGNALS: [Signal; 2] = [Signal::Traces, Signal::Logs];

fn index(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Logs => 1,
    }
}

#[derive(Debug, Default)]
struct SignalCounters {
    emitted: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
    chaos_dropped: AtomicU64,
}

impl SignalCounters {
    fn snapshot(&self) -> RunExports {
        RunExports {
            emitted: self.emitted.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            chaos_dropped: self.chaos_dropped.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
struct RunCounters {
    requests: AtomicU64,
    chaos_dropped_requests: AtomicU64,
    signals: [SignalCounters; 2],
    last_refusal: Mutex<Option<String>>,
}

#[derive(Debug)]
struct Slot {
    id: Box<str>,
    generation: u32,
    last_used: AtomicU64,
    counters: Arc<RunCounters>,
}

/// The run table: at most `capacity` runs, the least recently used replaced first.
#[derive(Debug)]
struct Runs {
    slots: RwLock<Vec<Slot>>,
    capacity: usize,
    tick: AtomicU64,
    generations: AtomicU32,
}

impl Runs {
    fn new(capacity: usize) -> Self {
        Self {
            slots: RwLock::new(Vec::new()),
            // Slots are numbered by a u8 and refusals noted in a u64 mask.
            capacity: capacity.clamp(1, 64),
            tick: AtomicU64::new(0),
            generations: AtomicU32::new(0),
        }
    }

    /// The run `id` (a valid run id), registered on first sight.
    fn track(&self, id: &str) -> Tracked {
        let now = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
        let found = |slots: &[Slot]| {
            slots.iter().enumerate().find_map(|(i, s)| {
                (*s.id == *id).then(|| {
                    s.last_used.store(now, Ordering::Relaxed);
                    Tracked {
                        key: RunKey {
                            slot: i as u8,
                            generation: s.generation,
                        },
                        counters: s.counters.clone(),
                    }
                })
            })
        };
        if let Some(t) = found(&read(&self.slots)) {
            return t;
        }
        let mut slots = write(&self.slots);
        if let Some(t) = found(&slots) {
            return t;
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            id: id.into(),
            generation,
            last_used: AtomicU64::new(now),
            counters: Arc::default(),
        };
        let counters = slot.counters.clone();
        let i = if slots.len() < self.capacity {
            slots.push(slot);
            slots.len() - 1
        } else {
            let lru = slots
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed))
                .map_or(0, |(i, _)| i);
            slots[lru] = slot;
            lru
        };
        Tracked {
            key: RunKey {
                slot: i as u8,
                generation,
            },
            counters,
        }
    }

    /// The run `id`'s generation and counters, without registering or touching it.
    fn get(&self, id: &str) -> Option<(u32, Arc<RunCounters>)> {
        read(&self.slots)
            .iter()
            .find(|s| *s.id == *id)
            .map(|s| (s.generation, s.counters.clone()))
    }
}

/// One signal's items of one trace, as [`Fate`] but compact.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    emitted: u32,
    accepted: u32,
    refused: u32,
    dropped: u32,
    chaos_dropped: u32,
    /// Unix ns; 0: never acknowledged.
    acked_at: u64,
}

impl From<Counts> for Fate {
    fn from(c: Counts) -> Self {
        Fate {
            emitted: c.emitted,
            accepted: c.accepted,
            refused: c.refused,
            dropped: c.dropped,
            chaos_dropped: c.chaos_dropped,
            acked_at_unix_nanos: (c.acked_at != 0).then_some(c.acked_at),
        }
    }
}

/// A trace id's bytes: unlike `TraceId` (a `u128`, aligned to 16), they pack.
type TraceBytes = [u8; 16];

#[derive(Debug)]
struct Entry {
    trace: TraceBytes,
    /// Generation of the run that first emitted the trace.
    run: u32,
    /// Seconds since the store's epoch when first emitted.
    born: u32,
    signals: [Counts; 2],
}

/// A ring of entries in the order they were first seen, and an index from trace id to
/// its entry's sequence number (the front's is `first`).
#[derive(Debug, Default)]
struct Shard {
    ring: VecDeque<Entry>,
    index: HashMap<TraceBytes, u64>,
    first: u64,
}

impl Shard {
    fn get_mut(&mut self, trace: &TraceBytes) -> Option<&mut Entry> {
        let seq = *self.index.get(trace)?;
        self.ring.get_mut(usize::try_from(seq - self.first).ok()?)
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.ring.pop_front() {
            self.index.remove(&e.trace);
            self.first += 1;
        }
    }
}

/// Per-trace fates: at most `capacity` ids (split evenly over the shards, each forgetting
/// its oldest first) for at most `retention` each.
#[derive(Debug)]
struct Fates {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    retention_secs: u32,
    epoch: Instant,
}

impl Fates {
    fn new(capacity: usize, shards: usize, retention: Duration) -> Self {
        let shards = shards.max(1);
        Self {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            shard_capacity: (capacity / shards).max(1),
            retention_secs: u32::try_from(retention.as_secs()).unwrap_or(u32::MAX),
            epoch: Instant::now(),
        }
    }

    fn secs(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    fn shard(&self, trace: &TraceBytes) -> &Mutex<Shard> {
        &self.shards[usize::from(trace[15]) % self.shards.len()]
    }

    /// The entry of `trace` (made for run `run` when new, after forgetting entries past
    /// their retention and, while full, the oldest), changed by `f`.
    fn record(&self, trace: TraceId, run: u32, now: Instant, f: impl FnOnce(&mut Entry)) {
        let trace = trace.to_bytes();
        let born = self.secs(now);
        let mut shard = lock(self.shard(&trace));
        if let Some(e) = shard.get_mut(&trace) {
            f(e);
            return;
        }
        while shard
            .ring
            .front()
            .is_some_and(|e| born.saturating_sub(e.born) > self.retention_secs)
        {
            shard.pop_front();
        }
        while shard.ring.len() >= self.shard_capacity {
            shard.pop_front();
        }
        let seq = shard.first + shard.ring.len() as u64;
        shard.index.insert(trace, seq);
        shard.ring.push_back(Entry {
            trace,
            run,
            born,
            signals: [Counts::default(); 2],
        });
        if let Some(e) = shard.ring.back_mut() {
            f(e);
        }
    }

    /// Settles the marked items of remembered traces.
    fn settle(&self, signal: Signal, marks: &[Mark], accepted: bool, unix_nanos: u64) {
        let s = index(signal);
        for m in marks {
            let trace = m.trace.to_bytes();
            let mut shard = lock(self.shard(&trace));
            let Some(e) = shard.get_mut(&trace) else {
                continue;
            };
            let c = &mut e.signals[s];
            if accepted {
                c.accepted = c.accepted.saturating_add(m.items);
                c.acked_at = c.acked_at.max(unix_nanos);
            } else {
                c.refused = c.refused.saturating_add(m.items);
            }
        }
    }

    /// The fate of `trace` if run `run` emitted it and it is still remembered.
    fn get(&self, trace: &TraceId, run: u32, now: Instant) -> Option<TraceFate> {
        let now = self.secs(now);
        let trace = trace.to_bytes();
        let mut shard = lock(self.shard(&trace));
        let e = shard.get_mut(&trace)?;
        if e.run != run || now.saturating_sub(e.born) > self.retention_secs {
            return None;
        }
        let mut hex = [0u8; 32];
        crate::hex_id(&trace, &mut hex);
        Some(TraceFate {
            trace_id: String::from_utf8_lossy(&hex).into_owned(),
            spans: e.signals[0].into(),
            logs: e.signals[1].into(),
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).ring.len()).sum()
    }
}

/// The run table and the trace fates of one server, answering as replica `replica`.
#[derive(Debug)]
pub struct Ledger {
    replica: String,
    runs: Runs,
    fates: Fates,
}

impl Ledger {
    /// An empty ledger with the default bounds ([`MAX_RUNS`], [`MAX_FATES`],
    /// [`FATE_RETENTION`]).
    pub fn new(replica: impl Into<String>) -> Self {
        Self::with_bounds(replica, MAX_RUNS, MAX_FATES, FATE_RETENTION)
    }

    fn with_bounds(
        replica: impl Into<String>,
        runs: usize,
        fates: usize,
        retention: Duration,
    ) -> Self {
        let shards = if fates >= FATE_SHARDS * 1024 {
            FATE_SHARDS
        } else {
            1
        };
        Self {
            replica: replica.into(),
            runs: Runs::new(runs),
            fates: Fates::new(fates, shards, retention),
        }
    }

    /// The replica name the ledger answers with.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The run a request names in [`RUN_HEADER`], registered on first sight; `None`
    /// without the header or with an invalid run id (not tracked, never an error).
    pub fn track(&self, headers: &HeaderMap) -> Option<Tracked> {
        const RUN: http::HeaderName = http::HeaderName::from_static(RUN_HEADER);
        let id = headers.get(RUN)?.as_bytes();
        if !is_run_id(id) {
            return None;
        }
        // A valid run id is ASCII.
        Some(self.runs.track(std::str::from_utf8(id).ok()?))
    }

    /// Counts a served workload request of the run; `chaos_dropped` when chaos dropped its
    /// telemetry.
    pub(crate) fn served(&self, run: &Tracked, chaos_dropped: bool) {
        run.counters.requests.fetch_add(1, Ordering::Relaxed);
        if chaos_dropped {
            run.counters
                .chaos_dropped_requests
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts the items of one request of the run, of trace `trace`.
    pub(crate) fn produced(&self, run: &Tracked, trace: TraceId, what: Produced, items: Items) {
        if items == Items::default() {
            return;
        }
        for signal in SIGNALS {
            let n = u64::from(items.get(signal));
            let c = &run.counters.signals[index(signal)];
            match what {
                Produced::Emitted => c.emitted.fetch_add(n, Ordering::Relaxed),
                Produced::Dropped => c.dropped.fetch_add(n, Ordering::Relaxed),
                Produced::ChaosDropped => {
                    c.emitted.fetch_add(n, Ordering::Relaxed);
                    c.chaos_dropped.fetch_add(n, Ordering::Relaxed)
                }
            };
        }
        self.fates
            .record(trace, run.key.generation, Instant::now(), |e| {
                for signal in SIGNALS {
                    let n = items.get(signal);
                    let c = &mut e.signals[index(signal)];
                    match what {
                        Produced::Emitted => c.emitted = c.emitted.saturating_add(n),
                        Produced::Dropped => c.dropped = c.dropped.saturating_add(n),
                        Produced::ChaosDropped => {
                            c.emitted = c.emitted.saturating_add(n);
                            c.chaos_dropped = c.chaos_dropped.saturating_add(n);
                        }
                    }
                }
            });
    }

    /// Settles the marked items of one export batch of `signal` with its final answer:
    /// accepted on `Ok`, refused (with the error noted per run) on `Err`.
    pub(crate) fn settle(&self, signal: Signal, marks: &[Mark], answer: Result<(), &str>) {
        if marks.is_empty() {
            return;
        }
        let s = index(signal);
        {
            let slots = read(&self.runs.slots);
            let mut noted = 0u64;
            for m in marks {
                let Some(slot) = slots
                    .get(usize::from(m.run.slot))
                    .filter(|slot| slot.generation == m.run.generation)
                else {
                    continue;
                };
                let c = &slot.counters.signals[s];
                let n = u64::from(m.items);
                match answer {
                    Ok(()) => c.accepted.fetch_add(n, Ordering::Relaxed),
                    Err(_) => c.refused.fetch_add(n, Ordering::Relaxed),
                };
                if let Err(e) = answer
                    && noted & (1 << m.run.slot) == 0
                {
                    noted |= 1 << m.run.slot;
                    *lock(&slot.counters.last_refusal) = Some(format!("{}: {e}", signal.as_str()));
                }
            }
        }
        self.fates
            .settle(signal, marks, answer.is_ok(), unix_nanos());
    }

    /// `GET /runs/{run}`: the run's account, all zeros when this replica never saw it (or
    /// forgot it).
    pub fn account(&self, run: &str) -> RunAccount {
        let mut account = RunAccount {
            replica: self.replica.clone(),
            run: run.to_owned(),
            ..RunAccount::default()
        };
        if let Some((_, c)) = self.runs.get(run) {
            account.requests = c.requests.load(Ordering::Relaxed);
            account.chaos_dropped_requests = c.chaos_dropped_requests.load(Ordering::Relaxed);
            account.spans = c.signals[0].snapshot();
            account.logs = c.signals[1].snapshot();
            account.last_refusal = lock(&c.last_refusal).clone();
        }
        account
    }

    /// `GET /runs/{run}/traces?ids=…`: the remembered fates of `ids` that run `run` emitted.
    pub fn fates(&self, run: &str, ids: &[TraceId]) -> TraceFates {
        let now = Instant::now();
        let fates = match self.runs.get(run) {
            Some((generation, _)) => ids
                .iter()
                .filter_map(|id| self.fates.get(id, generation, now))
                .collect(),
            None => Vec::new(),
        };
        TraceFates {
            replica: self.replica.clone(),
            run: run.to_owned(),
            fates,
        }
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(run: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RUN_HEADER, run.parse().unwrap());
        h
    }

    fn id(n: u128) -> TraceId {
        TraceId::from(n)
    }

    #[test]
    fn run_ids_are_one_to_sixty_four_safe_characters() {
        for ok in ["a", "run-1", "A.b_c-9", &"x".repeat(64)] {
            assert!(is_run_id(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", "run%20", &"x".repeat(65)] {
            assert!(!is_run_id(bad.as_bytes()), "{bad}");
        }
        let l = Ledger::new("r");
        assert!(l.track(&headers("has space")).is_none());
        assert!(l.track(&HeaderMap::new()).is_none());
        assert!(l.track(&headers("ok")).is_some());
    }

    /// See the brief: the 33rd run evicts the least recently used one, whose counts are
    /// gone; the others keep theirs.
    #[test]
    fn the_thirty_third_run_evicts_the_least_recently_used() {
        let l = Ledger::new("r");
        let runs: Vec<String> = (0..MAX_RUNS).map(|i| format!("run-{i}")).collect();
        let keys: Vec<RunKey> = runs
            .iter()
            .map(|r| {
                let t = l.track(&headers(r)).unwrap();
                l.served(&t, false);
                t.key
            })
            .collect();
        // run-0 is used again: run-1 is now the least recently used.
        let t0 = l.track(&headers("run-0")).unwrap();
        l.served(&t0, false);
        let new = l.track(&headers("run-new")).unwrap();
        l.served(&new, false);
        assert_eq!(l.account("run-1").requests, 0, "run-1 was evicted");
        assert_eq!(l.account("run-0").requests, 2);
        assert_eq!(l.account("run-new").requests, 1);
        for r in &runs[2..] {
            assert_eq!(l.account(r).requests, 1, "{r} kept");
        }
        // The new run took run-1's slot under a new generation: a late answer for a batch
        // of run-1 is not counted for it.
        let old = keys[1];
        assert_eq!(old.slot, new.key.slot);
        assert_ne!(old.generation, new.key.generation);
        let marks = [Mark {
            run: old,
            trace: id(1),
            items: 5,
        }];
        l.settle(Signal::Traces, &marks, Ok(()));
        assert_eq!(l.account("run-new").spans.accepted, 0);
        // And run-1 coming back starts from zero.
        l.track(&headers("run-1")).unwrap();
        assert_eq!(
            l.account("run-1"),
            RunAccount {
                replica: "r".into(),
                run: "run-1".into(),
                ..RunAccount::default()
            }
        );
    }

    #[test]
    fn items_are_settled_per_run_and_trace() {
        let l = Ledger::new("r");
        let a = l.track(&headers("a")).unwrap();
        let b = l.track(&headers("b")).unwrap();
        let items = Items { spans: 3, logs: 1 };
        l.produced(&a, id(1), Produced::Emitted, items);
        l.produced(&a, id(2), Produced::Emitted, items);
        l.produced(&b, id(3), Produced::Emitted, items);
        l.produced(&b, id(3), Produced::Dropped, Items { spans: 1, logs: 0 });
        let mark = |run: &Tracked, trace, items| Mark {
            run: run.key,
            trace: id(trace),
            items,
        };
        l.settle(Signal::Traces, &[mark(&a, 1, 3), mark(&b, 3, 2)], Ok(()));
        l.settle(Signal::Traces, &[mark(&a, 2, 3)], Err("HTTP 429"));
        l.settle(Signal::Logs, &[mark(&a, 1, 1), mark(&a, 2, 1)], Ok(()));
        let acc = l.account("a");
        assert_eq!(
            (acc.spans, acc.logs),
            (
                RunExports {
                    emitted: 6,
                    accepted: 3,
                    refused: 3,
                    ..RunExports::default()
                },
                RunExports {
                    emitted: 2,
                    accepted: 2,
                    ..RunExports::default()
                }
            )
        );
        assert_eq!(acc.last_refusal.as_deref(), Some("traces: HTTP 429"));
        let acc = l.account("b");
        assert_eq!(
            acc.spans,
            RunExports {
                emitted: 3,
                accepted: 2,
                dropped: 1,
                ..RunExports::default()
            }
        );
        let f = l.fates("a", &[id(1), id(2), id(3), id(4)]);
        assert_eq!(f.fates.len(), 2, "3 is b's, 4 unknown: {f:?}");
        let one = &f.fates[0];
        assert_eq!(one.trace_id, format!("{:032x}", 1));
        assert_eq!((one.spans.accepted, one.spans.pending()), (3, 0));
        assert!(one.spans.acked_at_unix_nanos.is_some());
        let two = &f.fates[1];
        assert_eq!((two.spans.refused, two.spans.accepted), (3, 0));
        assert_eq!(two.spans.acked_at_unix_nanos, None);
        assert!(two.logs.acked_at_unix_nanos.is_some());
        let three = &l.fates("b", &[id(3)]).fates[0];
        assert_eq!(
            (
                three.spans.emitted,
                three.spans.accepted,
                three.spans.dropped
            ),
            (3, 2, 1)
        );
        assert!(l.fates("nobody", &[id(1)]).fates.is_empty());
    }

    #[test]
    fn the_fate_store_forgets_the_oldest_beyond_its_capacity() {
        let l = Ledger::with_bounds("r", 4, 100, FATE_RETENTION);
        let t = l.track(&headers("a")).unwrap();
        let one = Items { spans: 1, logs: 1 };
        for n in 1..=150 {
            l.produced(&t, id(n), Produced::Emitted, one);
        }
        assert_eq!(l.fates.len(), 100);
        let all: Vec<TraceId> = (1..=150).map(id).collect();
        let known: Vec<String> = l
            .fates("a", &all)
            .fates
            .into_iter()
            .map(|f| f.trace_id)
            .collect();
        let want: Vec<String> = (51..=150u128).map(|n| format!("{n:032x}")).collect();
        assert_eq!(known, want, "the 50 oldest were forgotten");
        // A repeat of a remembered trace adds to its entry, not a new one.
        l.produced(&t, id(150), Produced::Emitted, one);
        assert_eq!(l.fates.len(), 100);
        assert_eq!(l.fates("a", &[id(150)]).fates[0].spans.emitted, 2);
    }

    #[test]
    fn the_fate_store_forgets_entries_past_their_retention() {
        let fates = Fates::new(100, 1, Duration::from_secs(10));
        let t0 = fates.epoch;
        for n in 1..=5 {
            fates.record(id(n), 7, t0, |e| e.signals[0].emitted += 1);
        }
        let later = t0 + Duration::from_secs(11);
        assert!(fates.get(&id(1), 7, t0).is_some());
        assert!(fates.get(&id(1), 7, later).is_none(), "too old to answer");
        fates.record(id(6), 7, later, |_| {});
        assert_eq!(fates.len(), 1, "the five old entries were dropped");
        assert!(fates.get(&id(6), 7, later).is_some());
        assert!(fates.get(&id(6), 8, later).is_none(), "another run's");
    }

    /// The size [`MAX_FATES`]' memory figure is computed from.
    #[test]
    fn a_fate_entry_stays_compact() {
        assert!(
            std::mem::size_of::<Entry>() <= 88,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    /// Memory stays flat under churn: however many ids pass, each shard holds its share,
    /// its ring never outgrows that and its index at most four slots per entry (one
    /// doubling when deleted slots pile up, then rehashed in place).
    #[test]
    fn sharded_fates_stay_within_the_total_capacity_and_bounded_memory() {
        const PER_SHARD: usize = 64;
        let fates = Fates::new(FATE_SHARDS * PER_SHARD, FATE_SHARDS, FATE_RETENTION);
        let now = Instant::now();
        for round in 0..20u128 {
            for n in round * 10_000..(round + 1) * 10_000 {
                fates.record(id(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)), 1, now, |_| {});
            }
            assert_eq!(fates.len(), FATE_SHARDS * PER_SHARD);
            for s in fates.shards.iter() {
                let s = lock(s);
                assert_eq!(s.ring.len(), s.index.len());
                assert!(s.ring.capacity() <= 2 * PER_SHARD, "{}", s.ring.capacity());
                assert!(
                    s.index.capacity() <= 4 * PER_SHARD,
                    "{}",
                    s.index.capacity()
                );
            }
        }
    }
}
