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
use crate::otlp::transport::Signal;

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

/// One export pipeline's batching, as the OpenTelemetry SDK's batch processors take it
/// (`OTEL_BSP_*` for spans, `OTEL_BLRP_*` for log records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Time between two exports (zero: every millisecond, the timer's resolution).
    pub schedule_delay: Duration,
    /// Most items per export call.
    pub max_export_batch_size: usize,
    /// Items held before new ones are dropped.
    pub max_queue_size: usize,
    /// Bound of one export, retries included; zero: no limit.
    pub export_timeout: Duration,
}

/// Values set for one signal's pipeline (from `OTEL_BSP_*` or `OTEL_BLRP_*`), each
/// overriding the shared value of [`TelemetryConfig`] when set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchingOverride {
    /// `OTEL_BSP_SCHEDULE_DELAY` / `OTEL_BLRP_SCHEDULE_DELAY`.
    pub schedule_delay: Option<Duration>,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` / `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE`.
    pub max_export_batch_size: Option<usize>,
    /// `OTEL_BSP_MAX_QUEUE_SIZE` / `OTEL_BLRP_MAX_QUEUE_SIZE`.
    pub max_queue_size: Option<usize>,
    /// `OTEL_BSP_EXPORT_TIMEOUT` / `OTEL_BLRP_EXPORT_TIMEOUT`.
    pub export_timeout: Option<Duration>,
}

/// Longest schedule delay or export timeout the `OTEL_BSP_*` / `OTEL_BLRP_*` variables
/// take, in milliseconds (one day).
pub const MAX_BATCH_MILLIS: u64 = 86_400_000;

/// Largest queue the `OTEL_BSP_*` / `OTEL_BLRP_*` variables take (items of one signal).
pub const MAX_QUEUE_SIZE: usize = 1 << 20;

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
    /// one interval). 200 ms, not the SDK's 5000 ms: a verifier waits for every sampled
    /// trace, and the ingest latency is part of what it measures.
    pub export_interval: Duration,
    /// Timeout of one export call.
    pub export_timeout: Duration,
    /// Largest batch per export call. 512 (not 2048): the encoded request of a batch stays
    /// small enough to be built and sent while still in cache — measured about 3 µs of
    /// server CPU less per request than 2048; 256 was no better than 2048 (per-call costs).
    pub max_batch: usize,
    /// Spans (and, separately, logs) held in memory before new ones are dropped.
    pub queue_capacity: usize,
    /// The span pipeline's own values (`OTEL_BSP_*`), over the four above.
    pub spans_batching: BatchingOverride,
    /// The log pipeline's own values (`OTEL_BLRP_*`), over the four above.
    pub logs_batching: BatchingOverride,
}

impl TelemetryConfig {
    /// The batching `signal`'s pipeline runs with: its own values where set, else the
    /// shared ones.
    pub fn batching(&self, signal: Signal) -> Batching {
        let o = match signal {
            Signal::Traces => &self.spans_batching,
            Signal::Logs => &self.logs_batching,
        };
        Batching {
            schedule_delay: o.schedule_delay.unwrap_or(self.export_interval),
            max_export_batch_size: o.max_export_batch_size.unwrap_or(self.max_batch),
            max_queue_size: o.max_queue_size.unwrap_or(self.queue_capacity),
            export_timeout: o.export_timeout.unwrap_or(self.export_timeout),
        }
    }

    /// Reads `OTEL_BSP_*` (spans) and `OTEL_BLRP_*` (log records) as the OpenTelemetry
    /// SDK specification defines them: whole milliseconds (`SCHEDULE_DELAY`,
    /// `EXPORT_TIMEOUT`, 0 to [`MAX_BATCH_MILLIS`]; a timeout of 0 is no limit) and counts
    /// (`MAX_QUEUE_SIZE` 1 to [`MAX_QUEUE_SIZE`], `MAX_EXPORT_BATCH_SIZE` 1 to the queue
    /// size). Unset or empty: the shared values, whose 200 ms schedule delay differs from
    /// the SDK's 5000 ms on purpose (a verifier waits for every sampled trace).
    pub fn apply_batching_env(&mut self, env: &dyn Env) -> Result<()> {
        for (signal, prefix, items) in [
            (Signal::Traces, "OTEL_BSP", "spans"),
            (Signal::Logs, "OTEL_BLRP", "log records"),
        ] {
            let var = |name: &str| format!("{prefix}_{name}");
            let read = |name: &str| {
                let key = var(name);
                env.get(&key)
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .map(|v| (key, v))
            };
            // `from` is how the range's start reads ("1", "0 (no limit)").
            let number = |name: &str, range: std::ops::RangeInclusive<u64>, what, from: &str| {
                read(name)
                    .map(|(key, raw)| match raw.parse::<u64>() {
                        Ok(n) if range.contains(&n) => Ok(n),
                        _ => Err(Error::InvalidSetting {
                            name: key,
                            value: raw,
                            reason: format!(
                                "expected a whole number of {what} from {from} to {}",
                                range.end()
                            ),
                        }),
                    })
                    .transpose()
            };
            let millis = |name: &str, from| {
                number(name, 0..=MAX_BATCH_MILLIS, "milliseconds", from)
                    .map(|ms| ms.map(Duration::from_millis))
            };
            let count = |name: &str| {
                number(name, 1..=MAX_QUEUE_SIZE as u64, items, "1").map(|n| n.map(|n| n as usize))
            };
            let o = BatchingOverride {
                schedule_delay: millis("SCHEDULE_DELAY", "0")?,
                export_timeout: millis("EXPORT_TIMEOUT", "0 (no limit)")?,
                max_queue_size: count("MAX_QUEUE_SIZE")?,
                max_export_batch_size: count("MAX_EXPORT_BATCH_SIZE")?,
            };
            match signal {
                Signal::Traces => self.spans_batching = o,
                Signal::Logs => self.logs_batching = o,
            }
            let b = self.batching(signal);
            if b.max_export_batch_size > b.max_queue_size {
                let (batch, queue) = (var("MAX_EXPORT_BATCH_SIZE"), var("MAX_QUEUE_SIZE"));
                if o.max_export_batch_size.is_some() {
                    return Err(Error::InvalidSetting {
                        name: batch,
                        value: b.max_export_batch_size.to_string(),
                        reason: format!(
                            "expected at most the queue size, {} {items} ({queue})",
                            b.max_queue_size
                        ),
                    });
                }
                if o.max_queue_size.is_some() {
                    return Err(Error::InvalidSetting {
                        name: queue,
                        value: b.max_queue_size.to_string(),
                        reason: format!(
                            "expected at least the export batch size, {} {items} (lower it with {batch})",
                            b.max_export_batch_size
                        ),
                    });
                }
            }
        }
        Ok(())
    }
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
            spans_batching: BatchingOverride::default(),
            logs_batching: BatchingOverride::default(),
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

/// Protocol limits of the public listener (the admin listener shares its timeouts and
/// holds at most [`ADMIN_MAX_CONNECTIONS`]).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request body on `/echo` (larger: 413).
    pub body_limit: usize,
    /// Largest request head (HTTP/1 read buffer, HTTP/2 header list), in bytes.
    pub max_header_bytes: usize,
    /// A connection whose request head is not complete within this time is closed; so is
    /// a connection that sends nothing at all, and (hyper starts the timer as soon as it
    /// waits for a head) an HTTP/1.1 keep-alive connection idle for this long.
    pub header_read_timeout: Duration,
    /// A request whose body has not fully arrived this long after the handler began
    /// reading it is answered 408 and its connection closed.
    pub body_read_timeout: Duration,
    /// A connection with no request in flight (HTTP/1.1 between requests, HTTP/2 with no
    /// open stream, e.g. one that only sent the preface) is closed after this long.
    pub idle_timeout: Duration,
    /// HTTP/2: a PING is sent after this long without a frame from the client.
    pub h2_keep_alive_interval: Duration,
    /// HTTP/2: the connection is closed when a PING is not acknowledged within this.
    pub h2_keep_alive_timeout: Duration,
    /// Connections held open at once; beyond it a new connection is accepted and closed
    /// at once, counted in `echo_connections_refused_total`.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub grace: Duration,
}

/// Connections the admin listener holds at once (it serves a handful of operators).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Largest `--max-connections`.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            h2_keep_alive_interval: Duration::from_secs(30),
            h2_keep_alive_timeout: Duration::from_secs(20),
            max_connections: 20_000,
            grace: Duration::from_secs(10),
        }
    }
}

/// Longest delay any fault or parameter adds to a request (`?delay=`, `--api-delay`, the
/// admin API's `latency.delay`): every draw of a distribution stays within it.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// An exponential delay's draws are capped at this multiple of its mean.
pub const EXP_CAP: u32 = 20;

/// Statuses `?status=` may ask for: any final response. 1xx are not final responses
/// (hyper answers a handler's 1xx as 500), and codes above 599 are not HTTP statuses.
pub const RESPONSE_STATUSES: std::ops::RangeInclusive<u16> = 200..=599;

/// Statuses of injected errors (`--api-error-status`, the admin API's `errors.status`):
/// the error statuses among [`RESPONSE_STATUSES`].
pub const ERROR_STATUSES: std::ops::RangeInclusive<u16> = 400..=599;

/// A latency distribution: `25ms`, `uniform:10ms:50ms` or `exp:20ms` (exponential with
/// that mean, capped at [`EXP_CAP`] times the mean).
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
    /// Draws a value from `u`, a uniform number in `[0, 1)`. Total: no distribution and no
    /// `u` (out of range, NaN) can panic; a draw never exceeds [`Self::max_draw`] nor
    /// [`MAX_DELAY`] (a distribution built in code is not validated).
    pub fn sample(&self, u: f64) -> Duration {
        let u = if u.is_nan() { 0.0 } else { u.clamp(0.0, 1.0) };
        let d = match *self {
            Self::Fixed(d) => d,
            Self::Uniform(lo, hi) => lo.saturating_add(scale(hi.saturating_sub(lo), u)),
            Self::Exponential(mean) => scale(mean, -(1.0 - u).ln()),
        };
        d.min(self.max_draw()).min(MAX_DELAY)
    }

    /// The largest value a draw can take: the value, the upper bound, or [`EXP_CAP`]
    /// times the mean (saturating).
    pub fn max_draw(&self) -> Duration {
        match *self {
            Self::Fixed(d) | Self::Uniform(_, d) => d,
            Self::Exponential(mean) => mean.saturating_mul(EXP_CAP),
        }
    }

    /// `None` when every draw is within [`MAX_DELAY`]; otherwise what would be valid.
    pub fn exceeds_max_delay(&self) -> Option<String> {
        if self.max_draw() <= MAX_DELAY {
            return None;
        }
        // Whole seconds, written as `?delay=`'s message writes them ("60s", not "1m").
        let max = format!("{}s", MAX_DELAY.as_secs());
        Some(match self {
            Self::Exponential(_) => format!(
                "an exp: mean of at most {}s (draws reach {EXP_CAP}x the mean, which must stay within {max})",
                (MAX_DELAY / EXP_CAP).as_secs()
            ),
            Self::Uniform(..) => format!("an upper bound of at most {max}"),
            Self::Fixed(_) => format!("a delay of at most {max}"),
        })
    }
}

/// `d × f` without the panics of `Duration::mul_f64`: negative or NaN is zero, too large
/// for a `Duration` saturates.
fn scale(d: Duration, f: f64) -> Duration {
    let secs = d.as_secs_f64() * f;
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
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
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// Wraps a token; empty tokens are refused.
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let t = token.into();
        (!t.is_empty()).then_some(Self(t))
    }

    /// A fresh token of 256 bits from the operating system's CSPRNG, as 64 hex digits.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(Error::Random)?;
        let mut hex = [0u8; 64];
        crate::hex_id(&bytes, &mut hex);
        Ok(Self(String::from_utf8_lossy(&hex).into_owned()))
    }

    /// The secret itself, for the one caller that must hand it on (an embedder giving
    /// its own client the token). Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` equals the token, in time independent of the contents (`subtle`:
    /// no early exit at the first differing byte, behind an optimisation barrier). Only the
    /// length is not secret: a candidate of another length is refused at once.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(self.0.as_bytes().ct_eq(candidate))
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
    /// The name this server answers with ([`REPLICA_HEADER`](crate::contract::REPLICA_HEADER),
    /// run accounts, probe series); `None`: [`default_replica`] of the process environment.
    pub replica: Option<String>,
}

/// Longest replica name (a DNS name's length).
pub const MAX_REPLICA_LEN: usize = 253;

/// Whether `name` can name a replica: 1 to [`MAX_REPLICA_LEN`] characters of
/// `[A-Za-z0-9._-]` (pod and host names are), safe in a header, a label and JSON as is.
pub fn is_replica_name(name: &str) -> bool {
    (1..=MAX_REPLICA_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The replica name without `--replica`: `POD_NAME`, else `HOSTNAME`, else the kernel's
/// host name (`/proc/sys/kernel/hostname`), else `echo-server`; a value that is not a valid
/// name ([`is_replica_name`]) is skipped.
pub fn default_replica(env: &dyn Env) -> String {
    replica_from(env, || {
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok()
    })
}

fn replica_from(env: &dyn Env, kernel_hostname: impl FnOnce() -> Option<String>) -> String {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .filter_map(|k| env.get(k))
        .map(|v| v.trim().to_owned())
        .find(|v| is_replica_name(v))
        .or_else(|| {
            kernel_hostname()
                .map(|h| h.trim().to_owned())
                .filter(|h| is_replica_name(h))
        })
        .unwrap_or_else(|| "echo-server".to_owned())
}

/// `Err` naming `setting` when `name` is not a valid replica name.
pub(crate) fn check_replica(setting: &str, name: &str) -> Result<()> {
    if is_replica_name(name) {
        return Ok(());
    }
    Err(Error::InvalidSetting {
        name: setting.into(),
        value: name.into(),
        reason: format!("expected 1 to {MAX_REPLICA_LEN} characters of A-Z a-z 0-9 . _ -"),
    })
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
            replica: None,
        }
    }
}

impl Config {
    /// Applies the standard `OTEL_*` variables: endpoint and protocol, `OTEL_SERVICE_NAME`
    /// (unless a service name was set explicitly, i.e. differs from the default),
    /// `OTEL_RESOURCE_ATTRIBUTES` (whose `service.name` counts as well) and the batch
    /// processors' `OTEL_BSP_*` / `OTEL_BLRP_*` ([`TelemetryConfig::apply_batching_env`]).
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
        self.telemetry.apply_batching_env(env)?;
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
    /// Connections whose request head is incomplete after this long are closed (also
    /// silent connections and idle HTTP/1.1 keep-alive connections).
    #[arg(long, env = "ECHO_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// A request body not fully received this long after reading began is answered 408
    /// and its connection closed.
    #[arg(long, env = "ECHO_BODY_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,
    /// Connections with no request in flight (HTTP/2: no open stream) are closed after
    /// this long.
    #[arg(long, env = "ECHO_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// HTTP/2: send a PING after this long without a frame from the client.
    #[arg(long, env = "ECHO_H2_KEEP_ALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub h2_keep_alive_interval: Duration,
    /// HTTP/2: close the connection when a PING is not acknowledged within this.
    #[arg(long, env = "ECHO_H2_KEEP_ALIVE_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub h2_keep_alive_timeout: Duration,
    /// Connections held at once; beyond it new connections are accepted and closed at
    /// once (counted in echo_connections_refused_total).
    #[arg(long, env = "ECHO_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,
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
    /// Name of this replica, in the x-ricochet-replica response header, run accounts and
    /// probe series (default: POD_NAME, else HOSTNAME, else the kernel's host name).
    #[arg(long, env = "ECHO_REPLICA")]
    pub replica: Option<String>,
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
        if !ERROR_STATUSES.contains(&self.api_error_status) {
            return Err(Error::InvalidSetting {
                name: "--api-error-status".into(),
                value: self.api_error_status.to_string(),
                reason: format!(
                    "expected an error status between {} and {}",
                    ERROR_STATUSES.start(),
                    ERROR_STATUSES.end()
                ),
            });
        }
        if let Some(d) = &self.api_delay
            && let Some(valid) = d.exceeds_max_delay()
        {
            return Err(Error::InvalidSetting {
                name: "--api-delay".into(),
                value: d.to_string(),
                reason: format!("expected {valid}"),
            });
        }
        for (name, value) in [
            ("--header-read-timeout", self.header_read_timeout),
            ("--body-read-timeout", self.body_read_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--h2-keep-alive-interval", self.h2_keep_alive_interval),
            ("--h2-keep-alive-timeout", self.h2_keep_alive_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidSetting {
                    name: name.into(),
                    value: humantime::format_duration(value).to_string(),
                    reason: "expected a duration longer than 0s such as 10s".into(),
                });
            }
        }
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&self.max_connections) {
            return Err(Error::InvalidSetting {
                name: "--max-connections".into(),
                value: self.max_connections.to_string(),
                reason: format!(
                    "expected a number of connections between 1 and {MAX_CONNECTIONS_LIMIT}"
                ),
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
        let replica = match self.replica {
            Some(r) => {
                check_replica("--replica", &r)?;
                r
            }
            None => default_replica(env),
        };
        let mut config = Config {
            admin_listen: self.admin_listen,
            admin_token,
            request_log: RequestLog::Stdout,
            log_format: self.log_format,
            limits: Limits {
                body_limit: self.body_limit,
                max_header_bytes: self.max_header_bytes,
                header_read_timeout: self.header_read_timeout,
                body_read_timeout: self.body_read_timeout,
                idle_timeout: self.idle_timeout,
                h2_keep_alive_interval: self.h2_keep_alive_interval,
                h2_keep_alive_timeout: self.h2_keep_alive_timeout,
                max_connections: self.max_connections,
                grace: self.grace,
            },
            api: ApiConfig {
                delay: self.api_delay,
                error_rate: self.api_error_rate,
                error_status: self.api_error_status,
            },
            seed: self.seed,
            replica: Some(replica),
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
        assert!(!t.matches(b"") && !t.matches(b"s3cret\0") && !t.matches(b"S3cret"));
    }

    #[test]
    fn generated_admin_tokens_are_256_bit_hex_and_differ() {
        let a = AdminToken::generate().unwrap();
        let b = AdminToken::generate().unwrap();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
        assert!(a.matches(a.expose().as_bytes()) && !a.matches(b.expose().as_bytes()));
    }

    /// See: issue #15 item 4 -- `exp:500000000000years` panicked a worker ("cannot
    /// convert float seconds to Duration"). No distribution and no draw can panic.
    #[test]
    fn sampling_never_panics_and_stays_within_the_largest_draw_and_the_cap() {
        let huge = [
            "exp:500000000000years",
            "500000000000years",
            "uniform:0s:500000000000years",
            "uniform:500000000000years:500000000000years",
            "exp:0s",
            "0s",
        ];
        for raw in huge {
            let d: Distribution = raw.parse().unwrap();
            for u in [0.0, 0.5, 0.999_999, 1.0, -1.0, 2.0, f64::NAN, f64::INFINITY] {
                let v = d.sample(u);
                assert!(v <= d.max_draw(), "{raw} at {u}: {v:?}");
                assert!(v <= MAX_DELAY, "{raw} at {u}: {v:?} beyond the cap");
            }
        }
        let far = Distribution::Exponential(Duration::MAX);
        assert_eq!(far.max_draw(), Duration::MAX);
        assert!(far.sample(0.999).as_secs() > 0);
        let e: Distribution = "exp:20ms".parse().unwrap();
        assert_eq!(e.max_draw(), Duration::from_millis(400));
        assert_eq!(e.sample(1.0), Duration::from_millis(400));
    }

    #[test]
    fn batch_processor_variables_set_each_signal_apart() {
        let e = env(&[
            ("OTEL_BSP_SCHEDULE_DELAY", "1234"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", " 64 "),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "1024"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "0"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "0"),
            ("OTEL_BLRP_EXPORT_TIMEOUT", ""),
        ]);
        let c = Config::default().apply_otel_env(&e).unwrap();
        let t = &c.telemetry;
        assert_eq!(
            t.batching(Signal::Traces),
            Batching {
                schedule_delay: Duration::from_millis(1234),
                max_export_batch_size: 64,
                max_queue_size: 1024,
                export_timeout: Duration::ZERO,
            }
        );
        assert_eq!(
            t.batching(Signal::Logs),
            Batching {
                schedule_delay: Duration::ZERO,
                max_export_batch_size: 512,
                max_queue_size: 16_384,
                export_timeout: Duration::from_secs(5),
            },
            "OTEL_BSP_* does not reach the logs; empty is unset"
        );
        let unset = Config::default().apply_otel_env(&env(&[])).unwrap();
        for signal in [Signal::Traces, Signal::Logs] {
            let b = unset.telemetry.batching(signal);
            assert_eq!(
                b.schedule_delay,
                Duration::from_millis(200),
                "not the SDK's 5 s"
            );
        }
    }

    /// Each invalid `OTEL_BSP_*` / `OTEL_BLRP_*` value and the exact sentence it is refused
    /// with.
    #[test]
    fn invalid_batch_processor_variables_are_refused_with_name_value_and_range() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("OTEL_BSP_SCHEDULE_DELAY", "5s")],
                r#"invalid OTEL_BSP_SCHEDULE_DELAY value "5s": expected a whole number of milliseconds from 0 to 86400000"#,
            ),
            (
                &[("OTEL_BLRP_SCHEDULE_DELAY", "-1")],
                r#"invalid OTEL_BLRP_SCHEDULE_DELAY value "-1": expected a whole number of milliseconds from 0 to 86400000"#,
            ),
            (
                &[("OTEL_BSP_EXPORT_TIMEOUT", "1.5")],
                r#"invalid OTEL_BSP_EXPORT_TIMEOUT value "1.5": expected a whole number of milliseconds from 0 (no limit) to 86400000"#,
            ),
            (
                &[("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0")],
                r#"invalid OTEL_BSP_MAX_EXPORT_BATCH_SIZE value "0": expected a whole number of spans from 1 to 1048576"#,
            ),
            (
                &[("OTEL_BLRP_MAX_QUEUE_SIZE", "2000000")],
                r#"invalid OTEL_BLRP_MAX_QUEUE_SIZE value "2000000": expected a whole number of log records from 1 to 1048576"#,
            ),
            (
                &[
                    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "600"),
                    ("OTEL_BSP_MAX_QUEUE_SIZE", "500"),
                ],
                r#"invalid OTEL_BSP_MAX_EXPORT_BATCH_SIZE value "600": expected at most the queue size, 500 spans (OTEL_BSP_MAX_QUEUE_SIZE)"#,
            ),
            (
                &[("OTEL_BLRP_MAX_QUEUE_SIZE", "100")],
                r#"invalid OTEL_BLRP_MAX_QUEUE_SIZE value "100": expected at least the export batch size, 512 log records (lower it with OTEL_BLRP_MAX_EXPORT_BATCH_SIZE)"#,
            ),
        ];
        for (vars, want) in cases {
            let err = Config::default()
                .apply_otel_env(&env(vars))
                .unwrap_err()
                .to_string();
            assert_eq!(err, *want, "{vars:?}");
        }
    }

    #[test]
    fn the_replica_is_the_flag_else_pod_name_else_host_name() {
        let cli = |args: &[&str]| {
            Cli::parse_from(std::iter::once("echo-server").chain(args.iter().copied()))
        };
        let both = env(&[("POD_NAME", "pod-7"), ("HOSTNAME", "host-1")]);
        let (_, c) = cli(&["--replica", "mine"]).into_config(&both).unwrap();
        assert_eq!(c.replica.as_deref(), Some("mine"));
        let (_, c) = cli(&[]).into_config(&both).unwrap();
        assert_eq!(c.replica.as_deref(), Some("pod-7"));
        let host = || Some("kernel-host\n".to_owned());
        assert_eq!(
            replica_from(&env(&[("HOSTNAME", "host-1")]), host),
            "host-1"
        );
        assert_eq!(
            replica_from(&env(&[("POD_NAME", "bad name")]), host),
            "kernel-host"
        );
        assert_eq!(replica_from(&env(&[]), || None), "echo-server");
        let err = cli(&["--replica", "a b"])
            .into_config(&both)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            r#"invalid --replica value "a b": expected 1 to 253 characters of A-Z a-z 0-9 . _ -"#
        );
    }

    /// Each invalid flag and the exact sentence it is refused with.
    #[test]
    fn invalid_flags_are_refused_with_flag_value_and_range() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--api-delay", "exp:5s"],
                r#"invalid --api-delay value "exp:5s": expected an exp: mean of at most 3s (draws reach 20x the mean, which must stay within 60s)"#,
            ),
            (
                &["--api-delay", "2m"],
                r#"invalid --api-delay value "2m": expected a delay of at most 60s"#,
            ),
            (
                &["--api-error-status", "200"],
                r#"invalid --api-error-status value "200": expected an error status between 400 and 599"#,
            ),
            (
                &["--api-error-status", "100"],
                r#"invalid --api-error-status value "100": expected an error status between 400 and 599"#,
            ),
            (
                &["--api-error-rate", "1.5"],
                r#"invalid --api-error-rate value "1.5": expected a fraction between 0 and 1"#,
            ),
            (
                &["--idle-timeout", "0s"],
                r#"invalid --idle-timeout value "0s": expected a duration longer than 0s such as 10s"#,
            ),
            (
                &["--body-read-timeout", "0s"],
                r#"invalid --body-read-timeout value "0s": expected a duration longer than 0s such as 10s"#,
            ),
            (
                &["--h2-keep-alive-interval", "0s"],
                r#"invalid --h2-keep-alive-interval value "0s": expected a duration longer than 0s such as 10s"#,
            ),
            (
                &["--max-connections", "0"],
                r#"invalid --max-connections value "0": expected a number of connections between 1 and 1000000"#,
            ),
        ];
        for (args, want) in cases {
            let cli = Cli::parse_from(std::iter::once("echo-server").chain(args.iter().copied()));
            let err = cli.into_config(&env(&[])).unwrap_err().to_string();
            assert_eq!(err, *want, "{args:?}");
        }
        let cli = Cli::parse_from([
            "echo-server",
            "--idle-timeout",
            "2s",
            "--body-read-timeout",
            "3s",
            "--h2-keep-alive-interval",
            "4s",
            "--h2-keep-alive-timeout",
            "5s",
            "--max-connections",
            "7",
        ]);
        let (_, c) = cli.into_config(&env(&[])).unwrap();
        let l = &c.limits;
        assert_eq!(
            (
                l.idle_timeout,
                l.body_read_timeout,
                l.h2_keep_alive_interval,
                l.h2_keep_alive_timeout,
                l.max_connections
            ),
            (
                Duration::from_secs(2),
                Duration::from_secs(3),
                Duration::from_secs(4),
                Duration::from_secs(5),
                7
            )
        );
    }
}
