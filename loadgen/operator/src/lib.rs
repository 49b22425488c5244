//! `ricochet-operator`: a kube-rs controller that runs `LoadTestRun`s over parallel runner
//! pods and creates them on `LoadTest` schedules (`loadgen operator`), and the runner
//! pods' side of that protocol (`loadgen runner`, [`runner`]).
//!
//! It sits between the command line and the engine: it uses `ricochet-engine` to validate
//! and split plans and to judge merged results, and is the only package besides the CRDs
//! that links kube, its runtime and the cron parser. It knows nothing of clap.
//!
//! A run: resolve the spec (`loadTestRef` or inline) and validate it as `loadgen run`
//! would → check that each of the `parallelism` segments of the plan has load
//! ([`ricochet_engine::segment`]) → a ConfigMap with the whole spec and one Job per
//! runner, each given its index and the runner count and running its segment of the
//! plan ([`resources`]) → phase `Pending` until
//! every runner pod is `Running` → the start barrier (`<run>-start`, see [`resources`]) →
//! phase `Running` → each runner writes its partial result ([`partial`]) → the operator
//! merges them exactly, judges the thresholds on the merged data, writes the report
//! ConfigMap and sets `Passed`/`Failed`. A failed or lost runner fails the run with its
//! reason. Everything a run creates is owned by it.
//!
//! ```no_run
//! # async fn f() -> Result<(), ricochet_operator::Error> {
//! ricochet_operator::run(ricochet_operator::OperatorConfig::default()).await
//! # }
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod flagger;
pub mod gate;
pub mod partial;
pub mod reconcile;
pub mod resources;
pub mod runner;
pub mod schedule;

#[cfg(test)]
mod fixtures;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use ricochet_crds::{LoadTest, LoadTestRun};

/// What the operator can fail at while reconciling (retried by `error_policy`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object lacks a field the API server always sets.
    #[error("{0} has no {1}")]
    MissingField(String, &'static str),
    /// An object could not be rendered.
    #[error("cannot render {0}: {1}")]
    Render(String, String),
    /// The operator could not start (no cluster config, port taken).
    #[error("cannot start the operator: {0}")]
    Startup(String),
}

impl Error {
    /// Label of the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingField(..) => "missing_field",
            Error::Render(..) => "render",
            Error::Startup(_) => "startup",
        }
    }
}

/// Results of the operator.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of `loadgen operator`.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Image of runner pods unless a LoadTest overrides it.
    pub runner_image: String,
    /// ServiceAccount of runner pods unless a LoadTest overrides it.
    pub runner_service_account: String,
    /// Time between releasing the start barrier and the runners' common start.
    pub start_lead: Duration,
    /// Watch only this namespace (default: all).
    pub namespace: Option<String>,
    /// Address of the `/metrics` endpoint.
    pub metrics_addr: std::net::SocketAddr,
    /// Also write every run's reports (HTML included) under this directory (a volume).
    pub report_dir: Option<std::path::PathBuf>,
    /// Serve Flagger's webhooks on this address ([`flagger`]); off when `None`.
    pub flagger_addr: Option<std::net::SocketAddr>,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            runner_image: "ricochet/loadgen:latest".into(),
            runner_service_account: "ricochet-runner".into(),
            start_lead: Duration::from_secs(10),
            namespace: None,
            metrics_addr: std::net::SocketAddr::from(([0, 0, 0, 0], 9090)),
            report_dir: None,
            flagger_addr: None,
        }
    }
}

/// The time, injectable so that schedules are testable.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The operator's own metrics (served as Prometheus text on `/metrics`).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Reconciliations started.
    pub reconciliations: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Runs finished, by verdict.
    finished: Mutex<BTreeMap<String, u64>>,
    /// Runs created by schedules.
    pub scheduled_runs: AtomicU64,
    /// The last finished run of each LoadTest, by namespace and name.
    last_runs: Mutex<BTreeMap<(String, String), LastRun>>,
}

/// A LoadTest's last finished run, for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct LastRun {
    /// It passed.
    pub passed: bool,
    /// How long it ran, seconds.
    pub duration_secs: f64,
    /// When it finished, seconds since the Unix epoch.
    pub finished_unix: f64,
    /// Each threshold: metric, expression, and 1 pass / 0 fail / -1 unknown.
    pub thresholds: Vec<(String, String, f64)>,
}

/// One value of a [`LastRun`], for rendering.
type LastRunValue = fn(&LastRun) -> f64;

/// Escapes a label value for the Prometheus text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts a failed reconciliation by error kind.
    pub fn failure(&self, err: &Error) {
        *self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(err.metric_label())
            .or_default() += 1;
    }

    /// Failed reconciliations of one kind.
    pub fn failures(&self, label: &str) -> u64 {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(label)
            .copied()
            .unwrap_or(0)
    }

    /// Counts a finished run.
    pub fn run_finished(&self, verdict: &str) {
        *self
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(verdict.to_owned())
            .or_default() += 1;
    }

    /// Records the last finished run of LoadTest `loadtest` in `namespace`.
    pub fn last_run(&self, namespace: &str, loadtest: &str, run: LastRun) {
        self.last_runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((namespace.to_owned(), loadtest.to_owned()), run);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP ricochet_operator_reconciliations_total Reconciliations started.\n# TYPE ricochet_operator_reconciliations_total counter\n");
        out.push_str(&format!(
            "ricochet_operator_reconciliations_total {}\n",
            self.reconciliations.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP ricochet_operator_reconcile_failures_total Failed reconciliations by error kind.\n# TYPE ricochet_operator_reconcile_failures_total counter\n");
        for (k, v) in self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            out.push_str(&format!(
                "ricochet_operator_reconcile_failures_total{{error=\"{k}\"}} {v}\n"
            ));
        }
        out.push_str("# HELP ricochet_runs_finished_total Runs finished by verdict.\n# TYPE ricochet_runs_finished_total counter\n");
        for (k, v) in self
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            out.push_str(&format!(
                "ricochet_runs_finished_total{{verdict=\"{k}\"}} {v}\n"
            ));
        }
        out.push_str("# HELP ricochet_scheduled_runs_total Runs created by LoadTest schedules.\n# TYPE ricochet_scheduled_runs_total counter\n");
        out.push_str(&format!(
            "ricochet_scheduled_runs_total {}\n",
            self.scheduled_runs.load(Ordering::Relaxed)
        ));
        let last = self
            .last_runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let gauges: [(&str, &str, LastRunValue); 3] = [
            (
                "ricochet_loadtest_last_run_passed",
                "1 when the LoadTest's last finished run passed, else 0.",
                |r| f64::from(u8::from(r.passed)),
            ),
            (
                "ricochet_loadtest_last_run_duration_seconds",
                "How long the LoadTest's last finished run ran.",
                |r| r.duration_secs,
            ),
            (
                "ricochet_loadtest_last_run_finished_timestamp_seconds",
                "When the LoadTest's last run finished (Unix time).",
                |r| r.finished_unix,
            ),
        ];
        for (name, help, value) in gauges {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for ((ns, lt), r) in last.iter() {
                out.push_str(&format!(
                    "{name}{{namespace=\"{}\",loadtest=\"{}\"}} {}\n",
                    label(ns),
                    label(lt),
                    value(r)
                ));
            }
        }
        out.push_str("# HELP ricochet_loadtest_threshold_passed Each threshold of the LoadTest's last finished run: 1 pass, 0 fail, -1 unknown.\n# TYPE ricochet_loadtest_threshold_passed gauge\n");
        for ((ns, lt), r) in last.iter() {
            for (metric, expression, v) in &r.thresholds {
                out.push_str(&format!(
                    "ricochet_loadtest_threshold_passed{{namespace=\"{}\",loadtest=\"{}\",threshold=\"{}\",expression=\"{}\"}} {v}\n",
                    label(ns),
                    label(lt),
                    label(metric),
                    label(expression)
                ));
            }
        }
        out
    }
}

/// What every reconciliation shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Settings.
    pub config: OperatorConfig,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Events on runs and LoadTests.
    pub recorder: Recorder,
}

impl Context {
    /// Publishes an Event about `object` (a run or a LoadTest) for `action`.
    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        action: &str,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> Result<()> {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        self.recorder
            .publish(&event, &object.object_ref(&()))
            .await?;
        Ok(())
    }

    /// A context over `client` with the system clock.
    pub fn new(client: Client, config: OperatorConfig) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter::from(resources::MANAGER));
        Self {
            client,
            config,
            clock: Arc::new(SystemClock),
            metrics: Arc::default(),
            recorder,
        }
    }
}

/// After a failed reconciliation: count it, retry in 30 s.
pub fn error_policy<K>(_obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "reconcile failed");
    ctx.metrics.failure(err);
    Action::requeue(Duration::from_secs(30))
}

/// Runs the operator until the process is stopped: the run controller (owning Jobs), the
/// schedule controller (owning runs), `/metrics` and, when configured, Flagger's webhooks.
pub async fn run(config: OperatorConfig) -> Result<()> {
    let client = Client::try_default().await?;
    let ctx = Arc::new(Context::new(client.clone(), config.clone()));
    let (runs, jobs, tests): (Api<LoadTestRun>, Api<Job>, Api<LoadTest>) = match &config.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .map_err(|e| Error::Startup(format!("cannot listen on {}: {e}", config.metrics_addr)))?;
    let metrics = Arc::clone(&ctx.metrics);
    tokio::spawn(serve_metrics(listener, metrics));
    if let Some(addr) = config.flagger_addr {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::Startup(format!("cannot listen on {addr} (--flagger-addr): {e}"))
        })?;
        tokio::spawn(flagger::serve(listener, client.clone()));
        tracing::info!(%addr, path = flagger::PATH, "serving Flagger webhooks");
    }
    let owned_jobs = watcher::Config::default().labels(resources::LABEL_RUN);
    let run_controller = Controller::new(runs.clone(), watcher::Config::default())
        .owns(jobs, owned_jobs)
        .shutdown_on_signal()
        .run(reconcile::reconcile_run, error_policy, Arc::clone(&ctx))
        .for_each(|_| futures_util::future::ready(()));
    let schedule_controller = Controller::new(tests, watcher::Config::default())
        .owns(runs, watcher::Config::default())
        .shutdown_on_signal()
        .run(schedule::reconcile_load_test, error_policy, ctx)
        .for_each(|_| futures_util::future::ready(()));
    tracing::info!("operator started");
    futures_util::future::join(run_controller, schedule_controller).await;
    Ok(())
}

/// A minimal HTTP/1 responder for `/metrics` (and `/healthz`): one request per connection.
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if head.starts_with("GET /metrics") {
                ("200 OK", metrics.render())
            } else if head.starts_with("GET /healthz") {
                ("200 OK", "ok\n".to_owned())
            } else {
                ("404 Not Found", String::new())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
