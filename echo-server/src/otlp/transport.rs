//! Sends encoded OTLP export requests: OTLP/gRPC (unary `Export` over HTTP/2, prior
//! knowledge) or OTLP/HTTP with protobuf bodies, over hyper's pooled client. Like the
//! opentelemetry-otlp exporters it replaces: headers from `OTEL_EXPORTER_OTLP_HEADERS` (or
//! the per-signal variable), retryable failures retried up to 3 times with exponential
//! backoff (100 ms doubling to at most 1.6 s, plus up to 100 ms of jitter), everything
//! bounded by the export timeout; no compression, no TLS (`https://` endpoints fail).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf as _, Bytes};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{OtlpConfig, OtlpProtocol};
use crate::error::{Error, Result};

/// Which signal a transport carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Log records.
    Logs,
}

impl Signal {
    /// `traces` or `logs`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Logs => "logs",
        }
    }

    fn grpc_path(self) -> &'static str {
        match self {
            Self::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Self::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }

    fn headers_var(self) -> &'static str {
        match self {
            Self::Traces => "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            Self::Logs => "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        }
    }
}

/// Why an export call failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// No response: connection refused or reset, request not sent.
    #[error("cannot reach the OTLP endpoint: {0}")]
    Transport(String),
    /// The response body could not be read.
    #[error("OTLP response broke off: {0}")]
    Body(String),
    /// The endpoint answered with a non-success HTTP status.
    #[error("OTLP endpoint answered HTTP {0}")]
    HttpStatus(u16),
    /// The gRPC call ended with a non-OK status.
    #[error("OTLP export failed with gRPC status {code}: {message}")]
    Grpc {
        /// The `grpc-status` code.
        code: u32,
        /// The `grpc-message`, if any.
        message: String,
    },
    /// No answer within the export timeout (retries included).
    #[error("OTLP export timed out after {0:?}")]
    Timeout(Duration),
}

impl ExportError {
    /// Whether the OTLP specification allows retrying.
    fn retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::HttpStatus(s) => matches!(s, 429 | 502 | 503 | 504),
            // CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS.
            Self::Grpc { code, .. } => matches!(code, 1 | 4 | 10 | 11 | 14 | 15),
            Self::Body(_) | Self::Timeout(_) => false,
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

const MAX_RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_millis(1600);
const MAX_JITTER_NANOS: u32 = 100_000_000;

/// An OTLP endpoint for one signal.
#[derive(Debug)]
pub struct Transport {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    grpc: bool,
    headers: HeaderMap,
    timeout: Duration,
}

impl Transport {
    /// A transport for `signal` to `otlp`, each call bounded by `timeout`.
    pub fn new(otlp: &OtlpConfig, signal: Signal, timeout: Duration) -> Result<Self> {
        let grpc = otlp.protocol == OtlpProtocol::Grpc;
        let base = otlp.endpoint.trim_end_matches('/');
        let url = match otlp.protocol {
            // gRPC has no path of its own: the method is the path.
            OtlpProtocol::Grpc => {
                let parsed: Uri = base.parse().map_err(|e| invalid(otlp, signal, &e))?;
                let authority = parsed.authority().map(|a| a.as_str()).unwrap_or_default();
                let scheme = parsed.scheme_str().unwrap_or("http");
                format!("{scheme}://{authority}{}", signal.grpc_path())
            }
            OtlpProtocol::HttpProtobuf => format!("{base}/v1/{}", signal.as_str()),
        };
        let uri: Uri = url.parse().map_err(|e| invalid(otlp, signal, &e))?;
        let mut headers = env_headers(signal);
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("echo-server/", env!("CARGO_PKG_VERSION"))),
        );
        if grpc {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert("te", HeaderValue::from_static("trailers"));
        } else {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            );
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(grpc)
            .build(connector);
        Ok(Self {
            client,
            uri,
            grpc,
            headers,
            timeout,
        })
    }

    /// Bytes to leave free just before a request for [`Self::export`] (the gRPC message
    /// prefix).
    pub fn prefix_len(&self) -> usize {
        if self.grpc { 5 } else { 0 }
    }

    /// Sends the request that follows [`Self::prefix_len`] free bytes at `buf[start..]`.
    pub async fn export(&self, mut buf: Vec<u8>, start: usize) -> Result<(), ExportError> {
        if self.grpc {
            // Length-prefixed message: uncompressed flag, then the length, big-endian.
            let len = u32::try_from(buf.len() - start - 5).unwrap_or(u32::MAX);
            buf[start] = 0;
            buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
        }
        let mut body = Bytes::from(buf);
        body.advance(start);
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            let left = self.timeout.saturating_sub(started.elapsed());
            let error = match tokio::time::timeout(left, self.attempt(body.clone())).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => return Err(ExportError::Timeout(self.timeout)),
            };
            if attempt == MAX_RETRIES || !error.retryable() {
                return Err(error);
            }
            attempt += 1;
            let pause = (backoff + jitter()).min(MAX_BACKOFF);
            if pause >= self.timeout.saturating_sub(started.elapsed()) {
                return Err(error);
            }
            tokio::time::sleep(pause).await;
            backoff = backoff.saturating_mul(2);
        }
    }

    async fn attempt(&self, body: Bytes) -> Result<(), ExportError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| ExportError::Transport(chain(&e)))?;
        let (parts, body) = resp.into_parts();
        // Read the whole answer, so that the connection can be reused.
        let collected = body
            .collect()
            .await
            .map_err(|e| ExportError::Body(chain(&e)))?;
        if !parts.status.is_success() {
            return Err(ExportError::HttpStatus(parts.status.as_u16()));
        }
        if !self.grpc {
            return Ok(());
        }
        // A trailers-only answer carries the status in its headers.
        let status = parts
            .headers
            .get("grpc-status")
            .or_else(|| collected.trailers().and_then(|t| t.get("grpc-status")));
        let code = status
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        match code {
            Some(0) => Ok(()),
            code => {
                let message = parts
                    .headers
                    .get("grpc-message")
                    .or_else(|| collected.trailers().and_then(|t| t.get("grpc-message")))
                    .map(|v| crate::config::percent_decode(&String::from_utf8_lossy(v.as_bytes())))
                    .unwrap_or_else(|| "no grpc-status in the answer".to_owned());
                // A missing or unparsable status is UNKNOWN (2).
                Err(ExportError::Grpc {
                    code: code.unwrap_or(2),
                    message,
                })
            }
        }
    }
}

fn invalid(otlp: &OtlpConfig, signal: Signal, e: &dyn std::error::Error) -> Error {
    Error::Exporter {
        signal: signal.as_str(),
        endpoint: otlp.endpoint.clone(),
        reason: e.to_string(),
    }
}

/// Headers from the per-signal variable, else `OTEL_EXPORTER_OTLP_HEADERS`: `k=v` pairs
/// separated by commas, values percent-decoded; invalid entries are skipped.
fn env_headers(signal: Signal) -> HeaderMap {
    let raw = std::env::var(signal.headers_var())
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
        .unwrap_or_default();
    parse_headers(&raw)
}

fn parse_headers(raw: &str) -> HeaderMap {
    raw.split_terminator(',')
        .filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            let name = HeaderName::from_bytes(k.trim().as_bytes()).ok()?;
            let value = HeaderValue::from_str(&crate::config::percent_decode(v.trim())).ok()?;
            Some((name, value))
        })
        .collect()
}

fn jitter() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_nanos(u64::from(nanos % MAX_JITTER_NANOS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_like_the_otlp_exporters() {
        let h = parse_headers("api-key=a%20b, x-tenant = t1 ,broken,bad name=1");
        assert_eq!(h.get("api-key").unwrap(), "a b");
        assert_eq!(h.get("x-tenant").unwrap(), "t1");
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn grpc_uri_keeps_the_authority_and_uses_the_method_path() {
        let cfg = OtlpConfig {
            endpoint: "http://127.0.0.1:4317/".into(),
            protocol: OtlpProtocol::Grpc,
        };
        let t = Transport::new(&cfg, Signal::Logs, Duration::from_secs(1)).unwrap();
        assert_eq!(
            t.uri.to_string(),
            "http://127.0.0.1:4317/opentelemetry.proto.collector.logs.v1.LogsService/Export"
        );
        let cfg = OtlpConfig {
            endpoint: "http://collector:4318".into(),
            protocol: OtlpProtocol::HttpProtobuf,
        };
        let t = Transport::new(&cfg, Signal::Traces, Duration::from_secs(1)).unwrap();
        assert_eq!(t.uri.to_string(), "http://collector:4318/v1/traces");
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(ExportError::Transport("refused".into()).retryable());
        assert!(ExportError::HttpStatus(503).retryable());
        assert!(!ExportError::HttpStatus(400).retryable());
        let grpc = |code| ExportError::Grpc {
            code,
            message: String::new(),
        };
        assert!(grpc(14).retryable());
        assert!(!grpc(3).retryable());
        assert!(!ExportError::Timeout(Duration::from_secs(1)).retryable());
    }
}
