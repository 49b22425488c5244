//! Reconciler tests against a MOCK API server: `tower_test::mock::pair` stands in for the
//! Kubernetes API; an [`ApiServerVerifier`] plays one [`Scenario`] — the exact sequence of
//! API calls a reconcile is expected to make — asserting each request and answering it,
//! and the test awaits it under a timeout (the controller-rs `fixtures.rs` pattern).
//! No cluster is involved.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use ricochet_crds::{
    LoadTest, LoadTestRun, LoadTestRunSpec, LoadTestRunStatus, LoadTestSpec, RunPhase, RunnerPhase,
    RunnerStatus,
};
use serde_json::{Value, json};

use super::{Clock, Context, Metrics, OperatorConfig};

type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Answers and checks the requests of one reconcile.
pub struct ApiServerVerifier(ApiServerHandle);

/// A clock the test sets.
pub struct FixedClock(Mutex<Timestamp>);

impl FixedClock {
    /// A clock at `t`.
    pub fn at(t: &str) -> Arc<Self> {
        Arc::new(Self(Mutex::new(t.parse().unwrap())))
    }

    /// Moves the clock to `t`.
    pub fn set(&self, t: &str) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = t.parse().unwrap();
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Context {
    /// A context whose client talks to a mock API server, at a fixed time.
    pub fn test(clock: Arc<FixedClock>) -> (Arc<Context>, ApiServerVerifier) {
        Self::test_with(
            clock,
            OperatorConfig {
                runner_image: "ricochet/loadgen:test".into(),
                ..OperatorConfig::default()
            },
        )
    }

    /// Like [`Context::test`] with another operator configuration.
    pub fn test_with(
        clock: Arc<FixedClock>,
        config: OperatorConfig,
    ) -> (Arc<Context>, ApiServerVerifier) {
        let (mock_service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(mock_service, "ricochet");
        let recorder = Recorder::new(client.clone(), Reporter::from("ricochet-operator"));
        let ctx = Context {
            client,
            config,
            clock,
            metrics: Arc::new(Metrics::default()),
            recorder,
        };
        (Arc::new(ctx), ApiServerVerifier(handle))
    }
}

/// A recorded request.
#[derive(Debug)]
pub struct Seen {
    /// The method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// JSON body (Null when empty).
    pub body: Value,
}

/// The API-call sequences the tests expect.
pub enum Scenario {
    /// New run (`loadTestRef`): GET LoadTest, apply spec ConfigMap, apply N Jobs, status, Event.
    CreateRunners {
        /// The LoadTest the run references.
        load_test: LoadTest,
        /// Expected runners.
        n: u32,
    },
    /// Pending, every runner pod Running: LIST pods, apply start ConfigMap, status, Event.
    ReleaseBarrier {
        /// Runners.
        n: u32,
    },
    /// Pending, pods not all running, status already says so: LIST pods and nothing else.
    NothingChanged {
        /// Runners.
        n: u32,
    },
    /// Pending past the start timeout, runner pods 1.. not running: LIST pods, status
    /// Failed, Event, delete the runner Jobs.
    StartTimedOut {
        /// Runners.
        n: u32,
    },
    /// Running, one Job failed: LIST jobs, LIST its pod (its termination message), status
    /// Failed, Event, delete the runner Jobs.
    RunnerFailed {
        /// Runners.
        n: u32,
        /// The failed one.
        failed: u32,
    },
    /// Running, all Jobs done: LIST jobs, GET spec ConfigMap, LIST results, apply report,
    /// status, Event, delete Jobs.
    AllRunnersDone {
        /// The whole spec, as stored in `<run>-spec`.
        whole: LoadTestSpec,
        /// Each runner's partial result JSON.
        partials: Vec<String>,
    },
    /// Finished past its TTL: DELETE the run (foreground).
    DeleteExpired,
    /// The first call fails with a 500.
    ServerError,
    /// A scheduled LoadTest: GET it, LIST its runs, DELETE `prune` then `replace`, POST the run
    /// `create` (when set), PATCH the LoadTest's status.
    Schedule {
        /// The scheduled LoadTest.
        load_test: LoadTest,
        /// The LoadTestRunList the API server holds.
        runs: Value,
        /// Runs deleted for the history limits.
        prune: Vec<String>,
        /// Active runs deleted (policy Replace).
        replace: Vec<String>,
        /// The run created, if any.
        create: Option<String>,
    },
}

impl ApiServerVerifier {
    /// Plays `scenario` for `run`, returning every request seen.
    pub fn run(
        mut self,
        scenario: Scenario,
        run: LoadTestRun,
    ) -> tokio::task::JoinHandle<Vec<Seen>> {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let base = "/apis/ricochet.dev/v1alpha1/namespaces/ricochet";
            let name = run.name_any();
            match scenario {
                Scenario::CreateRunners { load_test, n } => {
                    let lt = serde_json::to_value(&load_test).unwrap();
                    seen.push(
                        self.expect(
                            Method::GET,
                            &format!("{base}/loadtests/{}", load_test.name_any()),
                            |_| lt.clone(),
                        )
                        .await,
                    );
                    seen.push(
                        self.expect(
                            Method::PATCH,
                            &format!("/api/v1/namespaces/ricochet/configmaps/{name}-spec"),
                            echo,
                        )
                        .await,
                    );
                    for i in 0..n {
                        seen.push(
                            self.expect(
                                Method::PATCH,
                                &format!(
                                    "/apis/batch/v1/namespaces/ricochet/jobs/{name}-runner-{i}"
                                ),
                                echo,
                            )
                            .await,
                        );
                    }
                    seen.push(self.expect_status(&run).await);
                    seen.push(self.expect_event().await);
                }
                Scenario::ReleaseBarrier { n } => {
                    seen.push(
                        self.expect(Method::GET, "/api/v1/namespaces/ricochet/pods", |_| {
                            pod_list(&name, n, "Running")
                        })
                        .await,
                    );
                    seen.push(
                        self.expect(
                            Method::PATCH,
                            &format!("/api/v1/namespaces/ricochet/configmaps/{name}-start"),
                            echo,
                        )
                        .await,
                    );
                    seen.push(self.expect_status(&run).await);
                    seen.push(self.expect_event().await);
                }
                Scenario::NothingChanged { n } => {
                    seen.push(
                        self.expect(Method::GET, "/api/v1/namespaces/ricochet/pods", |_| {
                            pod_list(&name, n, "Pending")
                        })
                        .await,
                    );
                }
                Scenario::StartTimedOut { n } => {
                    seen.push(
                        self.expect(Method::GET, "/api/v1/namespaces/ricochet/pods", |_| {
                            pod_list(&name, n, "Pending")
                        })
                        .await,
                    );
                    seen.push(self.expect_status(&run).await);
                    seen.push(self.expect_event().await);
                    seen.push(
                        self.expect(
                            Method::DELETE,
                            "/apis/batch/v1/namespaces/ricochet/jobs",
                            |_| empty_list("JobList", "batch/v1"),
                        )
                        .await,
                    );
                }
                Scenario::RunnerFailed { n, failed } => {
                    let jobs =
                        job_list(&name, n, |i| if i == failed { "failed" } else { "running" });
                    seen.push(
                        self.expect(
                            Method::GET,
                            "/apis/batch/v1/namespaces/ricochet/jobs",
                            |_| jobs.clone(),
                        )
                        .await,
                    );
                    // The failed runner's pod, for its termination message.
                    seen.push(
                        self.expect(Method::GET, "/api/v1/namespaces/ricochet/pods", |_| {
                            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
                                "metadata": {"name": format!("{name}-runner-{failed}-abcde")},
                                "status": {"phase": "Failed", "containerStatuses": [{
                                    "name": "runner", "image": "ricochet/loadgen:test", "imageID": "",
                                    "ready": false, "restartCount": 0,
                                    "state": {"terminated": {"exitCode": 3, "reason": "Error",
                                        "message": "cannot reach the target http://echo:8080: connection refused\n"}}
                                }]}
                            }]})
                        })
                        .await,
                    );
                    seen.push(self.expect_status(&run).await);

                    seen.push(self.expect_event().await);
                    seen.push(
                        self.expect(
                            Method::DELETE,
                            "/apis/batch/v1/namespaces/ricochet/jobs",
                            |_| empty_list("JobList", "batch/v1"),
                        )
                        .await,
                    );
                }
                Scenario::AllRunnersDone { whole, partials } => {
                    let n = partials.len() as u32;
                    let jobs = job_list(&name, n, |_| "succeeded");
                    seen.push(
                        self.expect(
                            Method::GET,
                            "/apis/batch/v1/namespaces/ricochet/jobs",
                            |_| jobs.clone(),
                        )
                        .await,
                    );
                    let doc = serde_saphyr::to_string(&LoadTest::new(&name, whole)).unwrap();
                    seen.push(self.expect(Method::GET, &format!("/api/v1/namespaces/ricochet/configmaps/{name}-spec"), |_| {
                        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("{name}-spec")}, "data": {"loadtest.yaml": doc}})
                    }).await);
                    let results: Vec<Value> = partials.iter().enumerate().map(|(i, p)| json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("{name}-result-{i}"), "labels": {"ricochet.dev/runner-index": i.to_string()}},
                        "data": {"partial.json": p}
                    })).collect();
                    seen.push(self.expect(Method::GET, "/api/v1/namespaces/ricochet/configmaps", |_| {
                        json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": results})
                    }).await);
                    seen.push(
                        self.expect(
                            Method::PATCH,
                            &format!("/api/v1/namespaces/ricochet/configmaps/{name}-report"),
                            echo,
                        )
                        .await,
                    );
                    seen.push(self.expect_status(&run).await);
                    seen.push(self.expect_event().await);
                    seen.push(
                        self.expect(
                            Method::DELETE,
                            "/apis/batch/v1/namespaces/ricochet/jobs",
                            |_| empty_list("JobList", "batch/v1"),
                        )
                        .await,
                    );
                }
                Scenario::DeleteExpired => {
                    seen.push(
                        self.expect(
                            Method::DELETE,
                            &format!("{base}/loadtestruns/{name}"),
                            |_| status_success(),
                        )
                        .await,
                    );
                }
                Scenario::Schedule {
                    load_test,
                    runs,
                    prune,
                    replace,
                    create,
                } => {
                    // The fresh read of the LoadTest the decisions are taken on.
                    let fresh = serde_json::to_value(&load_test).unwrap();
                    seen.push(
                        self.expect(
                            Method::GET,
                            &format!("{base}/loadtests/{}", load_test.name_any()),
                            |_| fresh,
                        )
                        .await,
                    );
                    seen.push(
                        self.expect(Method::GET, &format!("{base}/loadtestruns"), |_| {
                            runs.clone()
                        })
                        .await,
                    );
                    for old in prune.iter().chain(&replace) {
                        seen.push(
                            self.expect(
                                Method::DELETE,
                                &format!("{base}/loadtestruns/{old}"),
                                |_| status_success(),
                            )
                            .await,
                        );
                    }
                    if let Some(created) = create {
                        let s = self
                            .expect(Method::POST, &format!("{base}/loadtestruns"), echo)
                            .await;
                        assert_eq!(s.body["metadata"]["name"], created);
                        seen.push(s);
                    }
                    // RunCreated, or RunSkipped under Forbid.
                    let ev = self.expect_event().await;
                    assert_eq!(ev.body["regarding"]["kind"], "LoadTest");
                    seen.push(ev);
                    let lt = serde_json::to_value(&load_test).unwrap();
                    seen.push(
                        self.expect(
                            Method::PATCH,
                            &format!("{base}/loadtests/{}/status", load_test.name_any()),
                            |_| lt,
                        )
                        .await,
                    );
                }
                Scenario::ServerError => {
                    let (request, send) = self.0.next_request().await.expect("service not called");
                    seen.push(Seen {
                        method: request.method().clone(),
                        uri: request.uri().to_string(),
                        body: Value::Null,
                    });
                    send.send_response(
                        Response::builder()
                            .status(500)
                            .body(Body::from(serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd is down", "reason": "InternalError", "code": 500})).unwrap()))
                            .unwrap(),
                    );
                }
            }
            seen
        })
    }

    /// The next request, unanswered (for replies other than 200).
    pub async fn next_raw(
        &mut self,
    ) -> (
        Request<Body>,
        tower_test::mock::SendResponse<Response<Body>>,
    ) {
        self.0.next_request().await.expect("service not called")
    }

    /// Expects one request with `method` on `path` (query ignored) and answers `reply(body)`.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        reply: impl FnOnce(&Value) -> Value,
    ) -> Seen {
        let (request, send) = self.0.next_request().await.expect("service not called");
        assert_eq!(request.method(), method, "{}", request.uri());
        assert_eq!(
            request.uri().path(),
            path,
            "{} {}",
            request.method(),
            request.uri()
        );
        let uri = request.uri().to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let answer = reply(&body);
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
        Seen {
            method: method.clone(),
            uri,
            body,
        }
    }

    /// Answers every request with `answer(method, path, body)` — `(status code, body)` —
    /// until the client is dropped (the test drops its context), like a small API
    /// server, returning every request seen in order.
    pub fn serve(
        mut self,
        mut answer: impl FnMut(&Method, &str, &Value) -> (u16, Value) + Send + 'static,
    ) -> tokio::task::JoinHandle<Vec<Seen>> {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some((request, send)) = self.0.next_request().await {
                let method = request.method().clone();
                let uri = request.uri().to_string();
                let path = request.uri().path().to_owned();
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                };
                let (code, reply) = answer(&method, &path, &body);
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                        .unwrap(),
                );
                seen.push(Seen { method, uri, body });
            }
            seen
        })
    }

    async fn expect_status(&mut self, run: &LoadTestRun) -> Seen {
        let path = format!(
            "/apis/ricochet.dev/v1alpha1/namespaces/ricochet/loadtestruns/{}/status",
            run.name_any()
        );
        let run = serde_json::to_value(run).unwrap();
        self.expect(Method::PATCH, &path, |_| run).await
    }

    async fn expect_event(&mut self) -> Seen {
        self.expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/ricochet/events",
            echo,
        )
        .await
    }
}

fn echo(body: &Value) -> Value {
    body.clone()
}

fn empty_list(kind: &str, api_version: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {}, "items": []})
}

fn status_success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

fn pod_list(run: &str, n: u32, phase: &str) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            // In the "Pending" case runner 0 is running and the rest are not.
            let phase = if phase == "Pending" && i == 0 { "Running" } else { phase };
            json!({"metadata": {"name": format!("{run}-runner-{i}-abcde"), "labels": {"ricochet.dev/run": run, "ricochet.dev/runner-index": i.to_string()}}, "status": {"phase": phase}})
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
}

fn job_list(run: &str, n: u32, state: impl Fn(u32) -> &'static str) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let status = match state(i) {
                "succeeded" => json!({"succeeded": 1}),
                "failed" => json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
                _ => json!({"active": 1}),
            };
            json!({"metadata": {"name": format!("{run}-runner-{i}"), "labels": {"ricochet.dev/run": run, "ricochet.dev/runner-index": i.to_string()}}, "status": status})
        })
        .collect();
    json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": items})
}

/// A `LoadTestRun` fixture in namespace `ricochet`, with a uid.
pub fn test_run(name: &str, spec: LoadTestRunSpec) -> LoadTestRun {
    let mut run = LoadTestRun::new(name, spec);
    run.meta_mut().namespace = Some("ricochet".into());
    run.meta_mut().uid = Some(format!("uid-{name}"));
    run.meta_mut().generation = Some(1);
    run
}

/// The mock API server's answer to a GET of an object that does not exist.
pub fn not_found() -> Response<Body> {
    Response::builder()
        .status(404)
        .body(Body::from(
            serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}))
                .unwrap(),
        ))
        .unwrap()
}

/// A client of the mock API server and the server's side, at a fixed instant.
pub fn mock() -> (Client, ApiServerVerifier) {
    let (ctx, server) = Context::test(FixedClock::at("2026-11-21T02:00:30Z"));
    (ctx.client.clone(), server)
}

/// A `LoadTest` fixture in namespace `ricochet`, with a uid.
pub fn test_load_test(name: &str, spec: LoadTestSpec) -> LoadTest {
    let mut lt = LoadTest::new(name, spec);
    lt.meta_mut().namespace = Some("ricochet".into());
    lt.meta_mut().uid = Some(format!("uid-{name}"));
    lt
}

/// The status of a run past `start` with `n` runners in `phase`.
pub fn status_with(
    phase: RunPhase,
    n: u32,
    runners: impl Fn(u32) -> RunnerPhase,
) -> LoadTestRunStatus {
    LoadTestRunStatus {
        phase: Some(phase),
        parallelism: Some(n),
        runners: (0..n)
            .map(|i| RunnerStatus {
                index: i,
                job: format!("r1-runner-{i}"),
                phase: runners(i),
                reason: None,
            })
            .collect(),
        ..LoadTestRunStatus::default()
    }
}

/// Waits for the verifier under a timeout.
pub async fn timeout_after_1s(handle: tokio::task::JoinHandle<Vec<Seen>>) -> Vec<Seen> {
    tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .expect("timeout on mock apiserver")
        .expect("scenario succeeded")
}

#[cfg(test)]
mod tests {
    //! Every test here talks to the MOCK API server above, never to a cluster.

    use super::*;
    use crate::partial::Partial;
    use crate::reconcile::reconcile_run;
    use crate::schedule::reconcile_load_test;
    use crate::{Error, error_policy};
    use kube::runtime::controller::Action;
    use ricochet_crds::{LoadTestRef, RunOverrides};
    use ricochet_engine::plan::{Overrides, Plan};
    use ricochet_engine::stats::{ScenarioKey, SeriesKey, Stats, record_duration};

    const NOW: &str = "2026-11-21T02:00:30Z";

    fn spec(yaml: &str) -> LoadTestSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn api_spec() -> LoadTestSpec {
        spec(
            "target: {url: 'http://echo:8080'}\nscenarios:\n- {name: api, executor: constant-arrival-rate, rate: 1000, duration: 1m, requests: [{name: get, path: /api/x}]}\nthresholds:\n  http_req_duration{scenario:api}: [\"p(99)<800ms\"]\nparallelism: 3\n",
        )
    }

    fn by_ref() -> LoadTestRunSpec {
        LoadTestRunSpec {
            load_test_ref: Some(LoadTestRef { name: "api".into() }),
            spec: None,
            overrides: None,
        }
    }

    fn inline(spec: LoadTestSpec) -> LoadTestRunSpec {
        LoadTestRunSpec {
            load_test_ref: None,
            spec: Some(Box::new(spec)),
            overrides: None,
        }
    }

    #[tokio::test]
    async fn a_new_run_creates_n_runner_jobs_with_owner_refs_labels_args_and_exact_rates() {
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let run = test_run("r1", by_ref());
        let lt = test_load_test("api", api_spec());
        let mock = server.run(
            Scenario::CreateRunners {
                load_test: lt,
                n: 3,
            },
            run.clone(),
        );
        let action = reconcile_run(Arc::new(run), ctx).await.unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(5)));
        let seen = timeout_after_1s(mock).await;

        // The spec ConfigMap holds the whole spec alone; the runners' segments of it sum
        // to 1000/s exactly, and none judges the run-wide threshold.
        let data = seen[1].body["data"].as_object().unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["loadtest.yaml"]);
        let doc: LoadTest =
            serde_saphyr::from_str(data["loadtest.yaml"].as_str().unwrap()).unwrap();
        assert_eq!(doc.spec, api_spec());
        let plan = Plan::from_spec(
            "r1",
            &doc.spec,
            std::path::Path::new("/"),
            &Overrides::default(),
        )
        .unwrap();
        let n = std::num::NonZeroU32::new(3).unwrap();
        let mut total = 0;
        for i in 0..3 {
            let segment = plan.segment(i, n).unwrap();
            let rate = segment.scenarios[0].executor.peak_rate().unwrap();
            total += ricochet_engine::segment::rate_units(rate);
            assert!(segment.thresholds.is_empty());
        }
        assert_eq!(total, 1_000_000);
        assert!(
            seen[1].uri.contains("fieldManager=ricochet-operator"),
            "{}",
            seen[1].uri
        );

        for i in 0..3 {
            let job = &seen[2 + i].body;
            let owner = &job["metadata"]["ownerReferences"][0];
            assert_eq!(owner["kind"], "LoadTestRun");
            assert_eq!(owner["uid"], "uid-r1");
            assert_eq!(owner["controller"], true);
            assert_eq!(owner["blockOwnerDeletion"], true);
            assert_eq!(job["metadata"]["labels"]["ricochet.dev/run"], "r1");
            assert_eq!(
                job["metadata"]["labels"]["ricochet.dev/runner-index"],
                i.to_string()
            );
            assert_eq!(job["spec"]["backoffLimit"], 0);
            let pod = &job["spec"]["template"]["spec"];
            assert_eq!(pod["restartPolicy"], "Never");
            assert_eq!(pod["serviceAccountName"], "ricochet-runner");
            let c = &pod["containers"][0];
            assert_eq!(c["image"], "ricochet/loadgen:test");
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(c["terminationMessagePolicy"], "FallbackToLogsOnError");
            let args: Vec<&str> = c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let index = i.to_string();
            let result = format!("r1-result-{i}");
            assert_eq!(
                args,
                [
                    "runner",
                    "--spec",
                    "/etc/ricochet/spec/loadtest.yaml",
                    "--run",
                    "r1",
                    "--index",
                    &index,
                    "--runners",
                    "3",
                    "--start-config-map",
                    "r1-start",
                    "--result-config-map",
                    &result
                ]
            );
        }
        let status = &seen[5].body["status"];
        assert_eq!(status["phase"], "Pending");
        assert_eq!(status["parallelism"], 3);
        assert_eq!(status["conditions"][0]["type"], "Started");
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(seen[6].body["reason"], "RunnersCreated");
    }

    #[tokio::test]
    async fn a_run_with_more_runners_than_load_fails_before_creating_anything() {
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        // Two virtual users cannot be split over three runners.
        let few = spec(
            "target: {url: 'http://echo:8080'}\nscenarios:\n- {name: api, executor: constant-vus, vus: 2, duration: 1m, requests: [{name: get, path: /api/x}]}\nparallelism: 3\n",
        );
        let run = test_run("r1", inline(few));
        let expected = run.clone();
        let mock = tokio::spawn(async move {
            let mut server = server;
            let s = server.expect_status(&expected).await;
            server.expect_event().await;
            s
        });
        reconcile_run(Arc::new(run), ctx).await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(1), mock)
            .await
            .unwrap()
            .unwrap();
        let status = &seen.body["status"];
        assert_eq!(status["phase"], "Failed");
        assert_eq!(
            status["message"],
            "spec.parallelism: 3 runners leave runner 2 with no load; use at most as many runners as the smallest scenario has thousandths of an iteration per second (or virtual users)"
        );
    }

    #[tokio::test]
    async fn a_run_being_deleted_is_left_to_owner_references_and_foreground_deletion() {
        // No finalizer: `kubectl delete ltr` (foreground) removes the Jobs and their pods
        // through owner references; the reconciler makes no call at all.
        let (ctx, _server) = Context::test(FixedClock::at(NOW));
        let mut run = test_run("r1", inline(api_spec()));
        run.status = Some(status_with(RunPhase::Running, 3, |_| RunnerPhase::Running));
        run.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(NOW.parse().unwrap()),
        );
        let action = reconcile_run(Arc::new(run), ctx).await.unwrap();
        assert_eq!(action, Action::await_change());
    }

    #[tokio::test]
    async fn the_barrier_is_released_only_when_every_runner_pod_runs() {
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let mut run = test_run("r1", inline(api_spec()));
        run.status = Some(status_with(RunPhase::Pending, 3, |_| RunnerPhase::Pending));
        let mock = server.run(Scenario::ReleaseBarrier { n: 3 }, run.clone());
        reconcile_run(Arc::new(run), ctx).await.unwrap();
        let seen = timeout_after_1s(mock).await;
        assert!(
            seen[0]
                .uri
                .contains("labelSelector=ricochet.dev%2Frun%3Dr1"),
            "{}",
            seen[0].uri
        );
        // Start 10 s (the lead) after now, for all runners.
        assert_eq!(seen[1].body["data"]["startAt"], "2026-11-21T02:00:40Z");
        let status = &seen[2].body["status"];
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["startAt"], "2026-11-21T02:00:40Z");
        assert_eq!(status["conditions"][0]["type"], "Started");
        assert_eq!(status["conditions"][0]["status"], "True");
    }

    #[tokio::test]
    async fn reconciling_twice_changes_nothing() {
        // A run waiting for its pods, whose status already says so: the second reconcile
        // only reads (LIST pods) and writes nothing.
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let mut run = test_run("r1", inline(api_spec()));
        run.status = Some(status_with(RunPhase::Pending, 3, |i| {
            if i == 0 {
                RunnerPhase::Running
            } else {
                RunnerPhase::Pending
            }
        }));
        let mock = server.run(Scenario::NothingChanged { n: 3 }, run.clone());
        let action = reconcile_run(Arc::new(run), ctx).await.unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(2)));
        let seen = timeout_after_1s(mock).await;
        assert_eq!(seen.len(), 1);
    }

    #[tokio::test]
    async fn runner_pods_that_never_all_run_fail_the_run_after_the_start_timeout() {
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let mut run = test_run("r1", inline(api_spec()));
        let mut status = status_with(RunPhase::Pending, 3, |i| {
            if i == 0 {
                RunnerPhase::Running
            } else {
                RunnerPhase::Pending
            }
        });
        status.start_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-21T01:50:00Z".parse().unwrap(),
        ));
        run.status = Some(status);
        let mock = server.run(Scenario::StartTimedOut { n: 3 }, run.clone());
        reconcile_run(Arc::new(run), ctx).await.unwrap();
        let seen = timeout_after_1s(mock).await;
        let status = &seen[1].body["status"];
        assert_eq!(status["phase"], "Failed");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .starts_with("runner 1, 2 not running after 600s"),
            "{status}"
        );
    }

    #[tokio::test]
    async fn one_failed_runner_fails_the_run_with_its_reason_and_stops_the_others() {
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let mut run = test_run("r1", inline(api_spec()));
        run.status = Some(status_with(RunPhase::Running, 3, |_| RunnerPhase::Running));
        let mock = server.run(Scenario::RunnerFailed { n: 3, failed: 1 }, run.clone());
        reconcile_run(Arc::new(run), ctx.clone()).await.unwrap();
        let seen = timeout_after_1s(mock).await;
        let status = &seen[2].body["status"];
        assert_eq!(status["phase"], "Failed");
        assert_eq!(
            status["message"],
            // The runner's own error, from its termination message, not the Job's
            // "backoff limit". See: #18.
            "runner 1 failed: cannot reach the target http://echo:8080: connection refused"
        );
        assert_eq!(status["runners"][1]["phase"], "Failed");
        let failed = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Failed")
            .unwrap();
        assert_eq!(failed["status"], "True");
        assert_eq!(failed["reason"], "RunnerFailed");
        assert_eq!(seen[3].body["type"], "Warning");
        // The remaining runners are deleted, foreground.
        assert!(
            seen[4].body["propagationPolicy"] == "Foreground",
            "{:?}",
            seen[4]
        );
    }

    fn partial_json(plan: &Plan, runner: u32, latencies_ms: &[u64]) -> String {
        let mut stats = Stats::default();
        for &ms in latencies_ms {
            let s = stats
                .series
                .entry(SeriesKey {
                    scenario: 0,
                    request: 0,
                    status: 200,
                    phase: 0,
                })
                .or_default();
            s.requests += 1;
            record_duration(&mut s.duration, Duration::from_millis(ms));
            stats
                .scenarios
                .entry(ScenarioKey {
                    scenario: 0,
                    phase: 0,
                })
                .or_default()
                .iterations += 1;
        }
        Partial::from_stats(&stats, plan, runner, 60.0)
            .unwrap()
            .to_json()
    }

    #[tokio::test]
    async fn all_runners_done_merges_exactly_and_judges_the_merged_results() {
        let reports = tempfile::tempdir().unwrap();
        let (ctx, server) = Context::test_with(
            FixedClock::at(NOW),
            OperatorConfig {
                runner_image: "ricochet/loadgen:test".into(),
                report_dir: Some(reports.path().to_owned()),
                ..OperatorConfig::default()
            },
        );
        let whole = api_spec();
        let plan = Plan::from_spec(
            "r1",
            &whole,
            std::path::Path::new("/"),
            &Overrides::default(),
        )
        .unwrap();
        let mut run = test_run("r1", inline(whole.clone()));
        run.status = Some(status_with(RunPhase::Running, 3, |_| RunnerPhase::Running));
        // Each runner alone passes p99<800ms; merged, 3 of 102 samples at 900 ms fail it.
        let partials = vec![
            partial_json(
                &plan,
                0,
                &[10; 33].iter().copied().chain([900]).collect::<Vec<_>>(),
            ),
            partial_json(
                &plan,
                1,
                &[10; 33].iter().copied().chain([900]).collect::<Vec<_>>(),
            ),
            partial_json(
                &plan,
                2,
                &[10; 33].iter().copied().chain([900]).collect::<Vec<_>>(),
            ),
        ];
        let mock = server.run(Scenario::AllRunnersDone { whole, partials }, run.clone());
        reconcile_run(Arc::new(run), ctx.clone()).await.unwrap();
        let seen = timeout_after_1s(mock).await;
        let report = &seen[3].body["data"];
        assert!(
            report["report.md"]
                .as_str()
                .unwrap()
                .contains("p(99)<800ms")
        );
        // summary.json is the schema-version-1 summary of the merged run, as `loadgen
        // report` and `loadgen compare` read it.
        let summary = ricochet_reports::parse_summary(
            report["summary.json"].as_str().unwrap(),
            std::path::Path::new("summary.json"),
        )
        .unwrap();
        assert_eq!(summary.metrics["http_reqs"].count, 102);
        assert_eq!(
            summary.thresholds[0].verdict,
            ricochet_reports::model::Verdict::Fail
        );
        assert_eq!(summary.run.exit_code, 1);
        assert!(report["junit.xml"].as_str().unwrap().contains("<testsuite"));
        // The full reports, HTML included, in the report directory the status names.
        let dir = reports.path().join("ricochet").join("r1");
        for f in ["summary.json", "report.md", "report.html", "junit.xml"] {
            assert!(dir.join(f).is_file(), "{f} not written");
        }
        let status = &seen[4].body["status"];
        assert_eq!(status["phase"], "Failed", "{status}");
        assert_eq!(status["verdict"], "Fail");
        assert_eq!(status["counters"]["http_reqs"], 102);
        assert_eq!(status["thresholds"][0]["verdict"], "Fail");
        assert_eq!(status["report"]["configMap"], "r1-report");
        assert_eq!(
            status["report"]["directory"].as_str(),
            Some(dir.display().to_string().as_str())
        );
        assert!(
            status["p99"].as_str().unwrap().starts_with("900"),
            "{status}"
        );
        let passed = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Passed")
            .unwrap();
        assert_eq!(passed["status"], "False");
        // Which threshold failed, and by how much, for `kubectl describe`. See: #18.
        let why = passed["message"].as_str().unwrap();
        assert!(
            why.contains("http_req_duration{scenario:api} p(99)<800ms is Fail (observed 9"),
            "{why}"
        );
        // `kubectl wait --for=condition=Finished` returns at once, failed or not.
        let finished = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Finished")
            .unwrap_or_else(|| panic!("no Finished condition: {status}"));
        assert_eq!(finished["status"], "True");
        assert_eq!(finished["reason"], "ThresholdsFailed");
        assert_eq!(seen[5].body["reason"], "Failed");
        assert!(
            ctx.metrics
                .render()
                .contains("ricochet_runs_finished_total{verdict=\"fail\"} 1")
        );
        // The LoadTest's last verdict, duration, finish time and thresholds, for alerts
        // on a failed nightly gate.
        let metrics = ctx.metrics.render();
        for line in [
            "ricochet_loadtest_last_run_passed{namespace=\"ricochet\",loadtest=\"r1\"} 0",
            "ricochet_loadtest_last_run_finished_timestamp_seconds{namespace=\"ricochet\",loadtest=\"r1\"} 1795226430",
            "ricochet_loadtest_threshold_passed{namespace=\"ricochet\",loadtest=\"r1\",threshold=\"http_req_duration{scenario:api}\",expression=\"p(99)<800ms\"} 0",
        ] {
            assert!(metrics.contains(line), "{line}\n{metrics}");
        }
        assert!(metrics.contains(
            "ricochet_loadtest_last_run_duration_seconds{namespace=\"ricochet\",loadtest=\"r1\"} "
        ));
    }

    #[tokio::test]
    async fn a_finished_run_past_its_ttl_is_deleted_in_the_foreground() {
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let mut s = api_spec();
        s.cleanup = Some(ricochet_crds::CleanupPolicy {
            keep_on_failure: false,
            ttl_seconds_after_finished: Some(60),
        });
        let mut run = test_run("r1", inline(s));
        let mut status = status_with(RunPhase::Passed, 3, |_| RunnerPhase::Succeeded);
        status.completion_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-21T01:59:00Z".parse().unwrap(),
        ));
        run.status = Some(status);
        let mock = server.run(Scenario::DeleteExpired, run.clone());
        reconcile_run(Arc::new(run.clone()), ctx).await.unwrap();
        let seen = timeout_after_1s(mock).await;
        assert_eq!(seen[0].body["propagationPolicy"], "Foreground");

        // Before its TTL: no call, requeued for when it expires.
        let (ctx, _server) = Context::test(FixedClock::at("2026-11-21T01:59:30Z"));
        let action = reconcile_run(Arc::new(run), ctx).await.unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    }

    #[tokio::test]
    async fn an_api_error_goes_through_error_policy_to_the_failure_metric() {
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let run = test_run("r1", by_ref());
        let mock = server.run(Scenario::ServerError, run.clone());
        let err = reconcile_run(Arc::new(run.clone()), ctx.clone())
            .await
            .unwrap_err();
        timeout_after_1s(mock).await;
        assert!(matches!(err, Error::Kube(_)), "{err}");
        let action = error_policy(Arc::new(run), &err, ctx.clone());
        assert_eq!(action, Action::requeue(Duration::from_secs(30)));
        assert_eq!(ctx.metrics.failures("kube"), 1);
        assert!(
            ctx.metrics
                .render()
                .contains("ricochet_operator_reconcile_failures_total{error=\"kube\"} 1")
        );
    }

    #[tokio::test]
    async fn an_invalid_override_fails_the_run_with_the_field() {
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let mut rs = inline(api_spec());
        rs.overrides = Some(RunOverrides {
            duration: Some("soon".into()),
            ..RunOverrides::default()
        });
        let run = test_run("r1", rs);
        let name = run.name_any();
        let mock = tokio::spawn(async move {
            let mut server = server;
            let s = server.expect_status(&run).await;
            server.expect_event().await;
            s
        });
        reconcile_run(
            Arc::new(test_run(&name, {
                let mut rs = inline(api_spec());
                rs.overrides = Some(RunOverrides {
                    duration: Some("soon".into()),
                    ..RunOverrides::default()
                });
                rs
            })),
            ctx,
        )
        .await
        .unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(1), mock)
            .await
            .unwrap()
            .unwrap();
        let status = &seen.body["status"];
        assert_eq!(status["phase"], "Failed");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .starts_with("spec.overrides.duration:"),
            "{status}"
        );
    }

    fn run_list(items: &[(&str, Option<&str>, &str)]) -> Value {
        let items: Vec<Value> = items
            .iter()
            .map(|(name, phase, done)| {
                let mut status = json!({});
                if let Some(p) = phase {
                    status = json!({"phase": p});
                    if !done.is_empty() {
                        status["completionTime"] = json!(done);
                        status["verdict"] = json!(if *p == "Passed" { "Pass" } else { "Fail" });
                    }
                }
                json!({"apiVersion": "ricochet.dev/v1alpha1", "kind": "LoadTestRun",
                       "metadata": {"name": name, "namespace": "ricochet", "labels": {"ricochet.dev/load-test": "nightly"}},
                       "spec": {"loadTestRef": {"name": "nightly"}}, "status": status})
            })
            .collect();
        json!({"apiVersion": "ricochet.dev/v1alpha1", "kind": "LoadTestRunList", "metadata": {}, "items": items})
    }

    fn nightly(policy: &str) -> LoadTest {
        let mut s = api_spec();
        s.schedule = Some("0 2 * * *".into());
        s.concurrency_policy = Some(serde_json::from_value(json!(policy)).unwrap());
        s.successful_runs_history_limit = Some(2);
        s.failed_runs_history_limit = Some(1);
        let mut lt = test_load_test("nightly", s);
        lt.status = Some(ricochet_crds::LoadTestStatus {
            last_schedule_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-20T02:00:00Z".parse().unwrap(),
            )),
            ..Default::default()
        });
        lt
    }

    #[tokio::test]
    async fn a_scheduled_load_test_creates_its_run_on_time_and_prunes_history() {
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let lt = nightly("Forbid");
        let runs = run_list(&[
            ("nightly-1", Some("Passed"), "2026-11-17T02:10:00Z"),
            ("nightly-2", Some("Passed"), "2026-11-18T02:10:00Z"),
            ("nightly-3", Some("Passed"), "2026-11-19T02:10:00Z"),
            ("nightly-4", Some("Failed"), "2026-11-16T02:10:00Z"),
            ("nightly-5", Some("Failed"), "2026-11-20T02:10:00Z"),
        ]);
        // Tick 2026-11-21T02:00Z is minute 29,395,800 since the epoch.
        let due_minute = "2026-11-21T02:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_second()
            / 60;
        let create = format!("nightly-{due_minute}");
        let scenario = Scenario::Schedule {
            load_test: lt.clone(),
            runs,
            prune: vec!["nightly-1".into(), "nightly-4".into()],
            replace: vec![],
            create: Some(create.clone()),
        };
        let mock = server.run(scenario, test_run("unused", by_ref()));
        let action = reconcile_load_test(Arc::new(lt), ctx.clone())
            .await
            .unwrap();
        let seen = timeout_after_1s(mock).await;
        // Next tick is tomorrow 02:00, one second past it.
        assert_eq!(
            action,
            Action::requeue(Duration::from_secs(24 * 3600 - 30 + 1))
        );
        let created = &seen[4].body;
        assert_eq!(created["spec"]["loadTestRef"]["name"], "nightly");
        assert_eq!(
            created["metadata"]["ownerReferences"][0]["kind"],
            "LoadTest"
        );
        assert_eq!(
            created["metadata"]["labels"]["ricochet.dev/load-test"],
            "nightly"
        );
        assert_eq!(seen[5].body["reason"], "RunCreated");
        let status = &seen[6].body["status"];
        assert_eq!(status["lastRun"], create);
        assert_eq!(status["lastScheduleTime"], "2026-11-21T02:00:00Z");
        // The newest finished run (nightly-5) failed.
        assert_eq!(status["lastVerdict"], "Fail");
        assert!(
            ctx.metrics
                .render()
                .contains("ricochet_scheduled_runs_total 1")
        );
    }

    #[tokio::test]
    async fn forbid_skips_a_tick_while_a_run_is_active_and_replace_deletes_it() {
        let runs = run_list(&[("nightly-9", Some("Running"), "")]);
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let lt = nightly("Forbid");
        let mock = server.run(
            Scenario::Schedule {
                load_test: lt.clone(),
                runs: runs.clone(),
                prune: vec![],
                replace: vec![],
                create: None,
            },
            test_run("unused", by_ref()),
        );
        reconcile_load_test(Arc::new(lt), ctx).await.unwrap();
        let seen = timeout_after_1s(mock).await;
        assert_eq!(seen[2].body["reason"], "RunSkipped");
        let status = &seen[3].body["status"];
        assert_eq!(status["active"], json!(["nightly-9"]));
        assert!(
            status["message"].as_str().unwrap().contains("skipped"),
            "{status}"
        );

        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let lt = nightly("Replace");
        let due_minute = "2026-11-21T02:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_second()
            / 60;
        let mock = server.run(
            Scenario::Schedule {
                load_test: lt.clone(),
                runs,
                prune: vec![],
                replace: vec!["nightly-9".into()],
                create: Some(format!("nightly-{due_minute}")),
            },
            test_run("unused", by_ref()),
        );
        reconcile_load_test(Arc::new(lt), ctx).await.unwrap();
        let seen = timeout_after_1s(mock).await;
        assert_eq!(seen[2].body["propagationPolicy"], "Foreground");
    }

    const BASE: &str = "/apis/ricochet.dev/v1alpha1/namespaces/ricochet";

    /// A small API server holding the runs of LoadTest `nightly`: every read of the
    /// LoadTest (GET, and so the watch cache) answers `stale`, the object as it was before
    /// the operator's status patches, as a lagging watch cache does; runs are created and
    /// deleted for real; status patches and Events are accepted.
    fn lagging_server(
        server: ApiServerVerifier,
        stale: &LoadTest,
        runs: Value,
    ) -> tokio::task::JoinHandle<Vec<Seen>> {
        let lt = serde_json::to_value(stale).unwrap();
        let mut runs: Vec<Value> = runs["items"].as_array().unwrap().clone();
        server.serve(move |method, path, body| {
            let runs_path = format!("{BASE}/loadtestruns");
            match *method {
                Method::GET if path == format!("{BASE}/loadtests/nightly") => (200, lt.clone()),
                Method::GET if path == runs_path => (
                    200,
                    json!({"apiVersion": "ricochet.dev/v1alpha1", "kind": "LoadTestRunList", "metadata": {}, "items": runs}),
                ),
                Method::POST if path == runs_path => {
                    runs.push(body.clone());
                    (201, body.clone())
                }
                Method::DELETE => {
                    let name = path.rsplit('/').next().unwrap_or_default();
                    runs.retain(|r| r["metadata"]["name"] != name);
                    (200, status_success())
                }
                Method::PATCH if path.ends_with("/status") => (200, lt.clone()),
                Method::POST | Method::PATCH if path.contains("/events") => (201, body.clone()),
                _ => panic!("unexpected {method} {path}"),
            }
        })
    }

    fn tick_run(tick: &str) -> String {
        crate::schedule::run_name("nightly", tick.parse().unwrap())
    }

    fn status_patches(seen: &[Seen]) -> Vec<&Value> {
        seen.iter()
            .filter(|s| s.method == Method::PATCH && s.uri.contains("/loadtests/nightly/status"))
            .map(|s| &s.body["status"])
            .collect()
    }

    // See: #18 (a real kube-apiserver: the schedule reconcile after the operator's own status
    // patch read the LoadTest without it).
    #[tokio::test]
    async fn a_tick_read_from_a_stale_cache_neither_deletes_its_own_run_nor_skips_falsely() {
        let yesterday = tick_run("2026-11-20T02:00:00Z");
        let today = tick_run("2026-11-21T02:00:00Z");
        for (policy, phase, done) in [
            ("Replace", "Running", ""),
            ("Forbid", "Passed", "2026-11-20T02:10:00Z"),
        ] {
            let clock = FixedClock::at(NOW);
            let (ctx, server) = Context::test(clock.clone());
            let mut lt = nightly(policy);
            lt.status.as_mut().unwrap().last_run = Some(yesterday.clone());
            let mock = lagging_server(server, &lt, run_list(&[(&yesterday, Some(phase), done)]));
            // The tick: creates today's run (deleting yesterday's under Replace) and
            // patches the status, which the next read does not show.
            reconcile_load_test(Arc::new(lt.clone()), ctx.clone())
                .await
                .unwrap();
            // The watch event of the new run: the cache still holds `lt`.
            clock.set("2026-11-21T02:00:31Z");
            reconcile_load_test(Arc::new(lt), ctx.clone())
                .await
                .unwrap();
            drop(ctx);
            let seen = timeout_after_1s(mock).await;
            let deleted: Vec<&str> = seen
                .iter()
                .filter(|s| s.method == Method::DELETE)
                .map(|s| s.uri.as_str())
                .collect();
            assert!(
                deleted.iter().all(|uri| !uri.contains(&today)),
                "{policy}: deleted its own run: {deleted:?}"
            );
            let created = seen
                .iter()
                .filter(|s| {
                    s.method == Method::POST && s.uri.starts_with(&format!("{BASE}/loadtestruns"))
                })
                .count();
            assert_eq!(created, 1, "{policy}");
            let skipped = seen.iter().find(|s| s.body["reason"] == "RunSkipped");
            assert!(skipped.is_none(), "{policy}: false skip {skipped:?}");
            let last = status_patches(&seen).last().copied().unwrap().clone();
            assert_eq!(last["lastRun"], today, "{policy}: {last}");
            assert_eq!(last["lastScheduleTime"], "2026-11-21T02:00:00Z", "{policy}");
            assert_eq!(last["active"], json!([today]), "{policy}: {last}");
        }
    }

    // See: #18 (a merge patch without the emptied fields left them as they were).
    #[tokio::test]
    async fn an_emptied_active_list_and_an_outdated_message_are_cleared_under_the_operators_manager()
     {
        let yesterday = tick_run("2026-11-20T02:00:00Z");
        let (ctx, server) = Context::test(FixedClock::at("2026-11-21T03:00:00Z"));
        let mut lt = nightly("Forbid");
        lt.metadata.resource_version = Some("41".into());
        // Today's tick was skipped while yesterday's run was still going; it has finished.
        lt.status = Some(ricochet_crds::LoadTestStatus {
            last_schedule_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-21T02:00:00Z".parse().unwrap(),
            )),
            last_run: Some(yesterday.clone()),
            last_verdict: None,
            active: vec![yesterday.clone()],
            message: Some(format!(
                "tick 2026-11-21T02:00:00Z skipped: run {yesterday} is still active (concurrencyPolicy Forbid)"
            )),
        });
        let runs = run_list(&[(&yesterday, Some("Passed"), "2026-11-21T02:20:00Z")]);
        let mock = lagging_server(server, &lt, runs);
        reconcile_load_test(Arc::new(lt), ctx.clone())
            .await
            .unwrap();
        drop(ctx);
        let seen = timeout_after_1s(mock).await;
        let patch = seen
            .iter()
            .find(|s| s.method == Method::PATCH && s.uri.contains("/status"))
            .unwrap();
        assert!(
            patch.uri.contains("fieldManager=ricochet-operator"),
            "{}",
            patch.uri
        );
        let status = patch.body["status"].as_object().unwrap();
        for field in ["active", "message"] {
            assert_eq!(status.get(field), Some(&Value::Null), "{field}: {status:?}");
        }
        assert_eq!(status["lastVerdict"], "Pass");
        // Written against the version it was read at: a newer status is not overwritten.
        assert_eq!(patch.body["metadata"]["resourceVersion"], "41");
    }

    // See: #18 (`kubectl describe lt` named the first tick's run on every later one).
    #[tokio::test]
    async fn each_created_run_gets_its_own_event_naming_it() {
        let clock = FixedClock::at(NOW);
        let (ctx, server) = Context::test(clock.clone());
        let lt = nightly("Allow");
        let mock = lagging_server(server, &lt, run_list(&[]));
        reconcile_load_test(Arc::new(lt.clone()), ctx.clone())
            .await
            .unwrap();
        clock.set("2026-11-22T02:00:30Z");
        reconcile_load_test(Arc::new(lt), ctx.clone())
            .await
            .unwrap();
        drop(ctx);
        let seen = timeout_after_1s(mock).await;
        let events: Vec<&Seen> = seen.iter().filter(|s| s.uri.contains("/events")).collect();
        assert_eq!(events.len(), 2, "{events:?}");
        for (event, tick) in events
            .iter()
            .zip(["2026-11-21T02:00:00Z", "2026-11-22T02:00:00Z"])
        {
            let run = tick_run(tick);
            assert_eq!(
                event.method,
                Method::POST,
                "a new Event, not a fold: {event:?}"
            );
            assert_eq!(event.body["reason"], "RunCreated");
            assert_eq!(event.body["related"]["kind"], "LoadTestRun");
            assert_eq!(event.body["related"]["name"], run);
            let note = event.body["note"].as_str().unwrap();
            assert!(note.contains(&run), "{note}");
        }
    }

    fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} condition: {status}"))
    }

    // See: #18 (OpenShift's OwnerReferencesPermissionEnforcement refused the runner Jobs;
    // the run sat with an empty status, retried every 30 s).
    #[tokio::test]
    async fn a_forbidden_job_create_fails_the_run_at_once_naming_the_job_and_the_api_servers_words()
    {
        let forbidden = "jobs.batch \"r1-runner-0\" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: , <nil>";
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let mut run = test_run("r1", inline(api_spec()));
        run.metadata.resource_version = Some("7".into());
        let run_json = serde_json::to_value(&run).unwrap();
        let mock = server.serve(move |method, path, body| match *method {
            Method::PATCH if path.ends_with("/configmaps/r1-spec") => (200, body.clone()),
            Method::PATCH if path.contains("/jobs/") => (
                403,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": forbidden, "reason": "Forbidden",
                       "details": {"name": "r1-runner-0", "group": "batch", "kind": "jobs"}, "code": 403}),
            ),
            Method::PATCH if path.ends_with("/loadtestruns/r1/status") => (200, run_json.clone()),
            Method::POST if path.contains("/events") => (201, body.clone()),
            Method::DELETE if path.ends_with("/jobs") => (200, empty_list("JobList", "batch/v1")),
            _ => panic!("unexpected {method} {path}"),
        });
        let action = reconcile_run(Arc::new(run), ctx.clone()).await.unwrap();
        drop(ctx);
        let seen = timeout_after_1s(mock).await;
        assert_eq!(action, Action::await_change());
        let jobs: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.method == Method::PATCH && s.uri.contains("/jobs/"))
            .collect();
        assert_eq!(jobs.len(), 1, "no further Job after the refusal");
        let patch = seen
            .iter()
            .find(|s| s.uri.contains("/loadtestruns/r1/status"))
            .expect("the run's status is written");
        assert!(
            patch.uri.contains("fieldManager=ricochet-operator"),
            "{}",
            patch.uri
        );
        assert_eq!(patch.body["metadata"]["resourceVersion"], "7");
        let status = &patch.body["status"];
        let message = format!("cannot create Job r1-runner-0 (HTTP 403): {forbidden}");
        assert_eq!(status["phase"], "Failed");
        assert_eq!(status["message"], message.as_str());
        assert_eq!(condition(status, "Failed")["reason"], "CreateRefused");
        assert_eq!(condition(status, "Passed")["status"], "False");
        assert_eq!(condition(status, "Finished")["status"], "True");
        let event = seen.iter().find(|s| s.uri.contains("/events")).unwrap();
        assert_eq!(event.body["type"], "Warning");
        assert_eq!(event.body["reason"], "CreateRefused");
        assert_eq!(event.body["note"], message.as_str());
        // The runner Jobs that may exist are deleted.
        assert!(
            seen.iter()
                .any(|s| s.method == Method::DELETE && s.uri.contains("/jobs?")),
            "{seen:?}"
        );
    }

    // See: #18: an exceeded quota can heal (runs finish, the quota is raised): shown, retried.
    #[tokio::test]
    async fn an_exceeded_quota_is_shown_in_the_status_and_retried_without_failing_the_run() {
        let quota = "jobs.batch \"r1-runner-0\" is forbidden: exceeded quota: batch-quota, requested: count/jobs.batch=1, used: count/jobs.batch=10, limited: count/jobs.batch=10";
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let run = test_run("r1", inline(api_spec()));
        let run_json = serde_json::to_value(&run).unwrap();
        let mock = server.serve(move |method, path, body| match *method {
            Method::PATCH if path.ends_with("/configmaps/r1-spec") => (200, body.clone()),
            Method::PATCH if path.contains("/jobs/") => (
                403,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": quota, "reason": "Forbidden", "code": 403}),
            ),
            Method::PATCH if path.ends_with("/loadtestruns/r1/status") => (200, run_json.clone()),
            Method::POST if path.contains("/events") => (201, body.clone()),
            _ => panic!("unexpected {method} {path}"),
        });
        let action = reconcile_run(Arc::new(run), ctx.clone()).await.unwrap();
        drop(ctx);
        let seen = timeout_after_1s(mock).await;
        assert_eq!(action, Action::requeue(Duration::from_secs(10)));
        let status = &seen
            .iter()
            .find(|s| s.uri.contains("/loadtestruns/r1/status"))
            .expect("the run's status is written")
            .body["status"];
        assert_eq!(status["phase"], Value::Null, "not failed: {status}");
        assert_eq!(
            status["message"],
            format!("cannot create Job r1-runner-0 (HTTP 403): {quota}; retrying")
        );
        assert_eq!(condition(status, "Started")["reason"], "CreateFailed");
        let event = seen.iter().find(|s| s.uri.contains("/events")).unwrap();
        assert_eq!(event.body["reason"], "CreateFailed");
    }

    // See: #18: `kubectl wait --for=condition=Finished` must return for a run that failed
    // before judging, too.
    #[tokio::test]
    async fn a_run_that_fails_is_finished_and_not_passed() {
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let mut run = test_run("r1", inline(api_spec()));
        run.status = Some(status_with(RunPhase::Running, 3, |_| RunnerPhase::Running));
        let mock = server.run(Scenario::RunnerFailed { n: 3, failed: 1 }, run.clone());
        reconcile_run(Arc::new(run), ctx).await.unwrap();
        let seen = timeout_after_1s(mock).await;
        let status = &seen[2].body["status"];
        assert_eq!(condition(status, "Finished")["status"], "True");
        assert_eq!(condition(status, "Finished")["reason"], "RunnerFailed");
        assert_eq!(condition(status, "Passed")["status"], "False");
    }

    // See: #18: a runner image that cannot be pulled showed only at the 600 s start timeout.
    #[tokio::test]
    async fn a_runner_pod_that_cannot_pull_its_image_is_shown_in_the_status_at_once() {
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let mut run = test_run("r1", inline(api_spec()));
        run.status = Some(status_with(RunPhase::Pending, 3, |_| RunnerPhase::Pending));
        let run_json = serde_json::to_value(&run).unwrap();
        let pull = "Back-off pulling image \"ricochet/loadgen:tset\": ErrImagePull: failed to pull and unpack image \"docker.io/ricochet/loadgen:tset\": not found";
        let mut pods = pod_list("r1", 3, "Pending");
        pods["items"][1]["status"]["containerStatuses"] = json!([{
            "name": "runner", "image": "ricochet/loadgen:tset", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": pull}}
        }]);
        let mock = server.serve(move |method, path, body| match *method {
            Method::GET if path == "/api/v1/namespaces/ricochet/pods" => (200, pods.clone()),
            Method::PATCH if path.ends_with("/loadtestruns/r1/status") => (200, run_json.clone()),
            Method::POST if path.contains("/events") => (201, body.clone()),
            _ => panic!("unexpected {method} {path}"),
        });
        let action = reconcile_run(Arc::new(run), ctx.clone()).await.unwrap();
        drop(ctx);
        let seen = timeout_after_1s(mock).await;
        assert_eq!(action, Action::requeue(Duration::from_secs(2)));
        let status = &seen
            .iter()
            .find(|s| s.uri.contains("/loadtestruns/r1/status"))
            .expect("the run's status is written")
            .body["status"];
        let why = format!("pod r1-runner-1-abcde ImagePullBackOff: {pull}");
        assert_eq!(status["phase"], "Pending");
        assert_eq!(status["runners"][1]["reason"], why.as_str());
        assert_eq!(
            status["message"],
            format!("runner pods not starting: runner 1: {why}")
        );
        let event = seen.iter().find(|s| s.uri.contains("/events")).unwrap();
        assert_eq!(event.body["type"], "Warning");
        assert_eq!(event.body["reason"], "RunnerNotStarting");
    }

    // See: #18: a runner pod that PodSecurity admission refuses never exists; the Job
    // controller says so in a FailedCreate Event, which the run now shows at once.
    #[tokio::test]
    async fn a_runner_pod_the_job_controller_cannot_create_is_shown_in_the_status_at_once() {
        let (ctx, server) = Context::test(FixedClock::at(NOW));
        let mut run = test_run("r1", inline(api_spec()));
        run.status = Some(status_with(RunPhase::Pending, 3, |_| RunnerPhase::Pending));
        let run_json = serde_json::to_value(&run).unwrap();
        let refused = "Error creating: pods \"r1-runner-1-x7k2p\" is forbidden: violates PodSecurity \"restricted:latest\": seccompProfile (pod or container \"runner\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")";
        // Runners 0 and 2 have pods; runner 1's cannot be created.
        let mut pods = pod_list("r1", 3, "Pending");
        pods["items"].as_array_mut().unwrap().remove(1);
        let events = json!({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [
            {"metadata": {"name": "r1-runner-1.1"}, "involvedObject": {"kind": "Job", "name": "r1-runner-1"},
             "reason": "FailedCreate", "message": refused, "lastTimestamp": "2026-11-21T02:00:20Z"},
            {"metadata": {"name": "other.1"}, "involvedObject": {"kind": "Job", "name": "other-runner-0"},
             "reason": "FailedCreate", "message": "exceeded quota", "lastTimestamp": "2026-11-21T02:00:21Z"}
        ]});
        let mock = server.serve(move |method, path, body| match *method {
            Method::GET if path == "/api/v1/namespaces/ricochet/pods" => (200, pods.clone()),
            Method::GET if path == "/api/v1/namespaces/ricochet/events" => (200, events.clone()),
            Method::PATCH if path.ends_with("/loadtestruns/r1/status") => (200, run_json.clone()),
            Method::POST if path.contains("/events") => (201, body.clone()),
            _ => panic!("unexpected {method} {path}"),
        });
        reconcile_run(Arc::new(run), ctx.clone()).await.unwrap();
        drop(ctx);
        let seen = timeout_after_1s(mock).await;
        let list = seen
            .iter()
            .find(|s| s.uri.starts_with("/api/v1/namespaces/ricochet/events"))
            .expect("the Job controller's Events are read");
        assert!(
            list.uri
                .contains("fieldSelector=involvedObject.kind%3DJob%2Creason%3DFailedCreate"),
            "{}",
            list.uri
        );
        let status = &seen
            .iter()
            .find(|s| s.uri.contains("/loadtestruns/r1/status"))
            .expect("the run's status is written")
            .body["status"];
        let why = format!("its Job cannot create the pod: {refused}");
        assert_eq!(status["runners"][1]["reason"], why.as_str());
        assert_eq!(status["runners"][2]["reason"], Value::Null);
        assert_eq!(
            status["message"],
            format!("runner pods not starting: runner 1: {why}")
        );
    }
}
