//! Every YAML under `deploy/` and `scenarios/` parses into its k8s-openapi or ricochet type
//! (with no field the type does not know), `LoadTest`s validate against the generated CRD
//! schema, and `kubectl kustomize deploy/overlays/<env>` renders for every overlay.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use ricochet_crds::{LoadTest, LoadTestRun};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Every object key of `written` is present in `typed` (the value after a round trip
/// through the Rust type): a misspelt field would be silently dropped by the API types.
fn no_unknown_fields(written: &Value, typed: &Value, at: &str) -> Result<(), String> {
    match (written, typed) {
        (Value::Object(w), Value::Object(t)) => {
            for (k, v) in w {
                match t.get(k) {
                    Some(tv) => no_unknown_fields(v, tv, &format!("{at}.{k}"))?,
                    None if v.is_null() => {}
                    None => return Err(format!("unknown field `{at}.{k}`")),
                }
            }
            Ok(())
        }
        (Value::Array(w), Value::Array(t)) => {
            for (i, (wv, tv)) in w.iter().zip(t).enumerate() {
                no_unknown_fields(wv, tv, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn typed<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let t: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    no_unknown_fields(
        doc,
        &serde_json::to_value(&t).map_err(|e| e.to_string())?,
        "",
    )
}

fn crd_schema(file: &str) -> jsonschema::Validator {
    let crd: CustomResourceDefinition = serde_saphyr::from_str(
        &ricochet_crds::crd_files()
            .unwrap()
            .into_iter()
            .find(|(name, _)| *name == file)
            .unwrap()
            .1,
    )
    .unwrap();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Checks one document; `Err` says what is wrong.
fn check(doc: &Value) -> Result<&'static str, String> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    match (api_version, kind) {
        ("ricochet.dev/v1alpha1", "LoadTest") => {
            typed::<LoadTest>(doc)?;
            let errors: Vec<String> = crd_schema("loadtest.yaml")
                .iter_errors(doc)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            if !errors.is_empty() {
                return Err(errors.join("; "));
            }
            // The same validation `loadgen run` and the operator apply.
            let lt: LoadTest = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
            ricochet_engine::Plan::from_spec(
                "doc",
                &lt.spec,
                &repo(),
                &ricochet_engine::Overrides::default(),
            )
            .map_err(|e| e.to_string())?;
        }
        ("ricochet.dev/v1alpha1", "LoadTestRun") => {
            typed::<LoadTestRun>(doc)?;
            let errors: Vec<String> = crd_schema("loadtestrun.yaml")
                .iter_errors(doc)
                .map(|e| e.to_string())
                .collect();
            if !errors.is_empty() {
                return Err(errors.join("; "));
            }
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            typed::<CustomResourceDefinition>(doc)?
        }
        ("apps/v1", "Deployment") => typed::<Deployment>(doc)?,
        ("v1", "Service") => typed::<Service>(doc)?,
        ("v1", "ServiceAccount") => typed::<ServiceAccount>(doc)?,
        ("v1", "ConfigMap") => typed::<ConfigMap>(doc)?,
        ("v1", "PersistentVolumeClaim") => typed::<PersistentVolumeClaim>(doc)?,
        ("v1", "Namespace") => typed::<Namespace>(doc)?,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => typed::<ClusterRole>(doc)?,
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => typed::<ClusterRoleBinding>(doc)?,
        ("rbac.authorization.k8s.io/v1", "Role") => typed::<Role>(doc)?,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => typed::<RoleBinding>(doc)?,
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {
            // No Rust type for the Prometheus Operator's CRD: check the fields it needs.
            let spec = &doc["spec"];
            if !spec["selector"]["matchLabels"].is_object()
                || !spec["endpoints"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty() && e.iter().all(|e| e["port"].is_string()))
            {
                return Err(
                    "a ServiceMonitor needs spec.selector.matchLabels and spec.endpoints[].port"
                        .into(),
                );
            }
        }
        ("monitoring.coreos.com/v1", "PrometheusRule") => {
            // Its groups are checked with promtool, against the plain rule file, in
            // monitoring_rules.rs.
            if doc["spec"]["groups"].as_array().is_none_or(Vec::is_empty) {
                return Err("a PrometheusRule needs a non-empty spec.groups".into());
            }
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => typed::<NetworkPolicy>(doc)?,
        // Checked against Flagger's and Argo Rollouts' CRD schemas in
        // loadgen/operator/tests/operator/gates.rs.
        ("flagger.app/v1beta1", "Canary") | ("argoproj.io/v1alpha1", "AnalysisTemplate") => {}
        ("kustomize.config.k8s.io/v1beta1", "Kustomization") => {}
        _ => return Err(format!("no type known for {api_version} {kind}")),
    }
    Ok(if kind.is_empty() { "?" } else { "ok" })
}

#[test]
fn every_yaml_under_deploy_and_scenarios_parses_into_its_type_and_validates() {
    let mut files = Vec::new();
    yaml_files(&repo().join("deploy"), &mut files);
    yaml_files(&repo().join("scenarios"), &mut files);
    files.sort();
    let mut failures = Vec::new();
    let mut load_tests = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Prometheus' and Alertmanager's own configs and rule files are not Kubernetes
        // objects: monitoring_rules.rs and live_dashboard.rs check them with promtool and
        // amtool.
        let not_an_object = |d: &Value| d["apiVersion"].is_null() && d["kind"].is_null();
        let prometheus_files = ["deploy/monitoring", "deploy/grafana"]
            .iter()
            .any(|dir| path.starts_with(repo().join(dir)));
        if prometheus_files && docs.iter().all(not_an_object) {
            continue;
        }
        for doc in docs.iter().filter(|d| !d.is_null()) {
            load_tests += usize::from(doc["kind"] == "LoadTest");
            if let Err(e) = check(doc) {
                failures.push(format!(
                    "{}: {} {}: {e}",
                    path.display(),
                    doc["kind"],
                    doc["metadata"]["name"]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(files.len() >= 20, "{} files", files.len());
    assert!(load_tests >= 3);
}

#[test]
fn a_misspelt_field_or_a_bad_value_is_caught() {
    let doc: Value = serde_saphyr::from_str(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n  selector: {matchLabels: {a: b}}\n  template:\n    spec:\n      containers: [{name: c, imagePullPolicyy: Always}]\n",
    )
    .unwrap();
    let err = check(&doc).unwrap_err();
    assert!(err.contains("imagePullPolicyy"), "{err}");

    let doc: Value = serde_saphyr::from_str(
        "apiVersion: ricochet.dev/v1alpha1\nkind: LoadTest\nmetadata: {name: x}\nspec:\n  scenarios: [{name: a, executor: constant-arrival-rate, rate: 10, duration: 1s, requests: [{name: r, path: /}]}]\n  concurrencyPolicy: Sometimes\n",
    )
    .unwrap();
    let err = check(&doc).unwrap_err();
    assert!(err.contains("Sometimes"), "{err}");

    // The CRD schema itself rejects what the API server would.
    let doc: Value = serde_saphyr::from_str(
        "apiVersion: ricochet.dev/v1alpha1\nkind: LoadTest\nmetadata: {name: x}\nspec: {scenarios: 5, successfulRunsHistoryLimit: -1}\n",
    )
    .unwrap();
    let errors: Vec<String> = crd_schema("loadtest.yaml")
        .iter_errors(&doc)
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn every_overlay_renders_with_kubectl_kustomize_and_its_objects_validate() {
    for env in ["dev", "staging", "prod"] {
        let dir = repo().join("deploy/overlays").join(env);
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("kubectl is needed for this test and could not run: {e}"));
        assert!(
            out.status.success(),
            "kubectl kustomize {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        for needed in [
            "CustomResourceDefinition",
            "Deployment",
            "ClusterRole",
            "Role",
            "LoadTest",
            "ServiceMonitor",
            "ConfigMap",
        ] {
            assert!(kinds.contains(&needed), "{env}: no {needed} in {kinds:?}");
        }
        for doc in &docs {
            check(doc).unwrap_or_else(|e| {
                panic!("{env}: {} {}: {e}", doc["kind"], doc["metadata"]["name"])
            });
            if doc["kind"] != "Namespace"
                && doc["kind"] != "CustomResourceDefinition"
                && doc["kind"] != "ClusterRole"
                && doc["kind"] != "ClusterRoleBinding"
            {
                assert_eq!(
                    doc["metadata"]["namespace"], "ricochet",
                    "{env}: {}",
                    doc["metadata"]["name"]
                );
            }
        }
        let nightly = docs.iter().find(|d| d["kind"] == "LoadTest").unwrap();
        let expected = match env {
            "dev" => serde_json::json!(1),
            "staging" => serde_json::json!(2),
            _ => serde_json::json!("auto"),
        };
        assert_eq!(nightly["spec"]["parallelism"], expected, "{env}");
    }
}

#[test]
fn the_dashboard_queries_only_metrics_the_operator_exports() {
    let text = std::fs::read_to_string(repo().join("deploy/base/grafana/ricochet.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let exported = ricochet_operator::Metrics::default().render();
    let mut checked = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("ricochet_") {
                    assert!(
                        exported.contains(&format!("# TYPE {word} ")),
                        "dashboard queries {word}, which the operator does not export"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 4);
}
