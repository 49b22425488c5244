//! A run that measured nothing never passes: every request failed without an answer (held,
//! refused, reset) or none was sent ends in exit 3 with one sentence naming the cause and
//! the counts, and the reports say the same; each failure is counted by its cause.
//! See: issue "runs that measured nothing" ("A target that accepts connections and never
//! answers, with no thresholds" printed "✓ PASSED — all 0 thresholds passed", exit 0).
//!
//! In-process against loopback listeners, a few requests each, one load test at a time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ricochet_engine::Exit;
use ricochet_engine::plan::{Executor, Plan, TargetPlan};
use ricochet_engine::run::{RunOptions, RunOutcome, StopKind, Stopper, execute};
use ricochet_engine::testing::{plan_with, scenario, stage, target};
use ricochet_reports::model::{Outcome, Summary};
use tokio::net::TcpListener;

/// 10 requests in 1 s to `addr`, with a request timeout of `timeout`; no thresholds.
fn ten_requests(addr: SocketAddr, timeout: Duration) -> Plan {
    let mut plan = plan_with(vec![scenario("api", 10.0, "/x")]);
    plan.target = target(&format!("http://{addr}"));
    if let TargetPlan::Url(t) = &mut plan.target {
        t.timeout = timeout;
    }
    plan
}

/// Runs `plan` with its reports written into a temporary directory, bounded in time.
async fn run_with_reports(plan: &Plan, stopper: Stopper) -> (RunOutcome, tempfile::TempDir) {
    let out = tempfile::tempdir().expect("tempdir");
    let opts = RunOptions {
        out: Some(out.path().to_owned()),
        tick: Duration::from_millis(100),
        ..RunOptions::default()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        execute(plan, &opts, Arc::new(stopper)),
    )
    .await
    .expect("the run ends within a minute")
    .expect("the run starts");
    (report, out)
}

fn written(dir: &tempfile::TempDir) -> Summary {
    serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("summary.json")).expect("summary.json"),
    )
    .expect("summary.json parses")
}

fn causes(s: &Summary) -> BTreeMap<String, u64> {
    s.metrics["http_req_failed"].errors.clone()
}

/// Exit 3, the message, and the same sentence in summary.json, report.md and report.html.
fn assert_failed_with(report: &RunOutcome, out: &tempfile::TempDir, sentence: &str) {
    assert_eq!(report.exit, Exit::RunFailed, "{:?}", report.message);
    assert_eq!(report.message.as_deref(), Some(sentence));
    let s = written(out);
    assert_eq!(s.run.outcome, Outcome::Error);
    assert_eq!(s.run.exit_code, 3);
    assert_eq!(s.run.stop_reason.as_deref(), Some(sentence));
    let md = std::fs::read_to_string(out.path().join("report.md")).expect("report.md");
    assert!(md.contains(sentence), "{md}");
    let html = std::fs::read_to_string(out.path().join("report.html")).expect("report.html");
    assert!(
        html.contains("the run could not be carried out: no request"),
        "{html}"
    );
}

#[test]
fn a_target_that_accepts_connections_and_never_answers_exits_3_naming_the_timeouts() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        // Accepts every connection and holds it open, reading nothing, writing nothing.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let plan = ten_requests(addr, Duration::from_millis(300));
        let (report, out) = run_with_reports(&plan, Stopper::new()).await;
        holder.abort();
        assert_failed_with(
            &report,
            &out,
            &format!(
                "no request got an answer: 10 of 10 timed out after 300ms waiting on http://{addr} (0 refused, 0 reset)"
            ),
        );
        let s = written(&out);
        assert_eq!(causes(&s), BTreeMap::from([("timeout".to_owned(), 10)]));
        assert_eq!(
            s.metrics["http_req_failed{scenario:api}"].errors,
            causes(&s),
            "per scenario too"
        );
        assert_eq!(s.metrics["http_req_failed"].passes, Some(10));
    });
}

#[test]
fn a_target_that_refuses_connections_counts_them_as_refused_and_exits_3() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        // Takes the run's first connection (its reachability probe), then closes its port:
        // every request's connection is refused. The scenario starts after that.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _probe = listener.accept().await;
        });
        let mut plan = ten_requests(addr, Duration::from_secs(2));
        plan.scenarios[0].start_time = Duration::from_millis(500);
        let (report, out) = run_with_reports(&plan, Stopper::new()).await;
        assert_failed_with(
            &report,
            &out,
            &format!(
                "no request got an answer: 10 of 10 had their connection refused by http://{addr} (0 timed out, 0 reset)"
            ),
        );
        assert_eq!(
            causes(&written(&out)),
            BTreeMap::from([("refused".to_owned(), 10)])
        );
    });
}

#[test]
fn a_target_that_resets_every_connection_counts_them_as_reset_and_exits_3() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        // Holds the reachability probe's connection, then accepts each connection and
        // aborts it (SO_LINGER 0: a TCP reset).
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let resetter = tokio::spawn(async move {
            let _probe = listener.accept().await;
            while let Ok((socket, _)) = listener.accept().await {
                let _ = socket.set_zero_linger();
                drop(socket);
            }
        });
        let plan = ten_requests(addr, Duration::from_secs(2));
        let (report, out) = run_with_reports(&plan, Stopper::new()).await;
        resetter.abort();
        let message = report.message.clone().unwrap_or_default();
        let lead = format!(
            "no request got an answer: 10 of 10 had their connection reset or closed by http://{addr} ("
        );
        assert!(message.starts_with(&lead), "{message}");
        assert!(message.ends_with("; 0 timed out, 0 refused)"), "{message}");
        assert_failed_with(&report, &out, &message);
        assert_eq!(
            causes(&written(&out)),
            BTreeMap::from([("reset".to_owned(), 10)])
        );
    });
}

#[test]
fn one_answer_is_enough_and_the_failures_are_still_counted_by_cause() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        // Answers the first request of the first connection, holds every other one.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut held = Vec::new();
            let mut answered = false;
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                if !answered && matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {
                    answered = true;
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    continue;
                }
                held.push(socket);
            }
        });
        let plan = ten_requests(addr, Duration::from_millis(300));
        let (report, out) = run_with_reports(&plan, Stopper::new()).await;
        server.abort();
        // The probe's connection is accepted first; it sends nothing, so it is held, and
        // the first request gets the answer.
        assert_eq!(report.exit, Exit::Passed, "{:?}", report.message);
        let s = written(&out);
        assert_eq!(s.run.outcome, Outcome::Passed);
        assert_eq!(s.metrics["http_reqs"].count, 10);
        assert_eq!(causes(&s), BTreeMap::from([("timeout".to_owned(), 9)]));
    });
}

#[test]
fn a_run_that_sent_no_request_is_never_a_pass() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let addr = crate::support::server_with(|_| Duration::ZERO).await;
        // A ramp that stays at 0/s schedules no iteration at all.
        let mut sc = scenario("idle", 0.0, "/x");
        sc.executor = Executor::RampingArrivalRate {
            start_rate: 0.0,
            stages: vec![stage(0.0, 1, None)],
        };
        let mut plan = plan_with(vec![sc]);
        plan.target = target(&format!("http://{addr}"));
        let (report, out) = run_with_reports(&plan, Stopper::new()).await;
        let message = report.message.clone().unwrap_or_default();
        assert!(
            message.starts_with("no request was sent: the scenarios scheduled no iteration in "),
            "{message}"
        );
        assert_failed_with(&report, &out, &message);

        // Interrupted before anything was sent: the interruption is the cause.
        let plan = ten_requests(addr, Duration::from_secs(2));
        let stopper = Stopper::new();
        stopper.stop(
            StopKind::Interrupted,
            "interrupted by the test before the start",
        );
        let (report, out) = run_with_reports(&plan, stopper).await;
        assert_eq!(report.exit, Exit::RunFailed);
        assert_eq!(
            report.message.as_deref(),
            Some("interrupted by the test before the start")
        );
        let s = written(&out);
        assert_eq!(s.run.outcome, Outcome::Error);
        assert_eq!(s.metrics["http_reqs"].count, 0);
    });
}
