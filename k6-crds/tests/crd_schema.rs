//! The checked-in CRD is the generated one, and every shipped scenario is a `LoadTest` the
//! API server's types accept.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use ricochet_crds::{LoadTest, ThresholdSpec};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn checked_in_crds_equal_the_generated_ones() {
    let files = ricochet_crds::crd_files().unwrap();
    assert_eq!(files.len(), 2);
    for (name, generated) in files {
        let path = repo().join("deploy/crds").join(name);
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} is stale; regenerate with `cargo run -p ricochet-crds --bin crdgen -- --write deploy/crds`",
            path.display()
        );
    }
    // The single-CRD helper kept for `loadtest.yaml` agrees with the list.
    assert_eq!(
        ricochet_crds::crd_yaml().unwrap(),
        ricochet_crds::crd_files().unwrap()[0].1
    );
}

#[test]
fn the_crds_are_valid_custom_resource_definitions() {
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&ricochet_crds::crd_yaml().unwrap()).unwrap();
    assert_eq!(crd.metadata.name.as_deref(), Some("loadtests.ricochet.dev"));
    assert_eq!(crd.spec.versions[0].name, "v1alpha1");
    // Thresholds are a string or a map: the structural schema must let both through.
    let yaml = ricochet_crds::crd_yaml().unwrap();
    assert!(yaml.contains("x-kubernetes-preserve-unknown-fields: true"));

    let files = ricochet_crds::crd_files().unwrap();
    let run: CustomResourceDefinition = serde_saphyr::from_str(&files[1].1).unwrap();
    assert_eq!(
        run.metadata.name.as_deref(),
        Some("loadtestruns.ricochet.dev")
    );
    assert_eq!(run.spec.names.short_names, Some(vec!["ltr".to_owned()]));
    let version = &run.spec.versions[0];
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Phase", "Verdict", "P99", "Runners", "Age"]);
    let subresources = version.subresources.as_ref().unwrap();
    assert!(subresources.status.is_some(), "status subresource");
    assert!(
        files[1]
            .1
            .contains("has(self.loadTestRef) != has(self.spec)")
    );
    // `loadgen crd` prints both as one stream.
    assert_eq!(
        ricochet_crds::all_crds_yaml()
            .unwrap()
            .matches("kind: CustomResourceDefinition")
            .count(),
        2
    );
}

#[test]
fn parallelism_is_a_number_or_auto_and_nothing_else() {
    use ricochet_crds::Parallelism;
    let p: Vec<Parallelism> = serde_saphyr::from_str("[4, auto, \"2\"]").unwrap();
    assert_eq!(
        p,
        [
            Parallelism::Runners(4),
            Parallelism::Auto,
            Parallelism::Runners(2)
        ]
    );
    for bad in ["0", "-1", "many"] {
        let err = serde_saphyr::from_str::<Parallelism>(bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a number of runners (1 or more) or \"auto\""),
            "{bad}: {err}"
        );
    }
    assert_eq!(
        serde_json::to_string(&Parallelism::Auto).unwrap(),
        "\"auto\""
    );
    assert_eq!(
        serde_json::to_string(&Parallelism::Runners(3)).unwrap(),
        "3"
    );
}

#[test]
fn a_run_references_a_load_test_or_carries_one_inline() {
    use ricochet_crds::LoadTestRun;
    let by_ref: LoadTestRun = serde_saphyr::from_str(
        "apiVersion: ricochet.dev/v1alpha1\nkind: LoadTestRun\nmetadata: {name: r1}\nspec:\n  loadTestRef: {name: api-3x-ga}\n  overrides: {multiplier: 1, duration: 1m, parallelism: 2}\n",
    )
    .unwrap();
    assert_eq!(by_ref.spec.load_test_ref.unwrap().name, "api-3x-ga");
    let err = serde_saphyr::from_str::<LoadTestRun>(
        "apiVersion: ricochet.dev/v1alpha1\nkind: LoadTestRun\nmetadata: {name: r1}\nspec: {loadTestRf: {name: x}}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `loadTestRf`"), "{err}");
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
