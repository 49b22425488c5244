//! Gates outside the operator's own loop: a `LoadTestRun` made from a `LoadTest` on
//! behalf of a deployment tool, and `loadgen gate` (Argo Rollouts' Job provider), which
//! creates or reuses such a run, waits for its verdict and exits with it.
//!
//! Runs made here carry the LoadTest's spec inline (a snapshot, optionally against another
//! `target.url`, without its schedule), are owned by the LoadTest without being controlled
//! by it (deleting the LoadTest deletes them; the schedule controller does not count them),
//! and are labelled `ricochet.dev/gate=<tool>`. Their name is chosen by the caller so that
//! a retried call finds the run the first one created.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use ricochet_crds::{LoadTest, LoadTestRun, LoadTestRunSpec, RunPhase, Verdict};

/// Label on every run made for a gate; its value names the tool (`flagger`, `gate`).
pub const LABEL_GATE: &str = "ricochet.dev/gate";

/// The run `name` of LoadTest `lt`: its spec inline with `target.url` replaced by `target`
/// (and the target's `replicas`, which name the LoadTest's own target, dropped), the
/// schedule dropped.
pub fn run_from_load_test(
    lt: &LoadTest,
    name: &str,
    target: Option<&str>,
    tool: &str,
    annotations: BTreeMap<String, String>,
) -> Result<LoadTestRun, String> {
    let uid = lt
        .uid()
        .ok_or_else(|| format!("LoadTest `{}` has no metadata.uid", lt.name_any()))?;
    let mut spec = lt.spec.clone();
    if let Some(url) = target {
        spec.target = Some(match spec.target.take() {
            Some(t) => ricochet_crds::Target {
                url: url.to_owned(),
                replicas: Vec::new(),
                ..t
            },
            // Every other field at its default, whatever fields `Target` grows.
            None => serde_json::from_value(serde_json::json!({ "url": url }))
                .map_err(|e| format!("cannot make a target of `{url}`: {e}"))?,
        });
    }
    spec.schedule = None;
    spec.suspend = false;
    spec.concurrency_policy = None;
    spec.successful_runs_history_limit = None;
    spec.failed_runs_history_limit = None;
    let owner = OwnerReference {
        api_version: LoadTest::api_version(&()).into_owned(),
        kind: LoadTest::kind(&()).into_owned(),
        name: lt.name_any(),
        uid,
        controller: None,
        block_owner_deletion: None,
    };
    Ok(LoadTestRun {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: lt.namespace(),
            labels: Some(BTreeMap::from([(LABEL_GATE.to_owned(), tool.to_owned())])),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: LoadTestRunSpec {
            load_test_ref: None,
            spec: Some(Box::new(spec)),
            overrides: None,
        },
        status: None,
    })
}

/// Why a run failed: its message and every threshold that did not pass, with the value
/// observed.
pub fn failure(run: &LoadTestRun) -> String {
    let status = run.status.clone().unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(m) = &status.message {
        parts.push(m.clone());
    }
    for t in status
        .thresholds
        .iter()
        .filter(|t| t.verdict != Verdict::Pass)
    {
        let seen = t
            .observed
            .clone()
            .or_else(|| t.reason.clone())
            .unwrap_or_else(|| "no value".into());
        parts.push(format!(
            "{} {}: {seen} ({:?})",
            t.metric, t.condition, t.verdict
        ));
    }
    if parts.is_empty() {
        parts.push("no reason given".into());
    }
    parts.join("; ")
}

/// What `loadgen gate` runs.
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// Namespace of the LoadTest and of the run.
    pub namespace: String,
    /// The LoadTest.
    pub load_test: String,
    /// The run's name: the same name finds the same run (retries, a re-created Job).
    pub run: String,
    /// Replaces the LoadTest's `target.url`.
    pub target: Option<String>,
    /// Time between two looks at the run.
    pub poll: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

/// A finished run's verdict, with a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateOutcome {
    /// The run passed.
    Passed(String),
    /// The run failed: why.
    Failed(String),
}

/// Why `loadgen gate` has no verdict.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The LoadTest does not exist.
    #[error("LoadTest `{load_test}` does not exist in namespace `{namespace}`")]
    NoLoadTest {
        /// Its namespace.
        namespace: String,
        /// Its name.
        load_test: String,
    },
    /// A run of that name exists but runs another LoadTest.
    #[error(
        "LoadTestRun {namespace}/{run} exists but was not made from LoadTest `{load_test}`: choose another --run"
    )]
    NotOurs {
        /// Its namespace.
        namespace: String,
        /// Its name.
        run: String,
        /// The LoadTest asked for.
        load_test: String,
    },
    /// The run did not finish in time.
    #[error("LoadTestRun {namespace}/{run} is still {phase} after {timeout:?} (--timeout)")]
    Timeout {
        /// Its namespace.
        namespace: String,
        /// Its name.
        run: String,
        /// Where it was.
        phase: String,
        /// The limit.
        timeout: Duration,
    },
    /// The LoadTest cannot be made into a run.
    #[error("cannot make a run of LoadTest `{0}`: {1}")]
    Render(String, String),
    /// An API call failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Annotation naming the LoadTest a gate run was made from.
const ANNOTATION_LOAD_TEST: &str = "ricochet.dev/gate-load-test";

/// Creates (or finds, by name) the run of `opts`, waits until it finished and returns its
/// verdict.
pub async fn gate(client: &Client, opts: &GateOptions) -> Result<GateOutcome, GateError> {
    let ns = &opts.namespace;
    let tests: Api<LoadTest> = Api::namespaced(client.clone(), ns);
    let runs: Api<LoadTestRun> = Api::namespaced(client.clone(), ns);
    let lt = tests
        .get_opt(&opts.load_test)
        .await?
        .ok_or_else(|| GateError::NoLoadTest {
            namespace: ns.clone(),
            load_test: opts.load_test.clone(),
        })?;
    let mut run = match runs.get_opt(&opts.run).await? {
        Some(run) => run,
        None => {
            let annotations =
                BTreeMap::from([(ANNOTATION_LOAD_TEST.to_owned(), opts.load_test.clone())]);
            let run =
                run_from_load_test(&lt, &opts.run, opts.target.as_deref(), "gate", annotations)
                    .map_err(|e| GateError::Render(opts.load_test.clone(), e))?;
            match runs.create(&PostParams::default(), &run).await {
                Ok(run) => run,
                Err(kube::Error::Api(e)) if e.code == 409 => runs.get(&opts.run).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    if run.annotations().get(ANNOTATION_LOAD_TEST) != Some(&opts.load_test) {
        return Err(GateError::NotOurs {
            namespace: ns.clone(),
            run: opts.run.clone(),
            load_test: opts.load_test.clone(),
        });
    }
    let deadline = tokio::time::Instant::now() + opts.timeout;
    loop {
        let phase = run.status.as_ref().and_then(|s| s.phase);
        match phase {
            Some(RunPhase::Passed) => {
                return Ok(GateOutcome::Passed(format!(
                    "LoadTestRun {ns}/{} passed",
                    opts.run
                )));
            }
            Some(RunPhase::Failed) => {
                return Ok(GateOutcome::Failed(format!(
                    "LoadTestRun {ns}/{} failed: {}",
                    opts.run,
                    failure(&run)
                )));
            }
            _ => {}
        }
        if tokio::time::Instant::now() + opts.poll > deadline {
            return Err(GateError::Timeout {
                namespace: ns.clone(),
                run: opts.run.clone(),
                phase: phase.map_or("not started".into(), |p| format!("{p:?}")),
                timeout: opts.timeout,
            });
        }
        tokio::time::sleep(opts.poll).await;
        run = runs.get(&opts.run).await?;
    }
}

/// [`gate`] with the in-cluster (or kubeconfig) client.
pub async fn gate_in_cluster(opts: &GateOptions) -> Result<GateOutcome, GateError> {
    let client = Client::try_default().await?;
    gate(&client, opts).await
}

#[cfg(test)]
mod tests {
    //! Every test here talks to the MOCK API server of `fixtures.rs`
    //! (`tower_test::mock::pair`), never to a cluster.

    use std::sync::{Arc, Mutex};

    use http::Method;
    use ricochet_crds::{LoadTestRunStatus, LoadTestSpec, ThresholdVerdict};
    use serde_json::{Value, json};

    use super::*;
    use crate::fixtures::{mock, not_found, test_load_test};

    const LT: &str = "/apis/ricochet.dev/v1alpha1/namespaces/ricochet/loadtests/podinfo-canary";
    const RUN: &str = "/apis/ricochet.dev/v1alpha1/namespaces/ricochet/loadtestruns/podinfo-7d9f";
    const RUNS: &str = "/apis/ricochet.dev/v1alpha1/namespaces/ricochet/loadtestruns";

    fn opts(timeout: Duration) -> GateOptions {
        GateOptions {
            namespace: "ricochet".into(),
            load_test: "podinfo-canary".into(),
            run: "podinfo-7d9f".into(),
            target: Some("http://podinfo-canary.test:9898".into()),
            poll: Duration::from_millis(5),
            timeout,
        }
    }

    fn load_test() -> Value {
        let spec: LoadTestSpec = serde_saphyr::from_str(
            "target: {url: 'http://podinfo.test:9898'}\nscenarios:\n  - {name: api, executor: constant-arrival-rate, rate: 10, duration: 1m, requests: [{name: root, path: /}]}\nthresholds:\n  http_req_duration: ['p(99)<500ms']\n",
        )
        .unwrap();
        serde_json::to_value(test_load_test("podinfo-canary", spec)).unwrap()
    }

    /// The run `gate` creates, in `phase`.
    fn run(phase: Option<RunPhase>) -> Value {
        let lt: LoadTest = serde_json::from_value(load_test()).unwrap();
        let annotations =
            BTreeMap::from([(ANNOTATION_LOAD_TEST.to_owned(), "podinfo-canary".to_owned())]);
        let mut run = run_from_load_test(&lt, "podinfo-7d9f", None, "gate", annotations).unwrap();
        run.status = phase.map(|phase| LoadTestRunStatus {
            phase: Some(phase),
            message: (phase == RunPhase::Failed).then(|| "a threshold failed".to_owned()),
            thresholds: vec![ThresholdVerdict {
                metric: "http_req_duration".into(),
                condition: "p(99)<500ms".into(),
                verdict: if phase == RunPhase::Failed {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                },
                observed: Some("812ms".into()),
                reason: None,
            }],
            ..LoadTestRunStatus::default()
        });
        serde_json::to_value(run).unwrap()
    }

    #[tokio::test]
    async fn gate_creates_the_run_against_the_target_and_waits_for_its_verdict() {
        let (client, mut server) = mock();
        let created = Arc::new(Mutex::new(Value::Null));
        let seen = Arc::clone(&created);
        let script = tokio::spawn(async move {
            server.expect(Method::GET, LT, |_| load_test()).await;
            let (req, send) = server.next_raw().await;
            assert_eq!(req.uri().path(), RUN);
            send.send_response(not_found());
            let s = server.expect(Method::POST, RUNS, |b| b.clone()).await;
            *seen.lock().unwrap() = s.body;
            server
                .expect(Method::GET, RUN, |_| run(Some(RunPhase::Pending)))
                .await;
            server
                .expect(Method::GET, RUN, |_| run(Some(RunPhase::Running)))
                .await;
            server
                .expect(Method::GET, RUN, |_| run(Some(RunPhase::Passed)))
                .await;
        });
        let outcome = tokio::time::timeout(
            Duration::from_secs(1),
            gate(&client, &opts(Duration::from_secs(5))),
        )
        .await
        .expect("in time")
        .unwrap();
        script.await.expect("the API calls were the expected ones");
        assert_eq!(
            outcome,
            GateOutcome::Passed("LoadTestRun ricochet/podinfo-7d9f passed".into())
        );
        let body = created.lock().unwrap().clone();
        assert_eq!(
            body["spec"]["spec"]["target"]["url"],
            "http://podinfo-canary.test:9898"
        );
        assert_eq!(body["metadata"]["labels"][LABEL_GATE], "gate");
    }

    #[tokio::test]
    async fn gate_reuses_a_failed_run_and_says_which_thresholds_failed() {
        let (client, mut server) = mock();
        let script = tokio::spawn(async move {
            server.expect(Method::GET, LT, |_| load_test()).await;
            server
                .expect(Method::GET, RUN, |_| run(Some(RunPhase::Failed)))
                .await;
        });
        let outcome = gate(&client, &opts(Duration::from_secs(5))).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), script)
            .await
            .expect("timeout on mock apiserver")
            .expect("the API calls were the expected ones");
        assert_eq!(
            outcome,
            GateOutcome::Failed(
                "LoadTestRun ricochet/podinfo-7d9f failed: a threshold failed; http_req_duration p(99)<500ms: 812ms (Fail)".into()
            )
        );
    }

    #[tokio::test]
    async fn gate_gives_up_after_its_timeout_naming_the_phase() {
        let (client, mut server) = mock();
        let script = tokio::spawn(async move {
            server.expect(Method::GET, LT, |_| load_test()).await;
            loop {
                server
                    .expect(Method::GET, RUN, |_| run(Some(RunPhase::Running)))
                    .await;
            }
        });
        let err = tokio::time::timeout(
            Duration::from_secs(1),
            gate(&client, &opts(Duration::from_millis(50))),
        )
        .await
        .expect("in time")
        .unwrap_err();
        script.abort();
        assert!(
            err.to_string()
                .starts_with("LoadTestRun ricochet/podinfo-7d9f is still Running after 50ms"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn gate_refuses_an_unknown_load_test_and_a_run_of_another() {
        let (client, mut server) = mock();
        let script = tokio::spawn(async move {
            let (_, send) = server.next_raw().await;
            send.send_response(not_found());
        });
        let err = gate(&client, &opts(Duration::from_secs(5)))
            .await
            .unwrap_err();
        script.await.unwrap();
        assert_eq!(
            err.to_string(),
            "LoadTest `podinfo-canary` does not exist in namespace `ricochet`"
        );
        let (client, mut server) = mock();
        let script = tokio::spawn(async move {
            server.expect(Method::GET, LT, |_| load_test()).await;
            let mut other = run(Some(RunPhase::Passed));
            other["metadata"]["annotations"][ANNOTATION_LOAD_TEST] = json!("nightly");
            server.expect(Method::GET, RUN, |_| other).await;
        });
        let err = gate(&client, &opts(Duration::from_secs(5)))
            .await
            .unwrap_err();
        script.await.unwrap();
        assert!(matches!(err, GateError::NotOurs { .. }), "{err}");
    }
}
