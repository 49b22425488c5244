//! Configuration: the [`Config`] the library runs on, the [`Cli`] flags of the binary and
//! the standard `OTEL_*` environment variables, read through an [`Env`] source so tests
//! pass a map instead of touching the process environment.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

/// A source of environment variables.
pub trait Env {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment (read only).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

impl Env for HashMap<&str, &str> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).map(|v| (*v).to_owned())
    }
}

/// A caller-supplied writer for the request log (tests capture lines with it).
pub type SharedWriter = Arc<Mutex<dyn Write + Send>>;

/// Where the one-line-per-request log goes.
#[derive(Clone, Default)]
pub enum RequestLog {
    /// Not written anywhere (the OTLP log export is independent of this).
    #[default]
    Off,
    /// Standard output.
    Stdout,
    /// A caller-supplied writer.
    Writer(SharedWriter),
}

impl fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("Off"),
            Self::Stdout => f.write_str("Stdout"),
            Self::Writer(_) => f.write_str("Writer(..)"),
        }
    }
}

/// Format of the request log and of diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// `key=value` pairs (logfmt).
    Text,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (default port 4317).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318).
    HttpProtobuf,
}

impl FromStr for OtlpProtocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            other => Err(Error::InvalidSetting {
                name: "OTEL_EXPORTER_OTLP_PROTOCOL".into(),
                value: other.into(),
                reason: "valid values are grpc and http/protobuf".into(),
            }),
        }
    }
}

impl fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        })
    }
}

/// Where and how telemetry is exported over OTLP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// Base endpoint, e.g. `http://127.0.0.1:4317`; for OTLP/HTTP `/v1/traces` and
    /// `/v1/logs` are appended, as for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    /// Transport.
    pub protocol: OtlpProtocol,
}

impl OtlpConfig {
    /// Reads `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_PROTOCOL`; `None` when no
    /// endpoint is set.
    pub fn from_env(env: &dyn Env) -> Result<Option<Self>> {
        let Some(endpoint) = env
            .get("OTEL_EXPORTER_OTLP_ENDPOINT")
            .filter(|e| !e.trim().is_empty())
        else {
            return Ok(None);
        };
        let protocol = match env.get("OTEL_EXPORTER_OTLP_PROTOCOL") {
            Some(p) if !p.trim().is_empty() => p.parse()?,
            _ => OtlpProtocol::Grpc,
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(Error::InvalidSetting {
                name: "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                value: endpoint,
                reason: "expected an http:// or https:// URL such as http://127.0.0.1:4317".into(),
            });
        }
        Ok(Some(Self {
            endpoint: endpoint.trim().to_owned(),
            protocol,
        }))
    }
}

/// Telemetry settings.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Create spans and request logs at all (`--telemetry off` clears it). RED metrics are
    /// counted either way; exemplars need it.
    pub enabled: bool,
    /// OTLP export target; `None`: spans and logs are made but not exported.
    pub otlp: Option<OtlpConfig>,
    /// Extra resource attributes (from `OTEL_RESOURCE_ATTRIBUTES`).
    pub resource_attributes: Vec<(String, String)>,
    /// How often queued spans and logs are exported (the queues must hold what arrives in
    /// one interval).
    pub export_interval: Duration,
    /// Timeout of one export call.
    pub export_timeout: Duration,
    /// Largest batch per export call. 512 (not 2048): the encoded request of a batch stays
    /// small enough to be built and sent while still in cache — measured about 3 µs of
    /// server CPU less per request than 2048; 256 was no better than 2048 (per-call costs).
    pub max_batch: usize,
    /// Spans (and, separately, logs) held in memory before new ones are dropped.
    pub queue_capacity: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            otlp: None,
            resource_attributes: Vec::new(),
            export_interval: Duration::from_millis(200),
            export_timeout: Duration::from_secs(5),
            max_batch: 512,
            queue_capacity: 16_384,
        }
    }
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, values percent-decoded).
pub fn parse_resource_attributes(raw: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(Error::InvalidSetting {
                name: "OTEL_RESOURCE_ATTRIBUTES".into(),
                value: raw.into(),
                reason: format!("entry {pair:?} is not key=value"),
            });
        };
        out.push((k.trim().to_owned(), percent_decode(v.trim())));
    }
    Ok(out)
}

pub(crate) fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Protocol limits of the public listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request body on `/echo` (larger: 413).
    pub body_limit: usize,
    /// Largest request head (HTTP/1 read buffer, HTTP/2 header list), in bytes.
    pub max_header_bytes: usize,
    /// A connection whose request head is not complete within this time is closed.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(10),
        }
    }
}

/// A latency distribution: `25ms`, `uniform:10ms:50ms` or `exp:20ms` (exponential with
/// that mean, capped at 20x the mean).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Distribution {
    /// Always the same.
    Fixed(Duration),
    /// Uniform between the bounds.
    Uniform(Duration, Duration),
    /// Exponential with this mean.
    Exponential(Duration),
}

impl Distribution {
    /// Draws a value from `u`, a uniform number in `[0, 1)`.
    pub fn sample(&self, u: f64) -> Duration {
        match *self {
            Self::Fixed(d) => d,
            Self::Uniform(lo, hi) => lo + (hi.saturating_sub(lo)).mul_f64(u),
            Self::Exponential(mean) => mean.mul_f64((-(1.0 - u).ln()).min(20.0)),
        }
    }
}

fn parse_duration(name: &str, s: &str) -> Result<Duration> {
    humantime::parse_duration(s.trim()).map_err(|e| Error::InvalidSetting {
        name: name.into(),
        value: s.into(),
        reason: format!("{e}; expected a duration such as 25ms or 1s"),
    })
}

impl FromStr for Distribution {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        const NAME: &str = "delay distribution";
        let mut parts = s.split(':');
        let head = parts.next().unwrap_or_default();
        let d = match (head, parts.next(), parts.next(), parts.next()) {
            ("uniform", Some(a), Some(b), None) => {
                let (lo, hi) = (parse_duration(NAME, a)?, parse_duration(NAME, b)?);
                if lo > hi {
                    return Err(Error::InvalidSetting {
                        name: NAME.into(),
                        value: s.into(),
                        reason: "the lower bound is above the upper bound".into(),
                    });
                }
                Self::Uniform(lo, hi)
            }
            ("exp", Some(m), None, None) => Self::Exponential(parse_duration(NAME, m)?),
            (fixed, None, None, None) => Self::Fixed(parse_duration(NAME, fixed).map_err(
                |_| Error::InvalidSetting {
                    name: NAME.into(),
                    value: s.into(),
                    reason: "expected 25ms, uniform:10ms:50ms or exp:20ms".into(),
                },
            )?),
            _ => {
                return Err(Error::InvalidSetting {
                    name: NAME.into(),
                    value: s.into(),
                    reason: "expected 25ms, uniform:10ms:50ms or exp:20ms".into(),
                });
            }
        };
        Ok(d)
    }
}

impl TryFrom<String> for Distribution {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Distribution> for String {
    fn from(d: Distribution) -> String {
        d.to_string()
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = |d: Duration| humantime::format_duration(d).to_string();
        match *self {
            Self::Fixed(d) => f.write_str(&h(d)),
            Self::Uniform(a, b) => write!(f, "uniform:{}:{}", h(a), h(b)),
            Self::Exponential(m) => write!(f, "exp:{}", h(m)),
        }
    }
}

/// Behaviour of `/api/{*path}` when the request does not say `?delay=` / `?status=`.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Latency added to every `/api` request.
    pub delay: Option<Distribution>,
    /// Fraction of `/api` requests answered with `error_status`.
    pub error_rate: f64,
    /// Status used for those errors (default 500 when 0).
    pub error_status: u16,
}

/// The admin token; its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Wraps a token; empty tokens are refused.
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let t = token.into();
        (!t.is_empty()).then_some(Self(t))
    }

    /// Whether `candidate` equals the token (comparison time independent of the position
    /// of the first difference).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let a = self.0.as_bytes();
        if a.len() != candidate.len() {
            return false;
        }
        a.iter()
            .zip(candidate)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Everything the server runs on. `Config::default()` is a quiet server for embedding: no
/// request log, telemetry made but not exported, no admin listener.
#[derive(Debug, Clone)]
pub struct Config {
    /// `service.name` of spans, logs and the request log.
    pub service_name: String,
    /// Admin listener address; the admin port is off when `None`.
    pub admin_listen: Option<SocketAddr>,
    /// Token every admin call must present as `Authorization: Bearer <token>`.
    pub admin_token: Option<AdminToken>,
    /// Where the request log goes.
    pub request_log: RequestLog,
    /// Request log format.
    pub log_format: LogFormat,
    /// Spans, OTLP export.
    pub telemetry: TelemetryConfig,
    /// Body and header limits, timeouts.
    pub limits: Limits,
    /// Default `/api` behaviour.
    pub api: ApiConfig,
    /// Seed of the random draws (chaos, distributions); `None`: from the clock.
    pub seed: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            service_name: "echo-server".into(),
            admin_listen: None,
            admin_token: None,
            request_log: RequestLog::Off,
            log_format: LogFormat::Json,
            telemetry: TelemetryConfig::default(),
            limits: Limits::default(),
            api: ApiConfig::default(),
            seed: None,
        }
    }
}

impl Config {
    /// Applies the standard `OTEL_*` variables: endpoint and protocol, `OTEL_SERVICE_NAME`
    /// (unless a service name was set explicitly, i.e. differs from the default) and
    /// `OTEL_RESOURCE_ATTRIBUTES` (whose `service.name` counts as well).
    pub fn apply_otel_env(mut self, env: &dyn Env) -> Result<Self> {
        if let Some(otlp) = OtlpConfig::from_env(env)? {
            self.telemetry.otlp = Some(otlp);
        }
        let attrs = match env.get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(raw) => parse_resource_attributes(&raw)?,
            None => Vec::new(),
        };
        let explicit = self.service_name != Config::default().service_name;
        if !explicit {
            if let Some(name) = env.get("OTEL_SERVICE_NAME").filter(|s| !s.is_empty()) {
                self.service_name = name;
            } else if let Some((_, v)) = attrs.iter().find(|(k, _)| k == "service.name") {
                self.service_name = v.clone();
            }
        }
        self.telemetry
            .resource_attributes
            .extend(attrs.into_iter().filter(|(k, _)| k != "service.name"));
        Ok(self)
    }
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Command-line flags of the `echo-server` binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "echo-server",
    version,
    about = "ricochet's instrumented reference workload"
)]
pub struct Cli {
    /// Address of the public listener.
    #[arg(long, env = "ECHO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the token-protected admin listener (off unless given).
    #[arg(long, env = "ECHO_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token required by every admin call.
    #[arg(long, env = "ECHO_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// service.name (default: OTEL_SERVICE_NAME, else echo-server).
    #[arg(long, env = "ECHO_SERVICE_NAME")]
    pub service_name: Option<String>,
    /// Format of the request log on stdout and of diagnostics on stderr.
    #[arg(long, env = "ECHO_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// Spans, request logs and OTLP export (off: only RED metrics, no exemplars).
    #[arg(long, env = "ECHO_TELEMETRY", value_enum, default_value = "on")]
    pub telemetry: Switch,
    /// Request body limit of /echo, in bytes.
    #[arg(long, env = "ECHO_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Request head limit, in bytes.
    #[arg(long, env = "ECHO_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Connections whose request head is incomplete after this long are closed.
    #[arg(long, env = "ECHO_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// Shutdown waits this long for in-flight requests.
    #[arg(long, env = "ECHO_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// Default /api latency: 25ms, uniform:10ms:50ms or exp:20ms.
    #[arg(long, env = "ECHO_API_DELAY")]
    pub api_delay: Option<Distribution>,
    /// Fraction of /api requests that fail by default.
    #[arg(long, env = "ECHO_API_ERROR_RATE", default_value_t = 0.0)]
    pub api_error_rate: f64,
    /// Status of those failures.
    #[arg(long, env = "ECHO_API_ERROR_STATUS", default_value_t = 500)]
    pub api_error_status: u16,
    /// Seed of random draws (chaos, distributions).
    #[arg(long, env = "ECHO_SEED")]
    pub seed: Option<u64>,
}

impl Cli {
    /// Turns the flags plus the `OTEL_*` variables of `env` into the listen address and a
    /// [`Config`] that logs requests to stdout.
    pub fn into_config(self, env: &dyn Env) -> Result<(SocketAddr, Config)> {
        if !(0.0..=1.0).contains(&self.api_error_rate) {
            return Err(Error::InvalidSetting {
                name: "--api-error-rate".into(),
                value: self.api_error_rate.to_string(),
                reason: "expected a fraction between 0 and 1".into(),
            });
        }
        if !(100..=599).contains(&self.api_error_status) {
            return Err(Error::InvalidSetting {
                name: "--api-error-status".into(),
                value: self.api_error_status.to_string(),
                reason: "expected an HTTP status between 100 and 599".into(),
            });
        }
        let admin_token = match self.admin_token {
            Some(t) => Some(AdminToken::new(t).ok_or_else(|| Error::InvalidSetting {
                name: "--admin-token".into(),
                value: String::new(),
                reason: "the token must not be empty".into(),
            })?),
            None => None,
        };
        if let (Some(addr), None) = (self.admin_listen, &admin_token) {
            return Err(Error::AdminTokenMissing { addr });
        }
        let mut config = Config {
            admin_listen: self.admin_listen,
            admin_token,
            request_log: RequestLog::Stdout,
            log_format: self.log_format,
            limits: Limits {
                body_limit: self.body_limit,
                max_header_bytes: self.max_header_bytes,
                header_read_timeout: self.header_read_timeout,
                grace: self.grace,
            },
            api: ApiConfig {
                delay: self.api_delay,
                error_rate: self.api_error_rate,
                error_status: self.api_error_status,
            },
            seed: self.seed,
            ..Config::default()
        };
        config.telemetry.enabled = self.telemetry == Switch::On;
        if let Some(name) = self.service_name {
            config.service_name = name;
        }
        let config = config.apply_otel_env(env)?;
        Ok((self.listen, config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn otel_env_sets_endpoint_protocol_service_and_resource() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "checkout"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=dev,team=a%20b",
            ),
        ]);
        let c = Config::default().apply_otel_env(&e).unwrap();
        assert_eq!(
            c.telemetry.otlp,
            Some(OtlpConfig {
                endpoint: "http://collector:4318".into(),
                protocol: OtlpProtocol::HttpProtobuf
            })
        );
        assert_eq!(c.service_name, "checkout");
        assert_eq!(
            c.telemetry.resource_attributes,
            vec![
                ("deployment.environment".into(), "dev".into()),
                ("team".into(), "a b".into())
            ]
        );
    }

    #[test]
    fn explicit_service_name_beats_otel_service_name() {
        let cli = Cli::parse_from(["echo-server", "--service-name", "mine"]);
        let (_, c) = cli
            .into_config(&env(&[("OTEL_SERVICE_NAME", "theirs")]))
            .unwrap();
        assert_eq!(c.service_name, "mine");
    }

    #[test]
    fn unknown_protocol_is_a_clear_error() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:1"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]);
        let err = Config::default()
            .apply_otel_env(&e)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && err.contains("grpc and http/protobuf"),
            "{err}"
        );
    }

    #[test]
    fn admin_listen_without_token_is_refused() {
        let cli = Cli::parse_from(["echo-server", "--admin-listen", "127.0.0.1:0"]);
        let err = cli.into_config(&env(&[])).unwrap_err();
        assert!(matches!(err, Error::AdminTokenMissing { .. }));
        assert!(err.to_string().contains("ECHO_ADMIN_TOKEN"));
    }

    #[test]
    fn distributions_parse_and_render() {
        for s in ["25ms", "uniform:10ms:50ms", "exp:20ms"] {
            let d: Distribution = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
        assert!("uniform:50ms:10ms".parse::<Distribution>().is_err());
        assert!("banana".parse::<Distribution>().is_err());
        let u: Distribution = "uniform:10ms:50ms".parse().unwrap();
        assert_eq!(u.sample(0.5), Duration::from_millis(30));
    }

    #[test]
    fn admin_token_debug_is_redacted() {
        let t = AdminToken::new("s3cret").unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(t.matches(b"s3cret") && !t.matches(b"s3creT") && !t.matches(b"s3"));
    }
}
