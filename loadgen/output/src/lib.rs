//! `ricochet-output`: loadgen's own metrics, pushed live while a run goes, as k6's
//! Prometheus remote-write and OpenTelemetry outputs do.
//!
//! The engine converts its stats into the neutral model ([`Batch`] of [`Series`] and
//! [`Histogram`]) and [`Output::offer`]s one batch per flush interval. Each [`Target`]
//! has its own bounded queue and task: an offer never blocks or awaits (a full queue drops
//! the batch and counts it), so a slow or down endpoint never slows the run.
//! [`Output::finish`] sends what is queued within a deadline and returns one
//! [`TargetReport`] per target.
//!
//! Two protocols:
//! - **Prometheus remote write 1.0** ([`remote_write`]): Prometheus'
//!   `--web.enable-remote-write-receiver`, Mimir, Cortex, VictoriaMetrics, Thanos Receive,
//!   Grafana Cloud. Histograms become classic `_bucket{le}`, `_sum` and `_count` series.
//! - **OTLP metrics over HTTP/protobuf** ([`otlp`]) to `<endpoint>/v1/metrics`, with
//!   resource attribute `service.name=ricochet-loadgen` plus the caller's. OTLP over gRPC
//!   is not supported: every OTLP receiver also serves HTTP, and this keeps tonic out.
//!
//! A `2xx` is success. Another `4xx` than `429` means the data was refused (Prometheus
//! answers `400` to out-of-order samples): it is not retried, and counts as failed with
//! its reason. A `5xx`, a `429`, a timeout or a connection error is retried with
//! doubling backoff (honouring `Retry-After`) for one flush interval, then counts as
//! failed. Counter values are running totals, so a lost batch loses resolution, not
//! counts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ricochet_output::OutputError> {
//! use std::time::{Duration, SystemTime};
//! use ricochet_output::{Batch, Kind, Options, Output, Series, Target};
//!
//! let output = Output::start(
//!     vec![
//!         Target::remote_write("http://prometheus:9090/api/v1/write"),
//!         Target::otlp("http://collector:4318").with_tenant("team-a"),
//!     ],
//!     Options {
//!         resource: vec![("testid".into(), "checkout-42".into())],
//!         ..Options::default()
//!     },
//! )?;
//! let mut batch = Batch::new(SystemTime::now());
//! batch.series.push(Series {
//!     name: "ricochet_requests_total".into(),
//!     labels: vec![("scenario".into(), "smoke".into())],
//!     value: 1200.0,
//!     kind: Kind::Counter,
//! });
//! output.offer(batch)?;
//! for report in output.finish(Duration::from_secs(5)).await {
//!     println!("{}: {} sent, {} failed", report.target, report.batches_sent, report.batches_failed);
//! }
//! # Ok(())
//! # }
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod exposition;
mod http;
mod lane;
pub mod model;
pub mod otlp;
pub mod remote_write;
pub mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::{CancellationToken, DropGuard};

pub use model::{Batch, Histogram, Kind, NativeHistogram, Series};
pub use target::{Auth, Options, Protocol, Secret, Target};

use lane::Lane;

/// The result of this crate's fallible calls.
pub type Result<T, E = OutputError> = std::result::Result<T, E>;

/// A target or options that cannot work, or a batch that cannot be encoded. Failures to
/// push are counted in [`TargetReport`]s, not returned.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A target URL is not usable.
    #[error(
        "{protocol} URL `{url}` is invalid: {reason}; expected e.g. http://prometheus:9090/api/v1/write or http://collector:4318"
    )]
    Url {
        /// `remote-write` or `otlp`.
        protocol: &'static str,
        /// The URL without credentials or query string.
        url: String,
        /// Why.
        reason: String,
    },
    /// The tenant is not a valid header value.
    #[error(
        "{target}: tenant `{tenant}` is not a valid X-Scope-OrgID header value (printable ASCII only)"
    )]
    Tenant {
        /// Kind and URL of the target.
        target: String,
        /// The tenant as given.
        tenant: String,
    },
    /// The credentials do not fit in an `Authorization` header.
    #[error(
        "{target}: the credentials hold characters an Authorization header cannot carry (printable ASCII only)"
    )]
    Credentials {
        /// Kind and URL of the target.
        target: String,
    },
    /// The CA file is unreadable or holds no PEM certificate.
    #[error("CA file `{path}` is not usable: {reason}")]
    Ca {
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("{target}: cannot build the HTTP client: {reason}")]
    Client {
        /// Kind and URL of the target.
        target: String,
        /// Why.
        reason: String,
    },
    /// A request timeout of zero.
    #[error("{target}: the request timeout must be more than zero")]
    Timeout {
        /// Kind and URL of the target.
        target: String,
    },
    /// `Options::queue` is zero.
    #[error("the output queue must hold at least 1 batch, got 0")]
    Queue,
    /// `Options::flush_interval` is zero.
    #[error("the output flush interval must be more than zero")]
    FlushInterval,
    /// [`Output::start`] was called outside a Tokio runtime.
    #[error("the metrics output must be started inside a Tokio runtime")]
    Runtime,
    /// A histogram of an offered batch has an impossible shape.
    #[error("histogram `{name}` cannot be pushed: {reason}")]
    Histogram {
        /// Its metric name.
        name: String,
        /// What is wrong and what is valid.
        reason: String,
    },
    /// A batch could not be encoded.
    #[error("cannot encode a batch: {reason}")]
    Encode {
        /// Why.
        reason: String,
    },
}

/// What happened to the batches of one target over the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetReport {
    /// Protocol and URL, without credentials or query string
    /// (`remote-write http://prometheus:9090/api/v1/write`).
    pub target: String,
    /// Batches the endpoint accepted.
    pub batches_sent: u64,
    /// Batches tried and not accepted: refused with a `4xx`, still failing when their
    /// flush interval ran out, or in flight when `finish`'s wait ran out.
    pub batches_failed: u64,
    /// Batches never tried: the queue was full, or they were still queued when
    /// `finish`'s wait ran out.
    pub batches_dropped: u64,
    /// Samples (remote write: one per series and bucket) or data points (OTLP) accepted.
    pub samples_sent: u64,
    /// The first reason a try went wrong, else the first reason a batch was dropped;
    /// each names the target.
    pub first_error: Option<String>,
}

/// The live metrics output of one run: one queue and sending task per target.
pub struct Output {
    lanes: Vec<Lane>,
    cancel: CancellationToken,
    /// Stops the tasks when the output is dropped without [`Output::finish`].
    _stop_on_drop: DropGuard,
}

impl Output {
    /// Checks the targets and options, builds each target's client and spawns its task
    /// on the current Tokio runtime. OTLP's cumulative points start at this call, so start
    /// the output when the run starts.
    pub fn start(targets: Vec<Target>, options: Options) -> Result<Self> {
        options.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(OutputError::Runtime);
        }
        let cancel = CancellationToken::new();
        let resource: Arc<[(String, String)]> = options.resource.into();
        let start = SystemTime::now();
        let lanes = targets
            .iter()
            .map(|t| {
                Lane::start(
                    t,
                    lane::encoding_for(t, &resource, start),
                    options.queue,
                    options.flush_interval,
                    cancel.child_token(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            lanes,
            _stop_on_drop: cancel.clone().drop_guard(),
            cancel,
        })
    }

    /// Queues `batch` for every target without blocking or awaiting; where a queue is
    /// full the batch is dropped and counted. An empty batch is ignored; a batch with a
    /// malformed histogram is refused.
    pub fn offer(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        batch.validate()?;
        let batch = Arc::new(batch);
        for lane in &self.lanes {
            lane.offer(batch.clone());
        }
        Ok(())
    }

    /// Sends what is queued, for at most `wait`, and reports each target in the order
    /// given. Batches still queued when `wait` runs out count as dropped, one being sent
    /// as failed.
    pub async fn finish(mut self, wait: Duration) -> Vec<TargetReport> {
        let deadline = tokio::time::Instant::now() + wait;
        for lane in &mut self.lanes {
            lane.close();
        }
        let mut all_done = true;
        for lane in &mut self.lanes {
            all_done &= lane.wait_until(deadline).await;
        }
        if !all_done {
            self.cancel.cancel();
            for lane in &mut self.lanes {
                lane.stop(Duration::from_secs(1)).await;
            }
        }
        self.lanes.iter().map(Lane::report).collect()
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("targets", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_outside_a_tokio_runtime_is_an_error_not_a_panic() {
        let err = Output::start(vec![Target::otlp("http://c:4318")], Options::default());
        assert!(matches!(err, Err(OutputError::Runtime)), "{err:?}");
    }

    #[tokio::test]
    async fn impossible_options_and_targets_are_refused_at_start() {
        let zero_queue = Options {
            queue: 0,
            ..Options::default()
        };
        assert!(matches!(
            Output::start(Vec::new(), zero_queue),
            Err(OutputError::Queue)
        ));
        let zero_timeout =
            Target::remote_write("http://m/api/v1/write").with_timeout(Duration::ZERO);
        let err = Output::start(vec![zero_timeout], Options::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("remote-write http://m/api/v1/write"), "{err}");
        let err = Output::start(vec![Target::otlp("collector:4318")], Options::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`collector:4318`"), "{err}");
    }

    #[tokio::test]
    async fn a_batch_with_a_malformed_histogram_is_refused_by_offer() {
        let output = Output::start(Vec::new(), Options::default()).unwrap();
        let mut batch = Batch::new(SystemTime::now());
        batch.histograms.push(Histogram {
            name: "latency".into(),
            labels: Vec::new(),
            count: 1,
            sum: 1.0,
            bounds: vec![1.0],
            counts: vec![1],
        });
        let err = output.offer(batch).unwrap_err();
        assert!(matches!(err, OutputError::Histogram { .. }), "{err}");
        assert!(output.finish(Duration::ZERO).await.is_empty());
    }
}
