//! Command line: `loadgen run | validate | report | compare | operator | runner | crd`,
//! errors mapped to exit codes.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::plan::Overrides;

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
    Run(crate::run::RunArgs),
    /// Run the Kubernetes operator: reconcile LoadTestRuns over runner pods, create runs on
    /// LoadTest schedules (in cluster; see deploy/README.md).
    Operator(crate::operator::cli::OperatorArgs),
    /// Print the CustomResourceDefinitions (LoadTest, LoadTestRun) as YAML, for `kubectl apply -f -`.
    Crd,
    /// Run one runner's part of a LoadTestRun: wait at the start barrier, run, write the
    /// partial result (what the operator's runner pods execute).
    Runner(crate::operator::runner::RunnerArgs),
    /// Re-render a run's summary.json as text, Markdown, HTML, JUnit or JSON; exit 2 when
    /// the summary cannot be read (another schema version, malformed JSON).
    Report(crate::reporting::ReportArgs),
    /// Compare two runs' summary.json side by side; exit 1 when a regression exceeds
    /// `--max-regression`, 2 when a summary or the limits cannot be read.
    Compare(crate::reporting::CompareArgs),
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
}

impl OverrideArgs {
    /// The overrides the plan applies.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            multiplier: self.multiplier,
            duration: self.duration,
            embedded: self.embedded,
        }
    }
}

fn parse_duration_flag(text: &str) -> Result<Duration, String> {
    crate::duration::parse_duration(text).map_err(|e| e.to_string())
}

/// Parses `args`, runs the command and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Run(args) => crate::run::run_command(&args),
        Command::Operator(args) => crate::operator::cli::operator_command(&args),
        Command::Crd => crate::operator::cli::crd_command(),
        Command::Runner(args) => crate::operator::runner::runner_command(&args),
        Command::Report(args) => crate::reporting::report_command(&args),
        Command::Compare(args) => crate::reporting::compare_command(&args),
    }
}

/// `loadgen validate`: the plan's summary on stdout and 0, or the error on stderr and 2.
fn validate(args: &ValidateArgs) -> ExitCode {
    match crate::load::load_plan(&args.scenario, &args.overrides.overrides()) {
        Ok(plan) => {
            println!("OK {}: {}", args.scenario.display(), plan.summary());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(err.exit_code())
        }
    }
}
