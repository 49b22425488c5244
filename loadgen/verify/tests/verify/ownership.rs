//! Found means the echo-server's own telemetry, not anything carrying the same id.
//!
//! A trace counts as found only when it holds the echo-server's server span, the span
//! whose parent is the span id loadgen sent in `traceparent` ([`Sample::parent_span_id`]);
//! completeness counts that span and its descendants, and spans not descended from it (a
//! mesh sidecar's, an ingress's) are reported apart as `extra_spans`. A log line counts
//! only when its `trace_id` and `request_id` fields are the request's. Checked against
//! Tempo (the recorded JSON with its base64 ids, OTLP-JSON with hex ids, protobuf),
//! Jaeger, Loki (the recorded line and lines of other services) on a loopback HTTP
//! server, and against the real echo-server exporting to the embedded sink.
//!
//! See: the issue "verdicts that hold in real deployments".

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, TracesData};
use prost::Message as _;
use ricochet_verify::loki::LokiVerifier;
use ricochet_verify::sink::Sink;
use ricochet_verify::tempo::{TraceApi, TraceVerifier};
use ricochet_verify::{
    Endpoint, Outcome, PollPolicy, Sample, Signal, Tally, TraceId, Verifier, poll,
};
use serde_json::{Value, json};

use super::backends::{Canned, Stub, T1, T2, backend, fixtures, id};

/// The span id loadgen sent in `traceparent` (the echo-server's server span's parent).
const P: u64 = 0x7a1c_9e3b_5d20_4f68;
/// An ingress span that is not exported: the parent of the sidecar's span.
const INGRESS: u64 = 0x1e55_0000_0000_0001;
/// A mesh sidecar's span of the same trace id, not descended from the echo-server's.
const SIDECAR: u64 = 0x51de_ca20_0000_0002;
/// The recorded server span of T1 (`APBnqgupArc=` in the fixture).
const T1_SERVER: u64 = 0x00f0_67aa_0ba9_02b7;
/// The request id of the recorded Loki line of T1.
const T1_REQUEST: &str = "3f2c8a4e-6b1d-4e8f-9a2b-7c5d1e0f4a61";

fn b64(id: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(id.to_be_bytes())
}

fn sample(trace: &str, parent: u64, expected_spans: usize) -> Sample {
    Sample {
        parent_span_id: parent,
        expected_spans,
        ..Sample::now(id(trace))
    }
}

/// A sidecar's batch in Tempo 2.2.4's JSON encoding (base64 ids, enum-name kinds).
fn sidecar_batch(trace_b64: &str) -> Value {
    json!({
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "istio-proxy"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace_b64,
            "spanId": b64(SIDECAR),
            "parentSpanId": b64(INGRESS),
            "name": "echo-server.default.svc.cluster.local:8080/*",
            "kind": "SPAN_KIND_CLIENT",
            "startTimeUnixNano": "1795266279713000000",
            "endTimeUnixNano": "1795266279716000000",
            "status": {}
        }]}]
    })
}

/// The recorded Tempo answer for T1 (3 echo-server spans, base64 ids), its server span
/// made the child of `P` as when loadgen's `traceparent` is continued; optionally with a
/// sidecar's batch, optionally without the echo-server's own batch.
fn recorded_tempo_trace(echo_server: bool, sidecar: bool) -> String {
    let raw = std::fs::read(fixtures().join("tempo-2.2.4-trace-by-id.json")).unwrap();
    let mut v: Value = serde_json::from_slice(&raw).unwrap();
    let batch = &mut v["batches"][0];
    let trace_b64 = batch["scopeSpans"][0]["spans"][0]["traceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = &mut batch["scopeSpans"][0]["spans"][0];
    assert_eq!(server["spanId"], b64(T1_SERVER), "the recorded server span");
    assert!(server.get("parentSpanId").is_none(), "recorded as a root");
    server["parentSpanId"] = json!(b64(P));
    let mut batches = Vec::new();
    if echo_server {
        batches.push(v["batches"][0].clone());
    }
    if sidecar {
        batches.push(sidecar_batch(&trace_b64));
    }
    json!({ "batches": batches }).to_string()
}

async fn tempo_outcome(body: String, content_type: &str, s: Sample) -> Outcome {
    let stub = Stub::start(vec![Canned::new(200, content_type, body)]).await;
    let v = TraceVerifier::new(
        backend("tempo", Endpoint::new(&stub.url()).unwrap()),
        TraceApi::Tempo,
        content_type.contains("protobuf"),
    );
    v.check(&[s]).await.outcomes.remove(0)
}

fn found(spans: usize, extra: Option<usize>) -> impl Fn(&Outcome) -> bool {
    move |o| matches!(o, Outcome::Found { spans: Some(n), extra_spans: e, .. } if *n == spans && *e == extra)
}

#[tokio::test]
async fn a_trace_with_a_sidecar_span_but_without_the_echo_servers_is_missing() {
    let got = tempo_outcome(
        recorded_tempo_trace(false, true),
        "application/json",
        sample(T1, P, 3),
    )
    .await;
    assert_eq!(got, Outcome::Missing);
    // The recorded trace as it is (its server span a root, not a child of loadgen's span)
    // does not continue the request either.
    let recorded = std::fs::read(fixtures().join("tempo-2.2.4-trace-by-id.json")).unwrap();
    let got = tempo_outcome(
        String::from_utf8(recorded).unwrap(),
        "application/json",
        sample(T1, P, 3),
    )
    .await;
    assert_eq!(got, Outcome::Missing);
}

#[tokio::test]
async fn a_trace_with_both_is_found_complete_with_one_extra_span_counted_apart() {
    let body = recorded_tempo_trace(true, true);
    let got = tempo_outcome(body.clone(), "application/json", sample(T1, P, 3)).await;
    assert!(found(3, Some(1))(&got), "{got:?}");

    // Through the poller and the tally: complete, and the extra span counted.
    let stub = Stub::start(vec![Canned::new(200, "application/json", body)]).await;
    let v: Arc<dyn Verifier> = Arc::new(TraceVerifier::tempo(backend(
        "tempo",
        Endpoint::new(&stub.url()).unwrap(),
    )));
    let (out, _) = poll::verify_all(v, vec![sample(T1, P, 3)], fast()).await;
    assert_eq!(out[0].complete, Some(true), "{:?}", out[0]);
    let mut tally = Tally::new(Signal::Traces);
    tally.record(&out[0]);
    assert_eq!(
        (tally.found, tally.incomplete, tally.extra_spans),
        (1, 0, 1)
    );

    // Without a parent span id (older callers) every span counts, extra unknown.
    let got = tempo_outcome(
        recorded_tempo_trace(true, true),
        "application/json",
        sample(T1, 0, 3),
    )
    .await;
    assert!(found(4, None)(&got), "{got:?}");
}

/// A `/storm?width=W&depth=D` trace: the server span (parent `P`), W chains of D nested
/// children below it, and one foreign span of the same trace id.
fn storm_links(width: u64, depth: u64) -> Vec<(u64, u64)> {
    let server = 0xe000_0000_0000_0001;
    let mut links = vec![(SIDECAR, INGRESS), (server, P)];
    for w in 0..width {
        let mut parent = server;
        for d in 0..depth {
            let id = 0xc000_0000_0000_0000 | (w << 16) | (d + 1);
            links.push((id, parent));
            parent = id;
        }
    }
    links
}

#[tokio::test]
async fn a_storm_trace_is_complete_with_its_children_and_one_foreign_span_apart() {
    let (width, depth) = (4, 3);
    let links = storm_links(width, depth);
    let expected = (width * depth + 1) as usize;
    let s = || sample(T2, P, expected);

    // Newer Tempo's OTLP-JSON: hex ids, children listed before their parents.
    let spans: Vec<Value> = links
        .iter()
        .rev()
        .map(|&(id, parent)| {
            json!({"traceId": T2, "spanId": format!("{id:016x}"), "parentSpanId": format!("{parent:016x}"), "name": "storm.node"})
        })
        .collect();
    let otlp_json = json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).to_string();
    let got = tempo_outcome(otlp_json, "application/json", s()).await;
    assert!(found(expected, Some(1))(&got), "OTLP-JSON: {got:?}");

    // Tempo's protobuf: raw 8-byte ids.
    let proto = TracesData {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: links.iter().map(|&(id, parent)| span(id, parent)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let stub = Stub::start(vec![Canned::new(200, "application/protobuf", proto)]).await;
    let v: Arc<dyn Verifier> = Arc::new(TraceVerifier::new(
        backend("tempo", Endpoint::new(&stub.url()).unwrap()),
        TraceApi::Tempo,
        true,
    ));
    let (out, _) = poll::verify_all(v, vec![s()], fast()).await;
    assert!(found(expected, Some(1))(&out[0].outcome), "{out:?}");
    assert_eq!(out[0].complete, Some(true));

    // A storm trace missing one child is found but incomplete (the foreign span does not
    // make up for it).
    let mut short = links.clone();
    short.pop();
    let spans: Vec<Value> = short
        .iter()
        .map(|&(id, parent)| json!({"spanId": b64(id), "parentSpanId": b64(parent)}))
        .collect();
    let body = json!({"batches": [{"scopeSpans": [{"spans": spans}]}]}).to_string();
    let stub = Stub::start(vec![Canned::new(200, "application/json", body)]).await;
    let v: Arc<dyn Verifier> = Arc::new(TraceVerifier::tempo(backend(
        "tempo",
        Endpoint::new(&stub.url()).unwrap(),
    )));
    let (out, _) = poll::verify_all(v, vec![s()], fast()).await;
    assert!(found(expected - 1, Some(1))(&out[0].outcome), "{out:?}");
    assert_eq!(out[0].complete, Some(false));
}

/// Jaeger's query API answer for T2: `references` carry the parent (`CHILD_OF`).
fn jaeger_trace(links: &[(u64, u64)]) -> String {
    let spans: Vec<Value> = links
        .iter()
        .map(|&(id, parent)| {
            json!({
                "traceID": "af7651916cd43dd8448eb211c80319c",
                "spanID": format!("{id:016x}"),
                "operationName": "op",
                "references": [{"refType": "CHILD_OF", "traceID": "af7651916cd43dd8448eb211c80319c", "spanID": format!("{parent:016x}")}],
                "startTime": 1795266280714000u64, "duration": 10, "tags": [], "logs": [],
                "processID": "p1", "warnings": null
            })
        })
        .collect();
    json!({
        "data": [{"traceID": "af7651916cd43dd8448eb211c80319c", "spans": spans,
                  "processes": {"p1": {"serviceName": "echo-server", "tags": []}}, "warnings": null}],
        "total": 0, "limit": 0, "offset": 0, "errors": null
    })
    .to_string()
}

#[tokio::test]
async fn jaeger_traces_are_the_echo_servers_by_their_child_of_reference() {
    let server = 0x00c7_c989_f979_18e1;
    for (links, want_found) in [
        (vec![(SIDECAR, INGRESS)], None),
        (
            vec![(SIDECAR, INGRESS), (server, P), (0xc1, server)],
            Some((2, Some(1))),
        ),
    ] {
        let stub = Stub::start(vec![Canned::new(
            200,
            "application/json",
            jaeger_trace(&links),
        )])
        .await;
        let v = TraceVerifier::new(
            backend("jaeger", Endpoint::new(&stub.url()).unwrap()),
            TraceApi::Jaeger,
            false,
        );
        let got = v.check(&[sample(T2, P, 2)]).await.outcomes.remove(0);
        match want_found {
            None => assert_eq!(got, Outcome::Missing, "{links:?}"),
            Some((n, extra)) => assert!(found(n, extra)(&got), "{links:?}: {got:?}"),
        }
    }
}

/// A Loki `streams` answer holding `lines` (one stream, entries 1 ms apart).
fn loki_answer(lines: &[String]) -> String {
    let values: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!([
                (1_795_266_279_715_200_000u64 + i as u64 * 1_000_000).to_string(),
                l
            ])
        })
        .collect();
    json!({"status": "success", "data": {"resultType": "streams", "result": [
        {"stream": {"app": "echo-server"}, "values": values}
    ], "stats": {}}})
    .to_string()
}

async fn loki_outcomes(body: String, samples: &[Sample]) -> Vec<Outcome> {
    let stub = Stub::start(vec![Canned::new(
        200,
        "application/json; charset=UTF-8",
        body,
    )])
    .await;
    let v = LokiVerifier::new(
        backend("loki", Endpoint::new(&stub.url()).unwrap()),
        r#"{app="echo-server"}"#,
    );
    v.check(samples).await.outcomes
}

fn with_request_id(trace: &str, request_id: &str) -> Sample {
    Sample {
        request_id: request_id.into(),
        ..Sample::now(id(trace))
    }
}

#[tokio::test]
async fn a_loki_line_holding_the_id_only_as_a_substring_is_not_found() {
    // Lines the `|~` filter lets through that are not the echo-server's line for T1:
    // another service naming T1 in its message, a JSON line whose `trace_id` is another
    // trace's, and the echo-server's line for T1 but of another request.
    let lines = vec![
        format!("level=info msg=\"proxied\" upstream trace {T1} answered 200"),
        format!(
            r#"{{"msg":"retrying upstream trace {T1}","trace_id":"{T2}","request_id":"{T1_REQUEST}"}}"#
        ),
        format!(r#"{{"trace_id":"{T1}","request_id":"ffffffffffffffffffffffffffffffff"}}"#),
    ];
    let got = loki_outcomes(
        loki_answer(&lines),
        &[with_request_id(T1, T1_REQUEST), with_request_id(T2, "")],
    )
    .await;
    assert_eq!(got[0], Outcome::Missing, "T1 only as a substring");
    // T2 is the second line's `trace_id` field: found by trace id when no request id is known.
    assert!(got[1].is_found(), "{:?}", got[1]);
}

#[tokio::test]
async fn the_recorded_loki_line_is_found_by_its_trace_id_and_request_id_fields() {
    let body = Canned::fixture("loki-2.9.9-query-range-found.json").body;
    let body = String::from_utf8(body.to_vec()).unwrap();
    let got = loki_outcomes(
        body,
        &[
            with_request_id(T1, T1_REQUEST),
            with_request_id(T1, "0123456789abcdef0123456789abcdef"),
            with_request_id(T1, ""),
        ],
    )
    .await;
    assert!(got[0].is_found(), "{:?}", got[0]);
    assert_eq!(
        got[1],
        Outcome::Missing,
        "another request of the same trace"
    );
    assert!(got[2].is_found(), "no request id: the trace id field alone");
}

fn span(id: u64, parent: u64) -> Span {
    Span {
        trace_id: Vec::new(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            parent.to_be_bytes().to_vec()
        },
        name: "span".into(),
        ..Default::default()
    }
}

fn fast() -> PollPolicy {
    PollPolicy {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(200),
        settle_timeout: Duration::from_secs(2),
        ..PollPolicy::default()
    }
}

/// How long to wait for the real echo-server's exports to reach the sink.
fn patience() -> Duration {
    std::env::var("RICOCHET_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(15), Duration::from_secs)
}

/// The real echo-server exporting over OTLP/HTTP to the embedded sink, a sidecar adding a
/// span to one of its traces: the traces are found by the server span's parent (the span
/// id sent in `traceparent`), with the sidecar's span apart and the storm's children
/// counted; the log records by the request id sent; and the request-log line the
/// echo-server wrote, served as a Loki answer, is found by its fields.
#[tokio::test]
async fn the_real_echo_servers_telemetry_is_found_by_its_parent_span_and_request_id() {
    use echo_server::config::{OtlpConfig, OtlpProtocol, RequestLog};

    let sink = Sink::start(ricochet_verify::recent::Retention {
        capacity: 1000,
        retention: Duration::from_secs(3600),
    })
    .await
    .unwrap();
    let log = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut config = echo_server::Config::default();
    config.telemetry.otlp = Some(OtlpConfig {
        endpoint: sink.http_endpoint(),
        protocol: OtlpProtocol::HttpProtobuf,
    });
    config.telemetry.export_interval = Duration::from_millis(50);
    config.request_log = RequestLog::Writer(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = echo_server::start(config, listener).await.unwrap();

    let (plain, storm) = (
        "1a2b3c4d5e6f708192a3b4c5d6e7f811",
        "2a2b3c4d5e6f708192a3b4c5d6e7f822",
    );
    let (r_plain, r_storm) = (
        "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb",
        "ccccccccccccccccdddddddddddddddd",
    );
    let http = reqwest::Client::new();
    for (trace, path, request_id) in [
        (plain, "/api/orders", r_plain),
        (storm, "/storm?width=3&depth=2", r_storm),
    ] {
        let resp = http
            .get(format!("http://{}{path}", server.local_addr()))
            .header("traceparent", format!("00-{trace}-{P:016x}-01"))
            .header("x-request-id", request_id)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let _ = resp.bytes().await;
    }
    // A sidecar's span in the plain request's trace, exported by someone else.
    let sidecar = Span {
        trace_id: id(plain).0.to_vec(),
        ..span(SIDECAR, INGRESS)
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("istio-proxy".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![sidecar],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    sink.store().record_traces(&req);

    let policy = PollPolicy {
        settle_timeout: patience(),
        ..fast()
    };
    let traces: Arc<dyn Verifier> = Arc::new(sink.verifier(Signal::Traces));
    let (out, _) = poll::verify_all(
        traces,
        vec![sample(plain, P, 1), sample(storm, P, 7)],
        policy.clone(),
    )
    .await;
    for v in &out {
        let want = if v.sample.trace_id == id(plain) {
            found(1, Some(1))
        } else {
            found(7, Some(0))
        };
        assert!(want(&v.outcome), "{}: {:?}", v.sample.trace_id, v.outcome);
        assert_eq!(v.complete, Some(true));
    }

    let logs: Arc<dyn Verifier> = Arc::new(sink.verifier(Signal::Logs));
    let (out, _) = poll::verify_all(
        logs,
        vec![
            with_request_id(plain, r_plain),
            with_request_id(storm, r_plain),
        ],
        PollPolicy {
            settle_timeout: Duration::from_secs(1),
            ..fast()
        },
    )
    .await;
    for v in &out {
        let mine = v.sample.trace_id == id(plain);
        assert_eq!(
            v.outcome.is_found(),
            mine,
            "{}: {:?}",
            v.sample.trace_id,
            v.outcome
        );
    }

    // The request-log lines the echo-server wrote (JSON by default), as Loki returns them.
    let deadline = std::time::Instant::now() + patience();
    let lines = loop {
        let text = String::from_utf8(log.lock().unwrap().clone()).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= 2 || std::time::Instant::now() >= deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    let got = loki_outcomes(
        loki_answer(&lines),
        &[
            with_request_id(plain, r_plain),
            with_request_id(storm, r_storm),
            with_request_id(plain, r_storm),
            with_request_id(T1, ""),
        ],
    )
    .await;
    assert!(got[0].is_found() && got[1].is_found(), "{got:?}\n{lines:?}");
    assert_eq!(got[2], Outcome::Missing);
    assert_eq!(got[3], Outcome::Missing);

    server.shutdown().await.unwrap();
    sink.shutdown().await;
}

#[test]
fn trace_ids_in_the_recorded_fixture_are_base64_not_hex() {
    // The recorded answer's encoding, which the parser must read (and so this test file).
    let raw = std::fs::read_to_string(fixtures().join("tempo-2.2.4-trace-by-id.json")).unwrap();
    assert!(raw.contains(&format!("\"spanId\":\"{}\"", b64(T1_SERVER))));
    assert!(raw.contains(&format!("\"parentSpanId\":\"{}\"", b64(T1_SERVER))));
    let t: TraceId = T1.parse().unwrap();
    let tb64 = base64::engine::general_purpose::STANDARD.encode(t.0);
    assert!(raw.contains(&format!("\"traceId\":\"{tb64}\"")));
}
