//! `loadgen crd` prints exactly the checked-in CRDs; `loadgen operator` without a cluster
//! exits 3 with one sentence; `loadgen runner` takes the args the operator gives its Jobs
//! and refuses an invalid spec or a runner index past the count with exit 2.

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use clap::Parser;
use predicates::prelude::*;
use ricochet_crds::{LoadTestRef, LoadTestRun, LoadTestRunSpec, RunOverrides};

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
fn a_runner_given_an_invalid_spec_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("loadtest.yaml");
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

#[test]
fn a_runner_past_the_runner_count_exits_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("loadtest.yaml");
    std::fs::write(&spec, "apiVersion: ricochet.dev/v1alpha1\nkind: LoadTest\nmetadata: {name: x}\nspec: {scenarios: [{name: a, executor: constant-arrival-rate, rate: 5, duration: 1s, requests: [{name: r, path: /}]}]}\n").unwrap();
    Command::cargo_bin("loadgen")
        .unwrap()
        .arg("runner")
        .arg("--spec")
        .arg(&spec)
        .args(["--index", "3", "--runners", "3", "--result-file"])
        .arg(dir.path().join("out.json"))
        .assert()
        .code(2)
        .stderr(predicate::eq(
            "error: --index: a run of 3 runners has no runner 3; valid indexes are 0 to 2\n",
        ));
}

#[test]
fn the_args_the_operator_gives_a_runner_job_parse_as_loadgen_runner() {
    let mut run = LoadTestRun::new(
        "r1",
        LoadTestRunSpec {
            load_test_ref: Some(LoadTestRef { name: "x".into() }),
            spec: None,
            overrides: Some(RunOverrides {
                multiplier: Some(1.5),
                duration: Some("2m".into()),
                parallelism: None,
            }),
        },
    );
    // The Job's owner reference needs the run's uid.
    run.metadata.uid = Some("uid-r1".into());
    let job = ricochet_operator::resources::runner_job(
        &run,
        2,
        3,
        None,
        &ricochet_operator::OperatorConfig::default(),
    )
    .unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap();
    let cli =
        loadgen::Cli::try_parse_from(std::iter::once("loadgen".to_owned()).chain(args)).unwrap();
    let loadgen::Command::Runner(r) = cli.command else {
        panic!("not the runner subcommand");
    };
    assert_eq!((r.index, r.runners.get()), (2, 3));
    assert_eq!(r.run.as_deref(), Some("r1"));
    assert_eq!(r.start_config_map.as_deref(), Some("r1-start"));
    assert_eq!(r.result_config_map.as_deref(), Some("r1-result-2"));
    assert_eq!(r.spec, Path::new("/etc/ricochet/spec/loadtest.yaml"));
    // The run's overrides, applied to the whole spec as the operator applied them.
    assert_eq!(r.multiplier, Some(1.5));
    assert_eq!(r.duration, Some(Duration::from_secs(120)));
}
