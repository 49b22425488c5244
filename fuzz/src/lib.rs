//! `ricochet-fuzz`: a fuzz harness for every parser of ricochet that takes user or network
//! input — threshold expressions, durations, scenario YAML to `Plan`, the HTTP/1.1
//! response parser and chunked decoding, the OTLP sink's decoders, the OpenMetrics
//! exposition parser, the Tempo/Jaeger/Loki/Prometheus answer readers, `summary.json`, and
//! the echo-server's request parsing (`traceparent`, `baggage`, `?delay`, `/storm`).
//!
//! Stable Rust has no libFuzzer (cargo-fuzz needs nightly), so this is a small
//! libFuzzer-style engine of its own: a seeded [`rng::Rng`], byte [`mutate`]-ions with a
//! dictionary per format, structure-aware generators where they are cheap, and a seed
//! corpus of real inputs (recorded backend answers, the scenario files, OTLP encodings).
//! It is *outcome*-guided rather than coverage-guided: each target returns a fingerprint
//! of what the parser did (which error, which answer shape — not the values it echoed),
//! and an input that produced a new fingerprint joins the corpus.
//!
//! The [`runner`] calls each input under `catch_unwind` and a clock and reports inputs,
//! panics, hangs and peak RSS; findings are minimized and written to disk.
//!
//! ```no_run
//! use ricochet_fuzz::{runner, targets};
//! let target = targets::find("duration").unwrap();
//! let report = runner::run(&target, &runner::Config { inputs: 1_000, ..Default::default() });
//! assert_eq!((report.panics, report.hangs), (0, 0));
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod mutate;
pub mod rng;
pub mod runner;
pub mod targets;

pub use runner::{Config, Finding, FindingKind, Report, Target};
