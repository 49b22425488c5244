//! Which completed requests are verified: a rate or a per-second budget (GCRA), and the
//! keep class each sampled request belongs to; and which requests are metric probes
//! ([`ProbeSlots`]), the only ones verified as exemplars.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::pipeline::Pipeline;
use crate::plan::{KeepClassPlan, SamplePolicy};
use crate::{Sample, TraceId};

/// Chooses requests for verification and hands them to the verifiers; shared by every
/// worker of a run.
#[derive(Debug)]
pub struct Sampler {
    policy: SamplePolicy,
    classes: Vec<KeepClassPlan>,
    pipeline: Arc<Pipeline>,
    origin: Instant,
    /// GCRA theoretical arrival time, ns since `origin` (`perSecond`).
    tat: AtomicU64,
    sampled: AtomicU64,
    probes: Option<ProbeSlots>,
}

/// Hands out metric probe slots, decided when a request is sent.
///
/// An exemplar shows only the latest request of its series, so a sampled request's
/// exemplar can be replaced before any scrape sees it, and "not found" would prove
/// nothing. Probes avoid that: a probe request names one of a few slots, the echo-server
/// counts it in that slot's own series with its trace id as exemplar, and a slot is used
/// again only after `reuse`, longer than two scrape intervals. Each probe's exemplar so
/// lives through at least one scrape, and one not found at its deadline is missing. At most
/// `slots / reuse` probes a second (64 slots, 31 s: about 2/s behind a Prometheus
/// scraping every 15 s), whatever the sampling rate; slots are taken in turn, spaced
/// evenly.
#[derive(Debug)]
pub struct ProbeSlots {
    /// Slots of this share.
    slots: u16,
    /// The share's first slot and the step between its slots.
    first: u16,
    step: u16,
    /// Nanoseconds between two probes: `reuse / slots`.
    spacing: u64,
    origin: Instant,
    /// When the next probe may go, ns since `origin`.
    next: AtomicU64,
    taken: AtomicU64,
}

impl ProbeSlots {
    /// Runner `index` of `runners`' share of `slots`: the slots `index`, `index +
    /// runners`, ..., so runners of one run never take the same slot (none when `index`
    /// is beyond the slots).
    pub fn share(slots: u16, reuse: Duration, (index, runners): (u32, u32)) -> Self {
        let runners = runners.max(1);
        let mine = u32::from(slots).saturating_sub(index).div_ceil(runners);
        Self {
            slots: u16::try_from(mine).unwrap_or(u16::MAX),
            first: u16::try_from(index).unwrap_or(u16::MAX),
            step: u16::try_from(runners).unwrap_or(u16::MAX),
            spacing: (reuse.as_nanos() / u128::from(mine.max(1))).max(1) as u64,
            origin: Instant::now(),
            next: AtomicU64::new(0),
            taken: AtomicU64::new(0),
        }
    }

    /// The slot for a request sent now, or `None` when the next probe is not due (cheap:
    /// one atomic load on that path).
    pub fn take(&self) -> Option<u16> {
        if self.slots == 0 {
            return None;
        }
        let now = self.origin.elapsed().as_nanos() as u64;
        let next = self.next.load(Ordering::Relaxed);
        if now < next {
            return None;
        }
        self.next
            .compare_exchange(
                next,
                now + self.spacing,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .ok()?;
        let n = self.taken.fetch_add(1, Ordering::Relaxed);
        let k = (n % u64::from(self.slots)) as u16;
        Some(self.first + k * self.step)
    }

    /// Probes handed out so far.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }
}

/// What a worker knows about a completed request, for [`Sampler::offer`].
#[derive(Debug, Clone, Copy)]
pub struct Completed<'a> {
    /// Scenario name.
    pub scenario: &'a Arc<str>,
    /// Request name.
    pub request: &'a Arc<str>,
    /// Expected span count.
    pub expected_spans: usize,
    /// Scheduled instant.
    pub scheduled: Instant,
    /// Handed to the connection.
    pub sent: Instant,
    /// Last byte of the response.
    pub end: Instant,
    /// HTTP status.
    pub status: u16,
    /// The trace id the request carried in its `traceparent`.
    pub trace_id: TraceId,
    /// The request id it carried in `X-Request-Id` (32 hex digits).
    pub request_id: u128,
    /// The parent span id it carried in its `traceparent`.
    pub parent_span_id: u64,
    /// The metric probe slot it carried, if any ([`ProbeSlots::take`]).
    pub probe: Option<u16>,
    /// The replica that served it, as the response named it (cloned only when sampled).
    pub replica: Option<&'a Arc<str>>,
}

impl Sampler {
    /// A sampler feeding `pipeline`; `probes` hands out metric probe slots when an
    /// exemplar verifier runs.
    pub fn new(
        policy: SamplePolicy,
        classes: Vec<KeepClassPlan>,
        pipeline: Arc<Pipeline>,
        probes: Option<ProbeSlots>,
    ) -> Self {
        Self {
            policy,
            classes,
            pipeline,
            probes,
            origin: Instant::now(),
            tat: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
        }
    }

    /// Whether to verify the request that carried `trace_id`. A `rate` decides on the
    /// trace id's low 64 bits, which loadgen draws at random for every request (as
    /// OpenTelemetry's trace-id-ratio sampler does): no random draw per request.
    fn take(&self, trace_id: TraceId) -> bool {
        match self.policy {
            SamplePolicy::Rate(r) => {
                let low = u64::from_be_bytes(trace_id.0[8..].try_into().unwrap_or_default());
                r >= 1.0 || (low >> 11) as f64 / (1u64 << 53) as f64 <= r
            }
            SamplePolicy::PerSecond(n) => {
                let interval = (1e9 / n) as u64;
                let burst = 1_000_000_000u64;
                let now = self.origin.elapsed().as_nanos() as u64;
                let mut tat = self.tat.load(Ordering::Relaxed);
                loop {
                    let next = tat.max(now) + interval;
                    if next.saturating_sub(now) > burst + interval {
                        return false;
                    }
                    match self.tat.compare_exchange_weak(
                        tat,
                        next,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return true,
                        Err(t) => tat = t,
                    }
                }
            }
        }
    }

    /// The keep class of a request: its index in `expectKeep`, or the class count for none.
    pub fn class_of(&self, request: &str, status: u16, service_time: Duration) -> u8 {
        let i = self
            .classes
            .iter()
            .position(|c| c.matches(request, status, service_time))
            .unwrap_or(self.classes.len());
        u8::try_from(i).unwrap_or(u8::MAX)
    }

    /// Considers a completed request for verification (cheap when not sampled): a
    /// sampled request goes to the trace and log verifiers, a probe to the exemplar ones.
    pub fn offer(&self, c: Completed<'_>) {
        let sampled = self.take(c.trace_id);
        if !sampled && c.probe.is_none() {
            return;
        }
        let now = SystemTime::now();
        let since_end = c.end.elapsed();
        let service_time = c.end.saturating_duration_since(c.sent);
        let sample = Sample {
            trace_id: c.trace_id,
            request_id: Arc::from(format!("{:032x}", c.request_id)),
            parent_span_id: c.parent_span_id,
            tenant: None,
            scenario: c.scenario.clone(),
            scheduled: c.scheduled,
            completed: c.end,
            completed_at: now.checked_sub(since_end).unwrap_or(now),
            expected_spans: c.expected_spans,
            request: c.request.clone(),
            status: c.status,
            service_time,
            class: self.class_of(c.request, c.status, service_time),
            probe: c.probe,
            replica: c.replica.cloned(),
        };
        if sampled {
            self.sampled.fetch_add(1, Ordering::Relaxed);
        }
        self.pipeline.submit(&sample, sampled);
    }

    /// The metric probe slot for a request about to be sent, if it is to be a probe.
    pub fn probe_slot(&self) -> Option<u16> {
        self.probes.as_ref()?.take()
    }

    /// Metric probes handed out so far.
    pub fn probes(&self) -> u64 {
        self.probes.as_ref().map_or(0, ProbeSlots::taken)
    }

    /// Requests sampled so far.
    pub fn sampled(&self) -> u64 {
        self.sampled.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::PollPolicy;

    #[test]
    fn the_per_second_sampler_keeps_one_second_of_burst_then_the_rate() {
        let p = Arc::new(Pipeline::start(
            Vec::new(),
            PollPolicy::default(),
            1,
            CancellationToken::new(),
        ));
        let s = Sampler::new(SamplePolicy::PerSecond(100.0), Vec::new(), p, None);
        let taken = (0..10_000).filter(|_| s.take(TraceId([7; 16]))).count();
        assert!((100..=102).contains(&taken), "{taken}");
    }

    #[test]
    fn a_rate_keeps_that_fraction_of_random_trace_ids() {
        let p = Arc::new(Pipeline::start(
            Vec::new(),
            PollPolicy::default(),
            1,
            CancellationToken::new(),
        ));
        let s = Sampler::new(SamplePolicy::Rate(0.1), Vec::new(), p, None);
        // Trace ids as loadgen makes them: random (here splitmix64, fixed seed).
        let mut z = 0x7269_636f_6368_6574u64;
        let ids: Vec<TraceId> = (0..20_000)
            .map(|_| {
                z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut x = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                let mut id = [0u8; 16];
                id[8..].copy_from_slice(&(x ^ (x >> 31)).to_be_bytes());
                TraceId(id)
            })
            .collect();
        let taken = ids.iter().filter(|id| s.take(**id)).count();
        assert!((1800..=2200).contains(&taken), "{taken} of 20000");
        // The decision belongs to the trace: asking again gives the same answer.
        assert!(ids.iter().all(|id| s.take(*id) == s.take(*id)));
    }

    #[test]
    fn probe_slots_are_spaced_so_no_slot_is_reused_within_reuse() {
        // 4 slots, each reused no sooner than 40 ms: one probe per 10 ms at most.
        let p = ProbeSlots::share(4, Duration::from_millis(40), (0, 1));
        let start = Instant::now();
        // The instant before each slot was last taken; a slot's reuse ends after the take.
        let mut last_use: [Option<Instant>; 4] = [None; 4];
        while start.elapsed() < Duration::from_millis(200) {
            let before = Instant::now();
            if let Some(slot) = p.take() {
                let after = Instant::now();
                if let Some(prev) = last_use[usize::from(slot)] {
                    assert!(
                        after - prev >= Duration::from_millis(40),
                        "slot {slot} reused early"
                    );
                }
                last_use[usize::from(slot)] = Some(before);
            }
        }
        // ~200 ms / 10 ms, the first at once; a loaded machine gets fewer, never more.
        assert!((2..=21).contains(&p.taken()), "{}", p.taken());
    }

    #[test]
    fn runners_of_one_run_take_disjoint_probe_slots() {
        let reuse = Duration::from_nanos(64);
        let taken = |share| {
            let p = ProbeSlots::share(64, reuse, share);
            let mut slots = std::collections::BTreeSet::new();
            while p.taken() < 200 {
                if let Some(s) = p.take() {
                    slots.insert(s);
                }
            }
            slots
        };
        let (a, b, c) = (taken((0, 3)), taken((1, 3)), taken((2, 3)));
        assert_eq!(a.len() + b.len() + c.len(), 64);
        assert!(a.is_disjoint(&b) && b.is_disjoint(&c) && a.is_disjoint(&c));
        assert!(a.iter().chain(&b).chain(&c).all(|s| *s < 64));
        // A runner beyond the slots takes none.
        assert_eq!(ProbeSlots::share(64, reuse, (70, 100)).take(), None);
    }
}
