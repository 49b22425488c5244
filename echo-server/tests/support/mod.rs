//! Test support: a minimal OTLP/gRPC receiver (the real protocol, via the tonic services of
//! opentelemetry-proto), a captured request log, an HTTP client and polling helpers. Either
//! receiver can refuse the exports that carry given trace ids ([`Refuse`]).
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
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
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;

/// How long polls wait; raise with ECHO_TEST_PATIENCE_SECS on a slow machine.
pub fn patience() -> Duration {
    let secs = std::env::var("ECHO_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(secs)
}

/// Polls `f` until it returns `Some`, or panics after [`patience`].
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the receiver got (accepted exports only).
#[derive(Default, Debug)]
pub struct Received {
    pub spans: Vec<Span>,
    pub logs: Vec<LogRecord>,
    pub service_names: Vec<String>,
    /// Spans per accepted trace export request, in arrival order.
    pub span_batches: Vec<usize>,
    /// Export requests (of either signal) refused, retries included.
    pub refused_requests: usize,
}

/// Trace ids (32 lowercase hex digits) whose exports a receiver refuses: any export request
/// carrying one of them is answered with the receiver's refusal, on every attempt.
#[derive(Clone, Default)]
pub struct Refuse(Arc<Mutex<HashSet<String>>>);

impl Refuse {
    pub fn insert(&self, trace_id: &str) {
        self.0.lock().unwrap().insert(trace_id.to_owned());
    }

    fn any(&self, mut ids: impl Iterator<Item = String>) -> bool {
        let set = self.0.lock().unwrap();
        ids.any(|id| set.contains(&id))
    }
}

#[derive(Clone, Default)]
struct Store {
    received: Arc<Mutex<Received>>,
    refuse: Refuse,
    /// The gRPC status refused exports end with.
    code: Option<tonic::Code>,
}

impl Store {
    fn refuses_spans(&self, m: &ExportTraceServiceRequest) -> bool {
        let ids = m
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| hex(&s.trace_id));
        self.refuse.any(ids)
    }

    fn refuses_logs(&self, m: &ExportLogsServiceRequest) -> bool {
        let ids = m
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .map(|l| hex(&l.trace_id));
        self.refuse.any(ids)
    }

    fn refusal(&self) -> Option<tonic::Status> {
        let code = self.code?;
        self.received.lock().unwrap().refused_requests += 1;
        Some(tonic::Status::new(code, "refused by the test"))
    }
}

#[tonic::async_trait]
impl TraceService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        if self.refuses_spans(&request)
            && let Some(status) = self.refusal()
        {
            return Err(status);
        }
        let mut r = self.received.lock().unwrap();
        let before = r.spans.len();
        for rs in request.resource_spans {
            if let Some(res) = &rs.resource {
                for kv in &res.attributes {
                    if kv.key == "service.name" {
                        r.service_names.push(format!("{:?}", kv.value));
                    }
                }
            }
            for ss in rs.scope_spans {
                r.spans.extend(ss.spans);
            }
        }
        let n = r.spans.len() - before;
        r.span_batches.push(n);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        if self.refuses_logs(&request)
            && let Some(status) = self.refusal()
        {
            return Err(status);
        }
        let mut r = self.received.lock().unwrap();
        for rl in request.resource_logs {
            for sl in rl.scope_logs {
                r.logs.extend(sl.log_records);
            }
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

/// An OTLP/gRPC receiver on 127.0.0.1:0.
pub struct Receiver {
    pub addr: SocketAddr,
    store: Store,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_with(Store::default()).await
    }

    /// A receiver that answers the exports carrying a trace id of `refuse` with `code`.
    pub async fn refusing(refuse: Refuse, code: tonic::Code) -> Self {
        Self::start_with(Store {
            refuse,
            code: Some(code),
            ..Store::default()
        })
        .await
    }

    async fn start_with(store: Store) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (t, l) = (store.clone(), store.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(t))
                .add_service(LogsServiceServer::new(l))
                .serve_with_incoming(tokio_stream_incoming(listener))
                .await
                .unwrap();
        });
        Self { addr, store }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&Received) -> T) -> T {
        f(&self.store.received.lock().unwrap())
    }

    pub fn server_spans_of(&self, trace_id: &str) -> Vec<Span> {
        self.with(|r| {
            r.spans
                .iter()
                .filter(|s| hex(&s.trace_id) == trace_id && s.kind == 2)
                .cloned()
                .collect()
        })
    }

    /// Spans of `trace_id` accepted so far, of any kind.
    pub fn accepted_spans(&self, trace_id: &str) -> usize {
        self.with(|r| {
            r.spans
                .iter()
                .filter(|s| hex(&s.trace_id) == trace_id)
                .count()
        })
    }

    pub fn logs_of(&self, trace_id: &str) -> Vec<LogRecord> {
        self.with(|r| {
            r.logs
                .iter()
                .filter(|l| hex(&l.trace_id) == trace_id)
                .cloned()
                .collect()
        })
    }
}

fn tokio_stream_incoming(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A request log captured in memory.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn writer(&self) -> echo_server::SharedWriter {
        self.0.clone()
    }

    pub fn lines(&self) -> Vec<serde_json::Value> {
        let raw = self.0.lock().unwrap().clone();
        String::from_utf8(raw)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect()
    }
}

/// Starts a server with `config` on 127.0.0.1:0.
pub async fn serve(config: echo_server::Config) -> echo_server::Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    echo_server::start(config, listener).await.unwrap()
}

/// A config exporting to `endpoint` quickly, logging into `log`.
pub fn config(endpoint: Option<String>, log: &Captured) -> echo_server::Config {
    let mut c = echo_server::Config {
        request_log: echo_server::RequestLog::Writer(log.writer()),
        seed: Some(42),
        ..Default::default()
    };
    c.telemetry.otlp = endpoint.map(|endpoint| echo_server::OtlpConfig {
        endpoint,
        protocol: echo_server::OtlpProtocol::Grpc,
    });
    c.telemetry.export_interval = Duration::from_millis(50);
    c.telemetry.export_timeout = Duration::from_secs(2);
    c
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

pub async fn send(client: &HttpClient, req: http::Request<Full<Bytes>>) -> Reply {
    let resp = tokio::time::timeout(patience(), client.request(req))
        .await
        .expect("request timed out")
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

pub async fn get(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut b = http::Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(client, b.body(Full::new(Bytes::new())).unwrap()).await
}

/// An OTLP/HTTP (protobuf) receiver on 127.0.0.1:0: `POST /v1/traces` and `/v1/logs`,
/// bodies decoded with prost.
pub struct HttpReceiver {
    pub addr: SocketAddr,
    store: Store,
}

impl HttpReceiver {
    pub async fn start() -> Self {
        Self::start_with(Store::default(), 200).await
    }

    /// A receiver that answers the exports carrying a trace id of `refuse` with HTTP
    /// `status`.
    pub async fn refusing(refuse: Refuse, status: u16) -> Self {
        Self::start_with(
            Store {
                refuse,
                ..Store::default()
            },
            status,
        )
        .await
    }

    async fn start_with(store: Store, refusal: u16) -> Self {
        use prost::Message;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = store.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let s = s.clone();
                            async move {
                                let path = req.uri().path().to_owned();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let refused = match path.as_str() {
                                    "/v1/traces" => s.refuses_spans(
                                        &ExportTraceServiceRequest::decode(body.clone()).unwrap(),
                                    ),
                                    "/v1/logs" => s.refuses_logs(
                                        &ExportLogsServiceRequest::decode(body.clone()).unwrap(),
                                    ),
                                    _ => false,
                                };
                                let mut r = s.received.lock().unwrap();
                                if refused {
                                    r.refused_requests += 1;
                                    let resp = http::Response::builder()
                                        .status(refusal)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap();
                                    return Ok::<_, std::convert::Infallible>(resp);
                                }
                                let reply: Vec<u8> = match path.as_str() {
                                    "/v1/traces" => {
                                        let m = ExportTraceServiceRequest::decode(body).unwrap();
                                        let before = r.spans.len();
                                        for rs in m.resource_spans {
                                            for ss in rs.scope_spans {
                                                r.spans.extend(ss.spans);
                                            }
                                        }
                                        let n = r.spans.len() - before;
                                        r.span_batches.push(n);
                                        ExportTraceServiceResponse {
                                            partial_success: None,
                                        }
                                        .encode_to_vec()
                                    }
                                    "/v1/logs" => {
                                        let m = ExportLogsServiceRequest::decode(body).unwrap();
                                        for rl in m.resource_logs {
                                            for sl in rl.scope_logs {
                                                r.logs.extend(sl.log_records);
                                            }
                                        }
                                        ExportLogsServiceResponse {
                                            partial_success: None,
                                        }
                                        .encode_to_vec()
                                    }
                                    other => panic!("unexpected OTLP/HTTP path {other}"),
                                };
                                let resp = http::Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::from(reply)))
                                    .unwrap();
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, store }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&Received) -> T) -> T {
        f(&self.store.received.lock().unwrap())
    }
}
