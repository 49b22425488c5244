//! Folding settled samples into the `telemetry_*` metrics of one signal: counters for
//! found / missing / unknown / incomplete, HdrHistograms (µs, as [`crate::hist`]) of
//! ingest latency and backend query duration. Constant memory per signal; merged exactly
//! across runners like every other histogram.
//!
//! Rates fail closed: while any sample is unknown, the missing rate is not a number but
//! [`Rate::Unknown`] carrying the commonest reason and the bounds the truth lies within.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Outcome, Signal, Verified};
use crate::fate::{Export, MissingSplit};
use crate::hist::{Hist, merge_hist, new_hist, record_duration};
use crate::poll::LatencyUse;

/// Distinct unknown reasons kept; further ones are counted under [`OTHER_REASONS`].
pub const MAX_REASONS: usize = 16;
/// The bucket for reasons beyond [`MAX_REASONS`].
pub const OTHER_REASONS: &str = "(other reasons)";
/// Distinct replicas counted apart; further ones are counted under [`OTHER_REPLICAS`].
pub const MAX_REPLICAS: usize = 64;
/// The bucket for replicas beyond [`MAX_REPLICAS`], and for samples no replica named.
pub const OTHER_REPLICAS: &str = "(other or unnamed replicas)";

/// A rate that may not be knowable.
#[derive(Debug, Clone, PartialEq)]
pub enum Rate {
    /// The rate, in 0..=1.
    Known(f64),
    /// Some samples could not be checked, so the rate lies in `lower..=upper`.
    Unknown {
        /// The commonest reason samples could not be checked.
        reason: String,
        /// The rate if every unknown sample was in fact present.
        lower: f64,
        /// The rate if every unknown sample was in fact missing.
        upper: f64,
    },
    /// No samples at all.
    NoSamples,
}

/// Settled samples of one keep class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCounts {
    /// Found.
    pub found: u64,
    /// Answered as not held.
    pub missing: u64,
    /// Could not be checked.
    pub unknown: u64,
}

impl ClassCounts {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Found { .. } => self.found += 1,
            Outcome::Missing => self.missing += 1,
            Outcome::Unknown { .. } => self.unknown += 1,
            Outcome::Superseded => {}
        }
    }
}

/// The verification results of one signal.
#[derive(Debug, Clone)]
pub struct Tally {
    /// The signal.
    pub signal: Signal,
    /// Samples found (complete or not).
    pub found: u64,
    /// Found traces with fewer spans than expected.
    pub incomplete: u64,
    /// Spans of found traces beside the echo-server's own (a sidecar's, an ingress's,
    /// another service's: [`Outcome::Found::extra_spans`]); not part of completeness.
    pub extra_spans: u64,
    /// Samples the backend answered it does not hold.
    pub missing: u64,
    /// Samples that could not be checked.
    pub unknown: u64,
    /// Exemplars taken over by a newer request before any scrape ([`Outcome::Superseded`]);
    /// not part of [`Tally::samples`].
    pub superseded: u64,
    /// Found latency probes whose first look-up came late: no ingest latency recorded.
    pub first_asked_late: u64,
    /// Found presence samples (asked whether, not when, they arrived): no ingest latency.
    pub presence_only: u64,
    /// Missing samples by what the workload's exporter did with them.
    pub missing_split: MissingSplit,
    /// Found / missing / unknown per keep class, indexed by [`super::Sample::class`].
    pub by_class: Vec<ClassCounts>,
    /// Found / missing / unknown per replica that served the request (at most
    /// [`MAX_REPLICAS`] + 1 entries), so loss confined to one replica shows as such.
    pub by_replica: BTreeMap<String, ClassCounts>,
    /// Ingest latency per second of the run (by the request's scheduled instant): found
    /// samples and the sum of their latencies in µs. Kept when [`Tally::origin`] is set.
    pub ingest_series: Vec<(u64, u64)>,
    /// The run's start, for [`Tally::ingest_series`].
    pub origin: Option<std::time::Instant>,
    /// Why, with counts (at most [`MAX_REASONS`] + 1 entries).
    pub unknown_reasons: BTreeMap<String, u64>,
    /// `telemetry_<signal>_ingest_latency`, µs.
    pub ingest_latency: Hist,
    /// `telemetry_<signal>_query_duration`, µs.
    pub query_duration: Hist,
    /// `telemetry_<signal>_export_wait`, µs: completion → the workload's export of it was
    /// acknowledged (latency probes with a ledger).
    pub export_wait: Hist,
    /// `telemetry_<signal>_backend_latency`, µs: acknowledged → first seen queryable: the
    /// backend's part of the ingest latency.
    pub backend_latency: Hist,
}

impl Tally {
    /// An empty tally.
    pub fn new(signal: Signal) -> Self {
        Self {
            signal,
            found: 0,
            incomplete: 0,
            extra_spans: 0,
            missing: 0,
            unknown: 0,
            superseded: 0,
            first_asked_late: 0,
            presence_only: 0,
            missing_split: MissingSplit::default(),
            by_class: Vec::new(),
            by_replica: BTreeMap::new(),
            ingest_series: Vec::new(),
            origin: None,
            unknown_reasons: BTreeMap::new(),
            ingest_latency: new_hist(),
            query_duration: new_hist(),
            export_wait: new_hist(),
            backend_latency: new_hist(),
        }
    }

    /// Adds one settled sample.
    pub fn record(&mut self, v: &Verified) {
        let class = usize::from(v.sample.class);
        if self.by_class.len() <= class {
            self.by_class.resize(class + 1, ClassCounts::default());
        }
        let replica = v.sample.replica.as_deref().unwrap_or(OTHER_REPLICAS);
        let key = if self.by_replica.contains_key(replica) || self.by_replica.len() < MAX_REPLICAS {
            replica
        } else {
            OTHER_REPLICAS
        };
        if !self.by_replica.contains_key(key) {
            self.by_replica
                .insert(key.to_owned(), ClassCounts::default());
        }
        self.by_class[class].count(&v.outcome);
        if let Some(counts) = self.by_replica.get_mut(key) {
            counts.count(&v.outcome);
        }
        match &v.outcome {
            Outcome::Found { .. } => {
                self.found += 1;
                if v.complete == Some(false) {
                    self.incomplete += 1;
                }
                if let Outcome::Found {
                    extra_spans: Some(n),
                    ..
                } = &v.outcome
                {
                    self.extra_spans += *n as u64;
                }
                match v.latency {
                    LatencyUse::Probe => {}
                    LatencyUse::FirstAskedLate => self.first_asked_late += 1,
                    LatencyUse::Presence => self.presence_only += 1,
                }
                if let (Some(l), Some(Export::Accepted { acked_at })) = (v.ingest_latency, v.export)
                {
                    // The legs add up to the ingest latency: a backend that holds the
                    // telemetry before the exporter hears its acknowledgement (the embedded
                    // sink records on receipt) has a backend part of zero.
                    let wait = acked_at
                        .duration_since(v.sample.completed_at)
                        .unwrap_or_default()
                        .min(l);
                    record_duration(&mut self.export_wait, wait);
                    record_duration(&mut self.backend_latency, l - wait);
                }
                if let Some(l) = v.ingest_latency {
                    record_duration(&mut self.ingest_latency, l);
                    if let Some(origin) = self.origin {
                        let sec = v
                            .sample
                            .scheduled
                            .saturating_duration_since(origin)
                            .as_secs();
                        let sec = usize::try_from(sec).unwrap_or(usize::MAX).min(86_400);
                        if self.ingest_series.len() <= sec {
                            self.ingest_series.resize(sec + 1, (0, 0));
                        }
                        let slot = &mut self.ingest_series[sec];
                        slot.0 += 1;
                        slot.1 += u64::try_from(l.as_micros()).unwrap_or(u64::MAX);
                    }
                }
            }
            Outcome::Missing => {
                self.missing += 1;
                self.missing_split.add(v.export);
            }
            Outcome::Superseded => self.superseded += 1,
            Outcome::Unknown { reason } => {
                self.unknown += 1;
                self.add_reason(reason, 1);
            }
        }
    }

    /// Counts `n` samples that were never handed to the verifier (its queue was full) as
    /// unknown, with the reason.
    pub fn record_unverified(&mut self, n: u64, reason: &str) {
        if n > 0 {
            self.unknown += n;
            self.add_reason(reason, n);
        }
    }

    /// Adds one backend query's duration.
    pub fn record_query(&mut self, d: Duration) {
        record_duration(&mut self.query_duration, d);
    }

    fn add_reason(&mut self, reason: &str, n: u64) {
        let kept = self.unknown_reasons.len()
            - usize::from(self.unknown_reasons.contains_key(OTHER_REASONS));
        let key = if reason == OTHER_REASONS
            || self.unknown_reasons.contains_key(reason)
            || kept < MAX_REASONS
        {
            reason
        } else {
            OTHER_REASONS
        };
        *self.unknown_reasons.entry(key.to_owned()).or_default() += n;
    }

    /// Adds another runner's tally of the same signal.
    pub fn merge(&mut self, other: &Tally) {
        self.found += other.found;
        self.incomplete += other.incomplete;
        self.extra_spans += other.extra_spans;
        self.missing += other.missing;
        self.unknown += other.unknown;
        self.superseded += other.superseded;
        self.first_asked_late += other.first_asked_late;
        self.presence_only += other.presence_only;
        self.missing_split.merge(&other.missing_split);
        if self.by_class.len() < other.by_class.len() {
            self.by_class
                .resize(other.by_class.len(), ClassCounts::default());
        }
        if self.ingest_series.len() < other.ingest_series.len() {
            self.ingest_series.resize(other.ingest_series.len(), (0, 0));
        }
        for (mine, theirs) in self.ingest_series.iter_mut().zip(&other.ingest_series) {
            mine.0 += theirs.0;
            mine.1 += theirs.1;
        }
        for (replica, theirs) in &other.by_replica {
            let key =
                if self.by_replica.contains_key(replica) || self.by_replica.len() < MAX_REPLICAS {
                    replica.as_str()
                } else {
                    OTHER_REPLICAS
                };
            let mine = self.by_replica.entry(key.to_owned()).or_default();
            mine.found += theirs.found;
            mine.missing += theirs.missing;
            mine.unknown += theirs.unknown;
        }
        for (mine, theirs) in self.by_class.iter_mut().zip(&other.by_class) {
            mine.found += theirs.found;
            mine.missing += theirs.missing;
            mine.unknown += theirs.unknown;
        }
        for (r, n) in &other.unknown_reasons {
            self.add_reason(r, *n);
        }
        merge_hist(&mut self.ingest_latency, &other.ingest_latency);
        merge_hist(&mut self.query_duration, &other.query_duration);
        merge_hist(&mut self.export_wait, &other.export_wait);
        merge_hist(&mut self.backend_latency, &other.backend_latency);
    }

    /// Settled samples.
    pub fn samples(&self) -> u64 {
        self.found + self.missing + self.unknown
    }

    /// `telemetry_<signal>_missing`: missing / samples, unknown while any sample is.
    pub fn missing_rate(&self) -> Rate {
        self.rate(self.missing)
    }

    /// `telemetry_trace_incomplete`: found-but-incomplete / samples.
    pub fn incomplete_rate(&self) -> Rate {
        self.rate(self.incomplete)
    }

    /// `telemetry_<signal>_unknown`: unknown / samples (always known).
    pub fn unknown_rate(&self) -> Rate {
        match self.samples() {
            0 => Rate::NoSamples,
            n => Rate::Known(self.unknown as f64 / n as f64),
        }
    }

    fn rate(&self, bad: u64) -> Rate {
        let n = self.samples();
        if n == 0 {
            return Rate::NoSamples;
        }
        let lower = bad as f64 / n as f64;
        if self.unknown == 0 {
            return Rate::Known(lower);
        }
        let reason = self
            .unknown_reasons
            .iter()
            .max_by_key(|(_, c)| **c)
            .map(|(r, c)| {
                format!(
                    "{} of {n} samples could not be checked ({c}×: {r})",
                    self.unknown
                )
            })
            .unwrap_or_default();
        Rate::Unknown {
            reason,
            lower,
            upper: (bad + self.unknown) as f64 / n as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::{Sample, TraceId};

    fn verified(outcome: Outcome, complete: Option<bool>, latency_ms: u64) -> Verified {
        Verified {
            sample: Sample::now(TraceId([1; 16])),
            outcome,
            ingest_latency: Some(Duration::from_millis(latency_ms)),
            complete,
            polls: 1,
            latency: LatencyUse::Probe,
            export: None,
        }
    }

    fn found() -> Outcome {
        Outcome::Found {
            first_seen: Instant::now(),
            spans: Some(1),
            extra_spans: None,
            recorded_at: None,
        }
    }

    #[test]
    fn rates_are_known_only_while_nothing_is_unknown() {
        let mut t = Tally::new(Signal::Traces);
        assert_eq!(t.missing_rate(), Rate::NoSamples);
        for _ in 0..97 {
            t.record(&verified(found(), Some(true), 80));
        }
        t.record(&verified(found(), Some(false), 120));
        t.record(&verified(Outcome::Missing, None, 0));
        t.record(&verified(Outcome::Missing, None, 0));
        assert_eq!(t.missing_rate(), Rate::Known(0.02));
        assert_eq!(t.incomplete_rate(), Rate::Known(0.01));
        assert_eq!(t.ingest_latency.len(), 98);

        t.record(&verified(
            Outcome::unknown("tempo at http://t/: could not connect"),
            None,
            0,
        ));
        match t.missing_rate() {
            Rate::Unknown {
                reason,
                lower,
                upper,
            } => {
                assert!(
                    reason.contains("1 of 101 samples could not be checked")
                        && reason.contains("could not connect")
                );
                assert!((lower - 2.0 / 101.0).abs() < 1e-12 && (upper - 3.0 / 101.0).abs() < 1e-12);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn merging_adds_counts_histograms_and_bounded_reasons() {
        let mut a = Tally::new(Signal::Logs);
        let mut b = Tally::new(Signal::Logs);
        for i in 0..MAX_REASONS + 3 {
            b.record(&verified(Outcome::unknown(format!("reason {i}")), None, 0));
        }
        a.record(&verified(found(), None, 10));
        a.record_query(Duration::from_millis(3));
        b.record_query(Duration::from_millis(5));
        a.merge(&b);
        assert_eq!(a.samples(), 1 + MAX_REASONS as u64 + 3);
        assert_eq!(a.unknown_reasons.len(), MAX_REASONS + 1);
        assert_eq!(a.unknown_reasons[OTHER_REASONS], 3);
        assert_eq!(a.query_duration.len(), 2);
    }

    #[test]
    fn loss_on_one_replica_shows_on_that_replica_only() {
        let mut t = Tally::new(Signal::Traces);
        for i in 0..20u8 {
            let replica = if i % 2 == 0 { "echo-a" } else { "echo-b" };
            let outcome = if replica == "echo-b" && i % 4 == 1 {
                Outcome::Missing
            } else {
                found()
            };
            let mut v = verified(outcome, Some(true), 10);
            v.sample.replica = Some(replica.into());
            t.record(&v);
        }
        assert_eq!(
            t.by_replica["echo-a"],
            ClassCounts {
                found: 10,
                missing: 0,
                unknown: 0
            }
        );
        assert_eq!(
            t.by_replica["echo-b"],
            ClassCounts {
                found: 5,
                missing: 5,
                unknown: 0
            }
        );
        let mut merged = Tally::new(Signal::Traces);
        merged.merge(&t);
        merged.merge(&t);
        assert_eq!(merged.by_replica["echo-b"].missing, 10);
    }
}
