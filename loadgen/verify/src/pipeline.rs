//! The engine's handle on verification during a run: one [`poll::run`] task per verifier,
//! fed through bounded channels, each folding its results into a shared [`Tally`].
//!
//! ```no_run
//! # async fn demo(verifiers: Vec<std::sync::Arc<dyn ricochet_verify::Verifier>>, sample: ricochet_verify::Sample) {
//! use ricochet_verify::{PollPolicy, pipeline::Pipeline};
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let pipeline = Pipeline::start(verifiers, PollPolicy::default(), 10_000, cancel);
//! pipeline.submit(&sample, true); // from the worker, when a sampled request completes
//! let live = pipeline.snapshot(); // progress ticks, abortOnFail
//! let tallies = pipeline.finish().await; // after the load: waits for the settle timeout
//! # let _ = (live, tallies); }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::fate::ExportLedger;
use super::{PollPolicy, Sample, Signal, Tally, Verifier, poll};

struct Lane {
    /// The signal its verifier checks.
    signal: Signal,
    /// `None` once [`Pipeline::finish`] closed it.
    tx: RwLock<Option<mpsc::Sender<Sample>>>,
    tally: Arc<Mutex<Tally>>,
    dropped: AtomicU64,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The unknown reason of samples dropped at a full verifier channel.
pub const QUEUE_FULL: &str = "the verifier's queue was full: sampled faster than it could \
     take them (lower telemetry.sample)";

/// Verification running beside the load. Shared by reference (`Arc`) between the workers
/// that submit and the engine that finishes it.
pub struct Pipeline {
    lanes: Vec<Lane>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("lanes", &self.lanes.len())
            .finish()
    }
}

fn lock(t: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pipeline {
    /// Spawns one polling task per verifier (needs a Tokio runtime), each with a channel of
    /// `capacity` samples. `cancel` settles whatever is pending as unknown. Ingest latency
    /// per second counts from now.
    pub fn start(
        verifiers: Vec<Arc<dyn Verifier>>,
        policy: PollPolicy,
        capacity: usize,
        cancel: CancellationToken,
    ) -> Self {
        Self::start_each(
            verifiers.into_iter().map(|v| (v, policy.clone())).collect(),
            None,
            capacity,
            cancel,
        )
    }

    /// Like [`Pipeline::start`], each verifier with its own polling policy, and the
    /// workload's export ledger when it can be read.
    pub fn start_each(
        verifiers: Vec<(Arc<dyn Verifier>, PollPolicy)>,
        ledger: Option<Arc<dyn ExportLedger>>,
        capacity: usize,
        cancel: CancellationToken,
    ) -> Self {
        let origin = std::time::Instant::now();
        let lanes = verifiers
            .into_iter()
            .map(|(v, policy)| {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                let signal = v.signal();
                let mut tally = Tally::new(signal);
                tally.origin = Some(origin);
                let tally = Arc::new(Mutex::new(tally));
                let (t1, t2) = (tally.clone(), tally.clone());
                let task = tokio::spawn(poll::run(
                    v,
                    ledger.clone(),
                    rx,
                    policy,
                    cancel.clone(),
                    move |verified| lock(&t1).record(&verified),
                    move |d| lock(&t2).record_query(d),
                ));
                Lane {
                    signal,
                    tx: RwLock::new(Some(tx)),
                    tally,
                    dropped: AtomicU64::new(0),
                    task: Mutex::new(Some(task)),
                }
            })
            .collect();
        Self { lanes }
    }

    /// Hands a request to the verifiers without waiting: to the trace and log verifiers
    /// when `sampled`, to the exemplar verifiers when it carried a metric probe. A full
    /// channel drops the sample for that verifier and counts it ([`Pipeline::dropped`]).
    /// After [`Pipeline::finish`] began, samples are ignored.
    pub fn submit(&self, sample: &Sample, sampled: bool) {
        for lane in &self.lanes {
            let wanted = match lane.signal {
                Signal::Metrics => sample.probe.is_some(),
                Signal::Traces | Signal::Logs => sampled,
            };
            if !wanted {
                continue;
            }
            let tx = lane.tx.read().unwrap_or_else(|p| p.into_inner());
            if let Some(tx) = tx.as_ref()
                && tx.try_send(sample.clone()).is_err()
            {
                lane.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Samples dropped per verifier (channel full), in verifier order.
    pub fn dropped(&self) -> Vec<u64> {
        self.lanes
            .iter()
            .map(|l| l.dropped.load(Ordering::Relaxed))
            .collect()
    }

    /// The tallies so far, in verifier order: settled samples, plus the samples dropped
    /// because the verifier's channel was full, counted as unknown.
    pub fn snapshot(&self) -> Vec<Tally> {
        self.lanes
            .iter()
            .map(|l| {
                let mut t = lock(&l.tally).clone();
                t.record_unverified(l.dropped.load(Ordering::Relaxed), QUEUE_FULL);
                t
            })
            .collect()
    }

    /// Stops taking samples, waits until every pending one has settled (at most the settle
    /// timeout after the last completion), and returns the final tallies in verifier
    /// order. A panicked polling task leaves its tally as far as it got.
    pub async fn finish(&self) -> Vec<Tally> {
        let mut tasks = Vec::with_capacity(self.lanes.len());
        for lane in &self.lanes {
            lane.tx.write().unwrap_or_else(|p| p.into_inner()).take();
            tasks.push(lane.task.lock().unwrap_or_else(|p| p.into_inner()).take());
        }
        for task in tasks.into_iter().flatten() {
            let _ = task.await;
        }
        self.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{BoxFuture, Check, Outcome, Rate, Signal, TraceId};

    /// Finds even-numbered ids, misses the rest.
    #[derive(Debug)]
    struct Evens;

    impl Verifier for Evens {
        fn signal(&self) -> Signal {
            Signal::Logs
        }
        fn name(&self) -> &str {
            "evens"
        }
        fn max_batch(&self) -> usize {
            64
        }
        fn check<'a>(&'a self, samples: &'a [Sample]) -> BoxFuture<'a, Check> {
            Box::pin(async move {
                let outcomes = samples
                    .iter()
                    .map(|s| {
                        if s.trace_id.0[15] % 2 == 0 {
                            Outcome::Found {
                                first_seen: Instant::now(),
                                spans: None,
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
                    query_durations: vec![Duration::from_micros(50)],
                }
            })
        }
    }

    #[tokio::test]
    async fn the_pipeline_tallies_every_submitted_sample_and_counts_overflow() {
        let policy = PollPolicy {
            initial_interval: Duration::from_millis(5),
            max_interval: Duration::from_millis(20),
            settle_timeout: Duration::from_millis(60),
            ..PollPolicy::default()
        };
        let p = Pipeline::start(vec![Arc::new(Evens)], policy, 100, CancellationToken::new());
        for i in 0..100u8 {
            let mut id = [0; 16];
            id[15] = i;
            p.submit(&Sample::now(TraceId(id)), true);
        }
        // The channel holds 100: the 101st is dropped, not blocked on.
        p.submit(&Sample::now(TraceId([9; 16])), true);
        assert_eq!(p.dropped(), vec![1]);
        let t = p.finish().await;
        assert_eq!((t[0].found, t[0].missing, t[0].unknown), (50, 50, 1));
        assert_eq!(t[0].unknown_reasons[QUEUE_FULL], 1);
        assert!(matches!(t[0].missing_rate(), Rate::Unknown { .. }));
        assert!(!t[0].query_duration.is_empty());
    }
}
