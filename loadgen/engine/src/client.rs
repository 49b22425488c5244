//! The HTTP client of the hot loop: HTTP/1.1 spoken inline over a bounded keep-alive pool
//! (or one connection per VU), in clear or over TLS (`https://`, see [`crate::tls`]), or
//! hyper's connection API over one multiplexed connection (HTTP/2 prior knowledge).
//!
//! A request that opened its connection carries how long the TCP connect and the TLS
//! handshake took ([`Connected`]), k6's `http_req_connecting` and `http_req_tls_handshaking`.
//!
//! Every request carries a fresh W3C `traceparent` (sampled) and an `X-Request-Id`.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

use crate::h1::{self, Stream, describe_io};
use crate::plan::{RequestPlan, TargetUrl};
use crate::tls::{Roots, client_config, server_name};

use echo_server::contract::{PROBE_HEADER, REPLICA_HEADER, TRACEPARENT};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Why a target URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Only `http://` and `https://` are spoken.
    #[error(
        "target {url}: only http:// and https:// targets are supported (got scheme `{scheme}`)"
    )]
    Scheme {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// No host in the URL.
    #[error("target {url}: the URL has no host")]
    NoHost {
        /// The URL.
        url: String,
    },
    /// The URL's port is not a usable TCP port.
    #[error(
        "target {url}: `{port}` is not a usable port, expected 1 to 65535 (or no port: 80 for http://, 443 for https://)"
    )]
    Port {
        /// The URL.
        url: String,
        /// The port as written.
        port: String,
    },
    /// DNS or address parsing failed.
    #[error("cannot reach target {url}: {reason}")]
    Resolve {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The probe connection failed (TLS handshake included).
    #[error("cannot reach target {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why, e.g. `connection refused`.
        reason: String,
    },
    /// The TLS settings cannot be used (a CA, certificate or key file).
    #[error("target {url}: {reason}")]
    Tls {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// TLS towards one target: the connector and the name checked and sent as SNI.
#[derive(Clone)]
struct TlsConnect {
    connector: TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for TlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnect")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How long opening a request's connection took: k6's `http_req_connecting` (TCP) and
/// `http_req_tls_handshaking` (`None` in clear).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connected {
    /// The TCP connect.
    pub connecting: Duration,
    /// The TLS handshake, `https://` only.
    pub tls_handshaking: Option<Duration>,
}

/// A TCP connection to `addr`, Nagle off.
async fn tcp(addr: SocketAddr) -> Result<TcpStream, FailureKind> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| FailureKind::Connect {
            cause: ErrorCause::of_connect(&e),
            detail: describe_io(&e),
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Opens a connection to `addr`, TLS over it when `tls` is given.
async fn open(
    addr: SocketAddr,
    tls: Option<&TlsConnect>,
) -> Result<(Stream, Connected), FailureKind> {
    let start = Instant::now();
    let tcp = tcp(addr).await?;
    let connected = Instant::now();
    let connecting = connected - start;
    let Some(tls) = tls else {
        return Ok((
            Stream::Plain(tcp),
            Connected {
                connecting,
                tls_handshaking: None,
            },
        ));
    };
    let stream = tls
        .connector
        .connect(tls.name.clone(), tcp)
        .await
        .map_err(|e| FailureKind::Connect {
            cause: match ErrorCause::of_io(&e) {
                ErrorCause::Tls => ErrorCause::Tls,
                _ => ErrorCause::of_connect(&e),
            },
            detail: format!("TLS handshake failed: {}", describe_io(&e)),
        })?;
    Ok((
        Stream::Tls(Box::new(stream)),
        Connected {
            connecting,
            tls_handshaking: Some(connected.elapsed()),
        },
    ))
}

/// A resolved target: address, `Host` header, path prefix.
#[derive(Clone, Debug)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    addr: SocketAddr,
    authority: HeaderValue,
    scheme_authority: String,
    prefix: String,
    http2: bool,
    max_connections: usize,
    timeout: Duration,
    tls: Option<TlsConnect>,
    insecure_skip_verify: bool,
}

impl Target {
    /// Resolves `url`'s host (once; the run then talks to that address).
    pub async fn resolve(target: &TargetUrl) -> Result<Self, TargetError> {
        let url = target.base.to_string().trim_end_matches('/').to_owned();
        let scheme = target.base.scheme_str().unwrap_or_default();
        let https = scheme == "https";
        let Some(default_port) = default_port(scheme) else {
            return Err(TargetError::Scheme {
                url,
                scheme: scheme.to_owned(),
            });
        };
        let Some(authority) = target.base.authority() else {
            return Err(TargetError::NoHost { url });
        };
        let port = port_of(authority, default_port).map_err(|port| TargetError::Port {
            url: url.clone(),
            port,
        })?;
        let host_port = format!("{}:{port}", authority.host());
        let addr = match tokio::net::lookup_host(&host_port).await {
            Ok(mut addrs) => addrs.next().ok_or_else(|| TargetError::Resolve {
                url: url.clone(),
                reason: format!("`{host_port}` resolves to no address"),
            })?,
            Err(e) => {
                return Err(TargetError::Resolve {
                    url,
                    reason: describe_io(&e),
                });
            }
        };
        let authority_value = HeaderValue::from_str(authority.as_str())
            .map_err(|_| TargetError::NoHost { url: url.clone() })?;
        let tls = if https {
            let mut config =
                client_config(&target.tls, Roots::System).map_err(|e| TargetError::Tls {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            if target.http2 {
                // HTTP/2 over TLS is agreed by ALPN: offer `h2` alone, so a server that
                // does not speak it refuses the handshake rather than the requests.
                config.alpn_protocols = vec![b"h2".to_vec()];
            }
            let name = server_name(authority.host()).ok_or_else(|| TargetError::Tls {
                url: url.clone(),
                reason: format!("`{}` is not a valid TLS server name", authority.host()),
            })?;
            Some(TlsConnect {
                connector: TlsConnector::from(Arc::new(config)),
                name,
            })
        } else {
            None
        };
        Ok(Self {
            scheme_authority: format!(
                "{}://{}",
                if https { "https" } else { "http" },
                authority.as_str()
            ),
            tls,
            insecure_skip_verify: https && target.tls.insecure_skip_verify,
            prefix: target.base.path().trim_end_matches('/').to_owned(),
            url,
            addr,
            authority: authority_value,
            http2: target.http2,
            max_connections: usize::try_from(target.max_connections.get()).unwrap_or(1),
            timeout: target.timeout,
        })
    }

    /// How long a request may take before it counts as timed out.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the target's certificate goes unverified (`insecureSkipVerify`), which the
    /// reports flag.
    pub fn insecure_skip_verify(&self) -> bool {
        self.insecure_skip_verify
    }

    /// A loopback target at `addr` (the embedded echo-server).
    pub fn loopback(addr: SocketAddr, max_connections: usize, timeout: Duration) -> Self {
        let authority = addr.to_string();
        Self {
            url: format!("http://{authority}"),
            scheme_authority: format!("http://{authority}"),
            authority: HeaderValue::from_str(&authority)
                .unwrap_or(HeaderValue::from_static("localhost")),
            prefix: String::new(),
            addr,
            http2: false,
            max_connections: max_connections.max(1),
            timeout,
            tls: None,
            insecure_skip_verify: false,
        }
    }

    /// Opens and closes one connection (TLS handshake included), so an unreachable target
    /// or a certificate it would refuse fails fast and clearly.
    pub async fn probe(&self) -> Result<(), TargetError> {
        let wait = self.timeout.min(Duration::from_secs(5));
        match tokio::time::timeout(wait, open(self.addr, self.tls.as_ref())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(kind)) => Err(TargetError::Unreachable {
                url: self.url.clone(),
                reason: kind.detail().to_owned(),
            }),
            Err(_) => Err(TargetError::Unreachable {
                url: self.url.clone(),
                reason: format!(
                    "connection timed out after {}",
                    humantime::format_duration(wait)
                ),
            }),
        }
    }

    /// A request ready to be sent many times.
    pub fn prepare(&self, r: &RequestPlan) -> Result<Prepared, http::Error> {
        let path = if r.path_and_query.starts_with('/') {
            format!("{}{}", self.prefix, r.path_and_query)
        } else {
            format!("{}/{}", self.prefix, r.path_and_query)
        };
        let mut headers = r.headers.clone();
        // Placeholders, overwritten per request in place (no insert, no rehash).
        headers.insert(TRACEPARENT, HeaderValue::from_static(""));
        headers.insert(REQUEST_ID, HeaderValue::from_static(""));
        if !self.http2 {
            headers.insert(HOST, self.authority.clone());
        }
        if !r.body.is_empty() || r.method == Method::POST || r.method == Method::PUT {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(r.body.len()));
        }
        if !self.http2 {
            // Validated like any request URI, then serialized once.
            let _: Uri = path.parse()?;
            let template = h1::Template::new(&r.method, &path, &headers, &r.body);
            return Ok(Prepared {
                approx_sent: template.len() as u64,
                wire: Wire::H1(template),
                stream: r.stream,
            });
        }
        let uri: Uri = format!("{}{path}", self.scheme_authority).parse()?;
        let header_bytes: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        // Request line, headers, the two per-request headers, blank line, body.
        let approx = r.method.as_str().len()
            + path.len()
            + 12
            + header_bytes
            + (13 + 55 + 4)
            + (12 + 32 + 4)
            + 2
            + r.body.len();
        Ok(Prepared {
            wire: Wire::H2 {
                method: r.method.clone(),
                uri,
                headers,
                body: r.body.clone(),
            },
            stream: r.stream,
            approx_sent: approx as u64,
        })
    }
}

/// The port a scheme's URLs use when they name none; `None` for schemes not spoken.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// The port of `authority`: the one written (1 to 65535), or `default` when none is
/// written. A port written but empty, zero, out of range or not a number is the text
/// written, as an error: it never silently becomes the default.
fn port_of(authority: &http::uri::Authority, default: u16) -> Result<u16, String> {
    let text = authority.as_str();
    let text = &text[text.rfind('@').map_or(0, |i| i + 1)..];
    // After the last `:` outside an IPv6 literal's brackets.
    let after_host = text.rfind(']').map_or(0, |i| i + 1);
    let Some(colon) = text[after_host..].rfind(':') else {
        return Ok(default);
    };
    let written = &text[after_host + colon + 1..];
    match written.parse::<u16>() {
        Ok(p) if p > 0 && written.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(written.to_owned()),
    }
}

/// One request, prepared once per scenario.
#[derive(Clone, Debug)]
pub struct Prepared {
    wire: Wire,
    /// Streamed: first byte is the first body chunk, and stream duration is recorded.
    pub stream: bool,
    approx_sent: u64,
}

/// A prepared request in its protocol's form.
#[derive(Clone, Debug)]
enum Wire {
    /// HTTP/1.1: the request's bytes, trace headers patched per request.
    H1(h1::Template),
    /// HTTP/2: the parts of an `http::Request` built per request.
    H2 {
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    },
}

/// A completed exchange.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// HTTP status.
    pub status: u16,
    /// Handed to the connection.
    pub sent: Instant,
    /// First byte (response head; first body chunk when streamed).
    pub first_byte: Instant,
    /// Last byte.
    pub end: Instant,
    /// Request bytes, approximate wire size.
    pub bytes_sent: u64,
    /// Response bytes, approximate wire size.
    pub bytes_received: u64,
    /// The trace id and request id the request carried.
    pub ids: TraceIds,
    /// The replica that answered, as its `x-ricochet-replica` header named it.
    pub replica: Option<Arc<str>>,
    /// How the connection was opened, when this request opened it (HTTP/1.1).
    pub connected: Option<Connected>,
}

/// Why a request got no answer: k6's `error_code`, by name. A response of any status (5xx
/// too) is an answer and has no cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCause {
    /// No complete answer within the target's request timeout.
    Timeout,
    /// The target refused the connection (nothing listens on the port).
    Refused,
    /// The connection was reset, or closed (broken pipe, end of stream) before the answer
    /// was complete.
    Reset,
    /// The target's host name could not be resolved. Reserved: the host is resolved once
    /// before the run, which ends it before any request when that fails.
    Dns,
    /// Any other failure to connect: host or network unreachable, no local address, a
    /// connection attempt that timed out.
    Connect,
    /// The answer was not valid HTTP: a malformed head or body framing, an HTTP/2 protocol
    /// error.
    Protocol,
    /// The TLS handshake failed, or the TLS layer refused the connection (e.g. an alert
    /// from a server that wants a client certificate).
    Tls,
}

impl ErrorCause {
    /// Every cause, in the order of [`ErrorCause::index`].
    pub const ALL: [ErrorCause; 7] = [
        ErrorCause::Timeout,
        ErrorCause::Refused,
        ErrorCause::Reset,
        ErrorCause::Dns,
        ErrorCause::Connect,
        ErrorCause::Protocol,
        ErrorCause::Tls,
    ];

    /// The name `summary.json` uses, e.g. `timeout`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCause::Timeout => "timeout",
            ErrorCause::Refused => "refused",
            ErrorCause::Reset => "reset",
            ErrorCause::Dns => "dns",
            ErrorCause::Connect => "connect",
            ErrorCause::Protocol => "protocol",
            ErrorCause::Tls => "tls",
        }
    }

    /// Position in [`ErrorCause::ALL`], for arrays of counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The cause of an I/O error while opening a connection.
    pub fn of_connect(e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => ErrorCause::Refused,
            K::ConnectionReset | K::ConnectionAborted => ErrorCause::Reset,
            _ => ErrorCause::Connect,
        }
    }

    /// The cause of an I/O error on an open connection; any failure not named here broke
    /// the connection, so it counts as `reset`.
    pub fn of_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
            return ErrorCause::Tls;
        }
        match e.kind() {
            K::ConnectionRefused => ErrorCause::Refused,
            K::TimedOut => ErrorCause::Timeout,
            K::InvalidData => ErrorCause::Protocol,
            K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown | K::AddrNotAvailable => {
                ErrorCause::Connect
            }
            _ => ErrorCause::Reset,
        }
    }

    /// The cause of a hyper (HTTP/2) error: its I/O error when it has one, else what hyper
    /// says; an HTTP/2 error without either (a stream or connection error) is `protocol`.
    pub fn of_hyper(e: &hyper::Error) -> Self {
        if e.is_timeout() {
            return ErrorCause::Timeout;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                return Self::of_io(io);
            }
            source = s.source();
        }
        if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
            ErrorCause::Reset
        } else {
            ErrorCause::Protocol
        }
    }
}

impl std::fmt::Display for ErrorCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an exchange produced no complete response.
#[derive(Clone, Debug)]
pub enum FailureKind {
    /// No connection could be opened.
    Connect {
        /// Why, as counted.
        cause: ErrorCause,
        /// What happened, e.g. `connection refused`.
        detail: String,
    },
    /// The per-request timeout elapsed.
    Timeout,
    /// The connection broke, or the answer was not valid HTTP.
    Transport {
        /// Why, as counted.
        cause: ErrorCause,
        /// What happened, e.g. `connection reset by peer`.
        detail: String,
    },
}

impl FailureKind {
    /// The cause the failure is counted under.
    pub fn cause(&self) -> ErrorCause {
        match self {
            FailureKind::Connect { cause, .. } | FailureKind::Transport { cause, .. } => *cause,
            FailureKind::Timeout => ErrorCause::Timeout,
        }
    }

    /// What happened, in a few words (empty for a timeout: the cause says it).
    pub fn detail(&self) -> &str {
        match self {
            FailureKind::Connect { detail, .. } | FailureKind::Transport { detail, .. } => detail,
            FailureKind::Timeout => "",
        }
    }

    fn transport(cause: ErrorCause, detail: impl Into<String>) -> Self {
        FailureKind::Transport {
            cause,
            detail: detail.into(),
        }
    }
}

/// A failed exchange.
#[derive(Clone, Debug)]
pub struct Failure {
    /// What went wrong.
    pub kind: FailureKind,
    /// Handed to the connection (or the attempt began).
    pub sent: Instant,
    /// When the failure was seen.
    pub end: Instant,
    /// Request bytes sent, approximate.
    pub bytes_sent: u64,
}

/// Attempts of one HTTP/1.1 request when kept-alive connections turn out closed.
const MAX_ATTEMPTS: u32 = 3;

/// A pooled connection idle this long is probed for a close before it is used.
const PROBE_IDLE_AFTER: Duration = Duration::from_secs(1);

/// When the request was handed to a connection, settable from inside a `Send` future, and
/// whether a connection is being opened for it (a timeout then is a connect timeout).
#[derive(Debug)]
struct SentAt {
    base: Instant,
    offset_ns: AtomicU64,
    connecting: AtomicBool,
}

impl SentAt {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            offset_ns: AtomicU64::new(0),
            connecting: AtomicBool::new(false),
        }
    }

    fn connecting(&self, yes: bool) {
        self.connecting.store(yes, Ordering::Relaxed);
    }

    fn set(&self, at: Instant) {
        let ns =
            u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        self.offset_ns.store(ns, Ordering::Relaxed);
    }

    fn get(&self) -> Instant {
        self.base + Duration::from_nanos(self.offset_ns.load(Ordering::Relaxed))
    }
}

type H2 = http2::SendRequest<Full<Bytes>>;

/// One HTTP/1.1 connection owned by one VU (see [`Client::send_owned`]).
#[derive(Debug, Default)]
pub struct OwnedConn {
    conn: Option<h1::Conn>,
    permit: Option<OwnedSemaphorePermit>,
}

/// A client of one target with a bounded pool of keep-alive connections.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    target: Target,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<(h1::Conn, Instant)>>,
    h2: tokio::sync::Mutex<Option<H2>>,
}

impl Client {
    /// A client with at most `target.max_connections` open connections.
    pub fn new(target: Target) -> Self {
        let permits = Arc::new(Semaphore::new(target.max_connections));
        Self {
            inner: Arc::new(Inner {
                target,
                permits,
                idle: Mutex::new(Vec::new()),
                h2: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// Sends `req` and reads the whole response, within the target's timeout.
    pub async fn send(&self, req: &Prepared) -> Result<Exchange, Failure> {
        self.send_ids(req, TraceIds::fresh()).await
    }

    /// Like [`Client::send`], with the ids (and probe slot) the request carries.
    pub async fn send_ids(&self, req: &Prepared, ids: TraceIds) -> Result<Exchange, Failure> {
        let sent = SentAt::new();
        self.within_timeout(req, &sent, self.exchange(req, &sent, ids))
            .await
    }

    /// Runs `exchange` within the target's timeout; past it, a timeout failure (a `connect`
    /// one while a connection was being opened).
    async fn within_timeout(
        &self,
        req: &Prepared,
        sent: &SentAt,
        exchange: impl Future<Output = Result<Exchange, Failure>>,
    ) -> Result<Exchange, Failure> {
        let timeout = self.inner.target.timeout;
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Failure {
                kind: if sent.connecting.load(Ordering::Relaxed) {
                    FailureKind::Connect {
                        cause: ErrorCause::Connect,
                        detail: format!(
                            "connection timed out after {}",
                            humantime::format_duration(timeout)
                        ),
                    }
                } else {
                    FailureKind::Timeout
                },
                sent: sent.get(),
                end: Instant::now(),
                bytes_sent: req.approx_sent,
            }),
        }
    }

    /// An HTTP/2 request with fresh trace headers.
    fn build_h2(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
        ids: TraceIds,
    ) -> Request<Full<Bytes>> {
        let mut r = Request::new(Full::new(body.clone()));
        *r.method_mut() = method.clone();
        *r.uri_mut() = uri.clone();
        let mut headers = headers.clone();
        let (traceparent, request_id) = ids.headers();
        if let Some(v) = headers.get_mut(TRACEPARENT) {
            *v = traceparent;
        }
        if let Some(v) = headers.get_mut(REQUEST_ID) {
            *v = request_id;
        }
        if let Some(slot) = ids.probe {
            headers.insert(PROBE_HEADER, HeaderValue::from(slot));
        }
        *r.headers_mut() = headers;
        *r.version_mut() = http::Version::HTTP_2;
        r
    }

    async fn exchange(
        &self,
        req: &Prepared,
        sent: &SentAt,
        ids: TraceIds,
    ) -> Result<Exchange, Failure> {
        let fail = |kind, sent: Instant| Failure {
            kind,
            sent,
            end: Instant::now(),
            bytes_sent: req.approx_sent,
        };
        let template = match &req.wire {
            Wire::H1(t) => t,
            Wire::H2 {
                method,
                uri,
                headers,
                body,
            } => {
                sent.connecting(true);
                let sender = self.h2_sender().await;
                sent.connecting(false);
                let mut sender = sender.map_err(|k| fail(k, sent.get()))?;
                let t = Instant::now();
                sent.set(t);
                let resp = sender
                    .send_request(Self::build_h2(method, uri, headers, body, ids))
                    .await
                    .map_err(|e| {
                        fail(
                            FailureKind::transport(ErrorCause::of_hyper(&e), e.to_string()),
                            t,
                        )
                    })?;
                return read_response(resp, req, t, ids)
                    .await
                    .map_err(|k| fail(k, t));
            }
        };
        let Ok(_permit) = self.inner.permits.clone().acquire_owned().await else {
            return Err(fail(
                FailureKind::transport(ErrorCause::Reset, "client closed"),
                sent.get(),
            ));
        };
        self.exchange_h1(req, template, sent, ids, Slot::Pool).await
    }

    /// Whether `vus` virtual users can each own one HTTP/1.1 connection within
    /// `maxConnections` (then [`Client::send_owned`] skips the pool).
    pub fn can_dedicate(&self, vus: usize) -> bool {
        !self.inner.target.http2 && vus <= self.inner.target.max_connections
    }

    /// Like [`Client::send`], over a connection owned by the caller (one VU): no pool
    /// checkout and no permit per request. The connection holds one of the
    /// `maxConnections` permits for as long as `conn` lives, and is dropped (closed) on
    /// any failure or timeout.
    pub async fn send_owned(
        &self,
        conn: &mut OwnedConn,
        req: &Prepared,
        ids: TraceIds,
    ) -> Result<Exchange, Failure> {
        let sent = SentAt::new();
        self.within_timeout(req, &sent, self.exchange_owned(conn, req, &sent, ids))
            .await
    }

    async fn exchange_owned(
        &self,
        conn: &mut OwnedConn,
        req: &Prepared,
        sent: &SentAt,
        ids: TraceIds,
    ) -> Result<Exchange, Failure> {
        let Wire::H1(template) = &req.wire else {
            // HTTP/2 multiplexes one shared connection; nothing to own.
            return self.exchange(req, sent, ids).await;
        };
        if conn.permit.is_none() {
            match self.inner.permits.clone().acquire_owned().await {
                Ok(p) => conn.permit = Some(p),
                Err(_) => {
                    return Err(Failure {
                        kind: FailureKind::transport(ErrorCause::Reset, "client closed"),
                        sent: sent.get(),
                        end: Instant::now(),
                        bytes_sent: req.approx_sent,
                    });
                }
            }
        }
        self.exchange_h1(req, template, sent, ids, Slot::Owned(&mut conn.conn))
            .await
    }

    /// One HTTP/1.1 exchange over a connection from `slot`, retried (up to
    /// [`MAX_ATTEMPTS`], the last on a new connection) on
    /// a kept-alive connection the server closed meanwhile (closed or reset before any
    /// response byte). The connection goes back to `slot` only after a complete exchange
    /// that leaves it reusable, so a timeout or an error drops (closes) it.
    async fn exchange_h1(
        &self,
        req: &Prepared,
        template: &h1::Template,
        sent: &SentAt,
        ids: TraceIds,
        mut slot: Slot<'_>,
    ) -> Result<Exchange, Failure> {
        let fail = |kind, sent: Instant| Failure {
            kind,
            sent,
            end: Instant::now(),
            bytes_sent: req.approx_sent,
        };
        let (traceparent, request_id) = ids.header_bytes();
        let mut attempts = 0;
        let mut opened = None;
        loop {
            attempts += 1;
            // The last attempt always gets a fresh connection: when a server closes its idle
            // connections all at once (an idle timeout), the pool may hold several dead ones.
            let kept = if attempts < MAX_ATTEMPTS {
                slot.take(self)
            } else {
                None
            };
            let (mut conn, reused) = match kept {
                Some(c) => (c, true),
                None => {
                    sent.connecting(true);
                    let conn = self.connect_h1().await;
                    sent.connecting(false);
                    let (conn, connected) = conn.map_err(|k| fail(k, sent.get()))?;
                    opened = Some(connected);
                    (conn, false)
                }
            };
            let t = Instant::now();
            sent.set(t);
            match conn
                .exchange(template, &traceparent, &request_id, ids.probe)
                .await
            {
                Ok(r) => {
                    if r.reusable {
                        slot.keep(self, conn);
                    }
                    return Ok(Exchange {
                        status: r.status,
                        sent: t,
                        first_byte: if req.stream {
                            r.first_data.unwrap_or(r.end)
                        } else {
                            r.head
                        },
                        end: r.end,
                        bytes_sent: req.approx_sent,
                        bytes_received: r.received,
                        ids,
                        replica: r.replica,
                        connected: if reused { None } else { opened },
                    });
                }
                // A kept-alive connection the server closed meanwhile: retry on another
                // (never past MAX_ATTEMPTS: that attempt's connection is fresh).
                Err(h1::Error::Stale { .. }) if reused => {}
                Err(h1::Error::Stale { cause, detail } | h1::Error::Broken { cause, detail }) => {
                    return Err(fail(FailureKind::Transport { cause, detail }, t));
                }
            }
        }
    }

    /// The most recently used idle connection; one idle for [`PROBE_IDLE_AFTER`] is first
    /// probed, and dropped if the server closed it meanwhile (an idle timeout), which costs
    /// no request attempt.
    fn checkout(&self) -> Option<h1::Conn> {
        loop {
            let (mut conn, since) = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()?;
            if since.elapsed() < PROBE_IDLE_AFTER || !conn.closed_while_idle() {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, c: h1::Conn) {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((c, Instant::now()));
    }

    async fn connect_h1(&self) -> Result<(h1::Conn, Connected), FailureKind> {
        let target = &self.inner.target;
        let (stream, connected) = open(target.addr, target.tls.as_ref()).await?;
        Ok((h1::Conn::new(stream), connected))
    }
    async fn h2_sender(&self) -> Result<H2, FailureKind> {
        let mut slot = self.inner.h2.lock().await;
        if let Some(s) = slot.as_ref()
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        // Prior knowledge in clear, or `h2` agreed by ALPN over TLS (the only protocol
        // offered, so the handshake fails with a server that does not speak it).
        let target = &self.inner.target;
        let (stream, _) = open(target.addr, target.tls.as_ref()).await?;
        let io = TokioIo::new(stream);
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| FailureKind::Connect {
                cause: ErrorCause::of_hyper(&e),
                detail: e.to_string(),
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }
}

async fn read_response(
    resp: http::Response<hyper::body::Incoming>,
    req: &Prepared,
    sent: Instant,
    ids: TraceIds,
) -> Result<Exchange, FailureKind> {
    let head = Instant::now();
    let (parts, mut body) = resp.into_parts();
    let mut received: u64 = 17 + 2;
    for (k, v) in &parts.headers {
        received += (k.as_str().len() + v.len() + 4) as u64;
    }
    let mut first_byte = (!req.stream).then_some(head);
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| FailureKind::transport(ErrorCause::of_hyper(&e), e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            received += data.len() as u64;
            if first_byte.is_none() && !data.is_empty() {
                first_byte = Some(Instant::now());
            }
        }
    }
    let end = Instant::now();
    let replica = parts
        .headers
        .get(REPLICA_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(Arc::from);
    Ok(Exchange {
        status: parts.status.as_u16(),
        sent,
        first_byte: first_byte.unwrap_or(end),
        end,
        bytes_sent: req.approx_sent,
        bytes_received: received,
        ids,
        replica,
        connected: None,
    })
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    std::collections::hash_map::RandomState::new().hash_one(nanos) | 1
}

/// A fast thread-local pseudo-random `u64` (SplitMix64); not for cryptography.
pub fn random_u64() -> u64 {
    RNG.with(|c| {
        let mut z = c.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        c.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

fn nonzero_random() -> u64 {
    loop {
        let v = random_u64();
        if v != 0 {
            return v;
        }
    }
}

fn put_hex(out: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = out.len();
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> (4 * (n - 1 - i))) & 0xf) as usize];
    }
}

/// The ids one request carries: its W3C trace id (`traceparent`, sampled) and its
/// `X-Request-Id`, both random and nonzero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceIds {
    /// High and low halves of the 16-byte trace id.
    pub trace_id: (u64, u64),
    /// High and low halves of the 16-byte request id.
    pub request_id: (u64, u64),
    /// The parent span id in `traceparent`: the echo-server's server span is its child.
    pub span_id: u64,
    /// The metric probe slot it carries in `x-ricochet-probe`, if it is a probe.
    pub probe: Option<u16>,
}

impl TraceIds {
    /// Fresh random ids.
    pub fn fresh() -> Self {
        Self {
            trace_id: (nonzero_random(), random_u64()),
            request_id: (random_u64(), nonzero_random()),
            span_id: nonzero_random(),
            probe: None,
        }
    }

    /// The trace id's 16 bytes.
    pub fn trace_id_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.trace_id.0.to_be_bytes());
        b[8..].copy_from_slice(&self.trace_id.1.to_be_bytes());
        b
    }

    /// The request id as one number (its 32 hex digits are `X-Request-Id`).
    pub fn request_id(&self) -> u128 {
        (u128::from(self.request_id.0) << 64) | u128::from(self.request_id.1)
    }

    /// `traceparent` and `X-Request-Id` header values.
    pub fn headers(&self) -> (HeaderValue, HeaderValue) {
        let (tp, id) = self.header_bytes();
        (
            HeaderValue::from_bytes(&tp).unwrap_or(HeaderValue::from_static("")),
            HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("")),
        )
    }

    /// The `traceparent` and `X-Request-Id` values as bytes.
    pub fn header_bytes(&self) -> ([u8; 55], [u8; 32]) {
        let mut tp = *b"00-00000000000000000000000000000000-0000000000000000-01";
        put_hex(&mut tp[3..19], self.trace_id.0);
        put_hex(&mut tp[19..35], self.trace_id.1);
        put_hex(&mut tp[36..52], self.span_id);
        let mut id = [0u8; 32];
        put_hex(&mut id[..16], self.request_id.0);
        put_hex(&mut id[16..], self.request_id.1);
        (tp, id)
    }
}

/// Where an HTTP/1.1 exchange takes its kept-alive connection from and puts it back.
enum Slot<'a> {
    /// The client's shared idle pool.
    Pool,
    /// One virtual user's own connection.
    Owned(&'a mut Option<h1::Conn>),
}

impl Slot<'_> {
    fn take(&mut self, client: &Client) -> Option<h1::Conn> {
        match self {
            Slot::Pool => client.checkout(),
            Slot::Owned(conn) => conn.take(),
        }
    }

    fn keep(&mut self, client: &Client, conn: h1::Conn) {
        match self {
            Slot::Pool => client.checkin(conn),
            Slot::Owned(slot) => **slot = Some(conn),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_follows_the_scheme_and_a_bad_one_is_never_replaced() {
        // See: issue #15 (a missing or invalid port silently became 80).
        let port = |url: &str| {
            let uri: Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
            port_of(uri.authority().expect("authority"), 80)
        };
        assert_eq!(port("http://h"), Ok(80));
        assert_eq!(port("http://h/prefix"), Ok(80));
        assert_eq!(port("http://h:8080"), Ok(8080));
        assert_eq!(port("http://[::1]"), Ok(80));
        assert_eq!(port("http://[::1]:9"), Ok(9));
        assert_eq!(port("http://user:pw@h"), Ok(80));
        assert_eq!(port("http://user:pw@h:81"), Ok(81));
        assert_eq!(port("http://h:99999"), Err("99999".to_owned()));
        assert_eq!(port("http://h:65536"), Err("65536".to_owned()));
        assert_eq!(port("http://h:0"), Err("0".to_owned()));
        assert_eq!(port("http://h:"), Err(String::new()));
        assert_eq!(default_port("http"), Some(80));
        assert_eq!(default_port("https"), Some(443));
        assert_eq!(default_port("ftp"), None);
        assert_eq!(default_port(""), None);
    }

    #[tokio::test]
    async fn an_unusable_port_or_scheme_is_an_error_before_any_connection() {
        let resolve = |url: &str| {
            let crate::plan::TargetPlan::Url(t) = crate::testing::target(url) else {
                unreachable!("a URL target")
            };
            async move { Target::resolve(&t).await }
        };
        let e = resolve("http://127.0.0.1:99999").await.expect_err("port");
        assert_eq!(
            e.to_string(),
            "target http://127.0.0.1:99999: `99999` is not a usable port, expected 1 to 65535 (or no port: 80 for http://, 443 for https://)"
        );
        let e = resolve("ftp://127.0.0.1").await.expect_err("scheme");
        assert!(matches!(e, TargetError::Scheme { .. }), "{e}");
        let t = resolve("https://127.0.0.1").await.expect("https");
        assert_eq!(t.addr.port(), 443);
        assert!(t.tls.is_some());
        let t = resolve("http://127.0.0.1").await.expect("default port");
        assert_eq!(t.addr.port(), 80);
    }

    #[test]
    fn traceparent_is_sampled_with_nonzero_ids() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let ids = TraceIds::fresh();
            let (tp, id) = ids.headers();
            let tp = tp.to_str().map(str::to_owned).unwrap_or_default();
            let parts: Vec<&str> = tp.split('-').collect();
            assert_eq!(parts.len(), 4, "{tp}");
            assert_eq!(parts[0], "00");
            assert_eq!(parts[1].len(), 32);
            assert_eq!(parts[2].len(), 16);
            assert_eq!(parts[3], "01");
            assert_ne!(parts[1], "0".repeat(32));
            assert_ne!(parts[2], "0".repeat(16));
            assert!(
                tp.bytes()
                    .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert!(seen.insert(parts[1].to_owned()));
            assert_eq!(id.len(), 32);
            let hex: String = ids
                .trace_id_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(parts[1], hex);
            assert_eq!(
                id.to_str().ok(),
                Some(format!("{:032x}", ids.request_id()).as_str())
            );
        }
    }

    #[test]
    fn io_errors_read_as_short_phrases() {
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(describe_io(&e), "connection refused");
    }

    // The inline HTTP/1.1 path against scripted servers on loopback.

    use std::num::NonZeroU32;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn plan(method: Method, stream: bool) -> RequestPlan {
        RequestPlan {
            name: "r".into(),
            method,
            path_and_query: "/p?q=1".into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            weight: NonZeroU32::MIN,
            stream,
        }
    }

    /// Reads one request head (through the blank line); `None` at end of stream.
    async fn read_request(s: &mut tokio::net::TcpStream) -> Option<String> {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut b).await {
                Ok(1) => head.push(b[0]),
                _ => return None,
            }
        }
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    /// A server whose `respond(connection, request on it, head)` gives the bytes to write
    /// (as pieces, 30 ms apart) and whether to close afterwards.
    async fn server<F>(respond: F) -> SocketAddr
    where
        F: Fn(usize, usize, &str) -> (Vec<Vec<u8>>, bool) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            let mut conn = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                let respond = respond.clone();
                let c = conn;
                conn += 1;
                tokio::spawn(async move {
                    let mut n = 0;
                    while let Some(head) = read_request(&mut s).await {
                        let (pieces, close) = respond(c, n, &head);
                        n += 1;
                        for (i, p) in pieces.iter().enumerate() {
                            if i > 0 {
                                tokio::time::sleep(Duration::from_millis(30)).await;
                            }
                            if s.write_all(p).await.is_err() {
                                return;
                            }
                        }
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn client(addr: SocketAddr) -> Client {
        Client::new(Target::loopback(addr, 4, Duration::from_secs(2)))
    }

    fn prepared(c: &Client, method: Method, stream: bool) -> Prepared {
        c.target().prepare(&plan(method, stream)).expect("prepare")
    }

    fn transport_cause(r: Result<Exchange, Failure>) -> (ErrorCause, String) {
        match r {
            Err(Failure {
                kind: FailureKind::Transport { cause, detail },
                ..
            }) => (cause, detail),
            other => panic!("expected a transport failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn content_length_and_chunked_bodies_are_read_whole_and_the_connection_reused() {
        let addr = server(|conn, n, head| {
            assert_eq!(conn, 0, "one kept-alive connection");
            assert!(head.starts_with("GET /p?q=1 HTTP/1.1\r\n"), "{head}");
            let body = if n % 2 == 0 {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec()
            } else {
                // Chunks with an extension, split in odd places, and a trailer.
                b"HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;x=y\r\nabc\r\n\
                  10\r\n0123456789abcdef\r\n0\r\nx-trailer: 1\r\n\r\n"
                    .to_vec()
            };
            let (a, b) = body.split_at(body.len() / 2);
            (vec![a.to_vec(), b.to_vec()], false)
        })
        .await;
        let c = client(addr);
        let mut owned = OwnedConn::default();
        let req = prepared(&c, Method::GET, false);
        for n in 0..4 {
            let ex = if n < 2 {
                c.send(&req).await
            } else {
                c.send_owned(&mut owned, &req, TraceIds::fresh()).await
            };
            let ex = ex.expect("exchange");
            if n % 2 == 0 {
                assert_eq!(ex.status, 200);
                assert_eq!(ex.bytes_received, 38 + 5);
            } else {
                assert_eq!(ex.status, 201);
                assert_eq!(ex.bytes_received, 58 + 19);
            }
            assert!(ex.sent <= ex.first_byte && ex.first_byte <= ex.end);
            if n == 1 {
                // The pooled connection goes to the VU for the rest.
                let pooled = c.checkout().expect("pooled connection kept");
                owned.conn = Some(pooled);
            }
        }
        assert_eq!(req.approx_sent, {
            let Wire::H1(t) = &req.wire else { panic!() };
            t.len() as u64
        });
    }

    #[tokio::test]
    async fn every_request_carries_the_ids_of_its_exchange() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let addr = server(move |_, _, head| {
            log.lock().expect("log").push(head.to_owned());
            (vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()], false)
        })
        .await;
        let c = client(addr);
        let req = prepared(&c, Method::GET, false);
        let mut ids = Vec::new();
        for _ in 0..3 {
            let ex = c.send(&req).await.expect("exchange");
            assert_eq!(ex.status, 204);
            ids.push(ex.ids);
        }
        let heads = seen.lock().expect("log").clone();
        for (head, ids) in heads.iter().zip(&ids) {
            let tid: String = ids
                .trace_id_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert!(
                head.contains(&format!("\r\ntraceparent: 00-{tid}-")),
                "{head}"
            );
            assert!(head.contains(&format!("\r\nx-request-id: {:032x}\r\n", ids.request_id())));
            assert!(head.contains(&format!("\r\nhost: {addr}\r\n")), "{head}");
        }
    }

    #[tokio::test]
    async fn a_probe_carries_its_slot_and_the_answering_replica_is_kept() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let addr = server(move |_, n, head| {
            log.lock().expect("log").push(head.to_owned());
            let name = if n < 2 { "pod-a" } else { "pod-b" };
            let resp = format!("HTTP/1.1 204 No Content\r\nX-Ricochet-Replica: {name}\r\n\r\n");
            (vec![resp.into_bytes()], false)
        })
        .await;
        let c = client(addr);
        let req = prepared(&c, Method::GET, false);
        let mut replicas = Vec::new();
        for probe in [Some(7), None, Some(63)] {
            let mut ids = TraceIds::fresh();
            ids.probe = probe;
            let ex = c.send_ids(&req, ids).await.expect("exchange");
            replicas.push(ex.replica.as_deref().map(str::to_owned));
        }
        let heads = seen.lock().expect("log").clone();
        assert_eq!(
            heads[0].matches("\r\nx-ricochet-probe: 7\r\n").count(),
            1,
            "{}",
            heads[0]
        );
        assert!(!heads[1].contains("x-ricochet-probe"), "{}", heads[1]);
        assert!(
            heads[2].ends_with("\r\nx-ricochet-probe: 63\r\n\r\n"),
            "{}",
            heads[2]
        );
        let want = ["pod-a", "pod-a", "pod-b"].map(|n| Some(n.to_owned()));
        assert_eq!(replicas, want);
    }

    #[tokio::test]
    async fn connection_close_and_bodies_delimited_by_close_are_read_then_not_reused() {
        let addr = server(|_, n, _| {
            assert_eq!(n, 0, "a closed connection carries no second request");
            (
                vec![b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close".to_vec()],
                true,
            )
        })
        .await;
        let c = client(addr);
        let req = prepared(&c, Method::GET, false);
        for _ in 0..2 {
            let ex = c.send(&req).await.expect("exchange");
            assert_eq!(ex.status, 200);
            assert_eq!(ex.bytes_received, 38 + 11);
            assert!(c.checkout().is_none());
        }
    }

    #[tokio::test]
    async fn head_and_304_responses_have_no_body_whatever_their_headers_say() {
        let addr = server(|_, n, head| {
            let status = if head.starts_with("HEAD ") { 200 } else { 304 };
            assert!(n < 2);
            (
                vec![format!("HTTP/1.1 {status} X\r\nContent-Length: 100\r\n\r\n").into_bytes()],
                false,
            )
        })
        .await;
        let c = client(addr);
        let mut owned = OwnedConn::default();
        for m in [Method::HEAD, Method::GET] {
            let ex = c
                .send_owned(&mut owned, &prepared(&c, m, false), TraceIds::fresh())
                .await
                .expect("exchange");
            assert!(ex.status == 200 || ex.status == 304);
        }
    }

    #[tokio::test]
    async fn a_kept_alive_connection_the_server_closed_is_retried_on_a_fresh_one() {
        // Every connection answers one request, then closes without saying so.
        let conns = Arc::new(AtomicU64::new(0));
        let count = conns.clone();
        let addr = server(move |_, _, _| {
            count.fetch_add(1, Ordering::Relaxed);
            (
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()],
                true,
            )
        })
        .await;
        let c = client(addr);
        let mut owned = OwnedConn::default();
        let req = prepared(&c, Method::GET, false);
        for _ in 0..3 {
            c.send(&req).await.expect("pooled exchange");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..3 {
            c.send_owned(&mut owned, &req, TraceIds::fresh())
                .await
                .expect("owned exchange");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(conns.load(Ordering::Relaxed), 6);
    }

    /// A client whose pool holds three connections the server has closed (it answers one
    /// request per connection, then closes without saying so), and a GET to send.
    async fn pool_of_three_closed_connections() -> (Client, Prepared) {
        let addr = server(|_, _, _| {
            (
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()],
                true,
            )
        })
        .await;
        let c = client(addr);
        let req = prepared(&c, Method::GET, false);
        let (a, b, d) = tokio::join!(c.send(&req), c.send(&req), c.send(&req));
        for r in [a, b, d] {
            r.expect("first exchanges");
        }
        assert_eq!(pooled(&c), 3);
        (c, req)
    }

    fn pooled(c: &Client) -> usize {
        c.inner.idle.lock().map(|i| i.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn a_pool_of_connections_the_server_all_closed_still_serves_the_next_request() {
        // Like an idle timeout: every pooled connection is closed by the server at once.
        let (c, req) = pool_of_three_closed_connections().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ex = c
            .send(&req)
            .await
            .expect("served after two dead pooled connections");
        assert_eq!(ex.status, 200);
    }

    #[tokio::test]
    async fn pooled_connections_closed_while_idle_are_dropped_before_any_attempt() {
        let (c, req) = pool_of_three_closed_connections().await;
        tokio::time::sleep(PROBE_IDLE_AFTER + Duration::from_millis(100)).await;
        c.send(&req).await.expect("served on a new connection");
        // All three dead ones were dropped at checkout; only the new one is pooled. (By
        // attempts, two would have been tried and dropped and one left in the pool.)
        assert_eq!(pooled(&c), 1);
    }

    #[tokio::test]
    async fn a_streamed_body_has_its_first_byte_at_the_first_chunk() {
        let addr = server(|_, _, _| {
            (
                vec![
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                    b"5\r\nfirst\r\n".to_vec(),
                    b"6\r\nsecond\r\n".to_vec(),
                    b"0\r\n\r\n".to_vec(),
                ],
                false,
            )
        })
        .await;
        let c = client(addr);
        for stream in [true, false] {
            let ex = c
                .send(&prepared(&c, Method::GET, stream))
                .await
                .expect("exchange");
            let first = ex.first_byte.duration_since(ex.sent);
            let last = ex.end.duration_since(ex.first_byte);
            if stream {
                // Head, then 30 ms to the first chunk, 60 ms more to the end.
                assert!(first >= Duration::from_millis(25), "{first:?}");
                assert!(last >= Duration::from_millis(50), "{last:?}");
            } else {
                assert!(first < Duration::from_millis(25), "{first:?}");
                assert!(last >= Duration::from_millis(75), "{last:?}");
            }
            assert_eq!(ex.bytes_received, 47 + 11);
        }
    }

    #[tokio::test]
    async fn oversized_malformed_and_truncated_responses_are_clear_transport_failures() {
        let addr = server(|conn, _, _| {
            let bytes = match conn {
                0 => {
                    let mut h = b"HTTP/1.1 200 OK\r\nx-filler: ".to_vec();
                    h.resize(70 * 1024, b'a');
                    h
                }
                1 => b"HTTP/1.1 2xx Nope\r\n\r\n".to_vec(),
                2 => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec(),
                3 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
                _ => Vec::new(),
            };
            (vec![bytes], true)
        })
        .await;
        let c = client(addr);
        let req = prepared(&c, Method::GET, false);
        let protocol = ErrorCause::Protocol;
        assert_eq!(
            transport_cause(c.send(&req).await),
            (protocol, "response head exceeds 64 KiB".to_owned())
        );
        let (cause, detail) = transport_cause(c.send(&req).await);
        assert_eq!(cause, protocol);
        assert!(
            detail.starts_with("malformed response head: "),
            "malformed status"
        );
        assert_eq!(
            transport_cause(c.send(&req).await),
            (
                ErrorCause::Reset,
                "connection closed before message completed".to_owned()
            )
        );
        assert_eq!(
            transport_cause(c.send(&req).await),
            (protocol, "invalid chunk size".to_owned())
        );
        // A fresh connection closed before any byte is not retried.
        assert_eq!(
            transport_cause(c.send(&req).await),
            (
                ErrorCause::Reset,
                "connection closed before message completed".to_owned()
            )
        );
    }

    #[tokio::test]
    async fn a_timeout_drops_the_connection() {
        let addr = server(|_, n, _| {
            if n == 0 {
                (
                    vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no".to_vec()],
                    false,
                )
            } else {
                (vec![], true)
            }
        })
        .await;
        let c = Client::new(Target::loopback(addr, 1, Duration::from_millis(100)));
        let mut owned = OwnedConn::default();
        let req = prepared(&c, Method::GET, false);
        let r = c.send_owned(&mut owned, &req, TraceIds::fresh()).await;
        assert!(
            matches!(
                r,
                Err(Failure {
                    kind: FailureKind::Timeout,
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(owned.conn.is_none());
    }

    // Classification of failures by cause. See: issue "runs that measured nothing".

    #[test]
    fn io_errors_are_classified_by_kind_not_by_message() {
        use std::io::{Error, ErrorKind as K};
        let connect = |k| ErrorCause::of_connect(&Error::from(k));
        assert_eq!(connect(K::ConnectionRefused), ErrorCause::Refused);
        assert_eq!(connect(K::ConnectionReset), ErrorCause::Reset);
        assert_eq!(connect(K::TimedOut), ErrorCause::Connect);
        assert_eq!(connect(K::HostUnreachable), ErrorCause::Connect);
        assert_eq!(connect(K::AddrNotAvailable), ErrorCause::Connect);
        let open = |k| ErrorCause::of_io(&Error::from(k));
        for k in [
            K::ConnectionReset,
            K::ConnectionAborted,
            K::BrokenPipe,
            K::UnexpectedEof,
            K::NotConnected,
        ] {
            assert_eq!(open(k), ErrorCause::Reset, "{k:?}");
        }
        assert_eq!(open(K::TimedOut), ErrorCause::Timeout);
        assert_eq!(open(K::InvalidData), ErrorCause::Protocol);
        assert_eq!(open(K::NetworkUnreachable), ErrorCause::Connect);
        assert_eq!(open(K::ConnectionRefused), ErrorCause::Refused);
        // The message plays no part.
        assert_eq!(
            ErrorCause::of_io(&Error::other("connection timed out")),
            ErrorCause::Reset
        );
    }

    #[test]
    fn causes_have_stable_names_and_indexes() {
        let names: Vec<_> = ErrorCause::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "timeout", "refused", "reset", "dns", "connect", "protocol", "tls"
            ]
        );
        for (i, c) in ErrorCause::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        assert_eq!(FailureKind::Timeout.cause(), ErrorCause::Timeout);
        assert_eq!(FailureKind::Timeout.detail(), "");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_refused_connect_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let c = client(addr);
        let req = prepared(&c, Method::GET, false);
        let r = c.send(&req).await;
        match r {
            Err(Failure {
                kind: FailureKind::Connect { cause, detail },
                ..
            }) => {
                assert_eq!(cause, ErrorCause::Refused);
                assert_eq!(detail, "connection refused");
            }
            other => panic!("expected a refused connect, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_timeout_while_connecting_is_a_connect_failure_not_a_timeout() {
        let c = Client::new(Target::loopback(
            SocketAddr::from(([127, 0, 0, 1], 9)),
            1,
            Duration::from_millis(50),
        ));
        let req = prepared(&c, Method::GET, false);
        let sent = SentAt::new();
        sent.connecting(true);
        let r = c
            .within_timeout(&req, &sent, std::future::pending())
            .await
            .expect_err("times out");
        assert_eq!(r.kind.cause(), ErrorCause::Connect);
        assert_eq!(r.kind.detail(), "connection timed out after 50ms");
        // Once connected, the same wait is a request timeout.
        sent.connecting(false);
        let r = c
            .within_timeout(&req, &sent, std::future::pending())
            .await
            .expect_err("times out");
        assert!(matches!(r.kind, FailureKind::Timeout), "{r:?}");
    }

    /// An HTTP/2 client of `addr`, whose server does what the test says.
    fn h2_client(addr: SocketAddr) -> (Client, Prepared) {
        let mut target = Target::loopback(addr, 1, Duration::from_secs(2));
        target.http2 = true;
        let c = Client::new(target);
        let req = prepared(&c, Method::GET, false);
        (c, req)
    }

    #[tokio::test]
    async fn http2_errors_are_classified_from_hyper_not_from_its_messages() {
        // A server that answers the HTTP/2 preface in HTTP/1.1: not valid HTTP/2.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut b = [0u8; 64];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let (c, req) = h2_client(addr);
        let r = c.send(&req).await.expect_err("not HTTP/2");
        assert_eq!(r.kind.cause(), ErrorCause::Protocol, "{r:?}");

        // A server that closes every connection at once: reset.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        let (c, req) = h2_client(addr);
        let r = c.send(&req).await.expect_err("closed");
        assert_eq!(r.kind.cause(), ErrorCause::Reset, "{r:?}");
    }
}
