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
        }
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.histograms.is_empty()
    }

    /// Checks each histogram's shape: finite ascending bounds, one more count than bounds.
    pub fn validate(&self) -> Result<()> {
        self.histograms.iter().try_for_each(Histogram::validate)
    }
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
