//! Polling with exponential backoff, from each request's completion until its telemetry is
//! found (complete) or its settle timeout has passed.
//!
//! Each sample is first asked about at `completed + initial_interval`, then after
//! intervals growing by `factor` up to `max_interval`, and once more exactly at
//! `completed + settle_timeout`. Samples whose polls fall due together are asked about in
//! one [`Verifier::check`] call (up to [`Verifier::max_batch`]). The final outcome is the
//! last answer's: a sample answered unknown at its deadline stays unknown even if an
//! earlier poll said missing, so "could not ask" is never reported as "not found". A trace
//! found with fewer spans than expected keeps being polled until complete or the deadline.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Outcome, Sample, Verifier};

/// When to poll and when to give up.
#[derive(Debug, Clone, PartialEq)]
pub struct PollPolicy {
    /// First poll this long after completion; also the first backoff interval.
    pub initial_interval: Duration,
    /// Backoff ceiling.
    pub max_interval: Duration,
    /// Backoff growth factor (≥ 1).
    pub factor: f64,
    /// Give up (missing or unknown) this long after completion: `telemetry.settleTimeout`.
    pub settle_timeout: Duration,
    /// Most samples pending at once; a sample arriving beyond that is settled unknown.
    pub max_pending: usize,
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
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_millis(250),
            max_interval: Duration::from_secs(5),
            factor: 2.0,
            settle_timeout: Duration::from_secs(30),
            max_pending: 100_000,
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
    /// `first_seen − completed` when found.
    pub ingest_latency: Option<Duration>,
    /// For traces: whether the span count reached the expected one.
    pub complete: Option<bool>,
    /// Questions asked about it.
    pub polls: u32,
}

struct Pending {
    sample: Sample,
    deadline: Instant,
    interval: Duration,
    polls: u32,
    first_seen: Option<Instant>,
}

/// Polls every sample received on `rx` until settled, calling `on_verified` once per
/// sample and `on_query` with each backend query's duration. Returns when `rx` is closed
/// and nothing is pending, or when `cancel` fires (pending samples then settle as
/// unknown).
///
/// Each turn first takes what has arrived (up to [`DRAIN_PER_TURN`] samples, without
/// waiting), then asks about one batch of due samples, and only waits when neither has
/// work: a steady stream of samples cannot starve the polls, and slow polls cannot stop
/// the channel from draining for longer than one check.
pub async fn run<F, Q>(
    verifier: Arc<dyn Verifier>,
    mut rx: mpsc::Receiver<Sample>,
    policy: PollPolicy,
    cancel: CancellationToken,
    mut on_verified: F,
    mut on_query: Q,
) where
    F: FnMut(Verified) + Send,
    Q: FnMut(Duration) + Send,
{
    let mut st = State {
        heap: BinaryHeap::new(),
        pending: HashMap::new(),
        seq: 0,
        factor: if policy.factor.is_finite() && policy.factor >= 1.0 {
            policy.factor
        } else {
            2.0
        },
        policy,
    };
    let batch = verifier.max_batch().max(1);
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
        let due = st.take_due(batch);
        if !due.is_empty() {
            let samples: Vec<Sample> = due
                .iter()
                .filter_map(|id| st.pending.get(id).map(|p| p.sample.clone()))
                .collect();
            let check = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    st.cancel_all(verifier.name(), &mut on_verified);
                    return;
                }
                c = verifier.check(&samples) => c,
            };
            for d in &check.query_durations {
                on_query(*d);
            }
            st.settle(verifier.name(), due, check.outcomes, &mut on_verified);
            continue;
        }
        if !open && st.pending.is_empty() {
            return;
        }
        let next_due = st.heap.peek().map(|Reverse((t, _))| *t);
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

struct State {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: HashMap<u64, Pending>,
    seq: u64,
    factor: f64,
    policy: PollPolicy,
}

impl State {
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
            });
            return;
        }
        let first = sample.completed + self.policy.initial_interval;
        let deadline = sample.completed + self.policy.settle_timeout;
        self.heap.push(Reverse((first.min(deadline), self.seq)));
        let interval = self.policy.initial_interval;
        self.pending.insert(
            self.seq,
            Pending {
                sample,
                deadline,
                interval,
                polls: 0,
                first_seen: None,
            },
        );
        self.seq += 1;
    }

    fn take_due(&mut self, batch: usize) -> Vec<u64> {
        let now = Instant::now();
        let mut due = Vec::new();
        while due.len() < batch {
            match self.heap.peek() {
                Some(Reverse((t, id))) if *t <= now => {
                    due.push(*id);
                    self.heap.pop();
                }
                _ => break,
            }
        }
        due
    }

    fn cancel_all<F: FnMut(Verified)>(&mut self, name: &str, on_verified: &mut F) {
        let reason = format!("verification by {name} cancelled before the sample settled");
        for (_, p) in self.pending.drain() {
            let outcome = Outcome::unknown(reason.clone());
            on_verified(Verified {
                sample: p.sample,
                outcome,
                ingest_latency: None,
                complete: None,
                polls: p.polls,
            });
        }
        self.heap.clear();
    }

    fn settle<F: FnMut(Verified)>(
        &mut self,
        name: &str,
        due: Vec<u64>,
        outcomes: Vec<Outcome>,
        on_verified: &mut F,
    ) {
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
                    recorded_at,
                } => {
                    let first = *p.first_seen.get_or_insert(first_seen);
                    let complete = spans.map(|n| n >= expected);
                    if complete == Some(false) && !last_poll {
                        self.reschedule(id, p, answered);
                        continue;
                    }
                    let ingest_latency = Some(first.saturating_duration_since(p.sample.completed));
                    let outcome = Outcome::Found {
                        first_seen: first,
                        spans,
                        recorded_at,
                    };
                    on_verified(Verified {
                        sample: p.sample,
                        outcome,
                        ingest_latency,
                        complete,
                        polls: p.polls,
                    });
                }
                // Superseded is final at once: an older exemplar never reappears once a
                // newer one shows.
                other if last_poll || other == Outcome::Superseded => {
                    on_verified(Verified {
                        sample: p.sample,
                        outcome: other,
                        ingest_latency: None,
                        complete: None,
                        polls: p.polls,
                    });
                }
                _ => self.reschedule(id, p, answered),
            }
        }
    }

    fn reschedule(&mut self, id: u64, mut p: Pending, now: Instant) {
        let next = (now + p.interval).min(p.deadline).max(now);
        p.interval = p
            .interval
            .mul_f64(self.factor)
            .min(self.policy.max_interval);
        self.heap.push(Reverse((next, id)));
        self.pending.insert(id, p);
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
                            recorded_at: None,
                        },
                        _ => Outcome::Found {
                            first_seen: Instant::now(),
                            spans: Some(3),
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
        // First seen at the third poll: >= 10 + 10 + 20 ms after completion.
        assert!(out[0].ingest_latency.unwrap() >= Duration::from_millis(40));
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
}
