//! Prometheus remote write 1.0: the `prompb` messages and the encoding of a [`Batch`].
//!
//! Field numbers follow the specification's `types.proto`/`remote.proto` (WriteRequest
//! `timeseries = 1`; TimeSeries `labels = 1`, `samples = 2`; Label `name = 1`,
//! `value = 2`; Sample `value = 1` double, `timestamp = 2` int64 milliseconds). Each
//! series carries `__name__` and its labels sorted by name, with names sanitized to what
//! the specification allows; histograms become classic `_bucket{le}` (cumulative),
//! `_sum` and `_count` series, and native histograms the `histograms` field of their
//! series (TimeSeries `histograms = 4`, Prometheus' `types.proto` `Histogram`: integer
//! counts, sparse positive buckets as spans and delta-encoded counts). The body is snappy
//! block-compressed.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message as _;

use crate::model::{Batch, Histogram, NativeHistogram};
use crate::{OutputError, Result};

/// A remote-write request: the series of one push.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// One series: its labels (with `__name__`) and samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histogram samples in timestamp order.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<NativeSample>,
}

/// One native histogram at one instant (`prometheus.Histogram`, integer counts).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NativeSample {
    /// Observations (`count_int` of the `count` oneof).
    #[prost(uint64, optional, tag = "1")]
    pub count: Option<u64>,
    /// Sum of the observations.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Resolution.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// Width of the zero bucket, `[-t, t]`.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// Observations in the zero bucket (`zero_count_int`).
    #[prost(uint64, optional, tag = "6")]
    pub zero_count: Option<u64>,
    /// Runs of consecutive positive buckets.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// The positive buckets' counts, each as the difference from the previous one.
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

/// A run of consecutive buckets: its gap from the previous run's end (or, for the first,
/// its first index) and its length.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    /// Gap to the previous span, or the first index.
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Buckets in the span.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// A label pair.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One value at one instant.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The `WriteRequest` of a batch; every sample carries the batch's instant.
pub fn write_request(batch: &Batch) -> WriteRequest {
    let ts = millis(batch.at);
    let mut timeseries = Vec::with_capacity(batch.series.len() + 3 * batch.histograms.len());
    for s in &batch.series {
        timeseries.push(series(&s.name, &s.labels, None, s.value, ts));
    }
    for h in &batch.histograms {
        push_histogram(&mut timeseries, h, ts);
    }
    for h in &batch.native {
        let mut t = series(&h.name, &h.labels, None, 0.0, ts);
        t.samples.clear();
        t.histograms.push(native_sample(h, ts));
        timeseries.push(t);
    }
    WriteRequest { timeseries }
}

/// The snappy block-compressed protobuf body of a batch and its number of samples.
pub fn encode(batch: &Batch) -> Result<(Bytes, u64)> {
    let request = write_request(batch);
    let samples = request
        .timeseries
        .iter()
        .map(|t| (t.samples.len() + t.histograms.len()) as u64)
        .sum();
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .map_err(|e| OutputError::Encode {
            reason: format!("snappy compression failed: {e}"),
        })?;
    Ok((Bytes::from(body), samples))
}

/// `h` as a remote-write histogram sample: buckets in index order, grouped into spans of
/// consecutive indices.
fn native_sample(h: &NativeHistogram, timestamp: i64) -> NativeSample {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas = Vec::with_capacity(h.buckets.len());
    let (mut next, mut previous) = (None::<i32>, 0i64);
    for (&index, &n) in &h.buckets {
        match (next, spans.last_mut()) {
            (Some(expected), Some(span)) if expected == index => span.length += 1,
            (Some(expected), _) => spans.push(BucketSpan {
                offset: index - expected,
                length: 1,
            }),
            (None, _) => spans.push(BucketSpan {
                offset: index,
                length: 1,
            }),
        }
        next = Some(index + 1);
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        deltas.push(n - previous);
        previous = n;
    }
    NativeSample {
        count: Some(h.count),
        sum: h.sum,
        schema: i32::from(h.schema),
        zero_threshold: 0.0,
        zero_count: Some(h.zero_count),
        positive_spans: spans,
        positive_deltas: deltas,
        timestamp,
    }
}

fn push_histogram(out: &mut Vec<TimeSeries>, h: &Histogram, ts: i64) {
    let bucket = format!("{}_bucket", h.name);
    let mut cumulative = 0u64;
    for (i, count) in h.counts.iter().enumerate() {
        cumulative = cumulative.saturating_add(*count);
        let le = h
            .bounds
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
        out.push(series(&bucket, &h.labels, Some(le), cumulative as f64, ts));
    }
    out.push(series(
        &format!("{}_sum", h.name),
        &h.labels,
        None,
        h.sum,
        ts,
    ));
    out.push(series(
        &format!("{}_count", h.name),
        &h.labels,
        None,
        h.count as f64,
        ts,
    ));
}

/// One series: `__name__`, the sanitized labels (a user `le` on a bucket, a user
/// `__name__`, empty values and a later duplicate of a name dropped), sorted by name.
fn series(
    name: &str,
    labels: &[(String, String)],
    le: Option<String>,
    value: f64,
    timestamp: i64,
) -> TimeSeries {
    let mut out = Vec::with_capacity(labels.len() + 2);
    out.push(Label {
        name: "__name__".to_owned(),
        value: sanitize_metric_name(name),
    });
    let has_le = le.is_some();
    if let Some(le) = le {
        out.push(Label {
            name: "le".to_owned(),
            value: le,
        });
    }
    for (k, v) in labels {
        let k = sanitize_label_name(k);
        if v.is_empty() || k.is_empty() || k == "__name__" || (has_le && k == "le") {
            continue;
        }
        out.push(Label {
            name: k,
            value: v.clone(),
        });
    }
    // Stable: among equal names the first pushed (`__name__`, `le`, then the caller's
    // order) is kept.
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|later, earlier| later.name == earlier.name);
    TimeSeries {
        labels: out,
        samples: vec![Sample { value, timestamp }],
        histograms: Vec::new(),
    }
}

/// Milliseconds since the Unix epoch (negative before it).
fn millis(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |m| -m),
    }
}

/// A label name as remote write allows it, `[a-zA-Z_][a-zA-Z0-9_]*`: every other
/// character becomes `_`, and a leading digit gets a `_` before it.
pub fn sanitize_label_name(name: &str) -> String {
    sanitize(name, false)
}

/// A metric name as Prometheus allows it, `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn sanitize_metric_name(name: &str) -> String {
    sanitize(name, true)
}

fn sanitize(name: &str, colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':') {
            c
        } else {
            '_'
        }
    }));
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{Kind, Series};

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn pairs(t: &TimeSeries) -> Vec<(&str, &str)> {
        t.labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    fn batch() -> Batch {
        Batch {
            at: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            series: vec![Series {
                name: "ricochet.requests-total".into(),
                labels: labels(&[("zone", "a"), ("http.method", "GET"), ("9th", "x")]),
                value: 42.0,
                kind: Kind::Counter,
            }],
            histograms: vec![Histogram {
                name: "ricochet_latency_seconds".into(),
                labels: labels(&[("scenario", "smoke"), ("le", "user"), ("empty", "")]),
                count: 10,
                sum: 1.5,
                bounds: vec![0.05, 0.1, 0.25],
                counts: vec![2, 3, 4, 1],
            }],
            native: Vec::new(),
        }
    }

    #[test]
    fn the_body_decodes_back_to_sorted_sanitized_series_with_millisecond_timestamps() {
        let (body, samples) = encode(&batch()).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = WriteRequest::decode(raw.as_slice()).unwrap();
        // 1 counter + 4 buckets + _sum + _count.
        assert_eq!(samples, 7);
        assert_eq!(req.timeseries.len(), 7);
        for t in &req.timeseries {
            assert_eq!(t.samples.len(), 1);
            assert_eq!(t.samples[0].timestamp, 1_700_000_000_123);
            let names: Vec<&str> = t.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "labels sorted by name");
        }
        assert_eq!(
            pairs(&req.timeseries[0]),
            [
                ("_9th", "x"),
                ("__name__", "ricochet_requests_total"),
                ("http_method", "GET"),
                ("zone", "a"),
            ]
        );
        assert_eq!(req.timeseries[0].samples[0].value, 42.0);
    }

    #[test]
    fn histograms_become_cumulative_buckets_sum_and_count() {
        let req = write_request(&batch());
        let buckets: Vec<(String, f64)> = req.timeseries[1..5]
            .iter()
            .map(|t| {
                assert_eq!(
                    pairs(t)
                        .iter()
                        .filter(|(k, _)| *k != "le")
                        .copied()
                        .collect::<Vec<_>>(),
                    [
                        ("__name__", "ricochet_latency_seconds_bucket"),
                        ("scenario", "smoke")
                    ],
                    "the user's `le` and empty labels are dropped"
                );
                let le = t.labels.iter().find(|l| l.name == "le").unwrap();
                (le.value.clone(), t.samples[0].value)
            })
            .collect();
        assert_eq!(
            buckets,
            [
                ("0.05".to_owned(), 2.0),
                ("0.1".to_owned(), 5.0),
                ("0.25".to_owned(), 9.0),
                ("+Inf".to_owned(), 10.0),
            ]
        );
        assert_eq!(
            pairs(&req.timeseries[5])[0],
            ("__name__", "ricochet_latency_seconds_sum")
        );
        assert_eq!(req.timeseries[5].samples[0].value, 1.5);
        assert_eq!(
            pairs(&req.timeseries[6])[0],
            ("__name__", "ricochet_latency_seconds_count")
        );
        assert_eq!(req.timeseries[6].samples[0].value, 10.0);
    }

    #[test]
    fn native_histograms_are_spans_of_consecutive_buckets_with_delta_counts() {
        let mut h = NativeHistogram::new("lat_seconds".into(), labels(&[("s", "x")]), 0);
        // Buckets 1, 2 and 5 (schema 0: (1,2], (2,4], (16,32]) and one zero.
        h.observe(1.5, 3);
        h.observe(3.0, 1);
        h.observe(20.0, 4);
        h.observe(0.0, 2);
        let mut b = Batch::new(UNIX_EPOCH + Duration::from_millis(7));
        b.native.push(h);
        let (body, samples) = encode(&b).unwrap();
        assert_eq!(samples, 1);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = WriteRequest::decode(raw.as_slice()).unwrap();
        let t = &req.timeseries[0];
        assert_eq!(pairs(t), [("__name__", "lat_seconds"), ("s", "x")]);
        assert!(t.samples.is_empty());
        let n = &t.histograms[0];
        assert_eq!((n.count, n.zero_count, n.schema), (Some(10), Some(2), 0));
        assert_eq!(n.sum, 1.5 * 3.0 + 3.0 + 80.0);
        assert_eq!(n.timestamp, 7);
        let spans: Vec<(i32, u32)> = n
            .positive_spans
            .iter()
            .map(|s| (s.offset, s.length))
            .collect();
        assert_eq!(spans, [(1, 2), (2, 1)]);
        assert_eq!(n.positive_deltas, [3, -2, 3]);
    }

    #[test]
    fn a_user_name_label_and_duplicates_after_sanitizing_are_dropped() {
        let t = series(
            "m",
            &labels(&[("__name__", "evil"), ("a.b", "1"), ("a-b", "2")]),
            None,
            1.0,
            0,
        );
        assert_eq!(pairs(&t), [("__name__", "m"), ("a_b", "1")]);
    }

    #[test]
    fn names_are_sanitized_to_the_allowed_characters() {
        assert_eq!(sanitize_label_name("http.status-code"), "http_status_code");
        assert_eq!(sanitize_label_name("1x"), "_1x");
        assert_eq!(sanitize_label_name("a:b"), "a_b");
        assert_eq!(sanitize_metric_name("ns:req.total"), "ns:req_total");
        assert_eq!(sanitize_metric_name("é"), "_");
    }

    #[test]
    fn instants_before_the_epoch_have_negative_milliseconds() {
        assert_eq!(millis(UNIX_EPOCH - Duration::from_millis(5)), -5);
        assert_eq!(millis(UNIX_EPOCH + Duration::from_millis(5)), 5);
    }
}
