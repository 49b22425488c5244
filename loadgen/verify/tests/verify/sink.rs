//! The embedded OTLP sink: real OTLP pushed over HTTP/protobuf (the recorded
//! `pushed-otlp-trace-*.pb` bodies) and over gRPC (tonic's generated client), verified
//! through the same `Verifier` interface and poller as the real backends.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message as _;
use ricochet_verify::sink::Sink;
use ricochet_verify::{Outcome, PollPolicy, Sample, Signal, TraceId, Verifier, poll};

const T1: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const T2: &str = "0af7651916cd43dd8448eb211c80319c";

fn fixture(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/backends"
    ));
    assert!(
        dir.is_dir(),
        "the recorded backend fixtures are missing: expected {} (shared/ beside the checkout)",
        dir.display()
    );
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

fn id(s: &str) -> TraceId {
    s.parse().unwrap()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(url: String, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    http_client()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn logs_for(ids: &[Option<&str>]) -> ExportLogsServiceRequest {
    let log_records = ids
        .iter()
        .map(|i| LogRecord {
            trace_id: i.map(|s| id(s).0.to_vec()).unwrap_or_default(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn traces_pushed_over_http_protobuf_are_found_with_their_span_count() {
    let sink = Sink::start(limits(1000)).await.unwrap();
    let traces = sink.verifier(Signal::Traces);
    let samples = [Sample::now(id(T1)), Sample::now(id(T2))];
    assert_eq!(
        traces.check(&samples).await.outcomes,
        vec![Outcome::Missing, Outcome::Missing]
    );

    let resp = post(
        format!("{}/v1/traces", sink.http_endpoint()),
        "application/x-protobuf",
        fixture("pushed-otlp-trace-4bf92f35.pb"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    // The same answer Tempo gave (`0a 00` in the recording is an explicit empty
    // partial_success; an absent one is the empty message).
    assert!(resp.bytes().await.unwrap().len() <= 2);

    let got = traces.check(&samples).await.outcomes;
    assert!(
        matches!(got[0], Outcome::Found { spans: Some(3), .. }),
        "{got:?}"
    );
    assert_eq!(got[1], Outcome::Missing);
    assert_eq!(sink.stats().spans, 3);
    sink.shutdown().await;
}

#[tokio::test]
async fn traces_and_logs_pushed_over_grpc_are_found() {
    let sink = Sink::start(limits(1000)).await.unwrap();
    let req =
        ExportTraceServiceRequest::decode(fixture("pushed-otlp-trace-0af76519.pb").as_slice())
            .unwrap();
    let mut client = TraceServiceClient::connect(sink.grpc_endpoint())
        .await
        .unwrap();
    client.export(req).await.unwrap();
    let mut logs = LogsServiceClient::connect(sink.grpc_endpoint())
        .await
        .unwrap();
    logs.export(logs_for(&[Some(T2), None])).await.unwrap();

    let got = sink
        .verifier(Signal::Traces)
        .check(&[Sample::now(id(T2))])
        .await
        .outcomes;
    assert!(
        matches!(got[0], Outcome::Found { spans: Some(1), .. }),
        "{got:?}"
    );
    let got = sink
        .verifier(Signal::Logs)
        .check(&[Sample::now(id(T2)), Sample::now(id(T1))])
        .await
        .outcomes;
    assert!(
        matches!(got[0], Outcome::Found { spans: None, .. }),
        "{got:?}"
    );
    assert_eq!(got[1], Outcome::Missing);
    let stats = sink.stats();
    assert_eq!((stats.log_records, stats.logs_without_trace_id), (1, 1));
    sink.shutdown().await;
}

#[tokio::test]
async fn logs_over_http_and_bad_requests_are_counted() {
    let sink = Sink::start(limits(1000)).await.unwrap();
    let resp = post(
        format!("{}/v1/logs", sink.http_endpoint()),
        "application/x-protobuf",
        logs_for(&[Some(T1)]).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let got = sink
        .verifier(Signal::Logs)
        .check(&[Sample::now(id(T1))])
        .await
        .outcomes;
    assert!(got[0].is_found());

    let bad_type = post(
        format!("{}/v1/traces", sink.http_endpoint()),
        "text/plain",
        b"hi".to_vec(),
    )
    .await;
    assert_eq!(bad_type.status(), 415);
    let bad_body = post(
        format!("{}/v1/traces", sink.http_endpoint()),
        "application/x-protobuf",
        vec![0xff, 0xff],
    )
    .await;
    assert_eq!(bad_body.status(), 400);
    let bad_path = post(
        format!("{}/v1/metrics", sink.http_endpoint()),
        "application/x-protobuf",
        Vec::new(),
    )
    .await;
    assert_eq!(bad_path.status(), 404);
    assert_eq!(sink.stats().rejected_requests, 3);
    sink.shutdown().await;
}

#[tokio::test]
async fn the_poller_measures_ingest_latency_from_the_receive_instant() {
    let sink = Sink::start(limits(1000)).await.unwrap();
    let v: Arc<dyn Verifier> = Arc::new(sink.verifier(Signal::Traces));
    let sample = Sample {
        expected_spans: 3,
        ..Sample::now(id(T1))
    };
    let url = format!("{}/v1/traces", sink.http_endpoint());
    let push = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(120)).await;
        post(
            url,
            "application/x-protobuf",
            fixture("pushed-otlp-trace-4bf92f35.pb"),
        )
        .await
        .status()
    });
    let policy = PollPolicy {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(100),
        settle_timeout: Duration::from_secs(2),
        ..PollPolicy::default()
    };
    let (out, _) = poll::verify_all(v, vec![sample, Sample::now(id(T2))], policy).await;
    assert_eq!(push.await.unwrap(), 200);
    let t1 = out.iter().find(|v| v.sample.trace_id == id(T1)).unwrap();
    assert_eq!(t1.complete, Some(true));
    let lat = t1.ingest_latency.unwrap();
    // The sink's first_seen is the receive instant, not the poll that saw it.
    assert!(
        lat >= Duration::from_millis(115) && lat < Duration::from_millis(1000),
        "{lat:?}"
    );
    let t2 = out.iter().find(|v| v.sample.trace_id == id(T2)).unwrap();
    assert_eq!(t2.outcome, Outcome::Missing);
    sink.shutdown().await;
}

/// Many traces at once: 20 000 single-span traces exported over gRPC in batches of 200
/// while the poller verifies each sample against the sink, all through the public API.
/// Every one must be found; the achieved rate is printed (no timing assertion; the
/// benchmark figure comes from a release build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_traces_are_received_and_all_verified() {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    const N: u32 = 20_000;
    const BATCH: u32 = 200;
    let sink = Sink::start(limits(50_000)).await.unwrap();
    let v: Arc<dyn Verifier> = Arc::new(sink.verifier(Signal::Traces));
    let (tx, rx) = tokio::sync::mpsc::channel(N as usize);
    let found = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let f2 = found.clone();
    let policy = PollPolicy {
        initial_interval: Duration::from_millis(5),
        max_interval: Duration::from_millis(100),
        settle_timeout: Duration::from_secs(20),
        ..PollPolicy::default()
    };
    let start = std::time::Instant::now();
    let verify = tokio::spawn(poll::run(
        v,
        None,
        rx,
        policy,
        tokio_util::sync::CancellationToken::new(),
        move |x| {
            if x.outcome.is_found() {
                f2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        },
        |_| {},
    ));
    let mut client = TraceServiceClient::connect(sink.grpc_endpoint())
        .await
        .unwrap();
    for b in 0..N / BATCH {
        let mut spans = Vec::new();
        for i in 0..BATCH {
            let mut tid = [0u8; 16];
            tid[..4].copy_from_slice(&(b * BATCH + i + 1).to_be_bytes());
            tid[15] = 1;
            spans.push(Span {
                trace_id: tid.to_vec(),
                span_id: vec![1; 8],
                name: "s".into(),
                ..Default::default()
            });
            tx.send(Sample::now(TraceId(tid))).await.unwrap();
        }
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        client.export(req).await.unwrap();
    }
    drop(tx);
    verify.await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(found.load(std::sync::atomic::Ordering::Relaxed), N);
    assert_eq!(sink.stats().traces_evicted, 0);
    println!(
        "sink + poller: {N} traces received and verified in {elapsed:?} ({:.0}/s)",
        f64::from(N) / elapsed.as_secs_f64()
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn otlp_json_over_http_is_accepted_too() {
    let sink = Sink::start(limits(1000)).await.unwrap();
    // The recorded OTLP/JSON rendering of T1's root span (hex ids, integer kind).
    let resp = post(
        format!("{}/v1/traces", sink.http_endpoint()),
        "application/json",
        fixture("pushed-otlp-trace-4bf92f35-root.json"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let got = sink
        .verifier(Signal::Traces)
        .check(&[Sample::now(id(T1))])
        .await
        .outcomes;
    assert!(
        matches!(got[0], Outcome::Found { spans: Some(1), .. }),
        "{got:?}"
    );
    sink.shutdown().await;
}

/// One raw OTLP/gRPC call over HTTP/2 (prior knowledge): the response headers, body and
/// trailers, as a gRPC client sees them.
async fn grpc_call(
    endpoint: &str,
    path: &str,
    body: Vec<u8>,
) -> (http::HeaderMap, bytes::Bytes, Option<http::HeaderMap>) {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::post(format!("{endpoint}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "gRPC answers HTTP 200 whatever its status"
    );
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (headers, collected.to_bytes(), trailers)
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[tokio::test]
async fn grpc_calls_get_grpc_statuses_and_bad_ones_are_counted() {
    let sink = Sink::start(limits(1000)).await.unwrap();
    let export = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    let message = fixture("pushed-otlp-trace-0af76519.pb");

    // A good call: one framed response message, then grpc-status 0 in the trailers.
    let (headers, body, trailers) =
        grpc_call(&sink.grpc_endpoint(), export, framed(&message)).await;
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc")
    );
    let trailers = trailers.expect("a unary reply ends with trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(
        body.len(),
        5 + u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize
    );
    let got = sink
        .verifier(Signal::Traces)
        .check(&[Sample::now(id(T2))])
        .await
        .outcomes;
    assert!(
        matches!(got[0], Outcome::Found { spans: Some(1), .. }),
        "{got:?}"
    );

    // Another service's method: UNIMPLEMENTED (12), trailers-only.
    let (headers, body, _) = grpc_call(
        &sink.grpc_endpoint(),
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        framed(&[]),
    )
    .await;
    assert_eq!(headers["grpc-status"], "12");
    assert!(body.is_empty());
    // A length prefix that does not match the message: INVALID_ARGUMENT (3), named.
    let mut short = framed(&message);
    short.truncate(short.len() - 1);
    let (headers, _, _) = grpc_call(&sink.grpc_endpoint(), export, short).await;
    assert_eq!(headers["grpc-status"], "3");
    assert!(
        headers["grpc-message"]
            .to_str()
            .unwrap()
            .contains("its prefix says")
    );
    // A compressed message (flag 1) is refused, not misread.
    let mut compressed = framed(&message);
    compressed[0] = 1;
    let (headers, _, _) = grpc_call(&sink.grpc_endpoint(), export, compressed).await;
    assert_eq!(headers["grpc-status"], "12");
    assert_eq!(sink.stats().rejected_requests, 3);
    sink.shutdown().await;
}

/// Holds `capacity` ids per signal, for an hour (longer than any test).
fn limits(capacity: usize) -> ricochet_verify::recent::Retention {
    ricochet_verify::recent::Retention {
        capacity,
        retention: std::time::Duration::from_secs(3600),
    }
}
