//! `loadgen report` and `loadgen compare`: re-render a run's `summary.json`, and gate a
//! build on "is this run worse than the last good one".

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use ricochet_engine::Exit;
use ricochet_reports::compare::{Limits, compare as compare_runs};
use ricochet_reports::model::Summary;
use ricochet_reports::{Format, load_summary, render, text};

use crate::{CommandResult, Failure};

/// Arguments of `loadgen report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A summary.json written by `loadgen run --out DIR`.
    pub summary: PathBuf,
    /// Output format.
    #[arg(long, short, value_parser = parse_format, default_value = "text")]
    pub format: Format,
    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Output formats of `loadgen compare`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompareFormat {
    /// A plain table.
    Text,
    /// Markdown, for a pull-request comment.
    Md,
    /// A self-contained HTML page.
    Html,
}

/// Arguments of `loadgen compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// summary.json of the last good run.
    pub baseline: PathBuf,
    /// summary.json of the run under judgement.
    pub current: PathBuf,
    /// Allowed regressions, e.g. `p99=10%,error_rate=0.1pp,rps=5%`; a key may be scoped
    /// to a scenario: `p99{scenario:api}=10%`.
    #[arg(long, value_name = "LIMITS", default_value = Limits::DEFAULT_SPEC)]
    pub max_regression: String,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "text")]
    pub format: CompareFormat,
    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn parse_format(text: &str) -> Result<Format, String> {
    text.parse()
        .map_err(|e: ricochet_reports::Error| e.to_string())
}

/// `loadgen report`: 0 when rendered, 2 when the summary cannot be read, 3 when the
/// output cannot be written.
pub(crate) fn report(args: &ReportArgs) -> CommandResult {
    let summary = load(&args.summary)?;
    let rendered = match (args.format, &args.output) {
        (Format::Text, None) => text::render(&summary, std::io::stdout().is_terminal()),
        (format, _) => render(&summary, format),
    };
    emit(&rendered, args.output.as_deref())?;
    Ok(Exit::Passed)
}

/// `loadgen compare`: 0 without regression, 1 when a limit is exceeded (each named on
/// stderr) or the comparison cannot pass at all (a run that could not be carried out or
/// has no requests, a metric the current run lacks: one sentence), 2 when a summary or the
/// limits cannot be read.
pub(crate) fn compare(args: &CompareArgs) -> CommandResult {
    let limits =
        Limits::parse(&args.max_regression).map_err(|e| Failure::new(Exit::InvalidInput, e))?;
    let baseline = load(&args.baseline)?;
    let current = load(&args.current)?;
    let comparison = compare_runs(&baseline, &current, &limits);
    let rendered = match args.format {
        CompareFormat::Text => comparison.to_text(),
        CompareFormat::Md => comparison.to_markdown(),
        CompareFormat::Html => comparison.to_html(),
    };
    emit(&rendered, args.output.as_deref())?;
    if let Some(unfit) = comparison.unfit.first() {
        return Err(Failure::new(Exit::ThresholdFailed, unfit));
    }
    if comparison.has_regression() {
        for sentence in comparison.regression_sentences() {
            eprintln!("regression: {sentence}");
        }
        return Ok(Exit::ThresholdFailed);
    }
    Ok(Exit::Passed)
}

fn load(path: &Path) -> Result<Summary, Failure> {
    load_summary(path).map_err(|e| {
        let exit = match e.exit_code() {
            3 => Exit::RunFailed,
            _ => Exit::InvalidInput,
        };
        Failure::new(exit, e)
    })
}

fn emit(rendered: &str, output: Option<&Path>) -> Result<(), Failure> {
    match output {
        None => {
            print!("{rendered}");
            Ok(())
        }
        Some(path) => std::fs::write(path, rendered).map_err(|e| {
            Failure::new(
                Exit::RunFailed,
                format!("cannot write {}: {e}", path.display()),
            )
        }),
    }
}
