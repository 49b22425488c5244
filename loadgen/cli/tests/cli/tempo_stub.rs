//! A stub Tempo and OTLP collector on loopback, a transparent forwarder in front of
//! a real echo-server, and the rig that wires them for `loadgen run` (see `tempo_cli.rs`).
//!
//! The stub receives the echo-server's real OTLP exports (OTLP/HTTP `POST /v1/traces`,
//! `/v1/logs`, or OTLP/gRPC over HTTP/2 on the same port), remembers when it *accepted* each export carrying a trace's spans, and
//! answers Tempo 2.2.4's `GET /api/traces/{id}`: the recorded `batches` JSON
//! (`loadgen/verify/tests/fixtures/backends/tempo-2.2.4-trace-by-id.json`: ids base64,
//! kinds as enum names, int64 as strings) once `accepted + queryable_after` has passed,
//! Tempo's own not-found before (404, `text/plain; charset=utf-8`, `trace not found`, as
//! `tempo-2.2.4-trace-not-found.txt.meta.json` recorded). It can refuse every other
//! distinct trace export (the same body again, i.e. the exporter's retry, gets the same
//! answer, so a refused export stays refused after the retries).
//!
//! The OTLP protobuf is read by a small wire-format reader below (this package does not
//! link opentelemetry-proto); `the_stub_renders_a_pushed_export_as_tempo_2_2_4_did` checks
//! it against what the real Tempo 2.2.4 answered for the recorded push.
//!
//! The forwarder exists because the echo-server keeps its export ledger per run, and the
//! run id is loadgen's own (random, not reported): it passes every request through to the
//! echo-server unchanged and notes the `x-ricochet-run` header and when the last request
//! of the run arrived.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use echo_server::contract::{MAX_FATE_IDS, RUN_HEADER, TraceFate, TraceFates};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// How the stub refuses every other distinct trace export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `429 Too Many Requests`: retryable, so the exporter retries before giving up.
    TooManyRequests,
    /// `500 Internal Server Error`: not retryable, refused at once.
    InternalError,
    /// OTLP/gRPC `RESOURCE_EXHAUSTED` (8), the echo-server then exporting over gRPC: not
    /// retried without `RetryInfo`, refused at once.
    ResourceExhausted,
}

impl Refusal {
    /// Whether the echo-server must export over gRPC for this refusal.
    pub fn grpc(self) -> bool {
        self == Self::ResourceExhausted
    }
}

/// What the stub answered to one trace export.
enum Taken {
    Accepted,
    Refused(Refusal),
    Unreadable(String),
}

const GRPC_TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const GRPC_LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// How the stub behaves.
#[derive(Debug, Clone, Copy)]
pub struct StubConfig {
    /// How long after the stub accepted an export its spans are queryable; `None`: never
    /// (every look-up is Tempo's not-found).
    pub queryable_after: Option<Duration>,
    /// How long each trace look-up takes to be answered.
    pub lookup_delay: Duration,
    /// Refuse every other distinct trace export so.
    pub refuse: Option<Refusal>,
}

/// One export's spans of one trace under one resource and scope, as Tempo answers them.
#[derive(Debug)]
struct Held {
    accepted_at: Instant,
    resource: Value,
    scope: Value,
    spans: Vec<Value>,
}

/// What the stub saw and did.
#[derive(Debug, Default)]
pub struct Record {
    traces: HashMap<String, Vec<Held>>,
    /// Per distinct export body (by hash): refused or not.
    decisions: HashMap<u64, bool>,
    /// Trace export requests answered with a refusal (retries included).
    pub refusals: u64,
    /// Distinct trace exports refused.
    pub refused_exports: u64,
    /// Trace exports accepted.
    pub accepted_exports: u64,
    /// Log exports accepted.
    pub log_exports: u64,
    /// Trace exports that came over OTLP/gRPC.
    pub grpc_exports: u64,
    /// Trace ids of the spans in refused exports.
    pub refused_ids: BTreeSet<String>,
    /// Trace ids of the spans in accepted exports.
    pub accepted_ids: BTreeSet<String>,
    /// Trace look-ups.
    pub lookups: u64,
    /// Trace look-ups answered with a trace.
    pub found_answers: u64,
    /// Exports or look-ups the stub could not read.
    pub errors: Vec<String>,
}

/// The stub Tempo + OTLP collector.
pub struct Stub {
    addr: SocketAddr,
    record: Arc<Mutex<Record>>,
}

impl Stub {
    /// Starts serving on a free loopback port.
    pub async fn start(config: StubConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let record = Arc::new(Mutex::new(Record::default()));
        let shared = record.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let record = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let record = record.clone();
                        async move { Ok::<_, Infallible>(answer(config, &record, req).await) }
                    });
                    // HTTP/1.1 for Tempo's API and OTLP/HTTP, HTTP/2 for OTLP/gRPC.
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, record }
    }

    /// `http://127.0.0.1:port`: the OTLP endpoint (HTTP and gRPC) and Tempo's URL alike.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it saw so far.
    pub fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn lock(r: &Mutex<Record>) -> std::sync::MutexGuard<'_, Record> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", http::HeaderValue::from_static(content_type));
    r
}

async fn answer(
    config: StubConfig,
    record: &Mutex<Record>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    match (method, path.as_str()) {
        (Method::POST, "/v1/traces") => {
            let Some(body) = read_body(record, req).await else {
                return text(StatusCode::BAD_REQUEST, "text/plain", "unreadable body");
            };
            match take_traces(config, record, &body) {
                Taken::Accepted => text(StatusCode::OK, "application/x-protobuf", Bytes::new()),
                Taken::Refused(r) => {
                    let status = match r {
                        Refusal::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
                        _ => StatusCode::TOO_MANY_REQUESTS,
                    };
                    text(status, "text/plain; charset=utf-8", "refused by the stub\n")
                }
                Taken::Unreadable(e) => text(StatusCode::BAD_REQUEST, "text/plain", e),
            }
        }
        (Method::POST, GRPC_TRACES) => {
            let Some(body) = read_body(record, req).await else {
                return grpc_status(13, "unreadable body");
            };
            lock(record).grpc_exports += 1;
            // One uncompressed length-prefixed message.
            if body.len() < 5 || body[0] != 0 {
                lock(record)
                    .errors
                    .push("a compressed or truncated gRPC message".into());
                return grpc_status(3, "expected one uncompressed message");
            }
            match take_traces(config, record, &body.slice(5..)) {
                Taken::Accepted => grpc_status(0, ""),
                Taken::Refused(_) => grpc_status(8, "refused by the stub"),
                Taken::Unreadable(e) => grpc_status(3, &e),
            }
        }
        (Method::POST, "/v1/logs") => {
            let _ = read_body(record, req).await;
            lock(record).log_exports += 1;
            text(StatusCode::OK, "application/x-protobuf", Bytes::new())
        }
        (Method::POST, GRPC_LOGS) => {
            let _ = read_body(record, req).await;
            lock(record).log_exports += 1;
            grpc_status(0, "")
        }
        (Method::GET, "/api/echo") => text(StatusCode::OK, "text/plain; charset=utf-8", "echo"),
        (Method::GET, p) if p.starts_with("/api/traces/") => {
            tokio::time::sleep(config.lookup_delay).await;
            lookup(config, record, &p["/api/traces/".len()..])
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found\n",
        ),
    }
}

/// A trailers-only gRPC answer: HTTP 200 with the status in its headers.
fn grpc_status(code: u32, message: &str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::OK, "application/grpc", Bytes::new());
    let h = r.headers_mut();
    h.insert("grpc-status", code.into());
    if !message.is_empty() {
        h.insert("grpc-message", message.replace(' ', "%20").parse().unwrap());
    }
    r
}

async fn read_body(record: &Mutex<Record>, req: Request<Incoming>) -> Option<Bytes> {
    match Limited::new(req.into_body(), 16 << 20).collect().await {
        Ok(b) => Some(b.to_bytes()),
        Err(e) => {
            lock(record).errors.push(format!("export body: {e}"));
            None
        }
    }
}

/// Accepts or refuses one `ExportTraceServiceRequest`, recording its spans when accepted.
fn take_traces(config: StubConfig, record: &Mutex<Record>, body: &Bytes) -> Taken {
    let batches = match decode_export(body) {
        Ok(b) => b,
        Err(e) => {
            lock(record).errors.push(format!("trace export: {e}"));
            return Taken::Unreadable(e);
        }
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    let key = hasher.finish();
    let mut r = lock(record);
    let distinct = r.decisions.len();
    let new = !r.decisions.contains_key(&key);
    let refuse = *r
        .decisions
        .entry(key)
        .or_insert(config.refuse.is_some() && distinct % 2 == 1);
    let ids = batches
        .iter()
        .flat_map(|b| &b.scopes)
        .flat_map(|s| &s.spans)
        .map(|(id, _)| id.clone());
    if let (true, Some(how)) = (refuse, config.refuse) {
        r.refusals += 1;
        if new {
            r.refused_exports += 1;
        }
        r.refused_ids.extend(ids);
        return Taken::Refused(how);
    }
    r.accepted_exports += 1;
    r.accepted_ids.extend(ids);
    let accepted_at = Instant::now();
    for b in batches {
        for s in b.scopes {
            let mut by_trace: HashMap<String, Vec<Value>> = HashMap::new();
            for (id, span) in s.spans {
                by_trace.entry(id).or_default().push(span);
            }
            for (id, spans) in by_trace {
                r.traces.entry(id).or_default().push(Held {
                    accepted_at,
                    resource: b.resource.clone(),
                    scope: s.scope.clone(),
                    spans,
                });
            }
        }
    }
    Taken::Accepted
}

fn lookup(config: StubConfig, record: &Mutex<Record>, id: &str) -> Response<Full<Bytes>> {
    let not_found = || {
        text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "trace not found",
        )
    };
    let id = id.to_ascii_lowercase();
    let mut r = lock(record);
    r.lookups += 1;
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        r.errors
            .push(format!("look-up of a malformed trace id {id:?}"));
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "malformed trace id",
        );
    }
    let Some(after) = config.queryable_after else {
        return not_found();
    };
    let now = Instant::now();
    let batches: Vec<Value> = r
        .traces
        .get(&id)
        .into_iter()
        .flatten()
        .filter(|h| h.accepted_at + after <= now)
        .map(|h| {
            json!({
                "resource": h.resource,
                "scopeSpans": [{"scope": h.scope, "spans": h.spans}],
            })
        })
        .collect();
    if batches.is_empty() {
        return not_found();
    }
    r.found_answers += 1;
    let body = json!({ "batches": batches }).to_string();
    text(StatusCode::OK, "application/json", body)
}

// ---- OTLP protobuf, read by hand (field numbers from opentelemetry-proto) ----

/// One `ResourceSpans`: its resource as Tempo renders it and its scopes.
pub struct DecodedBatch {
    resource: Value,
    scopes: Vec<DecodedScope>,
}

/// One `ScopeSpans`: the scope as Tempo renders it and its spans with their trace ids.
pub struct DecodedScope {
    scope: Value,
    spans: Vec<(String, Value)>,
}

enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

/// The fields of one message, in order.
fn fields(mut buf: &[u8]) -> Result<Vec<(u32, Field<'_>)>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (number, wire) = (u32::try_from(key >> 3).map_err(|e| e.to_string())?, key & 7);
        let field = match wire {
            0 => Field::Varint(varint(&mut buf)?),
            1 => Field::Fixed64(u64::from_le_bytes(take(&mut buf, 8)?.try_into().unwrap())),
            2 => {
                let len = usize::try_from(varint(&mut buf)?).map_err(|e| e.to_string())?;
                Field::Bytes(take(&mut buf, len)?)
            }
            5 => {
                take(&mut buf, 4)?;
                Field::Fixed32
            }
            w => return Err(format!("field {number}: unsupported wire type {w}")),
        };
        out.push((number, field));
    }
    Ok(out)
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if buf.len() < n {
        return Err(format!("truncated: {n} bytes wanted, {} left", buf.len()));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|e| e.to_string())
}

/// An `ExportTraceServiceRequest`.
pub fn decode_export(body: &[u8]) -> Result<Vec<DecodedBatch>, String> {
    let mut out = Vec::new();
    for (n, f) in fields(body)? {
        if let (1, Field::Bytes(rs)) = (n, f) {
            out.push(resource_spans(rs)?);
        }
    }
    Ok(out)
}

fn resource_spans(buf: &[u8]) -> Result<DecodedBatch, String> {
    let mut resource = json!({});
    let mut scopes = Vec::new();
    for (n, f) in fields(buf)? {
        match (n, f) {
            (1, Field::Bytes(r)) => {
                let mut attributes = Vec::new();
                for (n, f) in fields(r)? {
                    if let (1, Field::Bytes(kv)) = (n, f) {
                        attributes.push(key_value(kv)?);
                    }
                }
                resource = json!({ "attributes": attributes });
            }
            (2, Field::Bytes(ss)) => scopes.push(scope_spans(ss)?),
            _ => {}
        }
    }
    Ok(DecodedBatch { resource, scopes })
}

fn scope_spans(buf: &[u8]) -> Result<DecodedScope, String> {
    let mut scope = json!({});
    let mut spans = Vec::new();
    for (n, f) in fields(buf)? {
        match (n, f) {
            (1, Field::Bytes(s)) => {
                let mut m = serde_json::Map::new();
                for (n, f) in fields(s)? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => {
                            m.insert("name".into(), string(b)?.into());
                        }
                        (2, Field::Bytes(b)) => {
                            m.insert("version".into(), string(b)?.into());
                        }
                        _ => {}
                    }
                }
                scope = Value::Object(m);
            }
            (2, Field::Bytes(s)) => spans.push(span(s)?),
            _ => {}
        }
    }
    Ok(DecodedScope { scope, spans })
}

const KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];

/// One span as gogo-jsonpb renders it in Tempo 2.x, with its trace id in hex.
fn span(buf: &[u8]) -> Result<(String, Value), String> {
    let mut m = serde_json::Map::new();
    let mut trace = String::new();
    let mut attributes = Vec::new();
    let mut status = json!({});
    for (n, f) in fields(buf)? {
        match (n, f) {
            (1, Field::Bytes(b)) => {
                if b.len() != 16 {
                    return Err(format!("a trace id of {} bytes", b.len()));
                }
                trace = b.iter().map(|x| format!("{x:02x}")).collect();
                m.insert("traceId".into(), base64(b).into());
            }
            (2, Field::Bytes(b)) => {
                m.insert("spanId".into(), base64(b).into());
            }
            (3, Field::Bytes(b)) if !b.is_empty() => {
                m.insert("traceState".into(), string(b)?.into());
            }
            (4, Field::Bytes(b)) if !b.is_empty() => {
                m.insert("parentSpanId".into(), base64(b).into());
            }
            (5, Field::Bytes(b)) => {
                m.insert("name".into(), string(b)?.into());
            }
            (6, Field::Varint(k)) if k != 0 => {
                let kind = KINDS.get(k as usize).ok_or(format!("span kind {k}"))?;
                m.insert("kind".into(), (*kind).into());
            }
            (7, Field::Fixed64(t)) => {
                m.insert("startTimeUnixNano".into(), t.to_string().into());
            }
            (8, Field::Fixed64(t)) => {
                m.insert("endTimeUnixNano".into(), t.to_string().into());
            }
            (9, Field::Bytes(kv)) => attributes.push(key_value(kv)?),
            (15, Field::Bytes(s)) => {
                let mut st = serde_json::Map::new();
                for (n, f) in fields(s)? {
                    match (n, f) {
                        (2, Field::Bytes(b)) if !b.is_empty() => {
                            st.insert("message".into(), string(b)?.into());
                        }
                        (3, Field::Varint(c)) if c != 0 => {
                            let code = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]
                                .get(c as usize)
                                .ok_or(format!("status code {c}"))?;
                            st.insert("code".into(), (*code).into());
                        }
                        _ => {}
                    }
                }
                status = Value::Object(st);
            }
            _ => {}
        }
    }
    if trace.is_empty() {
        return Err("a span without a trace id".into());
    }
    if !attributes.is_empty() {
        m.insert("attributes".into(), attributes.into());
    }
    m.insert("status".into(), status);
    Ok((trace, Value::Object(m)))
}

fn key_value(buf: &[u8]) -> Result<Value, String> {
    let mut key = String::new();
    let mut value = json!({});
    for (n, f) in fields(buf)? {
        match (n, f) {
            (1, Field::Bytes(b)) => key = string(b)?,
            (2, Field::Bytes(b)) => value = any_value(b)?,
            _ => {}
        }
    }
    Ok(json!({ "key": key, "value": value }))
}

fn any_value(buf: &[u8]) -> Result<Value, String> {
    let mut out = json!({});
    for (n, f) in fields(buf)? {
        out = match (n, f) {
            (1, Field::Bytes(b)) => json!({ "stringValue": string(b)? }),
            (2, Field::Varint(v)) => json!({ "boolValue": v != 0 }),
            (3, Field::Varint(v)) => json!({ "intValue": (v as i64).to_string() }),
            (4, Field::Fixed64(v)) => json!({ "doubleValue": f64::from_bits(v) }),
            (5, Field::Bytes(b)) => {
                let mut values = Vec::new();
                for (n, f) in fields(b)? {
                    if let (1, Field::Bytes(v)) = (n, f) {
                        values.push(any_value(v)?);
                    }
                }
                json!({ "arrayValue": { "values": values } })
            }
            (6, Field::Bytes(b)) => {
                let mut values = Vec::new();
                for (n, f) in fields(b)? {
                    if let (1, Field::Bytes(kv)) = (n, f) {
                        values.push(key_value(kv)?);
                    }
                }
                json!({ "kvlistValue": { "values": values } })
            }
            (7, Field::Bytes(b)) => json!({ "bytesValue": base64(b) }),
            _ => continue,
        };
    }
    Ok(out)
}

/// Standard base64 with padding, as gogo-jsonpb writes bytes.
fn base64(b: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, x)| n | (u32::from(*x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---- the forwarder in front of the echo-server ----

/// What the forwarder noted.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// The run id loadgen's requests named.
    pub run: Option<String>,
    /// Requests of the run.
    pub requests: u64,
    /// When the last request of the run arrived.
    pub last_request: Option<Instant>,
}

/// Passes every request through to `upstream` unchanged; notes the run.
pub struct Forwarder {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Forwarder {
    /// Starts forwarding to `upstream` from a free loopback port.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build(connector);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (seen, client) = (shared.clone(), client.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                        if let Some(run) = req.headers().get(RUN_HEADER) {
                            let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                            s.run = Some(String::from_utf8_lossy(run.as_bytes()).into_owned());
                            s.requests += 1;
                            s.last_request = Some(Instant::now());
                        }
                        let pq = req
                            .uri()
                            .path_and_query()
                            .map_or("/", |p| p.as_str())
                            .to_owned();
                        *req.uri_mut() = format!("http://{upstream}{pq}").parse().unwrap();
                        let client = client.clone();
                        async move { client.request(req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it noted so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

// ---- the rig ----

/// A stub, a real echo-server exporting OTLP to it, and the forwarder in front.
pub struct Rig {
    /// The stub Tempo + collector.
    pub stub: Stub,
    /// The forwarder loadgen targets.
    pub forwarder: Forwarder,
    /// The echo-server.
    pub server: echo_server::Server,
}

impl Rig {
    /// Starts the three; the echo-server exports every `export_interval`, over OTLP/gRPC
    /// when the stub refuses as gRPC does, else over OTLP/HTTP.
    pub async fn start(config: StubConfig, export_interval: Duration) -> Self {
        use echo_server::config::{OtlpConfig, OtlpProtocol};
        let stub = Stub::start(config).await;
        let mut c = echo_server::Config::default();
        c.telemetry.otlp = Some(OtlpConfig {
            endpoint: stub.url(),
            protocol: if config.refuse.is_some_and(Refusal::grpc) {
                OtlpProtocol::Grpc
            } else {
                OtlpProtocol::HttpProtobuf
            },
        });
        c.telemetry.export_interval = export_interval;
        let listener = echo_server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let server = echo_server::start(c, listener).await.unwrap();
        let forwarder = Forwarder::start(server.local_addr()).await;
        Self {
            stub,
            forwarder,
            server,
        }
    }

    /// The echo-server's export ledger for `ids` under the run loadgen named.
    pub async fn fates(&self, ids: &[String]) -> Vec<TraceFate> {
        let run = self.forwarder.seen().run.expect("loadgen named its run");
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        for chunk in ids.chunks(MAX_FATE_IDS) {
            let url = format!(
                "http://{}/runs/{run}/traces?ids={}",
                self.server.local_addr(),
                chunk.join(",")
            );
            let body = http.get(url).send().await.unwrap().text().await.unwrap();
            let fates: TraceFates = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("not a ledger answer ({e}): {body}"));
            out.extend(fates.fates);
        }
        out
    }

    /// The echo-server's run account (`GET /runs/{run}`), as JSON.
    pub async fn account(&self) -> Value {
        let run = self.forwarder.seen().run.expect("loadgen named its run");
        let url = format!("http://{}/runs/{run}", self.server.local_addr());
        let body = reqwest::get(url).await.unwrap().text().await.unwrap();
        serde_json::from_str(&body).unwrap()
    }
}

/// One `loadgen run`: its exit code, summary.json, stderr and when the process ended.
pub struct Ran {
    /// Exit code.
    pub code: Option<i32>,
    /// summary.json, as JSON (read so, not as the model type, so that fields being added
    /// to it are seen as soon as they are written).
    pub summary: Value,
    /// stderr.
    pub stderr: String,
    /// When the process was started.
    pub spawned: Instant,
    /// When the process had exited.
    pub exited: Instant,
}

/// Runs `loadgen run` on the scenario `yaml` in `dir`.
pub async fn loadgen_run(dir: &Path, yaml: &str) -> Ran {
    let scenario = dir.join("scenario.yaml");
    std::fs::write(&scenario, yaml).unwrap();
    let out = dir.join("out");
    let spawned = Instant::now();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let exited = Instant::now();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let text = std::fs::read_to_string(out.join("summary.json"))
        .unwrap_or_else(|e| panic!("summary.json not written ({e}); stderr: {stderr}"));
    Ran {
        code: output.status.code(),
        summary: serde_json::from_str(&text).unwrap(),
        stderr,
        spawned,
        exited,
    }
}

/// The stub's rendering of the recorded push is what the real Tempo 2.2.4 answered for it
/// (attribute order aside: Tempo keeps the resource's attributes in its own order).
#[test]
fn the_stub_renders_a_pushed_export_as_tempo_2_2_4_did() {
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../verify/tests/fixtures/backends/"
    );
    let pushed = std::fs::read(format!("{fixtures}pushed-otlp-trace-4bf92f35.pb")).unwrap();
    let tempo: Value = serde_json::from_slice(
        &std::fs::read(format!("{fixtures}tempo-2.2.4-trace-by-id.json")).unwrap(),
    )
    .unwrap();
    let batches = decode_export(&pushed).unwrap();
    let rendered: Vec<Value> = batches
        .into_iter()
        .map(|b| {
            let scopes: Vec<Value> = b
                .scopes
                .into_iter()
                .map(|s| {
                    assert!(
                        s.spans
                            .iter()
                            .all(|(id, _)| id == "4bf92f3577b34da6a3ce929d0e0e4736")
                    );
                    let spans: Vec<Value> = s.spans.into_iter().map(|(_, v)| v).collect();
                    json!({"scope": s.scope, "spans": spans})
                })
                .collect();
            json!({"resource": b.resource, "scopeSpans": scopes})
        })
        .collect();
    let sorted = |mut v: Value| {
        if let Some(a) = v["batches"][0]["resource"]["attributes"].as_array_mut() {
            a.sort_by(|x, y| x["key"].as_str().cmp(&y["key"].as_str()));
        }
        v
    };
    assert_eq!(sorted(json!({ "batches": rendered })), sorted(tempo));
    assert_eq!(base64(b"\x00\xf0\x67\xaa\x0b\xa9\x02\xb7"), "APBnqgupArc=");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"a"), "YQ==");
}
