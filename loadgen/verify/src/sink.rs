//! The embedded OTLP sink: an OTLP receiver on loopback (gRPC and HTTP/protobuf, traces and
//! logs) that remembers, in bounded memory, which trace ids it received, how many spans or
//! log records each, and when it first saw each; it answers the same
//! [`Verifier`] interface as the real backends, so
//! `loadgen run` verifies the full loop with nothing installed.
//!
//! Memory: each trace id is held for a [`Retention`] (the settle timeout plus a margin, so
//! every sample can still be asked about) and never more than its `capacity` per signal:
//! a long run holds `ids/s × retention` ids, about 60 bytes each, and stays flat. Ids
//! dropped to stay within capacity before their retention ended are counted in
//! [`SinkStats`] (a sample whose id was dropped reads as missing).
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

use std::collections::HashMap;
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
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::recent::{Recent, Retention};
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

#[derive(Debug, Clone, Copy)]
struct Entry {
    count: usize,
    first_seen: Instant,
}

/// One signal's ids, and the items (spans or records) received in all.
#[derive(Debug)]
struct Table {
    ids: Recent<Entry>,
    items: u64,
}

impl Table {
    fn new(limits: Retention) -> Self {
        Self {
            ids: Recent::new(limits),
            items: 0,
        }
    }

    fn add(&mut self, id: TraceId, n: usize, now: Instant) {
        self.items += n as u64;
        self.ids
            .entry(id, now, || Entry {
                count: 0,
                first_seen: now,
            })
            .count += n;
    }
}

/// The shared, bounded record of what arrived.
#[derive(Debug)]
pub struct Store {
    traces: Mutex<Table>,
    logs: Mutex<Table>,
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

    /// Records an OTLP trace export.
    pub fn record_traces(&self, req: &ExportTraceServiceRequest) {
        let now = Instant::now();
        let mut per: HashMap<TraceId, usize> = HashMap::new();
        for span in req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            if let Some(id) = TraceId::from_bytes(&span.trace_id).filter(|i| !i.is_zero()) {
                *per.entry(id).or_default() += 1;
            }
        }
        let mut t = lock(&self.traces);
        for (id, n) in per {
            t.add(id, n, now);
        }
    }

    /// Records an OTLP log export (by each record's trace id).
    pub fn record_logs(&self, req: &ExportLogsServiceRequest) {
        let now = Instant::now();
        let mut per: HashMap<TraceId, usize> = HashMap::new();
        let mut without = 0u64;
        for rec in req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
        {
            match TraceId::from_bytes(&rec.trace_id).filter(|i| !i.is_zero()) {
                Some(id) => *per.entry(id).or_default() += 1,
                None => without += 1,
            }
        }
        *lock(&self.logs_without_trace_id) += without;
        let mut t = lock(&self.logs);
        for (id, n) in per {
            t.add(id, n, now);
        }
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

    fn lookup(&self, signal: Signal, id: TraceId) -> Option<Entry> {
        match signal {
            Signal::Traces => lock(&self.traces).ids.get(&id).copied(),
            Signal::Logs => lock(&self.logs).ids.get(&id).copied(),
            Signal::Metrics => None,
        }
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

/// Verifies against a [`Sink`]'s record: found (with the receive instant as `first_seen`,
/// and the span count for traces) or missing; never unknown.
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
                .map(|s| match self.store.lookup(self.signal, s.trace_id) {
                    Some(e) => Outcome::Found {
                        first_seen: e.first_seen,
                        spans: (self.signal == Signal::Traces).then_some(e.count),
                        recorded_at: None,
                    },
                    None => Outcome::Missing,
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
    use super::*;

    #[test]
    fn the_table_evicts_the_oldest_id_and_counts_it() {
        let mut t = Table::new(Retention {
            capacity: 2,
            retention: std::time::Duration::from_secs(60),
        });
        let now = Instant::now();
        t.add(TraceId([1; 16]), 1, now);
        t.add(TraceId([2; 16]), 1, now);
        t.add(TraceId([1; 16]), 2, now);
        t.add(TraceId([3; 16]), 1, now);
        assert_eq!(t.ids.evicted(), 1);
        assert!(t.ids.get(&TraceId([1; 16])).is_none());
        assert_eq!(t.ids.get(&TraceId([2; 16])).map(|e| e.count), Some(1));
        assert_eq!(t.items, 5);
    }
}
