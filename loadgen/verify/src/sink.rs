//! The embedded OTLP sink: an OTLP receiver on loopback (gRPC and HTTP/protobuf, traces and
//! logs) that remembers, in bounded memory, which trace ids it received, how many spans or
//! log records each, and when it first saw each; it answers the same
//! [`Verifier`] interface as the real backends, so
//! `loadgen run` verifies the full loop with nothing installed.
//!
//! Memory: at most `capacity` trace ids per signal; the oldest id is evicted first and
//! evictions are counted in [`SinkStats`] (a sample whose id was evicted before it was
//! checked reads as missing, so size `capacity` above `samples/s × settleTimeout`; the
//! whole table is about 60 bytes per id).
//!
//! ```no_run
//! # async fn demo() -> Result<(), ricochet_verify::sink::SinkError> {
//! let sink = ricochet_verify::sink::Sink::start(100_000).await?;
//! // point an exporter at sink.http_endpoint() (OTLP/HTTP) or sink.grpc_endpoint()
//! let traces = sink.verifier(ricochet_verify::Signal::Traces);
//! # let _ = traces; sink.shutdown().await; Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    /// OTLP/HTTP requests refused (bad body, content type, path).
    pub rejected_requests: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    count: usize,
    first_seen: Instant,
}

#[derive(Debug)]
struct Table {
    map: HashMap<TraceId, Entry>,
    order: VecDeque<TraceId>,
    cap: usize,
    evicted: u64,
    items: u64,
}

impl Table {
    fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
            evicted: 0,
            items: 0,
        }
    }

    fn add(&mut self, id: TraceId, n: usize, now: Instant) {
        self.items += n as u64;
        if let Some(e) = self.map.get_mut(&id) {
            e.count += n;
            return;
        }
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    if self.map.remove(&old).is_some() {
                        self.evicted += 1;
                    }
                }
                None => break,
            }
        }
        self.map.insert(
            id,
            Entry {
                count: n,
                first_seen: now,
            },
        );
        self.order.push_back(id);
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
    /// Holds at most `capacity` trace ids per signal.
    pub fn new(capacity: usize) -> Self {
        Self {
            traces: Mutex::new(Table::new(capacity)),
            logs: Mutex::new(Table::new(capacity)),
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
            (t.items, t.map.len(), t.evicted)
        };
        let (log_records, logs_held, logs_evicted) = {
            let t = lock(&self.logs);
            (t.items, t.map.len(), t.evicted)
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
            Signal::Traces => lock(&self.traces).map.get(&id).copied(),
            Signal::Logs => lock(&self.logs).map.get(&id).copied(),
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
    pub async fn start(capacity: usize) -> Result<Self, SinkError> {
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
        let store = Arc::new(Store::new(capacity));
        let cancel = CancellationToken::new();
        let svc = Otlp {
            store: store.clone(),
        };
        let grpc_task = {
            let cancel = cancel.clone();
            let router = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(svc.clone()))
                .add_service(LogsServiceServer::new(svc));
            tokio::spawn(async move {
                let incoming = tonic::transport::server::TcpIncoming::from(grpc);
                // A serve error ends the gRPC side only; verification then reads missing for
                // gRPC exporters, which the exporters' own failure counters explain.
                let _ = router
                    .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
                    .await;
            })
        };
        let http_task = tokio::spawn(http_accept_loop(http, store.clone(), cancel.clone()));
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

#[derive(Debug, Clone)]
struct Otlp {
    store: Arc<Store>,
}

#[tonic::async_trait]
impl TraceService for Otlp {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.store.record_traces(request.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Otlp {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.store.record_logs(request.get_ref());
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

async fn http_accept_loop(listener: TcpListener, store: Arc<Store>, cancel: CancellationToken) {
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
                async move { Ok::<_, Infallible>(handle_http(&store, req).await) }
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

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}

async fn handle_http(store: &Store, req: Request<Incoming>) -> Response<Full<Bytes>> {
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
    let decoded = match (traces, json) {
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
    };
    if let Err(e) = decoded {
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
        let mut t = Table::new(2);
        let now = Instant::now();
        t.add(TraceId([1; 16]), 1, now);
        t.add(TraceId([2; 16]), 1, now);
        t.add(TraceId([1; 16]), 2, now);
        t.add(TraceId([3; 16]), 1, now);
        assert_eq!(t.evicted, 1);
        assert!(!t.map.contains_key(&TraceId([1; 16])));
        assert_eq!(t.map[&TraceId([2; 16])].count, 1);
        assert_eq!(t.items, 5);
    }
}
