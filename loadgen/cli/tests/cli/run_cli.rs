//! `loadgen run` as a subprocess: exit codes, stderr sentences, summary.json on every exit
//! path. One run at a time; all load goes to 127.0.0.1, a few seconds each.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ricochet_reports::model::{Outcome, Summary, Verdict};

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
}

fn write_scenario(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("scenario.yaml");
    std::fs::write(&path, body).expect("write scenario");
    path
}

/// `loadgen run SCENARIO --out OUT`, to the end.
fn run_into(scenario: &Path, out: &Path) -> Output {
    loadgen()
        .arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run loadgen")
}

fn read_summary(dir: &Path) -> Summary {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json written");
    serde_json::from_str(&text).expect("summary.json parses as the Summary schema")
}

#[test]
fn a_failed_latency_threshold_exits_1_and_reports_the_observed_latency() {
    let _guard = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = write_scenario(
        dir.path(),
        r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: slow}
spec:
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 20
      duration: 3s
      gracefulStop: 5s
      requests: [{name: slow, method: GET, path: "/api/slow?delay=20ms"}]
  thresholds:
    http_req_duration: ["p(99)<1ms"]
"#,
    );
    let out = dir.path().join("out");
    let output = run_into(&scenario, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    let s = read_summary(&out);
    assert_eq!(s.run.outcome, Outcome::Failed);
    assert_eq!(s.run.exit_code, 1);
    assert!(s.run.embedded);
    let th = &s.thresholds[0];
    assert_eq!(th.verdict, Verdict::Fail);
    assert!(th.observed.is_some_and(|o| o >= 20.0), "{th:?}");
    assert_eq!(s.metrics["http_reqs"].count + s.dropped_iterations, 60);
    assert!(!output.stdout.is_empty(), "a summary table on stdout");
}

#[test]
fn a_closed_port_exits_3_with_a_clear_message_and_still_writes_the_summary() {
    let _guard = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = write_scenario(
        dir.path(),
        r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: nowhere}
spec:
  target: {url: "http://127.0.0.1:1"}
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 10
      duration: 2s
      requests: [{name: x, method: GET, path: /api/x}]
  thresholds:
    http_req_failed: ["rate<0.01"]
"#,
    );
    let out = dir.path().join("out");
    let output = run_into(&scenario, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "stderr: {stderr}");
    assert!(
        stderr.contains("cannot reach target http://127.0.0.1:1: connection refused"),
        "stderr: {stderr}"
    );
    let s = read_summary(&out);
    assert_eq!(s.run.outcome, Outcome::Error);
    assert_eq!(s.thresholds[0].verdict, Verdict::Unknown);
}

#[test]
fn sigint_at_half_time_stops_drains_and_writes_the_summary() {
    let _guard = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = write_scenario(
        dir.path(),
        r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: interrupted}
spec:
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 50
      duration: 8s
      gracefulStop: 5s
      requests: [{name: x, method: GET, path: "/api/x?delay=10ms"}]
  thresholds:
    http_req_failed: ["rate<0.01"]
"#,
    );
    let out = dir.path().join("out");
    let started = Instant::now();
    let mut child = loadgen()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn loadgen");
    std::thread::sleep(Duration::from_secs(4));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st.code();
        }
        assert!(
            Instant::now() < deadline,
            "loadgen did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    assert_eq!(code, Some(3), "an interrupted run is not a passed gate");
    assert!(
        elapsed < Duration::from_secs(8),
        "stopped early: {elapsed:?}"
    );
    let s = read_summary(&out);
    assert_eq!(s.run.outcome, Outcome::Error);
    assert!(
        s.run
            .stop_reason
            .as_deref()
            .is_some_and(|r| r.contains("SIGINT")),
        "{:?}",
        s.run.stop_reason
    );
    let reqs = s.metrics["http_reqs"].count;
    assert!(
        (100..400).contains(&reqs),
        "about half of 400 planned: {reqs}"
    );
}

#[test]
fn a_bad_flag_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = write_scenario(dir.path(), "kind: LoadTest\n");
    let output = loadgen()
        .arg("run")
        .arg(&scenario)
        .args(["--duration", "soon"])
        .output()
        .expect("run loadgen");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--duration"), "{stderr}");
}

#[test]
fn an_unset_credential_variable_exits_2_naming_the_field_and_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = write_scenario(
        dir.path(),
        r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: secret}
spec:
  scenarios:
    - {name: api, executor: constant-arrival-rate, rate: 10, duration: 1s, requests: [{name: x, method: GET, path: /api/x}]}
  telemetry:
    traces: {tempo: {url: "http://127.0.0.1:9", bearerToken: {env: RICOCHET_TEST_NEVER_SET_TOKEN}}}
"#,
    );
    let output = loadgen()
        .arg("run")
        .arg(&scenario)
        .env_remove("RICOCHET_TEST_NEVER_SET_TOKEN")
        .output()
        .expect("run loadgen");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("spec.telemetry.traces.tempo.bearerToken: environment variable `RICOCHET_TEST_NEVER_SET_TOKEN` is not set"),
        "{stderr}"
    );
}

#[test]
fn the_smoke_scenario_passes_against_the_embedded_echo_server() {
    let _guard = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/smoke.yaml");
    let output = loadgen()
        .arg("run")
        .arg(&smoke)
        .args(["--duration", "3s", "--out"])
        .arg(dir.path())
        .output()
        .expect("run loadgen");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let s = read_summary(dir.path());
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {stderr}\nthresholds: {:?}",
        s.thresholds
    );
    assert!(
        s.metrics
            .contains_key("http_stream_duration{scenario:chat}"),
        "{:?}",
        s.metrics.keys()
    );
    assert!(s.thresholds.iter().all(|t| t.verdict == Verdict::Pass));

    // Each second's overall point is the sum of the scenarios' points, and each
    // scenario's series adds up to its own request count (not its neighbours').
    for (i, overall) in s.time_series.iter().enumerate() {
        let per_scenario: u64 = s
            .scenarios
            .iter()
            .map(|sc| sc.time_series[i].requests)
            .sum();
        assert_eq!(overall.requests, per_scenario, "second {i}");
    }
    for sc in &s.scenarios {
        let series_total: u64 = sc.time_series.iter().map(|p| p.requests).sum();
        let key = format!("http_reqs{{scenario:{}}}", sc.name);
        assert_eq!(series_total, s.metrics[&key].count, "{}", sc.name);
    }
    let total: u64 = s.time_series.iter().map(|p| p.requests).sum();
    assert_eq!(total, s.metrics["http_reqs"].count);
}

/// On a terminal (a pseudo-terminal from util-linux `script`): a live progress bar with
/// the running counts, and the end-of-run summary in colour.
#[test]
fn on_a_terminal_the_run_shows_a_live_bar_and_a_coloured_summary() {
    let _guard = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = write_scenario(
        dir.path(),
        r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: tty}
spec:
  scenarios:
    - {name: api, executor: constant-arrival-rate, rate: 20, duration: 3s, requests: [{name: x, path: /api/x}]}
  thresholds:
    http_req_failed: ["rate<0.01"]
"#,
    );
    let command = format!(
        "{} run {}",
        env!("CARGO_BIN_EXE_loadgen"),
        scenario.display()
    );
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("util-linux `script` runs loadgen on a pseudo-terminal");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("] 1/3s") || text.contains("] 2/3s"),
        "no progress bar: {text}"
    );
    assert!(text.contains("req/s, 0 errors, 0 dropped, p99"), "{text}");
    // Colour codes around the verdict marks.
    assert!(
        text.contains("\u{1b}[32m✓"),
        "no coloured pass mark: {text}"
    );
}

/// See: issue #15. `vus: 4000000000` used to spawn a task per VU and die allocating,
/// without a summary; it is refused before the run starts, with a sentence and exit 2.
#[test]
fn a_plan_beyond_what_one_process_holds_is_refused_before_the_run_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = write_scenario(
        dir.path(),
        r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: huge}
spec:
  scenarios:
    - {name: vus, executor: constant-vus, vus: 4000000000, duration: 1s, requests: [{name: x, path: /api/x}]}
"#,
    );
    let out = dir.path().join("out");
    let started = Instant::now();
    let output = run_into(&scenario, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        stderr.starts_with("error: ") && stderr.contains("4000000000"),
        "{stderr}"
    );
    assert!(
        !out.join("summary.json").exists(),
        "refused before the run: no summary"
    );
}

#[test]
fn an_output_directory_that_cannot_be_written_exits_2_before_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = write_scenario(
        dir.path(),
        r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: nowhere-to-write}
spec:
  scenarios:
    - {name: api, executor: constant-arrival-rate, rate: 10, duration: 30s, requests: [{name: x, path: /api/x}]}
"#,
    );
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").expect("file");
    let started = Instant::now();
    let output = loadgen()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(file.join("out"))
        .output()
        .expect("run loadgen");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refused before the 30 s run"
    );
    assert!(
        stderr.starts_with(&format!(
            "error: cannot write reports into {}: ",
            file.join("out").display()
        )),
        "{stderr}"
    );
}
