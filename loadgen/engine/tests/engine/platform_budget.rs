//! Query checks and alert reads spend the run's `maxQueriesPerSecond` with the verifiers:
//! a stub Prometheus/Alertmanager counts every request it receives and when.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ricochet_engine::load::Document;
use ricochet_engine::plan::Overrides;
use tokio::net::TcpListener;

use crate::support::{one_at_a_time, run, runtime};

/// Answers Prometheus' and Alertmanager's APIs with empty successes, noting each request's
/// path and arrival.
async fn stub(seen: Arc<Mutex<Vec<(Instant, String)>>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let path = req.uri().path().to_owned();
                    seen.lock().unwrap().push((Instant::now(), path.clone()));
                    let body = match path.as_str() {
                        "/api/v2/alerts" => "[]".to_owned(),
                        "/api/v1/alerts" => r#"{"status":"success","data":{"alerts":[]}}"#.into(),
                        "/api/v1/query_exemplars" => r#"{"status":"success","data":[]}"#.into(),
                        _ => r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#.into(),
                    };
                    async move {
                        let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                        r.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[test]
fn query_checks_and_alert_reads_stay_inside_max_queries_per_second() {
    let _serial = one_at_a_time();
    runtime().block_on(async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let addr = stub(seen.clone()).await;
        let yaml = format!(
            r#"
apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {{name: budget}}
spec:
  scenarios:
    - {{name: api, executor: constant-arrival-rate, rate: 20, duration: 8s, requests: [{{name: e, path: /api/e}}]}}
  telemetry:
    sample: {{perSecond: 0.001}}
    settleTimeout: 1s
    maxQueriesPerSecond: 4
    metrics: {{prometheus: {{url: "http://{addr}"}}}}
  queries:
    - {{name: a, promql: 'vector(1)', every: 1s}}
  thresholds:
    "query{{name:a}}": ["last==1"]
  alerts:
    alertmanager: {{url: "http://{addr}"}}
    every: 2s
    silent:
      - {{alert: Anything}}
"#
        );
        let plan = Document::parse(std::path::Path::new("budget.yaml"), &yaml)
            .and_then(|d| d.plan(&Overrides::default()))
            .unwrap();
        let out = run(&plan).await;
        let seen = seen.lock().unwrap().clone();
        let count = |p: &str| seen.iter().filter(|(_, path)| path == p).count();
        // The checks ran: a query each second, both alert sources every two.
        assert!(count("/api/v1/query") >= 6, "{seen:?}");
        assert!(count("/api/v1/alerts") >= 3 && count("/api/v2/alerts") >= 3, "{seen:?}");
        assert_eq!(out.exit, ricochet_engine::Exit::Passed, "{:?}", out.summary.thresholds);
        // 4 queries/s: requests 250 ms apart. A tick that asked the query and both alert
        // sources at once would arrive within a few ms of each other; jitter on a loaded
        // machine may close a few gaps, never most of them.
        let mut times: Vec<Instant> = seen.iter().map(|(t, _)| *t).collect();
        times.sort();
        let span = times.last().unwrap().duration_since(times[0]).as_secs_f64();
        assert!(
            times.len() as f64 <= 4.0 * span + 1.0,
            "{} requests in {span:.2}s exceed 4/s",
            times.len()
        );
        let close = times
            .windows(2)
            .filter(|w| w[1].duration_since(w[0]) < Duration::from_millis(100))
            .count();
        assert!(
            close * 5 < times.len(),
            "{close} of {} requests came less than 100 ms after the previous one",
            times.len()
        );
    });
}

#[test]
fn a_query_threshold_with_abort_on_fail_stops_the_run_when_the_system_is_saturated() {
    let _serial = one_at_a_time();
    runtime().block_on(async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let addr = stub(seen.clone()).await;
        // The stub's queue depth is always 1: above the 0.5 the gate allows.
        let yaml = format!(
            r#"
apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {{name: saturated}}
spec:
  scenarios:
    - {{name: api, executor: constant-arrival-rate, rate: 20, duration: 30s, requests: [{{name: e, path: /api/e}}]}}
  telemetry:
    sample: {{perSecond: 0.001}}
    settleTimeout: 1s
    metrics: {{prometheus: {{url: "http://{addr}"}}}}
  queries:
    - {{name: queue, promql: 'max(queue_depth)', every: 1s}}
  thresholds:
    "query{{name:queue}}": [{{threshold: "max<0.5", abortOnFail: true}}]
"#
        );
        let plan = Document::parse(std::path::Path::new("saturated.yaml"), &yaml)
            .and_then(|d| d.plan(&Overrides::default()))
            .unwrap();
        let started = Instant::now();
        let out = run(&plan).await;
        assert_eq!(out.exit, ricochet_engine::Exit::ThresholdFailed);
        let why = out.summary.run.stop_reason.unwrap_or_default();
        assert!(
            why.contains("query{name:queue}: max<0.5` failed") && why.contains("abortOnFail"),
            "{why}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "stopped long before the 30 s of load"
        );
    });
}
