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
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec,
    SeccompProfile, SecurityContext, Volume, VolumeMount,
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

/// Patch parameters of every status write: the operator's field manager, so that
/// `managedFields` name it (not `unknown`).
pub fn status_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(MANAGER.to_owned()),
        ..kube::api::PatchParams::default()
    }
}

/// The merge-patch body `{"status": ...}` of `K`'s `status`, with every status field the
/// CRD declares and `status` leaves out (empty lists, `None`) written as null: a merge
/// patch leaves absent fields as they were, so an emptied `active` or a cleared `message`
/// would otherwise stay. With the `resource_version` the status was derived from, the API
/// server refuses the write (409) when the object has changed since, instead of letting a
/// decision taken on a stale read overwrite a newer status. See: #18.
pub fn status_patch<K: kube::CustomResourceExt>(
    status: &impl serde::Serialize,
    resource_version: Option<&str>,
) -> Result<serde_json::Value, Error> {
    let mut body = serde_json::to_value(status)
        .map_err(|e| Error::Render(K::crd_name().into(), e.to_string()))?;
    if let Some(fields) = body.as_object_mut() {
        let crd = K::crd();
        let declared = crd
            .spec
            .versions
            .iter()
            .filter_map(|v| v.schema.as_ref()?.open_api_v3_schema.as_ref())
            .filter_map(|s| s.properties.as_ref()?.get("status")?.properties.as_ref())
            .flat_map(|p| p.keys());
        for field in declared {
            fields
                .entry(field.clone())
                .or_insert(serde_json::Value::Null);
        }
    }
    Ok(match resource_version {
        Some(rv) => serde_json::json!({ "metadata": { "resourceVersion": rv }, "status": body }),
        None => serde_json::json!({ "status": body }),
    })
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
/// root filesystem, non-root, and admissible under the Pod Security Standards'
/// `restricted` profile (no privilege escalation, every capability dropped, the runtime's
/// default seccomp profile, only ConfigMap and emptyDir volumes). Its args name the whole spec, its index and the runner
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
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        // The runner writes its error to /dev/termination-log; should it die before, the
        // tail of its output stands in, and the operator reads either into the run's status.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
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
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
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

    // --- Pod Security Standards, `restricted` profile -------------------------------------
    // What PodSecurity admission at `pod-security.kubernetes.io/enforce: restricted`
    // (Kubernetes v1.34; `restricted` includes every `baseline` control) checks in a pod
    // spec, written out field by field so that a test can say which field is wrong. Pod
    // annotations (the deprecated AppArmor and seccomp ones) are outside a PodSpec and not
    // checked; neither the runner pod nor the operator Deployment sets any.

    /// Volume sources `restricted` allows.
    const RESTRICTED_VOLUME_TYPES: &[&str] = &[
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    /// The sysctls `baseline` allows.
    const SAFE_SYSCTLS: &[&str] = &[
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    /// SELinux types `baseline` allows (and unset).
    const SELINUX_TYPES: &[&str] = &[
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];

    fn shown<T: std::fmt::Debug>(v: Option<T>) -> String {
        v.map_or_else(|| "unset".to_owned(), |v| format!("{v:?}"))
    }

    /// One container of any of the three lists, as far as PodSecurity looks at it.
    struct Checked<'a> {
        at: String,
        security: Option<&'a SecurityContext>,
        ports: &'a [k8s_openapi::api::core::v1::ContainerPort],
        probes: Vec<&'a k8s_openapi::api::core::v1::Probe>,
        lifecycle: Option<&'a k8s_openapi::api::core::v1::Lifecycle>,
    }

    fn checked(pod: &PodSpec) -> Vec<Checked<'_>> {
        let mut out = Vec::new();
        for (list, containers) in [
            ("containers", Some(&pod.containers)),
            ("initContainers", pod.init_containers.as_ref()),
        ] {
            for (i, c) in containers.into_iter().flatten().enumerate() {
                out.push(Checked {
                    at: format!("spec.{list}[{i}]"),
                    security: c.security_context.as_ref(),
                    ports: c.ports.as_deref().unwrap_or_default(),
                    probes: [&c.liveness_probe, &c.readiness_probe, &c.startup_probe]
                        .into_iter()
                        .flatten()
                        .collect(),
                    lifecycle: c.lifecycle.as_ref(),
                });
            }
        }
        for (i, c) in pod.ephemeral_containers.iter().flatten().enumerate() {
            out.push(Checked {
                at: format!("spec.ephemeralContainers[{i}]"),
                security: c.security_context.as_ref(),
                ports: c.ports.as_deref().unwrap_or_default(),
                probes: [&c.liveness_probe, &c.readiness_probe, &c.startup_probe]
                    .into_iter()
                    .flatten()
                    .collect(),
                lifecycle: c.lifecycle.as_ref(),
            });
        }
        out
    }

    fn check_selinux(
        out: &mut Vec<String>,
        at: &str,
        options: Option<&k8s_openapi::api::core::v1::SELinuxOptions>,
    ) {
        let Some(o) = options else { return };
        let type_ = o.type_.as_deref().unwrap_or_default();
        if !SELINUX_TYPES.contains(&type_) {
            out.push(format!(
                "{at}.seLinuxOptions.type must be unset or one of {SELINUX_TYPES:?} (is {type_:?})"
            ));
        }
        for (field, v) in [("user", &o.user), ("role", &o.role)] {
            if v.as_deref().is_some_and(|v| !v.is_empty()) {
                out.push(format!(
                    "{at}.seLinuxOptions.{field} must be unset (is {})",
                    shown(v.as_ref())
                ));
            }
        }
    }

    /// What `restricted` PodSecurity admission would reject in `pod`, one sentence per
    /// field (its path, the rule, the value); empty when the pod is admitted.
    fn restricted_violations(pod: &PodSpec) -> Vec<String> {
        let mut out = Vec::new();
        for (field, on) in [
            ("hostNetwork", pod.host_network),
            ("hostPID", pod.host_pid),
            ("hostIPC", pod.host_ipc),
        ] {
            if on == Some(true) {
                out.push(format!("spec.{field} must be unset or false (is true)"));
            }
        }
        for (i, v) in pod.volumes.iter().flatten().enumerate() {
            let source = serde_json::to_value(v).unwrap_or_default();
            for key in source.as_object().into_iter().flat_map(|o| o.keys()) {
                if key != "name" && !RESTRICTED_VOLUME_TYPES.contains(&key.as_str()) {
                    out.push(format!(
                        "spec.volumes[{i}] ({}) must be one of {RESTRICTED_VOLUME_TYPES:?} (is {key})",
                        v.name
                    ));
                }
            }
        }
        let psc = pod.security_context.as_ref();
        let pod_non_root = psc.and_then(|s| s.run_as_non_root);
        if pod_non_root == Some(false) {
            out.push("spec.securityContext.runAsNonRoot must be true (is false)".into());
        }
        let allowed_seccomp = |p: &k8s_openapi::api::core::v1::SeccompProfile| {
            matches!(p.type_.as_str(), "RuntimeDefault" | "Localhost")
        };
        let pod_seccomp = psc.and_then(|s| s.seccomp_profile.as_ref());
        if let Some(p) = pod_seccomp.filter(|p| !allowed_seccomp(p)) {
            out.push(format!(
                "spec.securityContext.seccompProfile.type must be RuntimeDefault or Localhost (is {:?})",
                p.type_
            ));
        }
        if let Some(sc) = psc {
            if sc.run_as_user == Some(0) {
                out.push("spec.securityContext.runAsUser must not be 0".into());
            }
            check_selinux(
                &mut out,
                "spec.securityContext",
                sc.se_linux_options.as_ref(),
            );
            if let Some(p) = sc
                .app_armor_profile
                .as_ref()
                .filter(|p| p.type_ == "Unconfined")
            {
                out.push(format!(
                    "spec.securityContext.appArmorProfile.type must be unset, RuntimeDefault or Localhost (is {:?})",
                    p.type_
                ));
            }
            if sc.windows_options.as_ref().and_then(|w| w.host_process) == Some(true) {
                out.push(
                    "spec.securityContext.windowsOptions.hostProcess must be unset or false (is true)"
                        .into(),
                );
            }
            for s in sc.sysctls.iter().flatten() {
                if !SAFE_SYSCTLS.contains(&s.name.as_str()) {
                    out.push(format!(
                        "spec.securityContext.sysctls: {} is not one of the safe sysctls",
                        s.name
                    ));
                }
            }
        }
        for c in checked(pod) {
            let at = &c.at;
            let sc = c.security;
            if sc.and_then(|s| s.privileged) == Some(true) {
                out.push(format!(
                    "{at}.securityContext.privileged must be unset or false (is true)"
                ));
            }
            let escalation = sc.and_then(|s| s.allow_privilege_escalation);
            if escalation != Some(false) {
                out.push(format!(
                    "{at}.securityContext.allowPrivilegeEscalation must be false (is {})",
                    shown(escalation)
                ));
            }
            let caps = sc.and_then(|s| s.capabilities.as_ref());
            let drop = caps.and_then(|c| c.drop.as_ref());
            if !drop.is_some_and(|d| d.iter().any(|c| c == "ALL")) {
                out.push(format!(
                    "{at}.securityContext.capabilities.drop must include ALL (is {})",
                    shown(drop)
                ));
            }
            for add in caps.and_then(|c| c.add.as_ref()).into_iter().flatten() {
                if add != "NET_BIND_SERVICE" {
                    out.push(format!(
                        "{at}.securityContext.capabilities.add may only hold NET_BIND_SERVICE (holds {add})"
                    ));
                }
            }
            match sc.and_then(|s| s.run_as_non_root) {
                Some(false) => out.push(format!(
                    "{at}.securityContext.runAsNonRoot must be true (is false)"
                )),
                None if pod_non_root != Some(true) => out.push(format!(
                    "{at}.securityContext.runAsNonRoot must be true when spec.securityContext.runAsNonRoot is not (is unset)"
                )),
                _ => {}
            }
            if sc.and_then(|s| s.run_as_user) == Some(0) {
                out.push(format!("{at}.securityContext.runAsUser must not be 0"));
            }
            match sc.and_then(|s| s.seccomp_profile.as_ref()) {
                Some(p) if !allowed_seccomp(p) => out.push(format!(
                    "{at}.securityContext.seccompProfile.type must be RuntimeDefault or Localhost (is {:?})",
                    p.type_
                )),
                None if !pod_seccomp.is_some_and(allowed_seccomp) => out.push(format!(
                    "{at}.securityContext.seccompProfile.type must be RuntimeDefault or Localhost when the pod sets neither (is unset)"
                )),
                _ => {}
            }
            if let Some(sc) = sc {
                let proc_mount = sc.proc_mount.as_deref();
                if proc_mount.is_some_and(|m| m != "Default") {
                    out.push(format!(
                        "{at}.securityContext.procMount must be unset or Default (is {})",
                        shown(proc_mount)
                    ));
                }
                check_selinux(
                    &mut out,
                    &format!("{at}.securityContext"),
                    sc.se_linux_options.as_ref(),
                );
                if let Some(p) = sc
                    .app_armor_profile
                    .as_ref()
                    .filter(|p| p.type_ == "Unconfined")
                {
                    out.push(format!(
                        "{at}.securityContext.appArmorProfile.type must be unset, RuntimeDefault or Localhost (is {:?})",
                        p.type_
                    ));
                }
                if sc.windows_options.as_ref().and_then(|w| w.host_process) == Some(true) {
                    out.push(format!(
                        "{at}.securityContext.windowsOptions.hostProcess must be unset or false (is true)"
                    ));
                }
            }
            for (j, p) in c.ports.iter().enumerate() {
                if p.host_port.is_some_and(|h| h != 0) {
                    out.push(format!(
                        "{at}.ports[{j}].hostPort must be unset or 0 (is {})",
                        shown(p.host_port)
                    ));
                }
            }
            // Baseline since v1.34: probes and lifecycle hooks may not aim at another host.
            let handlers = c
                .probes
                .iter()
                .map(|p| (p.http_get.as_ref(), p.tcp_socket.as_ref()))
                .chain(
                    c.lifecycle
                        .into_iter()
                        .flat_map(|l| [&l.post_start, &l.pre_stop])
                        .flatten()
                        .map(|h| (h.http_get.as_ref(), h.tcp_socket.as_ref())),
                );
            for (http, tcp) in handlers {
                let hosts = [
                    http.and_then(|h| h.host.as_deref()),
                    tcp.and_then(|t| t.host.as_deref()),
                ];
                for host in hosts.into_iter().flatten().filter(|h| !h.is_empty()) {
                    out.push(format!(
                        "{at}: probes and lifecycle hooks must not set host (is {host:?})"
                    ));
                }
            }
        }
        out
    }

    fn runner_pod(template: Option<&RunnerTemplate>) -> PodSpec {
        let run = test_run(
            "r1",
            LoadTestRunSpec {
                load_test_ref: Some(LoadTestRef { name: "x".into() }),
                spec: None,
                overrides: None,
            },
        );
        let job = runner_job(&run, 0, 2, template, &OperatorConfig::default()).unwrap();
        job.spec.unwrap().template.spec.unwrap()
    }

    #[test]
    fn runner_pods_are_admitted_under_the_restricted_pod_security_standard() {
        // As the operator builds them, plain and with every template override a
        // LoadTest can set.
        let template: RunnerTemplate = serde_saphyr::from_str(
            "image: registry.example/loadgen:1\nimagePullPolicy: Always\nresources: {limits: {cpu: '2', memory: 1Gi}}\nnodeSelector: {pool: load}\ntolerations: [{key: load, operator: Exists, effect: NoSchedule}]\nserviceAccountName: runner-x\nenv: [{name: TOKEN, valueFrom: {secretKeyRef: {name: s, key: token}}}]\nenvFrom: [{configMapRef: {name: extra}}]\nbodyFilesConfigMap: payloads\n",
        )
        .unwrap();
        for (what, pod) in [
            ("plain", runner_pod(None)),
            ("with every template override", runner_pod(Some(&template))),
        ] {
            assert_eq!(restricted_violations(&pod), Vec::<String>::new(), "{what}");
            let sc = pod.containers[0].security_context.clone().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{what}");
        }
    }

    #[test]
    fn the_operator_and_canary_deployments_pass_the_restricted_pod_security_standard() {
        for file in ["operator/deployment.yaml", "canary/deployment.yaml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../deploy/base")
                .join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            let deployment: k8s_openapi::api::apps::v1::Deployment =
                serde_saphyr::from_str(&text).unwrap();
            let pod = deployment.spec.unwrap().template.spec.unwrap();
            assert_eq!(pod.containers.len(), 1);
            assert_eq!(
                restricted_violations(&pod),
                Vec::<String>::new(),
                "{}",
                path.display()
            );
            let sc = pod.containers[0].security_context.clone().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{file}");
        }
    }

    #[test]
    fn a_pod_spec_without_security_settings_is_reported_field_by_field() {
        let bare = PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ..Container::default()
            }],
            ..PodSpec::default()
        };
        assert_eq!(
            restricted_violations(&bare),
            [
                "spec.containers[0].securityContext.allowPrivilegeEscalation must be false (is unset)",
                "spec.containers[0].securityContext.capabilities.drop must include ALL (is unset)",
                "spec.containers[0].securityContext.runAsNonRoot must be true when spec.securityContext.runAsNonRoot is not (is unset)",
                "spec.containers[0].securityContext.seccompProfile.type must be RuntimeDefault or Localhost when the pod sets neither (is unset)",
            ]
        );
    }

    #[test]
    fn each_field_restricted_admission_checks_is_reported_when_it_is_wrong() {
        use k8s_openapi::api::core::v1::{
            AppArmorProfile, ContainerPort, HTTPGetAction, HostPathVolumeSource, Lifecycle,
            LifecycleHandler, Probe, SELinuxOptions, Sysctl, TCPSocketAction,
            WindowsSecurityContextOptions,
        };
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        type Change = fn(&mut PodSpec);
        fn psc(p: &mut PodSpec) -> &mut PodSecurityContext {
            p.security_context.get_or_insert_with(Default::default)
        }
        fn sc(p: &mut PodSpec) -> &mut SecurityContext {
            p.containers[0]
                .security_context
                .get_or_insert_with(Default::default)
        }
        // One change each to the admitted runner pod, and the one sentence it must cause.
        let cases: &[(Change, &str)] = &[
            (
                |p| p.host_network = Some(true),
                "spec.hostNetwork must be unset or false (is true)",
            ),
            (
                |p| p.host_pid = Some(true),
                "spec.hostPID must be unset or false (is true)",
            ),
            (
                |p| p.host_ipc = Some(true),
                "spec.hostIPC must be unset or false (is true)",
            ),
            (
                |p| {
                    p.volumes.get_or_insert_with(Vec::new).push(Volume {
                        name: "host".into(),
                        host_path: Some(HostPathVolumeSource {
                            path: "/var/run".into(),
                            type_: None,
                        }),
                        ..Volume::default()
                    })
                },
                "spec.volumes[2] (host) must be one of [\"configMap\", \"csi\", \"downwardAPI\", \"emptyDir\", \"ephemeral\", \"persistentVolumeClaim\", \"projected\", \"secret\"] (is hostPath)",
            ),
            (
                |p| psc(p).run_as_non_root = Some(false),
                "spec.securityContext.runAsNonRoot must be true (is false)",
            ),
            (
                |p| {
                    psc(p).run_as_non_root = None;
                    sc(p).run_as_non_root = None;
                },
                "spec.containers[0].securityContext.runAsNonRoot must be true when spec.securityContext.runAsNonRoot is not (is unset)",
            ),
            (
                |p| sc(p).run_as_non_root = Some(false),
                "spec.containers[0].securityContext.runAsNonRoot must be true (is false)",
            ),
            (
                |p| psc(p).run_as_user = Some(0),
                "spec.securityContext.runAsUser must not be 0",
            ),
            (
                |p| sc(p).run_as_user = Some(0),
                "spec.containers[0].securityContext.runAsUser must not be 0",
            ),
            (
                |p| psc(p).seccomp_profile = None,
                "spec.containers[0].securityContext.seccompProfile.type must be RuntimeDefault or Localhost when the pod sets neither (is unset)",
            ),
            (
                |p| {
                    // The container's own profile keeps it admitted: only the pod's is wrong.
                    sc(p).seccomp_profile = psc(p).seccomp_profile.clone();
                    psc(p).seccomp_profile = Some(SeccompProfile {
                        type_: "Unconfined".into(),
                        localhost_profile: None,
                    })
                },
                "spec.securityContext.seccompProfile.type must be RuntimeDefault or Localhost (is \"Unconfined\")",
            ),
            (
                |p| {
                    sc(p).seccomp_profile = Some(SeccompProfile {
                        type_: "Unconfined".into(),
                        localhost_profile: None,
                    })
                },
                "spec.containers[0].securityContext.seccompProfile.type must be RuntimeDefault or Localhost (is \"Unconfined\")",
            ),
            (
                |p| sc(p).privileged = Some(true),
                "spec.containers[0].securityContext.privileged must be unset or false (is true)",
            ),
            (
                |p| sc(p).allow_privilege_escalation = None,
                "spec.containers[0].securityContext.allowPrivilegeEscalation must be false (is unset)",
            ),
            (
                |p| sc(p).allow_privilege_escalation = Some(true),
                "spec.containers[0].securityContext.allowPrivilegeEscalation must be false (is true)",
            ),
            (
                |p| sc(p).capabilities = None,
                "spec.containers[0].securityContext.capabilities.drop must include ALL (is unset)",
            ),
            (
                |p| {
                    sc(p).capabilities = Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        add: Some(vec!["NET_BIND_SERVICE".into(), "SYS_ADMIN".into()]),
                    })
                },
                "spec.containers[0].securityContext.capabilities.add may only hold NET_BIND_SERVICE (holds SYS_ADMIN)",
            ),
            (
                |p| sc(p).proc_mount = Some("Unmasked".into()),
                "spec.containers[0].securityContext.procMount must be unset or Default (is \"Unmasked\")",
            ),
            (
                |p| {
                    sc(p).se_linux_options = Some(SELinuxOptions {
                        type_: Some("spc_t".into()),
                        ..SELinuxOptions::default()
                    })
                },
                "spec.containers[0].securityContext.seLinuxOptions.type must be unset or one of [\"\", \"container_t\", \"container_init_t\", \"container_kvm_t\", \"container_engine_t\"] (is \"spc_t\")",
            ),
            (
                |p| {
                    psc(p).se_linux_options = Some(SELinuxOptions {
                        user: Some("root".into()),
                        ..SELinuxOptions::default()
                    })
                },
                "spec.securityContext.seLinuxOptions.user must be unset (is \"root\")",
            ),
            (
                |p| {
                    sc(p).app_armor_profile = Some(AppArmorProfile {
                        type_: "Unconfined".into(),
                        localhost_profile: None,
                    })
                },
                "spec.containers[0].securityContext.appArmorProfile.type must be unset, RuntimeDefault or Localhost (is \"Unconfined\")",
            ),
            (
                |p| {
                    psc(p).windows_options = Some(WindowsSecurityContextOptions {
                        host_process: Some(true),
                        ..WindowsSecurityContextOptions::default()
                    })
                },
                "spec.securityContext.windowsOptions.hostProcess must be unset or false (is true)",
            ),
            (
                |p| {
                    psc(p).sysctls = Some(vec![
                        Sysctl {
                            name: "net.ipv4.tcp_syncookies".into(),
                            value: "1".into(),
                        },
                        Sysctl {
                            name: "kernel.msgmax".into(),
                            value: "1".into(),
                        },
                    ])
                },
                "spec.securityContext.sysctls: kernel.msgmax is not one of the safe sysctls",
            ),
            (
                |p| {
                    p.containers[0].ports = Some(vec![ContainerPort {
                        container_port: 9090,
                        host_port: Some(9090),
                        ..ContainerPort::default()
                    }])
                },
                "spec.containers[0].ports[0].hostPort must be unset or 0 (is 9090)",
            ),
            (
                |p| {
                    p.containers[0].liveness_probe = Some(Probe {
                        http_get: Some(HTTPGetAction {
                            host: Some("10.0.0.1".into()),
                            port: IntOrString::Int(80),
                            ..HTTPGetAction::default()
                        }),
                        ..Probe::default()
                    })
                },
                "spec.containers[0]: probes and lifecycle hooks must not set host (is \"10.0.0.1\")",
            ),
            (
                |p| {
                    p.containers[0].lifecycle = Some(Lifecycle {
                        pre_stop: Some(LifecycleHandler {
                            tcp_socket: Some(TCPSocketAction {
                                host: Some("node".into()),
                                port: IntOrString::Int(22),
                            }),
                            ..LifecycleHandler::default()
                        }),
                        ..Lifecycle::default()
                    })
                },
                "spec.containers[0]: probes and lifecycle hooks must not set host (is \"node\")",
            ),
            (
                |p| {
                    let mut init = p.containers[0].clone();
                    init.security_context.as_mut().unwrap().privileged = Some(true);
                    p.init_containers = Some(vec![init]);
                },
                "spec.initContainers[0].securityContext.privileged must be unset or false (is true)",
            ),
        ];
        for (i, (change, expected)) in cases.iter().enumerate() {
            let mut pod = runner_pod(None);
            change(&mut pod);
            assert_eq!(restricted_violations(&pod), [*expected], "case {i}");
        }
    }
}
