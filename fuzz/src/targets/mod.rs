//! The fuzz targets: one per parser of user or network input, each with its seeds,
//! dictionary and (where cheap) a structure-aware generator.
//!
//! Input formats, where a target needs more than the parser's own text:
//! - `threshold`: `key`, then on following lines `condition` and optionally
//!   `delayAbortEval`, `window`, `phase` (a detailed threshold when any is present);
//! - `h1`: a flags byte (bit 0: the request was `HEAD`; bits 1–4: how many reads the
//!   response arrives in), then the response bytes;
//! - `otlp`: a mode byte (gRPC, HTTP protobuf or HTTP JSON × traces or logs), then the body;
//! - `echo`: `METHOD TARGET`, header lines `name: value`, a blank line, the body.

use std::path::Path;

use crate::rng::{hash, mix};
use crate::runner::Target;

mod echo;
mod engine;
mod reports;
mod verify;

/// Every target, in report order.
pub fn all() -> Vec<Target> {
    vec![
        engine::THRESHOLD,
        engine::DURATION,
        engine::PLAN,
        engine::H1,
        verify::OTLP,
        verify::EXPOSITION,
        verify::TEMPO_JSON,
        verify::TEMPO_PROTOBUF,
        verify::JAEGER,
        verify::LOKI,
        verify::PROMETHEUS,
        verify::RETRY_AFTER,
        reports::SUMMARY,
        reports::COMPARE_LIMITS,
        echo::ECHO,
        echo::CHAOS_SPEC,
        echo::RESOURCE_ATTRIBUTES,
    ]
}

/// The target named `name`.
pub fn find(name: &str) -> Option<Target> {
    all().into_iter().find(|t| t.name == name)
}

/// The files of `fuzz/corpus/<dir>/`, sorted by name (seeds checked into the repository).
pub(crate) fn corpus_dir(dir: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&path)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

/// A fingerprint of a message that ignores what it echoes: what lies between the first and
/// the last quote (backtick or `"`) is left out, and so are digits, so "unknown metric `x`"
/// and "unknown metric `y`" are one outcome, and so are "at line 3" and "at line 12".
pub(crate) fn shape(message: &str) -> u64 {
    let quote = |c: char| c == '`' || c == '"';
    let kept = match (message.find(quote), message.rfind(quote)) {
        (Some(first), Some(last)) => format!("{}\u{1}{}", &message[..first], &message[last + 1..]),
        _ => message.to_owned(),
    };
    let kept: Vec<u8> = kept.bytes().filter(|b| !b.is_ascii_digit()).collect();
    hash(&kept)
}

/// Combines fingerprints.
pub(crate) fn and(a: u64, b: u64) -> u64 {
    mix(a ^ b.rotate_left(17))
}

/// The fingerprint of a result: its `Ok` shape, or the shape of its error message.
pub(crate) fn outcome<T, E: std::fmt::Display>(r: &Result<T, E>, ok: impl Fn(&T) -> u64) -> u64 {
    match r {
        Ok(v) => and(1, ok(v)),
        Err(e) => and(2, shape(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_are_unique_and_every_target_has_seeds() {
        let targets = all();
        let mut names: Vec<_> = targets.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), targets.len());
        for t in &targets {
            assert!(!(t.seeds)().is_empty(), "{} has no seeds", t.name);
        }
    }

    #[test]
    fn shapes_ignore_echoed_values() {
        assert_eq!(shape("unknown metric `a`"), shape("unknown metric `bbb`"));
        assert_eq!(shape("at line 3 column 9"), shape("at line 12 column 1"));
        assert_ne!(shape("unknown metric `a`"), shape("unknown unit `a`"));
        assert_eq!(
            shape("`a\"b` is not a duration"),
            shape("`c` is not a duration")
        );
    }
}
