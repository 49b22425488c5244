//! `loadgen run --output`: loadgen's own metrics pushed live to a real Prometheus (Debian's
//! package, `--web.enable-remote-write-receiver`) and over OTLP/HTTP to a small receiver
//! in the test; with the receiver down the run still passes and reports the lost pushes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message as _;
use serde_json::Value;

use crate::prometheus_roundtrip::{patience, start_prometheus_with, tail};
use crate::support::one_at_a_time;

const SCENARIO: &str = r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: live}
spec:
  scenarios:
    - {name: api, executor: constant-arrival-rate, rate: 50, duration: 10s, requests: [{name: orders, path: /api/orders}]}
  output: {flushInterval: 2s, prometheusRemoteWrite: {url: "URL", trendStats: ["p(95)", "p(99)", "max"]}}
  thresholds:
    http_req_failed: ["rate<0.01"]
    http_reqs: ["count>=450"]
"#;

fn run(dir: &std::path::Path, scenario: &str, extra: &[&str]) -> (i32, Value, String) {
    let file = dir.join("live.yaml");
    std::fs::write(&file, scenario).unwrap();
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .args(extra)
        .output()
        .unwrap();
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    (o.status.code().unwrap_or(-1), summary, stderr)
}

/// GETs `url`; `None` when nothing answered.
fn get(url: &str) -> Option<(u16, Vec<u8>)> {
    crate::support::runtime().block_on(async {
        let r = reqwest::get(url).await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.bytes().await.ok()?.to_vec()))
    })
}

/// Waits for `prom` to answer `/-/ready`, within the tests' patience.
fn wait_ready(prom: &crate::prometheus_roundtrip::Prometheus) {
    let ready = Instant::now();
    while get(&format!("{}/-/ready", prom.url)).is_none_or(|(status, _)| status != 200) {
        assert!(
            ready.elapsed() < patience(),
            "prometheus never ready:\n{}",
            tail(&prom.log)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn query(prom: &str, promql: &str) -> Vec<Value> {
    let mut url = reqwest::Url::parse(&format!("{prom}/api/v1/query")).unwrap();
    url.query_pairs_mut().append_pair("query", promql);
    let body: Value = get(url.as_str())
        .and_then(|(_, b)| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn value(v: &Value) -> f64 {
    v["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_run_pushes_its_metrics_to_prometheus_remote_write_and_they_match_the_summary() {
    let _serial = one_at_a_time();
    let prom = start_prometheus_with(
        "global: {scrape_interval: 1m}\n",
        &["--web.enable-remote-write-receiver"],
    );
    wait_ready(&prom);
    let dir = tempfile::tempdir().unwrap();
    let scenario = SCENARIO.replace("URL", &format!("{}/api/v1/write", prom.url));
    let (code, summary, stderr) = run(dir.path(), &scenario, &[]);
    assert_eq!(code, 0, "{stderr}");
    let sent = summary["metrics"]["http_reqs"]["count"].as_u64().unwrap();
    let outputs = &summary["outputs"][0];
    // Pushes every 2 s while the load runs (fewer when the machine is loaded), then the last.
    assert!(outputs["batchesSent"].as_u64().unwrap() >= 2, "{outputs}");
    assert_eq!(outputs["batchesDropped"], 0, "{outputs}");

    // The totals: every request sent is in ricochet_http_reqs_total, under the run's testid.
    let totals = query(&prom.url, "sum by (testid) (ricochet_http_reqs_total)");
    assert_eq!(totals.len(), 1, "{totals:?}");
    assert_eq!(value(&totals[0]) as u64, sent, "{totals:?}");
    let testid = totals[0]["metric"]["testid"].as_str().unwrap();
    assert!(testid.starts_with("live-"), "{testid}");
    // Percentiles equal the summary's, to the gauge's rounding (the summary rounds to µs).
    let trend = &summary["metrics"]["http_req_duration{scenario:api}"]["trend"];
    for (stat, key) in [("p95", "p95"), ("p99", "p99"), ("max", "max")] {
        let got = query(
            &prom.url,
            &format!("ricochet_http_req_duration_{stat}{{scenario=\"api\",name=\"orders\"}}"),
        );
        assert_eq!(got.len(), 1, "{stat}: {got:?}");
        let want_ms = trend[key].as_f64().unwrap();
        assert!(
            (value(&got[0]) * 1000.0 - want_ms).abs() < 0.002,
            "{stat}: {} s vs {want_ms} ms",
            value(&got[0])
        );
    }
    // The verdicts came with the last push.
    let passed = query(&prom.url, "ricochet_threshold_passed");
    assert_eq!(passed.len(), 2, "{passed:?}");
    assert!(passed.iter().all(|p| value(p) == 1.0), "{passed:?}");
    assert_eq!(value(&query(&prom.url, "ricochet_run_passed")[0]), 1.0);
    // Judged live too: `count>=450` failed while the run was young, passed at the end.
    let young = query(
        &prom.url,
        "min_over_time(ricochet_threshold_passed{threshold=\"http_reqs\"}[5m])",
    );
    assert_eq!(value(&young[0]), 0.0, "{young:?}");
    let pushes = query(
        &prom.url,
        "count_over_time(ricochet_threshold_passed{threshold=\"http_reqs\"}[5m])",
    );
    assert!(value(&pushes[0]) >= 2.0, "{pushes:?}");
}

#[test]
fn native_histograms_reach_prometheus_with_every_request_counted() {
    let _serial = one_at_a_time();
    let prom = start_prometheus_with(
        "global: {scrape_interval: 1m}\n",
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
    );
    wait_ready(&prom);
    let dir = tempfile::tempdir().unwrap();
    let scenario = SCENARIO
        .replace("URL", &format!("{}/api/v1/write", prom.url))
        .replace(
            "trendStats: [\"p(95)\", \"p(99)\", \"max\"]",
            "nativeHistograms: true",
        );
    assert!(scenario.contains("nativeHistograms: true"));
    let (code, summary, stderr) = run(dir.path(), &scenario, &[]);
    assert_eq!(code, 0, "{stderr}");
    let outputs = &summary["outputs"][0];
    assert_eq!(
        outputs["batchesFailed"], 0,
        "Prometheus took every push: {outputs}"
    );
    let sent = summary["metrics"]["http_reqs"]["count"].as_u64().unwrap();
    let series = "ricochet_http_req_duration_seconds{scenario=\"api\",name=\"orders\"}";
    let count = query(&prom.url, &format!("histogram_count({series})"));
    assert_eq!(count.len(), 1, "{count:?}");
    assert_eq!(value(&count[0]) as u64, sent, "{count:?}");
    // The p99 from the buckets is within one bucket (2^(1/8), 9 %) of the summary's.
    let p99 = query(&prom.url, &format!("histogram_quantile(0.99, {series})"));
    let want = summary["metrics"]["http_req_duration{scenario:api}"]["trend"]["p99"]
        .as_f64()
        .unwrap()
        / 1000.0;
    let got = value(&p99[0]);
    assert!(
        got / want < 1.0905 && want / got < 1.0905,
        "p99 {got} s from the native histogram vs {want} s in the summary"
    );
    // Trends come as histograms instead of statistic gauges.
    assert!(query(&prom.url, "ricochet_http_req_duration_p99").is_empty());
}

#[test]
fn with_the_receiver_down_the_run_still_passes_and_reports_the_lost_pushes() {
    let _serial = one_at_a_time();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let scenario = SCENARIO.replace("URL", &format!("http://{addr}/api/v1/write"));
    let started = Instant::now();
    let (code, summary, stderr) = run(dir.path(), &scenario, &[]);
    assert_eq!(code, 0, "the load thresholds pass: {stderr}");
    let o = &summary["outputs"][0];
    assert_eq!(o["batchesSent"], 0, "{o}");
    let lost = o["batchesFailed"].as_u64().unwrap() + o["batchesDropped"].as_u64().unwrap();
    // A push every 2 s over 10 s of load, and the last one: each failed or dropped (a
    // push that keeps failing holds its lane until the next flush, so some never start).
    assert!(lost >= 2, "{o}");
    assert!(
        o["firstError"]
            .as_str()
            .unwrap()
            .contains(&addr.to_string()),
        "{o}"
    );
    assert!(stderr.contains("output: remote-write"), "{stderr}");
    // 10 s of load, a bounded wait for the last pushes: never stuck on the dead endpoint.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// An OTLP/HTTP metrics receiver: keeps every request it decodes.
async fn otlp_receiver(seen: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let ok = req.uri().path() == "/v1/metrics";
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            if ok && let Ok(m) = ExportMetricsServiceRequest::decode(body) {
                                seen.lock().unwrap().push(m);
                            }
                            let mut r = http::Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = if ok {
                                http::StatusCode::OK
                            } else {
                                http::StatusCode::NOT_FOUND
                            };
                            Ok::<_, Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[test]
fn the_otlp_output_pushes_histograms_whose_counts_equal_the_requests_sent() {
    let _serial = one_at_a_time();
    let rt = crate::support::runtime();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = rt.block_on(otlp_receiver(seen.clone()));
    let dir = tempfile::tempdir().unwrap();
    let scenario = SCENARIO.replace(
        "prometheusRemoteWrite: {url: \"URL\", trendStats: [\"p(95)\", \"p(99)\", \"max\"]}",
        "naming: k6",
    );
    let (code, summary, stderr) = run(
        dir.path(),
        &scenario,
        &["--output", &format!("otlp=http://{addr}")],
    );
    assert_eq!(code, 0, "{stderr}");
    let sent = summary["metrics"]["http_reqs"]["count"].as_u64().unwrap();
    let last = seen.lock().unwrap().last().cloned().expect("some pushes");
    let metrics: Vec<_> = last
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect();
    let histogram_count: u64 = metrics
        .iter()
        .filter(|m| m.name == "k6_http_req_duration_seconds")
        .filter_map(|m| match &m.data {
            Some(Data::Histogram(h)) => Some(h.data_points.iter().map(|p| p.count).sum::<u64>()),
            _ => None,
        })
        .sum();
    assert_eq!(histogram_count, sent, "the last push holds every request");
    let counter: f64 = metrics
        .iter()
        .filter(|m| m.name == "k6_http_reqs_total")
        .filter_map(|m| match &m.data {
            Some(Data::Sum(s)) => Some(
                s.data_points
                    .iter()
                    .map(|p| match p.value {
                        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(v)) => v,
                        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v)) => v as f64,
                        None => 0.0,
                    })
                    .sum::<f64>(),
            ),
            _ => None,
        })
        .sum();
    assert_eq!(counter as u64, sent);
    drop(rt);
}
