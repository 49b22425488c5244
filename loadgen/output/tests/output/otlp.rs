//! OTLP/HTTP against a stub collector that decodes each `ExportMetricsServiceRequest`.

use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, metric, number_data_point,
};
use prost::Message as _;
use ricochet_output::{Auth, Options, Output, Secret, Target};

use super::{always, batch};

fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
    req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name} in {req:?}"))
}

fn number(p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        other => panic!("not a double: {other:?}"),
    }
}

#[tokio::test]
async fn a_collector_receives_cumulative_sums_gauges_and_histograms_with_the_resource() {
    let collector = always(200, "").await;
    let target = Target::otlp(format!("http://{}", collector.addr))
        .with_tenant("team-a")
        .with_auth(Auth::Basic {
            user: "42".into(),
            password: Secret::new("glc_token"),
        });
    let options = Options {
        resource: vec![("testid".into(), "checkout-42".into())],
        ..Options::default()
    };
    let output = Output::start(vec![target], options).unwrap();
    let t0 = SystemTime::now();
    output.offer(batch(t0, 10.0, 5.0, [1, 2, 0])).unwrap();
    output
        .offer(batch(t0 + Duration::from_secs(1), 25.0, 3.0, [4, 5, 1]))
        .unwrap();
    let reports = output.finish(Duration::from_secs(5)).await;

    assert_eq!(reports[0].batches_sent, 2, "{reports:?}");
    assert_eq!(reports[0].samples_sent, 6, "3 points per batch");
    let got = collector.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].path, "/v1/metrics");
    assert_eq!(got[0].headers["content-type"], "application/x-protobuf");
    assert_eq!(got[0].headers["x-scope-orgid"], "team-a");
    assert_eq!(got[0].headers["authorization"], "Basic NDI6Z2xjX3Rva2Vu");
    let reqs: Vec<ExportMetricsServiceRequest> = got
        .iter()
        .map(|r| ExportMetricsServiceRequest::decode(r.body.clone()).unwrap())
        .collect();

    let resource: Vec<(String, String)> = reqs[1].resource_metrics[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| {
            let Some(any_value::Value::StringValue(v)) =
                kv.value.as_ref().and_then(|v| v.value.clone())
            else {
                panic!("not a string: {kv:?}");
            };
            (kv.key.clone(), v)
        })
        .collect();
    assert_eq!(
        resource,
        [
            ("service.name".to_owned(), "ricochet-loadgen".to_owned()),
            ("testid".to_owned(), "checkout-42".to_owned()),
        ]
    );

    let totals: Vec<f64> = reqs
        .iter()
        .map(|req| {
            let Some(metric::Data::Sum(sum)) = &metric(req, "ricochet_requests_total").data else {
                panic!("the counter is a sum");
            };
            assert!(sum.is_monotonic);
            assert_eq!(
                sum.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            let p = &sum.data_points[0];
            assert!(p.start_time_unix_nano > 0 && p.start_time_unix_nano <= p.time_unix_nano);
            assert_eq!(p.attributes[0].key, "scenario");
            number(p)
        })
        .collect();
    assert_eq!(totals, [10.0, 25.0], "counters are the running totals sent");

    let Some(metric::Data::Gauge(gauge)) = &metric(&reqs[1], "ricochet_vus").data else {
        panic!("vus is a gauge");
    };
    assert_eq!(number(&gauge.data_points[0]), 3.0);

    let Some(metric::Data::Histogram(hist)) = &metric(&reqs[1], "ricochet_latency_seconds").data
    else {
        panic!("latency is a histogram");
    };
    assert_eq!(
        hist.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let p = &hist.data_points[0];
    assert_eq!(p.count, 10);
    assert_eq!(p.explicit_bounds, [0.1, 0.5]);
    assert_eq!(p.bucket_counts, [4, 5, 1]);
    assert_eq!(p.sum, Some(0.05 * 4.0 + 0.3 * 5.0 + 0.9));
}
