//! Open-model arrival schedules and closed-model VU profiles.
//!
//! An arrival-rate executor is a piecewise-linear rate `r(t)`; its cumulative count
//! `N(t) = ∫ r` fixes the intended instant of every iteration: iteration `k` is due at the
//! `t` where `N(t) = k` (as k6 does), so the schedule never depends on how fast the target
//! answers. A constant rate `r` for `d` emits exactly `ceil(r × d)` instants.

use std::time::Duration;

use crate::plan::{Executor, StagePlan};

/// One linear piece of a rate profile.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Segment {
    /// Offset of the piece, seconds.
    start: f64,
    /// Length, seconds.
    len: f64,
    /// Rate at the start, per second.
    r0: f64,
    /// Rate at the end, per second.
    r1: f64,
    /// Arrivals due before the piece: `N(start)`.
    cum0: f64,
}

impl Segment {
    fn area(&self) -> f64 {
        (self.r0 + self.r1) * 0.5 * self.len
    }

    /// `N(start + x) - N(start)` for `x` in `0..=len`.
    fn integral(&self, x: f64) -> f64 {
        let x = x.clamp(0.0, self.len);
        if self.len <= 0.0 {
            return 0.0;
        }
        self.r0 * x + (self.r1 - self.r0) * x * x / (2.0 * self.len)
    }

    /// The offset within the piece where `n` arrivals (`0 <= n <= area`) have come due.
    fn inverse(&self, n: f64) -> f64 {
        if n <= 0.0 {
            return 0.0;
        }
        // Solve a x² + b x - n = 0 in its cancellation-free form.
        let a = (self.r1 - self.r0) / (2.0 * self.len);
        let b = self.r0;
        let disc = (b * b + 4.0 * a * n).max(0.0);
        let denom = b + disc.sqrt();
        if denom <= 0.0 {
            return self.len;
        }
        (2.0 * n / denom).min(self.len)
    }
}

/// A piecewise-linear arrival rate (iterations per second) over a finite duration.
#[derive(Clone, Debug, PartialEq)]
pub struct RateProfile {
    segments: Vec<Segment>,
    total_len: f64,
}

impl RateProfile {
    /// A constant `rate` for `duration`.
    pub fn constant(rate: f64, duration: Duration) -> Self {
        Self::ramping(rate, &[(rate, duration)])
    }

    /// Starts at `start_rate` and ramps linearly to each `(target, duration)` in turn.
    pub fn ramping(start_rate: f64, stages: &[(f64, Duration)]) -> Self {
        let mut segments = Vec::with_capacity(stages.len());
        let (mut start, mut cum, mut rate) = (0.0, 0.0, sanitize(start_rate));
        for &(target, duration) in stages {
            let target = sanitize(target);
            let seg = Segment {
                start,
                len: duration.as_secs_f64(),
                r0: rate,
                r1: target,
                cum0: cum,
            };
            cum += seg.area();
            start += seg.len;
            rate = target;
            segments.push(seg);
        }
        Self {
            segments,
            total_len: start,
        }
    }

    /// The profile of an arrival-rate executor; `None` for VU executors.
    pub fn of(executor: &Executor) -> Option<Self> {
        match executor {
            Executor::ConstantArrivalRate { rate, duration } => {
                Some(Self::constant(*rate, *duration))
            }
            Executor::RampingArrivalRate { start_rate, stages } => {
                Some(Self::ramping(*start_rate, &stage_pairs(stages)))
            }
            Executor::ConstantVus { .. } | Executor::RampingVus { .. } => None,
        }
    }

    /// Length of the profile.
    pub fn duration(&self) -> Duration {
        Duration::try_from_secs_f64(self.total_len).unwrap_or(Duration::MAX)
    }

    /// Arrivals due in `[0, t)` as a real number: `N(t)`.
    pub fn cumulative(&self, t: f64) -> f64 {
        let mut n = 0.0;
        for seg in &self.segments {
            if t <= seg.start {
                break;
            }
            n = seg.cum0 + seg.integral(t - seg.start);
        }
        n
    }

    /// `N(end)`: the integral of the rate over the whole profile.
    pub fn total(&self) -> f64 {
        self.segments.last().map_or(0.0, |s| s.cum0 + s.area())
    }

    /// Number of instants [`RateProfile::arrivals`] yields: `ceil(N(end))`.
    pub fn count(&self) -> u64 {
        // Guard against 19999.999999 for 20 000 planned arrivals.
        let total = self.total();
        let rounded = total.round();
        if (total - rounded).abs() < 1e-6 {
            rounded as u64
        } else {
            total.ceil() as u64
        }
    }

    /// Planned arrivals in `[from, to)`, seconds since the profile's start.
    pub fn planned_between(&self, from: f64, to: f64) -> f64 {
        (self.cumulative(to) - self.cumulative(from)).max(0.0)
    }

    /// The arrivals from the `from`-th on (0-based, as [`RateProfile::arrivals`] yields
    /// them), grouped by linear piece: `(intended offset of the first of the group, how
    /// many)`. O(pieces), whatever the count: this is how a dispatcher that reached the
    /// scenario's end counts what it will not send.
    pub fn unsent(&self, from: u64) -> impl Iterator<Item = (Duration, u64)> + '_ {
        let count = self.count();
        let last = self.segments.len().saturating_sub(1);
        let mut lower = 0u64;
        self.segments
            .iter()
            .enumerate()
            .filter_map(move |(i, seg)| {
                // Arrival k falls in the first piece whose end `N` exceeds k (the last
                // piece takes the rest), as `Arrivals::next` places it.
                let upper = if i == last {
                    count
                } else {
                    index_ceil(seg.cum0 + seg.area()).min(count)
                };
                let lo = lower.max(from);
                lower = lower.max(upper);
                if lo >= upper {
                    return None;
                }
                let t = seg.start + seg.inverse(lo as f64 - seg.cum0);
                let offset = Duration::try_from_secs_f64(t.min(self.total_len).max(0.0))
                    .unwrap_or(Duration::MAX);
                Some((offset, upper - lo))
            })
    }

    /// The intended instants, as offsets from the profile's start, in order.
    pub fn arrivals(&self) -> Arrivals<'_> {
        Arrivals {
            profile: self,
            next: 0,
            count: self.count(),
            segment: 0,
        }
    }
}

/// The smallest whole arrival index not below `n` (saturating).
fn index_ceil(n: f64) -> u64 {
    if n <= 0.0 { 0 } else { n.ceil() as u64 }
}

fn sanitize(rate: f64) -> f64 {
    if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        0.0
    }
}

/// `(target, duration)` pairs of stages.
pub fn stage_pairs(stages: &[StagePlan]) -> Vec<(f64, Duration)> {
    stages.iter().map(|s| (s.target, s.duration)).collect()
}

/// Iterator over the intended instants of a [`RateProfile`].
#[derive(Debug)]
pub struct Arrivals<'a> {
    profile: &'a RateProfile,
    next: u64,
    count: u64,
    segment: usize,
}

impl Arrivals<'_> {
    /// How many instants were yielded so far: the index of the next one.
    pub fn yielded(&self) -> u64 {
        self.next
    }
}

impl Iterator for Arrivals<'_> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.next >= self.count {
            return None;
        }
        let k = self.next as f64;
        let segments = &self.profile.segments;
        while self.segment + 1 < segments.len() {
            let seg = &segments[self.segment];
            if k < seg.cum0 + seg.area() {
                break;
            }
            self.segment += 1;
        }
        let seg = segments.get(self.segment)?;
        let t = seg.start + seg.inverse(k - seg.cum0);
        self.next += 1;
        Some(
            Duration::try_from_secs_f64(t.min(self.profile.total_len).max(0.0))
                .unwrap_or(Duration::MAX),
        )
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.count - self.next).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

/// The number of active virtual users over time, for VU executors.
#[derive(Clone, Debug, PartialEq)]
pub struct VuProfile {
    start: f64,
    stages: Vec<(f64, f64)>,
    total_len: f64,
}

impl VuProfile {
    /// The profile of a VU executor; `None` for arrival-rate executors.
    pub fn of(executor: &Executor) -> Option<Self> {
        match executor {
            Executor::ConstantVus { vus, duration } => {
                let v = f64::from(vus.get());
                Some(Self::new(v, &[(v, *duration)]))
            }
            Executor::RampingVus { start_vus, stages } => {
                Some(Self::new(f64::from(*start_vus), &stage_pairs(stages)))
            }
            _ => None,
        }
    }

    fn new(start: f64, stages: &[(f64, Duration)]) -> Self {
        let stages: Vec<(f64, f64)> = stages
            .iter()
            .map(|&(target, d)| (sanitize(target), d.as_secs_f64()))
            .collect();
        let total_len = stages.iter().map(|s| s.1).sum();
        Self {
            start: sanitize(start),
            stages,
            total_len,
        }
    }

    /// Length of the profile.
    pub fn duration(&self) -> Duration {
        Duration::try_from_secs_f64(self.total_len).unwrap_or(Duration::MAX)
    }

    /// Most VUs ever active.
    pub fn max_vus(&self) -> u32 {
        self.stages
            .iter()
            .map(|s| s.0)
            .fold(self.start, f64::max)
            .round() as u32
    }

    /// Active VUs at `t` seconds (linear between stages, rounded).
    pub fn vus_at(&self, t: f64) -> u32 {
        let (mut from, mut at) = (self.start, 0.0);
        for &(target, len) in &self.stages {
            if t < at + len {
                let frac = if len > 0.0 { (t - at) / len } else { 1.0 };
                return (from + (target - from) * frac.clamp(0.0, 1.0)).round() as u32;
            }
            from = target;
            at += len;
        }
        from.round() as u32
    }
}

/// Which stage (0-based) an offset into a scenario falls in, or `None` past the end or for
/// executors without stages.
pub fn stage_at(executor: &Executor, offset: Duration) -> Option<usize> {
    let stages = match executor {
        Executor::RampingArrivalRate { stages, .. } | Executor::RampingVus { stages, .. } => stages,
        _ => return None,
    };
    let mut end = Duration::ZERO;
    for (i, s) in stages.iter().enumerate() {
        end += s.duration;
        if offset < end {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constant_rate_emits_rate_times_duration_evenly_spaced_instants() {
        let p = RateProfile::constant(2000.0, Duration::from_secs(10));
        let v: Vec<Duration> = p.arrivals().collect();
        assert_eq!(v.len(), 20_000);
        assert_eq!(v[0], Duration::ZERO);
        assert!((v[1].as_secs_f64() - 0.0005).abs() < 1e-9);
        assert!(v.last().is_some_and(|d| *d < Duration::from_secs(10)));
    }

    #[test]
    fn ramp_from_zero_follows_the_integral() {
        // 0 -> 100/s over 10 s: 500 arrivals, half of them in the last ~2.93 s.
        let p = RateProfile::ramping(0.0, &[(100.0, Duration::from_secs(10))]);
        let v: Vec<f64> = p.arrivals().map(|d| d.as_secs_f64()).collect();
        assert_eq!(v.len(), 500);
        // N(t) = 5 t², so arrival k is at sqrt(k / 5).
        for (k, t) in v.iter().enumerate() {
            assert!((t - (k as f64 / 5.0).sqrt()).abs() < 1e-9, "k={k} t={t}");
        }
        assert!((p.planned_between(9.0, 10.0) - 95.0).abs() < 1e-9);
    }

    #[test]
    fn zero_rate_stage_emits_nothing_and_the_next_stage_resumes() {
        let p = RateProfile::ramping(
            10.0,
            &[
                (10.0, Duration::from_secs(1)),
                (0.0, Duration::ZERO),
                (0.0, Duration::from_secs(2)),
                (10.0, Duration::ZERO),
                (10.0, Duration::from_secs(1)),
            ],
        );
        let v: Vec<f64> = p.arrivals().map(|d| d.as_secs_f64()).collect();
        assert_eq!(v.len(), 20);
        assert!(v.iter().all(|t| *t < 1.0 || *t >= 3.0), "{v:?}");
    }

    #[test]
    fn vu_profile_interpolates_linearly() {
        let p = VuProfile::new(
            0.0,
            &[
                (10.0, Duration::from_secs(10)),
                (10.0, Duration::from_secs(5)),
            ],
        );
        assert_eq!(p.vus_at(0.0), 0);
        assert_eq!(p.vus_at(5.0), 5);
        assert_eq!(p.vus_at(12.0), 10);
        assert_eq!(p.vus_at(99.0), 10);
        assert_eq!(p.max_vus(), 10);
    }

    #[test]
    fn an_absurd_rate_counts_its_unsent_arrivals_without_listing_them() {
        // See: issue #15 (a 1e12/s scenario ground through every arrival for ~40 h).
        let p = RateProfile::constant(1e12, Duration::from_secs(1));
        let mut arrivals = p.arrivals();
        assert!(arrivals.by_ref().take(1000).count() == 1000);
        let unsent: Vec<_> = p.unsent(arrivals.yielded()).collect();
        assert_eq!(unsent.len(), 1);
        assert_eq!(unsent[0].1, 1_000_000_000_000 - 1000);
        assert!(unsent[0].0 <= Duration::from_nanos(2), "{unsent:?}");
    }

    proptest! {
        #[test]
        fn unsent_arrivals_are_the_rest_of_the_schedule_grouped_by_piece(
            start in 0.0f64..300.0,
            stages in proptest::collection::vec((0.0f64..300.0, 0u64..2000), 1..5),
            cut in 0.0f64..1.0,
        ) {
            let stages: Vec<(f64, Duration)> =
                stages.into_iter().map(|(r, ms)| (r, Duration::from_millis(ms))).collect();
            let p = RateProfile::ramping(start, &stages);
            let all: Vec<Duration> = p.arrivals().collect();
            let from = (all.len() as f64 * cut) as u64;
            let unsent: Vec<(Duration, u64)> = p.unsent(from).collect();
            let n: u64 = unsent.iter().map(|u| u.1).sum();
            prop_assert_eq!(n, all.len() as u64 - from);
            // Each group starts at the intended instant of its first arrival.
            let mut k = from as usize;
            for (first, n) in &unsent {
                prop_assert!(*n > 0);
                let d = (first.as_secs_f64() - all[k].as_secs_f64()).abs();
                prop_assert!(d < 1e-6, "group at {:?}, arrival {} at {:?}", first, k, all[k]);
                k += *n as usize;
            }
        }

        #[test]
        fn schedule_emits_rate_times_duration_instants(rate in 0.5f64..5000.0, ms in 1u64..5000) {
            let d = Duration::from_millis(ms);
            let p = RateProfile::constant(rate, d);
            let n = p.arrivals().count() as f64;
            prop_assert!((n - rate * d.as_secs_f64()).abs() <= 1.0);
        }

        #[test]
        fn ramping_schedule_count_matches_its_integral_and_is_monotonic(
            start in 0.0f64..500.0,
            stages in proptest::collection::vec((0.0f64..500.0, 0u64..3000), 1..5),
        ) {
            let stages: Vec<(f64, Duration)> =
                stages.into_iter().map(|(r, ms)| (r, Duration::from_millis(ms))).collect();
            let p = RateProfile::ramping(start, &stages);
            let expected: f64 = {
                let mut prev = start;
                stages.iter().map(|&(r, d)| { let a = (prev + r) / 2.0 * d.as_secs_f64(); prev = r; a }).sum()
            };
            let v: Vec<Duration> = p.arrivals().collect();
            prop_assert!((v.len() as f64 - expected).abs() <= 1.0, "{} vs {}", v.len(), expected);
            prop_assert!(v.windows(2).all(|w| w[0] <= w[1]));
            prop_assert!(v.iter().all(|t| *t <= p.duration()));
            // Every instant k sits where the integral reaches k.
            for (k, t) in v.iter().enumerate().step_by(7) {
                let n = p.cumulative(t.as_secs_f64());
                prop_assert!((n - k as f64).abs() < 1e-3 * (1.0 + k as f64), "k={} N={}", k, n);
            }
        }
    }
}
