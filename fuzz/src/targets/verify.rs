//! Targets in `ricochet-verify`: the embedded OTLP sink's decoders, the OpenMetrics
//! exposition parser, the Tempo, Jaeger, Loki and Prometheus answer readers, `Retry-After`.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message as _;
use ricochet_verify::sink::Store;
use ricochet_verify::{exposition, fuzzing, loki, prometheus, tempo};
use serde_json::Value;

use super::{and, corpus_dir, outcome};
use crate::rng::{Rng, hash};
use crate::runner::Target;

/// The sink's OTLP decoders: gRPC framing + protobuf, OTLP/HTTP protobuf and JSON.
pub const OTLP: Target = Target {
    name: "otlp",
    entry: "ricochet_verify::fuzzing::{otlp_grpc, otlp_http} (the sink's grpc_message + decode_export)",
    max_len: 64 * 1024,
    seeds: otlp_seeds,
    dictionary: OTLP_TOKENS,
    generate: None,
    run: run_otlp,
};

/// The OpenMetrics/Prometheus text exposition parser.
pub const EXPOSITION: Target = Target {
    name: "exposition",
    entry: "ricochet_verify::exposition::{exemplars, sum}",
    max_len: 32 * 1024,
    seeds: exposition_seeds,
    dictionary: EXPOSITION_TOKENS,
    generate: Some(generate_exposition),
    run: run_exposition,
};

/// Tempo's JSON trace answers (every accepted shape).
pub const TEMPO_JSON: Target = Target {
    name: "tempo-json",
    entry: "ricochet_verify::tempo::count_tempo_json_spans",
    max_len: 16 * 1024,
    seeds: tempo_json_seeds,
    dictionary: TRACE_JSON_TOKENS,
    generate: None,
    run: run_tempo_json,
};

/// Tempo's protobuf trace answers (`TracesData`).
pub const TEMPO_PROTOBUF: Target = Target {
    name: "tempo-protobuf",
    entry: "ricochet_verify::tempo::count_protobuf_spans",
    max_len: 16 * 1024,
    seeds: tempo_protobuf_seeds,
    dictionary: &[],
    generate: None,
    run: run_tempo_protobuf,
};

/// Jaeger's query API answers.
pub const JAEGER: Target = Target {
    name: "jaeger",
    entry: "ricochet_verify::tempo::count_jaeger_spans",
    max_len: 16 * 1024,
    seeds: jaeger_seeds,
    dictionary: TRACE_JSON_TOKENS,
    generate: None,
    run: run_jaeger,
};

/// Loki's `query_range` answers.
pub const LOKI: Target = Target {
    name: "loki",
    entry: "ricochet_verify::loki::parse_streams",
    max_len: 16 * 1024,
    seeds: loki_seeds,
    dictionary: PROM_JSON_TOKENS,
    generate: None,
    run: run_loki,
};

/// Prometheus' `query_exemplars` and instant-query answers.
pub const PROMETHEUS: Target = Target {
    name: "prometheus",
    entry: "ricochet_verify::prometheus::{parse_exemplars, parse_vector} (after the client's status/data check)",
    max_len: 16 * 1024,
    seeds: prometheus_seeds,
    dictionary: PROM_JSON_TOKENS,
    generate: None,
    run: run_prometheus,
};

/// A backend's `Retry-After` header (seconds or an HTTP date).
pub const RETRY_AFTER: Target = Target {
    name: "retry-after",
    entry: "ricochet_verify::http::parse_retry_after",
    max_len: 256,
    seeds: retry_after_seeds,
    dictionary: &[
        b"Sun, ",
        b"06 Nov 1994 ",
        b"08:49:37",
        b" GMT",
        b"Feb",
        b"29",
        b"99:99:99",
        b"9999",
    ],
    generate: None,
    run: run_retry_after,
};

// ---- OTLP ---------------------------------------------------------------------------------

const OTLP_MODES: u8 = 6;

const OTLP_TOKENS: &[&[u8]] = &[
    b"resourceSpans",
    b"scopeSpans",
    b"spans",
    b"traceId",
    b"spanId",
    b"resourceLogs",
    b"scopeLogs",
    b"logRecords",
    b"stringValue",
    b"intValue",
    b"kvlistValue",
    b"arrayValue",
    b"bytesValue",
    b"4bf92f3577b34da6a3ce929d0e0e4736",
    b"00f067aa0ba902b7",
    b"startTimeUnixNano",
    b"\"1795266279714000000\"",
    b"\x0a",
    b"\x12",
    b"\x1a",
    b"\x22",
    b"\x80\x80\x80\x80\x10",
    b"\xff\xff\xff\xff\x0f",
    b"\x00\x00\x00\x00\x00",
];

fn trace_request() -> Vec<ExportTraceServiceRequest> {
    let mut out = Vec::new();
    for pb in corpus_dir("tempo-protobuf") {
        if let Ok(data) = TracesData::decode(pb.as_slice()) {
            out.push(ExportTraceServiceRequest {
                resource_spans: data.resource_spans,
            });
        }
    }
    out
}

fn logs_request(with_trace_id: bool) -> ExportLogsServiceRequest {
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("echo-server".into()),
                )],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "echo-server".into(),
                    version: "0.1.0".into(),
                    ..Default::default()
                }),
                log_records: vec![LogRecord {
                    time_unix_nano: 1_795_266_279_715_000_000,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("GET /api 200".into())),
                    }),
                    attributes: vec![
                        kv("http.response.status_code", any_value::Value::IntValue(200)),
                        kv("duration_ms", any_value::Value::DoubleValue(1.2)),
                    ],
                    trace_id: if with_trace_id {
                        vec![
                            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d,
                            0x0e, 0x0e, 0x47, 0x36,
                        ]
                    } else {
                        Vec::new()
                    },
                    span_id: vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn with_mode(mode: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(body);
    v
}

fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(message.len() as u32).to_be_bytes());
    v.extend_from_slice(message);
    v
}

fn otlp_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for req in trace_request() {
        let pb = req.encode_to_vec();
        seeds.push(with_mode(0, &grpc_frame(&pb)));
        seeds.push(with_mode(2, &pb));
        if let Ok(json) = serde_json::to_vec(&req) {
            seeds.push(with_mode(4, &json));
        }
    }
    for json in corpus_dir("tempo-json")
        .into_iter()
        .filter(|j| j.starts_with(b"{\n \"resourceSpans\""))
    {
        seeds.push(with_mode(4, &json));
    }
    for with_id in [true, false] {
        let req = logs_request(with_id);
        let pb = req.encode_to_vec();
        seeds.push(with_mode(1, &grpc_frame(&pb)));
        seeds.push(with_mode(3, &pb));
        if let Ok(json) = serde_json::to_vec(&req) {
            seeds.push(with_mode(5, &json));
        }
    }
    seeds.push(with_mode(0, &[1, 0, 0, 0, 0]));
    seeds
}

thread_local! {
    /// The sink's table, kept across inputs (small, so eviction runs too).
    static STORE: Store = Store::new(ricochet_verify::recent::Retention {
        capacity: 64,
        retention: std::time::Duration::from_secs(60),
    });
}

fn run_otlp(input: &[u8]) -> u64 {
    let Some((&mode, body)) = input.split_first() else {
        return 0;
    };
    let mode = mode % OTLP_MODES;
    let traces = mode.is_multiple_of(2);
    let result = STORE.with(|store| match mode / 2 {
        0 => fuzzing::otlp_grpc(store, traces, body),
        1 => fuzzing::otlp_http(store, traces, false, body),
        _ => fuzzing::otlp_http(store, traces, true, body),
    });
    and(u64::from(mode), outcome(&result, |()| 0))
}

// ---- exposition -----------------------------------------------------------------------------

const EXPOSITION_TOKENS: &[&[u8]] = &[
    b"# TYPE ",
    b"# HELP ",
    b"# EOF",
    b"_bucket",
    b"_count",
    b"_sum",
    b"_total",
    b"{",
    b"}",
    b"=\"",
    b"\",",
    b"le=\"+Inf\"",
    b" # {trace_id=\"",
    b"4bf92f3577b34da6a3ce929d0e0e4736",
    b"\",span_id=\"00f067aa0ba902b7\"} ",
    b"\\\"",
    b"\\n",
    b"\\",
    b" 1795266279.715",
    b" +Inf",
    b" -Inf",
    b" NaN",
    b" 1e400",
    b" -1",
    b"http_server_request_duration_seconds_count",
    b"http_route=\"/api/{*path}\"",
];

fn exposition_seeds() -> Vec<Vec<u8>> {
    let mut seeds = corpus_dir("exposition");
    // Each line alone too: mutations then reach the exemplar part more often.
    let lines: Vec<Vec<u8>> = seeds
        .iter()
        .flat_map(|s| s.split(|&b| b == b'\n').map(<[u8]>::to_vec))
        .filter(|l| l.windows(3).any(|w| w == b" # "))
        .take(16)
        .collect();
    seeds.extend(lines);
    seeds
}

fn generate_exposition(rng: &mut Rng) -> Vec<u8> {
    const NAMES: &[&str] = &[
        "http_server_request_duration_seconds_bucket",
        "http_server_request_duration_seconds_count",
        "x",
        "",
    ];
    const LABELS: &[&str] = &[
        "le=\"0.005\"",
        "http_route=\"/api/{*path}\"",
        "a=\"b\\\"c\"",
        "a=\"\\n\"",
        "a=\"}\"",
        "a=\"",
        "a=b",
        "=\"\"",
        ",",
        "",
    ];
    const VALUES: &[&str] = &["1", "0.0183", "+Inf", "NaN", "-1", "1e400", "x", ""];
    const IDS: &[&str] = &[
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "0",
        "",
        "4bf92f3577b34da6a3ce929d0e0e47361",
        "zz",
    ];
    const STAMPS: &[&str] = &["1795266279.715", "-1", "1e300", "NaN", "inf", "", "x"];
    let mut s = String::new();
    for _ in 0..rng.range(1, 4) {
        s.push_str(rng.pick(NAMES));
        if rng.one_in(4) {
            s.push(' ');
        } else {
            s.push('{');
            for i in 0..rng.below(3) {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(rng.pick(LABELS));
            }
            s.push_str("} ");
        }
        s.push_str(rng.pick(VALUES));
        if !rng.one_in(3) {
            s.push_str(" # {trace_id=\"");
            s.push_str(rng.pick(IDS));
            s.push_str("\",span_id=\"00f067aa0ba902b7\"} ");
            s.push_str(rng.pick(VALUES));
            s.push(' ');
            s.push_str(rng.pick(STAMPS));
        }
        s.push('\n');
    }
    s.into_bytes()
}

fn run_exposition(input: &[u8]) -> u64 {
    // `scrape` reads the body as text (lossy) before parsing.
    let text = String::from_utf8_lossy(input);
    let exemplars = exposition::exemplars(&text);
    let total = exposition::sum(
        &text,
        "http_server_request_duration_seconds_count",
        &[("http_route", "/api/{*path}")],
    );
    let lines = text.lines().filter_map(exposition::parse_line).count();
    hash(
        format!(
            "{}|{}|{}|{}",
            exemplars.len().min(4),
            exemplars.iter().any(|e| e.series.slot.is_some()),
            total.is_finite(),
            lines.min(4)
        )
        .as_bytes(),
    )
}

// ---- Tempo and Jaeger ----------------------------------------------------------------------

const TRACE_JSON_TOKENS: &[&[u8]] = &[
    b"\"trace\":",
    b"\"batches\":",
    b"\"resourceSpans\":",
    b"\"scopeSpans\":",
    b"\"instrumentationLibrarySpans\":",
    b"\"spans\":",
    b"\"data\":",
    b"\"traceID\":",
    b"[{}]",
    b"[]",
    b"{}",
    b"null",
    b"\"status\":\"COMPLETE\"",
];

fn tempo_json_seeds() -> Vec<Vec<u8>> {
    let mut seeds = corpus_dir("tempo-json");
    seeds.extend(
        [
            r#"{"batches":[{"resource":{},"scopeSpans":[{"spans":[{},{},{}]}]}]}"#,
            r#"{"trace":{"resourceSpans":[{"scopeSpans":[{"spans":[{},{}]}]}]},"status":"COMPLETE"}"#,
            r#"{"batches":[{"instrumentationLibrarySpans":[{"spans":[{}]}]}]}"#,
            "{}",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec()),
    );
    seeds
}

fn tempo_protobuf_seeds() -> Vec<Vec<u8>> {
    corpus_dir("tempo-protobuf")
}

fn jaeger_seeds() -> Vec<Vec<u8>> {
    corpus_dir("jaeger")
}

fn spans_shape(r: &Result<Option<usize>, String>) -> u64 {
    outcome(r, |n| n.map_or(0, |n| 1 + n.min(8) as u64))
}

fn run_tempo_json(input: &[u8]) -> u64 {
    spans_shape(&tempo::count_tempo_json_spans(input))
}

fn run_tempo_protobuf(input: &[u8]) -> u64 {
    spans_shape(&tempo::count_protobuf_spans(input))
}

fn run_jaeger(input: &[u8]) -> u64 {
    spans_shape(&tempo::count_jaeger_spans(input))
}

// ---- Loki and Prometheus -------------------------------------------------------------------

const PROM_JSON_TOKENS: &[&[u8]] = &[
    b"\"status\":\"success\"",
    b"\"status\":\"error\"",
    b"\"data\":",
    b"\"resultType\":",
    b"\"streams\"",
    b"\"vector\"",
    b"\"scalar\"",
    b"\"matrix\"",
    b"\"result\":",
    b"\"values\":",
    b"\"value\":",
    b"\"metric\":",
    b"\"stream\":",
    b"\"exemplars\":",
    b"\"seriesLabels\":",
    b"\"labels\":",
    b"\"trace_id\":",
    b"\"timestamp\":",
    b"\"le\":",
    b"\"errorType\":",
    b"\"error\":",
    b"\"4bf92f3577b34da6a3ce929d0e0e4736\"",
    b"[1795266279.715,\"1\"]",
    b"[\"1795266279715000000\",\"trace_id=4bf92f3577b34da6a3ce929d0e0e4736\"]",
    b"18446744073709551615",
    b"1e300",
    b"-1",
];

fn loki_seeds() -> Vec<Vec<u8>> {
    corpus_dir("loki")
}

fn prometheus_seeds() -> Vec<Vec<u8>> {
    corpus_dir("prometheus")
}

fn run_loki(input: &[u8]) -> u64 {
    let parsed = loki::parse_streams(input);
    outcome(&parsed, |(entries, found)| {
        ((*entries).min(8) as u64) << 4 | (found.len().min(8) as u64)
    })
}

fn run_prometheus(input: &[u8]) -> u64 {
    // What `PrometheusClient::data` does with a 200 answer: JSON, `status` success, `data`.
    let Ok(v) = serde_json::from_slice::<Value>(input) else {
        return 1;
    };
    if v.get("status").and_then(Value::as_str) != Some("success") {
        // The client quotes `errorType` and `error` in its reason; only their presence
        // is an outcome.
        let kind = v.get("errorType").and_then(Value::as_str).is_some();
        let msg = v.get("error").and_then(Value::as_str).is_some();
        return and(2, u64::from(kind) + 2 * u64::from(msg));
    }
    let Some(data) = v.get("data") else {
        return 3;
    };
    let exemplars = prometheus::parse_exemplars(data);
    let vector = prometheus::parse_vector(data);
    and(
        outcome(&exemplars, |e| e.len().min(8) as u64),
        outcome(&vector, |s| s.len().min(8) as u64),
    )
}

fn retry_after_seeds() -> Vec<Vec<u8>> {
    [
        "120",
        "0",
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Wed, 21 Oct 2099 07:28:00 GMT",
        " 5 ",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn run_retry_after(input: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(input) else {
        return 0;
    };
    ricochet_verify::http::parse_retry_after(text).map_or(1, |d| 2 + u64::from(d.is_zero()))
}
