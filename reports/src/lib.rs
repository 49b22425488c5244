//! Rendering of a ricochet run's results from its `summary.json`.
//!
//! [`model::Summary`] is the versioned schema that `loadgen run --out DIR` writes and
//! every renderer reads. This crate turns one into:
//!
//! - a terminal summary ([`text::render`], what `loadgen run` prints at the end),
//! - JUnit XML ([`junit::render`]) for CI test reporters,
//! - Markdown ([`markdown::render`]) to paste into an issue or pull request,
//! - one self-contained HTML file with SVG charts ([`html::render`]),
//!
//! and compares two runs ([`compare::compare`]).
//!
//! This package knows no engine: it is a leaf under `ricochet-engine` (which builds the
//! summary), `ricochet-operator` (which merges runners' summaries) and the `loadgen` CLI,
//! which calls it like this:
//!
//! ```text
//! loadgen run SCENARIO.yaml --out DIR        # write_all(): summary.json, report.md, report.html, junit.xml
//! loadgen report SUMMARY.json --format html|md|junit|text|json [--output FILE]
//!                                            # load_summary() + render(); exit 2 on unreadable summary
//! loadgen compare BASELINE.json CURRENT.json [--max-regression p99=10%,error_rate=0.1pp] [--format text|md|html]
//!                                            # exit 1 unless Comparison::passes() (a regression, a run that
//!                                            # measured nothing, a metric the current run lacks),
//!                                            # 2 on unreadable summary or bad limits
//! ```
//!
//! ```
//! use ricochet_reports::{Format, compare::{Limits, compare}, render};
//! # fn summary() -> ricochet_reports::Summary {
//! #     serde_json::from_str(include_str!("../tests/data/fixture.summary.json")).unwrap()
//! # }
//! let run = summary();
//! let markdown = render(&run, Format::Markdown);
//! assert!(markdown.starts_with("## "));
//!
//! let limits = Limits::parse("p99=10%,error_rate=0.1pp")?;
//! let comparison = compare(&run, &run, &limits);
//! assert!(comparison.passes());
//! # Ok::<(), ricochet_reports::Error>(())
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod charts;
pub mod compare;
mod escape;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod model;
mod notes;
mod platform;
pub mod text;
mod units;

pub use model::{SCHEMA_VERSION, Summary};

/// Errors reading, parsing or writing summaries and reports, and parsing comparison limits.
///
/// Every message is one sentence naming the file (or flag), what is wrong and what
/// would be valid.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path}: not valid JSON at line {line}, column {column}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The JSON has no numeric `schemaVersion` at the top level.
    #[error(
        "{path}: no numeric top-level `schemaVersion`; is this a summary.json written by `loadgen run --out DIR`?"
    )]
    MissingSchemaVersion {
        /// The file.
        path: PathBuf,
    },
    /// The summary was written with another schema version.
    #[error(
        "{path}: schemaVersion {found} is not supported by this loadgen (reads {supported}); re-render it with the loadgen that wrote it"
    )]
    UnsupportedSchemaVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The version this crate reads ([`SCHEMA_VERSION`]).
        supported: u32,
    },
    /// The JSON is a summary of the right version but a field is missing or mistyped.
    #[error("{path}: line {line}, column {column}: {message}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Which field and what was expected.
        message: String,
    },
    /// A `--max-regression` specification is malformed.
    #[error("--max-regression {spec:?}: {reason}")]
    Limits {
        /// The specification as given.
        spec: String,
        /// What is wrong and what would be valid.
        reason: String,
    },
    /// A report format name is unknown.
    #[error("--format {0:?}: unknown format; valid: text, json, md, html, junit")]
    UnknownFormat(String),
}

impl Error {
    /// The `loadgen` exit code this error maps to: always 2 (the input was invalid or
    /// unreadable), except a failed write, which is 3 (the run's results could not be
    /// delivered).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Write { .. } => 3,
            _ => 2,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A report format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Terminal summary without colour ([`text::render`] takes a colour flag).
    Text,
    /// `summary.json` itself, pretty-printed.
    Json,
    /// Markdown for issues and pull requests.
    Markdown,
    /// One self-contained HTML file with SVG charts.
    Html,
    /// JUnit XML for CI test reporters.
    Junit,
}

impl Format {
    /// Every format, in the order `write_all` writes the file-based ones.
    pub const ALL: [Format; 5] = [
        Format::Json,
        Format::Markdown,
        Format::Html,
        Format::Junit,
        Format::Text,
    ];

    /// The file name `write_all` uses for this format.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Text => "summary.txt",
            Format::Json => "summary.json",
            Format::Markdown => "report.md",
            Format::Html => "report.html",
            Format::Junit => "junit.xml",
        }
    }
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "text" | "txt" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "md" | "markdown" => Ok(Format::Markdown),
            "html" => Ok(Format::Html),
            "junit" | "xml" => Ok(Format::Junit),
            _ => Err(Error::UnknownFormat(s.to_owned())),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Markdown => "md",
            Format::Html => "html",
            Format::Junit => "junit",
        })
    }
}

/// Renders `summary` in `format` (text without colour; use [`text::render`] for colour).
pub fn render(summary: &Summary, format: Format) -> String {
    match format {
        Format::Text => text::render(summary, false),
        Format::Json => to_json(summary),
        Format::Markdown => markdown::render(summary),
        Format::Html => html::render(summary),
        Format::Junit => junit::render(summary),
    }
}

/// `summary` as pretty-printed JSON with a trailing newline.
pub fn to_json(summary: &Summary) -> String {
    // Serializing these plain data types cannot fail (string keys, no custom impls);
    // should it ever, the JSON null keeps the file parseable and the load step reports it.
    let mut json = serde_json::to_string_pretty(summary).unwrap_or_else(|_| "null".to_owned());
    json.push('\n');
    json
}

/// Writes `summary.json`, `report.md`, `report.html` and `junit.xml` into `dir`
/// (created if missing) and returns their paths in that order.
pub fn write_all(summary: &Summary, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut written = Vec::with_capacity(4);
    for format in [Format::Json, Format::Markdown, Format::Html, Format::Junit] {
        let path = dir.join(format.file_name());
        std::fs::write(&path, render(summary, format)).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Reads and parses a `summary.json`, rejecting other schema versions.
pub fn load_summary(path: &Path) -> Result<Summary> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_summary(&text, path)
}

/// Parses a `summary.json` document; `origin` names it in error messages.
///
/// Syntax errors carry line and column; a `schemaVersion` other than
/// [`SCHEMA_VERSION`] is rejected before any other field is looked at, so a newer
/// summary gets the version sentence rather than a confusing field error.
pub fn parse_summary(text: &str, origin: &Path) -> Result<Summary> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Json {
        path: origin.to_owned(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e),
    })?;
    let Some(found) = value
        .get("schemaVersion")
        .and_then(serde_json::Value::as_u64)
    else {
        return Err(Error::MissingSchemaVersion {
            path: origin.to_owned(),
        });
    };
    if found != u64::from(SCHEMA_VERSION) {
        return Err(Error::UnsupportedSchemaVersion {
            path: origin.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    // Parse again from text (not from `value`) so field errors keep their position.
    serde_json::from_str(text).map_err(|e| Error::Schema {
        path: origin.to_owned(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e),
    })
}

/// serde_json's message without its trailing " at line L column C" (we print our own).
fn strip_position(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    }
}

/// The JSON Schema of [`Summary`], generated from the types, pretty-printed with a
/// trailing newline; `reports/summary.schema.json` is this text, checked by a test.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Summary);
    let mut json = serde_json::to_string_pretty(&schema).unwrap_or_else(|_| "{}".to_owned());
    json.push('\n');
    json
}
