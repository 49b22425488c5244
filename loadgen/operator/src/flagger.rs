//! Flagger's webhook protocol (`loadgen operator --flagger-addr`): a canary analysis gated
//! on a `LoadTestRun` against the canary.
//!
//! Flagger POSTs `{name, namespace, phase, checksum, metadata}` to each webhook of a
//! Canary's analysis and reads only the status code: 2xx advances, anything else halts
//! the step and counts a failed check (docs/gitbook/usage/webhooks.md). The payload does not
//! say which hook it is, so the webhook's `metadata` says it, with the LoadTest to run:
//!
//! | metadata | meaning |
//! | --- | --- |
//! | `hook` | the webhook's `type`: `pre-rollout`, `rollout`, `confirm-promotion`, `rollback`, ... |
//! | `loadtest` | the `LoadTest` to run |
//! | `namespace` | its namespace, where the run is created (default: the Canary's) |
//! | `target` | the canary's address, replacing the LoadTest's `target.url` (default: keep it) |
//!
//! One run per canary revision: the run's name is derived from the Canary's namespace,
//! name and `checksum` (plus the LoadTest and target), so retries and the repeated
//! `rollout` calls of every analysis interval find the run the first call created. The run
//! carries the LoadTest's spec inline (a snapshot, with `target.url` replaced and the
//! schedule dropped), so it needs no field beyond what a `LoadTestRun` already has.
//!
//! Answers: `pre-rollout` and `rollout` get 200 while the run is pending, running or passed
//! and 403 with the failed thresholds once it failed; `confirm-promotion` gets 200 only
//! when it passed and 403 while it runs (Flagger waits and asks again) or when it failed;
//! `rollback` gets 200 (roll back now) only when the run failed, else 409; other hooks
//! (`confirm-rollout`, `post-rollout`, `event`, ...) get a 200 no-op. A missing LoadTest is
//! a 404, a payload that cannot be used a 400, an unreachable API server a 502.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use ricochet_crds::{LoadTest, LoadTestRun, RunPhase};
use serde::Deserialize;

/// The one path Flagger posts to.
pub const PATH: &str = "/flagger";
/// The largest request body accepted (Flagger's payloads are a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;
pub use crate::gate::LABEL_GATE;
/// Annotation holding the key a run was created for (Canary, checksum, LoadTest, target).
pub const ANNOTATION_KEY: &str = "ricochet.dev/flagger-key";

/// How long a client may take to send its request head and body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A Flagger webhook payload (`CanaryWebhookPayload`).
#[derive(Debug, Clone, Deserialize)]
pub struct Payload {
    /// The Canary's name.
    pub name: String,
    /// The Canary's namespace.
    pub namespace: String,
    /// The Canary's phase (`Progressing`, `WaitingPromotion`, ...).
    #[serde(default)]
    pub phase: String,
    /// Hash of the Canary's last applied spec and tracked configs: one per revision.
    #[serde(default)]
    pub checksum: String,
    /// The webhook's `metadata`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// What a hook asks of its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// `pre-rollout`, `rollout`: start the run; fail only once it failed.
    Start,
    /// `confirm-promotion`: open only once the run passed.
    Promote,
    /// `rollback`: 2xx means "roll back now", so only once the run failed.
    Rollback,
}

/// The answer to one webhook call: a status and a sentence (Flagger shows the body of a
/// non-2xx answer in its failed-check log and Events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// A sentence.
    pub body: String,
}

impl Answer {
    fn new(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
        }
    }
}

/// The name of the run for `key` (see [`run_key`]): the Canary's name, shortened, and a
/// stable 48-bit FNV-1a hash of the key, short enough for the run's Job names.
pub fn run_name(canary: &str, key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let prefix: String = canary.chars().take(30).collect();
    format!(
        "{}-{:012x}",
        prefix.trim_end_matches(['-', '.']),
        hash & 0xffff_ffff_ffff
    )
}

/// What a run is reused for: the Canary (namespace, name, checksum), the LoadTest and the
/// target.
pub fn run_key(p: &Payload, lt_namespace: &str, load_test: &str, target: Option<&str>) -> String {
    format!(
        "canary={}/{} checksum={} loadtest={lt_namespace}/{load_test} target={}",
        p.namespace,
        p.name,
        p.checksum,
        target.unwrap_or("")
    )
}

/// The run for a canary revision ([`crate::gate::run_from_load_test`]), annotated with
/// the key it was made for and the Canary.
pub fn canary_run(
    lt: &LoadTest,
    name: &str,
    key: &str,
    p: &Payload,
    target: Option<&str>,
) -> Result<LoadTestRun, String> {
    let annotations = BTreeMap::from([
        (ANNOTATION_KEY.to_owned(), key.to_owned()),
        (
            "ricochet.dev/flagger-canary".to_owned(),
            format!("{}/{}", p.namespace, p.name),
        ),
        (
            "ricochet.dev/flagger-checksum".to_owned(),
            p.checksum.clone(),
        ),
    ]);
    crate::gate::run_from_load_test(lt, name, target, "flagger", annotations)
}

fn gate_of(hook: &str) -> Option<Gate> {
    match hook {
        "pre-rollout" | "rollout" => Some(Gate::Start),
        "confirm-promotion" => Some(Gate::Promote),
        "rollback" => Some(Gate::Rollback),
        _ => None,
    }
}

fn api_error(e: &kube::Error) -> Answer {
    Answer::new(
        StatusCode::BAD_GATEWAY,
        format!("cannot reach the Kubernetes API: {e}"),
    )
}

/// The answer for `gate` given the run's state.
fn judge(gate: Gate, run: &LoadTestRun) -> Answer {
    let id = format!(
        "LoadTestRun {}/{}",
        run.namespace().unwrap_or_default(),
        run.name_any()
    );
    let phase = run.status.as_ref().and_then(|s| s.phase);
    match (gate, phase) {
        (Gate::Rollback, Some(RunPhase::Failed)) => Answer::new(
            StatusCode::OK,
            format!("roll back: {id} failed: {}", crate::gate::failure(run)),
        ),
        (Gate::Rollback, _) => Answer::new(
            StatusCode::CONFLICT,
            format!("no rollback: {id} has not failed"),
        ),
        (_, Some(RunPhase::Failed)) => Answer::new(
            StatusCode::FORBIDDEN,
            format!("{id} failed: {}", crate::gate::failure(run)),
        ),
        (_, Some(RunPhase::Passed)) => Answer::new(StatusCode::OK, format!("{id} passed")),
        (Gate::Start, p) => Answer::new(
            StatusCode::OK,
            format!(
                "{id} is {}",
                p.map_or("created".into(), |p| format!("{p:?}"))
            ),
        ),
        (Gate::Promote, p) => Answer::new(
            StatusCode::FORBIDDEN,
            format!(
                "waiting: {id} is {}, promotion waits until it passes",
                p.map_or("created".into(), |p| format!("{p:?}"))
            ),
        ),
    }
}

/// Answers one webhook call with body `body`, creating or reusing the canary's run.
pub async fn answer(client: &Client, body: &[u8]) -> Answer {
    let p: Payload = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return Answer::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body is not a Flagger webhook payload ({{name, namespace, phase, checksum, metadata}}): {e}"
                ),
            );
        }
    };
    let Some(hook) = p.metadata.get("hook") else {
        // Event hooks carry Flagger's own metadata (eventType, eventMessage, timestamp).
        if p.metadata.contains_key("eventType") {
            return Answer::new(StatusCode::OK, "event ignored");
        }
        return Answer::new(
            StatusCode::BAD_REQUEST,
            "metadata.hook is missing: set it to the webhook's type (pre-rollout, rollout, confirm-promotion or rollback)",
        );
    };
    let Some(gate) = gate_of(hook) else {
        return Answer::new(StatusCode::OK, format!("nothing to do for a `{hook}` hook"));
    };
    let Some(load_test) = p.metadata.get("loadtest") else {
        return Answer::new(
            StatusCode::BAD_REQUEST,
            "metadata.loadtest is missing: name the LoadTest to run",
        );
    };
    if p.checksum.is_empty() {
        return Answer::new(
            StatusCode::BAD_REQUEST,
            "the payload has no checksum: ricochet keeps one run per canary revision and needs Flagger's `checksum` (sent by Flagger releases since fluxcd/flagger#1521)",
        );
    }
    let target = p.metadata.get("target").map(String::as_str);
    if let Some(t) = target
        && !(t.starts_with("http://") || t.starts_with("https://"))
    {
        return Answer::new(
            StatusCode::BAD_REQUEST,
            format!("metadata.target: `{t}` is not an http:// or https:// URL"),
        );
    }
    let ns = p.metadata.get("namespace").unwrap_or(&p.namespace).clone();
    let key = run_key(&p, &ns, load_test, target);
    let name = run_name(&p.name, &key);
    let runs: Api<LoadTestRun> = Api::namespaced(client.clone(), &ns);
    let tests: Api<LoadTest> = Api::namespaced(client.clone(), &ns);
    let lt = match tests.get_opt(load_test).await {
        Ok(Some(lt)) => lt,
        Ok(None) => {
            return Answer::new(
                StatusCode::NOT_FOUND,
                format!("LoadTest `{load_test}` does not exist in namespace `{ns}`"),
            );
        }
        Err(e) => return api_error(&e),
    };
    let existing = match runs.get_opt(&name).await {
        Ok(run) => run,
        Err(e) => return api_error(&e),
    };
    let run = match existing {
        Some(run) => run,
        None if gate == Gate::Rollback => {
            return Answer::new(
                StatusCode::CONFLICT,
                format!("no rollback: no LoadTestRun {ns}/{name} for this canary revision"),
            );
        }
        None => {
            let run = match canary_run(&lt, &name, &key, &p, target) {
                Ok(run) => run,
                Err(e) => return Answer::new(StatusCode::BAD_GATEWAY, e),
            };
            match runs.create(&PostParams::default(), &run).await {
                Ok(run) => {
                    tracing::info!(run = %name, canary = %format!("{}/{}", p.namespace, p.name), "created a run for a Flagger canary");
                    run
                }
                // A concurrent call created it first.
                Err(kube::Error::Api(e)) if e.code == 409 => match runs.get(&name).await {
                    Ok(run) => run,
                    Err(e) => return api_error(&e),
                },
                Err(e) => return api_error(&e),
            }
        }
    };
    if run.annotations().get(ANNOTATION_KEY) != Some(&key) {
        return Answer::new(
            StatusCode::CONFLICT,
            format!("LoadTestRun {ns}/{name} exists but was not created for {key}"),
        );
    }
    judge(gate, &run)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// One HTTP request: POST on [`PATH`] only, bodies up to [`MAX_BODY`].
async fn handle(
    client: Client,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != PATH {
        return Ok(text(
            StatusCode::NOT_FOUND,
            format!("Flagger webhooks are served on {PATH} only\n"),
        ));
    }
    if req.method() != Method::POST {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "Flagger webhooks are POST requests\n".into(),
        );
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return Ok(resp);
    }
    let body = Limited::new(req.into_body(), MAX_BODY);
    let bytes = match tokio::time::timeout(READ_TIMEOUT, body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY} bytes\n"),
            ));
        }
        Ok(Err(e)) => {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}\n"),
            ));
        }
        Err(_) => {
            return Ok(text(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time\n".into(),
            ));
        }
    };
    let a = answer(&client, &bytes).await;
    if !a.status.is_success() {
        tracing::info!(status = a.status.as_u16(), answer = %a.body, "Flagger webhook refused");
    }
    Ok(text(a.status, format!("{}\n", a.body)))
}

/// Serves Flagger's webhooks on `listener` until the task is dropped; each connection in
/// its own task.
pub async fn serve(listener: tokio::net::TcpListener, client: Client) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let client = client.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(client.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(sock), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "Flagger webhook connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    //! Every test here talks to the MOCK API server of `fixtures.rs`
    //! (`tower_test::mock::pair`), never to a cluster. Payloads are the ones of Flagger's
    //! docs/gitbook/usage/webhooks.md, with the metadata this module reads.

    use std::sync::Arc;

    use super::*;
    use crate::fixtures::{ApiServerVerifier, mock, not_found, test_load_test};
    use ricochet_crds::{LoadTestRunStatus, LoadTestSpec, ThresholdVerdict, Verdict};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LT_PATH: &str = "/apis/ricochet.dev/v1alpha1/namespaces/ricochet/loadtests/canary-smoke";
    const RUNS: &str = "/apis/ricochet.dev/v1alpha1/namespaces/ricochet/loadtestruns";

    fn payload(hook: &str, checksum: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "name": "podinfo",
            "namespace": "test",
            "phase": "Progressing",
            "checksum": checksum,
            "metadata": {
                "hook": hook,
                "loadtest": "canary-smoke",
                "namespace": "ricochet",
                "target": "http://podinfo-canary.test:9898"
            }
        }))
        .unwrap()
    }

    fn load_test() -> LoadTest {
        let spec: LoadTestSpec = serde_saphyr::from_str(
            "target: {url: 'http://podinfo.test:9898', http2: true, replicas: ['http://podinfo-headless.test:9898']}\nschedule: '0 2 * * *'\nscenarios:\n  - name: api\n    executor: constant-arrival-rate\n    rate: 10\n    duration: 1m\n    requests: [{name: root, path: /}]\nthresholds:\n  http_req_duration: ['p(99)<500ms']\n",
        )
        .unwrap();
        test_load_test("canary-smoke", spec)
    }

    fn key(checksum: &str) -> String {
        let p: Payload = serde_json::from_slice(&payload("rollout", checksum)).unwrap();
        run_key(
            &p,
            "ricochet",
            "canary-smoke",
            Some("http://podinfo-canary.test:9898"),
        )
    }

    /// The run the first call created, in `phase` (None: just created).
    fn existing_run(checksum: &str, phase: Option<RunPhase>, failed: bool) -> Value {
        let p: Payload = serde_json::from_slice(&payload("rollout", checksum)).unwrap();
        let k = key(checksum);
        let mut run = canary_run(
            &load_test(),
            &run_name("podinfo", &k),
            &k,
            &p,
            Some("http://podinfo-canary.test:9898"),
        )
        .unwrap();
        run.status = phase.map(|phase| LoadTestRunStatus {
            phase: Some(phase),
            message: failed.then(|| "a threshold failed".to_owned()),
            thresholds: vec![ThresholdVerdict {
                metric: "http_req_duration".into(),
                condition: "p(99)<500ms".into(),
                verdict: if failed { Verdict::Fail } else { Verdict::Pass },
                observed: Some(if failed { "812ms" } else { "120ms" }.into()),
                reason: None,
            }],
            ..LoadTestRunStatus::default()
        });
        serde_json::to_value(run).unwrap()
    }

    /// Answers `body` while `script` plays the API server; both under a 1 s timeout (a
    /// call the script does not answer hangs and fails the test).
    async fn call<F, Fut>(body: Vec<u8>, script: F) -> Answer
    where
        F: FnOnce(ApiServerVerifier) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (client, server) = mock();
        let script = tokio::spawn(script(server));
        let a = tokio::time::timeout(Duration::from_secs(1), answer(&client, &body))
            .await
            .expect("the answer came in time");
        tokio::time::timeout(Duration::from_secs(1), script)
            .await
            .expect("timeout on mock apiserver")
            .expect("the API calls were the expected ones");
        a
    }

    async fn expect_load_test(server: &mut ApiServerVerifier) {
        let lt = serde_json::to_value(load_test()).unwrap();
        server.expect(Method::GET, LT_PATH, |_| lt).await;
    }

    #[tokio::test]
    async fn pre_rollout_creates_the_run_from_the_load_test_against_the_canary() {
        let name = run_name("podinfo", &key("a1b2c3"));
        let created = Arc::new(std::sync::Mutex::new(Value::Null));
        let seen = Arc::clone(&created);
        let a = call(
            payload("pre-rollout", "a1b2c3"),
            move |mut server| async move {
                expect_load_test(&mut server).await;
                let (req, send) = server.next_raw().await;
                assert_eq!(req.uri().path(), format!("{RUNS}/{name}"));
                send.send_response(not_found());
                let s = server.expect(Method::POST, RUNS, |b| b.clone()).await;
                *seen.lock().unwrap() = s.body;
            },
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.body.contains("is created"), "{}", a.body);
        let run = created.lock().unwrap().clone();
        let spec = &run["spec"]["spec"];
        assert_eq!(spec["target"]["url"], "http://podinfo-canary.test:9898");
        assert_eq!(
            spec["target"]["http2"], true,
            "the LoadTest's other target settings stay"
        );
        assert!(spec["target"].get("replicas").is_none(), "{run}");
        assert!(spec.get("schedule").is_none(), "{run}");
        assert!(run["spec"].get("loadTestRef").is_none());
        assert_eq!(run["metadata"]["labels"][LABEL_GATE], "flagger");
        assert_eq!(
            run["metadata"]["annotations"][ANNOTATION_KEY],
            key("a1b2c3")
        );
        assert_eq!(
            run["metadata"]["ownerReferences"][0]["name"],
            "canary-smoke"
        );
        assert!(
            run["metadata"]["ownerReferences"][0]
                .get("blockOwnerDeletion")
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_repeated_rollout_call_reuses_the_run_and_never_creates_another() {
        let name = run_name("podinfo", &key("a1b2c3"));
        let a = call(payload("rollout", "a1b2c3"), move |mut server| async move {
            expect_load_test(&mut server).await;
            let run = existing_run("a1b2c3", Some(RunPhase::Running), false);
            server
                .expect(Method::GET, &format!("{RUNS}/{name}"), |_| run)
                .await;
            // No POST: a create would find no answer here and time out.
        })
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.body.ends_with("is Running"), "{}", a.body);
    }

    #[test]
    fn one_run_per_canary_revision() {
        assert_eq!(
            run_name("podinfo", &key("a1b2c3")),
            run_name("podinfo", &key("a1b2c3"))
        );
        assert_ne!(
            run_name("podinfo", &key("a1b2c3")),
            run_name("podinfo", &key("d4e5f6"))
        );
        let long = run_name(&"x".repeat(200), &key("a1b2c3"));
        // `<run>-runner-<i>` must stay a valid Job name (63 characters).
        assert!(long.len() + "-runner-99".len() <= 63, "{long}");
    }

    #[tokio::test]
    async fn a_failed_run_fails_rollout_and_promotion_with_the_failed_thresholds() {
        for hook in ["pre-rollout", "rollout", "confirm-promotion"] {
            let name = run_name("podinfo", &key("a1b2c3"));
            let a = call(payload(hook, "a1b2c3"), move |mut server| async move {
                expect_load_test(&mut server).await;
                let run = existing_run("a1b2c3", Some(RunPhase::Failed), true);
                server
                    .expect(Method::GET, &format!("{RUNS}/{name}"), |_| run)
                    .await;
            })
            .await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{hook}: {}", a.body);
            assert!(
                a.body
                    .contains("a threshold failed; http_req_duration p(99)<500ms: 812ms (Fail)"),
                "{hook}: {}",
                a.body
            );
        }
    }

    #[tokio::test]
    async fn confirm_promotion_waits_while_the_run_runs_and_opens_when_it_passed() {
        for (phase, status) in [
            (None, StatusCode::FORBIDDEN),
            (Some(RunPhase::Pending), StatusCode::FORBIDDEN),
            (Some(RunPhase::Running), StatusCode::FORBIDDEN),
            (Some(RunPhase::Passed), StatusCode::OK),
        ] {
            let name = run_name("podinfo", &key("a1b2c3"));
            let a = call(
                payload("confirm-promotion", "a1b2c3"),
                move |mut server| async move {
                    expect_load_test(&mut server).await;
                    let run = existing_run("a1b2c3", phase, false);
                    server
                        .expect(Method::GET, &format!("{RUNS}/{name}"), |_| run)
                        .await;
                },
            )
            .await;
            assert_eq!(a.status, status, "{phase:?}: {}", a.body);
        }
        // The passed run also passes rollout.
        let name = run_name("podinfo", &key("a1b2c3"));
        let a = call(payload("rollout", "a1b2c3"), move |mut server| async move {
            expect_load_test(&mut server).await;
            let run = existing_run("a1b2c3", Some(RunPhase::Passed), false);
            server
                .expect(Method::GET, &format!("{RUNS}/{name}"), |_| run)
                .await;
        })
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }

    #[tokio::test]
    async fn rollback_answers_2xx_only_for_a_failed_run() {
        for (phase, failed, status) in [
            (Some(RunPhase::Running), false, StatusCode::CONFLICT),
            (Some(RunPhase::Passed), false, StatusCode::CONFLICT),
            (Some(RunPhase::Failed), true, StatusCode::OK),
        ] {
            let name = run_name("podinfo", &key("a1b2c3"));
            let a = call(
                payload("rollback", "a1b2c3"),
                move |mut server| async move {
                    expect_load_test(&mut server).await;
                    let run = existing_run("a1b2c3", phase, failed);
                    server
                        .expect(Method::GET, &format!("{RUNS}/{name}"), |_| run)
                        .await;
                },
            )
            .await;
            assert_eq!(a.status, status, "{phase:?}: {}", a.body);
        }
        // No run yet: no rollback, and none is created.
        let a = call(payload("rollback", "a1b2c3"), |mut server| async move {
            expect_load_test(&mut server).await;
            let (_, send) = server.next_raw().await;
            send.send_response(not_found());
        })
        .await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    }

    #[tokio::test]
    async fn an_unknown_load_test_is_a_404_naming_it() {
        let a = call(payload("rollout", "a1b2c3"), |mut server| async move {
            let (req, send) = server.next_raw().await;
            assert_eq!(req.uri().path(), LT_PATH);
            send.send_response(not_found());
        })
        .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert_eq!(
            a.body,
            "LoadTest `canary-smoke` does not exist in namespace `ricochet`"
        );
    }

    #[tokio::test]
    async fn other_hooks_and_events_are_a_200_no_op_without_api_calls() {
        for hook in [
            "confirm-rollout",
            "post-rollout",
            "event",
            "confirm-traffic-increase",
        ] {
            let a = call(payload(hook, "a1b2c3"), |_| async {}).await;
            assert_eq!(a.status, StatusCode::OK, "{hook}: {}", a.body);
        }
        // The event payload of Flagger's docs: Flagger's metadata, no `hook`.
        let event = json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "metadata": {"eventMessage": "New revision detected", "eventType": "Normal", "timestamp": "1578607635167"}});
        let a = call(serde_json::to_vec(&event).unwrap(), |_| async {}).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }

    #[tokio::test]
    async fn unusable_payloads_are_a_400_saying_what_is_missing() {
        let cases: [(Value, &str); 5] = [
            (json!("not an object"), "not a Flagger webhook payload"),
            (
                json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "metadata": {"test": "all", "token": "16688eb5e9f289f1991c"}}),
                "metadata.hook is missing",
            ),
            (
                json!({"name": "podinfo", "namespace": "test", "checksum": "a1", "metadata": {"hook": "rollout"}}),
                "metadata.loadtest is missing",
            ),
            (
                json!({"name": "podinfo", "namespace": "test", "metadata": {"hook": "rollout", "loadtest": "canary-smoke"}}),
                "the payload has no checksum",
            ),
            (
                json!({"name": "podinfo", "namespace": "test", "checksum": "a1", "metadata": {"hook": "rollout", "loadtest": "canary-smoke", "target": "podinfo-canary:9898"}}),
                "metadata.target: `podinfo-canary:9898` is not an http:// or https:// URL",
            ),
        ];
        for (body, expected) in cases {
            let a = call(serde_json::to_vec(&body).unwrap(), |_| async {}).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
            assert!(a.body.contains(expected), "{body}: {}", a.body);
        }
    }

    /// The status line of the answer to `request`, sent raw to a real socket.
    async fn status_line(addr: std::net::SocketAddr, request: Vec<u8>) -> String {
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        sock.write_all(&request).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = sock.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    #[tokio::test]
    async fn the_server_takes_only_posts_on_its_path_and_bounds_the_body() {
        // The API server is the mock; none of these requests reaches it.
        let (client, _server) = mock();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, client));
        let get = b"GET /flagger HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec();
        assert_eq!(
            status_line(addr, get).await,
            "HTTP/1.1 405 Method Not Allowed"
        );
        let other =
            b"POST /other HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
                .to_vec();
        assert_eq!(status_line(addr, other).await, "HTTP/1.1 404 Not Found");
        let big = MAX_BODY + 1;
        let mut huge = format!(
            "POST /flagger HTTP/1.1\r\nhost: x\r\ncontent-length: {big}\r\nconnection: close\r\n\r\n"
        )
        .into_bytes();
        huge.extend(std::iter::repeat_n(b' ', big));
        assert_eq!(
            status_line(addr, huge).await,
            "HTTP/1.1 413 Payload Too Large"
        );
        let garbage = b"POST /flagger HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc".to_vec();
        assert_eq!(status_line(addr, garbage).await, "HTTP/1.1 400 Bad Request");
        server.abort();
    }
}
