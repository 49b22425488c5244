//! Reconciling one `LoadTestRun`: create runners → release the barrier → watch → merge
//! and judge → clean up. Idempotent: each step derives the desired state from the objects
//! it reads, applies objects server-side, and patches the status only when it changes.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use ricochet_crds::{
    LoadTest, LoadTestRun, LoadTestRunStatus, LoadTestSpec, ReportLocation, RunPhase, RunnerPhase,
    RunnerStatus, Verdict,
};

use super::partial::{Partial, counters, judge_merged, merge_run, merged_summary, p99};
use super::resources::{self, MANAGER, PARTIAL_KEY, WHOLE_SPEC_KEY};
use super::{Context, Error, Result};
use ricochet_engine::plan::{BodyFiles, Overrides, Plan};
use ricochet_engine::segment::runner_count;

/// Poll interval while runners start or run (Job changes also trigger reconciles).
const POLL: Duration = Duration::from_secs(5);
/// How long runner pods may take to all be running (image pulls, scheduling) before the
/// run fails rather than waiting forever on an unschedulable pod.
pub const START_TIMEOUT: Duration = Duration::from_secs(600);
/// Upper bound of each report kept in the report ConfigMap (a ConfigMap holds 1 MiB).
const MAX_REPORT_BYTES: usize = 256 * 1024;

/// Condition type set once the start barrier is released.
pub const STARTED: &str = "Started";
/// Condition type: the merged results passed every threshold.
pub const PASSED: &str = "Passed";
/// Condition type: a threshold failed, or the run could not be carried out.
pub const FAILED: &str = "Failed";
/// Condition type: the run is over, passed or failed (`kubectl wait
/// --for=condition=Finished` returns at once either way; then read `Passed`).
pub const FINISHED: &str = "Finished";

/// Reconciles one run (the controller's entry point).
#[tracing::instrument(skip(run, ctx), fields(run = %run.name_any()))]
pub async fn reconcile_run(run: Arc<LoadTestRun>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciliations.fetch_add(1, Ordering::Relaxed);
    if run.metadata.deletion_timestamp.is_some() {
        // Owner references and foreground deletion stop the runners.
        return Ok(Action::await_change());
    }
    let status = run.status.clone().unwrap_or_default();
    match status.phase {
        None => start(&run, &ctx).await,
        Some(RunPhase::Pending) => await_barrier(&run, &ctx, status).await,
        Some(RunPhase::Running) => watch_runners(&run, &ctx, status).await,
        Some(RunPhase::Passed | RunPhase::Failed) => expire(&run, &ctx, &status).await,
    }
}

fn namespace(run: &LoadTestRun) -> Result<String> {
    run.namespace()
        .ok_or_else(|| Error::MissingField(run.name_any(), "metadata.namespace"))
}

fn overrides(run: &LoadTestRun) -> std::result::Result<Overrides, String> {
    let o = run.spec.overrides.clone().unwrap_or_default();
    let duration = match &o.duration {
        Some(text) => Some(
            ricochet_engine::duration::parse_duration(text)
                .map_err(|e| format!("spec.overrides.duration: {e}"))?,
        ),
        None => None,
    };
    Ok(Overrides {
        multiplier: o.multiplier,
        duration,
        embedded: false,
        embedded_listen: None,
        outputs: Vec::new(),
    })
}

/// The spec the run runs, or why there is none (a sentence for the status).
async fn resolve_spec(
    run: &LoadTestRun,
    ctx: &Context,
) -> Result<std::result::Result<LoadTestSpec, String>> {
    if let Some(spec) = &run.spec.spec {
        return Ok(Ok((**spec).clone()));
    }
    let Some(reference) = &run.spec.load_test_ref else {
        return Ok(Err("spec: set one of loadTestRef and spec".into()));
    };
    let ns = namespace(run)?;
    let api: Api<LoadTest> = Api::namespaced(ctx.client.clone(), &ns);
    Ok(match api.get_opt(&reference.name).await? {
        Some(lt) => Ok(lt.spec),
        None => Err(format!(
            "spec.loadTestRef: LoadTest `{}` does not exist in namespace `{ns}`",
            reference.name
        )),
    })
}

/// Validates the run's spec as its runners will, without reading the operator's own file
/// system: body files are checked for their shape here and read by the runners from
/// `spec.runner.bodyFilesConfigMap`, which must then be named.
fn plan_of(run: &LoadTestRun, spec: &LoadTestSpec) -> std::result::Result<Plan, String> {
    let overrides = overrides(run)?;
    let plan = Plan::from_spec(&run.name_any(), spec, BodyFiles::Deferred, &overrides)
        .map_err(|e| e.to_string())?;
    let bodies = spec
        .runner
        .as_ref()
        .and_then(|r| r.body_files_config_map.as_ref());
    for (i, sc) in spec.scenarios.iter().enumerate() {
        for (j, r) in sc.requests.iter().enumerate() {
            let Some(file) = &r.body_file else { continue };
            let field = format!("spec.scenarios[{i}].requests[{j}].bodyFile");
            if bodies.is_none() {
                return Err(format!(
                    "{field}: `{file}` cannot be read in a cluster without `spec.runner.bodyFilesConfigMap`: create a ConfigMap holding it (`kubectl create configmap NAME --from-file={file}`) and name it there, or give the body inline with `body`"
                ));
            }
            if file.contains('/') {
                return Err(format!(
                    "{field}: `{file}` names a folder, but in a cluster body files are the keys of `spec.runner.bodyFilesConfigMap`, which have none: name the file alone"
                ));
            }
        }
    }
    Ok(plan)
}

fn now(ctx: &Context) -> Time {
    Time(ctx.clock.now())
}

/// Sets condition `kind`, keeping its transition time when its status does not change.
fn set_condition(
    conditions: &mut Vec<Condition>,
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    at: &Time,
) {
    let status = if status { "True" } else { "False" };
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == kind) {
        if c.status != status {
            c.last_transition_time = at.clone();
        }
        c.status = status.into();
        c.reason = reason.into();
        c.message = message.into();
    } else {
        conditions.push(Condition {
            type_: kind.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: at.clone(),
            observed_generation: None,
        });
    }
}

async fn patch_status(run: &LoadTestRun, ctx: &Context, status: &LoadTestRunStatus) -> Result<()> {
    let api: Api<LoadTestRun> = Api::namespaced(ctx.client.clone(), &namespace(run)?);
    api.patch_status(
        &run.name_any(),
        &resources::status_params(),
        &Patch::Merge(resources::status_patch::<LoadTestRun>(
            status,
            run.metadata.resource_version.as_deref(),
        )?),
    )
    .await?;
    Ok(())
}

async fn event(
    run: &LoadTestRun,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: String,
) -> Result<()> {
    ctx.publish(run, "Reconcile", type_, reason, note).await
}

/// A new run: validate, check that every runner gets some load, create the spec
/// ConfigMap (the whole spec) and the runner Jobs (each told its index and the count).
async fn start(run: &LoadTestRun, ctx: &Context) -> Result<Action> {
    let spec = match resolve_spec(run, ctx).await? {
        Ok(spec) => spec,
        Err(reason) => return fail(run, ctx, Default::default(), "InvalidSpec", reason).await,
    };
    let runners = plan_of(run, &spec).and_then(|plan| {
        let parallelism = run
            .spec
            .overrides
            .as_ref()
            .and_then(|o| o.parallelism)
            .or(spec.parallelism);
        let n = runner_count(parallelism, spec.max_rate_per_runner, &plan)
            .map_err(|e| e.to_string())?;
        plan.check_segments(n).map_err(|e| e.to_string())?;
        Ok(n)
    });
    let n = match runners {
        Ok(n) => n,
        Err(reason) => return fail(run, ctx, Default::default(), "InvalidSpec", reason).await,
    };
    let ns = namespace(run)?;
    let name = run.name_any();
    let apply = PatchParams::apply(MANAGER).force();
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let cm = resources::spec_config_map(run, &spec)?;
    let cm_name = resources::spec_config_map_name(&name);
    if let Err(e) = config_maps
        .patch(&cm_name, &apply, &Patch::Apply(&cm))
        .await
    {
        return not_created(run, ctx, n, "ConfigMap", &cm_name, e).await;
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    for i in 0..n.get() {
        let job = resources::runner_job(run, i, n.get(), spec.runner.as_ref(), &ctx.config)?;
        let job_name = resources::job_name(&name, i);
        if let Err(e) = jobs.patch(&job_name, &apply, &Patch::Apply(&job)).await {
            return not_created(run, ctx, n, "Job", &job_name, e).await;
        }
    }
    let at = now(ctx);
    let mut status = LoadTestRunStatus {
        phase: Some(RunPhase::Pending),
        parallelism: Some(n.get()),
        runners: runner_states(&name, n, |_| (RunnerPhase::Pending, None)),
        start_time: Some(at.clone()),
        observed_generation: run.metadata.generation,
        message: Some(format!("waiting for {n} runner pods to be running")),
        ..LoadTestRunStatus::default()
    };
    set_condition(
        &mut status.conditions,
        STARTED,
        false,
        "RunnersStarting",
        "runner pods are starting",
        &at,
    );
    patch_status(run, ctx, &status).await?;
    event(
        run,
        ctx,
        EventType::Normal,
        "RunnersCreated",
        format!("created {n} runner Jobs"),
    )
    .await?;
    Ok(Action::requeue(POLL))
}

/// Creating the run's `kind` `object` failed. A refusal that cannot heal by itself — 403
/// Forbidden (RBAC, OwnerReferencesPermissionEnforcement, PodSecurity admission) or 422
/// (an admission webhook or validation) — fails the run at once, naming the object and
/// the API server's words; anything else (an exceeded quota, an unavailable API server) is
/// shown in the status and an Event, and retried. See: #18.
async fn not_created(
    run: &LoadTestRun,
    ctx: &Context,
    n: NonZeroU32,
    kind: &str,
    object: &str,
    err: kube::Error,
) -> Result<Action> {
    let kube::Error::Api(refusal) = &err else {
        return Err(err.into());
    };
    let message = format!(
        "cannot create {kind} {object} (HTTP {}): {}",
        refusal.code, refusal.message
    );
    let quota = refusal.message.contains("exceeded quota");
    if matches!(refusal.code, 403 | 422) && !quota {
        // Some runner Jobs may exist already: `fail` deletes them.
        let status = LoadTestRunStatus {
            parallelism: Some(n.get()),
            ..LoadTestRunStatus::default()
        };
        return fail(run, ctx, status, "CreateRefused", message).await;
    }
    let mut status = run.status.clone().unwrap_or_default();
    let retrying = format!("{message}; retrying");
    // Unchanged: no write, so that the status patch does not trigger the next attempt.
    if status.message.as_deref() != Some(retrying.as_str()) {
        status.message = Some(retrying);
        status.observed_generation = run.metadata.generation;
        let at = now(ctx);
        set_condition(
            &mut status.conditions,
            STARTED,
            false,
            "CreateFailed",
            &message,
            &at,
        );
        patch_status(run, ctx, &status).await?;
        event(run, ctx, EventType::Warning, "CreateFailed", message).await?;
    }
    Ok(Action::requeue(Duration::from_secs(10)))
}

fn runner_states(
    run: &str,
    n: NonZeroU32,
    state: impl Fn(u32) -> (RunnerPhase, Option<String>),
) -> Vec<RunnerStatus> {
    (0..n.get())
        .map(|i| {
            let (phase, reason) = state(i);
            RunnerStatus {
                index: i,
                job: resources::job_name(run, i),
                phase,
                reason,
            }
        })
        .collect()
}

fn runner_index(labels: &BTreeMap<String, String>) -> Option<u32> {
    labels.get(resources::LABEL_RUNNER_INDEX)?.parse().ok()
}

fn parallelism(status: &LoadTestRunStatus) -> NonZeroU32 {
    status
        .parallelism
        .and_then(NonZeroU32::new)
        .unwrap_or(NonZeroU32::MIN)
}

/// `Pending`: release the barrier once every runner pod is running.
async fn await_barrier(
    run: &LoadTestRun,
    ctx: &Context,
    mut status: LoadTestRunStatus,
) -> Result<Action> {
    let ns = namespace(run)?;
    let name = run.name_any();
    let n = parallelism(&status);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let list = pods
        .list(&ListParams::default().labels(&resources::selector(&name, Some("runner"))))
        .await?;
    let mut phases: BTreeMap<u32, (RunnerPhase, Option<String>)> = BTreeMap::new();
    for pod in &list.items {
        let Some(i) = runner_index(pod.labels()) else {
            continue;
        };
        let pod_status = pod.status.clone().unwrap_or_default();
        let state = match pod_status.phase.as_deref() {
            Some("Running") => (RunnerPhase::Running, None),
            Some("Failed") => (
                RunnerPhase::Failed,
                Some(format!(
                    "pod {} failed before the start: {}",
                    pod.name_any(),
                    pod_status
                        .message
                        .or(pod_status.reason)
                        .unwrap_or_else(|| "no reason given".into())
                )),
            ),
            _ => (RunnerPhase::Pending, not_starting(pod)),
        };
        phases.insert(i, state);
    }
    let podless: Vec<u32> = (0..n.get()).filter(|i| !phases.contains_key(i)).collect();
    if !podless.is_empty() {
        let refused = failed_creates(ctx, &ns).await?;
        for i in podless {
            if let Some(why) = refused.get(&resources::job_name(&name, i)) {
                let why = format!("its Job cannot create the pod: {why}");
                phases.insert(i, (RunnerPhase::Pending, Some(why)));
            }
        }
    }
    let runners = runner_states(&name, n, |i| {
        phases
            .get(&i)
            .cloned()
            .unwrap_or((RunnerPhase::Pending, None))
    });
    if let Some(failed) = runners.iter().find(|r| r.phase == RunnerPhase::Failed) {
        let reason = format!(
            "runner {} failed: {}",
            failed.index,
            failed.reason.clone().unwrap_or_default()
        );
        status.runners = runners;
        return fail(run, ctx, status, "RunnerFailed", reason).await;
    }
    if runners.iter().all(|r| r.phase == RunnerPhase::Running) {
        let lead = SignedDuration::try_from(ctx.config.start_lead).unwrap_or(SignedDuration::ZERO);
        let start_at = ctx
            .clock
            .now()
            .saturating_add(lead)
            .unwrap_or(ctx.clock.now());
        let cm = resources::start_config_map(run, start_at)?;
        let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
        config_maps
            .patch(
                &resources::start_config_map_name(&name),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&cm),
            )
            .await?;
        let at = now(ctx);
        status.phase = Some(RunPhase::Running);
        status.runners = runners;
        status.start_at = Some(Time(start_at));
        status.message = Some(format!("{n} runners start at {start_at}"));
        set_condition(
            &mut status.conditions,
            STARTED,
            true,
            "BarrierReleased",
            &format!("all {n} runner pods are running; load starts at {start_at}"),
            &at,
        );
        patch_status(run, ctx, &status).await?;
        event(
            run,
            ctx,
            EventType::Normal,
            "Started",
            format!("all {n} runners start at {start_at}"),
        )
        .await?;
        return Ok(Action::requeue(POLL));
    }
    let waited = status
        .start_time
        .as_ref()
        .map(|t| ctx.clock.now().duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::ZERO);
    if waited >= START_TIMEOUT {
        let pending: Vec<String> = runners
            .iter()
            .filter(|r| r.phase != RunnerPhase::Running)
            .map(|r| r.index.to_string())
            .collect();
        let reason = format!(
            "runner {} not running after {}s (unschedulable, image pull or quota?); the start barrier was never released",
            pending.join(", "),
            START_TIMEOUT.as_secs()
        );
        status.runners = runners;
        return fail(run, ctx, status, "RunnersNotStarted", reason).await;
    }
    if status.runners != runners {
        let stuck: Vec<String> = runners
            .iter()
            .filter_map(|r| Some(format!("runner {}: {}", r.index, r.reason.as_ref()?)))
            .collect();
        status.runners = runners;
        if stuck.is_empty() {
            status.message = Some(format!("waiting for {n} runner pods to be running"));
            patch_status(run, ctx, &status).await?;
        } else {
            let message = format!("runner pods not starting: {}", stuck.join("; "));
            status.message = Some(message.clone());
            patch_status(run, ctx, &status).await?;
            event(run, ctx, EventType::Warning, "RunnerNotStarting", message).await?;
        }
    }
    Ok(Action::requeue(Duration::from_secs(2)))
}

/// The latest `FailedCreate` Event's message of each Job in `ns` by Job name: the Job
/// controller's word when it cannot create a runner pod (PodSecurity admission, an
/// exceeded quota), which no pod would show. See: #18.
async fn failed_creates(ctx: &Context, ns: &str) -> Result<BTreeMap<String, String>> {
    let events: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), ns);
    let list = events
        .list(&ListParams::default().fields("involvedObject.kind=Job,reason=FailedCreate"))
        .await?;
    let mut latest: BTreeMap<String, (Option<Time>, String)> = BTreeMap::new();
    for e in list.items {
        let (Some(job), Some(message)) = (e.involved_object.name, e.message) else {
            continue;
        };
        let at = e.last_timestamp.or(e.first_timestamp);
        if latest.get(&job).is_none_or(|(seen, _)| at >= *seen) {
            latest.insert(job, (at, message));
        }
    }
    Ok(latest.into_iter().map(|(job, (_, m))| (job, m)).collect())
}

/// Why a pending runner pod is not starting, as the kubelet or the scheduler says it (an
/// image that cannot be pulled, a missing Secret, no node with room), so that it shows in
/// the run's status at once rather than at the start timeout. See: #18.
fn not_starting(pod: &Pod) -> Option<String> {
    const STUCK: [&str; 6] = [
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "ErrImageNeverPull",
    ];
    let status = pod.status.as_ref()?;
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .find(|w| w.reason.as_deref().is_some_and(|r| STUCK.contains(&r)));
    if let Some(w) = waiting {
        let reason = w.reason.clone().unwrap_or_default();
        return Some(match &w.message {
            Some(m) => format!("pod {} {reason}: {m}", pod.name_any()),
            None => format!("pod {} {reason}", pod.name_any()),
        });
    }
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    Some(format!(
        "pod {} {}: {}",
        pod.name_any(),
        unschedulable.reason.as_deref().unwrap_or("not scheduled"),
        unschedulable.message.as_deref().unwrap_or("no node given")
    ))
}

fn job_state(job: &Job) -> (RunnerPhase, Option<String>) {
    let Some(s) = &job.status else {
        return (RunnerPhase::Running, None);
    };
    if s.succeeded.unwrap_or(0) > 0 {
        return (RunnerPhase::Succeeded, None);
    }
    let failed_condition = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True");
    if let Some(c) = failed_condition {
        let why = c
            .message
            .clone()
            .or_else(|| c.reason.clone())
            .unwrap_or_else(|| "its Job failed".into());
        return (RunnerPhase::Failed, Some(why));
    }
    if s.failed.unwrap_or(0) > 0 {
        return (RunnerPhase::Failed, Some("its pod failed".into()));
    }
    (RunnerPhase::Running, None)
}

/// What runner `index`'s failed pod said as it ended: its termination message (the
/// runner writes its error there, or the kubelet keeps the tail of its output), rather than
/// the Job's "backoff limit". See: #18.
async fn termination_message(
    ctx: &Context,
    ns: &str,
    run: &str,
    index: u32,
) -> Result<Option<String>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!(
        "{},{}={index}",
        resources::selector(run, Some("runner")),
        resources::LABEL_RUNNER_INDEX
    );
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .filter(|t| t.exit_code != 0)
        .filter_map(|t| Some(t.message.as_deref()?.trim().to_owned()))
        .find(|m| !m.is_empty()))
}

/// `Running`: follow the Jobs; one failure fails the run, all done → merge and judge.
async fn watch_runners(
    run: &LoadTestRun,
    ctx: &Context,
    mut status: LoadTestRunStatus,
) -> Result<Action> {
    let ns = namespace(run)?;
    let name = run.name_any();
    let n = parallelism(&status);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let list = jobs
        .list(&ListParams::default().labels(&resources::selector(&name, Some("runner"))))
        .await?;
    let by_index: BTreeMap<u32, &Job> = list
        .items
        .iter()
        .filter_map(|j| Some((runner_index(j.labels())?, j)))
        .collect();
    let runners = runner_states(&name, n, |i| match by_index.get(&i) {
        Some(job) => job_state(job),
        None => (
            RunnerPhase::Failed,
            Some("its Job is gone (runner lost)".into()),
        ),
    });
    if let Some(failed) = runners.iter().position(|r| r.phase == RunnerPhase::Failed) {
        let mut runners = runners;
        let index = runners[failed].index;
        if let Some(own) = termination_message(ctx, &ns, &name, index).await? {
            runners[failed].reason = Some(own);
        }
        let reason = format!(
            "runner {index} failed: {}",
            runners[failed].reason.clone().unwrap_or_default()
        );
        status.runners = runners;
        return fail(run, ctx, status, "RunnerFailed", reason).await;
    }
    if runners.iter().all(|r| r.phase == RunnerPhase::Succeeded) {
        status.runners = runners;
        return finish(run, ctx, status).await;
    }
    if status.runners != runners {
        status.runners = runners;
        patch_status(run, ctx, &status).await?;
    }
    Ok(Action::requeue(POLL))
}

/// Every runner succeeded: read their partial results, merge, judge, report.
async fn finish(run: &LoadTestRun, ctx: &Context, mut status: LoadTestRunStatus) -> Result<Action> {
    let ns = namespace(run)?;
    let name = run.name_any();
    let n = parallelism(&status);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let whole = config_maps
        .get_opt(&resources::spec_config_map_name(&name))
        .await?
        .and_then(|cm| cm.data?.remove(WHOLE_SPEC_KEY));
    let plan = match whole
        .ok_or_else(|| {
            format!(
                "ConfigMap {} is gone",
                resources::spec_config_map_name(&name)
            )
        })
        .and_then(|text| {
            serde_saphyr::from_str::<LoadTest>(&text)
                .map_err(|e| format!("the run's spec cannot be read back: {e}"))
        })
        .and_then(|lt| plan_of(run, &lt.spec))
    {
        Ok(plan) => plan,
        Err(reason) => return fail(run, ctx, status, "SpecLost", reason).await,
    };
    let results = config_maps
        .list(&ListParams::default().labels(&resources::selector(&name, Some("result"))))
        .await?;
    let mut partials = Vec::with_capacity(n.get() as usize);
    for i in 0..n.get() {
        let text = results
            .items
            .iter()
            .find(|cm| runner_index(cm.labels()) == Some(i))
            .and_then(|cm| cm.data.as_ref()?.get(PARTIAL_KEY).cloned());
        let Some(text) = text else {
            let reason = format!("runner {i} finished without writing its partial result");
            return fail(run, ctx, status, "ResultMissing", reason).await;
        };
        match Partial::from_json(&text, i) {
            Ok(p) => partials.push(p),
            Err(e) => return fail(run, ctx, status, "ResultUnreadable", e.to_string()).await,
        }
    }
    let merged = match merge_run(&plan, &partials) {
        Ok(m) => m,
        Err(e) => return fail(run, ctx, status, "ResultUnreadable", e.to_string()).await,
    };
    let (verdicts, verdict) = judge_merged(&plan, &merged);
    status.p99 = p99(&merged.stats);
    status.counters = counters(&merged.stats);
    status.thresholds = verdicts;
    status.verdict = Some(verdict);
    let started = status
        .start_time
        .as_ref()
        .map_or_else(|| ctx.clock.now(), |t| t.0);
    let summary = merged_summary(&plan, &merged, started.into(), ctx.clock.now().into());
    let report = report_files(&summary);
    let keys: Vec<String> = report.keys().cloned().collect();
    let directory = match &ctx.config.report_dir {
        Some(dir) => {
            let dir = dir.join(run.namespace().unwrap_or_default()).join(&name);
            match ricochet_reports::write_all(&summary, &dir) {
                Ok(_) => Some(dir.display().to_string()),
                Err(e) => {
                    tracing::warn!(run = %name, error = %e, "cannot write the reports into the report directory");
                    None
                }
            }
        }
        None => None,
    };
    let cm = resources::report_config_map(run, report)?;
    config_maps
        .patch(
            &resources::report_config_map_name(&name),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await?;
    status.report = Some(ReportLocation {
        config_map: resources::report_config_map_name(&name),
        keys,
        directory,
    });
    let at = now(ctx);
    status.completion_time = Some(at.clone());
    // No request of any runner got an answer: the run measured nothing.
    let no_answer = summary
        .run
        .stop_reason
        .clone()
        .filter(|_| summary.run.outcome == ricochet_reports::model::Outcome::Error);
    let passed = verdict == Verdict::Pass && no_answer.is_none();
    let failing: Vec<String> = status
        .thresholds
        .iter()
        .filter(|t| t.verdict != Verdict::Pass)
        .map(|t| match (&t.observed, &t.reason) {
            (Some(v), _) => format!(
                "{} {} is {:?} (observed {v})",
                t.metric, t.condition, t.verdict
            ),
            (None, Some(why)) => format!("{} {} is {:?} ({why})", t.metric, t.condition, t.verdict),
            (None, None) => format!("{} {} is {:?}", t.metric, t.condition, t.verdict),
        })
        .collect();
    let message = if let Some(sentence) = &no_answer {
        format!("{sentence} (all {n} runners)")
    } else if passed {
        format!(
            "all {} thresholds passed on the merged results of {n} runners",
            status.thresholds.len()
        )
    } else {
        format!(
            "thresholds not passed on the merged results: {}",
            failing.join("; ")
        )
    };
    status.phase = Some(if passed {
        RunPhase::Passed
    } else {
        RunPhase::Failed
    });
    status.message = Some(message.clone());
    let reason = match (&no_answer, passed) {
        (Some(_), _) => "NoAnswer",
        (None, true) => "ThresholdsPassed",
        (None, false) => "ThresholdsFailed",
    };
    set_condition(
        &mut status.conditions,
        PASSED,
        passed,
        reason,
        &message,
        &at,
    );
    set_condition(
        &mut status.conditions,
        FAILED,
        !passed,
        reason,
        &message,
        &at,
    );
    set_condition(
        &mut status.conditions,
        FINISHED,
        true,
        reason,
        &message,
        &at,
    );
    patch_status(run, ctx, &status).await?;
    ctx.metrics
        .run_finished(if passed { "pass" } else { "fail" });
    record_last_run(
        run,
        ctx,
        crate::LastRun {
            passed,
            duration_secs: summary.run.duration_secs,
            finished_unix: unix_now(ctx),
            thresholds: summary
                .thresholds
                .iter()
                .map(|t| {
                    let v = match t.verdict {
                        ricochet_reports::model::Verdict::Pass => 1.0,
                        ricochet_reports::model::Verdict::Fail => 0.0,
                        ricochet_reports::model::Verdict::Unknown => -1.0,
                    };
                    (t.metric.clone(), t.expression.clone(), v)
                })
                .collect(),
        },
    );
    let kind = if passed {
        EventType::Normal
    } else {
        EventType::Warning
    };
    event(
        run,
        ctx,
        kind,
        if passed { "Passed" } else { "Failed" },
        message,
    )
    .await?;
    cleanup_runners(run, ctx, passed).await?;
    Ok(ttl_action(ttl_seconds(run, ctx).await?, ctx, &status))
}

/// Keeps `last` as the last finished run of the run's LoadTest (its `loadTestRef`, else
/// the run itself) for the operator's `/metrics`.
fn record_last_run(run: &LoadTestRun, ctx: &Context, last: crate::LastRun) {
    let loadtest = run
        .spec
        .load_test_ref
        .as_ref()
        .map_or_else(|| run.name_any(), |r| r.name.clone());
    ctx.metrics
        .last_run(&run.namespace().unwrap_or_default(), &loadtest, last);
}

/// Seconds since the Unix epoch by the context's clock.
fn unix_now(ctx: &Context) -> f64 {
    ctx.clock.now().as_millisecond() as f64 / 1000.0
}

/// The run failed with `reason` (a sentence): status, conditions, Event, cleanup.
async fn fail(
    run: &LoadTestRun,
    ctx: &Context,
    mut status: LoadTestRunStatus,
    code: &str,
    reason: String,
) -> Result<Action> {
    let at = now(ctx);
    status.phase = Some(RunPhase::Failed);
    status.verdict = Some(Verdict::Unknown);
    status.message = Some(reason.clone());
    status.completion_time = Some(at.clone());
    status.observed_generation = run.metadata.generation;
    set_condition(&mut status.conditions, FAILED, true, code, &reason, &at);
    set_condition(&mut status.conditions, PASSED, false, code, &reason, &at);
    set_condition(&mut status.conditions, FINISHED, true, code, &reason, &at);
    patch_status(run, ctx, &status).await?;
    ctx.metrics.run_finished("error");
    record_last_run(
        run,
        ctx,
        crate::LastRun {
            passed: false,
            duration_secs: 0.0,
            finished_unix: unix_now(ctx),
            thresholds: Vec::new(),
        },
    );
    event(run, ctx, EventType::Warning, code, reason).await?;
    if status.parallelism.is_some() {
        cleanup_runners(run, ctx, false).await?;
    }
    Ok(ttl_action(ttl_seconds(run, ctx).await?, ctx, &status))
}

/// Deletes the run's runner Jobs (and so their pods), unless the run failed and its
/// LoadTest keeps resources on failure.
async fn cleanup_runners(run: &LoadTestRun, ctx: &Context, passed: bool) -> Result<()> {
    let keep = keep_on_failure(run, ctx).await?;
    if !passed && keep {
        return Ok(());
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace(run)?);
    jobs.delete_collection(
        &DeleteParams::foreground(),
        &ListParams::default().labels(&resources::selector(&run.name_any(), Some("runner"))),
    )
    .await?;
    Ok(())
}

async fn cleanup_policy(
    run: &LoadTestRun,
    ctx: &Context,
) -> Result<Option<ricochet_crds::CleanupPolicy>> {
    if let Some(spec) = &run.spec.spec {
        return Ok(spec.cleanup.clone());
    }
    match &run.spec.load_test_ref {
        Some(r) => {
            let api: Api<LoadTest> = Api::namespaced(ctx.client.clone(), &namespace(run)?);
            Ok(api.get_opt(&r.name).await?.and_then(|lt| lt.spec.cleanup))
        }
        None => Ok(None),
    }
}

async fn keep_on_failure(run: &LoadTestRun, ctx: &Context) -> Result<bool> {
    Ok(cleanup_policy(run, ctx)
        .await?
        .is_some_and(|c| c.keep_on_failure))
}

/// `cleanup.ttlSecondsAfterFinished` of the run: its inline spec, the annotation a
/// schedule sets, or the referenced LoadTest.
async fn ttl_seconds(run: &LoadTestRun, ctx: &Context) -> Result<Option<u32>> {
    if let Some(spec) = &run.spec.spec {
        return Ok(spec
            .cleanup
            .as_ref()
            .and_then(|c| c.ttl_seconds_after_finished));
    }
    if let Some(ttl) = run
        .annotations()
        .get("ricochet.dev/ttl-seconds-after-finished")
        .and_then(|v| v.parse().ok())
    {
        return Ok(Some(ttl));
    }
    Ok(cleanup_policy(run, ctx)
        .await?
        .and_then(|c| c.ttl_seconds_after_finished))
}

fn ttl_action(ttl: Option<u32>, ctx: &Context, status: &LoadTestRunStatus) -> Action {
    match (ttl, &status.completion_time) {
        (Some(ttl), Some(done)) => {
            let due = done.0 + SignedDuration::from_secs(i64::from(ttl));
            let left = due.duration_since(ctx.clock.now());
            Action::requeue(Duration::try_from(left).unwrap_or(Duration::ZERO))
        }
        _ => Action::await_change(),
    }
}

/// A finished run: delete it (foreground) once its TTL has passed.
async fn expire(run: &LoadTestRun, ctx: &Context, status: &LoadTestRunStatus) -> Result<Action> {
    let Some(done) = &status.completion_time else {
        return Ok(Action::await_change());
    };
    let Some(ttl) = ttl_seconds(run, ctx).await? else {
        return Ok(Action::await_change());
    };
    let due: Timestamp = done.0 + SignedDuration::from_secs(i64::from(ttl));
    if ctx.clock.now() < due {
        return Ok(ttl_action(Some(ttl), ctx, status));
    }
    let api: Api<LoadTestRun> = Api::namespaced(ctx.client.clone(), &namespace(run)?);
    api.delete(&run.name_any(), &DeleteParams::foreground())
        .await?;
    Ok(Action::await_change())
}

/// The run's reports for its ConfigMap: `summary.json` (schema version 1, as `loadgen
/// report` and `loadgen compare` read it), `report.md` and `junit.xml`, each bounded to
/// 256 KiB (a ConfigMap holds at most 1 MiB).
pub fn report_files(summary: &ricochet_reports::model::Summary) -> BTreeMap<String, String> {
    use ricochet_reports::Format;
    let bound = |mut s: String| {
        if s.len() > MAX_REPORT_BYTES {
            let mut cut = MAX_REPORT_BYTES;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("\n… truncated\n");
        }
        s
    };
    BTreeMap::from([
        (
            "summary.json".to_owned(),
            // Truncated JSON would not parse: fall back to the compact form first.
            match ricochet_reports::render(summary, Format::Json) {
                pretty if pretty.len() <= MAX_REPORT_BYTES => pretty,
                _ => bound(serde_json::to_string(summary).unwrap_or_default()),
            },
        ),
        (
            "report.md".to_owned(),
            bound(ricochet_reports::render(summary, Format::Markdown)),
        ),
        (
            "junit.xml".to_owned(),
            bound(ricochet_reports::render(summary, Format::Junit)),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::test_run;
    use ricochet_crds::LoadTestRunSpec;

    fn with_body_file(file: &str, config_map: Option<&str>) -> LoadTestSpec {
        let runner = config_map
            .map(|c| format!("runner: {{bodyFilesConfigMap: {c}}}\n"))
            .unwrap_or_default();
        serde_saphyr::from_str(&format!(
            "target: {{url: 'http://echo:8080'}}\nscenarios:\n- {{name: api, executor: constant-arrival-rate, rate: 10, duration: 1m, requests: [{{name: post, method: POST, path: /api/x, bodyFile: '{file}'}}]}}\n{runner}"
        ))
        .unwrap()
    }

    fn check(spec: &LoadTestSpec) -> std::result::Result<Plan, String> {
        let run = test_run(
            "r1",
            LoadTestRunSpec {
                load_test_ref: None,
                spec: Some(Box::new(spec.clone())),
                overrides: None,
            },
        );
        plan_of(&run, spec)
    }

    #[test]
    fn body_files_come_from_the_named_config_map_and_never_from_the_operators_disk() {
        // Named: checked for shape only; the file exists only in the runners' mount.
        let plan = check(&with_body_file("order.json", Some("bodies"))).unwrap();
        assert_eq!(plan.scenarios[0].requests[0].body, "", "nothing read here");

        assert_eq!(
            check(&with_body_file("order.json", None)).unwrap_err(),
            "spec.scenarios[0].requests[0].bodyFile: `order.json` cannot be read in a cluster without `spec.runner.bodyFilesConfigMap`: create a ConfigMap holding it (`kubectl create configmap NAME --from-file=order.json`) and name it there, or give the body inline with `body`"
        );
        let token = "/var/run/secrets/kubernetes.io/serviceaccount/token";
        let e = check(&with_body_file(token, Some("bodies"))).unwrap_err();
        assert!(e.contains("is an absolute path"), "{e}");
        let e = check(&with_body_file("../spec/loadtest.yaml", Some("bodies"))).unwrap_err();
        assert!(e.contains("goes up a folder"), "{e}");
        assert_eq!(
            check(&with_body_file("data/order.json", Some("bodies"))).unwrap_err(),
            "spec.scenarios[0].requests[0].bodyFile: `data/order.json` names a folder, but in a cluster body files are the keys of `spec.runner.bodyFilesConfigMap`, which have none: name the file alone"
        );
    }
}
