//! The neutral data model: what the engine hands over, one [`Batch`] per flush.

use std::time::SystemTime;

use crate::{OutputError, Result};

/// Everything measured at one instant: plain series and histograms.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// When the values were taken; every sample of the batch carries this timestamp.
    pub at: SystemTime,
    /// Counters and gauges.
    pub series: Vec<Series>,
    /// Explicit-bucket histograms.
    pub histograms: Vec<Histogram>,
    /// Native (exponential-bucket) histograms: encoded by remote write only; the other
    /// encodings leave them out.
    pub native: Vec<NativeHistogram>,
}

/// One counter or gauge value with its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Metric name (`ricochet_requests_total`).
    pub name: String,
    /// Label pairs, in any order.
    pub labels: Vec<(String, String)>,
    /// The value: for a counter the running total since the run started.
    pub value: f64,
    /// Counter or gauge.
    pub kind: Kind,
}

/// What a [`Series`] value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A cumulative total since the run started, never decreasing.
    Counter,
    /// A value at the instant, which may go up and down.
    Gauge,
}

/// A cumulative explicit-bucket histogram (totals since the run started).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Metric name (`ricochet_request_duration_seconds`).
    pub name: String,
    /// Label pairs, in any order.
    pub labels: Vec<(String, String)>,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
    /// Upper bounds of the buckets, finite and strictly ascending.
    pub bounds: Vec<f64>,
    /// Observations per bucket, not cumulative: `bounds.len() + 1` entries, the last one
    /// for values above the last bound.
    pub counts: Vec<u64>,
}

impl Batch {
    /// A batch taken at `at` with no values yet.
    pub fn new(at: SystemTime) -> Self {
        Self {
            at,
            series: Vec::new(),
            histograms: Vec::new(),
            native: Vec::new(),
        }
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.histograms.is_empty() && self.native.is_empty()
    }

    /// Checks each histogram's shape: finite ascending bounds, one more count than bounds;
    /// native schemas within -4..=8.
    pub fn validate(&self) -> Result<()> {
        self.histograms.iter().try_for_each(Histogram::validate)?;
        match self.native.iter().find(|h| !(-4..=8).contains(&h.schema)) {
            Some(h) => Err(OutputError::Histogram {
                name: h.name.clone(),
                reason: format!("schema {} is not one of -4 to 8", h.schema),
            }),
            None => Ok(()),
        }
    }
}

/// A cumulative native histogram (Prometheus' sparse exponential buckets): bucket `i` of
/// schema `s` holds the observations in `(2^((i-1)/2^s), 2^(i/2^s)]`; observations of 0
/// (or below) are counted in the zero bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeHistogram {
    /// Metric name (`ricochet_http_req_duration_seconds`).
    pub name: String,
    /// Label pairs, in any order.
    pub labels: Vec<(String, String)>,
    /// Resolution: `2^s` buckets per power of two (-4 to 8).
    pub schema: i8,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
    /// Observations of zero or less.
    pub zero_count: u64,
    /// Observations per bucket index, positive values only.
    pub buckets: std::collections::BTreeMap<i32, u64>,
}

impl NativeHistogram {
    /// An empty histogram of `schema`.
    pub fn new(name: String, labels: Vec<(String, String)>, schema: i8) -> Self {
        Self {
            name,
            labels,
            schema,
            count: 0,
            sum: 0.0,
            zero_count: 0,
            buckets: std::collections::BTreeMap::new(),
        }
    }

    /// Counts `n` observations of `value`.
    pub fn observe(&mut self, value: f64, n: u64) {
        self.count += n;
        self.sum += value * n as f64;
        if value > 0.0 && value.is_finite() {
            *self
                .buckets
                .entry(bucket_index(value, self.schema))
                .or_default() += n;
        } else {
            self.zero_count += n;
        }
    }
}

/// The index of the bucket of `schema` that holds `v` (> 0): the `i` with
/// `2^((i-1)/2^s) < v <= 2^(i/2^s)`.
pub fn bucket_index(v: f64, schema: i8) -> i32 {
    let per_octave = 2f64.powi(i32::from(schema));
    let upper = |i: i32| 2f64.powf(f64::from(i) / per_octave);
    let mut i = (v.log2() * per_octave).ceil() as i32;
    // log2 rounds: settle on the bucket whose bounds hold v.
    while upper(i) < v {
        i += 1;
    }
    while upper(i - 1) >= v {
        i -= 1;
    }
    i
}

impl Histogram {
    fn validate(&self) -> Result<()> {
        let invalid = |reason: String| {
            Err(OutputError::Histogram {
                name: self.name.clone(),
                reason,
            })
        };
        if self.counts.len() != self.bounds.len() + 1 {
            return invalid(format!(
                "it has {} bounds and {} counts; counts needs one entry per bound plus one for the overflow bucket",
                self.bounds.len(),
                self.counts.len()
            ));
        }
        if let Some(b) = self.bounds.iter().find(|b| !b.is_finite()) {
            return invalid(format!(
                "bound {b} is not finite; the overflow bucket is implied"
            ));
        }
        if let Some(w) = self.bounds.windows(2).find(|w| w[0] >= w[1]) {
            return invalid(format!(
                "bounds must be strictly ascending, found {} then {}",
                w[0], w[1]
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(bounds: Vec<f64>, counts: Vec<u64>) -> Histogram {
        Histogram {
            name: "latency".into(),
            labels: Vec::new(),
            count: counts.iter().sum(),
            sum: 1.0,
            bounds,
            counts,
        }
    }

    #[test]
    fn a_histogram_needs_one_count_more_than_bounds() {
        let mut batch = Batch::new(SystemTime::UNIX_EPOCH);
        batch.histograms.push(histogram(vec![0.1, 1.0], vec![1, 2]));
        let err = batch.validate().unwrap_err().to_string();
        assert!(err.contains("`latency`"), "{err}");
        assert!(err.contains("2 bounds and 2 counts"), "{err}");
        batch.histograms[0].counts.push(3);
        batch.validate().unwrap();
    }

    #[test]
    fn native_buckets_hold_their_values_between_their_bounds() {
        // Schema 0: one bucket per power of two, (1, 2] is index 1, (0.5, 1] index 0.
        assert_eq!(bucket_index(1.0, 0), 0);
        assert_eq!(bucket_index(1.5, 0), 1);
        assert_eq!(bucket_index(2.0, 0), 1);
        assert_eq!(bucket_index(0.75, 0), 0);
        // Schema 3: 8 per octave; every value lies within its bucket's bounds.
        for v in [0.000_123, 0.001, 0.0123, 0.5, 1.0, 3.7, 1000.0] {
            let i = bucket_index(v, 3);
            let (lo, hi) = (
                2f64.powf(f64::from(i - 1) / 8.0),
                2f64.powf(f64::from(i) / 8.0),
            );
            assert!(lo < v && v <= hi, "{v} in ({lo}, {hi}] of {i}");
        }
        let mut h = NativeHistogram::new("lat".into(), Vec::new(), 3);
        h.observe(0.0, 2);
        h.observe(0.25, 3);
        assert_eq!((h.count, h.zero_count, h.sum), (5, 2, 0.75));
        assert_eq!(h.buckets.into_iter().collect::<Vec<_>>(), [(-16, 3)]);
        let mut batch = Batch::new(SystemTime::UNIX_EPOCH);
        batch
            .native
            .push(NativeHistogram::new("x".into(), Vec::new(), 9));
        assert!(
            batch
                .validate()
                .unwrap_err()
                .to_string()
                .contains("schema 9")
        );
    }

    #[test]
    fn histogram_bounds_must_be_finite_and_strictly_ascending() {
        let mut batch = Batch::new(SystemTime::UNIX_EPOCH);
        batch
            .histograms
            .push(histogram(vec![1.0, 1.0], vec![0, 0, 0]));
        assert!(
            batch
                .validate()
                .unwrap_err()
                .to_string()
                .contains("1 then 1")
        );
        batch.histograms[0].bounds = vec![1.0, f64::INFINITY];
        assert!(batch.validate().unwrap_err().to_string().contains("inf"));
    }
}
