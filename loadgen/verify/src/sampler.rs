//! Which completed requests are verified: a rate or a per-second budget (GCRA), and the
//! keep class each sampled request belongs to.

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
}

impl Sampler {
    /// A sampler feeding `pipeline`.
    pub fn new(policy: SamplePolicy, classes: Vec<KeepClassPlan>, pipeline: Arc<Pipeline>) -> Self {
        Self {
            policy,
            classes,
            pipeline,
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

    /// Considers a completed request for verification (cheap when not sampled).
    pub fn offer(&self, c: Completed<'_>) {
        if !self.take(c.trace_id) {
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
        };
        self.sampled.fetch_add(1, Ordering::Relaxed);
        self.pipeline.submit(&sample);
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
        let s = Sampler::new(SamplePolicy::PerSecond(100.0), Vec::new(), p);
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
        let s = Sampler::new(SamplePolicy::Rate(0.1), Vec::new(), p);
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
}
