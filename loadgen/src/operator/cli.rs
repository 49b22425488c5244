//! `loadgen operator` and `loadgen crd`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::OperatorConfig;

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
}

fn parse_duration_flag(text: &str) -> Result<Duration, String> {
    crate::duration::parse_duration(text).map_err(|e| e.to_string())
}

/// `loadgen operator`: runs until SIGTERM/Ctrl-C; 3 when it cannot start.
pub fn operator_command(args: &OperatorArgs) -> ExitCode {
    init_logging();
    let config = OperatorConfig {
        runner_image: args.runner_image.clone(),
        runner_service_account: args.runner_service_account.clone(),
        start_lead: args.start_lead,
        namespace: args.namespace.clone(),
        metrics_addr: args.metrics_addr,
        report_dir: args.report_dir.clone(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen operator: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(super::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen operator: {e}");
            ExitCode::from(3)
        }
    }
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
pub fn crd_command() -> ExitCode {
    match ricochet_crds::all_crds_yaml() {
        Ok(yaml) => {
            use std::io::Write as _;
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(yaml.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen crd: {e}");
            ExitCode::from(3)
        }
    }
}
