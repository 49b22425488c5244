//! The runner pod's side of the protocol with the operator: wait at the start barrier,
//! then (after running its part) write its partial result to the ConfigMap it owns.
//!
//! What is missing for `loadgen runner` is the glue in between: the engine's
//! [`crate::run::execute`] returns a summary, not its merged [`crate::stats::Stats`], which
//! [`Partial::from_stats`] needs.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use super::partial::Partial;
use super::resources::{LABEL_PART, LABEL_RUN, LABEL_RUNNER_INDEX, PARTIAL_KEY, START_AT_KEY};
use super::{Error, Result};

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

#[cfg(test)]
mod tests {
    //! Against the MOCK API server of `fixtures` (no cluster).

    use super::*;
    use crate::operator::Context;
    use crate::operator::fixtures::FixedClock;
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
            version: crate::operator::partial::PARTIAL_VERSION,
            runner: 2,
            elapsed_seconds: 60.0,
            series: vec![],
            scenarios: vec![],
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
}
