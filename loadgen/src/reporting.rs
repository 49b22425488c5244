//! `loadgen report` and `loadgen compare`: re-render a run's `summary.json`, and gate a
//! build on "is this run worse than the last good one".

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ricochet_reports::compare::{Limits, compare};
use ricochet_reports::{Format, load_summary, render, text};

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
pub fn report_command(args: &ReportArgs) -> ExitCode {
    let summary = match load_summary(&args.summary) {
        Ok(summary) => summary,
        Err(err) => return fail(&err.to_string(), err.exit_code()),
    };
    let rendered = match (args.format, &args.output) {
        (Format::Text, None) => text::render(&summary, std::io::stdout().is_terminal()),
        (format, _) => render(&summary, format),
    };
    emit(&rendered, args.output.as_deref())
}

/// `loadgen compare`: 0 without regression, 1 when a limit is exceeded (each named on
/// stderr), 2 when a summary or the limits cannot be read.
pub fn compare_command(args: &CompareArgs) -> ExitCode {
    let limits = match Limits::parse(&args.max_regression) {
        Ok(limits) => limits,
        Err(err) => return fail(&format!("--max-regression: {err}"), 2),
    };
    let baseline = match load_summary(&args.baseline) {
        Ok(summary) => summary,
        Err(err) => return fail(&err.to_string(), 2),
    };
    let current = match load_summary(&args.current) {
        Ok(summary) => summary,
        Err(err) => return fail(&err.to_string(), 2),
    };
    let comparison = compare(&baseline, &current, &limits);
    let rendered = match args.format {
        CompareFormat::Text => comparison.to_text(),
        CompareFormat::Md => comparison.to_markdown(),
        CompareFormat::Html => comparison.to_html(),
    };
    let written = emit(&rendered, args.output.as_deref());
    if written != ExitCode::SUCCESS {
        return written;
    }
    if comparison.has_regression() {
        for sentence in comparison.regression_sentences() {
            eprintln!("regression: {sentence}");
        }
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn emit(rendered: &str, output: Option<&Path>) -> ExitCode {
    match output {
        None => {
            print!("{rendered}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, rendered) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&format!("cannot write {}: {err}", path.display()), 3),
        },
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}
