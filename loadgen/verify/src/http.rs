//! What every HTTP backend shares: base URL, `X-Scope-OrgID` tenant, basic or bearer auth
//! from env or file, TLS with a custom CA, a per-request timeout, the shared
//! [`RateLimiter`], and `429 Too Many Requests` handling that honours `Retry-After`.
//!
//! The client is hyper-util's pooled client (HTTP/1.1 and HTTP/2) over hyper-rustls, with
//! rustls on an explicit `ring` provider (no process-global default is installed), the
//! system's root certificates plus the endpoint's CA file.
//!
//! # Is this the backend speaking?
//!
//! Between loadgen and a backend there are often ingresses, API gateways and auth proxies,
//! and each answers in its own way: nginx's HTML `404`, Kong's JSON
//! `{"message":"no Route matched with those values"}`, oauth2-proxy's `302` to a login
//! page, a `401` with `WWW-Authenticate`. None of them says the telemetry is absent, so
//! none may become [`Outcome::Missing`](crate::Outcome::Missing). Each verifier takes only
//! its backend's own forms (Tempo's `404 trace not found`, Jaeger's structured `404`,
//! Loki's and Prometheus' `{"status":"success",…}`) and hands every other answer to
//! [`HttpBackend::foreign_reason`], which says in one sentence what came back and from
//! which URL (never user info or a query string, which may hold secrets), and what to
//! check. Redirects are never followed: a redirect is an answer, usually a login one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
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
    /// The URL asked, for reasons: scheme, host, port and path only (no user info, no
    /// query string, which for Loki and Prometheus holds the whole query).
    pub url: String,
    /// HTTP status.
    pub status: StatusCode,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// `Location`, if sent (redirects are never followed: a redirect is an answer).
    pub location: Option<String>,
    /// `WWW-Authenticate`, if sent (the challenge of a `401`).
    pub www_authenticate: Option<String>,
    /// The body.
    pub body: Bytes,
    /// From sending to the last body byte (no rate-limit or 429 waits).
    pub took: Duration,
    /// When the answer arrived.
    pub received: Instant,
}

impl Answer {
    /// The body as text, whitespace runs folded to one space, cut to 300 characters: for
    /// reasons.
    pub fn snippet(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        let folded = s.split_whitespace().collect::<Vec<_>>().join(" ");
        match folded.char_indices().nth(300) {
            Some((i, _)) => format!("{}…", &folded[..i]),
            None => folded,
        }
    }

    /// The media type of `Content-Type`, lowercase, without parameters (`text/html`).
    pub fn media_type(&self) -> Option<String> {
        let ct = self.content_type.as_deref()?;
        let essence = ct.split(';').next().unwrap_or("").trim();
        (!essence.is_empty()).then(|| essence.to_ascii_lowercase())
    }

    /// True when the content type says JSON (`application/json`, `…+json`).
    pub fn is_json(&self) -> bool {
        self.media_type()
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"))
    }

    /// True for an HTML page: by content type, or by a body that opens like one (a proxy
    /// may send its page as `text/plain` or without a type).
    pub fn is_html(&self) -> bool {
        if self
            .media_type()
            .is_some_and(|m| m == "text/html" || m == "application/xhtml+xml")
        {
            return true;
        }
        let head = &self.body[..self.body.len().min(512)];
        let head = String::from_utf8_lossy(head)
            .trim_start()
            .to_ascii_lowercase();
        head.starts_with("<!doctype html") || head.starts_with("<html")
    }

    /// True for a `3xx` redirect (`301`, `302`, `303`, `307`, `308` ...).
    pub fn is_redirect(&self) -> bool {
        self.status.is_redirection()
    }

    /// Where a redirect points, for reasons: `Location` resolved against the URL asked,
    /// without user info, query or fragment (a login redirect's query carries state and
    /// return URLs, sometimes tokens).
    pub fn redirect_target(&self) -> Option<String> {
        let loc = self.location.as_deref()?;
        let base = Url::parse(&self.url).ok();
        let mut u = match base {
            Some(b) => b.join(loc).ok()?,
            None => Url::parse(loc).ok()?,
        };
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_query(None);
        u.set_fragment(None);
        Some(u.to_string())
    }

    /// The `<title>` of an HTML body, if any: what a proxy's page says in a few words.
    pub fn html_title(&self) -> Option<String> {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(64 * 1024)]);
        let lower = body.to_ascii_lowercase();
        let open = lower.find("<title")?;
        let start = open + lower[open..].find('>')? + 1;
        let end = start + lower[start..].find("</title")?;
        let title = body[start..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        (!title.is_empty()).then(|| title.chars().take(120).collect())
    }

    /// What came back, in a few words: the status code, then where a redirect points
    /// (`302 to https://sso.example/login`), or the media type and the page's title or the
    /// body (`404 text/html “404 Not Found”`, ``401 text/plain `no org id` ``,
    /// `404 without a content type with an empty body`).
    pub fn describe(&self) -> String {
        let code = self.status.as_u16();
        if self.is_redirect() {
            return match self.redirect_target() {
                Some(to) => format!("{code} to {to}"),
                None => format!("{code} without a usable Location"),
            };
        }
        let media = self
            .media_type()
            .unwrap_or_else(|| "without a content type".to_owned());
        if self.is_html() {
            return match self.html_title() {
                Some(t) => format!("{code} {media} “{t}”"),
                None => format!("{code} {media} (an HTML page)"),
            };
        }
        let snippet = self.snippet();
        if snippet.is_empty() {
            format!("{code} {media} with an empty body")
        } else {
            format!("{code} {media} `{snippet}`")
        }
    }

    /// True when a redirect points at a login (SSO, OAuth, an auth proxy's sign-in).
    fn is_login_redirect(&self) -> bool {
        const LOGIN: [&str; 7] = ["login", "signin", "sign_in", "oauth", "sso", "auth", "saml"];
        self.redirect_target().is_some_and(|t| {
            let t = t.to_ascii_lowercase();
            LOGIN.iter().any(|w| t.contains(w))
        })
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

    /// The sentence for a `401`/`403`: the tenant header or credentials are missing or
    /// wrong. Names the URL, what came back and the challenge (`WWW-Authenticate`), never
    /// the credentials.
    pub fn auth_reason(&self, answer: &Answer) -> String {
        let tenant = match self.tenant() {
            Some(t) => format!("X-Scope-OrgID `{t}` was sent"),
            None => "no X-Scope-OrgID header was sent (no tenant configured)".to_owned(),
        };
        let challenge = match &answer.www_authenticate {
            Some(c) => format!(
                "; it asks for `{}`",
                c.chars().take(120).collect::<String>()
            ),
            None => String::new(),
        };
        format!(
            "{} answered {}: {} refused the query: the tenant header (X-Scope-OrgID) or the credentials are missing or wrong; {tenant}{challenge}",
            answer.url,
            answer.describe(),
            self.name,
        )
    }

    /// The sentence for any other unexpected status: the URL and what came back.
    pub fn status_reason(&self, answer: &Answer) -> String {
        format!("{} answered {}", answer.url, answer.describe())
    }

    /// The sentence for an answer that is not `api`'s own (`api`: `Tempo`, `Jaeger`,
    /// `Loki`, `Prometheus`), chosen by what came back; the caller has already taken every
    /// answer in `api`'s own form (its data, its not-found, its errors).
    ///
    /// | what came back | sentence |
    /// | --- | --- |
    /// | a redirect to a login | `<url> answered 302 to <where>: a login redirect, not <api>: check the URL and credentials` |
    /// | another redirect | `<url> answered 301 to <where>: a redirect, not <api> (redirects are not followed): check the URL` |
    /// | `401`, `403` | [`HttpBackend::auth_reason`] |
    /// | `404` | `<url> answered 404 <type> <body>, not <api>: check the URL's path prefix` |
    /// | `2xx` | `<url> answered 200 <type> <body>, not <api>: check the URL's path prefix` |
    /// | other, HTML | `<url> answered 502 text/html “title”, an HTML page, not <api>` |
    /// | other | [`HttpBackend::status_reason`] (the backend's own error, or a proxy's: no claim) |
    pub fn foreign_reason(&self, answer: &Answer, api: &str) -> String {
        let (url, what) = (&answer.url, answer.describe());
        let code = answer.status.as_u16();
        if answer.is_redirect() {
            return if answer.is_login_redirect() {
                format!(
                    "{url} answered {what}: a login redirect, not {api}: check the URL and credentials"
                )
            } else {
                format!(
                    "{url} answered {what}: a redirect, not {api} (redirects are not followed): check the URL"
                )
            };
        }
        match code {
            401 | 403 => self.auth_reason(answer),
            404 | 200..=299 => {
                format!("{url} answered {what}, not {api}: check the URL's path prefix")
            }
            _ if answer.is_html() => format!("{url} answered {what}, an HTML page, not {api}"),
            _ => self.status_reason(answer),
        }
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
        let mut shown = url;
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.set_query(None);
        shown.set_fragment(None);
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        Ok(RawAnswer {
            url: shown.to_string(),
            status: parts.status,
            content_type: header(CONTENT_TYPE).map(str::to_owned),
            location: header(LOCATION).map(str::to_owned),
            www_authenticate: header(WWW_AUTHENTICATE).map(str::to_owned),
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
        add_system_roots(&mut roots);
    }
    if let Some(path) = &endpoint.ca_file {
        add_ca_file(&mut roots, path).map_err(|e| match e {
            CaFileError::Read(source) => VerifyError::File {
                what: "CA",
                path: path.clone(),
                source,
            },
            CaFileError::Invalid(reason) => VerifyError::Ca {
                path: path.clone(),
                reason,
            },
        })?;
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

/// Adds the system's root certificates to `roots`; unreadable ones are skipped, so a custom
/// CA still works without them.
pub fn add_system_roots(roots: &mut rustls::RootCertStore) {
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
}

/// Why a CA file (`caFile`) cannot be used.
#[derive(Debug)]
pub enum CaFileError {
    /// The file cannot be read.
    Read(std::io::Error),
    /// It is not PEM with at least one valid `CERTIFICATE` block.
    Invalid(String),
}

impl fmt::Display for CaFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaFileError::Read(e) => e.fmt(f),
            CaFileError::Invalid(reason) => f.write_str(reason),
        }
    }
}

/// Adds every certificate of the PEM file at `path` to `roots`: the one CA-file loader of
/// the telemetry backends and of `https://` load targets. A file without a `CERTIFICATE`
/// block is an error, never an empty trust store.
pub fn add_ca_file(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), CaFileError> {
    let pem = std::fs::read(path).map_err(CaFileError::Read)?;
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| CaFileError::Invalid(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| CaFileError::Invalid(e.to_string()))?;
        n += 1;
    }
    if n == 0 {
        return Err(CaFileError::Invalid("no CERTIFICATE block".into()));
    }
    Ok(())
}

struct RawAnswer {
    url: String,
    status: StatusCode,
    content_type: Option<String>,
    location: Option<String>,
    www_authenticate: Option<String>,
    body: Bytes,
    took: Duration,
    received: Instant,
    retry_after: Option<Duration>,
}

impl From<RawAnswer> for Answer {
    fn from(r: RawAnswer) -> Self {
        Self {
            url: r.url,
            status: r.status,
            content_type: r.content_type,
            location: r.location,
            www_authenticate: r.www_authenticate,
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

    fn answer(
        status: u16,
        content_type: Option<&str>,
        location: Option<&str>,
        body: &str,
    ) -> Answer {
        Answer {
            url: "http://gw.example/tempo/api/traces/x".to_owned(),
            status: StatusCode::from_u16(status).unwrap(),
            content_type: content_type.map(str::to_owned),
            location: location.map(str::to_owned),
            www_authenticate: None,
            body: Bytes::from(body.to_owned()),
            took: Duration::ZERO,
            received: Instant::now(),
        }
    }

    #[test]
    fn answers_describe_status_type_title_body_and_redirect_target() {
        let page =
            "\r\n<HTML>\r\n<head><title>404  Not\r\nFound</title></head><body>x</body></html>";
        assert_eq!(
            answer(404, Some("text/html; charset=utf-8"), None, page).describe(),
            "404 text/html “404 Not Found”"
        );
        // An HTML page sent as text/plain, or without a type, is still a page.
        assert!(answer(404, Some("text/plain"), None, page).is_html());
        assert!(answer(200, None, None, "<!DOCTYPE html><p>hi").is_html());
        assert_eq!(
            answer(401, Some("text/plain"), None, "no org id\n").describe(),
            "401 text/plain `no org id`"
        );
        assert_eq!(
            answer(404, None, None, "").describe(),
            "404 without a content type with an empty body"
        );
        assert!(answer(200, Some("application/vnd.api+json"), None, "{}").is_json());
        // Relative and absolute targets; user info, query and fragment are dropped.
        let rel = answer(302, Some("text/html"), Some("/oauth2/start?rd=%2Fx"), "");
        assert_eq!(rel.describe(), "302 to http://gw.example/oauth2/start");
        let abs = answer(
            307,
            None,
            Some("https://u:pw@sso.example/login?token=t#f"),
            "",
        );
        assert_eq!(abs.describe(), "307 to https://sso.example/login");
        assert!(abs.is_login_redirect() && rel.is_login_redirect());
        let moved = answer(301, None, Some("https://tempo.example/api/traces/x"), "");
        assert!(!moved.is_login_redirect());
        assert_eq!(
            answer(302, None, None, "").describe(),
            "302 without a usable Location"
        );
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
