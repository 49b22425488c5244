//! Exemplars that can be found missing: metric probes against a Prometheus that holds only
//! some of them (a stub built from the real echo-server's `/metrics`), and two echo-server
//! replicas of which a real Prometheus scrapes only one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use echo_server::contract::{PROBE_HEADER, PROBE_METRIC, REPLICA_HEADER};
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;
use ricochet_verify::exposition::{ACCEPT_OPENMETRICS, parse_line};
use ricochet_verify::prometheus::{ExemplarVerifier, PrometheusClient};
use ricochet_verify::{
    Endpoint, HttpBackend, Outcome, PollPolicy, RateLimiter, Sample, Signal, Tally, TraceId, poll,
};

use crate::prometheus_roundtrip::{patience, start_prometheus, tail};

/// One probe exemplar the stub saw on the echo-server's `/metrics`.
#[derive(Clone)]
struct Seen {
    slot: String,
    replica: String,
    trace_id: String,
    at: f64,
}

/// A Prometheus stand-in: scrapes the echo-server's `/metrics` every 100 ms and answers
/// `query_exemplars` with every other probe exemplar it saw (in the order seen), plus a
/// fresh exemplar of another replica's series and of a histogram series.
async fn half_prometheus(echo: SocketAddr) -> SocketAddr {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let scraper = seen.clone();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client
                .get(format!("http://{echo}/metrics"))
                .header("accept", ACCEPT_OPENMETRICS)
                .send()
                .await
                && let Ok(text) = r.text().await
            {
                let mut seen = scraper.lock().unwrap();
                for line in text.lines().filter_map(parse_line) {
                    let (Some(ex), true) = (&line.exemplar, line.name == PROBE_METRIC) else {
                        continue;
                    };
                    let Some((_, id)) = ex.labels.iter().find(|(k, _)| k == "trace_id") else {
                        continue;
                    };
                    if seen.iter().all(|s| &s.trace_id != id) {
                        seen.push(Seen {
                            slot: line.label("slot").unwrap_or_default().to_owned(),
                            replica: line.label("replica").unwrap_or_default().to_owned(),
                            trace_id: id.clone(),
                            at: ex.timestamp.unwrap_or_default(),
                        });
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let body = answer(req.uri().path(), &seen.lock().unwrap());
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    r.headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn answer(path: &str, seen: &[Seen]) -> String {
    if path != "/api/v1/query_exemplars" {
        return r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.to_owned();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let series = |labels: serde_json::Value, id: &str, at: f64| {
        serde_json::json!({
            "seriesLabels": labels,
            "exemplars": [{"labels": {"trace_id": id}, "value": "1", "timestamp": at}],
        })
    };
    let mut data: Vec<serde_json::Value> = seen
        .iter()
        .step_by(2)
        .map(|s| {
            let labels = serde_json::json!({
                "__name__": PROBE_METRIC, "slot": s.slot, "replica": s.replica,
                "instance": "echo:8080", "job": "echo-server",
            });
            series(labels, &s.trace_id, s.at)
        })
        .collect();
    // Fresh exemplars of other series: another replica's probe slot, a histogram bucket.
    for slot in 0..64 {
        let labels = serde_json::json!({
            "__name__": PROBE_METRIC, "slot": slot.to_string(), "replica": "another-pod",
        });
        data.push(series(labels, "0123456789abcdef0123456789abcdef", now));
    }
    let bucket = serde_json::json!({
        "__name__": "http_server_request_duration_seconds_bucket", "le": "0.005",
    });
    data.push(series(bucket, "fedcba9876543210fedcba9876543210", now));
    serde_json::json!({"status": "success", "data": data}).to_string()
}

// See: issue #14, acceptance 1.
#[test]
fn a_prometheus_holding_half_the_probes_exemplars_measures_half_missing_and_fails_the_gate() {
    let _guard = crate::support::one_at_a_time();
    let rt = crate::support::runtime();
    let (echo, prom) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = echo_server::start(echo_server::Config::default(), listener)
            .await
            .unwrap();
        let echo = server.local_addr();
        std::mem::forget(server);
        (echo, half_prometheus(echo).await)
    });
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.yaml");
    std::fs::write(
        &scenario,
        format!(
            r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {{name: half-exemplars}}
spec:
  target: {{url: "http://{echo}"}}
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 40
      duration: 6s
      requests: [{{name: orders, path: /api/orders}}]
  telemetry:
    settleTimeout: 4s
    metrics: {{prometheus: {{url: "http://{prom}", scrapeInterval: 1s}}}}
  thresholds:
    telemetry_metric_missing: ["rate<0.05"]
"#
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--quiet", "--out"])
        .arg(&out)
        .arg(&scenario)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = std::fs::read_to_string(out.join("summary.json"))
        .unwrap_or_else(|e| panic!("no summary ({e}); stderr: {stderr}"));
    let s: ricochet_reports::model::Summary = serde_json::from_str(&text).unwrap();
    let t = s.telemetry.as_ref().expect("telemetry");
    let m = t
        .signals
        .iter()
        .find(|x| x.signal == "metrics")
        .expect("metrics signal");
    // Fresh exemplars of other series excuse nothing: half found, half missing.
    assert_eq!((m.superseded, m.unknown), (0, 0), "{m:?}");
    let n = m.found + m.missing;
    assert!(n >= 40, "{m:?}");
    let missing = m.missing as f64 / n as f64;
    assert!((0.45..=0.55).contains(&missing), "missing {missing}: {m:?}");
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}; {m:?}");
    drop(rt);
}

/// A real echo-server named `name`.
async fn replica(name: &str) -> echo_server::Server {
    let config = echo_server::Config {
        replica: Some(name.to_owned()),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    echo_server::start(config, listener).await.unwrap()
}

// See: issue #14, acceptance 1 (two replicas).
#[tokio::test]
async fn a_replica_prometheus_does_not_scrape_loses_its_probes_and_only_its_own() {
    let (a, b) = (replica("echo-a").await, replica("echo-b").await);
    // Prometheus scrapes replica a only: b's telemetry never arrives.
    let mut prom = start_prometheus(a.local_addr());
    let http = reqwest::Client::new();
    let mut samples = Vec::new();
    // Each slot is used on b first, then on a: a's newer exemplar in the same slot must not
    // excuse b's probe, which only b's own series could supersede.
    for slot in 0..8u16 {
        for server in [&b, &a] {
            let id = TraceId(rand_id(slot, server.local_addr().port()));
            let completed_at = SystemTime::now();
            let resp = http
                .get(format!("http://{}/api/orders", server.local_addr()))
                .header("traceparent", format!("00-{id}-00f067aa0ba902b7-01"))
                .header(PROBE_HEADER, slot.to_string())
                .send()
                .await
                .unwrap();
            let replica = resp.headers()[REPLICA_HEADER].to_str().unwrap().to_owned();
            let _ = resp.bytes().await;
            samples.push(Sample {
                probe: Some(slot),
                replica: Some(replica.into()),
                completed_at,
                ..Sample::now(id)
            });
        }
    }
    let client = PrometheusClient::new(
        HttpBackend::new(
            "prometheus",
            &Endpoint::new(&prom.url).unwrap(),
            RateLimiter::unlimited(),
        )
        .unwrap(),
    );
    // Wait for a scrape holding all 8 of a's probes.
    let deadline = Instant::now() + patience();
    let query = format!("sum({PROBE_METRIC})");
    loop {
        if let Ok(Some(exit)) = prom.child.try_wait() {
            panic!("prometheus exited ({exit}) early:\n{}", tail(&prom.log));
        }
        if let Ok(Some(n)) = client.total(&query).await
            && n >= 8.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never scraped:\n{}",
            tail(&prom.log)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let v = Arc::new(ExemplarVerifier::new(
        HttpBackend::new(
            "prometheus",
            &Endpoint::new(&prom.url).unwrap(),
            RateLimiter::unlimited(),
        )
        .unwrap(),
        PROBE_METRIC,
    ));
    // Asked from now: the settle timeout counts from here, after the scrape.
    let asked = Instant::now();
    for s in &mut samples {
        s.completed = asked;
        s.scheduled = asked;
    }
    let policy = PollPolicy {
        initial_interval: Duration::from_millis(100),
        max_interval: Duration::from_millis(500),
        settle_timeout: Duration::from_secs(2),
        ..PollPolicy::default()
    };
    let (out, _) = poll::verify_all(v, samples, policy).await;
    let mut tally = Tally::new(Signal::Metrics);
    for v in &out {
        tally.record(v);
        if v.sample.replica.as_deref() == Some("echo-b") {
            assert_eq!(v.outcome, Outcome::Missing, "{v:?}");
        }
    }
    let counts = |r: &str| tally.by_replica[r];
    assert_eq!((counts("echo-a").found, counts("echo-a").missing), (8, 0));
    assert_eq!((counts("echo-b").found, counts("echo-b").missing), (0, 8));
    assert_eq!(tally.superseded, 0);
    drop(prom);
    let _ = a.shutdown().await;
    let _ = b.shutdown().await;
}

/// A distinct, valid trace id per slot and replica.
fn rand_id(slot: u16, port: u16) -> [u8; 16] {
    let mut id = [0x5a; 16];
    id[12..14].copy_from_slice(&slot.to_be_bytes());
    id[14..].copy_from_slice(&port.to_be_bytes());
    id
}
