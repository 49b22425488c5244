//! Polling with exponential backoff, from each request's completion until its telemetry is
//! found (complete) or its settle timeout has passed.
//!
//! Each sample is first asked about at `completed + initial_interval`, then after
//! intervals growing by `factor` up to `max_interval`, and once more exactly at
//! `completed + settle_timeout`. Samples whose polls fall due together are asked about in
//! one [`Verifier::check`] call (up to [`Verifier::max_batch`]; a batching verifier also
//! takes presence samples falling due within the next half backoff ceiling, so a steady
//! stream fills its batches). The final outcome is the last answer's: a sample answered unknown at
//! its deadline stays unknown even if an earlier poll said missing, so "could not ask" is
//! never reported as "not found". A trace found with fewer spans than expected keeps being
//! polled until complete or the deadline.
//!
//! # Latency probes and presence samples
//!
//! Ingest latency is only as good as the first look-up's punctuality: a sample asked late
//! (the query budget was spent) would report the backlog, not the backend. So a verifier
//! that spends a query budget ([`PollPolicy::latency_probes`]) treats at most that many
//! samples per second as *latency probes*: asked on the schedule above, ahead of every
//! other sample. The rest are *presence samples*: first asked at
//! `completed + max_interval` (when most telemetry has long arrived, so one query usually
//! settles them) and never recorded as an ingest latency. A probe any of whose look-ups
//! came more than one initial interval behind its schedule (the budget was spent
//! elsewhere) is counted as "asked late" ([`LatencyUse::FirstAskedLate`]) and its latency
//! is not recorded either: it would measure the backlog.
//!
//! A latency probe is asked on a fine schedule: at 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.2 and
//! 2 initial intervals (25 ms ... 500 ms by default) after its *anchor*, then backing off
//! as above. Without an [`ExportLedger`] the anchor is the completion. With one, the probe
//! first waits (asking the ledger every [`ACK_POLL`], which costs no query budget) until
//! the workload's exporter says the export carrying it was acknowledged, and that instant
//! is the anchor: the backend's part of the ingest latency (acknowledged → queryable) is
//! then measured to within one step (25 ms below 100 ms by default), while the export wait
//! (completion → acknowledged) is the workload's.
//!
//! # The settle budget keeps its word
//!
//! No sample is settled later than `completed + settle_timeout + initial_interval`: one
//! whose look-up could not start by then (the shared budget was spent elsewhere, or the
//! backend did not answer) is settled unknown, "not asked", never missing.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::fate::{Export, ExportLedger};
use super::{Outcome, Sample, Signal, Verifier};

/// When to poll and when to give up.
#[derive(Debug, Clone, PartialEq)]
pub struct PollPolicy {
    /// First poll this long after completion; also the first backoff interval, and the
    /// most a sample's last look-up may be late.
    pub initial_interval: Duration,
    /// Backoff ceiling; also when presence samples are first asked.
    pub max_interval: Duration,
    /// Backoff growth factor (≥ 1).
    pub factor: f64,
    /// Give up (missing or unknown) this long after completion: `telemetry.settleTimeout`.
    pub settle_timeout: Duration,
    /// Most samples pending at once; a sample arriving beyond that is settled unknown.
    pub max_pending: usize,
    /// Latency probes per second, for a verifier that spends a query budget; `None`: every
    /// sample is a latency probe (the embedded sink, the echo-server's `/metrics`).
    pub latency_probes: Option<f64>,
}

impl PollPolicy {
    /// How long a stream verifier must remember an id: a sample is asked about until
    /// `settle_timeout` after its completion, at most one poll late, and its id may arrive
    /// up to a minute before that completion (a long streaming request).
    pub fn retention(&self) -> Duration {
        self.settle_timeout
            .saturating_add(self.max_interval)
            .saturating_add(Duration::from_secs(60))
    }

    /// The look-ups one sample gets when it is never found: its poll instants after
    /// completion (a probe's anchor), the last one at the settle timeout. A probe takes
    /// its fine steps first; a presence sample starts at `max_interval`.
    pub fn schedule(&self, probe: bool) -> Vec<Duration> {
        let factor = self.factor();
        let mut out = Vec::new();
        let (mut at, mut interval) = if probe {
            for t in PROBE_STEPS {
                let at = self.initial_interval * t / 10;
                if at < self.settle_timeout {
                    out.push(at);
                }
            }
            let last = self.initial_interval * PROBE_STEPS[PROBE_STEPS.len() - 1] / 10;
            (
                last.saturating_add(last),
                last.mul_f64(factor).min(self.max_interval),
            )
        } else {
            (self.max_interval, self.initial_interval)
        };
        while at < self.settle_timeout && out.len() < 10_000 {
            out.push(at);
            at = at.saturating_add(interval);
            interval = interval.mul_f64(factor).min(self.max_interval);
            if interval.is_zero() {
                break;
            }
        }
        out.push(self.settle_timeout);
        out
    }

    fn factor(&self) -> f64 {
        if self.factor.is_finite() && self.factor >= 1.0 {
            self.factor
        } else {
            2.0
        }
    }
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_millis(250),
            max_interval: Duration::from_secs(5),
            factor: 2.0,
            settle_timeout: Duration::from_secs(30),
            max_pending: 100_000,
            latency_probes: None,
        }
    }
}

/// The settled verdict on one sample.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The sample.
    pub sample: Sample,
    /// The final outcome (for a trace that was found but never complete: `Found` with its
    /// last span count, and `complete == Some(false)`).
    pub outcome: Outcome,
    /// `first_seen − completed` when found, for a latency probe asked on time.
    pub ingest_latency: Option<Duration>,
    /// For traces: whether the span count reached the expected one.
    pub complete: Option<bool>,
    /// Questions asked about it.
    pub polls: u32,
    /// How its latency counts.
    pub latency: LatencyUse,
    /// What the workload's exporter did with it, when a ledger was asked: for missing
    /// samples, and for latency probes (the acknowledgement instant).
    pub export: Option<Export>,
}

/// Whether a settled sample's ingest latency was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyUse {
    /// A latency probe, first asked on schedule.
    Probe,
    /// A latency probe one of whose look-ups came more than one initial interval behind
    /// its schedule.
    FirstAskedLate,
    /// A presence sample: asked whether it arrived, not when.
    Presence,
}

struct Pending {
    sample: Sample,
    deadline: Instant,
    interval: Duration,
    polls: u32,
    first_seen: Option<Instant>,
    probe: bool,
    late: bool,
    /// Where a probe's fine steps count from (completion, or its acknowledgement).
    anchor: Instant,
    /// The next fine step of a probe.
    step: usize,
    export: Option<Export>,
}

/// A probe's fine schedule, in tenths of the initial interval after its anchor.
const PROBE_STEPS: [u32; 8] = [1, 2, 3, 4, 6, 8, 12, 20];

/// How often a probe waiting for its export's acknowledgement asks the ledger.
pub const ACK_POLL: Duration = Duration::from_millis(20);

/// The longest a probe waits for its acknowledgement before counting from completion.
pub const ACK_WAIT: Duration = Duration::from_secs(2);

/// Ids one ledger question covers.
const LEDGER_BATCH: usize = 256;

/// Found probes per second whose legs are read from the ledger when they settle (where
/// they did not wait for their acknowledgement).
const LEGS_PER_SECOND: u32 = 50;

/// At most [`LEGS_PER_SECOND`] found probes per second of completion get their legs read.
#[derive(Default)]
struct LegBudget {
    second: Option<Instant>,
    taken: u32,
}

impl LegBudget {
    fn take(&mut self, completed: Instant) -> bool {
        match self.second {
            Some(s) if completed < s + Duration::from_secs(1) && completed >= s => {
                self.taken += 1;
                self.taken <= LEGS_PER_SECOND
            }
            _ => {
                self.second = Some(completed);
                self.taken = 1;
                true
            }
        }
    }
}

/// The longest a ledger question may take; an answer after that is unknown.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Polls every sample received on `rx` until settled, calling `on_verified` once per
/// sample and `on_query` with each backend query's duration. Returns when `rx` is closed
/// and nothing is pending, or when `cancel` fires (pending samples then settle as
/// unknown).
///
/// Each turn first takes what has arrived (up to [`DRAIN_PER_TURN`] samples, without
/// waiting), then asks about one batch of due samples (latency probes first), and only
/// waits when neither has work: a steady stream of samples cannot starve the polls, and
/// slow polls cannot stop the channel from draining for longer than one check.
pub async fn run<F, Q>(
    verifier: Arc<dyn Verifier>,
    ledger: Option<Arc<dyn ExportLedger>>,
    mut rx: mpsc::Receiver<Sample>,
    policy: PollPolicy,
    cancel: CancellationToken,
    mut on_verified: F,
    mut on_query: Q,
) where
    F: FnMut(Verified) + Send,
    Q: FnMut(Duration) + Send,
{
    let batch = verifier.max_batch().max(1);
    let signal = verifier.signal();
    // Exemplars are not exported through the workload's OTLP exporter.
    let ledger = ledger.filter(|_| signal != Signal::Metrics);
    let probe_gap = policy
        .latency_probes
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut st = State {
        acks: BinaryHeap::new(),
        // Only a verifier that spends a query budget has few enough probes to time each
        // from its acknowledgement; where every sample is a probe (the embedded sink,
        // which holds telemetry on receipt), legs are read for a few a second at the end.
        awaiting_ack: ledger.is_some() && probe_gap.is_some(),
        legs: LegBudget::default(),
        finals: Vec::new(),
        probes: BinaryHeap::new(),
        presence: BinaryHeap::new(),
        pending: HashMap::new(),
        seq: 0,
        factor: policy.factor(),
        // Probes keep their fine steps; presence samples may be asked early to fill a batch.
        coalesce: if batch > 1 {
            (Duration::ZERO, policy.max_interval / 2)
        } else {
            (Duration::ZERO, Duration::ZERO)
        },
        probe_gap,
        next_probe: None,
        policy,
    };
    let mut open = true;
    loop {
        if cancel.is_cancelled() {
            st.cancel_all(verifier.name(), &mut on_verified);
            return;
        }
        for _ in 0..DRAIN_PER_TURN {
            match rx.try_recv() {
                Ok(sample) => st.admit(sample, &mut on_verified),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // Acknowledgements and look-ups take turns: a steady stream of probes waiting for
        // theirs cannot starve the look-ups.
        if let Some(l) = &ledger {
            st.ask_acks(l.as_ref(), signal).await;
        }
        let due = st.take_due(batch, verifier.name());
        if !st.finals.is_empty() {
            st.flush(ledger.as_deref(), signal, &mut on_verified).await;
        }
        if !due.is_empty() {
            let samples: Vec<Sample> = due
                .iter()
                .filter_map(|id| st.pending.get(id).map(|p| p.sample.clone()))
                .collect();
            let asked = Instant::now();
            // The latest instant any of these may still settle.
            let bound = due
                .iter()
                .filter_map(|id| st.pending.get(id).map(|p| st.bound(p)))
                .max()
                .unwrap_or(asked);
            let check = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    st.cancel_all(verifier.name(), &mut on_verified);
                    return;
                }
                c = verifier.check(&samples) => Some(c),
                () = tokio::time::sleep_until(bound.into()) => None,
            };
            match check {
                Some(check) => {
                    for d in &check.query_durations {
                        on_query(*d);
                    }
                    st.settle(verifier.name(), due, check.outcomes);
                }
                None => {
                    let reason = format!(
                        "{} did not answer by the settle timeout plus one poll interval \
                         (the query budget was spent, or the backend is slow): not asked in time",
                        verifier.name()
                    );
                    for id in due {
                        if let Some(p) = st.pending.remove(&id) {
                            st.finals.push(p.settled(Outcome::unknown(reason.clone())));
                        }
                    }
                }
            }
            st.flush(ledger.as_deref(), signal, &mut on_verified).await;
            continue;
        }
        if !open && st.pending.is_empty() {
            return;
        }
        let next_due = st.next_due();
        tokio::select! {
            biased;
            () = cancel.cancelled() => {}
            msg = rx.recv(), if open => match msg {
                Some(sample) => st.admit(sample, &mut on_verified),
                None => open = false,
            },
            () = sleep_until_opt(next_due) => {}
        }
    }
}

/// Samples taken from the channel per turn before the due polls get their turn.
pub const DRAIN_PER_TURN: usize = 4096;

type Heap = BinaryHeap<Reverse<(Instant, u64)>>;

struct State {
    /// Probes waiting for their export's acknowledgement.
    acks: Heap,
    /// Whether new probes wait for an acknowledgement (a ledger is there).
    awaiting_ack: bool,
    /// Settled samples waiting for their ledger entry before they are reported.
    finals: Vec<Verified>,
    /// Found probes whose export legs are still read at the end, a few a second.
    legs: LegBudget,
    probes: Heap,
    presence: Heap,
    pending: HashMap<u64, Pending>,
    seq: u64,
    factor: f64,
    /// How far ahead a batching verifier takes not-yet-due probes and presence samples.
    coalesce: (Duration, Duration),
    /// Spacing of latency probes; `None`: every sample is one.
    probe_gap: Option<Duration>,
    /// When the next latency probe may be taken.
    next_probe: Option<Instant>,
    policy: PollPolicy,
}

impl Pending {
    fn settled(self, outcome: Outcome) -> Verified {
        let latency = self.latency_use();
        Verified {
            sample: self.sample,
            outcome,
            ingest_latency: None,
            complete: None,
            polls: self.polls,
            latency,
            export: self.export,
        }
    }

    fn latency_use(&self) -> LatencyUse {
        match (self.probe, self.late) {
            (false, _) => LatencyUse::Presence,
            (true, true) => LatencyUse::FirstAskedLate,
            (true, false) => LatencyUse::Probe,
        }
    }
}

impl State {
    /// The latest instant a sample may still be asked: its deadline plus one initial
    /// interval.
    fn bound(&self, p: &Pending) -> Instant {
        p.deadline + self.policy.initial_interval
    }

    fn admit<F: FnMut(Verified)>(&mut self, sample: Sample, on_verified: &mut F) {
        if self.pending.len() >= self.policy.max_pending {
            let outcome = Outcome::unknown(format!(
                "{} pending samples already (max_pending): this one was not verified",
                self.policy.max_pending
            ));
            on_verified(Verified {
                sample,
                outcome,
                ingest_latency: None,
                complete: None,
                polls: 0,
                latency: LatencyUse::Presence,
                export: None,
            });
            return;
        }
        let probe = match self.probe_gap {
            None => true,
            Some(gap) => {
                let now = sample.completed;
                let free = self.next_probe.is_none_or(|t| now >= t);
                if free {
                    self.next_probe = Some(now + gap);
                }
                free
            }
        };
        let deadline = sample.completed + self.policy.settle_timeout;
        let first_step = self.step(0);
        let (heap, first) = match (probe, self.awaiting_ack) {
            (true, true) => (&mut self.acks, sample.completed + ACK_POLL),
            (true, false) => (&mut self.probes, sample.completed + first_step),
            (false, _) => (
                &mut self.presence,
                sample.completed + self.policy.max_interval,
            ),
        };
        heap.push(Reverse((first.min(deadline), self.seq)));
        let (interval, anchor) = (self.policy.initial_interval, sample.completed);
        self.pending.insert(
            self.seq,
            Pending {
                sample,
                deadline,
                interval,
                polls: 0,
                first_seen: None,
                probe,
                late: false,
                anchor,
                step: 0,
                export: None,
            },
        );
        self.seq += 1;
    }

    /// The `i`-th fine step of a probe after its anchor.
    fn step(&self, i: usize) -> Duration {
        PROBE_STEPS
            .get(i)
            .map_or(Duration::MAX, |t| self.policy.initial_interval * *t / 10)
    }

    /// Asks the ledger about the probes whose acknowledgement is due to be checked; true
    /// when it asked. An acknowledged probe is scheduled on its fine steps from the
    /// acknowledgement; one refused, dropped or waited for too long from its completion.
    async fn ask_acks(&mut self, ledger: &dyn ExportLedger, signal: Signal) -> bool {
        let now = Instant::now();
        let mut ids = Vec::new();
        while ids.len() < LEDGER_BATCH {
            match self.acks.peek() {
                Some(Reverse((t, id))) if *t <= now => {
                    ids.push(*id);
                    self.acks.pop();
                }
                _ => break,
            }
        }
        if ids.is_empty() {
            return false;
        }
        let samples: Vec<Sample> = ids
            .iter()
            .filter_map(|id| self.pending.get(id).map(|p| p.sample.clone()))
            .collect();
        let fates = tokio::time::timeout(LEDGER_TIMEOUT, ledger.fates(signal, &samples))
            .await
            .unwrap_or_default();
        let mut fates = fates.into_iter();
        let now = Instant::now();
        for id in ids {
            let fate = fates.next().unwrap_or(Export::Unknown);
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            let waited_out = now >= p.sample.completed + ACK_WAIT || now >= p.deadline;
            match fate {
                Export::Accepted { acked_at } => {
                    let after = acked_at
                        .duration_since(p.sample.completed_at)
                        .unwrap_or_default();
                    p.anchor = p.sample.completed + after;
                    p.export = Some(fate);
                }
                Export::Pending | Export::Unknown if !waited_out => {
                    self.acks
                        .push(Reverse(((now + ACK_POLL).min(p.deadline), id)));
                    continue;
                }
                other => {
                    if other.is_decided() {
                        p.export = Some(other);
                    }
                    p.anchor = p.sample.completed;
                }
            }
            let (anchor, ii) = (p.anchor, self.policy.initial_interval);
            let step_at = |i: usize| anchor + ii * PROBE_STEPS[i] / 10;
            let mut step = 0;
            while step < PROBE_STEPS.len() && step_at(step) <= now {
                step += 1;
            }
            let at = if step < PROBE_STEPS.len() {
                step_at(step)
            } else {
                now
            };
            let step = step.min(PROBE_STEPS.len() - 1);
            p.step = step;
            self.probes.push(Reverse((at.min(p.deadline), id)));
        }
        true
    }

    /// Reports the settled samples, after asking the ledger what the exporter did with the
    /// missing ones and with probes whose acknowledgement is not known yet.
    async fn flush<F: FnMut(Verified)>(
        &mut self,
        ledger: Option<&dyn ExportLedger>,
        signal: Signal,
        on_verified: &mut F,
    ) {
        let mut finals = std::mem::take(&mut self.finals);
        if let Some(ledger) = ledger {
            let legs = &mut self.legs;
            let asks: Vec<usize> = finals
                .iter()
                .enumerate()
                .filter(|(_, v)| {
                    if v.export.is_some_and(|e| e.is_decided()) {
                        return false;
                    }
                    // Every missing sample (the split needs each); found probes while
                    // the leg budget lasts.
                    v.outcome == Outcome::Missing
                        || (v.latency == LatencyUse::Probe
                            && v.outcome.is_found()
                            && legs.take(v.sample.completed))
                })
                .map(|(i, _)| i)
                .collect();
            for chunk in asks.chunks(LEDGER_BATCH) {
                let samples: Vec<Sample> =
                    chunk.iter().map(|i| finals[*i].sample.clone()).collect();
                let fates = tokio::time::timeout(LEDGER_TIMEOUT, ledger.fates(signal, &samples))
                    .await
                    .unwrap_or_default();
                for (i, fate) in chunk.iter().zip(fates) {
                    finals[*i].export = Some(fate);
                }
            }
        }
        for v in finals {
            on_verified(v);
        }
    }

    fn next_due(&self) -> Option<Instant> {
        [&self.acks, &self.probes, &self.presence]
            .iter()
            .filter_map(|h| h.peek().map(|Reverse((t, _))| *t))
            .min()
    }

    /// Up to `batch` due samples, latency probes first. Samples already past their bound
    /// are settled unknown ("not asked") instead of being asked.
    fn take_due(&mut self, batch: usize, name: &str) -> Vec<u64> {
        let now = Instant::now();
        let mut due = Vec::new();
        for probes in [true, false] {
            let horizon = now
                + if probes {
                    self.coalesce.0
                } else {
                    self.coalesce.1
                };
            while due.len() < batch {
                let heap = if probes {
                    &mut self.probes
                } else {
                    &mut self.presence
                };
                match heap.peek() {
                    Some(Reverse((t, id))) if *t <= horizon => {
                        let (t, id) = (*t, *id);
                        heap.pop();
                        match self.pending.get(&id) {
                            Some(p) if self.bound(p) < now => {
                                if let Some(p) = self.pending.remove(&id) {
                                    let reason = not_asked(name, &p);
                                    self.finals.push(p.settled(Outcome::unknown(reason)));
                                }
                            }
                            Some(_) => {
                                // A look-up more than one initial interval behind its
                                // schedule measures the backlog, not the backend.
                                if now > t + self.policy.initial_interval
                                    && let Some(p) = self.pending.get_mut(&id)
                                {
                                    p.late = true;
                                }
                                due.push(id);
                            }
                            None => {}
                        }
                    }
                    _ => break,
                }
            }
        }
        due
    }

    fn cancel_all<F: FnMut(Verified)>(&mut self, name: &str, on_verified: &mut F) {
        let reason = format!("verification by {name} cancelled before the sample settled");
        for v in self.finals.drain(..) {
            on_verified(v);
        }
        for (_, p) in self.pending.drain() {
            on_verified(p.settled(Outcome::unknown(reason.clone())));
        }
        self.acks.clear();
        self.probes.clear();
        self.presence.clear();
    }

    fn settle(&mut self, name: &str, due: Vec<u64>, outcomes: Vec<Outcome>) {
        let answered = Instant::now();
        let mut outcomes = outcomes.into_iter();
        for id in due {
            let outcome = outcomes.next().unwrap_or_else(|| {
                Outcome::unknown(format!("{name} returned fewer outcomes than samples asked"))
            });
            let Some(mut p) = self.pending.remove(&id) else {
                continue;
            };
            p.polls += 1;
            let expected = p.sample.expected_spans;
            let last_poll = answered >= p.deadline;
            match outcome {
                Outcome::Found {
                    first_seen,
                    spans,
                    extra_spans,
                    recorded_at,
                } => {
                    let first = *p.first_seen.get_or_insert(first_seen);
                    let complete = spans.map(|n| n >= expected);
                    if complete == Some(false) && !last_poll {
                        self.reschedule(id, p, answered);
                        continue;
                    }
                    let latency = p.latency_use();
                    let ingest_latency = (latency == LatencyUse::Probe)
                        .then(|| first.saturating_duration_since(p.sample.completed));
                    let outcome = Outcome::Found {
                        first_seen: first,
                        spans,
                        extra_spans,
                        recorded_at,
                    };
                    self.finals.push(Verified {
                        sample: p.sample,
                        outcome,
                        ingest_latency,
                        complete,
                        polls: p.polls,
                        latency,
                        export: p.export,
                    });
                }
                // Superseded is final at once: an older exemplar never reappears once a
                // newer one shows.
                other if last_poll || other == Outcome::Superseded => {
                    self.finals.push(p.settled(other));
                }
                _ => self.reschedule(id, p, answered),
            }
        }
    }

    fn reschedule(&mut self, id: u64, mut p: Pending, now: Instant) {
        let next = if p.probe && p.step + 1 < PROBE_STEPS.len() {
            // The next fine step after the anchor that is still ahead.
            p.step += 1;
            while p.step + 1 < PROBE_STEPS.len() && p.anchor + self.step(p.step) <= now {
                p.step += 1;
            }
            (p.anchor + self.step(p.step)).max(now)
        } else {
            if p.probe && p.step + 1 == PROBE_STEPS.len() {
                // Past the fine steps: back off from the last one's spacing.
                p.step += 1;
                p.interval = self.step(PROBE_STEPS.len() - 1);
            }
            let next = (now + p.interval).max(now);
            p.interval = p
                .interval
                .mul_f64(self.factor)
                .min(self.policy.max_interval);
            next
        };
        let next = next.min(p.deadline);
        if p.probe {
            self.probes.push(Reverse((next, id)));
        } else {
            self.presence.push(Reverse((next, id)));
        }
        self.pending.insert(id, p);
    }
}

/// Why a sample was settled unknown without its last look-up.
fn not_asked(name: &str, p: &Pending) -> String {
    if p.polls == 0 {
        format!(
            "not asked: {name}'s share of the query budget (maxQueriesPerSecond) was spent \
             before this sample's settle timeout"
        )
    } else {
        format!(
            "not asked at its deadline: {name}'s share of the query budget \
             (maxQueriesPerSecond) was spent; an earlier look-up had not found it"
        )
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Verifies a fixed set of samples to the end; the results in no particular order, plus
/// every query's duration. For tests and one-shot checks.
pub async fn verify_all(
    verifier: Arc<dyn Verifier>,
    samples: Vec<Sample>,
    policy: PollPolicy,
) -> (Vec<Verified>, Vec<Duration>) {
    let (tx, rx) = mpsc::channel(samples.len().max(1));
    for s in samples {
        // Capacity equals the number of samples, so this cannot fail.
        let _ = tx.try_send(s);
    }
    drop(tx);
    let mut out = Vec::new();
    let mut queries = Vec::new();
    run(
        verifier,
        None,
        rx,
        policy,
        CancellationToken::new(),
        |v| out.push(v),
        |d| queries.push(d),
    )
    .await;
    (out, queries)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::{BoxFuture, Check, Signal, TraceId};
    use super::*;

    /// Answers from a script per call: missing twice, then found with 1 span, then 3.
    #[derive(Debug)]
    struct Scripted {
        calls: Mutex<u32>,
        unknown: bool,
    }

    impl Verifier for Scripted {
        fn signal(&self) -> Signal {
            Signal::Traces
        }
        fn name(&self) -> &str {
            "scripted"
        }
        fn check<'a>(&'a self, samples: &'a [Sample]) -> BoxFuture<'a, Check> {
            Box::pin(async move {
                let n = {
                    let mut c = self.calls.lock().unwrap();
                    *c += 1;
                    *c
                };
                let o = if self.unknown {
                    if n == 1 {
                        Outcome::Missing
                    } else {
                        Outcome::unknown("backend down")
                    }
                } else {
                    match n {
                        1 | 2 => Outcome::Missing,
                        3 => Outcome::Found {
                            first_seen: Instant::now(),
                            spans: Some(1),
                            extra_spans: None,
                            recorded_at: None,
                        },
                        _ => Outcome::Found {
                            first_seen: Instant::now(),
                            spans: Some(3),
                            extra_spans: None,
                            recorded_at: None,
                        },
                    }
                };
                Check {
                    outcomes: vec![o; samples.len()],
                    query_durations: vec![Duration::from_millis(1)],
                }
            })
        }
    }

    fn fast() -> PollPolicy {
        PollPolicy {
            initial_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(40),
            settle_timeout: Duration::from_millis(400),
            ..PollPolicy::default()
        }
    }

    fn sample(spans: usize) -> Sample {
        Sample {
            expected_spans: spans,
            ..Sample::now(TraceId([7; 16]))
        }
    }

    #[tokio::test]
    async fn polls_until_the_trace_is_complete_and_keeps_the_first_sighting() {
        let v = Arc::new(Scripted {
            calls: Mutex::new(0),
            unknown: false,
        });
        let (out, queries) = verify_all(v, vec![sample(3)], fast()).await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].polls, 4);
        assert_eq!(out[0].complete, Some(true));
        assert!(matches!(
            out[0].outcome,
            Outcome::Found { spans: Some(3), .. }
        ));
        assert_eq!(queries.len(), 4);
        // First seen at the third poll: the third fine step, 3 ms after completion.
        assert!(out[0].ingest_latency.unwrap() >= Duration::from_millis(3));
    }

    #[tokio::test]
    async fn an_unknown_last_answer_is_never_reported_as_missing() {
        let v = Arc::new(Scripted {
            calls: Mutex::new(0),
            unknown: true,
        });
        let (out, _) = verify_all(v, vec![sample(1)], fast()).await;
        assert_eq!(out[0].outcome, Outcome::unknown("backend down"));
    }

    #[tokio::test]
    async fn cancelling_settles_pending_samples_as_unknown() {
        let v: Arc<dyn Verifier> = Arc::new(Scripted {
            calls: Mutex::new(0),
            unknown: true,
        });
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(sample(1)).unwrap();
        let cancel = CancellationToken::new();
        let out = Arc::new(Mutex::new(Vec::new()));
        let o2 = out.clone();
        let task = tokio::spawn(run(
            v,
            None,
            rx,
            fast(),
            cancel.clone(),
            move |x| o2.lock().unwrap().push(x),
            |_| {},
        ));
        tokio::time::sleep(Duration::from_millis(30)).await;
        cancel.cancel();
        task.await.unwrap();
        let out = out.lock().unwrap();
        assert!(
            matches!(&out[0].outcome, Outcome::Unknown { reason } if reason.contains("cancelled"))
        );
        drop(tx);
    }

    /// Never finds anything; every sample costs one slot of a shared budget.
    #[derive(Debug)]
    struct NeverFound {
        limiter: crate::RateLimiter,
        asked: Mutex<u32>,
    }

    impl Verifier for NeverFound {
        fn signal(&self) -> Signal {
            Signal::Traces
        }
        fn name(&self) -> &str {
            "never"
        }
        fn check<'a>(&'a self, samples: &'a [Sample]) -> BoxFuture<'a, Check> {
            Box::pin(async move {
                let mut check = Check::default();
                for _ in samples {
                    self.limiter.acquire().await;
                    *self.asked.lock().unwrap() += 1;
                    check.outcomes.push(Outcome::Missing);
                    check.query_durations.push(Duration::from_millis(1));
                }
                check
            })
        }
    }

    #[tokio::test]
    async fn the_settle_wait_never_outlasts_the_settle_timeout_plus_one_poll() {
        // 200 samples at 10 queries/s would take 20 s to ask once each; settle is 300 ms.
        let v = Arc::new(NeverFound {
            limiter: crate::RateLimiter::per_second(10.0).unwrap(),
            asked: Mutex::new(0),
        });
        let policy = PollPolicy {
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_millis(100),
            settle_timeout: Duration::from_millis(300),
            ..PollPolicy::default()
        };
        let start = Instant::now();
        let samples = (0..200u8).map(|i| sample_id(i, 1)).collect();
        let (out, _) = verify_all(v.clone(), samples, policy).await;
        let took = start.elapsed();
        assert_eq!(out.len(), 200);
        // Bound: 300 ms + 50 ms, plus generous room for a loaded machine; far from 20 s.
        assert!(took < Duration::from_secs(4), "settled after {took:?}");
        let not_asked = out
            .iter()
            .filter(|v| matches!(&v.outcome, Outcome::Unknown { reason } if reason.contains("not asked")))
            .count();
        let missing = out.iter().filter(|v| v.outcome == Outcome::Missing).count();
        assert!(not_asked > 150, "{not_asked} not asked, {missing} missing");
        // Only samples asked at their deadline may be missing.
        assert!(missing <= *v.asked.lock().unwrap() as usize);
        assert_eq!(not_asked + missing, 200);
    }

    fn sample_id(i: u8, spans: usize) -> Sample {
        let mut id = [1; 16];
        id[15] = i;
        Sample {
            expected_spans: spans,
            ..Sample::now(TraceId(id))
        }
    }

    /// Finds every sample at once.
    #[derive(Debug)]
    struct AlwaysFound;

    impl Verifier for AlwaysFound {
        fn signal(&self) -> Signal {
            Signal::Traces
        }
        fn name(&self) -> &str {
            "always"
        }
        fn max_batch(&self) -> usize {
            64
        }
        fn check<'a>(&'a self, samples: &'a [Sample]) -> BoxFuture<'a, Check> {
            Box::pin(async move {
                let o = Outcome::Found {
                    first_seen: Instant::now(),
                    spans: Some(1),
                    extra_spans: None,
                    recorded_at: None,
                };
                Check {
                    outcomes: vec![o; samples.len()],
                    query_durations: vec![Duration::from_millis(1)],
                }
            })
        }
    }

    #[tokio::test]
    async fn a_budgeted_verifier_measures_latency_on_probes_only() {
        // 40 samples completed within 100 ms, probes at 2/s: the first is a probe, the
        // rest are asked for presence at max_interval and carry no ingest latency.
        let policy = PollPolicy {
            initial_interval: Duration::from_millis(20),
            max_interval: Duration::from_millis(100),
            settle_timeout: Duration::from_millis(500),
            latency_probes: Some(2.0),
            ..PollPolicy::default()
        };
        let now = Instant::now();
        let samples = (0..40u8)
            .map(|i| Sample {
                completed: now + Duration::from_millis(u64::from(i) * 2),
                ..sample_id(i, 1)
            })
            .collect();
        let (out, _) = verify_all(Arc::new(AlwaysFound), samples, policy).await;
        let probes: Vec<_> = out
            .iter()
            .filter(|v| v.latency == LatencyUse::Probe)
            .collect();
        assert_eq!(
            probes.len(),
            1,
            "{:?}",
            out.iter().map(|v| v.latency).collect::<Vec<_>>()
        );
        assert!(probes[0].ingest_latency.is_some());
        let presence: Vec<_> = out
            .iter()
            .filter(|v| v.latency == LatencyUse::Presence)
            .collect();
        assert_eq!(presence.len(), 39);
        assert!(
            presence
                .iter()
                .all(|v| v.ingest_latency.is_none() && v.outcome.is_found())
        );
        // Presence samples were asked once, late, when they had long arrived.
        assert!(presence.iter().all(|v| v.polls == 1));
    }

    /// Takes 300 ms to answer its first call, then finds everything at once.
    #[derive(Debug)]
    struct SlowFirst {
        calls: Mutex<u32>,
    }

    impl Verifier for SlowFirst {
        fn signal(&self) -> Signal {
            Signal::Traces
        }
        fn name(&self) -> &str {
            "slow"
        }
        fn check<'a>(&'a self, samples: &'a [Sample]) -> BoxFuture<'a, Check> {
            Box::pin(async move {
                let first = {
                    let mut c = self.calls.lock().unwrap();
                    *c += 1;
                    *c == 1
                };
                if first {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                AlwaysFound.check(samples).await
            })
        }
    }

    #[tokio::test]
    async fn a_probe_asked_late_records_no_ingest_latency() {
        // Two probes due at 20 ms; the first look-up blocks the lane for 300 ms, so the
        // second is first asked ~280 ms late: found, but its latency would be the backlog.
        let policy = PollPolicy {
            initial_interval: Duration::from_millis(20),
            max_interval: Duration::from_millis(100),
            settle_timeout: Duration::from_secs(2),
            ..PollPolicy::default()
        };
        let samples = vec![sample_id(1, 1), sample_id(2, 1)];
        let v = Arc::new(SlowFirst {
            calls: Mutex::new(0),
        });
        let (out, _) = verify_all(v, samples, policy).await;
        let late: Vec<_> = out
            .iter()
            .filter(|v| v.latency == LatencyUse::FirstAskedLate)
            .collect();
        assert_eq!(late.len(), 1);
        assert!(late[0].outcome.is_found() && late[0].ingest_latency.is_none());
        let mut t = crate::Tally::new(Signal::Traces);
        for v in &out {
            t.record(v);
        }
        assert_eq!(
            (t.found, t.first_asked_late, t.ingest_latency.len()),
            (2, 1, 1)
        );
    }

    /// Acknowledges each sample's export 100 ms after its completion (pending before),
    /// and refuses the export of odd ids.
    #[derive(Debug)]
    struct Ledger;

    impl ExportLedger for Ledger {
        fn fates<'a>(&'a self, _: Signal, samples: &'a [Sample]) -> BoxFuture<'a, Vec<Export>> {
            Box::pin(async move {
                samples
                    .iter()
                    .map(|s| {
                        let acked_at = s.completed_at + Duration::from_millis(100);
                        if s.trace_id.0[15] % 2 == 1 {
                            Export::Refused
                        } else if std::time::SystemTime::now() >= acked_at {
                            Export::Accepted { acked_at }
                        } else {
                            Export::Pending
                        }
                    })
                    .collect()
            })
        }
    }

    /// Holds even ids from 50 ms after their acknowledgement (150 ms after completion).
    #[derive(Debug)]
    struct QueryableAfterAck;

    impl Verifier for QueryableAfterAck {
        fn signal(&self) -> Signal {
            Signal::Traces
        }
        fn name(&self) -> &str {
            "stub"
        }
        fn check<'a>(&'a self, samples: &'a [Sample]) -> BoxFuture<'a, Check> {
            Box::pin(async move {
                let now = std::time::SystemTime::now();
                let outcomes = samples
                    .iter()
                    .map(|s| {
                        let ready = s.completed_at + Duration::from_millis(150);
                        if s.trace_id.0[15] % 2 == 0 && now >= ready {
                            Outcome::Found {
                                first_seen: Instant::now(),
                                spans: Some(1),
                                extra_spans: None,
                                recorded_at: None,
                            }
                        } else {
                            Outcome::Missing
                        }
                    })
                    .collect();
                Check {
                    outcomes,
                    query_durations: vec![Duration::from_millis(1)],
                }
            })
        }
    }

    #[tokio::test]
    async fn probes_time_the_backend_from_the_acknowledgement_and_misses_split_by_export() {
        // Every sample a probe, legs read when they settle (the embedded sink's way).
        legs_and_split(None).await;
        // A budgeted verifier's probes wait for their acknowledgement first.
        legs_and_split(Some(10_000.0)).await;
    }

    async fn legs_and_split(latency_probes: Option<f64>) {
        let policy = PollPolicy {
            settle_timeout: Duration::from_secs(1),
            latency_probes,
            ..PollPolicy::default()
        };
        let (tx, rx) = mpsc::channel(16);
        let start = Instant::now();
        for i in 0..8u8 {
            // 1 ms apart: each is a probe at 10 000 probes a second.
            let mut s = sample_id(i, 1);
            s.completed = start + Duration::from_millis(u64::from(i));
            tx.try_send(s).unwrap();
        }
        drop(tx);
        let mut tally = crate::Tally::new(Signal::Traces);
        run(
            Arc::new(QueryableAfterAck),
            Some(Arc::new(Ledger)),
            rx,
            policy,
            CancellationToken::new(),
            |v| tally.record(&v),
            |_| {},
        )
        .await;
        assert_eq!((tally.found, tally.missing), (4, 4));
        // Every missing sample's export was refused: none lost after acceptance.
        assert_eq!(tally.missing_split.refused, 4);
        assert_eq!(tally.missing_split.after_acceptance, 0);
        // All eight were probes (no budget); the four found were timed from their
        // acknowledgement: export wait ~100 ms, backend part 50 ms within one 25 ms step.
        assert_eq!(tally.backend_latency.len(), 4);
        let backend = tally.backend_latency.value_at_quantile(0.5) as f64 / 1000.0;
        let wait = tally.export_wait.value_at_quantile(0.5) as f64 / 1000.0;
        assert!(
            (50.0..=80.0).contains(&backend),
            "backend part p50 {backend} ms"
        );
        assert!((99.0..=101.0).contains(&wait), "export wait p50 {wait} ms");
    }
}
