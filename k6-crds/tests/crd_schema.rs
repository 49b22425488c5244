//! The checked-in CRD is the generated one, and every shipped scenario is a `LoadTest` the
//! API server's types accept.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use ricochet_crds::{LoadTest, ThresholdSpec};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn checked_in_crd_equals_the_generated_one() {
    let generated = ricochet_crds::crd_yaml().unwrap();
    let path = repo().join("deploy/crds/loadtest.yaml");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is stale; regenerate it with `cargo run -p ricochet-crds --bin crdgen > deploy/crds/loadtest.yaml`",
        path.display()
    );
}

#[test]
fn the_crd_is_a_valid_custom_resource_definition() {
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&ricochet_crds::crd_yaml().unwrap()).unwrap();
    assert_eq!(crd.metadata.name.as_deref(), Some("loadtests.ricochet.dev"));
    assert_eq!(crd.spec.versions[0].name, "v1alpha1");
    // Thresholds are a string or a map: the structural schema must let both through.
    let yaml = ricochet_crds::crd_yaml().unwrap();
    assert!(yaml.contains("x-kubernetes-preserve-unknown-fields: true"));
}

#[test]
fn every_shipped_scenario_deserializes_as_a_load_test() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lt: LoadTest =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!lt.spec.scenarios.is_empty(), "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 2);
}

#[test]
fn thresholds_are_strings_or_maps_and_map_errors_keep_their_detail() {
    let spec: Vec<ThresholdSpec> =
        serde_saphyr::from_str("[\"rate<0.01\", {threshold: \"p(99)<1s\", abortOnFail: true}]")
            .unwrap();
    assert!(matches!(&spec[0], ThresholdSpec::Expression(e) if e == "rate<0.01"));
    assert!(matches!(&spec[1], ThresholdSpec::Detailed(d) if d.abort_on_fail));

    let err = serde_saphyr::from_str::<Vec<ThresholdSpec>>("[{threshold: \"rate<1\", windw: 1m}]")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `windw`"), "{err}");
}
