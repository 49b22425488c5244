//! The Kubernetes objects a run owns: its runner Jobs and its ConfigMaps.
//!
//! Every object carries the run's controller owner reference (`blockOwnerDeletion`), so
//! deleting the run — the operator deletes with foreground propagation — deletes its Jobs,
//! their pods and its ConfigMaps.
//!
//! **Start barrier.** A runner pod starts, then polls (every second) for the ConfigMap
//! `<run>-start`. The operator writes it only when every runner pod of the run is
//! `Running`, with `startAt` = now + a lead (default 10 s) longer than the polling
//! interval, so all runners begin generating load at the same instant, not whenever
//! each pod happened to be scheduled.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use ricochet_crds::{LoadTest, LoadTestRun, LoadTestSpec, RunnerTemplate};

use super::{Error, OperatorConfig};

/// Label: the run an object belongs to.
pub const LABEL_RUN: &str = "ricochet.dev/run";
/// Label: the runner index of a Job, pod or result ConfigMap.
pub const LABEL_RUNNER_INDEX: &str = "ricochet.dev/runner-index";
/// Label: the `LoadTest` a scheduled run was created from.
pub const LABEL_LOAD_TEST: &str = "ricochet.dev/load-test";
/// Label: what a ConfigMap holds (`spec`, `start`, `result`, `report`).
pub const LABEL_PART: &str = "ricochet.dev/part";
/// Field manager of the operator's server-side applies.
pub const MANAGER: &str = "ricochet-operator";
/// Where `<run>-spec` is mounted in a runner pod.
pub const SPEC_DIR: &str = "/etc/ricochet/spec";
/// Where `spec.runner.bodyFilesConfigMap` is mounted in a runner pod.
pub const BODY_FILES_DIR: &str = "/etc/ricochet/bodies";
/// Key of the whole resolved spec in `<run>-spec`.
pub const WHOLE_SPEC_KEY: &str = "loadtest.yaml";
/// Key of a runner's partial result in `<run>-result-<i>`.
pub const PARTIAL_KEY: &str = "partial.json";
/// Key of the start instant (RFC 3339) in `<run>-start`.
pub const START_AT_KEY: &str = "startAt";

/// Name of runner `i`'s Job.
pub fn job_name(run: &str, i: u32) -> String {
    format!("{run}-runner-{i}")
}

/// Name of the ConfigMap holding the run's whole spec.
pub fn spec_config_map_name(run: &str) -> String {
    format!("{run}-spec")
}

/// Name of the start-barrier ConfigMap.
pub fn start_config_map_name(run: &str) -> String {
    format!("{run}-start")
}

/// Name of runner `i`'s partial-result ConfigMap (written by the runner).
pub fn result_config_map_name(run: &str, i: u32) -> String {
    format!("{run}-result-{i}")
}

/// Name of the report ConfigMap.
pub fn report_config_map_name(run: &str) -> String {
    format!("{run}-report")
}

/// Label selector of everything of `run` with `part`.
pub fn selector(run: &str, part: Option<&str>) -> String {
    match part {
        Some(p) => format!("{LABEL_RUN}={run},{LABEL_PART}={p}"),
        None => format!("{LABEL_RUN}={run}"),
    }
}

fn owner(run: &LoadTestRun) -> Result<OwnerReference, Error> {
    let mut owner = run
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingField(run.name_any(), "metadata.uid"))?;
    // Foreground deletion of the run waits for its Jobs (and their pods) to be gone.
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

fn meta(
    run: &LoadTestRun,
    name: String,
    part: &str,
    extra: &[(&str, String)],
) -> Result<ObjectMeta, Error> {
    let mut labels = BTreeMap::from([
        (LABEL_RUN.to_owned(), run.name_any()),
        (LABEL_PART.to_owned(), part.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGER.to_owned(),
        ),
    ]);
    for (k, v) in extra {
        labels.insert((*k).to_owned(), v.clone());
    }
    Ok(ObjectMeta {
        name: Some(name),
        namespace: run.namespace(),
        labels: Some(labels),
        owner_references: Some(vec![owner(run)?]),
        ..ObjectMeta::default()
    })
}

/// `<run>-spec`: the whole resolved spec as a `LoadTest` document, which every runner
/// loads and takes its segment of (and the operator reads back to judge the run).
pub fn spec_config_map(run: &LoadTestRun, whole: &LoadTestSpec) -> Result<ConfigMap, Error> {
    let name = run.name_any();
    let doc = serde_saphyr::to_string(&LoadTest::new(&name, whole.clone()))
        .map_err(|e| Error::Render(name.clone(), e.to_string()))?;
    Ok(ConfigMap {
        metadata: meta(run, spec_config_map_name(&name), "spec", &[])?,
        data: Some(BTreeMap::from([(WHOLE_SPEC_KEY.to_owned(), doc)])),
        ..ConfigMap::default()
    })
}

/// `<run>-start`: the released barrier.
pub fn start_config_map(run: &LoadTestRun, start_at: Timestamp) -> Result<ConfigMap, Error> {
    Ok(ConfigMap {
        metadata: meta(run, start_config_map_name(&run.name_any()), "start", &[])?,
        data: Some(BTreeMap::from([(
            START_AT_KEY.to_owned(),
            start_at.to_string(),
        )])),
        ..ConfigMap::default()
    })
}

/// `<run>-report`: the reports, kept after the pods are gone.
pub fn report_config_map(
    run: &LoadTestRun,
    files: BTreeMap<String, String>,
) -> Result<ConfigMap, Error> {
    Ok(ConfigMap {
        metadata: meta(run, report_config_map_name(&run.name_any()), "report", &[])?,
        data: Some(files),
        ..ConfigMap::default()
    })
}

/// Runner `i` of `n`: one pod, never restarted (a failed runner fails the run rather than
/// silently re-running half of its load), the whole spec mounted read-only, a read-only
/// root filesystem, non-root. Its args name the whole spec, its index and the runner
/// count, and the run's `spec.overrides` as `--multiplier`/`--duration`, so that the runner
/// validates the same plan as the operator and takes its segment of it.
pub fn runner_job(
    run: &LoadTestRun,
    i: u32,
    n: u32,
    template: Option<&RunnerTemplate>,
    config: &OperatorConfig,
) -> Result<Job, Error> {
    let name = run.name_any();
    let uid = run
        .uid()
        .ok_or_else(|| Error::MissingField(name.clone(), "metadata.uid"))?;
    let index = [(LABEL_RUNNER_INDEX, i.to_string())];
    let metadata = meta(run, job_name(&name, i), "runner", &index)?;
    let template = template.cloned().unwrap_or_default();
    let mut env = vec![
        EnvVar {
            name: "POD_NAMESPACE".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
        EnvVar {
            name: "RICOCHET_RUN_UID".into(),
            value: Some(uid),
            ..EnvVar::default()
        },
    ];
    env.extend(template.env.iter().cloned());
    let mut args = vec![
        "runner".to_owned(),
        "--spec".to_owned(),
        format!("{SPEC_DIR}/{WHOLE_SPEC_KEY}"),
        "--run".to_owned(),
        name.clone(),
        "--index".to_owned(),
        i.to_string(),
        "--runners".to_owned(),
        n.to_string(),
        "--start-config-map".to_owned(),
        start_config_map_name(&name),
        "--result-config-map".to_owned(),
        result_config_map_name(&name, i),
    ];
    // The overrides as written: the runner parses them as the operator did.
    let overrides = run.spec.overrides.as_ref();
    if let Some(m) = overrides.and_then(|o| o.multiplier) {
        // `f64`'s Display is the shortest text that reads back as the same number.
        args.extend(["--multiplier".to_owned(), m.to_string()]);
    }
    if let Some(d) = overrides.and_then(|o| o.duration.clone()) {
        args.extend(["--duration".to_owned(), d]);
    }
    let mut mounts = vec![
        VolumeMount {
            name: "spec".into(),
            mount_path: SPEC_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ];
    let mut volumes = vec![
        Volume {
            name: "spec".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: spec_config_map_name(&name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if let Some(bodies) = &template.body_files_config_map {
        args.extend(["--body-dir".to_owned(), BODY_FILES_DIR.to_owned()]);
        mounts.push(VolumeMount {
            name: "bodies".into(),
            mount_path: BODY_FILES_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "bodies".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: bodies.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let container = Container {
        name: "runner".into(),
        image: Some(
            template
                .image
                .clone()
                .unwrap_or_else(|| config.runner_image.clone()),
        ),
        image_pull_policy: template.image_pull_policy.clone(),
        args: Some(args),
        env: Some(env),
        env_from: (!template.env_from.is_empty()).then(|| template.env_from.clone()),
        resources: template.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let pod_labels = metadata.labels.clone();
    Ok(Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            completions: Some(1),
            parallelism: Some(1),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: pod_labels,
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(
                        template
                            .service_account_name
                            .clone()
                            .unwrap_or_else(|| config.runner_service_account.clone()),
                    ),
                    node_selector: (!template.node_selector.is_empty())
                        .then(|| template.node_selector.clone()),
                    tolerations: (!template.tolerations.is_empty())
                        .then(|| template.tolerations.clone()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::test_run;
    use ricochet_crds::{LoadTestRef, LoadTestRunSpec, RunOverrides};

    fn args(job: &Job) -> Vec<String> {
        let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        pod.and_then(|p| p.containers[0].args.clone())
            .unwrap_or_default()
    }

    #[test]
    fn a_runner_job_runs_its_segment_of_the_whole_spec_with_the_runs_overrides() {
        let mut spec = LoadTestRunSpec {
            load_test_ref: Some(LoadTestRef { name: "x".into() }),
            spec: None,
            overrides: None,
        };
        let config = OperatorConfig::default();
        let plain = runner_job(&test_run("r1", spec.clone()), 1, 4, None, &config).unwrap();
        let plain = args(&plain);
        assert_eq!(
            plain[..3],
            ["runner", "--spec", "/etc/ricochet/spec/loadtest.yaml"]
        );
        assert!(!plain.contains(&"--multiplier".to_owned()), "{plain:?}");

        spec.overrides = Some(RunOverrides {
            multiplier: Some(0.1),
            duration: Some("90s".into()),
            parallelism: None,
        });
        let job = runner_job(&test_run("r1", spec), 1, 4, None, &config).unwrap();
        let args = args(&job);
        assert_eq!(args[..plain.len()], plain[..]);
        assert_eq!(
            args[plain.len()..],
            ["--multiplier", "0.1", "--duration", "90s"]
        );
    }

    #[test]
    fn named_body_files_are_mounted_read_only_and_read_from_there_only() {
        let spec = LoadTestRunSpec {
            load_test_ref: Some(LoadTestRef { name: "x".into() }),
            spec: None,
            overrides: None,
        };
        let config = OperatorConfig::default();
        let run = test_run("r1", spec);
        let plain = runner_job(&run, 0, 1, None, &config).unwrap();
        assert!(!args(&plain).contains(&"--body-dir".to_owned()));
        let pod = |job: &Job| job.spec.clone().unwrap().template.spec.unwrap();
        assert_eq!(pod(&plain).volumes.unwrap().len(), 2, "spec and tmp only");

        let template = RunnerTemplate {
            body_files_config_map: Some("payloads".into()),
            ..RunnerTemplate::default()
        };
        let job = runner_job(&run, 0, 1, Some(&template), &config).unwrap();
        let args = args(&job);
        let at = args.iter().position(|a| a == "--body-dir").unwrap();
        assert_eq!(args[at + 1], BODY_FILES_DIR);
        let pod = pod(&job);
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "bodies")
            .unwrap();
        assert_eq!(volume.config_map.unwrap().name, "payloads");
        let mount = pod.containers[0]
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .find(|m| m.name == "bodies")
            .unwrap();
        assert_eq!(mount.mount_path, BODY_FILES_DIR);
        assert_eq!(mount.read_only, Some(true));
    }
}
