//! `ricochet-verify`: did the telemetry arrive? For each sampled request, was the trace,
//! the log line and the exemplar it produced found in the backends, complete and in time?
//!
//! This package is a leaf of ricochet's load generator: it knows backends (Tempo, Jaeger,
//! Loki, Prometheus/Mimir, the embedded OTLP [`sink`]) and samples, never the load engine,
//! its plans, thresholds or reports, nor Kubernetes or the command line. The engine hands
//! it a [`plan::TelemetryPlan`] and offers completed requests to its [`sampler::Sampler`];
//! it hands back [`verification::Results`], which the engine judges.
//!
//! # Outcomes are values
//!
//! Every question to a backend ends in an [`Outcome`]: [`Outcome::Found`],
//! [`Outcome::Missing`] (the backend answered, in its own form, that it does not hold it),
//! [`Outcome::Superseded`] (exemplars only: a newer request took the bucket's exemplar) or
//! [`Outcome::Unknown`] (we could not ask, or what answered was not the backend:
//! connection refused, 5xx, 401, a proxy's 404 page, a login redirect, unparsable
//! answer). "Could not ask" never becomes "not found": a threshold on a missing rate fails
//! closed on unknowns, with their reason.
//!
//! # The pieces
//!
//! - [`Verifier`]: one backend and one signal behind a dyn-compatible interface. The real
//!   clients ([`tempo::TraceVerifier`] for Tempo and Jaeger, [`loki::LokiVerifier`],
//!   [`prometheus::ExemplarVerifier`]) and the embedded OTLP sink
//!   ([`crate::sink::SinkVerifier`]) all implement it, so the engine does not care which
//!   one it drives.
//! - [`exposition::ExpositionVerifier`]: exemplars straight from the echo-server's own
//!   `/metrics`, for the embedded default with nothing installed.
//! - [`http::Endpoint`] + [`http::HttpBackend`]: base URL, `X-Scope-OrgID` tenant, basic
//!   or bearer [`http::Auth`] whose [`Secret`]s come from env or file and never print, TLS
//!   with a custom CA, a per-request timeout, `429` + `Retry-After` handling.
//! - [`RateLimiter`]: one `maxQueriesPerSecond` budget shared by every verifier of a run,
//!   so the harness never becomes the backend's problem.
//! - [`poll`]: polls samples with exponential backoff from each request's completion until
//!   found or [`PollPolicy::settle_timeout`], in batches, and hands back one
//!   [`poll::Verified`] per sample plus each backend query's duration.
//! - [`pipeline::Pipeline`]: what the engine holds during a run: one polling task per
//!   verifier, non-blocking [`pipeline::Pipeline::submit`] from the workers, live
//!   snapshots, final tallies.
//! - [`Tally`]: folds settled samples into the `telemetry_<signal>_*` metrics (counters,
//!   ingest-latency and query-duration HdrHistograms); missing rates fail closed
//!   ([`Rate::Unknown`]) while any sample could not be checked.
//!
//! # Ingest latency and its resolution
//!
//! Ingest latency is `first_seen − completed`: `completed` is the instant the load
//! generator saw the response end, `first_seen` the instant the answer that first held the
//! telemetry arrived. A backend does not say when it ingested something, so the true
//! ingest instant lies somewhere between the previous (negative) poll and the first
//! positive one: **the poll schedule bounds the resolution**. With `initial_interval`
//! 250 ms and factor 2, a trace ingested after 300 ms is reported at ~500 ms (polls at
//! 250, 500, 1000, 2000 ms ... after completion). Sub-interval figures need a shorter `initial_interval` (and a
//! larger query budget). The embedded sink has no such error: it records the receive
//! instant, so its `first_seen` is the ingest instant itself.
//!
//! # How the engine calls it (wiring of `loadgen run`)
//!
//! 1. **Sampling in the hot loop.** When a sampled request completes, the worker builds a
//!    [`Sample`] (trace id it injected in `traceparent`, request id, tenant, scenario,
//!    scheduled instant, completion instant and wall time, expected span count: 1 for a
//!    plain request, the count `/storm` reports) and calls
//!    [`pipeline::Pipeline::submit`], a `try_send` into one bounded channel per verifier.
//!    A full channel counts the sample as dropped ([`pipeline::Pipeline::dropped`]): it
//!    never blocks the hot loop and never grows memory. The sampler
//!    (`telemetry.sample.rate` / `perSecond`) keeps the rate well below the drain rate,
//!    which the shared query budget sets for per-id backends (Tempo, Jaeger).
//! 2. **Bounded store.** [`poll::run`] owns the pending samples: at most
//!    [`PollPolicy::max_pending`]; a sample arriving beyond that is settled at once as
//!    unknown with a reason, never missing. A settled sample leaves the store at once;
//!    only its [`poll::Verified`] goes to the caller's closure, which folds it into a
//!    [`Tally`] (HdrHistograms `telemetry_<signal>_ingest_latency`,
//!    `telemetry_<signal>_query_duration`; counters `_missing`, `_incomplete`, `_unknown`).
//!    Nothing is kept per request.
//! 3. **Concurrency with the load.** [`pipeline::Pipeline::start`] spawns one
//!    [`poll::run`] per verifier, beside the workers for the whole run, all sharing one
//!    [`RateLimiter`]; [`pipeline::Pipeline::snapshot`] serves progress ticks and
//!    `abortOnFail`. When the load ends the engine calls
//!    [`pipeline::Pipeline::finish`]: the channels close, and each task keeps polling what
//!    is pending until found or its `settle_timeout` has passed. Cancelling the token
//!    (Ctrl-C) settles what remains as unknown ("cancelled before the sample settled").
//!
//! Lower-level use, one verifier driven directly:
//!
//! ```no_run
//! # async fn demo() -> Result<(), ricochet_verify::VerifyError> {
//! use std::sync::Arc;
//! use ricochet_verify::{http::{Endpoint, HttpBackend}, poll, tempo::TraceVerifier, PollPolicy, RateLimiter};
//! let limiter = RateLimiter::per_second(20.0)?;
//! let backend = HttpBackend::new("tempo", &Endpoint::new("http://tempo:3200")?, limiter)?;
//! let tempo: Arc<dyn ricochet_verify::Verifier> = Arc::new(TraceVerifier::tempo(backend));
//! let (tx, rx) = tokio::sync::mpsc::channel(10_000);
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let task = tokio::spawn(poll::run(tempo, None, rx, PollPolicy::default(), cancel, |v| println!("{v:?}"), |_query| {}));
//! // ... workers: tx.try_send(sample) ...
//! drop(tx);
//! let _ = task.await;
//! # Ok(()) }
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod alerts;
pub mod exposition;
pub mod fate;
pub mod hist;
pub mod http;
pub mod loki;
pub mod pipeline;
pub mod plan;
pub mod poll;
pub mod prometheus;
pub mod query;
pub mod recent;
pub mod sampler;
pub mod sink;
pub mod tally;
pub mod tempo;
pub mod verification;

/// Entry points for the fuzz harness (`ricochet-fuzz`); not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use http::{Auth, Endpoint, HttpBackend, Secret};
pub use poll::{PollPolicy, Verified};
pub use tally::{ClassCounts, Rate, Tally};

/// A boxed `Send` future, so [`Verifier`] stays dyn-compatible.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Configuration errors of verification (bad URL, unreadable CA file, missing secret).
/// Runtime failures to ask a backend are [`Outcome::Unknown`], not errors.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A backend URL did not parse.
    #[error("backend url `{url}` is invalid: {reason}; expected e.g. http://tempo:3200")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A secret's environment variable is unset or not unicode.
    #[error("environment variable `{var}` is not set or not valid unicode")]
    SecretEnv {
        /// The variable name.
        var: String,
    },
    /// A secret the scenario names at `field` could not be read.
    #[error("{field}: {error}")]
    SecretOf {
        /// The field path, e.g. `spec.target.admin.token`.
        field: String,
        /// Why (variable unset, file unreadable).
        error: Box<VerifyError>,
    },
    /// A file (secret or CA) could not be read.
    #[error("cannot read {what} file `{path}`: {source}")]
    File {
        /// What the file is for.
        what: &'static str,
        /// Its path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA file holds no usable PEM certificate.
    #[error("CA file `{path}` holds no valid PEM certificate: {reason}")]
    Ca {
        /// Its path.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The tenant is not a valid header value.
    #[error("tenant `{tenant}` is not a valid X-Scope-OrgID header value (printable ASCII only)")]
    Tenant {
        /// The tenant as given.
        tenant: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for {backend}: {reason}")]
    Client {
        /// Backend name.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// A rate limit that is not a finite positive number.
    #[error("maxQueriesPerSecond must be a finite number > 0, got {0}")]
    Rate(f64),
    /// A trace id that is not 1..=32 hex digits.
    #[error("trace id `{0}` is not 1 to 32 hex digits")]
    TraceId(String),
}

/// Result of this module's constructors.
pub type Result<T, E = VerifyError> = std::result::Result<T, E>;

/// The signal a verifier checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Traces (Tempo, Jaeger, sink).
    Traces,
    /// Log lines (Loki, sink).
    Logs,
    /// Exemplars (Prometheus, Mimir).
    Metrics,
}

impl Signal {
    /// The name used in metric names: `trace`, `log`, `metric`.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::Traces => "trace",
            Self::Logs => "log",
            Self::Metrics => "metric",
        }
    }
}

/// A W3C trace id (16 bytes). Parses 1..=32 hex digits, left-padding with zeros, because
/// Tempo's search renders ids with their leading zeros stripped.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    /// From 16 raw bytes (OTLP protobuf); `None` for any other length.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(b).ok().map(Self)
    }

    /// Lowercase hex, 32 digits, leading zeros kept.
    pub fn to_hex(self) -> String {
        self.to_string()
    }

    /// True for the all-zero (invalid) id.
    pub fn is_zero(self) -> bool {
        self.0 == [0; 16]
    }
}

impl FromStr for TraceId {
    type Err = VerifyError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || VerifyError::TraceId(s.to_owned());
        if s.is_empty() || s.len() > 32 {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        // Walk from the right so a short id is left-padded with zero nibbles.
        for (i, c) in s.bytes().rev().enumerate() {
            let v = (c as char).to_digit(16).ok_or_else(bad)? as u8;
            let byte = 15 - i / 2;
            out[byte] |= if i % 2 == 0 { v } else { v << 4 };
        }
        Ok(Self(out))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// One sampled request, as the engine records it when the request completes.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The trace id loadgen injected (`traceparent`).
    pub trace_id: TraceId,
    /// The request id loadgen sent (`x-request-id`).
    pub request_id: Arc<str>,
    /// The parent span id loadgen sent in `traceparent`: the echo-server's own server
    /// span is the span of the trace whose parent this is.
    pub parent_span_id: u64,
    /// The tenant the request ran as, if any. Informational (reports, per-tenant
    /// breakdowns): backends are queried with their endpoint's `X-Scope-OrgID`.
    pub tenant: Option<Arc<str>>,
    /// Scenario name.
    pub scenario: Arc<str>,
    /// The instant the request was scheduled to go (open model).
    pub scheduled: Instant,
    /// The instant the response ended: ingest latency counts from here.
    pub completed: Instant,
    /// Wall-clock time of `completed`, for backends' time windows.
    pub completed_at: SystemTime,
    /// Spans the trace must hold to count as complete (1 for a plain request).
    pub expected_spans: usize,
    /// The request's `name` in the scenario.
    pub request: Arc<str>,
    /// HTTP status of the response.
    pub status: u16,
    /// Service time (sent to last byte), what a tail sampler's latency rule sees.
    pub service_time: Duration,
    /// Index of the keep class (`telemetry.expectKeep`) the request fell in; the number of
    /// classes for "no class" (expected kept).
    pub class: u8,
    /// The metric probe slot the request carried, if it was a probe: only probes are
    /// verified as exemplars (see [`sampler::ProbeSlots`]).
    pub probe: Option<u16>,
    /// The replica that served it, as the response named it.
    pub replica: Option<Arc<str>>,
}

impl Sample {
    /// A sample completed now, with one expected span; for tests and the sink.
    pub fn now(trace_id: TraceId) -> Self {
        let now = Instant::now();
        Self {
            trace_id,
            request_id: Arc::from(""),
            parent_span_id: 0,
            tenant: None,
            scenario: Arc::from("default"),
            scheduled: now,
            completed: now,
            completed_at: SystemTime::now(),
            expected_spans: 1,
            request: Arc::from("default"),
            status: 200,
            service_time: Duration::ZERO,
            class: 0,
            probe: None,
            replica: None,
        }
    }
}

/// What one question to a backend established about one sample.
///
/// Found is the echo-server's own telemetry for that request, not anything carrying the
/// same id: for traces, a span whose parent is [`Sample::parent_span_id`] (the
/// echo-server's server span, continuing loadgen's `traceparent`); for logs, a record
/// whose `trace_id` and `request_id` fields are the sample's; for exemplars, the sample's
/// trace id as an exemplar's `trace_id` label. Missing is only the backend's own "not
/// found" in its own form; anything else (a proxy's page, a login redirect, a `401`)
/// is [`Outcome::Unknown`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The backend holds it.
    Found {
        /// When we first saw it: the arrival of the answer that held it (backends), or
        /// the receive instant (embedded sink).
        first_seen: Instant,
        /// For trace backends: the echo-server's spans, i.e. its server span and every
        /// span descended from it (for `/storm`, the `W × D` children), which is what
        /// completeness ([`Sample::expected_spans`]) is judged on. When the sample has no
        /// parent span id (`0`: older callers), every span of the trace.
        spans: Option<usize>,
        /// For trace backends: spans of the same trace id that are not the echo-server's
        /// span or its descendants (a mesh sidecar's, an ingress's, another service's),
        /// counted apart and never towards completeness. `None` when not known (logs,
        /// exemplars, or a sample without a parent span id).
        extra_spans: Option<usize>,
        /// The backend's own timestamp of the record (Loki entry, exemplar), if any.
        recorded_at: Option<SystemTime>,
    },
    /// The backend answered, in its own form, that it does not hold it.
    Missing,
    /// Exemplars only: not found, but an exemplar recorded after the request completed
    /// was, so a newer request took its bucket's exemplar before any scrape (exemplars keep
    /// one request per bucket). Neither found nor missing.
    Superseded,
    /// We could not ask; never counted as missing.
    Unknown {
        /// Why, in one sentence naming the backend.
        reason: String,
    },
}

impl Outcome {
    /// An unknown outcome.
    pub fn unknown(reason: impl Into<String>) -> Self {
        Self::Unknown {
            reason: reason.into(),
        }
    }

    /// True for [`Outcome::Found`].
    pub fn is_found(&self) -> bool {
        matches!(self, Self::Found { .. })
    }
}

/// The answer of one [`Verifier::check`] call.
#[derive(Debug, Clone, Default)]
pub struct Check {
    /// One outcome per sample, in the order asked.
    pub outcomes: Vec<Outcome>,
    /// How long each backend query took to answer (excluding rate-limit waits): the
    /// `telemetry_<signal>_query_duration` metric.
    pub query_durations: Vec<Duration>,
}

impl Check {
    /// Every sample gets the same unknown outcome.
    pub fn all_unknown(n: usize, reason: &str, query_durations: Vec<Duration>) -> Self {
        Self {
            outcomes: vec![Outcome::unknown(reason); n],
            query_durations,
        }
    }
}

/// One backend checking one signal. Dyn-compatible so the engine holds
/// `Arc<dyn Verifier>` for the embedded sink and real backends alike.
pub trait Verifier: Send + Sync + fmt::Debug {
    /// The signal checked.
    fn signal(&self) -> Signal;

    /// Short backend name for reasons and reports (`tempo`, `loki`, `sink` ...).
    fn name(&self) -> &str;

    /// How many samples one [`Verifier::check`] call should carry.
    fn max_batch(&self) -> usize {
        1
    }

    /// Asks once about `samples` and returns one outcome per sample, in order.
    fn check<'a>(&'a self, samples: &'a [Sample]) -> BoxFuture<'a, Check>;
}

/// A `maxQueriesPerSecond` budget shared (cheaply cloned) by every verifier of a run.
/// Queries are spaced evenly (`1/rate` apart) from a shared next-slot instant; bursts are
/// not allowed, which is the kind behaviour towards a backend.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    interval: Duration,
    next: Arc<Mutex<Instant>>,
}

impl RateLimiter {
    /// At most `rate` queries per second across all holders.
    pub fn per_second(rate: f64) -> Result<Self> {
        if !rate.is_finite() || rate <= 0.0 {
            return Err(VerifyError::Rate(rate));
        }
        Ok(Self {
            interval: Duration::from_secs_f64(1.0 / rate),
            next: Arc::new(Mutex::new(Instant::now())),
        })
    }

    /// No limit (tests, the embedded sink).
    pub fn unlimited() -> Self {
        Self {
            interval: Duration::ZERO,
            next: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Waits for the next free slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_parse_with_and_without_leading_zeros() {
        let full: TraceId = "0af7651916cd43dd8448eb211c80319c".parse().unwrap();
        let stripped: TraceId = "af7651916cd43dd8448eb211c80319c".parse().unwrap();
        assert_eq!(full, stripped);
        assert_eq!(stripped.to_string(), "0af7651916cd43dd8448eb211c80319c");
        let upper: TraceId = "4BF92F3577B34DA6A3CE929D0E0E4736".parse().unwrap();
        assert_eq!(upper.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!("".parse::<TraceId>().is_err());
        assert!("xyz".parse::<TraceId>().is_err());
        assert!("0".repeat(33).parse::<TraceId>().is_err());
    }

    #[tokio::test]
    async fn rate_limiter_spaces_queries() {
        let l = RateLimiter::per_second(50.0).unwrap();
        let t = Instant::now();
        for _ in 0..6 {
            l.clone().acquire().await;
        }
        // 6 slots at 20 ms spacing: the last starts >= 100 ms after the first.
        assert!(
            t.elapsed() >= Duration::from_millis(95),
            "{:?}",
            t.elapsed()
        );
        assert!(RateLimiter::per_second(0.0).is_err());
        assert!(RateLimiter::per_second(f64::NAN).is_err());
    }
}
