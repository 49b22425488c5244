//! The latency histogram every part of ricochet records into: HdrHistogram in
//! microseconds, 3 significant figures, auto-resizing, merged exactly. The engine's stats,
//! the verifiers' ingest latencies and the operator's merges all use these, so a merge of
//! any two is exact.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Significant figures kept by every histogram (0.1 % relative error).
pub const SIGFIG: u8 = 3;

/// A latency histogram in microseconds, resizing as larger values arrive.
pub type Hist = Histogram<u64>;

/// An empty [`Hist`].
pub fn new_hist() -> Hist {
    // Auto-resizing histograms start small and grow with the largest value seen.
    Histogram::new(SIGFIG).unwrap_or_else(|_| unreachable!("SIGFIG is within 0..=5"))
}

/// Adds `src` into `dst`; auto-resizing histograms cannot overflow, the fallback only
/// guards the impossible case without losing samples.
pub fn merge_hist(dst: &mut Hist, src: &Hist) {
    if dst.add(src).is_err() {
        for v in src.iter_recorded() {
            if dst
                .record_n(v.value_iterated_to(), v.count_at_value())
                .is_err()
            {
                dst.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }
}

/// Records a duration in microseconds (at least 1 µs).
pub fn record_duration(h: &mut Hist, d: Duration) {
    // Capped at ~11.6 days so that resizing can always succeed.
    let us = u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, 1 << 40);
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}
