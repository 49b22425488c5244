//! `loadgen crd` prints exactly the checked-in CRDs; `loadgen operator` without a cluster
//! exits 3 with one sentence; `loadgen runner` refuses an invalid part with exit 2.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn loadgen_crd_prints_the_checked_in_crds() {
    let expected = ["loadtest.yaml", "loadtestrun.yaml"]
        .map(|f| std::fs::read_to_string(repo().join("deploy/crds").join(f)).unwrap())
        .join("---\n");
    Command::cargo_bin("loadgen")
        .unwrap()
        .arg("crd")
        .assert()
        .success()
        .stdout(predicate::eq(expected));
}

#[test]
fn the_operator_without_a_cluster_exits_3_with_the_reason() {
    Command::cargo_bin("loadgen")
        .unwrap()
        .args(["operator", "--metrics-addr", "127.0.0.1:0"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "/nonexistent")
        .assert()
        .code(3)
        .stderr(predicate::str::starts_with(
            "error: operator: Kubernetes API call failed",
        ));
}

#[test]
fn a_runner_given_an_invalid_part_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("runner-0.yaml");
    std::fs::write(&spec, "apiVersion: ricochet.dev/v1alpha1\nkind: LoadTest\nmetadata: {name: x}\nspec: {scenarios: []}\n").unwrap();
    Command::cargo_bin("loadgen")
        .unwrap()
        .arg("runner")
        .arg("--spec")
        .arg(&spec)
        .args(["--index", "0", "--runners", "1", "--result-file"])
        .arg(dir.path().join("out.json"))
        .assert()
        .code(2);
}
