//! `loadgen operator`, `loadgen runner` and `loadgen crd`: the cluster side.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use k8s_openapi::jiff::Timestamp;
use ricochet_engine::plan::BodySource;
use ricochet_engine::{Exit, Overrides};
use ricochet_operator::OperatorConfig;
use ricochet_operator::runner::{RunnerOptions, run_part};

use crate::progress::Terminal;
use crate::{CommandResult, Failure, parse_duration_flag, runtime};

/// Arguments of `loadgen operator`.
#[derive(Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Image of the runner pods unless a LoadTest's `runner.image` says otherwise.
    #[arg(
        long,
        env = "RICOCHET_RUNNER_IMAGE",
        default_value = "ricochet/loadgen:latest"
    )]
    pub runner_image: String,
    /// ServiceAccount of the runner pods unless a LoadTest's `runner.serviceAccountName` says otherwise.
    #[arg(
        long,
        env = "RICOCHET_RUNNER_SERVICE_ACCOUNT",
        default_value = "ricochet-runner"
    )]
    pub runner_service_account: String,
    /// Time from releasing the start barrier to the runners' common start (e.g. `10s`).
    #[arg(long, default_value = "10s", value_parser = parse_duration_flag)]
    pub start_lead: Duration,
    /// Watch only this namespace (default: every namespace).
    #[arg(long, env = "RICOCHET_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of the `/metrics` and `/healthz` endpoint.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// Also write each run's reports (summary.json, report.md, report.html, junit.xml)
    /// into `DIR/<namespace>/<run>/`, e.g. a mounted PersistentVolumeClaim.
    #[arg(long, value_name = "DIR", env = "RICOCHET_REPORT_DIR")]
    pub report_dir: Option<std::path::PathBuf>,
    /// Serve Flagger's canary webhooks (POST /flagger) on this address, e.g.
    /// `0.0.0.0:8090` (default: off). See deploy/flagger/README.md.
    #[arg(long, value_name = "ADDR", env = "RICOCHET_FLAGGER_ADDR")]
    pub flagger_addr: Option<SocketAddr>,
}

/// `loadgen operator`: runs until SIGTERM/Ctrl-C; 3 when it cannot start.
pub(crate) fn operator(args: &OperatorArgs) -> CommandResult {
    init_logging();
    let config = OperatorConfig {
        runner_image: args.runner_image.clone(),
        runner_service_account: args.runner_service_account.clone(),
        start_lead: args.start_lead,
        namespace: args.namespace.clone(),
        metrics_addr: args.metrics_addr,
        report_dir: args.report_dir.clone(),
        flagger_addr: args.flagger_addr,
    };
    runtime()?
        .block_on(ricochet_operator::run(config))
        .map_err(|e| Failure::new(Exit::RunFailed, format!("operator: {e}")))?;
    Ok(Exit::Passed)
}

/// JSON log lines on stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Already installed (tests, embedding): keep the existing subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `loadgen crd`: both CRDs as one YAML stream on stdout.
pub(crate) fn crd() -> CommandResult {
    let yaml = ricochet_crds::all_crds_yaml()
        .map_err(|e| Failure::new(Exit::RunFailed, format!("crd: {e}")))?;
    use std::io::Write as _;
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(yaml.as_bytes());
    Ok(Exit::Passed)
}

/// Arguments of `loadgen runner` (what a runner pod executes; also runs locally).
#[derive(Args, Debug, Clone)]
pub struct RunnerArgs {
    /// The whole run, a LoadTest file (`<run>-spec`'s `loadtest.yaml`); this runner runs
    /// its segment of it.
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// This runner's index, 0-based.
    #[arg(long)]
    pub index: u32,
    /// Number of runners of the run.
    #[arg(long)]
    pub runners: NonZeroU32,
    /// The run's `spec.overrides.multiplier`, applied to the whole spec as `loadgen run
    /// --multiplier` does.
    #[arg(long, value_name = "N")]
    pub multiplier: Option<f64>,
    /// The run's `spec.overrides.duration`, applied to the whole spec as `loadgen run
    /// --duration` does.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_flag)]
    pub duration: Option<Duration>,
    /// The LoadTestRun (in cluster; its uid comes from `RICOCHET_RUN_UID`).
    #[arg(long, requires_all = ["start_config_map", "result_config_map"])]
    pub run: Option<String>,
    /// In cluster: wait for this ConfigMap (the start barrier) and start at its `startAt`.
    #[arg(long, requires = "run")]
    pub start_config_map: Option<String>,
    /// In cluster: write the partial result into this ConfigMap.
    #[arg(long, requires = "run")]
    pub result_config_map: Option<String>,
    /// Locally: start at this instant (RFC 3339) instead of waiting for a ConfigMap.
    #[arg(long, conflicts_with = "run")]
    pub start_at: Option<Timestamp>,
    /// Locally: write the partial result (JSON) to this file.
    #[arg(long, conflicts_with = "run", required_unless_present = "run")]
    pub result_file: Option<PathBuf>,
    /// Read `bodyFile`s from this folder (and below) only, not beside the spec: in a
    /// cluster, the mounted `spec.runner.bodyFilesConfigMap`.
    #[arg(long, value_name = "DIR")]
    pub body_dir: Option<PathBuf>,
}

impl RunnerArgs {
    fn options(&self) -> RunnerOptions {
        RunnerOptions {
            index: self.index,
            runners: self.runners.get(),
            run: self.run.clone(),
            start_config_map: self.start_config_map.clone(),
            result_config_map: self.result_config_map.clone(),
            start_at: self.start_at,
            result_file: self.result_file.clone(),
        }
    }

    fn overrides(&self) -> Overrides {
        Overrides {
            multiplier: self.multiplier,
            duration: self.duration,
            embedded: false,
            embedded_listen: None,
            outputs: Vec::new(),
        }
    }
}

/// `loadgen runner`: barrier, this runner's segment of the whole plan, partial result; exit
/// 0 when the partial result is written, 2 for an invalid spec or a segment without load, 3
/// when the run could not be carried out.
pub(crate) fn runner(args: &RunnerArgs) -> CommandResult {
    let bodies = match &args.body_dir {
        Some(dir) => BodySource::Folder(dir),
        None => BodySource::default(),
    };
    let plan = ricochet_engine::load::load_plan_with(&args.spec, &args.overrides(), bodies)
        .map_err(|e| Failure::new(e.exit(), e))?;
    let segment = plan
        .segment(args.index, args.runners)
        .map_err(|e| Failure::new(e.exit(), e))?;
    // A run's `overrides.parallelism` below the spec's gives each runner more than the
    // plan was judged for: refuse rather than overload one process.
    segment
        .check_one_process()
        .map_err(|e| Failure::new(e.exit(), e))?;
    runtime()?
        .block_on(run_part(
            &args.options(),
            &segment,
            Arc::new(Terminal::lines()),
        ))
        .map_err(|e| Failure::new(Exit::RunFailed, format!("runner {}: {e}", args.index)))?;
    Ok(Exit::Passed)
}
