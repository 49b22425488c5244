//! ricochet's instrumented echo server: the reference workload whose every request yields
//! one server span (continuing the caller's W3C `traceparent`), one JSON log line carrying
//! the same trace id, and RED metrics with that trace id as exemplar.
//!
//! ```no_run
//! # async fn demo() -> Result<(), echo_server::Error> {
//! let addr = "127.0.0.1:0".parse().expect("a socket address");
//! let listener = echo_server::bind(addr)
//!     .map_err(|source| echo_server::Error::Bind { what: "main", addr, source })?;
//! let server = echo_server::start(echo_server::Config::default(), listener).await?;
//! println!("serving on http://{}", server.local_addr());
//! server.shutdown().await
//! # }
//! ```

pub mod chaos;
pub mod config;
pub mod contract;
pub mod error;
pub mod ledger;
pub mod log;
pub mod metrics;
pub mod otlp;
pub mod routes;
pub mod telemetry;

mod admin;
mod serve;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Either;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, SizeHint};
use opentelemetry::logs::Severity;
use opentelemetry::trace::SpanId;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

pub use crate::chaos::{Chaos, ChaosSpec};
pub use crate::config::{
    Cli, Config, Env, LogFormat, OtlpConfig, OtlpProtocol, ProcessEnv, RequestLog, SharedWriter,
};
pub use crate::error::{Error, Result};
use crate::ledger::{Items, Ledger, Produced, Tracked};
use crate::log::{LogSink, RequestRecord};
use crate::metrics::Metrics;
use crate::otlp::encode::{LogRecord, ServerSpan, SpanRecord, SpanShape, StormSpan};
use crate::routes::Route;
use crate::telemetry::{SpanStart, Telemetry};

/// [`contract::REPLICA_HEADER`], parsed once.
const REPLICA: http::HeaderName = http::HeaderName::from_static(contract::REPLICA_HEADER);

/// Response body type of the server.
pub type ResponseBody = Either<http_body_util::Full<Bytes>, GuardedBody>;

/// Shared state of a running server.
#[derive(Debug)]
pub struct AppState {
    /// The configuration it runs on.
    pub config: Config,
    /// Spans and OTLP logs.
    pub telemetry: Telemetry,
    /// RED metrics.
    pub metrics: Metrics,
    /// Runtime faults.
    pub chaos: Chaos,
    /// Request log writer, when the log is on.
    pub log: Option<LogSink>,
    /// Set once shutdown began (`/readyz` answers 503).
    pub draining: AtomicBool,
    /// Per-run counts and per-trace fates (`/runs/…`).
    pub ledger: Arc<Ledger>,
    /// The [`contract::REPLICA_HEADER`] value every response carries.
    replica_header: HeaderValue,
}

impl AppState {
    /// Builds the state: telemetry pipelines (inside a Tokio runtime) and the request-log
    /// writer.
    pub fn new(config: Config) -> Result<Arc<Self>> {
        let replica = match &config.replica {
            Some(r) => {
                config::check_replica("replica", r)?;
                r.clone()
            }
            None => config::default_replica(&ProcessEnv),
        };
        let replica_header =
            HeaderValue::from_str(&replica).map_err(|e| Error::InvalidSetting {
                name: "replica".into(),
                value: replica.clone(),
                reason: e.to_string(),
            })?;
        let ledger = Arc::new(Ledger::new(replica.as_str()));
        let telemetry = Telemetry::new(&config.service_name, &config.telemetry, ledger.clone())?;
        let log = if config.telemetry.enabled {
            LogSink::start(&config.request_log)?
        } else {
            None
        };
        let seed = config.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        Ok(Arc::new(Self {
            chaos: Chaos::new(seed),
            telemetry,
            metrics: Metrics::with_replica(&replica),
            log,
            draining: AtomicBool::new(false),
            ledger,
            replica_header,
            config,
        }))
    }

    /// The name this server answers with.
    pub fn replica(&self) -> &str {
        self.ledger.replica()
    }
}

/// Handles one request of the public listener: routing, chaos, and the span, log line and
/// metrics of the request. Usable without a socket (tests call it directly).
pub async fn handle<B>(state: Arc<AppState>, req: Request<B>) -> Response<ResponseBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let start_time = SystemTime::now();
    let route = Route::resolve(req.uri().path());
    if route == Route::Runs {
        return accounting(&state, req).await;
    }
    let run = if route.is_accounted() {
        state.ledger.track(req.headers())
    } else {
        None
    };
    let probe = metrics::probe_slot(req.headers());
    let method = routes::method_label(req.method());
    let span = state.telemetry.start_server_span(req.headers(), start_time);
    let meta = span.as_ref().map(|_| RequestMeta::of(&req));
    let tenant = tenant_of(req.headers());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(Arc::<str>::from)
        .unwrap_or_else(|| {
            let id = u64::from_be_bytes(state.telemetry.new_span_id().to_bytes());
            format!("{id:016x}").into()
        });

    let mut outcome = routes::dispatch(&state, route, req, span.as_ref()).await;
    let verdict = state.chaos.on_response(
        route.as_str(),
        route.is_workload(),
        outcome.response.status().as_u16(),
    );
    if let Some(s) = verdict.error_status {
        let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        outcome.response = routes::error(status, "error injected by chaos");
    }
    if let Some(d) = verdict.delay {
        tokio::time::sleep(d).await;
    }
    let (mut parts, body) = outcome.response.into_parts();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        parts.headers.insert("x-request-id", v);
    }
    parts.headers.insert(REPLICA, state.replica_header.clone());
    if let Some(s) = &span
        && let Some(v) = s.traceparent()
    {
        parts.headers.insert(telemetry::TRACEPARENT, v);
    }
    let done = Completion {
        state: state.clone(),
        route,
        method,
        status: parts.status.as_u16(),
        tenant,
        request_id,
        span,
        meta,
        started,
        children: outcome.children,
        run,
        probe,
    };
    let body = match body {
        Either::Left(full) => {
            done.finish();
            Either::Left(full)
        }
        Either::Right(stream) => Either::Right(GuardedBody {
            inner: stream,
            done: Some(done),
        }),
    };
    Response::from_parts(parts, body)
}

/// `/runs/…`: answered apart from the workload, with no span, log line, metrics or run
/// counts of its own.
async fn accounting<B>(state: &AppState, req: Request<B>) -> Response<ResponseBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let outcome = routes::dispatch(state, Route::Runs, req, None).await;
    let (mut parts, body) = outcome.response.into_parts();
    parts.headers.insert(REPLICA, state.replica_header.clone());
    let body = match body {
        Either::Left(full) => Either::Left(full),
        Either::Right(inner) => Either::Right(GuardedBody { inner, done: None }),
    };
    Response::from_parts(parts, body)
}

fn tenant_of(headers: &http::HeaderMap) -> Option<Arc<str>> {
    headers
        .get("x-tenant-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(Arc::from)
        .or_else(|| telemetry::tenant_from_baggage(headers).map(Arc::from))
}

/// `"{method} {route}"`, interned: at most (10 method labels x 8 routes) names exist.
fn span_name(method: &'static str, route: &'static str) -> &'static str {
    static NAMES: std::sync::RwLock<Vec<(&'static str, &'static str, &'static str)>> =
        std::sync::RwLock::new(Vec::new());
    let found = NAMES
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(m, r, _)| std::ptr::eq(*m, method) && std::ptr::eq(*r, route))
        .map(|(_, _, n)| *n);
    if let Some(n) = found {
        return n;
    }
    let mut names = NAMES.write().unwrap_or_else(|p| p.into_inner());
    if let Some((_, _, n)) = names.iter().find(|(m, r, _)| *m == method && *r == route) {
        return n;
    }
    // Bounded: method labels and routes are fixed sets of static strings.
    let name: &'static str = Box::leak(format!("{method} {route}").into_boxed_str());
    names.push((method, route, name));
    name
}

/// What the span records of the request itself, kept as cheap clones of the request's
/// own buffers (the URI and header values share the bytes hyper read).
#[derive(Debug)]
struct RequestMeta {
    uri: http::Uri,
    user_agent: Option<HeaderValue>,
    version: &'static str,
    scheme: &'static str,
}

impl RequestMeta {
    fn of<B>(req: &Request<B>) -> Self {
        Self {
            uri: req.uri().clone(),
            user_agent: req.headers().get(http::header::USER_AGENT).cloned(),
            version: match req.version() {
                http::Version::HTTP_2 => "2",
                http::Version::HTTP_10 => "1.0",
                _ => "1.1",
            },
            scheme: "http",
        }
    }

    fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_ref().and_then(|v| v.to_str().ok())
    }
}

/// Everything needed to account for a request once its response is complete.
#[derive(Debug)]
struct Completion {
    state: Arc<AppState>,
    route: Route,
    method: &'static str,
    status: u16,
    tenant: Option<Arc<str>>,
    request_id: Arc<str>,
    span: Option<SpanStart>,
    meta: Option<RequestMeta>,
    started: Instant,
    children: Vec<StormSpan>,
    /// The request's run, when tracked.
    run: Option<Tracked>,
    /// The probe slot it names, if any.
    probe: Option<u8>,
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    static TS: RefCell<(log::TimestampCache, String)> = RefCell::default();
}

/// Lowercase hex of `bytes` into `out` (twice as long), one table lookup per byte.
pub(crate) fn hex_id(bytes: &[u8], out: &mut [u8]) {
    const PAIRS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut t = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [HEX[i >> 4], HEX[i & 0xf]];
            i += 1;
        }
        t
    };
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&PAIRS[usize::from(*b)]);
    }
}

impl Completion {
    fn finish(mut self) {
        let duration = self.started.elapsed();
        let st = &self.state;
        let (route, status) = (self.route.as_str(), self.status);
        let dropped = self.span.is_some()
            && st
                .chaos
                .drop_telemetry(route, self.route.is_workload(), status);
        let exemplar = self.span.as_ref().map(|s| (s.trace_id, s.span_id));
        st.metrics.record(
            route,
            self.method,
            status,
            self.tenant.as_deref(),
            duration,
            exemplar,
        );
        if let Some(slot) = self.probe {
            st.metrics.probes.record(slot, exemplar);
        }
        let run = self.run.take();
        if let Some(run) = &run {
            st.ledger.served(run, dropped);
        }
        let (Some(span), Some(meta)) = (self.span.take(), self.meta.take()) else {
            return;
        };
        let span = &span;
        // What the request exports: its server span, `/storm`'s children, one log record.
        let items = Items {
            spans: u32::try_from(self.children.len() + 1).unwrap_or(u32::MAX),
            logs: 1,
        };
        if dropped {
            st.telemetry.count_chaos_drop();
            if let Some(run) = &run
                && st.telemetry.exporting()
            {
                st.ledger
                    .produced(run, span.trace_id, Produced::ChaosDropped, items);
            }
            return;
        }
        let end = SystemTime::now();
        let (mut tid, mut sid) = ([0u8; 32], [0u8; 16]);
        hex_id(&span.trace_id.to_bytes(), &mut tid);
        hex_id(&span.span_id.to_bytes(), &mut sid);
        let trace_id = std::str::from_utf8(&tid).unwrap_or_default();
        let span_id = std::str::from_utf8(&sid).unwrap_or_default();
        let (level, severity) = match status {
            500.. => ("error", Severity::Error),
            400..=499 => ("warn", Severity::Warn),
            _ => ("info", Severity::Info),
        };
        let duration_ms = duration.as_secs_f64() * 1e3;
        if let Some(sink) = &st.log {
            TS.with_borrow_mut(|(cache, ts)| {
                cache.format(end, ts);
                let record = RequestRecord {
                    ts,
                    level,
                    msg: "request completed",
                    service: &st.config.service_name,
                    trace_id,
                    span_id,
                    tenant_id: self.tenant.as_deref(),
                    request_id: &self.request_id,
                    method: self.method,
                    route,
                    path: meta.uri.path(),
                    status,
                    duration_ms,
                };
                LINE.with_borrow_mut(|buf| {
                    buf.clear();
                    record.write_line(st.config.log_format, buf);
                    sink.append(buf);
                });
            });
        }
        if !st.telemetry.exporting() {
            return;
        }
        // Counted before they are queued, so that an export answered at once finds them.
        if let Some(run) = &run {
            st.ledger
                .produced(run, span.trace_id, Produced::Emitted, items);
        }
        let key = run.as_ref().map(|r| r.key);
        let tenant = self.tenant.as_deref();
        let logs_dropped = st.telemetry.emit_log(
            &LogRecord {
                time: end,
                severity,
                trace_id: span.trace_id,
                span_id: span.span_id,
                flags: span.flags,
                request_id: &self.request_id,
                method: self.method,
                route,
                status,
                duration_ms,
                tenant,
            },
            key,
        );
        let name = match self.route {
            Route::Unmatched => self.method,
            _ => span_name(self.method, route),
        };
        let server = SpanRecord {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            flags: span.flags,
            trace_state: &span.trace_state,
            start: span.start,
            end,
            shape: SpanShape::Server(ServerSpan {
                name,
                parent_is_remote: span.parent_span_id != SpanId::INVALID,
                method: self.method,
                route,
                status,
                path: meta.uri.path(),
                scheme: meta.scheme,
                version: meta.version,
                query: meta.uri.query(),
                user_agent: meta.user_agent(),
                tenant,
                request_id: &self.request_id,
            }),
        };
        let spans_dropped = st.telemetry.emit_spans(
            self.children
                .iter()
                .map(|c| span.child(c))
                .chain(std::iter::once(server)),
            key,
        );
        if let Some(run) = &run
            && spans_dropped + logs_dropped > 0
        {
            let dropped = Items {
                spans: u32::try_from(spans_dropped).unwrap_or(u32::MAX),
                logs: u32::try_from(logs_dropped).unwrap_or(u32::MAX),
            };
            st.ledger
                .produced(run, span.trace_id, Produced::Dropped, dropped);
        }
    }
}

/// A streaming body that accounts for its request (span, log, metrics) when the stream
/// ends or is dropped.
pub struct GuardedBody {
    inner: UnsyncBoxBody<Bytes, std::convert::Infallible>,
    done: Option<Completion>,
}

impl std::fmt::Debug for GuardedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuardedBody")
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = r
            && let Some(d) = self.done.take()
        {
            d.finish();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        if let Some(d) = self.done.take() {
            d.finish();
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    state: Arc<AppState>,
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Connections a listener queues before the OS drops new SYNs (the kernel caps it at
/// `net.core.somaxconn`). Load generators open connections in bursts, a whole pool at
/// once after a stall, and a dropped SYN is only retried a second later: std's and tokio's
/// `bind` queue 128.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener on `addr` with a [`LISTEN_BACKLOG`]-deep accept queue. Call it
/// inside a Tokio runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Starts serving on `listener` (and on the admin address of `config`, if any).
pub async fn start(config: Config, listener: TcpListener) -> Result<Server> {
    let local_addr = listener.local_addr().map_err(|source| Error::LocalAddr {
        what: "main",
        source,
    })?;
    let admin_listener = match config.admin_listen {
        None => None,
        Some(addr) => {
            if config.admin_token.is_none() {
                return Err(Error::AdminTokenMissing { addr });
            }
            Some(bind(addr).map_err(|source| Error::Bind {
                what: "admin",
                addr,
                source,
            })?)
        }
    };
    let admin_addr = match &admin_listener {
        Some(l) => Some(l.local_addr().map_err(|source| Error::LocalAddr {
            what: "admin",
            source,
        })?),
        None => None,
    };
    let state = AppState::new(config)?;
    let cancel = CancellationToken::new();
    let mut tasks = vec![tokio::spawn(serve::accept_loop(
        listener,
        state.clone(),
        cancel.clone(),
        serve::Kind::Public,
    ))];
    if let Some(l) = admin_listener {
        tasks.push(tokio::spawn(serve::accept_loop(
            l,
            state.clone(),
            cancel.clone(),
            serve::Kind::Admin,
        )));
    }
    Ok(Server {
        state,
        local_addr,
        admin_addr,
        cancel,
        tasks,
    })
}

impl Server {
    /// Address of the public listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Address of the admin listener, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The shared state (metrics, telemetry counters, chaos).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish (bounded by `limits.grace`), then
    /// flushes and shuts down traces, then logs, then the request log.
    pub async fn shutdown(self) -> Result<()> {
        self.state.draining.store(true, Ordering::Release);
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let st = &self.state;
        let result = st.telemetry.shutdown(st.telemetry.drain_timeout()).await;
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(l) = &state.log {
                l.close();
            }
        })
        .await;
        result
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// A burst of connections far beyond 128 is queued while nothing accepts: none waits
    /// for a SYN retry (1 s), all connect within the timeout.
    #[tokio::test]
    async fn a_burst_of_connections_is_queued_not_dropped() {
        let listener = super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..600).map(|_| {
            tokio::time::timeout(
                Duration::from_millis(800),
                tokio::net::TcpStream::connect(addr),
            )
        });
        let results = futures_util::future::join_all(connects).await;
        let connected = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(connected, 600, "connected {connected} of 600");
        drop(listener);
    }

    #[test]
    fn ids_are_lowercase_hex_of_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut out = vec![0u8; 512];
        super::hex_id(&bytes, &mut out);
        let want: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}
