//! Where to push and how: [`Target`] (protocol, URL, tenant, [`Auth`], CA file, timeout)
//! and the run-wide [`Options`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::{OutputError, Result};

/// The wire protocol of a [`Target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Prometheus remote write 1.0 (snappy-compressed protobuf) to the write URL itself.
    RemoteWrite,
    /// OTLP metrics over HTTP/protobuf to `<endpoint>/v1/metrics`.
    Otlp,
}

impl Protocol {
    /// The name used in reports and reasons (`remote-write`, `otlp`).
    pub fn name(self) -> &'static str {
        match self {
            Self::RemoteWrite => "remote-write",
            Self::Otlp => "otlp",
        }
    }
}

/// A credential. `Debug` and `Display` print `[redacted]`; only [`Secret::expose`] gives
/// the value, and this crate only puts it into a sensitive header.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
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

/// How to authenticate to an endpoint.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// HTTP basic (Grafana Cloud style: user = instance id, password = token).
    Basic {
        /// User name (not secret).
        user: String,
        /// Password.
        password: Secret,
    },
}

/// One endpoint to push every batch to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Remote write or OTLP.
    pub protocol: Protocol,
    /// The remote-write URL (`http://mimir/api/v1/push`) or the OTLP base endpoint
    /// (`http://collector:4318`, to which `/v1/metrics` is appended).
    pub url: String,
    /// `X-Scope-OrgID` value, if multi-tenant.
    pub tenant: Option<String>,
    /// Credentials, if any.
    pub auth: Option<Auth>,
    /// PEM file of extra CA certificates to trust for `https` (beside the system roots).
    pub ca_file: Option<PathBuf>,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

impl Target {
    /// A Prometheus remote-write target (`http://prometheus:9090/api/v1/write`), with no
    /// tenant, no auth and a 10 s request timeout.
    pub fn remote_write(url: impl Into<String>) -> Self {
        Self::new(Protocol::RemoteWrite, url.into())
    }

    /// An OTLP/HTTP target (`http://collector:4318`; batches go to `/v1/metrics` below
    /// it), with no tenant, no auth and a 10 s request timeout.
    pub fn otlp(endpoint: impl Into<String>) -> Self {
        Self::new(Protocol::Otlp, endpoint.into())
    }

    fn new(protocol: Protocol, url: String) -> Self {
        Self {
            protocol,
            url,
            tenant: None,
            auth: None,
            ca_file: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// Sets the `X-Scope-OrgID` tenant.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the credentials.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Trusts the CA certificates of a PEM file.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets the timeout of one HTTP request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL requests go to: checked (http or https, a host, no credentials in it) and,
    /// for OTLP, with `/v1/metrics` appended.
    pub(crate) fn request_url(&self) -> Result<Url> {
        let invalid = |reason: &str| OutputError::Url {
            protocol: self.protocol.name(),
            url: display_url(&self.url),
            reason: reason.to_owned(),
        };
        let mut url = Url::parse(&self.url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials in the URL are not sent; give them as Auth::Basic",
            ));
        }
        if self.protocol == Protocol::Otlp {
            let path = format!("{}/v1/metrics", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        Ok(url)
    }

    /// `kind URL` for reports and reasons, without credentials or query string.
    pub(crate) fn label(&self) -> String {
        let url = self
            .request_url()
            .map_or_else(|_| display_url(&self.url), |u| display_url(u.as_str()));
        format!("{} {url}", self.protocol.name())
    }

    pub(crate) fn validate_timeout(&self) -> Result<()> {
        if self.timeout.is_zero() {
            return Err(OutputError::Timeout {
                target: self.label(),
            });
        }
        Ok(())
    }
}

/// `url` without user info, query or fragment (which may hold secrets); a string that
/// does not parse is cut at the first `@`, `?` or `#` it holds.
pub(crate) fn display_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => {
            let after_scheme = url.find("://").map_or(0, |i| i + 3);
            let rest = &url[after_scheme..];
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let end = rest.find(['?', '#']).unwrap_or(rest.len());
            format!("{}{}", &url[..after_scheme], &rest[..end])
        }
    }
}

/// Run-wide settings of an [`Output`](crate::Output).
#[derive(Debug, Clone)]
pub struct Options {
    /// Batches each target may hold queued; an offer beyond that is dropped and counted.
    pub queue: usize,
    /// How often the caller offers a batch: a batch that fails with a server or
    /// connection error is retried, with backoff, for at most this long.
    pub flush_interval: Duration,
    /// Resource attributes of OTLP pushes beside `service.name=ricochet-loadgen` (which
    /// one named `service.name` replaces), e.g. `("testid", "checkout-42")`.
    pub resource: Vec<(String, String)>,
}

impl Default for Options {
    /// 16 batches queued, a 5 s flush interval, no extra resource attributes.
    fn default() -> Self {
        Self {
            queue: 16,
            flush_interval: Duration::from_secs(5),
            resource: Vec::new(),
        }
    }
}

impl Options {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.queue == 0 {
            return Err(OutputError::Queue);
        }
        if self.flush_interval.is_zero() {
            return Err(OutputError::FlushInterval);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let auth = Auth::Basic {
            user: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
        let target = Target::otlp("http://c:4318").with_auth(Auth::Bearer(Secret::new("tok3n")));
        assert!(!format!("{target:?}").contains("tok3n"));
        assert_eq!(Secret::new("x").to_string(), "[redacted]");
    }

    #[test]
    fn otlp_urls_get_the_metrics_path_and_remote_write_urls_are_kept() {
        let otlp = Target::otlp("http://collector:4318/")
            .request_url()
            .unwrap();
        assert_eq!(otlp.as_str(), "http://collector:4318/v1/metrics");
        let otlp = Target::otlp("https://gw/otlp").request_url().unwrap();
        assert_eq!(otlp.as_str(), "https://gw/otlp/v1/metrics");
        let rw = Target::remote_write("http://mimir/api/v1/push")
            .request_url()
            .unwrap();
        assert_eq!(rw.as_str(), "http://mimir/api/v1/push");
    }

    #[test]
    fn urls_with_credentials_are_refused_without_printing_them() {
        let err = Target::remote_write("https://u:hunter2@mimir/api/v1/push?key=s3cret")
            .request_url()
            .unwrap_err()
            .to_string();
        assert!(err.contains("https://mimir/api/v1/push"), "{err}");
        assert!(err.contains("Auth::Basic"), "{err}");
        assert!(!err.contains("hunter2") && !err.contains("s3cret"), "{err}");
        let err = Target::otlp("ftp://x")
            .request_url()
            .unwrap_err()
            .to_string();
        assert!(err.contains("http or https"), "{err}");
    }

    #[test]
    fn unparsable_urls_are_shown_without_user_info_or_query() {
        assert_eq!(display_url("http://u:p@ho st/x?k=v"), "http://ho st/x");
        assert_eq!(display_url("no scheme?k=v"), "no scheme");
    }

    #[test]
    fn labels_name_the_protocol_and_the_request_url() {
        assert_eq!(
            Target::otlp("http://c:4318").label(),
            "otlp http://c:4318/v1/metrics"
        );
    }
}
