//! `loadgen`: ricochet's command line (`run | validate | report | compare | canary |
//! gate | operator | runner | crd`).
//!
//! The edge of the program, in the ripgrep shape: clap parses the flags into the
//! argument types here, each command makes one library call (`ricochet-engine`,
//! `ricochet-operator`, `ricochet-reports`), and [`main`] prints the one error, if any, as
//! `error: ...` and returns the [`Exit`] code. This package is the only one that knows
//! clap and the terminal; nothing depends on it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ricochet_engine::{Exit, Overrides, Plan, PlanError};

mod canary;
mod gate;
mod operator;
mod progress;
mod report;
mod run;

pub use canary::CanaryArgs;
pub use gate::GateArgs;
pub use operator::{OperatorArgs, RunnerArgs};
pub use report::{CompareArgs, CompareFormat, ReportArgs};
pub use run::{PacingArg, RunArgs};

/// ricochet's load generator.
#[derive(Parser, Debug)]
#[command(name = "loadgen", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a LoadTest file without running it: exit 0 and a one-line summary, or exit 2
    /// and the error (file:line:column: field: what is wrong and what is valid).
    Validate(ValidateArgs),
    /// Run a LoadTest: exit 0 (thresholds passed), 1 (a threshold failed), 2 (invalid
    /// input) or 3 (the run could not be carried out); `--out DIR` writes summary.json.
    Run(RunArgs),
    /// Run the plan continuously in rounds (a low, steady rate) and serve `/metrics` with
    /// the round trip's found / missing / unknown per signal, ingest latency and request
    /// latency over totals and a rolling window; exit 2 on a configuration error, 0 on
    /// SIGTERM.
    Canary(CanaryArgs),
    /// Create a LoadTestRun from a LoadTest (in cluster), wait for it and exit with its
    /// verdict: 0 passed, 1 failed, 2 no such LoadTest, 3 no verdict (see
    /// deploy/argo-rollouts).
    Gate(GateArgs),
    /// Run the Kubernetes operator: reconcile LoadTestRuns over runner pods, create runs on
    /// LoadTest schedules (in cluster; see deploy/README.md).
    Operator(OperatorArgs),
    /// Print the CustomResourceDefinitions (LoadTest, LoadTestRun) as YAML, for `kubectl apply -f -`.
    Crd,
    /// Run one runner's part of a LoadTestRun: wait at the start barrier, run, write the
    /// partial result (what the operator's runner pods execute).
    Runner(RunnerArgs),
    /// Re-render a run's summary.json as text, Markdown, HTML, JUnit or JSON; exit 2 when
    /// the summary cannot be read (another schema version, malformed JSON).
    Report(ReportArgs),
    /// Compare two runs' summary.json side by side; exit 1 when a regression exceeds
    /// `--max-regression`, a run could not be carried out or has no requests, or the
    /// current run lacks a metric the baseline has; 2 when a summary or the limits cannot
    /// be read.
    Compare(CompareArgs),
}

/// Arguments of `loadgen validate`.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The LoadTest YAML file, e.g. scenarios/smoke.yaml.
    pub scenario: PathBuf,
    /// Overrides, checked as `run` would apply them.
    #[command(flatten)]
    pub overrides: OverrideArgs,
}

/// Flags that override the document, shared by `validate` and `run`.
#[derive(Args, Debug, Clone, Default)]
pub struct OverrideArgs {
    /// Traffic multiple of the GA baseline, replacing `spec.traffic.multiplier` (default 3).
    #[arg(long, value_name = "N")]
    pub multiplier: Option<f64>,
    /// Run every scenario for this long (e.g. `10s`): constant executors' duration is
    /// replaced, ramping stages and start times are scaled to fit.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_flag)]
    pub duration: Option<Duration>,
    /// Target the embedded echo-server on loopback, whatever `spec.target` says.
    #[arg(long)]
    pub embedded: bool,
    /// The embedded echo-server listens on this loopback address (e.g. `127.0.0.1:18080`)
    /// instead of an ephemeral port, so that a local Prometheus can scrape it.
    #[arg(long, value_name = "ADDR")]
    pub embedded_listen: Option<std::net::SocketAddr>,
    /// Push loadgen's metrics live while the run goes: `prometheus-rw=URL` (Prometheus
    /// remote write) or `otlp=URL` (OTLP/HTTP); repeatable. `--out` stays the report folder.
    #[arg(long = "output", value_name = "KIND=URL")]
    pub output: Vec<String>,
    /// Let `bodyFile`s be absolute paths or lie outside the scenario file's folder (by
    /// default they must lie in it or below it).
    #[arg(long)]
    pub allow_body_files_outside: bool,
}

impl OverrideArgs {
    /// The overrides the plan applies.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            multiplier: self.multiplier,
            duration: self.duration,
            embedded: self.embedded,
            embedded_listen: self.embedded_listen,
            outputs: self.output.clone(),
        }
    }

    /// Loads and validates `scenario` with these flags applied.
    pub fn load_plan(&self, scenario: &Path) -> Result<Plan, PlanError> {
        let bodies = ricochet_engine::plan::BodySource::Beside {
            allow_outside: self.allow_body_files_outside,
        };
        ricochet_engine::load::load_plan_with(scenario, &self.overrides(), bodies)
    }
}

fn parse_duration_flag(text: &str) -> Result<Duration, String> {
    ricochet_engine::duration::parse_duration(text).map_err(|e| e.to_string())
}

/// A command that could not do its job: the sentence to print and the exit code.
///
/// The libraries' errors are whole sentences that already name their cause (house style:
/// file, field or flag, the bad value, what is valid), so the message is their `Display`,
/// printed once; printing the error's source chain as well would repeat the cause.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong, printed once as `error: {message}`.
    pub message: String,
}

impl Failure {
    /// A failure with this exit code.
    pub fn new(exit: Exit, error: impl std::fmt::Display) -> Self {
        Self {
            exit,
            message: error.to_string(),
        }
    }
}

/// What every command returns: how it ended, or why it could not do its job.
pub type CommandResult = Result<Exit, Failure>;

/// Parses `args`, runs the command, prints its error (if any) and returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(Exit::InvalidInput.code())
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let exit = match execute(cli.command) {
        Ok(exit) => exit,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            failure.exit
        }
    };
    ExitCode::from(exit.code())
}

/// Runs one command.
pub fn execute(command: Command) -> CommandResult {
    match command {
        Command::Validate(args) => validate(&args),
        Command::Run(args) => run::run(&args),
        Command::Canary(args) => canary::canary(&args),
        Command::Gate(args) => gate::gate(&args),
        Command::Operator(args) => operator::operator(&args),
        Command::Crd => operator::crd(),
        Command::Runner(args) => operator::runner(&args),
        Command::Report(args) => report::report(&args),
        Command::Compare(args) => report::compare(&args),
    }
}

/// `loadgen validate`: the plan's summary on stdout and 0, or the error and 2.
fn validate(args: &ValidateArgs) -> CommandResult {
    let plan = args
        .overrides
        .load_plan(&args.scenario)
        .map_err(|e| Failure::new(e.exit(), e))?;
    println!("OK {}: {}", args.scenario.display(), plan.summary());
    Ok(Exit::Passed)
}

/// The async runtime of every command: multi-threaded, or current-thread on a single core
/// (e.g. `taskset -c 1`), where it does the same work with less synchronization.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build().map_err(|e| {
        Failure::new(
            Exit::RunFailed,
            format!("cannot start the async runtime: {e}"),
        )
    })
}
