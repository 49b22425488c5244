//! A bounded memory of recently seen trace ids, for the verifiers that watch a stream (the
//! embedded sink, the `/metrics` scraper) rather than query a backend.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::TraceId;

/// How much a stream verifier remembers: at most `capacity` trace ids, each for
/// `retention` after it first arrived (size it with
/// [`PollPolicy::retention`](crate::poll::PollPolicy::retention)).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Most ids held.
    pub capacity: usize,
    /// How long an id is held.
    pub retention: Duration,
}

/// Trace ids with a value each, held at most `retention` after they were first seen and
/// never more than `cap` at once: memory stays flat however long the run, at about
/// `ids per second x retention` entries.
///
/// An id forgotten by age was first seen longer ago than any sample can still be asked
/// about (see [`crate::poll::PollPolicy::retention`]); an id dropped to stay within `cap`
/// may still be asked about, so those are counted ([`Recent::evicted`]).
#[derive(Debug)]
pub(crate) struct Recent<V> {
    map: HashMap<TraceId, V>,
    order: VecDeque<(Instant, TraceId)>,
    cap: usize,
    retention: Duration,
    evicted: u64,
}

impl<V> Recent<V> {
    /// Holds ids within `limits` (at least one).
    pub(crate) fn new(limits: Retention) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: limits.capacity.max(1),
            retention: limits.retention,
            evicted: 0,
        }
    }

    /// The value held for `id`.
    pub(crate) fn get(&self, id: &TraceId) -> Option<&V> {
        self.map.get(id)
    }

    /// The value held for `id`, or a new one made by `make` (first seen `now`), after
    /// forgetting ids older than the retention and, if still full, the oldest ids.
    pub(crate) fn entry(&mut self, id: TraceId, now: Instant, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&id) {
            self.expire(now);
            while self.map.len() >= self.cap {
                let Some((_, old)) = self.order.pop_front() else {
                    break;
                };
                if self.map.remove(&old).is_some() {
                    self.evicted += 1;
                }
            }
            self.order.push_back((now, id));
        }
        self.map.entry(id).or_insert_with(make)
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(seen, old)) = self.order.front() {
            if now.saturating_duration_since(seen) <= self.retention {
                break;
            }
            self.order.pop_front();
            self.map.remove(&old);
        }
    }

    /// Ids held now.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Ids dropped to stay within `cap` while still within their retention.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(capacity: usize, secs: u64) -> Retention {
        Retention {
            capacity,
            retention: Duration::from_secs(secs),
        }
    }

    fn id(n: u128) -> TraceId {
        TraceId(n.to_be_bytes())
    }

    #[test]
    fn ids_older_than_the_retention_are_forgotten_without_counting_as_evicted() {
        let t0 = Instant::now();
        let mut r = Recent::new(limits(100, 10));
        for n in 1..=5 {
            *r.entry(id(n), t0, || 0) += 1;
        }
        *r.entry(id(1), t0 + Duration::from_secs(5), || 0) += 1;
        assert_eq!(r.get(&id(1)), Some(&2), "a repeat adds to the first entry");
        // 11 s later: the five first seen at t0 are older than 10 s.
        r.entry(id(6), t0 + Duration::from_secs(11), || 7);
        assert_eq!(r.len(), 1);
        assert_eq!(r.get(&id(1)), None);
        assert_eq!(r.get(&id(6)), Some(&7));
        assert_eq!(r.evicted(), 0);
    }

    #[test]
    fn memory_stays_flat_over_a_long_stream() {
        let t0 = Instant::now();
        let mut r = Recent::new(limits(1_000_000, 30));
        // One hour at 1 000 new ids per second: only the last 30 s are held, and the
        // table (which keeps room for its deleted slots) stays within a few times that.
        for s in 0..3_600u128 {
            let now = t0 + Duration::from_secs(s as u64);
            for i in 0..1_000 {
                r.entry(id(s * 1_000 + i + 1), now, || ());
            }
        }
        assert!(r.len() <= 31_000, "held {}", r.len());
        assert!(
            r.map.capacity() <= 4 * 31_000,
            "capacity {}",
            r.map.capacity()
        );
        assert!(r.order.len() <= 31_000, "order {}", r.order.len());
        assert_eq!(r.evicted(), 0);
    }

    #[test]
    fn beyond_the_cap_the_oldest_are_evicted_and_counted() {
        let t0 = Instant::now();
        let mut r = Recent::new(limits(3, 3600));
        for n in 1..=5 {
            r.entry(id(n), t0, || n);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.get(&id(1)), None);
        assert_eq!(r.get(&id(5)), Some(&5));
        assert_eq!(r.evicted(), 2);
    }
}
