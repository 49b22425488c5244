//! `loadgen run`: load the plan, run it with progress on the terminal and Ctrl-C/SIGTERM
//! handled, print the summary table.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ricochet_engine::run::{RunOptions, StopKind, Stopper, execute};
use ricochet_engine::worker::Pacing;

use crate::progress::Terminal;
use crate::{CommandResult, Failure, OverrideArgs, runtime};

/// Arguments of `loadgen run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The LoadTest YAML file, e.g. scenarios/smoke.yaml.
    pub scenario: PathBuf,
    /// Write `summary.json` (and the other reports) into this directory, on every exit
    /// path once the run has started.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Overrides of the document.
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// No live progress and no summary table (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
    /// How arrival-rate scenarios wait for each request's instant: `spin` polls the clock
    /// in the last 2 ms (sub-millisecond lag, uses the client core's idle time), `sleep`
    /// only sleeps (no extra CPU, lag of a timer tick plus the OS's wake-up), `auto`
    /// spins unless the process has a CPU quota (a Kubernetes CPU limit).
    #[arg(long, env = "RICOCHET_PACING", value_enum, default_value = "auto")]
    pub pacing: PacingArg,
}

/// `--pacing`: the command line's names for the engine's [`Pacing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PacingArg {
    /// `spin`, unless the process runs under a CPU quota (cgroup `cpu.max` or
    /// `cpu.cfs_quota_us`), where polling would spend the quota: then `sleep`.
    Auto,
    /// Sleep until 2 ms before each arrival, then poll the clock between the runtime's
    /// other work: sub-millisecond schedule lag, paid for with the client core's idle
    /// time whenever arrivals are less than 2 ms apart.
    Spin,
    /// Only sleep on the runtime's timer: no CPU beyond the requests, but each arrival
    /// waits for the timer's millisecond tick and the OS's wake-up, several ms on a
    /// virtual machine.
    Sleep,
}

impl From<PacingArg> for Pacing {
    fn from(p: PacingArg) -> Self {
        match p {
            PacingArg::Auto => Pacing::Auto,
            PacingArg::Spin => Pacing::Spin,
            PacingArg::Sleep => Pacing::Sleep,
        }
    }
}

/// `loadgen run`: runs the plan, prints the summary, returns the run's exit code; the
/// reason the run could not be carried out is the failure.
pub(crate) fn run(args: &RunArgs) -> CommandResult {
    let plan = args
        .overrides
        .load_plan(&args.scenario)
        .map_err(|e| Failure::new(e.exit(), e))?;
    plan.check_one_process()
        .map_err(|e| Failure::new(e.exit(), e))?;
    let runtime = runtime()?;
    let opts = RunOptions {
        out: args.out.clone(),
        progress: Arc::new(Terminal::new(args.quiet, plan.duration())),
        pacing: args.pacing.into(),
        ..RunOptions::default()
    };
    let result = runtime.block_on(async {
        let stopper = Arc::new(Stopper::new());
        let signals = tokio::spawn(listen_signals(stopper.clone()));
        let r = execute(&plan, &opts, stopper).await;
        signals.abort();
        r
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let report = result.map_err(|e| Failure::new(e.exit(), e))?;
    if !args.quiet {
        let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
        print!("{}", ricochet_reports::text::render(&report.summary, color));
    }
    match report.message {
        Some(m) => Err(Failure::new(report.exit, m)),
        None => Ok(report.exit),
    }
}

/// The first SIGINT or SIGTERM stops scheduling and drains in-flight requests; a second
/// interrupts them too.
async fn listen_signals(stopper: Arc<Stopper>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut seen = 0;
    loop {
        let name = tokio::select! {
            r = tokio::signal::ctrl_c() => {
                if r.is_err() {
                    return;
                }
                "SIGINT"
            }
            () = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => "SIGTERM",
        };
        seen += 1;
        if seen == 1 {
            stopper.stop(
                StopKind::Interrupted,
                format!("interrupted by {name}: stopped scheduling and drained in-flight requests"),
            );
        } else {
            stopper.hard.cancel();
        }
    }
}
