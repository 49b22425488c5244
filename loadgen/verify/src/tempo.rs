//! Trace backends: Tempo's trace-by-id API (v1 and v2) and Jaeger's query API.
//!
//! Neither has a batch lookup, so each sample costs one query; the shared
//! [`super::RateLimiter`] bounds the total, and the sampling rate should be chosen so that
//! `samples/s × polls per sample` stays inside `maxQueriesPerSecond`.
//!
//! What is parsed:
//! - **Tempo JSON**, any of: `{"batches":[ResourceSpans]}` (Tempo ≤ 2.x, gogo-jsonpb: ids in
//!   base64, `kind` as enum name, int64 as strings), `{"resourceSpans":[..]}` (OTLP-JSON,
//!   newer Tempo), and the `/api/v2/traces/{id}` wrapper `{"trace":{..}}`. Inside each
//!   resource: `scopeSpans` (or the pre-1.0 `instrumentationLibrarySpans`) → `spans`, each
//!   read for its `spanId` and `parentSpanId`: base64 as Tempo 2.2.4 writes them
//!   (`APBnqgupArc=` is `00f067aa0ba902b7`), or 16 hex digits as OTLP-JSON writes them.
//! - **Tempo protobuf** (`Accept: application/protobuf`, v1 only): `tempopb.Trace`, wire
//!   compatible with OTLP `TracesData`; ids are raw bytes.
//! - **Jaeger** `GET /api/traces/{id}`: `{"data":[{"traceID":..,"spans":[..],"processes":{..}}],
//!   "errors":null}`, span ids in hex, the parent as the `CHILD_OF` entry of `references`;
//!   not found is 404 `{"data":null,…,"errors":[{"code":404,"msg":"trace not found"}]}`
//!   (Jaeger's documented `structuredResponse`). No recorded Jaeger response exists in the
//!   fixtures; the tests use bodies built from that documented shape.
//!
//! # Found is the echo-server's span
//!
//! A trace id is shared by everything on the request's path: a mesh sidecar, an ingress,
//! other services may add spans to it. The echo-server continues loadgen's `traceparent`,
//! so its server span is the span whose parent is [`Sample::parent_span_id`]; the trace
//! counts as found only when it holds that span ([`own_spans`]). Completeness counts that
//! span and its descendants (for `/storm`, the `W × D` children); every other span is
//! reported apart as [`Outcome::Found::extra_spans`]. A trace holding only foreign spans
//! is missing. A sample without a parent span id (`0`: older callers, tests) falls back
//! to counting every span of the trace, with `extra_spans` unknown (`None`).
//!
//! # Classification of answers
//!
//! | answer | outcome |
//! | --- | --- |
//! | 200, a trace in Tempo's/Jaeger's form holding the echo-server's span | found (its spans, extra spans) |
//! | 200, Tempo's empty trace `{}`, Jaeger's `"data":[]`, or only foreign spans | missing |
//! | Tempo 404 `text/plain` `trace not found` | missing (multi-tenant Tempo answers this for a wrong tenant too; no client can tell) |
//! | Jaeger 404 `{"data":null,…,"errors":[{"code":404,…}]}` | missing |
//! | any other 404 (nginx's HTML page, a gateway's JSON) | unknown: not Tempo/Jaeger, check the URL's path prefix |
//! | 200 that is HTML, not JSON, or JSON of another shape | unknown: not Tempo/Jaeger |
//! | 3xx (never followed) | unknown: names where it points (a login redirect, or a redirect) |
//! | 401/403 | unknown: tenant header or credentials, with the challenge |
//! | anything else, or a trace whose ids cannot be read | unknown, with what came back |

use prost::Message as _;
use serde_json::Value;

use super::http::{Answer, HttpBackend};
use super::{BoxFuture, Check, Outcome, Sample, Signal, Verifier};

/// Which trace query API a [`TraceVerifier`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceApi {
    /// Tempo `GET /api/traces/{id}`.
    Tempo,
    /// Tempo `GET /api/v2/traces/{id}` (answers `{"trace":{..}}`).
    TempoV2,
    /// Jaeger query `GET /api/traces/{id}`.
    Jaeger,
}

impl TraceApi {
    /// The backend's name in reasons ("…, not Tempo").
    fn product(self) -> &'static str {
        match self {
            Self::Tempo | Self::TempoV2 => "Tempo",
            Self::Jaeger => "Jaeger",
        }
    }
}

/// Verifies traces by id against Tempo or Jaeger.
#[derive(Debug)]
pub struct TraceVerifier {
    backend: HttpBackend,
    api: TraceApi,
    protobuf: bool,
}

impl TraceVerifier {
    /// Tempo's v1 API, JSON.
    pub fn tempo(backend: HttpBackend) -> Self {
        Self {
            backend,
            api: TraceApi::Tempo,
            protobuf: false,
        }
    }

    /// Any API; `protobuf` asks Tempo v1 for `application/protobuf` (smaller, faster to
    /// parse; ignored for the other APIs).
    pub fn new(backend: HttpBackend, api: TraceApi, protobuf: bool) -> Self {
        Self {
            backend,
            api,
            protobuf: protobuf && api == TraceApi::Tempo,
        }
    }

    /// Asks about one trace: its outcome and how long the backend took.
    pub async fn lookup(&self, sample: &Sample) -> (Outcome, Vec<std::time::Duration>) {
        let id = sample.trace_id.to_hex();
        let path = match self.api {
            TraceApi::Tempo | TraceApi::Jaeger => format!("api/traces/{id}"),
            TraceApi::TempoV2 => format!("api/v2/traces/{id}"),
        };
        let accept = if self.protobuf {
            "application/protobuf"
        } else {
            "application/json"
        };
        match self.backend.get(&path, &[], accept).await {
            Err(u) => (Outcome::Unknown { reason: u.reason }, u.took),
            Ok(a) => {
                let took = vec![a.took];
                let outcome = match self.interpret(&a, sample) {
                    // One reason for every sample (the tally groups unknowns by reason):
                    // the id in the URL (or a redirect's target) becomes a placeholder.
                    Outcome::Unknown { reason } => Outcome::Unknown {
                        reason: reason.replace(&id, "<trace-id>"),
                    },
                    other => other,
                };
                (outcome, took)
            }
        }
    }

    /// The outcome of one answer about `sample` (see the module's table).
    fn interpret(&self, a: &Answer, sample: &Sample) -> Outcome {
        match self.api {
            TraceApi::Jaeger => self.interpret_jaeger(a, sample),
            TraceApi::Tempo | TraceApi::TempoV2 => self.interpret_tempo(a, sample),
        }
    }

    fn foreign(&self, a: &Answer) -> Outcome {
        Outcome::unknown(self.backend.foreign_reason(a, self.api.product()))
    }

    fn unreadable(&self, a: &Answer, e: &str) -> Outcome {
        Outcome::unknown(format!(
            "{} answered {} {}, a trace that cannot be read: {e}",
            a.url,
            a.status.as_u16(),
            a.media_type().unwrap_or_default()
        ))
    }

    fn interpret_tempo(&self, a: &Answer, sample: &Sample) -> Outcome {
        match a.status.as_u16() {
            200 if a.is_html() => self.foreign(a),
            200 => {
                let is_proto = a.media_type().is_some_and(|m| m.contains("protobuf"));
                let spans = if is_proto {
                    protobuf_spans(&a.body)
                } else {
                    match tempo_json_spans(&a.body) {
                        Err(TempoJsonError::NotTempo) => return self.foreign(a),
                        Err(TempoJsonError::Unreadable(e)) => Err(e),
                        Ok(s) => Ok(s),
                    }
                };
                match spans {
                    Ok(None) => Outcome::Missing,
                    Ok(Some(spans)) => judge(&spans, sample, a),
                    Err(e) => self.unreadable(a, &e),
                }
            }
            404 if is_tempo_not_found(a) => Outcome::Missing,
            _ => self.foreign(a),
        }
    }

    fn interpret_jaeger(&self, a: &Answer, sample: &Sample) -> Outcome {
        if a.is_redirect() || a.is_html() {
            return self.foreign(a);
        }
        let Some(answer) = jaeger_answer(&a.body) else {
            return self.foreign(a);
        };
        match (a.status.as_u16(), answer) {
            (200, JaegerAnswer::Traces(Ok(spans))) if spans.is_empty() => Outcome::Missing,
            (200, JaegerAnswer::Traces(Ok(spans))) => judge(&spans, sample, a),
            (200, JaegerAnswer::Traces(Err(e))) => self.unreadable(a, &e),
            (404, JaegerAnswer::Errors(errors)) if errors.iter().any(|(c, _)| *c == 404) => {
                Outcome::Missing
            }
            (401 | 403, _) => self.foreign(a),
            (code, JaegerAnswer::Errors(errors)) => Outcome::unknown(format!(
                "{} answered {code} with Jaeger's errors: {}",
                a.url,
                errors
                    .iter()
                    .map(|(c, m)| format!("{c} {m}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            _ => self.foreign(a),
        }
    }
}

/// Tempo's own not-found: `404` with the plain-text body `trace not found` (recorded from
/// Tempo 2.2.4 single- and multi-tenant: `text/plain; charset=utf-8`, no newline).
fn is_tempo_not_found(a: &Answer) -> bool {
    !a.is_html()
        && !a.is_json()
        && std::str::from_utf8(&a.body).is_ok_and(|b| b.trim() == "trace not found")
}

/// Found (the echo-server's spans and the extra ones) or missing (no span of the
/// echo-server's in the trace).
fn judge(spans: &[SpanLink], sample: &Sample, a: &Answer) -> Outcome {
    match own_spans(spans, sample.parent_span_id) {
        Some(own) if own.own > 0 => Outcome::Found {
            first_seen: a.received,
            spans: Some(own.own),
            extra_spans: own.extra,
            recorded_at: None,
        },
        _ => Outcome::Missing,
    }
}

impl Verifier for TraceVerifier {
    fn signal(&self) -> Signal {
        Signal::Traces
    }

    fn name(&self) -> &str {
        self.backend.name()
    }

    /// One trace per check: each is its own query, waiting for its slot of the shared
    /// budget, and a check holds its verifier's loop; one at a time lets a latency probe
    /// that falls due go next instead of waiting behind a batch of presence samples.
    fn max_batch(&self) -> usize {
        1
    }

    fn check<'a>(&'a self, samples: &'a [Sample]) -> BoxFuture<'a, Check> {
        Box::pin(async move {
            let mut check = Check::default();
            for s in samples {
                let (o, took) = self.lookup(s).await;
                check.outcomes.push(o);
                check.query_durations.extend(took);
            }
            check
        })
    }
}

/// One span of a trace as far as ownership goes: its id and its parent's (`0`: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanLink {
    /// The span id.
    pub id: u64,
    /// The parent span id, `0` for a root span.
    pub parent: u64,
}

/// How one trace's spans divide for one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnSpans {
    /// The echo-server's server span and its descendants (every span when the sample has
    /// no parent span id).
    pub own: usize,
    /// The other spans of the trace; `None` when the sample has no parent span id.
    pub extra: Option<usize>,
}

/// Divides a trace's spans into the echo-server's and the others: the echo-server's server
/// span is a span whose parent is `parent` (the span id loadgen sent in `traceparent`),
/// and its part is that span plus every span descended from it. `None` when the trace
/// holds no such span (only foreign spans: a sidecar's, an ingress's). With `parent == 0`
/// (unknown: older callers) every span counts as the echo-server's and `extra` is `None`.
///
/// Shared by the trace backends and the embedded sink. Linear in the spans; duplicate
/// span ids and parent cycles are harmless (each span is counted once).
pub fn own_spans(spans: &[SpanLink], parent: u64) -> Option<OwnSpans> {
    use std::collections::{HashMap, HashSet};
    if parent == 0 {
        return Some(OwnSpans {
            own: spans.len(),
            extra: None,
        });
    }
    let mut children: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        if s.parent != 0 {
            children.entry(s.parent).or_default().push(i);
        }
    }
    let mut queue: Vec<usize> = children.get(&parent)?.clone();
    let mut counted = vec![false; spans.len()];
    let mut expanded: HashSet<u64> = HashSet::from([parent]);
    let mut own = 0;
    while let Some(i) = queue.pop() {
        if std::mem::replace(&mut counted[i], true) {
            continue;
        }
        own += 1;
        let id = spans[i].id;
        if id != 0
            && expanded.insert(id)
            && let Some(kids) = children.get(&id)
        {
            queue.extend(kids.iter().copied());
        }
    }
    Some(OwnSpans {
        own,
        extra: Some(spans.len() - own),
    })
}

/// Why a JSON body is not a Tempo trace.
enum TempoJsonError {
    /// Not JSON, or JSON of another shape (a gateway's `{"message":…}`): not Tempo.
    NotTempo,
    /// Tempo's shape, but something in it cannot be read.
    Unreadable(String),
}

/// The spans of a Tempo JSON trace in any accepted shape; `None` for Tempo's empty trace
/// (`{}`, `{"trace":{}}`).
fn tempo_json_spans(body: &[u8]) -> Result<Option<Vec<SpanLink>>, TempoJsonError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| TempoJsonError::NotTempo)?;
    let outer = v.as_object().ok_or(TempoJsonError::NotTempo)?;
    let v = match outer.get("trace") {
        Some(Value::Null) => return Ok(None),
        Some(t) => t,
        None => &v,
    };
    let Some(obj) = v.as_object() else {
        return Err(TempoJsonError::Unreadable(
            "`trace` is not an object".into(),
        ));
    };
    let batches = match obj.get("batches").or_else(|| obj.get("resourceSpans")) {
        Some(Value::Array(b)) => b,
        Some(Value::Null) => return Ok(None),
        None if obj.is_empty() => return Ok(None),
        None => return Err(TempoJsonError::NotTempo),
        Some(_) => {
            return Err(TempoJsonError::Unreadable(
                "`batches`/`resourceSpans` is not an array".into(),
            ));
        }
    };
    let mut out = Vec::new();
    for rs in batches {
        let scopes = rs
            .get("scopeSpans")
            .or_else(|| rs.get("instrumentationLibrarySpans"));
        for ss in scopes.and_then(Value::as_array).into_iter().flatten() {
            for span in ss
                .get("spans")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let id = |key| json_span_id(span.get(key)).map_err(TempoJsonError::Unreadable);
                out.push(SpanLink {
                    id: id("spanId")?,
                    parent: id("parentSpanId")?,
                });
            }
        }
    }
    Ok(Some(out))
}

/// A span id in Tempo's JSON: absent or empty is `0`; 16 hex digits (OTLP-JSON) or
/// base64 of 8 bytes (gogo-jsonpb, Tempo ≤ 2.x); anything else is an error.
fn json_span_id(v: Option<&Value>) -> Result<u64, String> {
    use base64::Engine as _;
    let s = match v {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(format!("a span id is not a string: {other}")),
    };
    if s.is_empty() {
        return Ok(0);
    }
    if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u64::from_str_radix(s, 16).map_err(|e| e.to_string());
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(s)
        .map_err(|_| format!("span id `{s}` is neither 16 hex digits nor base64"))?;
    span_id_bytes(&bytes).ok_or_else(|| format!("span id `{s}` is not 8 bytes"))
}

/// 8 raw bytes as a span id; empty is `0`; `None` for any other length.
pub(crate) fn span_id_bytes(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return Some(0);
    }
    <[u8; 8]>::try_from(b).ok().map(u64::from_be_bytes)
}

/// Counts the spans of a Tempo JSON trace in any accepted shape; `None` when the body is
/// Tempo's empty trace (`{}`).
pub fn count_tempo_json_spans(body: &[u8]) -> Result<Option<usize>, String> {
    match tempo_json_spans(body) {
        Ok(s) => Ok(s.map(|s| s.len())),
        Err(TempoJsonError::NotTempo) => {
            Err("not a Tempo trace (not JSON, or no `batches`, `resourceSpans` or `trace`)".into())
        }
        Err(TempoJsonError::Unreadable(e)) => Err(e),
    }
}

/// The spans of a Tempo protobuf trace (`tempopb.Trace` = OTLP `TracesData`, raw ids).
pub fn protobuf_spans(body: &[u8]) -> Result<Option<Vec<SpanLink>>, String> {
    let data = opentelemetry_proto::tonic::trace::v1::TracesData::decode(body)
        .map_err(|e| format!("invalid protobuf trace: {e}"))?;
    data.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| {
            let id = span_id_bytes(&s.span_id);
            let parent = span_id_bytes(&s.parent_span_id);
            match (id, parent) {
                (Some(id), Some(parent)) => Ok(SpanLink { id, parent }),
                _ => Err("a span id is not 8 bytes".to_owned()),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Counts the spans of a Tempo protobuf trace (`tempopb.Trace` = OTLP `TracesData`).
pub fn count_protobuf_spans(body: &[u8]) -> Result<Option<usize>, String> {
    let data = opentelemetry_proto::tonic::trace::v1::TracesData::decode(body)
        .map_err(|e| format!("invalid protobuf trace: {e}"))?;
    Ok(Some(
        data.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum(),
    ))
}

/// A Jaeger query API answer: traces (their spans, or why they cannot be read), or
/// Jaeger's `errors` (code, message).
enum JaegerAnswer {
    Traces(Result<Vec<SpanLink>, String>),
    Errors(Vec<(i64, String)>),
}

/// Reads Jaeger's `structuredResponse`; `None` when the body is not one (not JSON, or no
/// `data`/`errors`).
fn jaeger_answer(body: &[u8]) -> Option<JaegerAnswer> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    if !obj.contains_key("data") || !obj.contains_key("errors") {
        return None;
    }
    if let Some(Value::Array(errors)) = obj.get("errors")
        && !errors.is_empty()
    {
        return Some(JaegerAnswer::Errors(
            errors
                .iter()
                .map(|e| {
                    (
                        e.get("code").and_then(Value::as_i64).unwrap_or(0),
                        e.get("msg")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    )
                })
                .collect(),
        ));
    }
    Some(JaegerAnswer::Traces(match obj.get("data") {
        Some(Value::Array(traces)) => traces
            .iter()
            .flat_map(|t| {
                t.get("spans")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .map(jaeger_span)
            .collect(),
        Some(Value::Null) => Ok(Vec::new()),
        _ => Err("`data` is not an array".to_owned()),
    }))
}

/// One Jaeger span: `spanID` in hex, the parent from the `CHILD_OF` reference (else the
/// first reference, else the legacy `parentSpanID`).
fn jaeger_span(span: &Value) -> Result<SpanLink, String> {
    let hex = |v: Option<&Value>| -> Result<u64, String> {
        match v.and_then(Value::as_str) {
            None | Some("") => Ok(0),
            Some(s) if s.len() <= 16 => {
                u64::from_str_radix(s, 16).map_err(|_| format!("span id `{s}` is not hex"))
            }
            Some(s) => Err(format!("span id `{s}` is longer than 16 hex digits")),
        }
    };
    let refs = span.get("references").and_then(Value::as_array);
    let parent_ref = refs.and_then(|r| {
        r.iter()
            .find(|r| r.get("refType").and_then(Value::as_str) == Some("CHILD_OF"))
            .or_else(|| r.first())
    });
    let parent = match parent_ref {
        Some(r) => hex(r.get("spanID"))?,
        None => hex(span.get("parentSpanID"))?,
    };
    Ok(SpanLink {
        id: hex(span.get("spanID"))?,
        parent,
    })
}

/// Counts the spans of a Jaeger query API answer; `None` when it holds no trace (`data`
/// null, as in Jaeger's not-found).
pub fn count_jaeger_spans(body: &[u8]) -> Result<Option<usize>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    match v.get("data") {
        Some(Value::Array(traces)) => Ok(Some(
            traces
                .iter()
                .map(|t| t.get("spans").and_then(Value::as_array).map_or(0, Vec::len))
                .sum(),
        )),
        Some(Value::Null) | None => Ok(None),
        Some(_) => Err("`data` is not an array".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built from Jaeger's documented `structuredResponse` (no recorded Jaeger fixture
    /// exists): two spans of trace 0af7…, whose id Jaeger renders without leading zeros.
    pub(crate) const JAEGER_FOUND: &str = r#"{"data":[{"traceID":"af7651916cd43dd8448eb211c80319c","spans":[
        {"traceID":"af7651916cd43dd8448eb211c80319c","spanID":"b9c7c989f97918e1","operationName":"GET /api/{*path}","references":[],"startTime":1795266280714000,"duration":18300,"tags":[{"key":"span.kind","type":"string","value":"server"}],"logs":[],"processID":"p1","warnings":null},
        {"traceID":"af7651916cd43dd8448eb211c80319c","spanID":"00c7c989f97918e2","operationName":"simulate_latency","references":[{"refType":"CHILD_OF","traceID":"af7651916cd43dd8448eb211c80319c","spanID":"b9c7c989f97918e1"}],"startTime":1795266280715000,"duration":17000,"tags":[],"logs":[],"processID":"p1","warnings":null}],
        "processes":{"p1":{"serviceName":"echo-server","tags":[]}},"warnings":null}],"total":0,"limit":0,"offset":0,"errors":null}"#;
    pub(crate) const JAEGER_NOT_FOUND: &str = r#"{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":404,"msg":"trace not found"}]}"#;

    #[test]
    fn all_tempo_json_shapes_count_spans() {
        let batches = br#"{"batches":[{"resource":{},"scopeSpans":[{"spans":[{},{},{}]}]}]}"#;
        let otlp = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{}]},{"spans":[{}]}]}]}"#;
        let v2 = br#"{"trace":{"resourceSpans":[{"scopeSpans":[{"spans":[{},{}]}]}]},"status":"COMPLETE"}"#;
        let old = br#"{"batches":[{"instrumentationLibrarySpans":[{"spans":[{}]}]}]}"#;
        assert_eq!(count_tempo_json_spans(batches), Ok(Some(3)));
        assert_eq!(count_tempo_json_spans(otlp), Ok(Some(2)));
        assert_eq!(count_tempo_json_spans(v2), Ok(Some(2)));
        assert_eq!(count_tempo_json_spans(old), Ok(Some(1)));
        assert_eq!(count_tempo_json_spans(b"{}"), Ok(None));
        assert!(count_tempo_json_spans(b"trace not found").is_err());
        assert!(count_tempo_json_spans(br#"{"batches":3}"#).is_err());
    }

    #[test]
    fn a_gateways_json_is_not_a_tempo_trace() {
        assert!(
            count_tempo_json_spans(br#"{"message":"no Route matched with those values"}"#).is_err()
        );
        assert!(count_tempo_json_spans(b"[]").is_err());
        assert_eq!(count_tempo_json_spans(br#"{"trace":{}}"#), Ok(None));
    }

    #[test]
    fn span_ids_read_as_tempo_writes_them_base64_or_hex() {
        let id = |s: &str| json_span_id(Some(&Value::String(s.into())));
        // `APBnqgupArc=` is the recorded server span of T1 (Tempo 2.2.4, gogo-jsonpb).
        assert_eq!(id("APBnqgupArc="), Ok(0x00f0_67aa_0ba9_02b7));
        assert_eq!(id("APBnqgupArc"), Ok(0x00f0_67aa_0ba9_02b7));
        assert_eq!(id("00f067aa0ba902b7"), Ok(0x00f0_67aa_0ba9_02b7));
        assert_eq!(id(""), Ok(0));
        assert_eq!(json_span_id(None), Ok(0));
        assert!(id("not an id!").is_err());
        assert!(
            id("S/kvNXezTaajzpKdDg5HNg==").is_err(),
            "16 bytes is a trace id"
        );
    }

    #[test]
    fn own_spans_are_the_server_span_and_its_descendants() {
        let l = |id, parent| SpanLink { id, parent };
        const P: u64 = 0xabc;
        // Only a sidecar's span (its parent an ingress span): not the echo-server's.
        assert_eq!(own_spans(&[l(5, 9)], P), None);
        assert_eq!(own_spans(&[], P), None);
        // Server span 1 (parent P), a chain 1 -> 2 -> 3 listed out of order, a sidecar.
        let trace = [l(3, 2), l(5, 9), l(2, 1), l(1, P)];
        assert_eq!(
            own_spans(&trace, P),
            Some(OwnSpans {
                own: 3,
                extra: Some(1)
            })
        );
        // No parent known: every span, extra unknown.
        assert_eq!(
            own_spans(&trace, 0),
            Some(OwnSpans {
                own: 4,
                extra: None
            })
        );
        // A cycle and a duplicate span id end, each span counted once.
        let odd = [l(1, P), l(2, 1), l(1, 2), l(2, 1)];
        assert_eq!(
            own_spans(&odd, P),
            Some(OwnSpans {
                own: 4,
                extra: Some(0)
            })
        );
    }

    #[test]
    fn jaeger_answers_count_spans() {
        assert_eq!(count_jaeger_spans(JAEGER_FOUND.as_bytes()), Ok(Some(2)));
        assert_eq!(count_jaeger_spans(JAEGER_NOT_FOUND.as_bytes()), Ok(None));
    }
}
