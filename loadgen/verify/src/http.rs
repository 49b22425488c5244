//! What every HTTP backend shares: base URL, `X-Scope-OrgID` tenant, basic or bearer auth
//! from env or file, TLS with a custom CA, a per-request timeout, the shared
//! [`RateLimiter`], and `429 Too Many Requests` handling that honours `Retry-After`.
//!
//! The client is hyper-util's pooled client (HTTP/1.1 and HTTP/2) over hyper-rustls, with
//! rustls on an explicit `ring` provider (no process-global default is installed), the
//! system's root certificates plus the endpoint's CA file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use url::Url;

use super::{RateLimiter, Result, VerifyError};

/// A credential. `Debug` and `Display` print `[redacted]`; only [`Secret::expose`] gives
/// the value, and this module only puts it into a sensitive header.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value (tests; prefer env or file).
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    /// Reads the value of environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self> {
        std::env::var(var)
            .map(Self::new)
            .map_err(|_| VerifyError::SecretEnv {
                var: var.to_owned(),
            })
    }

    /// Reads a file (a mounted Kubernetes Secret), without its trailing newline.
    pub fn from_file(path: &Path) -> Result<Self> {
        let s = std::fs::read_to_string(path).map_err(|source| VerifyError::File {
            what: "secret",
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::new(s.trim_end_matches(['\n', '\r'])))
    }

    /// The value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How to authenticate to a backend.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// HTTP basic (Grafana Cloud style: user = instance id, password = token).
    Basic {
        /// User name (not secret).
        username: String,
        /// Password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret,
    },
}

impl Auth {
    fn header(&self) -> Option<HeaderValue> {
        use base64::Engine as _;
        let raw = match self {
            Self::None => return None,
            Self::Basic { username, password } => {
                let b64 = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()));
                format!("Basic {b64}")
            }
            Self::Bearer { token } => format!("Bearer {}", token.expose()),
        };
        let mut v = HeaderValue::from_str(&raw).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// Where and how to reach one backend.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL (`http://tempo:3200`, `http://mimir/prometheus`); API paths are appended.
    pub base: Url,
    /// `X-Scope-OrgID` value, if multi-tenant.
    pub tenant: Option<String>,
    /// Credentials.
    pub auth: Auth,
    /// PEM file of extra CA certificates to trust (beside the system roots).
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries of one query answered `429` (each after its `Retry-After`).
    pub max_429_retries: u32,
}

impl Endpoint {
    /// An endpoint with no tenant, no auth, a 10 s timeout and 3 retries on 429.
    pub fn new(base: &str) -> Result<Self> {
        let mut url = Url::parse(base).map_err(|e| VerifyError::Url {
            url: base.to_owned(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(VerifyError::Url {
                url: base.to_owned(),
                reason: "the scheme must be http or https".into(),
            });
        }
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        Ok(Self {
            base: url,
            tenant: None,
            auth: Auth::None,
            ca_file: None,
            timeout: Duration::from_secs(10),
            max_429_retries: 3,
        })
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the credentials.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Trusts the CA certificates of a PEM file.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }
}

/// A backend's answer (any status) to one GET.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
    /// From sending to the last body byte (no rate-limit or 429 waits).
    pub took: Duration,
    /// When the answer arrived.
    pub received: Instant,
}

impl Answer {
    /// The body as text, cut to 300 bytes, trailing whitespace trimmed: for reasons.
    pub fn snippet(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        let s = s.trim_end();
        match s.char_indices().nth(300) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s.to_owned(),
        }
    }
}

/// Could not get an answer at all (connect error, timeout, 429 beyond the retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// One sentence naming the backend.
    pub reason: String,
    /// Time spent in requests that did get a (429) answer.
    pub took: Vec<Duration>,
}

/// One backend's HTTP client: endpoint, tenant and auth headers, shared rate limiter.
#[derive(Debug)]
pub struct HttpBackend {
    name: &'static str,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    base: Url,
    tenant: Option<HeaderValue>,
    tenant_text: Option<String>,
    auth: Option<HeaderValue>,
    limiter: RateLimiter,
    max_429_retries: u32,
    paused_until: Mutex<Option<Instant>>,
}

/// The ceiling on one `Retry-After` wait; a longer one is capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Largest answer body read; a larger one is unknown ("answer too large").
pub const MAX_ANSWER: usize = 64 * 1024 * 1024;

impl HttpBackend {
    /// Builds the client: reads the CA file, prepares headers.
    pub fn new(name: &'static str, endpoint: &Endpoint, limiter: RateLimiter) -> Result<Self> {
        let tls = tls_config(name, endpoint)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(endpoint.timeout.min(Duration::from_secs(5))));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(8)
            .build(https);
        let tenant = match &endpoint.tenant {
            Some(t) => Some(
                HeaderValue::from_str(t).map_err(|_| VerifyError::Tenant { tenant: t.clone() })?,
            ),
            None => None,
        };
        Ok(Self {
            name,
            client,
            timeout: endpoint.timeout,
            base: endpoint.base.clone(),
            tenant,
            tenant_text: endpoint.tenant.clone(),
            auth: endpoint.auth.header(),
            limiter,
            max_429_retries: endpoint.max_429_retries,
            paused_until: Mutex::new(None),
        })
    }

    /// Backend name (`tempo`, `loki` ...).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The configured tenant, for reasons.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant_text.as_deref()
    }

    /// The base URL with any user info removed, for reasons.
    pub fn base_for_display(&self) -> String {
        let mut u = self.base.clone();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.to_string()
    }

    /// The sentence for a `401`/`403`: the tenant header or credentials are missing or wrong.
    pub fn auth_reason(&self, answer: &Answer) -> String {
        let tenant = match self.tenant() {
            Some(t) => format!("X-Scope-OrgID `{t}` was sent"),
            None => "no X-Scope-OrgID header was sent (no tenant configured)".to_owned(),
        };
        format!(
            "{} at {} refused the query with {} `{}`: the tenant header (X-Scope-OrgID) or the credentials are missing or wrong; {tenant}",
            self.name,
            self.base_for_display(),
            answer.status.as_u16(),
            answer.snippet()
        )
    }

    /// The sentence for any other unexpected status.
    pub fn status_reason(&self, answer: &Answer) -> String {
        format!(
            "{} at {} answered {} `{}`",
            self.name,
            self.base_for_display(),
            answer.status,
            answer.snippet()
        )
    }

    /// GETs `path` (relative to the base URL) with `query`, after the rate limiter and any
    /// `Retry-After` pause. A `429` is retried up to `max_429_retries` times, each after
    /// its `Retry-After` (seconds or HTTP date; 1 s doubling when absent, capped at
    /// [`MAX_RETRY_AFTER`]); the pause applies to every query of this backend.
    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
        accept: &str,
    ) -> Result<Answer, Unavailable> {
        let mut url = self.base.join(path).map_err(|e| Unavailable {
            reason: format!("{}: cannot form the URL for `{path}`: {e}", self.name),
            took: Vec::new(),
        })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut took = Vec::new();
        let mut fallback = Duration::from_secs(1);
        for attempt in 0..=self.max_429_retries {
            self.wait_pause().await;
            self.limiter.acquire().await;
            let answer = self
                .send(url.clone(), accept)
                .await
                .map_err(|reason| Unavailable {
                    reason,
                    took: took.clone(),
                })?;
            if answer.status != StatusCode::TOO_MANY_REQUESTS {
                return Ok(answer.into());
            }
            took.push(answer.took);
            let wait = answer.retry_after.unwrap_or(fallback).min(MAX_RETRY_AFTER);
            fallback = (fallback * 2).min(MAX_RETRY_AFTER);
            self.pause(wait);
            if attempt == self.max_429_retries {
                return Err(Unavailable {
                    reason: format!(
                        "{} at {} kept answering 429 Too Many Requests ({} tries, honouring Retry-After); lower maxQueriesPerSecond",
                        self.name,
                        self.base_for_display(),
                        attempt + 1
                    ),
                    took,
                });
            }
        }
        Err(Unavailable {
            reason: format!("{}: no attempt made", self.name),
            took,
        })
    }

    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut p = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        *p = Some(p.map_or(until, |old| old.max(until)));
    }

    async fn wait_pause(&self) {
        let until = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    async fn send(&self, url: Url, accept: &str) -> Result<RawAnswer, String> {
        let mut req = http::Request::get(url.as_str()).header(
            http::header::USER_AGENT,
            concat!("ricochet-loadgen/", env!("CARGO_PKG_VERSION")),
        );
        if let Ok(v) = HeaderValue::from_str(accept) {
            req = req.header(ACCEPT, v);
        }
        if let Some(t) = &self.tenant {
            req = req.header("X-Scope-OrgID", t.clone());
        }
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| format!("{}: cannot build the request: {e}", self.name))?;
        let start = Instant::now();
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| self.transport_reason(&e, e.is_connect()))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| self.transport_reason(e.as_ref(), false))?
                .to_bytes();
            Ok::<_, String>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                format!(
                    "{} at {}: timed out after {:?}",
                    self.name,
                    self.base_for_display(),
                    self.timeout
                )
            })??;
        let received = Instant::now();
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        Ok(RawAnswer {
            status: parts.status,
            content_type: header(CONTENT_TYPE).map(str::to_owned),
            retry_after: header(RETRY_AFTER).and_then(parse_retry_after),
            body,
            took: received - start,
            received,
        })
    }

    fn transport_reason(&self, e: &(dyn std::error::Error + 'static), connect: bool) -> String {
        // The innermost cause says most ("Connection refused (os error 111)"); the URL is
        // printed from the sanitised base only.
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
        format!(
            "{} at {}: {kind}: {msg}",
            self.name,
            self.base_for_display()
        )
    }
}

/// rustls on ring: the system roots (for `https` bases) plus the endpoint's CA file.
fn tls_config(name: &'static str, endpoint: &Endpoint) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if endpoint.base.scheme() == "https" {
        // Unreadable system certs are skipped; a custom CA still works without them.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    if let Some(path) = &endpoint.ca_file {
        let pem = std::fs::read(path).map_err(|source| VerifyError::File {
            what: "CA",
            path: path.clone(),
            source,
        })?;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| VerifyError::Ca {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            roots.add(cert).map_err(|e| VerifyError::Ca {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            n += 1;
        }
        if n == 0 {
            return Err(VerifyError::Ca {
                path: path.clone(),
                reason: "no CERTIFICATE block".into(),
            });
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| VerifyError::Client {
            backend: name,
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

struct RawAnswer {
    status: StatusCode,
    content_type: Option<String>,
    body: Bytes,
    took: Duration,
    received: Instant,
    retry_after: Option<Duration>,
}

impl From<RawAnswer> for Answer {
    fn from(r: RawAnswer) -> Self {
        Self {
            status: r.status,
            content_type: r.content_type,
            body: r.body,
            took: r.took,
            received: r.received,
        }
    }
}

/// Parses `Retry-After`: delta seconds, or an HTTP date (IMF-fixdate) relative to now.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = humantime::parse_rfc3339_weak(&imf_to_rfc3339(v)?).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → `1994-11-06 08:49:37`.
fn imf_to_rfc3339(v: &str) -> Option<String> {
    let mut it = v.split_whitespace();
    let _weekday = it.next()?;
    let day: u32 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u32 = it.next()?.parse().ok()?;
    let time = it.next()?;
    (it.next()? == "GMT").then(|| format!("{year:04}-{month:02}-{day:02} {time}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{s:?}").contains("hunter2"));
        let auth = Auth::Basic {
            username: "u".into(),
            password: s,
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
        let h = auth.header().unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic dTpodW50ZXIy");
    }

    #[test]
    fn secret_from_file_drops_the_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "abc\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "abc");
        let err = Secret::from_env("RICOCHET_SURELY_UNSET_VARIABLE").unwrap_err();
        assert!(err.to_string().contains("RICOCHET_SURELY_UNSET_VARIABLE"));
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn endpoints_keep_a_base_path_and_reject_other_schemes() {
        let e = Endpoint::new("http://mimir/prometheus").unwrap();
        assert_eq!(
            e.base.join("api/v1/query").unwrap().as_str(),
            "http://mimir/prometheus/api/v1/query"
        );
        assert!(Endpoint::new("ftp://x").is_err());
        assert!(Endpoint::new("not a url").is_err());
    }
}
