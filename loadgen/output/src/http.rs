//! One POST to one target, classified as accepted, rejected (not to be retried) or
//! worth retrying.
//!
//! The client is hyper-util's pooled client (HTTP/1.1, and HTTP/2 where TLS offers it)
//! over hyper-rustls, with rustls on an explicit `ring` provider (no process-global
//! default is installed), the system's root certificates plus the target's CA file.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::target::{Auth, Protocol, Target};
use crate::{OutputError, Result};

/// `User-Agent` of every push.
pub(crate) const USER_AGENT_VALUE: &str = concat!("ricochet-loadgen/", env!("CARGO_PKG_VERSION"));

/// Largest answer body read (for reasons and OTLP partial success); the rest is ignored.
const MAX_ANSWER: usize = 64 * 1024;

/// How one POST went.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A 2xx, with its body.
    Accepted(Bytes),
    /// A 4xx other than 429: the data was refused and sending it again will not help.
    Rejected(String),
    /// A 5xx, a 429, a timeout or a connection error: worth another try, after
    /// `Retry-After` if the answer gave one.
    Retry {
        /// One sentence naming the target.
        reason: String,
        /// The answer's `Retry-After` in seconds, if any.
        after: Option<Duration>,
    },
}

/// The client of one target, with its fixed headers.
pub(crate) struct Poster {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: http::Uri,
    headers: HeaderMap,
    timeout: Duration,
    label: String,
}

impl Poster {
    /// Builds the client: reads the CA file, prepares the headers.
    pub(crate) fn new(target: &Target) -> Result<Self> {
        let url = target.request_url()?;
        let label = target.label();
        target.validate_timeout()?;
        let uri: http::Uri = url.as_str().parse().map_err(|e| OutputError::Url {
            protocol: target.protocol.name(),
            url: label.clone(),
            reason: format!("{e}"),
        })?;
        let tls = tls_config(target, url.scheme() == "https", &label)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(target.timeout.min(Duration::from_secs(5))));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(2)
            .build(https);
        Ok(Self {
            client,
            uri,
            headers: headers(target, &label)?,
            timeout: target.timeout,
            label,
        })
    }

    /// POSTs `body` once, within the target's timeout.
    pub(crate) async fn post(&self, body: Bytes) -> Answer {
        let mut req = http::Request::post(self.uri.clone());
        if let Some(h) = req.headers_mut() {
            h.clone_from(&self.headers);
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => {
                return Answer::Rejected(format!("{}: cannot build the request: {e}", self.label));
            }
        };
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| self.transport_reason(&e, e.is_connect()))?;
            let (parts, body) = resp.into_parts();
            // A body larger than we read is cut: its start says enough.
            let body = match Limited::new(body, MAX_ANSWER).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => Bytes::new(),
            };
            Ok::<_, String>((parts, body))
        };
        let (parts, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(reason)) => {
                return Answer::Retry {
                    reason,
                    after: None,
                };
            }
            Err(_) => {
                return Answer::Retry {
                    reason: format!("{}: timed out after {:?}", self.label, self.timeout),
                    after: None,
                };
            }
        };
        let status = parts.status;
        if status.is_success() {
            return Answer::Accepted(body);
        }
        let reason = format!("{}: answered {}", self.label, describe(status, &body));
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            let after = parts
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_secs);
            Answer::Retry { reason, after }
        } else {
            Answer::Rejected(reason)
        }
    }

    fn transport_reason(&self, e: &(dyn std::error::Error + 'static), connect: bool) -> String {
        // The innermost cause says most ("Connection refused (os error 111)").
        let mut msg = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            msg = s.to_string();
            src = s.source();
        }
        let kind = if connect {
            "could not connect"
        } else {
            "request failed"
        };
        format!("{}: {kind}: {msg}", self.label)
    }
}

/// `400 Bad Request `out of order sample``: the status and the start of the body,
/// whitespace runs folded.
fn describe(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let snippet: String = folded.chars().take(300).collect();
    let status = match status.canonical_reason() {
        Some(r) => format!("{} {r}", status.as_u16()),
        None => status.as_u16().to_string(),
    };
    if snippet.is_empty() {
        status
    } else if snippet.len() < folded.len() {
        format!("{status} `{snippet}…`")
    } else {
        format!("{status} `{snippet}`")
    }
}

fn headers(target: &Target, label: &str) -> Result<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    h.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    if target.protocol == Protocol::RemoteWrite {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        h.insert(
            HeaderName::from_static("x-prometheus-remote-write-version"),
            HeaderValue::from_static("0.1.0"),
        );
    }
    if let Some(t) = &target.tenant {
        let v = HeaderValue::from_str(t).map_err(|_| OutputError::Tenant {
            target: label.to_owned(),
            tenant: t.clone(),
        })?;
        h.insert(HeaderName::from_static("x-scope-orgid"), v);
    }
    if let Some(auth) = &target.auth {
        let raw = match auth {
            Auth::Bearer(token) => format!("Bearer {}", token.expose()),
            Auth::Basic { user, password } => {
                let b64 = base64::engine::general_purpose::STANDARD
                    .encode(format!("{user}:{}", password.expose()));
                format!("Basic {b64}")
            }
        };
        let mut v = HeaderValue::from_str(&raw).map_err(|_| OutputError::Credentials {
            target: label.to_owned(),
        })?;
        v.set_sensitive(true);
        h.insert(AUTHORIZATION, v);
    }
    Ok(h)
}

/// rustls on ring: the system roots (for `https`) plus the target's CA file.
fn tls_config(target: &Target, https: bool, label: &str) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        // Unreadable system certs are skipped; a custom CA still works without them.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    if let Some(path) = &target.ca_file {
        let ca_error = |reason: String| OutputError::Ca {
            path: path.clone(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| ca_error(e.to_string()))?;
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(ca_error("it holds no CERTIFICATE block".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OutputError::Client {
            target: label.to_owned(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Secret;

    #[test]
    fn remote_write_headers_name_the_protocol_tenant_and_sensitive_auth() {
        let target = Target::remote_write("http://m/api/v1/push")
            .with_tenant("team-a")
            .with_auth(Auth::Basic {
                user: "u".into(),
                password: Secret::new("hunter2"),
            });
        let h = headers(&target, "rw").unwrap();
        assert_eq!(h[CONTENT_ENCODING], "snappy");
        assert_eq!(h[CONTENT_TYPE], "application/x-protobuf");
        assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
        assert_eq!(h["x-scope-orgid"], "team-a");
        assert!(
            h[USER_AGENT]
                .to_str()
                .unwrap()
                .starts_with("ricochet-loadgen/")
        );
        assert!(h[AUTHORIZATION].is_sensitive());
        assert_eq!(h[AUTHORIZATION], "Basic dTpodW50ZXIy");
    }

    #[test]
    fn otlp_headers_carry_no_snappy_encoding() {
        let target = Target::otlp("http://c:4318").with_auth(Auth::Bearer(Secret::new("t")));
        let h = headers(&target, "otlp").unwrap();
        assert!(h.get(CONTENT_ENCODING).is_none());
        assert_eq!(h[AUTHORIZATION], "Bearer t");
    }

    #[test]
    fn a_tenant_that_is_no_header_value_is_refused() {
        let target = Target::otlp("http://c:4318").with_tenant("a\nb");
        let err = headers(&target, "otlp http://c:4318/v1/metrics").unwrap_err();
        assert!(
            err.to_string().contains("otlp http://c:4318/v1/metrics"),
            "{err}"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let target = Target::remote_write("https://m/api/v1/push").with_ca_file(&path);
        let err = Poster::new(&target).err().unwrap().to_string();
        assert!(
            err.contains("ca.pem") && err.contains("no CERTIFICATE"),
            "{err}"
        );
    }

    #[test]
    fn answers_are_described_by_status_and_body_start() {
        assert_eq!(
            describe(StatusCode::BAD_REQUEST, b"out of order\n sample"),
            "400 Bad Request `out of order sample`"
        );
        assert_eq!(describe(StatusCode::BAD_GATEWAY, b""), "502 Bad Gateway");
        assert!(describe(StatusCode::BAD_REQUEST, "x".repeat(400).as_bytes()).ends_with("x…`"));
    }
}
