//! The Roles in `deploy/` grant the operator, the runners and the gate Job exactly what
//! their code uses: every (apiGroup, resource, verb) below is granted, and nothing else
//! is. See: #18.
//!
//! The lists are read off the code's kube `Api` calls; when a call is added or removed,
//! change the list and the Role together.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::ResourceExt;
use ricochet_crds::{LoadTestRef, LoadTestRun, LoadTestRunSpec};
use ricochet_operator::OperatorConfig;
use ricochet_operator::partial::{PARTIAL_VERSION, Partial};
use ricochet_operator::{resources, runner};
use serde_json::json;

use super::repo;

/// (apiGroup, resource or resource/subresource, verb, what in the code needs it).
type Use = (&'static str, &'static str, &'static str, &'static str);

/// What the operator (`loadgen operator`) does with the API.
#[rustfmt::skip]
const OPERATOR_USES: &[Use] = &[
    // lib.rs `run`: the run controller watches runs and the Jobs they own; the schedule
    // controller watches LoadTests and the runs they own. A watcher lists, then watches.
    ("ricochet.dev", "loadtestruns", "list", "the controllers' watchers; schedule.rs lists a LoadTest's runs"),
    ("ricochet.dev", "loadtestruns", "watch", "the controllers' watchers"),
    ("ricochet.dev", "loadtests", "list", "the schedule controller's watcher"),
    ("ricochet.dev", "loadtests", "watch", "the schedule controller's watcher"),
    ("batch", "jobs", "list", "the run controller's watcher of owned Jobs; reconcile.rs watch_runners"),
    ("batch", "jobs", "watch", "the run controller's watcher of owned Jobs"),
    // reconcile.rs
    ("ricochet.dev", "loadtests", "get", "reconcile.rs resolve_spec and cleanup_policy (get_opt)"),
    ("ricochet.dev", "loadtestruns/status", "patch", "reconcile.rs patch_status"),
    ("ricochet.dev", "loadtestruns", "delete", "reconcile.rs expire; schedule.rs history limits and Replace"),
    ("batch", "jobs", "patch", "reconcile.rs start: server-side apply of the runner Jobs"),
    ("batch", "jobs", "create", "server-side apply of a Job that does not exist yet (authorized as create)"),
    ("batch", "jobs", "deletecollection", "reconcile.rs cleanup_runners"),
    ("", "pods", "list", "reconcile.rs await_barrier"),
    ("", "configmaps", "patch", "reconcile.rs: server-side apply of <run>-spec, <run>-start, <run>-report"),
    ("", "configmaps", "create", "server-side apply of a ConfigMap that does not exist yet (authorized as create)"),
    ("", "configmaps", "get", "reconcile.rs finish reads <run>-spec (get_opt)"),
    ("", "configmaps", "list", "reconcile.rs finish lists the runners' results"),
    // The run owns its Jobs and ConfigMaps with blockOwnerDeletion (resources.rs `owner`):
    // under OwnerReferencesPermissionEnforcement that takes `update` on the owner's
    // finalizers (the objects are checked below).
    ("ricochet.dev", "loadtestruns/finalizers", "update", "blockOwnerDeletion on the run's Jobs and ConfigMaps"),
    // schedule.rs
    ("ricochet.dev", "loadtestruns", "create", "schedule.rs creates a due run; flagger.rs a canary's run"),
    ("ricochet.dev", "loadtests/status", "patch", "schedule.rs patches lastScheduleTime, active, message"),
    // flagger.rs (`--flagger-addr`): reads the LoadTest (get, above), reuses or creates the
    // canary's run.
    ("ricochet.dev", "loadtestruns", "get", "flagger.rs answer reuses a canary revision's run (get_opt, get after a 409)"),
    // kube's Recorder (lib.rs Context::publish): create, then patch a repeated Event.
    ("events.k8s.io", "events", "create", "Recorder::publish"),
    ("events.k8s.io", "events", "patch", "Recorder::publish of a repeated Event"),
    // reconcile.rs failed_creates: the Job controller's FailedCreate Events on runner Jobs.
    ("", "events", "list", "reconcile.rs await_barrier reads FailedCreate of runner Jobs without a pod"),
];

/// What a runner (`loadgen runner`, runner.rs) does with the API.
#[rustfmt::skip]
const RUNNER_USES: &[Use] = &[
    ("", "configmaps", "get", "runner.rs wait_for_start polls <run>-start (get_opt)"),
    ("", "configmaps", "patch", "runner.rs write_result: server-side apply of <run>-result-<i>"),
    ("", "configmaps", "create", "server-side apply of a ConfigMap that does not exist yet (authorized as create)"),
    // runner.rs result_config_map: the result is owned by the run with blockOwnerDeletion.
    ("ricochet.dev", "loadtestruns/finalizers", "update", "blockOwnerDeletion on <run>-result-<i>"),
];

/// What `loadgen gate` (gate.rs; the Job of deploy/argo-rollouts) does with the API.
#[rustfmt::skip]
const GATE_USES: &[Use] = &[
    ("ricochet.dev", "loadtests", "get", "gate.rs gate reads the LoadTest (get_opt)"),
    ("ricochet.dev", "loadtestruns", "get", "gate.rs gate finds the run (get_opt) and polls it"),
    ("ricochet.dev", "loadtestruns", "create", "gate.rs gate creates the run"),
];

type Grant = (String, String, String);

/// Every (apiGroup, resource, verb) the rules grant; wildcards and name-limited rules are
/// reported as errors (this check cannot compare them, and they are wider than needed).
fn granted(rules: &[PolicyRule]) -> Result<BTreeSet<Grant>, String> {
    let mut out = BTreeSet::new();
    for (i, r) in rules.iter().enumerate() {
        if r.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty())
            || r.resource_names.as_ref().is_some_and(|n| !n.is_empty())
        {
            return Err(format!("rules[{i}] names URLs or resource names"));
        }
        for group in r.api_groups.iter().flatten() {
            for resource in r.resources.iter().flatten() {
                for verb in &r.verbs {
                    if [group, resource, verb].iter().any(|s| s.contains('*')) {
                        return Err(format!(
                            "rules[{i}] grants a wildcard: {group} {resource} {verb}"
                        ));
                    }
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// What is used but not granted, and granted but not used, one line each.
fn differences(uses: &[Use], grants: &BTreeSet<Grant>) -> Vec<String> {
    let used: BTreeSet<Grant> = uses
        .iter()
        .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    let mut out: Vec<String> = uses
        .iter()
        .filter(|(g, r, v, _)| !grants.contains(&(g.to_string(), r.to_string(), v.to_string())))
        .map(|(g, r, v, why)| format!("not granted: apiGroup {g:?} {r} {v} (needed by {why})"))
        .collect();
    out.extend(
        grants
            .difference(&used)
            .map(|(g, r, v)| format!("granted but never used: apiGroup {g:?} {r} {v}")),
    );
    out
}

fn rules_of(file: &str) -> Vec<PolicyRule> {
    let path = repo().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let rules = if text.contains("kind: ClusterRole") {
        serde_saphyr::from_str::<ClusterRole>(&text).map(|r| r.rules)
    } else {
        serde_saphyr::from_str::<Role>(&text).map(|r| r.rules)
    };
    rules
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .unwrap_or_default()
}

fn check(file: &str, uses: &[Use]) -> Vec<String> {
    match granted(&rules_of(file)) {
        Ok(grants) => differences(uses, &grants),
        Err(e) => vec![format!("{file}: {e}")],
    }
}

#[test]
fn the_operators_cluster_role_grants_exactly_what_the_operator_uses() {
    let wrong = check("deploy/base/operator/clusterrole.yaml", OPERATOR_USES);
    assert!(
        wrong.is_empty(),
        "deploy/base/operator/clusterrole.yaml:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_runners_role_grants_exactly_what_a_runner_uses() {
    let wrong = check("deploy/base/runner/role.yaml", RUNNER_USES);
    assert!(
        wrong.is_empty(),
        "deploy/base/runner/role.yaml:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_gate_jobs_role_grants_exactly_what_loadgen_gate_uses_and_binds_the_jobs_account() {
    let file = "deploy/argo-rollouts/rbac.yaml";
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let of = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("{file}: no {kind}"))
            .clone()
    };
    let role: Role = serde_json::from_value(of("Role")).unwrap();
    let wrong = match granted(&role.rules.unwrap_or_default()) {
        Ok(grants) => differences(GATE_USES, &grants),
        Err(e) => vec![e],
    };
    assert!(wrong.is_empty(), "{file}:\n{}", wrong.join("\n"));
    let account = of("ServiceAccount");
    let binding = of("RoleBinding");
    assert_eq!(binding["roleRef"]["name"], role.metadata.name.unwrap());
    assert_eq!(binding["subjects"][0]["name"], account["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["namespace"],
        account["metadata"]["namespace"]
    );
    let template: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("deploy/argo-rollouts/analysis-template.yaml"))
            .unwrap(),
    )
    .unwrap();
    let pod = &template["spec"]["metrics"][0]["provider"]["job"]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert_eq!(
        template["metadata"]["namespace"],
        account["metadata"]["namespace"]
    );
}

#[test]
fn a_missing_or_an_extra_verb_is_reported() {
    let mut rules = rules_of("deploy/base/operator/clusterrole.yaml");
    // Drop `update` on the finalizers, add `delete` on ConfigMaps.
    for r in &mut rules {
        let resources = r.resources.clone().unwrap_or_default();
        if resources.iter().any(|x| x == "loadtestruns/finalizers") {
            r.verbs.retain(|v| v != "update");
        }
        if resources.iter().any(|x| x == "configmaps") {
            r.verbs.push("delete".into());
        }
    }
    assert_eq!(
        differences(OPERATOR_USES, &granted(&rules).unwrap()),
        [
            "not granted: apiGroup \"ricochet.dev\" loadtestruns/finalizers update (needed by blockOwnerDeletion on the run's Jobs and ConfigMaps)",
            "granted but never used: apiGroup \"\" configmaps delete",
        ]
    );
    let wildcard: Vec<PolicyRule> =
        serde_saphyr::from_str("- {apiGroups: [batch], resources: [jobs], verbs: ['*']}").unwrap();
    assert_eq!(
        granted(&wildcard).unwrap_err(),
        "rules[0] grants a wildcard: batch jobs *"
    );
}

#[test]
fn the_objects_that_need_finalizers_update_do_block_their_owners_deletion() {
    // The finalizers rules are there because these objects set blockOwnerDeletion on
    // their owner reference to the run; were that dropped, so could the rules be.
    let mut run = LoadTestRun::new(
        "r1",
        LoadTestRunSpec {
            load_test_ref: Some(LoadTestRef { name: "x".into() }),
            spec: None,
            overrides: None,
        },
    );
    run.metadata.namespace = Some("ricochet".into());
    run.metadata.uid = Some("uid-r1".into());
    let partial: Partial = serde_json::from_value(json!({
        "version": PARTIAL_VERSION, "runner": 0, "elapsedSeconds": 1.0, "series": [], "scenarios": []
    }))
    .unwrap();
    let config = OperatorConfig::default();
    let owned = [
        (
            "runner Job",
            resources::runner_job(&run, 0, 1, None, &config)
                .unwrap()
                .metadata,
        ),
        (
            "<run>-start",
            resources::start_config_map(&run, k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
                .unwrap()
                .metadata,
        ),
        (
            "<run>-report",
            resources::report_config_map(&run, Default::default())
                .unwrap()
                .metadata,
        ),
        (
            "<run>-result-0 (runner)",
            runner::result_config_map("r1-result-0", "r1", "uid-r1", 0, &partial).metadata,
        ),
    ];
    for (what, meta) in owned {
        let owner = &meta.owner_references.as_ref().expect("owned")[0];
        assert_eq!(owner.kind, "LoadTestRun", "{what}");
        assert_eq!(owner.name, run.name_any(), "{what}");
        assert_eq!(owner.block_owner_deletion, Some(true), "{what}");
    }
    for uses in [OPERATOR_USES, RUNNER_USES] {
        assert!(
            uses.iter()
                .any(|u| (u.0, u.1, u.2) == ("ricochet.dev", "loadtestruns/finalizers", "update"))
        );
    }
}
