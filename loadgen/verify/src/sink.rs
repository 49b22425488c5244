//! The embedded OTLP sink: an OTLP receiver on loopback (gRPC and HTTP/protobuf, traces and
//! logs) that remembers, in bounded memory, which trace ids it received, how many spans or
//! log records each, and when it first saw each; it answers the same
//! [`Verifier`] interface as the real backends, so
//! `loadgen run` verifies the full loop with nothing installed.
//!
//! Memory: each trace id is held for a [`Retention`] (the settle timeout plus a margin, so
//! every sample can still be asked about) and never more than its `capacity` per signal:
//! a long run holds `ids/s × retention` ids, about 60 bytes each plus about 20 per span
//! (its id, its parent's, when it arrived) and 12 per log record, and stays flat. Ids
//! dropped to stay within capacity before their retention ended are counted in
//! [`SinkStats`] (a sample whose id was dropped reads as missing).
//! At most [`MAX_HELD_PER_TRACE`] spans (and log records) of one trace id are held; more
//! are counted in [`SinkStats::spans`] but not held.
//!
//! Found means the echo-server's own telemetry, as for the real backends: a trace is
//! found when it holds a span whose parent is [`Sample::parent_span_id`] (the
//! echo-server's server span); its span count is that span and its descendants, the
//! other spans of the trace id are [`Outcome::Found::extra_spans`] (see
//! [`crate::tempo::own_spans`]); `first_seen` is the receive instant of the server span.
//! A log record is the echo-server's when its `trace_id` is the sample's and its
//! `request_id` attribute is the request id loadgen sent. A sample without a parent span
//! id (or request id) falls back to every span (or record) of the trace id.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ricochet_verify::sink::SinkError> {
//! use ricochet_verify::{recent::Retention, sink::Sink};
//! let limits = Retention { capacity: 100_000, retention: std::time::Duration::from_secs(90) };
//! let sink = Sink::start(limits).await?;
//! // point an exporter at sink.http_endpoint() (OTLP/HTTP) or sink.grpc_endpoint()
//! let traces = sink.verifier(ricochet_verify::Signal::Traces);
//! # let _ = traces; sink.shutdown().await; Ok(()) }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::recent::{Recent, Retention};
use crate::tempo::{OwnSpans, SpanLink, own_spans, span_id_bytes};
use crate::{BoxFuture, Check, Outcome, Sample, Signal, TraceId, Verifier};

/// Largest OTLP/HTTP request body accepted.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Starting the sink failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A loopback listener could not be bound.
    #[error("cannot bind the embedded OTLP sink's {what} listener on 127.0.0.1: {source}")]
    Bind {
        /// `gRPC` or `HTTP`.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What the sink received so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Spans received.
    pub spans: u64,
    /// Log records received.
    pub log_records: u64,
    /// Log records without a (valid) trace id, which cannot be verified.
    pub logs_without_trace_id: u64,
    /// Trace ids currently held for traces.
    pub traces_held: usize,
    /// Trace ids currently held for logs.
    pub logs_held: usize,
    /// Trace ids evicted (traces) to stay within capacity.
    pub traces_evicted: u64,
    /// Trace ids evicted (logs).
    pub logs_evicted: u64,
    /// OTLP requests refused, over HTTP or gRPC (bad body, content type, path, method).
    pub rejected_requests: u64,
}

/// Most spans (or log records) held per trace id; a storm trace of the echo-server has at
/// most 10 000.
pub const MAX_HELD_PER_TRACE: usize = 32_768;

/// What arrived for one trace id: each span's link (id, parent) and receive offset, or
/// each log record's request-id key and receive offset.
#[derive(Debug)]
struct Entry<T> {
    first_seen: Instant,
    items: Vec<T>,
    /// When each item arrived, in µs after `first_seen` (saturating).
    after_us: Vec<u32>,
    /// Items beyond [`MAX_HELD_PER_TRACE`], counted but not held.
    not_held: usize,
}

impl<T> Entry<T> {
    fn new(first_seen: Instant) -> Self {
        Self {
            first_seen,
            items: Vec::new(),
            after_us: Vec::new(),
            not_held: 0,
        }
    }

    fn push(&mut self, item: T, now: Instant) {
        if self.items.len() >= MAX_HELD_PER_TRACE {
            self.not_held += 1;
            return;
        }
        let us = now.saturating_duration_since(self.first_seen).as_micros();
        self.items.push(item);
        self.after_us.push(u32::try_from(us).unwrap_or(u32::MAX));
    }

    fn at(&self, i: usize) -> Instant {
        self.first_seen + std::time::Duration::from_micros(u64::from(self.after_us[i]))
    }

    fn len(&self) -> usize {
        self.items.len() + self.not_held
    }
}

/// One signal's ids, and the items (spans or records) received in all.
#[derive(Debug)]
struct Table<T> {
    ids: Recent<Entry<T>>,
    items: u64,
}

impl<T> Table<T> {
    fn new(limits: Retention) -> Self {
        Self {
            ids: Recent::new(limits),
            items: 0,
        }
    }

    fn add(&mut self, id: TraceId, item: T, now: Instant) {
        self.items += 1;
        self.ids.entry(id, now, || Entry::new(now)).push(item, now);
    }
}

/// A log record's request id, as a key: a hash of its lowercase text; `0` for a record
/// without one.
fn request_key(id: &str) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    if id.is_empty() {
        return 0;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.to_ascii_lowercase().hash(&mut h);
    h.finish().max(1)
}

/// The `request_id` attribute the echo-server sets on its log records.
fn record_request_id(rec: &LogRecord) -> &str {
    rec.attributes
        .iter()
        .find(|kv| kv.key == "request_id")
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

/// The shared, bounded record of what arrived.
#[derive(Debug)]
pub struct Store {
    traces: Mutex<Table<SpanLink>>,
    logs: Mutex<Table<u64>>,
    logs_without_trace_id: Mutex<u64>,
    rejected: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Holds trace ids within `limits`, per signal.
    pub fn new(limits: Retention) -> Self {
        Self {
            traces: Mutex::new(Table::new(limits)),
            logs: Mutex::new(Table::new(limits)),
            logs_without_trace_id: Mutex::new(0),
            rejected: Mutex::new(0),
        }
    }

    /// Records an OTLP trace export: each span's trace id, span id and parent.
    pub fn record_traces(&self, req: &ExportTraceServiceRequest) {
        let now = Instant::now();
        let mut t = lock(&self.traces);
        for span in req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            if let Some(id) = TraceId::from_bytes(&span.trace_id).filter(|i| !i.is_zero()) {
                // A malformed span id reads as 0: such a span can be no one's parent.
                let link = SpanLink {
                    id: span_id_bytes(&span.span_id).unwrap_or(0),
                    parent: span_id_bytes(&span.parent_span_id).unwrap_or(0),
                };
                t.add(id, link, now);
            }
        }
    }

    /// Records an OTLP log export (by each record's trace id and `request_id` attribute).
    pub fn record_logs(&self, req: &ExportLogsServiceRequest) {
        let now = Instant::now();
        let mut without = 0u64;
        let mut t = lock(&self.logs);
        for rec in req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
        {
            match TraceId::from_bytes(&rec.trace_id).filter(|i| !i.is_zero()) {
                Some(id) => t.add(id, request_key(record_request_id(rec)), now),
                None => without += 1,
            }
        }
        drop(t);
        *lock(&self.logs_without_trace_id) += without;
    }

    /// Counters and sizes.
    pub fn stats(&self) -> SinkStats {
        let (spans, traces_held, traces_evicted) = {
            let t = lock(&self.traces);
            (t.items, t.ids.len(), t.ids.evicted())
        };
        let (log_records, logs_held, logs_evicted) = {
            let t = lock(&self.logs);
            (t.items, t.ids.len(), t.ids.evicted())
        };
        SinkStats {
            spans,
            log_records,
            logs_without_trace_id: *lock(&self.logs_without_trace_id),
            traces_held,
            logs_held,
            traces_evicted,
            logs_evicted,
            rejected_requests: *lock(&self.rejected),
        }
    }

    /// The echo-server's part of `s`'s trace: when its server span arrived, and how the
    /// trace's spans divide; `None` when no span of the echo-server's arrived.
    fn lookup_trace(&self, s: &Sample) -> Option<(Instant, OwnSpans)> {
        let t = lock(&self.traces);
        let e = t.ids.get(&s.trace_id)?;
        if s.parent_span_id == 0 {
            let own = OwnSpans {
                own: e.len(),
                extra: None,
            };
            return Some((e.first_seen, own));
        }
        let own = own_spans(&e.items, s.parent_span_id)?;
        let first = (0..e.items.len())
            .filter(|&i| e.items[i].parent == s.parent_span_id)
            .map(|i| e.at(i))
            .min()?;
        Some((first, own))
    }

    /// When the echo-server's log record of `s` arrived: a record of its trace id whose
    /// `request_id` is the sample's (any record of the trace id when the sample has none).
    fn lookup_log(&self, s: &Sample) -> Option<Instant> {
        let t = lock(&self.logs);
        let e = t.ids.get(&s.trace_id)?;
        if s.request_id.is_empty() {
            return Some(e.first_seen);
        }
        let key = request_key(&s.request_id);
        (0..e.items.len())
            .filter(|&i| e.items[i] == key)
            .map(|i| e.at(i))
            .min()
    }
}

/// A running sink.
#[derive(Debug)]
pub struct Sink {
    store: Arc<Store>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sink {
    /// Binds gRPC and HTTP listeners on `127.0.0.1:0` and starts receiving.
    pub async fn start(limits: Retention) -> Result<Self, SinkError> {
        let grpc = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| SinkError::Bind {
                what: "gRPC",
                source,
            })?;
        let http = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| SinkError::Bind {
                what: "HTTP",
                source,
            })?;
        let grpc_addr = grpc.local_addr().map_err(|source| SinkError::Bind {
            what: "gRPC",
            source,
        })?;
        let http_addr = http.local_addr().map_err(|source| SinkError::Bind {
            what: "HTTP",
            source,
        })?;
        let store = Arc::new(Store::new(limits));
        let cancel = CancellationToken::new();
        let grpc_task = tokio::spawn(accept_loop(
            grpc,
            store.clone(),
            cancel.clone(),
            Protocol::Grpc,
        ));
        let http_task = tokio::spawn(accept_loop(
            http,
            store.clone(),
            cancel.clone(),
            Protocol::Http,
        ));
        Ok(Self {
            store,
            grpc_addr,
            http_addr,
            cancel,
            tasks: vec![grpc_task, http_task],
        })
    }

    /// `http://127.0.0.1:<port>` of the OTLP/gRPC receiver.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// `http://127.0.0.1:<port>` of the OTLP/HTTP receiver (append `/v1/traces`, `/v1/logs`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The record of what arrived.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Counters and sizes.
    pub fn stats(&self) -> SinkStats {
        self.store.stats()
    }

    /// A verifier answering from this sink for `signal` (traces or logs; metrics always
    /// read missing, as the sink receives no metrics).
    pub fn verifier(&self, signal: Signal) -> SinkVerifier {
        SinkVerifier {
            store: self.store.clone(),
            signal,
        }
    }

    /// Stops both listeners.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Verifies against a [`Sink`]'s record: found (with the receive instant of the
/// echo-server's span or record as `first_seen`, and for traces its span count and the
/// extra spans) or missing; never unknown.
#[derive(Debug, Clone)]
pub struct SinkVerifier {
    store: Arc<Store>,
    signal: Signal,
}

impl Verifier for SinkVerifier {
    fn signal(&self) -> Signal {
        self.signal
    }

    fn name(&self) -> &str {
        "sink"
    }

    fn max_batch(&self) -> usize {
        4096
    }

    fn check<'a>(&'a self, samples: &'a [Sample]) -> BoxFuture<'a, Check> {
        Box::pin(async move {
            let start = Instant::now();
            let outcomes = samples
                .iter()
                .map(|s| {
                    let found = match self.signal {
                        Signal::Traces => self
                            .store
                            .lookup_trace(s)
                            .filter(|(_, own)| own.own > 0)
                            .map(|(at, own)| (at, Some(own.own), own.extra)),
                        Signal::Logs => self.store.lookup_log(s).map(|at| (at, None, None)),
                        Signal::Metrics => None,
                    };
                    match found {
                        Some((first_seen, spans, extra_spans)) => Outcome::Found {
                            first_seen,
                            spans,
                            extra_spans,
                            recorded_at: None,
                        },
                        None => Outcome::Missing,
                    }
                })
                .collect();
            Check {
                outcomes,
                query_durations: vec![start.elapsed()],
            }
        })
    }
}

/// Which OTLP transport a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// OTLP/gRPC: unary `Export` calls over HTTP/2.
    Grpc,
    /// OTLP/HTTP: `POST /v1/traces`, `/v1/logs`, protobuf or JSON.
    Http,
}

async fn accept_loop(
    listener: TcpListener,
    store: Arc<Store>,
    cancel: CancellationToken,
    protocol: Protocol,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                // Transient (EMFILE, aborted handshake): keep accepting.
                Err(_) => continue,
            },
        };
        let store = store.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let store = store.clone();
                async move {
                    Ok::<_, Infallible>(match protocol {
                        Protocol::Grpc => handle_grpc(&store, req).await,
                        Protocol::Http => handle_http(&store, req).await,
                    })
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                () = cancel.cancelled() => {}
                // A client hanging up mid-request is its own business.
                _ = conn => {}
            }
        });
    }
}

/// A reply body: at most one data frame, then trailers (gRPC's status) if any.
#[derive(Debug, Default)]
struct Reply {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl hyper::body::Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.data.take() {
            Some(d) => Some(Frame::data(d)),
            None => self.trailers.take().map(Frame::trailers),
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Reply> {
    let mut r = Response::new(Reply {
        data: Some(body.into()),
        trailers: None,
    });
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}

/// The gRPC paths of the two `Export` methods.
const GRPC_TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const GRPC_LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// gRPC status codes the sink answers with.
const GRPC_OK: u8 = 0;
const GRPC_INVALID_ARGUMENT: u8 = 3;
const GRPC_UNIMPLEMENTED: u8 = 12;

/// A gRPC reply: `message` framed (uncompressed) when the call succeeded, and the status
/// in the trailers (a trailers-only reply for an error).
fn grpc_reply(code: u8, message: &str, response: Option<Vec<u8>>) -> Response<Reply> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if !message.is_empty()
        && let Ok(v) = HeaderValue::from_str(message)
    {
        trailers.insert("grpc-message", v);
    }
    let data = response.map(|m| {
        let mut framed = BytesMut::with_capacity(5 + m.len());
        framed.put_u8(0);
        framed.put_u32(u32::try_from(m.len()).unwrap_or(u32::MAX));
        framed.put_slice(&m);
        framed.freeze()
    });
    let mut r = match data {
        Some(d) => Response::new(Reply {
            data: Some(d),
            trailers: Some(trailers),
        }),
        None => {
            // Trailers-only: the status travels in the headers.
            let mut r = Response::new(Reply::default());
            r.headers_mut().extend(trailers);
            r
        }
    };
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/grpc+proto"),
    );
    r
}

/// One unary OTLP/gRPC `Export` call: the length-prefixed message decoded and recorded.
async fn handle_grpc(store: &Store, req: Request<Incoming>) -> Response<Reply> {
    let reject = |code, msg: String| {
        *lock(&store.rejected) += 1;
        grpc_reply(code, &msg, None)
    };
    let path = req.uri().path().to_owned();
    let traces = match path.as_str() {
        GRPC_TRACES => true,
        GRPC_LOGS => false,
        _ => {
            return reject(
                GRPC_UNIMPLEMENTED,
                format!(
                    "no OTLP service method {path}; the sink takes TraceService/Export and LogsService/Export"
                ),
            );
        }
    };
    let body = match Limited::new(req.into_body(), MAX_BODY + 5).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reject(GRPC_INVALID_ARGUMENT, format!("cannot read the body: {e}")),
    };
    let message = match grpc_message(&body) {
        Ok(message) => message,
        Err((code, why)) => return reject(code, why),
    };
    match decode_export(store, traces, false, message) {
        Ok(()) if traces => grpc_reply(
            GRPC_OK,
            "",
            Some(
                ExportTraceServiceResponse {
                    partial_success: None,
                }
                .encode_to_vec(),
            ),
        ),
        Ok(()) => grpc_reply(
            GRPC_OK,
            "",
            Some(
                ExportLogsServiceResponse {
                    partial_success: None,
                }
                .encode_to_vec(),
            ),
        ),
        Err(e) => reject(
            GRPC_INVALID_ARGUMENT,
            format!("the message is not an OTLP export request: {e}"),
        ),
    }
}

/// The message of a unary gRPC request body (flag `0`, a 4-byte big-endian length, the
/// message), or the gRPC status code and sentence to refuse the body with.
pub(crate) fn grpc_message(body: &Bytes) -> Result<Bytes, (u8, String)> {
    match body.as_ref() {
        [0, len @ ..] if len.len() >= 4 => {
            let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            match 5usize.checked_add(n) {
                Some(end) if end == body.len() => Ok(body.slice(5..end)),
                _ => Err((
                    GRPC_INVALID_ARGUMENT,
                    format!(
                        "the message is {} bytes, its prefix says {n}",
                        body.len().saturating_sub(5)
                    ),
                )),
            }
        }
        [1, ..] => Err((
            GRPC_UNIMPLEMENTED,
            "compressed messages are not supported; send them uncompressed".to_owned(),
        )),
        _ => Err((
            GRPC_INVALID_ARGUMENT,
            "not a gRPC length-prefixed message".to_owned(),
        )),
    }
}

/// Decodes an OTLP export request of traces or logs, protobuf or JSON, into `store`.
pub(crate) fn decode_export(
    store: &Store,
    traces: bool,
    json: bool,
    body: Bytes,
) -> Result<(), String> {
    match (traces, json) {
        (true, false) => ExportTraceServiceRequest::decode(body)
            .map(|r| store.record_traces(&r))
            .map_err(|e| e.to_string()),
        (true, true) => serde_json::from_slice::<ExportTraceServiceRequest>(&body)
            .map(|r| store.record_traces(&r))
            .map_err(|e| e.to_string()),
        (false, false) => ExportLogsServiceRequest::decode(body)
            .map(|r| store.record_logs(&r))
            .map_err(|e| e.to_string()),
        (false, true) => serde_json::from_slice::<ExportLogsServiceRequest>(&body)
            .map(|r| store.record_logs(&r))
            .map_err(|e| e.to_string()),
    }
}

async fn handle_http(store: &Store, req: Request<Incoming>) -> Response<Reply> {
    let reject = |status, msg: String| {
        *lock(&store.rejected) += 1;
        reply(status, "text/plain; charset=utf-8", msg)
    };
    let path = req.uri().path().to_owned();
    let traces = match path.as_str() {
        "/v1/traces" => true,
        "/v1/logs" => false,
        _ => {
            return reject(
                StatusCode::NOT_FOUND,
                format!("no OTLP endpoint at {path}; use /v1/traces or /v1/logs"),
            );
        }
    };
    if req.method() != Method::POST {
        return reject(StatusCode::METHOD_NOT_ALLOWED, format!("{path} takes POST"));
    }
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let json = ct.starts_with("application/json");
    if !json && !ct.starts_with("application/x-protobuf") && !ct.starts_with("application/protobuf")
    {
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type `{ct}` is not OTLP; send application/x-protobuf or application/json"
            ),
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return reject(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            );
        }
    };
    if let Err(e) = decode_export(store, traces, json, body) {
        return reject(
            StatusCode::BAD_REQUEST,
            format!("the body is not an OTLP export request: {e}"),
        );
    }
    match (traces, json) {
        (_, true) => reply(StatusCode::OK, "application/json", "{}"),
        (true, false) => reply(
            StatusCode::OK,
            "application/x-protobuf",
            ExportTraceServiceResponse {
                partial_success: None,
            }
            .encode_to_vec(),
        ),
        (false, false) => reply(
            StatusCode::OK,
            "application/x-protobuf",
            ExportLogsServiceResponse {
                partial_success: None,
            }
            .encode_to_vec(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    const P: u64 = 0x00f0_67aa_0ba9_02b7;

    fn link(id: u64, parent: u64) -> SpanLink {
        SpanLink { id, parent }
    }

    fn export(spans: &[(u64, u64)]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: spans
                        .iter()
                        .map(|&(id, parent)| Span {
                            trace_id: vec![7; 16],
                            span_id: id.to_be_bytes().to_vec(),
                            parent_span_id: if parent == 0 {
                                Vec::new()
                            } else {
                                parent.to_be_bytes().to_vec()
                            },
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn sample(parent: u64, request_id: &str) -> Sample {
        Sample {
            parent_span_id: parent,
            request_id: request_id.into(),
            ..Sample::now(TraceId([7; 16]))
        }
    }

    fn limits() -> Retention {
        Retention {
            capacity: 100,
            retention: std::time::Duration::from_secs(60),
        }
    }

    #[test]
    fn the_table_evicts_the_oldest_id_and_counts_it() {
        let mut t = Table::new(Retention {
            capacity: 2,
            retention: std::time::Duration::from_secs(60),
        });
        let now = Instant::now();
        t.add(TraceId([1; 16]), link(1, 0), now);
        t.add(TraceId([2; 16]), link(2, 0), now);
        t.add(TraceId([1; 16]), link(3, 1), now);
        t.add(TraceId([3; 16]), link(4, 0), now);
        assert_eq!(t.ids.evicted(), 1);
        assert!(t.ids.get(&TraceId([1; 16])).is_none());
        assert_eq!(t.ids.get(&TraceId([2; 16])).map(Entry::len), Some(1));
        assert_eq!(t.items, 4);
    }

    #[test]
    fn a_trace_is_first_seen_when_the_echo_servers_span_arrives_not_a_sidecars() {
        let store = Store::new(limits());
        // A sidecar's span of the same trace arrives first; the echo-server's later.
        store.record_traces(&export(&[(0x51de, 0x1)]));
        assert_eq!(store.lookup_trace(&sample(P, "")), None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let before = Instant::now();
        store.record_traces(&export(&[(0xe1, P), (0xc1, 0xe1)]));
        let (first_seen, own) = store.lookup_trace(&sample(P, "")).unwrap();
        assert!(first_seen >= before, "first seen at the sidecar's span");
        assert_eq!(
            own,
            OwnSpans {
                own: 2,
                extra: Some(1)
            }
        );
        // Without a parent span id: every span, first seen with the first of them.
        let (any, all) = store.lookup_trace(&sample(0, "")).unwrap();
        assert!(any < before);
        assert_eq!(
            all,
            OwnSpans {
                own: 3,
                extra: None
            }
        );
    }

    #[test]
    fn a_log_record_is_the_echo_servers_by_its_request_id_attribute() {
        let rec = |request_id: Option<&str>| LogRecord {
            trace_id: vec![7; 16],
            attributes: request_id
                .map(|r| KeyValue {
                    key: "request_id".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(r.into())),
                    }),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let store = Store::new(limits());
        let logs = |records| ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        // Another service's record of the same trace: no request id, or another one.
        store.record_logs(&logs(vec![rec(None), rec(Some("ffff"))]));
        let mine = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(store.lookup_log(&sample(P, mine)), None);
        assert!(
            store.lookup_log(&sample(P, "")).is_some(),
            "no request id: any record"
        );
        store.record_logs(&logs(vec![rec(Some(mine))]));
        assert!(store.lookup_log(&sample(P, mine)).is_some());
    }
}
