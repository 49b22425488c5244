//! The promotion gates `deploy/` ships for other tools, checked against those tools'
//! published CRD schemas (excerpts vendored under `crds/`, with their source): the Flagger
//! Canary of `deploy/flagger/` and the Argo Rollouts AnalysisTemplate of
//! `deploy/argo-rollouts/`. Besides the schema, each example must use no field the schema
//! does not know (the API server would prune it silently) and must say what the operator
//! and `loadgen gate` read. See: #18.

use std::path::Path;

use k8s_openapi::api::core::v1::{PodSpec, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use ricochet_crds::LoadTest;
use ricochet_operator::flagger;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::repo;

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema(file: &str) -> Value {
    yaml(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/operator/crds")
            .join(file),
    )
}

/// Every error of `doc` against `schema`, and every field of `doc` the schema does not
/// declare (under an object schema that lists `properties` and no `additionalProperties`).
fn violations(schema: &Value, doc: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).expect("the vendored schema compiles");
    let mut out: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    undeclared(schema, doc, "", &mut out);
    out
}

fn undeclared(schema: &Value, doc: &Value, at: &str, out: &mut Vec<String>) {
    match doc {
        Value::Object(fields) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties");
            for (k, v) in fields {
                match (props.and_then(|p| p.get(k)), extra) {
                    (Some(s), _) => undeclared(s, v, &format!("{at}.{k}"), out),
                    (None, Some(s)) if s.is_object() => undeclared(s, v, &format!("{at}.{k}"), out),
                    // A free-form object (`type: object` and nothing else).
                    (None, _) if props.is_none() => {}
                    (None, _) => out.push(format!("{at}.{k} is not in the schema (pruned)")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    undeclared(s, v, &format!("{at}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// `doc` as `T`, with no field `T` does not know.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<T, String> {
    let t: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&t).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    same_fields(doc, &back, "", &mut out);
    if out.is_empty() {
        Ok(t)
    } else {
        Err(out.join("; "))
    }
}

fn same_fields(written: &Value, typed: &Value, at: &str, out: &mut Vec<String>) {
    match (written, typed) {
        (Value::Object(w), Value::Object(t)) => {
            for (k, v) in w {
                match t.get(k) {
                    Some(tv) => same_fields(v, tv, &format!("{at}.{k}"), out),
                    None => out.push(format!("unknown field `{at}.{k}`")),
                }
            }
        }
        (Value::Array(w), Value::Array(t)) => {
            for (i, (wv, tv)) in w.iter().zip(t).enumerate() {
                same_fields(wv, tv, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Checks the Flagger example; `Err` lists what is wrong.
fn check_flagger(dir: &Path) -> Result<(), Vec<String>> {
    let canary = yaml(&dir.join("canary.yaml"));
    let mut errors = violations(&schema("flagger-canary.schema.yaml"), &canary);
    if canary["apiVersion"] != "flagger.app/v1beta1" || canary["kind"] != "Canary" {
        errors.push("canary.yaml is not a flagger.app/v1beta1 Canary".into());
    }
    if canary["spec"]["provider"] != "istio" {
        errors.push("the example's provider is not istio".into());
    }
    let lt: LoadTest = match serde_json::from_value(yaml(&dir.join("loadtest.yaml"))) {
        Ok(lt) => lt,
        Err(e) => return Err(vec![format!("loadtest.yaml: {e}")]),
    };
    if let Err(e) = ricochet_engine::Plan::from_spec(
        "podinfo-canary",
        &lt.spec,
        dir,
        &ricochet_engine::Overrides::default(),
    ) {
        errors.push(format!("loadtest.yaml does not validate: {e}"));
    }
    let service: Service = typed(&yaml(&dir.join("service.yaml"))).map_err(|e| vec![e])?;
    let port = service
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p.first().map(|p| p.port))
        .unwrap_or_default();
    let url = format!(
        "http://{}.{}:{port}{}",
        service.metadata.name.unwrap_or_default(),
        service.metadata.namespace.unwrap_or_default(),
        flagger::PATH
    );
    let hooks = canary["spec"]["analysis"]["webhooks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut types = Vec::new();
    for (i, w) in hooks.iter().enumerate() {
        let m = &w["metadata"];
        types.push(w["type"].as_str().unwrap_or_default().to_owned());
        if m["hook"] != w["type"] {
            errors.push(format!(
                "webhooks[{i}]: metadata.hook is not the webhook's type"
            ));
        }
        if m["loadtest"].as_str() != lt.metadata.name.as_deref()
            || m["namespace"].as_str() != lt.metadata.namespace.as_deref()
        {
            errors.push(format!(
                "webhooks[{i}]: metadata does not name deploy/flagger/loadtest.yaml"
            ));
        }
        if w["url"] != url.as_str() {
            errors.push(format!("webhooks[{i}]: url is not {url} (service.yaml)"));
        }
        if !m["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("http://"))
        {
            errors.push(format!(
                "webhooks[{i}]: metadata.target is not an http:// URL"
            ));
        }
    }
    if types != ["pre-rollout", "rollout", "confirm-promotion"] {
        errors.push(format!("webhook types are {types:?}"));
    }
    let policy: NetworkPolicy =
        typed(&yaml(&dir.join("networkpolicy.yaml"))).map_err(|e| vec![e])?;
    let guarded = policy
        .spec
        .and_then(|s| s.ingress)
        .unwrap_or_default()
        .iter()
        .any(|rule| {
            rule.from.as_ref().is_some_and(|f| !f.is_empty())
                && rule.ports.iter().flatten().any(|p| {
                    p.port
                        == Some(
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port),
                        )
                })
        });
    if !guarded {
        errors.push(format!(
            "networkpolicy.yaml does not limit who reaches port {port}"
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Checks the Argo Rollouts example; `Err` lists what is wrong.
fn check_argo(dir: &Path) -> Result<(), Vec<String>> {
    let template = yaml(&dir.join("analysis-template.yaml"));
    let mut errors = violations(
        &schema("argo-rollouts-analysistemplate.schema.yaml"),
        &template,
    );
    if template["apiVersion"] != "argoproj.io/v1alpha1" || template["kind"] != "AnalysisTemplate" {
        errors
            .push("analysis-template.yaml is not an argoproj.io/v1alpha1 AnalysisTemplate".into());
    }
    let declared: Vec<String> = template["spec"]["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str().map(|n| format!("{{{{args.{n}}}}}")))
        .collect();
    for (i, metric) in template["spec"]["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let pod = &metric["provider"]["job"]["spec"]["template"]["spec"];
        let pod: PodSpec = match typed(pod) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("metrics[{i}]: the Job's pod spec: {e}"));
                continue;
            }
        };
        let args = pod
            .containers
            .first()
            .and_then(|c| c.args.clone())
            .unwrap_or_default();
        if args.first().map(String::as_str) != Some("gate") {
            errors.push(format!(
                "metrics[{i}]: the container does not run `loadgen gate`"
            ));
        }
        for flag in ["--load-test=", "--run=", "--target=", "--namespace="] {
            if !args.iter().any(|a| a.starts_with(flag)) {
                errors.push(format!("metrics[{i}]: no {flag}"));
            }
        }
        for a in &args {
            let mut rest = a.as_str();
            while let Some(start) = rest.find("{{") {
                let end = rest[start..]
                    .find("}}")
                    .map_or(rest.len(), |e| start + e + 2);
                if !declared.iter().any(|d| d == &rest[start..end]) {
                    errors.push(format!(
                        "metrics[{i}]: {} is not a declared arg",
                        &rest[start..end]
                    ));
                }
                rest = &rest[end..];
            }
        }
        if metric["failureLimit"] != 0 || metric["count"] != 1 {
            errors.push(format!(
                "metrics[{i}]: one failed measurement must fail the analysis"
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[test]
fn the_flagger_canary_example_validates_against_flaggers_canary_crd_and_calls_the_operator() {
    check_flagger(&repo().join("deploy/flagger")).unwrap_or_else(|e| panic!("{}", e.join("\n")));
}

#[test]
fn the_argo_rollouts_analysis_template_validates_against_its_crd_and_runs_the_gate() {
    check_argo(&repo().join("deploy/argo-rollouts")).unwrap_or_else(|e| panic!("{}", e.join("\n")));
}

/// The checks above can fail: each broken copy of the examples is refused.
#[test]
fn a_misspelt_or_mistyped_field_in_either_example_is_refused() {
    let flagger_dir = repo().join("deploy/flagger");
    let canary = yaml(&flagger_dir.join("canary.yaml"));
    let s = schema("flagger-canary.schema.yaml");
    let mut bad = canary.clone();
    bad["spec"]["analysis"]["stepWeigth"] = bad["spec"]["analysis"]["stepWeight"].take();
    bad["spec"]["analysis"]
        .as_object_mut()
        .unwrap()
        .remove("stepWeight");
    let v = violations(&s, &bad);
    assert!(
        v.iter()
            .any(|e| e.contains(".spec.analysis.stepWeigth is not in the schema")),
        "{v:?}"
    );
    let mut bad = canary.clone();
    bad["spec"]["analysis"]["webhooks"][0]["type"] = "pre-rolout".into();
    assert!(!violations(&s, &bad).is_empty());
    let mut bad = canary;
    bad["spec"]["analysis"]["webhooks"][0]["metadata"]["weight"] = 3.into();
    assert!(
        !violations(&s, &bad).is_empty(),
        "metadata values are strings"
    );

    let template = yaml(&repo().join("deploy/argo-rollouts/analysis-template.yaml"));
    let s = schema("argo-rollouts-analysistemplate.schema.yaml");
    let mut bad = template.clone();
    bad["spec"]["metrics"][0]["sucessCondition"] = "true".into();
    let v = violations(&s, &bad);
    assert!(
        v.iter()
            .any(|e| e.contains("sucessCondition is not in the schema")),
        "{v:?}"
    );
    let mut bad = template;
    bad["spec"]["metrics"][0]["provider"]["job"]["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("containers");
    assert!(!violations(&s, &bad).is_empty());
}
