//! `loadgen report` and `loadgen compare` as a user runs them: exit codes and the
//! sentences on stderr, against the reports crate's fixture summary.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reports/tests/data/fixture.summary.json")
}

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
}

/// Writes the fixture with `edit` applied into `dir/name`.
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let text = std::fs::read_to_string(fixture()).unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    edit(&mut json);
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    path
}

#[test]
fn report_renders_every_format_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    for (format, needle) in [
        ("md", "### Thresholds"),
        ("html", "<svg"),
        ("junit", "<testsuite"),
        ("text", "http_req_duration"),
        ("json", "\"schemaVersion\": 1"),
    ] {
        let out = dir.path().join(format!("out.{format}"));
        loadgen()
            .args(["report", "--format", format, "--output"])
            .arg(&out)
            .arg(fixture())
            .assert()
            .success();
        let written = std::fs::read_to_string(&out).unwrap();
        assert!(written.contains(needle), "{format} output lacks {needle:?}");
    }
}

#[test]
fn report_rejects_a_summary_of_another_schema_version_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let future = edited(dir.path(), "summary.json", |j| {
        j["schemaVersion"] = 2.into()
    });
    loadgen()
        .arg("report")
        .arg(&future)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "schemaVersion 2 is not supported by this loadgen (reads 1)",
        ));
}

#[test]
fn report_names_the_valid_formats_for_an_unknown_one() {
    loadgen()
        .args(["report", "--format", "pdf"])
        .arg(fixture())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("pdf"));
}

#[test]
fn compare_of_identical_runs_finds_no_regression() {
    loadgen()
        .args(["compare", "--max-regression", "p99=10%,error_rate=0.1pp"])
        .arg(fixture())
        .arg(fixture())
        .assert()
        .success();
}

#[test]
fn compare_exits_1_naming_the_metric_when_p99_grows_25_percent_over_a_10_percent_limit() {
    let dir = tempfile::tempdir().unwrap();
    let slower = edited(dir.path(), "current.json", |j| {
        for (_, metric) in j["metrics"].as_object_mut().unwrap().iter_mut() {
            if let Some(p99) = metric.pointer_mut("/trend/p99") {
                *p99 = (p99.as_f64().unwrap() * 1.25).into();
            }
        }
    });
    loadgen()
        .args(["compare", "--max-regression", "p99=10%"])
        .arg(fixture())
        .arg(&slower)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("regression:").and(predicate::str::contains("p99")));
}

#[test]
fn compare_rejects_malformed_limits_with_exit_2() {
    loadgen()
        .args(["compare", "--max-regression", "p99=ten"])
        .arg(fixture())
        .arg(fixture())
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with(
            "error: --max-regression \"p99=ten\": ",
        ))
        // The flag is named once (it was printed twice: "--max-regression: --max-regression").
        .stderr(predicate::function(|e: &str| {
            e.matches("--max-regression").count() == 1
        }));
}

#[test]
fn compare_rejects_a_summary_of_another_schema_version_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let future = edited(dir.path(), "current.json", |j| {
        j["schemaVersion"] = 7.into()
    });
    loadgen()
        .arg("compare")
        .arg(fixture())
        .arg(&future)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("schemaVersion 7 is not supported"));
}

#[test]
fn a_missing_summary_exits_2_naming_the_file_and_the_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("summary.json");
    let out = loadgen()
        .arg("report")
        .arg(&missing)
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("error: {}: cannot read: ", missing.display())),
        "{stderr}"
    );
    // One sentence, one line: the cause is not printed again after it.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}
