//! `loadgen compare` never passes a run that measured nothing or lacks what the baseline
//! measured: exit 1 and one sentence saying why. See: issue "runs that measured nothing"
//! (a comparison against an errored run said "no regression", exit 0).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reports/tests/data/fixture.summary.json")
}

/// Writes the fixture with `edit` applied into `dir/name`.
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let mut json: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture()).unwrap()).unwrap();
    edit(&mut json);
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    path
}

/// `loadgen compare BASELINE CURRENT`'s exit code and stderr.
fn compare(baseline: &Path, current: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("compare")
        .arg(baseline)
        .arg(current)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn compare_against_a_run_that_could_not_be_carried_out_exits_1_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let why = "no request got an answer: 10 of 10 timed out after 300ms waiting on http://127.0.0.1:4100 (0 refused, 0 reset)";
    let errored = edited(dir.path(), "current.json", |j| {
        j["run"]["outcome"] = "error".into();
        j["run"]["exitCode"] = 3.into();
        j["run"]["stopReason"] = why.into();
    });
    let (code, stderr) = compare(&fixture(), &errored);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("error: the current run could not be carried out (exit code 3): {why}\n")
    );
}

#[test]
fn compare_with_a_run_without_requests_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let empty = edited(dir.path(), "current.json", |j| {
        j["metrics"]["http_reqs"]["count"] = 0.into();
    });
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("compare")
        .arg(fixture())
        .arg(&empty)
        .assert()
        .code(1)
        .stderr(predicate::eq(
            "error: the current run has no requests (`http_reqs` is 0 or absent), so it measured nothing to compare\n",
        ));
}

#[test]
fn compare_with_a_metric_missing_from_the_current_run_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let lacking = edited(dir.path(), "current.json", |j| {
        j["metrics"]
            .as_object_mut()
            .unwrap()
            .remove("http_stream_duration{scenario:chat}");
    });
    let (code, stderr) = compare(&fixture(), &lacking);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "error: the current run lacks `http_stream_duration{scenario:chat}`, which the baseline has\n"
    );
    // The other way round (a metric only the current run has), it passes.
    let (code, stderr) = compare(&lacking, &fixture());
    assert_eq!(code, Some(0), "{stderr}");
}
