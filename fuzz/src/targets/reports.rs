//! Targets in `ricochet-reports`: the `summary.json` reader (as `loadgen report` and
//! `loadgen compare` use it) and the `--max-regression` limits of `compare`.

use std::path::Path;

use ricochet_reports::compare::{Limits, compare};
use ricochet_reports::{Format, parse_summary, render, to_json};

use super::{and, corpus_dir, outcome};
use crate::rng::hash;
use crate::runner::Target;

/// `parse_summary`, then what `report` and `compare` do with a summary that parsed.
pub const SUMMARY: Target = Target {
    name: "summary",
    entry: "ricochet_reports::parse_summary (+ render in every format, compare, to_json read back)",
    max_len: 32 * 1024,
    seeds: summary_seeds,
    dictionary: SUMMARY_TOKENS,
    generate: None,
    run: run_summary,
};

/// `loadgen compare --max-regression`.
pub const COMPARE_LIMITS: Target = Target {
    name: "compare-limits",
    entry: "ricochet_reports::compare::Limits::parse",
    max_len: 1024,
    seeds: limits_seeds,
    dictionary: &[
        b"p50",
        b"p95",
        b"p99",
        b"error_rate",
        b"rps",
        b"=",
        b",",
        b"%",
        b"pp",
        b"ms",
        b"{scenario:",
        b"}",
        b"{scenario:api}",
    ],
    generate: None,
    run: run_limits,
};

const SUMMARY_TOKENS: &[&[u8]] = &[
    b"\"schemaVersion\": 1",
    b"\"schemaVersion\": 2",
    b"\"run\":",
    b"\"scenarios\":",
    b"\"metrics\":",
    b"\"thresholds\":",
    b"\"timeSeries\":",
    b"\"latencyPercentiles\":",
    b"\"percentile\":",
    b"\"valueMs\":",
    b"\"telemetry\":",
    b"\"chaos\":",
    b"\"windows\":",
    b"\"durationSecs\":",
    b"\"targetRps\":",
    b"\"exitCode\":",
    b"\"outcome\":",
    b"\"passed\"",
    b"\"failed\"",
    b"1e308",
    b"-1e308",
    b"0.0",
    b"-0.0",
    b"5e-324",
];

fn summary_seeds() -> Vec<Vec<u8>> {
    corpus_dir("summary")
}

fn run_summary(input: &[u8]) -> u64 {
    // `load_summary` reads the file as UTF-8 text.
    let Ok(text) = std::str::from_utf8(input) else {
        return 0;
    };
    let parsed = parse_summary(text, Path::new("summary.json"));
    if let Ok(summary) = &parsed {
        let mut sizes = 0usize;
        for format in Format::ALL {
            sizes += render(summary, format).len();
        }
        let limits = Limits::parse(Limits::DEFAULT_SPEC).unwrap_or_else(|_| Limits::default());
        let comparison = compare(summary, summary, &limits);
        let _ = (
            comparison.to_text(),
            comparison.to_markdown(),
            comparison.to_html(),
        );
        // What `loadgen run` writes, `loadgen report` must read back.
        let written = to_json(summary);
        let back = parse_summary(&written, Path::new("written.json"));
        assert!(
            back.is_ok(),
            "a parsed summary, written again, does not parse: {back:?}"
        );
        assert!(sizes > 0);
    }
    outcome(&parsed, |s| {
        hash(format!("{} {}", s.scenarios.len(), s.run.exit_code).as_bytes())
    })
}

fn limits_seeds() -> Vec<Vec<u8>> {
    [
        Limits::DEFAULT_SPEC,
        "p99=10%,error_rate=0.1pp,p95{scenario:api}=5%",
        "p99{scenario:a,b}=20ms",
        "rps=0%",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn run_limits(input: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(input) else {
        return 0;
    };
    and(7, outcome(&Limits::parse(text), |_| 0))
}
