//! The metrics round trip against a real Prometheus (Debian's `prometheus` package, which
//! `scripts/test.sh` installs when absent): the test starts `/usr/bin/prometheus` on a free
//! loopback port with exemplar storage, a temp config and data dir, scraping every second
//! an OpenMetrics exposition served on 127.0.0.1 (the recorded echo-server exposition of
//! `loadgen/verify/tests/fixtures/backends/openmetrics-echo-metrics.txt` (recorded, copied from shared/fixtures): three requests, one exemplar
//! each). loadgen's Prometheus client must then find the three exemplar trace ids and the
//! request total of 3, polling with a patience of `RICOCHET_TEST_PATIENCE_SECS` (default
//! 30 s). Without prometheus installed the test fails; it is never skipped.

use crate::support::free_port;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use echo_server::contract::DURATION_METRIC;
use http::Response;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use ricochet_verify::poll::LatencyUse;
use ricochet_verify::prometheus::{ExemplarVerifier, PrometheusClient};
use ricochet_verify::{
    Endpoint, HttpBackend, Outcome, PollPolicy, RateLimiter, Sample, TraceId, Verifier, poll,
};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// (trace id, exemplar timestamp in ms) of the recorded exposition.
const EXEMPLARS: [(&str, u128); 3] = [
    ("4bf92f3577b34da6a3ce929d0e0e4736", 1_795_266_279_715),
    ("0af7651916cd43dd8448eb211c80319c", 1_795_266_280_732),
    ("5b8efff798038103d269b633813fc60c", 1_795_266_281_759),
];

pub(crate) fn patience() -> Duration {
    let secs = std::env::var("RICOCHET_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

fn prometheus_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file());
    let found =
        on_path.or_else(|| Some(PathBuf::from("/usr/bin/prometheus")).filter(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "prometheus is not installed, so the metrics round trip cannot run: run scripts/test.sh \
             (it installs Debian's `prometheus` package when absent) or `apt-get install -y prometheus`"
        )
    })
}

/// Serves `body` as OpenMetrics on every path; returns the address.
async fn serve_exposition(body: Bytes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: http::Request<hyper::body::Incoming>| {
                        let mut r = Response::new(Full::new(body.clone()));
                        r.headers_mut()
                            .insert("content-type", http::HeaderValue::from_static(OPENMETRICS));
                        async move { Ok::<_, Infallible>(r) }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A Prometheus process, killed on drop.
pub(crate) struct Prometheus {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_prometheus(target: SocketAddr) -> Prometheus {
    start_prometheus_with(
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: echo-server\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n"
        ),
        &["--enable-feature=exemplar-storage"],
    )
}

/// A Prometheus on a free loopback port with `config` and the `extra` flags.
pub(crate) fn start_prometheus_with(config_text: &str, extra: &[&str]) -> Prometheus {
    let bin = prometheus_binary();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, config_text).unwrap();
    let port = free_port();
    let log = dir.path().join("prometheus.log");
    let child = Command::new(&bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
        _dir: dir,
    }
}

pub(crate) fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[tokio::test]
async fn prometheus_scrapes_exemplars_and_counters_that_loadgen_finds() {
    let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../verify/tests/fixtures/backends/openmetrics-echo-metrics.txt"))
        .expect("the recorded exposition loadgen/verify/tests/fixtures/backends/openmetrics-echo-metrics.txt");
    let target = serve_exposition(body.into()).await;
    let mut prom = start_prometheus(target);
    let deadline = Instant::now() + patience();

    let backend = || {
        HttpBackend::new(
            "prometheus",
            &Endpoint::new(&prom.url).unwrap(),
            RateLimiter::per_second(20.0).unwrap(),
        )
        .unwrap()
    };
    let client = PrometheusClient::new(backend());

    // Counters: the server-side request total reaches 3 within the patience.
    let total = loop {
        if let Ok(Some(exit)) = prom.child.try_wait() {
            panic!("prometheus exited ({exit}) early:\n{}", tail(&prom.log));
        }
        match client.total(&requests_total_query()).await {
            Ok(Some(t)) => break t,
            Ok(None) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            other => panic!(
                "no request total from prometheus within {:?}: {other:?}\n{}",
                patience(),
                tail(&prom.log)
            ),
        }
    };
    assert_eq!(total, 3.0, "the exposition counts 3 requests");
    let up = client.total("up{job=\"echo-server\"}").await.unwrap();
    assert_eq!(up, Some(1.0));

    // Exemplars: the three trace ids, through the same poller the engine uses. The samples'
    // completion times are the recorded ones, so the query window covers the exemplars.
    let samples: Vec<Sample> = EXEMPLARS
        .iter()
        .map(|(id, ms)| Sample {
            completed_at: UNIX_EPOCH + Duration::from_millis(*ms as u64),
            ..Sample::now(id.parse::<TraceId>().unwrap())
        })
        .collect();
    let v: Arc<dyn Verifier> = Arc::new(ExemplarVerifier::new(backend(), buckets()));
    let policy = PollPolicy {
        initial_interval: Duration::from_millis(200),
        max_interval: Duration::from_secs(1),
        settle_timeout: deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(2)),
        ..PollPolicy::default()
    };
    let (out, queries) = poll::verify_all(v, samples, policy).await;
    assert!(!queries.is_empty());
    for (id, ms) in EXEMPLARS {
        let got = out
            .iter()
            .find(|v| v.sample.trace_id.to_hex() == id)
            .unwrap();
        match &got.outcome {
            Outcome::Found {
                recorded_at: Some(at),
                ..
            } => {
                assert_eq!(
                    at.duration_since(UNIX_EPOCH).unwrap().as_millis(),
                    ms,
                    "exemplar timestamp of {id}"
                );
            }
            other => panic!("exemplar {id}: {other:?}\n{}", tail(&prom.log)),
        }
    }
}

/// The full loop the embedded default runs, with a real Prometheus in the metrics leg: the
/// real echo-server exports traces and logs over OTLP/HTTP to the embedded sink and is
/// scraped by Prometheus; three requests with known trace ids (one per duration bucket,
/// so each keeps its exemplar until the scrape: the echo-server keeps the latest exemplar
/// per bucket, and the delays 0 / 300 / 800 ms stay in distinct buckets even on a busy CI
/// machine) are then found as traces and logs in the sink and as exemplars in Prometheus,
/// and the server-side `/api` request total equals what was sent.
#[tokio::test]
async fn echo_server_telemetry_reaches_the_sink_and_prometheus() {
    use echo_server::config::{OtlpConfig, OtlpProtocol};
    use ricochet_verify::Signal;
    use ricochet_verify::sink::Sink;

    let sink = Sink::start(limits(10_000)).await.unwrap();
    let mut config = echo_server::Config::default();
    config.telemetry.otlp = Some(OtlpConfig {
        endpoint: sink.http_endpoint(),
        protocol: OtlpProtocol::HttpProtobuf,
    });
    config.telemetry.export_interval = Duration::from_millis(100);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = echo_server::start(config, listener).await.unwrap();
    let mut prom = start_prometheus(server.local_addr());
    let deadline = Instant::now() + patience();

    let http = reqwest::Client::new();
    let sent: [(&str, &str); 3] = [
        ("1a2b3c4d5e6f708192a3b4c5d6e7f801", "0ms"),
        ("0b2b3c4d5e6f708192a3b4c5d6e7f802", "300ms"),
        ("2c2b3c4d5e6f708192a3b4c5d6e7f803", "800ms"),
    ];
    let mut samples = Vec::new();
    for (tid, delay) in sent {
        let resp = http
            .get(format!(
                "http://{}/api/orders?delay={delay}",
                server.local_addr()
            ))
            .header("traceparent", format!("00-{tid}-00f067aa0ba902b7-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await;
        samples.push(Sample::now(tid.parse::<TraceId>().unwrap()));
    }

    // Counters: the /api total Prometheus scraped agrees with what was sent.
    let client = PrometheusClient::new(
        HttpBackend::new(
            "prometheus",
            &Endpoint::new(&prom.url).unwrap(),
            RateLimiter::unlimited(),
        )
        .unwrap(),
    );
    let query = "sum(http_server_request_duration_seconds_count{http_route=\"/api/{*path}\"})";
    loop {
        if let Ok(Some(exit)) = prom.child.try_wait() {
            panic!("prometheus exited ({exit}) early:\n{}", tail(&prom.log));
        }
        match client.total(query).await {
            Ok(Some(t)) if t == sent.len() as f64 => break,
            other if Instant::now() >= deadline => {
                panic!(
                    "the /api total never reached {} within {:?}: {other:?}\n{}",
                    sent.len(),
                    patience(),
                    tail(&prom.log)
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }

    let policy = PollPolicy {
        initial_interval: Duration::from_millis(200),
        max_interval: Duration::from_secs(1),
        settle_timeout: deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(3)),
        ..PollPolicy::default()
    };
    let verifiers: [Arc<dyn Verifier>; 3] = [
        Arc::new(sink.verifier(Signal::Traces)),
        Arc::new(sink.verifier(Signal::Logs)),
        Arc::new(ExemplarVerifier::new(
            HttpBackend::new(
                "prometheus",
                &Endpoint::new(&prom.url).unwrap(),
                RateLimiter::unlimited(),
            )
            .unwrap(),
            buckets(),
        )),
    ];
    for v in verifiers {
        let name = format!("{:?} via {}", v.signal(), v.name());
        let (out, _) = poll::verify_all(v, samples.clone(), policy.clone()).await;
        for got in out {
            assert!(
                got.outcome.is_found(),
                "{name}: {} not found: {:?}\n{}",
                got.sample.trace_id,
                got.outcome,
                tail(&prom.log)
            );
            // Asked only once Prometheus had scraped, mostly long after completion: a
            // sample first asked late claims no ingest latency.
            assert_eq!(
                got.ingest_latency.is_some(),
                got.latency == LatencyUse::Probe,
                "{name}: {got:?}"
            );
        }
    }
    server.shutdown().await.unwrap();
    sink.shutdown().await;
}

/// `loadgen run` with a real Prometheus as the metrics backend: loadgen loads a real
/// echo-server (its OTLP export off; the metrics leg only) that Prometheus scrapes every
/// second; the sampled requests' exemplars are looked up with `query_exemplars` and the
/// server-side request counter is read from Prometheus before and after the load. Found
/// exemplars, none missing, and the counter agrees with what loadgen sent within one
/// scrape window (1 s of load, 40 requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_run_verifies_exemplars_and_red_totals_in_a_real_prometheus() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = echo_server::start(echo_server::Config::default(), listener)
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut prom = start_prometheus(addr);
    let client = PrometheusClient::new(
        HttpBackend::new(
            "prometheus",
            &Endpoint::new(&prom.url).unwrap(),
            RateLimiter::unlimited(),
        )
        .unwrap(),
    );
    // Wait until Prometheus has scraped the echo-server once.
    let deadline = Instant::now() + patience();
    loop {
        if let Ok(Some(exit)) = prom.child.try_wait() {
            panic!("prometheus exited ({exit}) early:\n{}", tail(&prom.log));
        }
        if let Ok(Some(up)) = client.total("up{job=\"echo-server\"}").await
            && up == 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped the echo-server:\n{}",
            tail(&prom.log)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.yaml");
    std::fs::write(
        &scenario,
        format!(
            r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {{name: prometheus-leg}}
spec:
  target: {{url: "http://{addr}"}}
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 40
      duration: 4s
      requests: [{{name: orders, path: /api/orders}}]
  telemetry:
    sample: {{rate: 1}}
    settleTimeout: {}s
    pollInterval: 500ms
    maxQueriesPerSecond: 50
    metrics: {{prometheus: {{url: "{}", scrapeInterval: 1s}}}}
  thresholds:
    telemetry_metric_missing: ["rate<0.003"]
"#,
            patience().as_secs().max(10),
            prom.url
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = std::fs::read_to_string(out.join("summary.json"))
        .unwrap_or_else(|e| panic!("no summary ({e}); stderr: {stderr}"));
    let s: ricochet_reports::model::Summary = serde_json::from_str(&text).unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {stderr}; thresholds {:#?}; telemetry {:#?}\n{}",
        s.thresholds,
        s.telemetry,
        tail(&prom.log)
    );
    let t = s.telemetry.as_ref().expect("telemetry");
    let metrics = t
        .signals
        .iter()
        .find(|x| x.signal == "metrics")
        .expect("metrics signal");
    assert!(
        metrics.backend.starts_with("prometheus http://127.0.0.1:"),
        "{metrics:?}"
    );
    assert!(metrics.found > 0, "{metrics:?}");
    assert_eq!((metrics.missing, metrics.unknown), (0, 0), "{metrics:?}");
    assert_eq!(metrics.found + metrics.superseded, metrics.sampled);
    let red = t.requests.as_ref().expect("RED cross-check");
    assert!(red.source.starts_with("prometheus"), "{red:?}");
    assert!(
        (red.counted - red.sent as f64).abs() <= 40.0,
        "counter and sent differ by more than one scrape window: {red:?}"
    );
    drop(prom);
    let _ = server.shutdown().await;
}

/// The echo-server's request total, as PromQL.
fn requests_total_query() -> String {
    format!("sum({DURATION_METRIC}_count)")
}

/// The echo-server's duration buckets, which carry the exemplars.
fn buckets() -> String {
    format!("{DURATION_METRIC}_bucket")
}

/// Holds `capacity` ids per signal, for an hour (longer than any test).
fn limits(capacity: usize) -> ricochet_verify::recent::Retention {
    ricochet_verify::recent::Retention {
        capacity,
        retention: std::time::Duration::from_secs(3600),
    }
}
