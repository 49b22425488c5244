//! The runner pod's side of the protocol with the operator: wait at the start barrier,
//! run its part of the plan with the engine, and write its partial result (exact
//! histograms, counters, telemetry tallies) to the ConfigMap it owns ([`run_part`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use ricochet_engine::Exit;
use ricochet_engine::plan::Plan;
use ricochet_engine::progress::ProgressSink;
use ricochet_engine::run::{RunOptions, Stopper, execute};

use crate::partial::{
    MAX_PARTIAL_BYTES, Partial, PartialPlatform, PartialTelemetry, PartialWindow,
};
use crate::resources::{LABEL_PART, LABEL_RUN, LABEL_RUNNER_INDEX, PARTIAL_KEY, START_AT_KEY};
use crate::{Error, Result};

/// One runner's part of a run, as `loadgen runner` is told it.
#[derive(Clone, Debug, Default)]
pub struct RunnerOptions {
    /// This runner's index, 0-based.
    pub index: u32,
    /// Number of runners of the run.
    pub runners: u32,
    /// The LoadTestRun (in cluster; its uid comes from `RICOCHET_RUN_UID`).
    pub run: Option<String>,
    /// In cluster: the start barrier's ConfigMap.
    pub start_config_map: Option<String>,
    /// In cluster: the ConfigMap the partial result is written into.
    pub result_config_map: Option<String>,
    /// Locally: the instant to start at.
    pub start_at: Option<Timestamp>,
    /// Locally: the file the partial result (JSON) is written to.
    pub result_file: Option<PathBuf>,
}

/// Field manager of the runner's writes.
pub const RUNNER_MANAGER: &str = "ricochet-runner";

/// Polls for the start-barrier ConfigMap every `poll` until it exists (at most `patience`),
/// and returns the instant all runners start at.
pub async fn wait_for_start(
    client: Client,
    namespace: &str,
    config_map: &str,
    poll: Duration,
    patience: Duration,
) -> Result<Timestamp> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(cm) = api.get_opt(config_map).await? {
            let text = cm
                .data
                .as_ref()
                .and_then(|d| d.get(START_AT_KEY))
                .ok_or_else(|| Error::MissingField(config_map.to_owned(), "data.startAt"))?;
            return text.parse::<Timestamp>().map_err(|e| {
                Error::Render(
                    format!("{config_map}.data.startAt"),
                    format!("`{text}` is not an RFC 3339 instant: {e}"),
                )
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Startup(format!(
                "the start barrier ConfigMap {namespace}/{config_map} did not appear within {}s",
                patience.as_secs()
            )));
        }
        tokio::time::sleep(poll).await;
    }
}

/// The ConfigMap holding runner `index`'s partial result, owned by the run (so it goes
/// with it), labelled for the operator's list.
pub fn result_config_map(
    name: &str,
    run: &str,
    run_uid: &str,
    index: u32,
    partial: &Partial,
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([
                (LABEL_RUN.to_owned(), run.to_owned()),
                (LABEL_PART.to_owned(), "result".to_owned()),
                (LABEL_RUNNER_INDEX.to_owned(), index.to_string()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: ricochet_crds::API_VERSION.to_owned(),
                kind: ricochet_crds::RUN_KIND.to_owned(),
                name: run.to_owned(),
                uid: run_uid.to_owned(),
                controller: Some(false),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            PARTIAL_KEY.to_owned(),
            partial.to_json(),
        )])),
        ..ConfigMap::default()
    }
}

/// Writes (server-side applies) the partial-result ConfigMap.
pub async fn write_result(client: Client, namespace: &str, cm: &ConfigMap) -> Result<()> {
    let name = cm
        .metadata
        .name
        .clone()
        .ok_or_else(|| Error::MissingField("result ConfigMap".into(), "metadata.name"))?;
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    api.patch(
        &name,
        &PatchParams::apply(RUNNER_MANAGER).force(),
        &Patch::Apply(cm),
    )
    .await?;
    Ok(())
}

/// Where the kubelet reads a container's termination message from.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// Writes `message` as the container's termination message (the kubelet keeps at most
/// 4 KiB), so that the operator can put the runner's own error in the run's status instead
/// of the Job's "backoff limit". A failure to write is logged, never raised: the error
/// being reported matters more. See: #18.
pub fn write_termination_message(path: &std::path::Path, message: &str) {
    let mut cut = message.len().min(4000);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    if let Err(e) = std::fs::write(path, &message[..cut]) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the termination message");
    }
}

/// Runs one runner's part of a run: waits at the start barrier (in cluster) or until
/// `start_at`, runs `plan` (the runner's segment of the whole plan, [`Plan::segment`]),
/// and writes the partial result to its ConfigMap or file. In a cluster, an error is also
/// written to [`TERMINATION_LOG`] for the operator to read.
pub async fn run_part(
    args: &RunnerOptions,
    plan: &Plan,
    progress: Arc<dyn ProgressSink>,
) -> Result<()> {
    let result = run_part_here(args, plan, progress).await;
    if let Err(e) = &result
        && args.run.is_some()
    {
        write_termination_message(std::path::Path::new(TERMINATION_LOG), &e.to_string());
    }
    result
}

async fn run_part_here(
    args: &RunnerOptions,
    plan: &Plan,
    progress: Arc<dyn ProgressSink>,
) -> Result<()> {
    tracing::info!(
        runner = args.index,
        runners = args.runners,
        run = args.run.as_deref().unwrap_or("-"),
        "runner starting"
    );
    let cluster = match &args.run {
        Some(run) => {
            let client = Client::try_default().await?;
            let namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
            Some((client, namespace, run.clone()))
        }
        None => None,
    };
    let start_at = match (&cluster, &args.start_config_map) {
        (Some((client, ns, _)), Some(cm)) => Some(
            wait_for_start(
                client.clone(),
                ns,
                cm,
                Duration::from_secs(1),
                Duration::from_secs(3600),
            )
            .await?,
        ),
        _ => args.start_at,
    };
    if let Some(at) = start_at {
        tracing::info!(start_at = %at, "start barrier passed");
        let wait = at.duration_since(Timestamp::now());
        if let Ok(wait) = Duration::try_from(wait) {
            tokio::time::sleep(wait).await;
        }
    }
    let stopper = Arc::new(Stopper::new());
    let opts = RunOptions {
        keep_windows: true,
        progress,
        // The runners of one LoadTestRun push under its name, each with its index.
        testid: args.run.clone(),
        runner: Some(args.index),
        ..RunOptions::default()
    };
    let report = execute(plan, &opts, stopper)
        .await
        .map_err(|e| Error::Startup(e.to_string()))?;
    tracing::info!(
        requests = report.stats.series.values().map(|s| s.requests).sum::<u64>(),
        elapsed_secs = report.elapsed_secs,
        verdict = ?report.exit,
        message = report.message.as_deref().unwrap_or(""),
        "runner's part done (the run's verdict is the operator's, on the merged results)"
    );
    if report.exit == Exit::RunFailed {
        return Err(Error::Startup(
            report
                .message
                .unwrap_or_else(|| "the run could not be carried out".into()),
        ));
    }
    let mut partial = Partial::from_stats(&report.stats, plan, args.index, report.elapsed_secs)
        .map_err(|e| Error::Render("the partial result".into(), e.to_string()))?;
    partial.windows = PartialWindow::from_closed(plan, &report.windows)
        .map_err(|e| Error::Render("the partial windows".into(), e.to_string()))?;
    if let (Some(observed), Some(summary)) = (&report.platform, &report.summary.platform) {
        partial.platform = Some(PartialPlatform::judge(
            plan,
            observed,
            summary.clone(),
            report.elapsed_secs,
        ));
    }
    if partial.to_json().len() > MAX_PARTIAL_BYTES
        && let Some(p) = partial.platform.as_mut()
    {
        tracing::warn!(
            "the query series do not fit the result ConfigMap; their charts are left out"
        );
        p.without_points();
    }
    if partial.to_json().len() > MAX_PARTIAL_BYTES {
        tracing::warn!(
            windows = partial.windows.len(),
            "the per-window data does not fit the result ConfigMap; windowed thresholds will be unknown"
        );
        partial.windows.clear();
        partial.windows_omitted = true;
    }
    if let Some(t) = &report.summary.telemetry {
        partial.exporter = t.exporter.clone();
        partial.exporter_source = t.exporter_source.clone();
    }
    partial.telemetry = report
        .telemetry
        .as_ref()
        .map(PartialTelemetry::from_results)
        .transpose()
        .map_err(|e| Error::Render("the partial telemetry result".into(), e.to_string()))?;
    match (cluster, &args.result_config_map, &args.result_file) {
        (Some((client, ns, run)), Some(name), _) => {
            let uid = std::env::var("RICOCHET_RUN_UID").unwrap_or_default();
            let cm = result_config_map(name, &run, &uid, args.index, &partial);
            write_result(client, &ns, &cm).await?;
            tracing::info!(config_map = %name, "partial result written");
            Ok(())
        }
        (_, _, Some(file)) => {
            std::fs::write(file, partial.to_json())
                .map_err(|e| Error::Render(file.display().to_string(), e.to_string()))?;
            tracing::info!(file = %file.display(), "partial result written");
            Ok(())
        }
        _ => Err(Error::Startup(
            "no --result-file or --result-config-map to write the partial result to".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    //! Against the MOCK API server of `fixtures` (no cluster).

    use super::*;
    use crate::Context;
    use crate::fixtures::FixedClock;
    use http::Method;
    use serde_json::json;

    #[tokio::test]
    async fn a_runner_waits_until_the_barrier_config_map_exists() {
        let (ctx, mut server) = Context::test(FixedClock::at("2026-11-21T02:00:00Z"));
        let mock = tokio::spawn(async move {
            let path = "/api/v1/namespaces/ricochet/configmaps/r1-start";
            let (request, send) = server.next_raw().await;
            assert_eq!(request.uri().path(), path);
            send.send_response(
                http::Response::builder()
                    .status(404)
                    .body(kube::client::Body::from(
                        serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})).unwrap(),
                    ))
                    .unwrap(),
            );
            server
                .expect(Method::GET, path, |_| {
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r1-start"}, "data": {"startAt": "2026-11-21T02:00:40Z"}})
                })
                .await;
        });
        let at = wait_for_start(
            ctx.client.clone(),
            "ricochet",
            "r1-start",
            Duration::from_millis(10),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        mock.await.unwrap();
        assert_eq!(at.to_string(), "2026-11-21T02:00:40Z");
    }

    #[tokio::test]
    async fn a_runner_writes_its_partial_result_into_a_config_map_the_run_owns() {
        let (ctx, mut server) = Context::test(FixedClock::at("2026-11-21T02:00:00Z"));
        let partial = Partial {
            version: crate::partial::PARTIAL_VERSION,
            runner: 2,
            elapsed_seconds: 60.0,
            series: vec![],
            scenarios: vec![],
            telemetry: None,
            windows: vec![],
            windows_omitted: false,
            exporter: vec![],
            exporter_source: None,
            platform: None,
        };
        let cm = result_config_map("r1-result-2", "r1", "uid-r1", 2, &partial);
        let mock = tokio::spawn(async move {
            server
                .expect(
                    Method::PATCH,
                    "/api/v1/namespaces/ricochet/configmaps/r1-result-2",
                    |b| b.clone(),
                )
                .await
        });
        write_result(ctx.client.clone(), "ricochet", &cm)
            .await
            .unwrap();
        let seen = mock.await.unwrap();
        assert!(
            seen.uri.contains("fieldManager=ricochet-runner"),
            "{}",
            seen.uri
        );
        let meta = &seen.body["metadata"];
        assert_eq!(meta["labels"]["ricochet.dev/part"], "result");
        assert_eq!(meta["labels"]["ricochet.dev/runner-index"], "2");
        assert_eq!(meta["ownerReferences"][0]["kind"], "LoadTestRun");
        assert_eq!(meta["ownerReferences"][0]["uid"], "uid-r1");
        let back =
            Partial::from_json(seen.body["data"]["partial.json"].as_str().unwrap(), 2).unwrap();
        assert_eq!(back, partial);
    }

    // See: #18: the runner's error showed only in its output; the run said "Job has
    // reached the specified backoff limit".
    #[test]
    fn a_runner_error_becomes_its_termination_message_within_the_kubelets_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("termination-log");
        write_termination_message(&path, "cannot reach the target http://echo:8080");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "cannot reach the target http://echo:8080"
        );
        // The kubelet keeps 4 KiB: cut below it, on a character boundary.
        let long = "é".repeat(3000);
        write_termination_message(&path, &long);
        let kept = std::fs::read_to_string(&path).unwrap();
        assert_eq!(kept.len(), 4000);
        assert!(long.starts_with(&kept));
    }
}
