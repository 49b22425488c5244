//! OTLP metrics: the `ExportMetricsServiceRequest` of a [`Batch`], pushed over
//! HTTP/protobuf.
//!
//! Counters become monotonic cumulative Sums, gauges Gauges, histograms cumulative
//! explicit-bucket Histograms; series of one name and kind share one metric. Every point
//! carries the batch's instant and, for cumulative ones, the run's start.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram as OtlpHistogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use crate::model::{Batch, Kind};

/// The `service.name` every push carries unless the caller's resource names another.
pub const SERVICE_NAME: &str = "ricochet-loadgen";

/// The request of a batch: `resource` beside `service.name`, cumulative points starting
/// at `start`.
pub fn export_request(
    batch: &Batch,
    resource: &[(String, String)],
    start: SystemTime,
) -> ExportMetricsServiceRequest {
    let now = nanos(batch.at);
    let start = nanos(start).min(now);
    let mut metrics: Vec<Metric> = Vec::new();
    let mut index: HashMap<(&str, Shape), usize> = HashMap::new();
    for s in &batch.series {
        let shape = match s.kind {
            Kind::Counter => Shape::Sum,
            Kind::Gauge => Shape::Gauge,
        };
        let i = slot(&mut metrics, &mut index, &s.name, shape);
        let point = NumberDataPoint {
            attributes: attributes(&s.labels),
            start_time_unix_nano: if shape == Shape::Sum { start } else { 0 },
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(s.value)),
            ..Default::default()
        };
        match &mut metrics[i].data {
            Some(metric::Data::Sum(sum)) => sum.data_points.push(point),
            Some(metric::Data::Gauge(gauge)) => gauge.data_points.push(point),
            _ => {}
        }
    }
    for h in &batch.histograms {
        let i = slot(&mut metrics, &mut index, &h.name, Shape::Histogram);
        if let Some(metric::Data::Histogram(hist)) = &mut metrics[i].data {
            hist.data_points.push(HistogramDataPoint {
                attributes: attributes(&h.labels),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: h.count,
                sum: Some(h.sum),
                bucket_counts: h.counts.clone(),
                explicit_bounds: h.bounds.clone(),
                ..Default::default()
            });
        }
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource_attributes(resource),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SERVICE_NAME.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The protobuf body of a batch and its number of data points.
pub fn encode(batch: &Batch, resource: &[(String, String)], start: SystemTime) -> (Bytes, u64) {
    let points = (batch.series.len() + batch.histograms.len()) as u64;
    let body = export_request(batch, resource, start).encode_to_vec();
    (Bytes::from(body), points)
}

/// What an accepted push's answer says about rejected points, if anything: the
/// `partial_success` of an `ExportMetricsServiceResponse` (an unreadable or empty body
/// says nothing).
pub fn partial_success(body: &[u8]) -> Option<String> {
    let partial = ExportMetricsServiceResponse::decode(body)
        .ok()?
        .partial_success?;
    match (partial.rejected_data_points, partial.error_message.as_str()) {
        (0, "") => None,
        (0, msg) => Some(format!("accepted with a warning: {msg}")),
        (n, "") => Some(format!("{n} data points rejected")),
        (n, msg) => Some(format!("{n} data points rejected: {msg}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shape {
    Sum,
    Gauge,
    Histogram,
}

/// The position of the metric of `name` and `shape`, appended empty when new.
fn slot<'a>(
    metrics: &mut Vec<Metric>,
    index: &mut HashMap<(&'a str, Shape), usize>,
    name: &'a str,
    shape: Shape,
) -> usize {
    *index.entry((name, shape)).or_insert_with(|| {
        metrics.push(empty_metric(name, shape));
        metrics.len() - 1
    })
}

fn empty_metric(name: &str, shape: Shape) -> Metric {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let data = match shape {
        Shape::Sum => metric::Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: cumulative,
            is_monotonic: true,
        }),
        Shape::Gauge => metric::Data::Gauge(Gauge {
            data_points: Vec::new(),
        }),
        Shape::Histogram => metric::Data::Histogram(OtlpHistogram {
            data_points: Vec::new(),
            aggregation_temporality: cumulative,
        }),
    };
    Metric {
        name: name.to_owned(),
        data: Some(data),
        ..Default::default()
    }
}

fn resource_attributes(resource: &[(String, String)]) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(resource.len() + 1);
    if !resource.iter().any(|(k, _)| k == "service.name") {
        out.push(string_kv("service.name", SERVICE_NAME));
    }
    out.extend(attributes(resource));
    out
}

fn attributes(labels: &[(String, String)]) -> Vec<KeyValue> {
    labels.iter().map(|(k, v)| string_kv(k, v)).collect()
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;

    use super::*;
    use crate::model::{Histogram, Series};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn counter(method: &str, value: f64) -> Series {
        Series {
            name: "requests".into(),
            labels: vec![("method".into(), method.into())],
            value,
            kind: Kind::Counter,
        }
    }

    #[test]
    fn series_of_one_name_share_a_metric_and_kinds_keep_their_shape() {
        let batch = Batch {
            at: at(100),
            series: vec![
                counter("GET", 3.0),
                Series {
                    name: "vus".into(),
                    labels: Vec::new(),
                    value: 7.0,
                    kind: Kind::Gauge,
                },
                counter("POST", 4.0),
            ],
            histograms: vec![Histogram {
                name: "latency".into(),
                labels: Vec::new(),
                count: 3,
                sum: 0.3,
                bounds: vec![0.1],
                counts: vec![1, 2],
            }],
            native: Vec::new(),
        };
        let req = export_request(&batch, &[("testid".into(), "t1".into())], at(90));
        let rm = &req.resource_metrics[0];
        let keys: Vec<&str> = rm
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(keys, ["service.name", "testid"]);
        let metrics = &rm.scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 3);
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
            panic!("requests is a sum: {:?}", metrics[0]);
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(sum.data_points.len(), 2);
        assert_eq!(sum.data_points[1].start_time_unix_nano, 90_000_000_000);
        assert_eq!(sum.data_points[1].time_unix_nano, 100_000_000_000);
        assert!(matches!(metrics[1].data, Some(metric::Data::Gauge(_))));
        let Some(metric::Data::Histogram(h)) = &metrics[2].data else {
            panic!("latency is a histogram: {:?}", metrics[2]);
        };
        assert_eq!(h.data_points[0].bucket_counts, [1, 2]);
        assert_eq!(h.data_points[0].explicit_bounds, [0.1]);
    }

    #[test]
    fn a_caller_service_name_replaces_the_default() {
        let attrs = resource_attributes(&[("service.name".into(), "mine".into())]);
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0], string_kv("service.name", "mine"));
    }

    #[test]
    fn partial_success_is_reported_only_when_it_says_something() {
        let answer = |rejected, msg: &str| {
            ExportMetricsServiceResponse {
                partial_success: Some(ExportMetricsPartialSuccess {
                    rejected_data_points: rejected,
                    error_message: msg.into(),
                }),
            }
            .encode_to_vec()
        };
        assert_eq!(partial_success(&answer(0, "")), None);
        assert_eq!(partial_success(b""), None);
        assert_eq!(
            partial_success(&answer(2, "bad name")).as_deref(),
            Some("2 data points rejected: bad name")
        );
    }
}
