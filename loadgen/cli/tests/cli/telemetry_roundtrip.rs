//! `loadgen run` with telemetry verification, end to end on loopback: the embedded
//! echo-server exports over real OTLP/gRPC to the embedded sink, exemplars are scraped
//! from its real `/metrics`, chaos goes through its real admin API. One run at a time
//! (a few seconds of load each, bounded by the scenario's duration).

use std::path::{Path, PathBuf};
use std::process::Command;

use ricochet_reports::model::{SignalSummary, Summary, Verdict};

fn run(dir: &Path, body: &str) -> (Option<i32>, Summary, String) {
    let scenario: PathBuf = dir.join("scenario.yaml");
    std::fs::write(&scenario, body).expect("write scenario");
    let out = dir.join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .output()
        .expect("run loadgen");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let text = std::fs::read_to_string(out.join("summary.json"))
        .unwrap_or_else(|e| panic!("summary.json not written ({e}); stderr: {stderr}"));
    let summary: Summary = serde_json::from_str(&text).expect("summary.json parses");
    (output.status.code(), summary, stderr)
}

fn signal<'a>(s: &'a Summary, name: &str) -> &'a SignalSummary {
    s.telemetry
        .as_ref()
        .expect("telemetry section")
        .signals
        .iter()
        .find(|x| x.signal == name)
        .unwrap_or_else(|| panic!("no {name} signal in {:?}", s.telemetry))
}

fn requests(s: &Summary) -> u64 {
    s.metrics["http_reqs"].count
}

#[test]
fn the_embedded_default_finds_every_sampled_trace_log_and_exemplar() {
    let _guard = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, s, stderr) = run(
        dir.path(),
        r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: roundtrip}
spec:
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 200
      duration: 3s
      requests:
        - {name: orders, path: /api/orders}
        - {name: storm, path: "/storm?width=3&depth=2"}
  telemetry:
    sample: {rate: 1}
    settleTimeout: 10s
  thresholds:
    telemetry_trace_missing: ["rate<0.001"]
    telemetry_trace_incomplete: ["rate<0.001"]
    telemetry_log_missing: ["rate<0.001"]
    telemetry_metric_missing: ["rate<0.001"]
    telemetry_trace_ingest_latency: ["p(95)<5s"]
"#,
    );
    assert_eq!(
        code,
        Some(0),
        "stderr: {stderr}; thresholds: {:#?}",
        s.thresholds
    );
    let n = requests(&s);
    assert!(n >= 590, "{n} requests");
    for name in ["traces", "logs"] {
        let sig = signal(&s, name);
        assert_eq!(sig.sampled, n, "{name}: every completed request sampled");
        assert_eq!(
            (sig.found, sig.missing, sig.unknown),
            (n, 0, 0),
            "{name}: {sig:?}"
        );
        assert!(sig.ingest_latency.is_some());
    }
    // /storm traces hold width x depth + 1 = 7 spans, all of them arrived.
    assert_eq!(signal(&s, "traces").incomplete, 0);
    // Exemplars are verified on the metric probes: each found, none excused.
    let metrics = signal(&s, "metrics");
    assert_eq!(metrics.missing, 0, "{metrics:?}");
    assert_eq!(metrics.unknown, 0, "{metrics:?}");
    assert_eq!(metrics.superseded, 0, "{metrics:?}");
    assert_eq!(metrics.found, metrics.sampled, "{metrics:?}");
    assert!(metrics.found > 0 && metrics.found <= n, "{metrics:?}");
    let exporter = &s.telemetry.as_ref().unwrap().exporter;
    let spans = exporter
        .iter()
        .find(|e| e.signal == "spans")
        .expect("span counters");
    assert!(spans.accepted >= n, "{exporter:?}");
    assert_eq!((spans.refused, spans.dropped), (0, 0), "{exporter:?}");
}

#[test]
fn a_5_percent_telemetry_drop_reads_as_exactly_the_injected_loss_and_fails_the_gate() {
    let _guard = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, s, stderr) = run(
        dir.path(),
        r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: drop}
spec:
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 1000
      duration: 11s
      requests: [{name: orders, path: /api/orders}]
  telemetry:
    sample: {rate: 1}
    settleTimeout: 10s
  chaos:
    - {at: 0s, fault: {telemetryDropRate: 0.05}}
  thresholds:
    telemetry_trace_missing: ["rate<0.003"]
"#,
    );
    assert_eq!(code, Some(1), "stderr: {stderr}");
    // Clearing the fault 10 s after setting it works, though the echo-server closed the
    // admin connection idle meanwhile.
    assert!(!stderr.contains("faults may still be active"), "{stderr}");
    let th = &s.thresholds[0];
    assert_eq!(th.verdict, Verdict::Fail, "{th:?}");
    // The echo-server's own count of the requests whose telemetry chaos dropped in this
    // run: the exact injected loss, in the unit the missing rates count.
    let t = s.telemetry.as_ref().unwrap();
    let source = t.exporter_source.as_ref().expect("run accounting read");
    assert!(source.requests >= 10_000, "{source:?}");
    let injected = source.chaos_dropped_requests as f64 / source.requests as f64;
    for name in ["traces", "logs"] {
        let sig = signal(&s, name);
        assert!(sig.sampled >= 10_000, "{name}: {} samples", sig.sampled);
        assert_eq!(sig.unknown, 0);
        let rate = sig.missing as f64 / sig.sampled as f64;
        // Within ±0.5 pp of the exact count, not of 5 %.
        assert!(
            (rate - injected).abs() <= 0.005,
            "{name}: missing rate {rate}, injected {injected} ({sig:?})"
        );
        assert_eq!(sig.missing_rate, Some(rate));
        // Every missing sample is one chaos dropped: none refused or lost by the pipeline.
        let split = sig.missing_split.expect("ledger split");
        assert_eq!(split.injected, sig.missing, "{name}: {split:?}");
        assert_eq!(
            split.refused + split.after_acceptance,
            0,
            "{name}: {split:?}"
        );
    }
    // The drop is recorded with its times; chaos's drops are injected loss, counted apart
    // from the export queue's drops.
    assert_eq!(s.chaos.len(), 1, "{:?}", s.chaos);
    assert_eq!(s.chaos[0].fault, "telemetryDropRate=0.05");
    assert!(s.chaos[0].end_secs >= 10.5, "{:?}", s.chaos);
    let spans = &t.exporter[0];
    assert!(spans.injected > 0 && spans.dropped == 0, "{spans:?}");
}

const SAMPLING: &str = r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: sampling}
spec:
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 500
      duration: 5s
      requests: [{name: orders, path: /api/orders}]
  telemetry:
    sample: {rate: 1}
    settleTimeout: 10s
    expectKeep:
      - {name: errors, status: 5xx, keep: 1.0}
      - {name: baseline, keep: BASELINE}
  chaos:
    - {at: 0s, fault: {errorRate: 0.1, errorStatus: 500}}
    - {at: 0s, fault: {telemetryDropRate: 0.9, statusClass: 2xx}}
  thresholds:
    telemetry_trace_missing: ["rate<0.003"]
"#;

#[test]
fn a_declared_sampling_policy_is_verified_per_class() {
    let _guard = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, s, stderr) = run(dir.path(), &SAMPLING.replace("BASELINE", "0.10"));
    assert_eq!(
        code,
        Some(0),
        "stderr: {stderr}; thresholds: {:#?}",
        s.thresholds
    );
    let traces = signal(&s, "traces");
    assert_eq!(traces.missing_rate, Some(0.0), "{traces:?}");
    let class = |name: &str| {
        traces
            .classes
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no class {name}: {traces:?}"))
    };
    let errors = class("errors");
    assert!(errors.samples >= 100, "{errors:?}");
    assert_eq!(errors.observed, Some(1.0));
    assert_eq!(errors.verdict, Verdict::Pass);
    let baseline = class("baseline");
    assert!(baseline.samples >= 1800, "{baseline:?}");
    let observed = baseline.observed.expect("observed");
    assert!((0.07..=0.13).contains(&observed), "{baseline:?}");
    assert!(baseline.lower.unwrap() <= 0.10 && 0.10 <= baseline.upper.unwrap());
    assert_eq!(baseline.verdict, Verdict::Pass);
    let keep = s
        .thresholds
        .iter()
        .find(|t| t.metric == "telemetry_trace_keep{class:baseline}")
        .expect("class verdict reported as a threshold");
    assert_eq!(keep.verdict, Verdict::Pass);

    // Declaring 0.5 for the same traffic fails, with the observed rate shown.
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, s, _) = run(dir.path(), &SAMPLING.replace("BASELINE", "0.5"));
    assert_eq!(code, Some(1));
    let keep = s
        .thresholds
        .iter()
        .find(|t| t.metric == "telemetry_trace_keep{class:baseline}")
        .expect("class verdict");
    assert_eq!(keep.verdict, Verdict::Fail);
    let reason = keep.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("observed keep 0.") && reason.contains("declared 0.5"),
        "{reason}"
    );
    assert!(keep.observed.is_some_and(|o| o < 0.15), "{keep:?}");
}

#[test]
fn an_unreachable_backend_reads_unknown_and_fails_closed_with_the_load_still_reported() {
    let _guard = crate::support::one_at_a_time();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, s, stderr) = run(
        dir.path(),
        &format!(
            r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {{name: down}}
spec:
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 50
      duration: 2s
      requests: [{{name: orders, path: /api/orders}}]
  telemetry:
    sample: {{rate: 1}}
    settleTimeout: 2s
    pollInterval: 200ms
    maxQueriesPerSecond: 200
    traces: {{tempo: {{url: "http://127.0.0.1:{port}"}}}}
  thresholds:
    telemetry_trace_missing: ["rate<0.003"]
    http_req_failed: ["rate<0.01"]
"#
        ),
    );
    assert_eq!(code, Some(1), "stderr: {stderr}");
    let th = &s.thresholds[0];
    assert_eq!(th.verdict, Verdict::Unknown, "{th:?}");
    let reason = th.reason.clone().unwrap_or_default();
    assert!(reason.contains("could not be checked"), "{reason}");
    assert_eq!(
        s.thresholds[1].verdict,
        Verdict::Pass,
        "the load itself is judged"
    );
    assert!(requests(&s) >= 90);
    let traces = signal(&s, "traces");
    assert_eq!(traces.missing, 0, "never missing: {traces:?}");
    assert_eq!(traces.unknown, traces.sampled);
    assert!(
        traces.unknown_reasons.keys().any(|r| r.contains("tempo")),
        "{:?}",
        traces.unknown_reasons
    );
}

/// A real echo-server with its admin API, in this process (its own runtime thread).
fn echo_server_with_admin(token: &str) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let (tx, rx) = std::sync::mpsc::channel();
    let token = token.to_owned();
    std::thread::spawn(move || {
        let rt = crate::support::runtime();
        rt.block_on(async move {
            let config = echo_server::Config {
                admin_listen: Some(([127, 0, 0, 1], 0).into()),
                admin_token: echo_server::config::AdminToken::new(token),
                ..echo_server::Config::default()
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = echo_server::start(config, listener).await.unwrap();
            tx.send((server.local_addr(), server.admin_addr().unwrap()))
                .unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("echo-server started")
}

fn active_chaos(admin: std::net::SocketAddr, token: &str) -> serde_json::Value {
    let body = crate::support::runtime().block_on(async {
        reqwest::Client::new()
            .get(format!("http://{admin}/chaos"))
            .bearer_auth(token)
            .send()
            .await
            .expect("admin GET")
            .text()
            .await
            .expect("body")
    });
    serde_json::from_str(&body).expect("chaos JSON")
}

#[test]
fn chaos_is_removed_when_the_run_is_interrupted_and_the_token_never_printed() {
    let _guard = crate::support::one_at_a_time();
    let token = "s3cret-admin-token-5f2b";
    let (addr, admin) = echo_server_with_admin(token);
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("scenario.yaml");
    std::fs::write(
        &scenario,
        format!(
            r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {{name: drill}}
spec:
  target:
    url: http://{addr}
    admin: {{url: "http://{admin}", token: {{env: RICOCHET_TEST_ADMIN_TOKEN}}}}
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 50
      duration: 20s
      gracefulStop: 2s
      requests: [{{name: orders, path: /api/orders}}]
  chaos:
    - {{at: 0s, fault: {{telemetryDropRate: 0.5, latency: 1ms}}}}
"#
        ),
    )
    .expect("write");
    let out = dir.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .env("RICOCHET_TEST_ADMIN_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn loadgen");
    // Applied while the load runs ...
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while active_chaos(admin, token).get("telemetryDrop").is_none() {
        assert!(std::time::Instant::now() < deadline, "chaos never applied");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(3));
    // ... and removed after SIGTERM.
    assert_eq!(active_chaos(admin, token), serde_json::json!({}));
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary written");
    let s: Summary = serde_json::from_str(&text).expect("parses");
    assert_eq!(s.chaos.len(), 1, "{:?}", s.chaos);
    assert_eq!(s.chaos[0].fault, "telemetryDropRate=0.5 latency=1ms");
    assert!(s.chaos[0].end_secs < 15.0, "{:?}", s.chaos);
    for written in [
        text,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ] {
        assert!(!written.contains(token), "the admin token leaked");
    }
}

#[test]
fn a_trace_storm_reports_complete_traces_exporter_counts_and_recovery() {
    let _guard = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, s, stderr) = run(
        dir.path(),
        r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: storm}
spec:
  scenarios:
    - name: storm
      executor: ramping-arrival-rate
      startRate: 20
      stages:
        - {name: baseline, target: 20, duration: 3s}
        - {name: storm, target: 60, duration: 1s}
        - {name: storm, target: 60, duration: 3s}
        - {name: recovery, target: 20, duration: 1s}
        - {name: recovery, target: 20, duration: 4s}
      requests: [{name: storm, path: "/storm?width=10&depth=5"}]
  telemetry:
    sample: {rate: 1}
    settleTimeout: 10s
  thresholds:
    telemetry_trace_missing: ["rate<0.003"]
    telemetry_trace_incomplete: ["rate<0.003"]
"#,
    );
    assert_eq!(
        code,
        Some(0),
        "stderr: {stderr}; thresholds: {:#?}",
        s.thresholds
    );
    let n = requests(&s);
    let traces = signal(&s, "traces");
    assert_eq!(
        (traces.found, traces.incomplete, traces.missing),
        (n, 0, 0),
        "{traces:?}"
    );
    let t = s.telemetry.as_ref().unwrap();
    let spans = t
        .exporter
        .iter()
        .find(|e| e.signal == "spans")
        .expect("span counters");
    // 51 spans per trace, all accepted by the sink; nothing refused or dropped.
    assert!(spans.accepted >= 51 * n, "{spans:?} for {n} traces");
    assert_eq!((spans.refused, spans.dropped), (0, 0), "{spans:?}");
    let recovery = t
        .recovery_secs
        .expect("recovery time after the storm phase");
    assert!((0.0..=5.0).contains(&recovery), "{recovery}");
    let counted = t.requests.as_ref().expect("RED cross-check");
    assert_eq!(counted.counted, counted.sent as f64, "{counted:?}");
}

// See: issue #14, acceptance "smoke run: exporter spans and logs equal the requests
// answered (550 -> 550), not twice".
#[test]
fn the_smoke_runs_exporter_counts_are_the_runs_own_requests_once() {
    let _guard = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let smoke = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/smoke.yaml"),
    )
    .expect("scenarios/smoke.yaml");
    let (code, s, stderr) = run(dir.path(), &smoke);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let n = requests(&s);
    assert!(n >= 500, "{n} requests");
    // Loadgen's own scrapes of /metrics and /healthz, and the probes' answers, are not
    // the run's workload: one span and one log record per request answered.
    for e in &s.telemetry.as_ref().unwrap().exporter {
        assert_eq!(e.accepted, n, "{e:?}");
        assert_eq!((e.refused, e.dropped), (0, 0), "{e:?}");
    }
}

// See: issue #14, acceptance "`sample: {rate: 0.1}` on the embedded default -> every
// sample found or missing, none excused".
#[test]
fn at_a_tenth_sampled_every_exemplar_probe_is_found_or_missing_none_excused() {
    let _guard = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, s, stderr) = run(
        dir.path(),
        r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: tenth}
spec:
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 200
      duration: 4s
      requests: [{name: orders, path: /api/orders}]
  telemetry:
    sample: {rate: 0.1}
    settleTimeout: 5s
  thresholds:
    telemetry_metric_missing: ["rate<0.003"]
"#,
    );
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let m = signal(&s, "metrics");
    // Probes do not depend on the sampling rate: dozens of them, each found, none
    // superseded (before, 15 of 16 sampled exemplars were excused as superseded).
    assert!(m.found >= 30, "{m:?}");
    assert_eq!((m.superseded, m.missing, m.unknown), (0, 0, 0), "{m:?}");
    assert_eq!(m.found, m.sampled, "{m:?}");
    let traces = signal(&s, "traces");
    let n = requests(&s);
    assert!(
        (traces.sampled as f64) > 0.05 * n as f64 && (traces.sampled as f64) < 0.15 * n as f64,
        "{} of {n} sampled",
        traces.sampled
    );
}
