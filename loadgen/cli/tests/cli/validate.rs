//! `loadgen validate` as a user runs it: exit codes, the OK line, and the exact error
//! sentence (file:line:column: field: what is wrong and what is valid) on stderr.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
}

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

const VALID: &str = "\
apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: cli}
spec:
  traffic: {gaBaselineRps: 100, multiplier: 2}
  scenarios:
    - name: api
      executor: constant-arrival-rate
      share: 0.5
      duration: 30s
      requests:
        - {name: orders, path: /api/orders}
  thresholds:
    http_req_duration{scenario:api}: [\"p(99)<800ms\"]
";

/// Writes `yaml` as `scenario.yaml` in a fresh directory and validates it from there, so the
/// file name in messages is the relative `scenario.yaml`.
fn validate_text(yaml: &str, flags: &[&str]) -> assert_cmd::assert::Assert {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scenario.yaml"), yaml).unwrap();
    loadgen()
        .current_dir(dir.path())
        .arg("validate")
        .arg("scenario.yaml")
        .args(flags)
        .assert()
}

#[test]
fn every_shipped_scenario_validates() {
    for name in [
        "smoke.yaml",
        "api-3x-ga.yaml",
        "trace-storm.yaml",
        "chaos-drill.yaml",
        "alert-drill.yaml",
        "checks/remote-write-lag.yaml",
        "checks/echo-server-red-slo.yaml",
    ] {
        loadgen()
            .arg("validate")
            .arg(scenarios().join(name))
            .assert()
            .success()
            .stdout(predicate::str::starts_with("OK "))
            .stderr("");
    }
}

#[test]
fn a_valid_file_prints_one_summary_line_and_exits_0() {
    validate_text(VALID, &[]).success().stdout(
        "OK scenario.yaml: cli: 1 scenario (api), target rate 100 req/s, duration 30s, 1 threshold, target embedded echo-server\n",
    );
}

#[test]
fn overrides_are_applied_to_the_summary() {
    validate_text(VALID, &["--multiplier", "3", "--duration", "5s"])
        .success()
        .stdout(predicate::str::contains(
            "target rate 150 req/s, duration 5s",
        ));
}

#[test]
fn each_invalid_input_exits_2_with_one_located_sentence() {
    let cases = [
        (
            VALID.replace("share: 0.5", "sahre: 0.5"),
            "scenario.yaml:9:7: spec.scenarios[0]: unknown field `sahre`, expected one of `name`, `executor`, `share`, `rate`, `startRate`, `vus`, `stages`, `duration`, `startTime`, `gracefulStop`, `maxInFlight`, `tags`, `requests`",
        ),
        (
            VALID.replace("share: 0.5", "rate: -3"),
            "scenario.yaml:9:7: spec.scenarios[0].rate: must be a finite number > 0 (iterations per second), got -3",
        ),
        (
            VALID.replace("duration: 30s", "duration: 5 minutes"),
            "scenario.yaml:10:7: spec.scenarios[0].duration: `5 minutes` is not a duration; expected a number and a unit (`us`, `ms`, `s`, `m` or `h`), e.g. `30s`, `1m30s` or `500ms`",
        ),
        (
            VALID.replace("p(99)<800ms", "p(99)<800 msec"),
            "scenario.yaml:14:39: spec.thresholds.http_req_duration{scenario:api}[0]: unknown unit `msec` in `p(99)<800 msec`, expected `us`, `ms`, `s` or `m` (no unit means `ms`)",
        ),
        (
            VALID.replace(
                "http_req_duration{scenario:api}",
                "http_req_duration{scenario=api}",
            ),
            "scenario.yaml:14:5: spec.thresholds.http_req_duration{scenario=api}: bad tag filter `{scenario=api}`, expected `{tag:value}` or `{tag:value,tag2:value}`",
        ),
        (
            VALID.replace("http_req_duration{", "http_req_time{"),
            "scenario.yaml:14:5: spec.thresholds.http_req_time{scenario:api}: unknown metric `http_req_time`, expected one of `http_reqs`, `http_req_duration`, `http_req_waiting`, `http_req_service_duration`, `http_req_schedule_lag`, `http_req_blocked`, `http_req_connecting`, `http_req_tls_handshaking`, `http_stream_duration`, `http_req_failed`, `iterations`, `dropped_iterations`, `interrupted_iterations`, `data_sent`, `data_received`, `telemetry_trace_missing`, `telemetry_log_missing`, `telemetry_metric_missing`, `telemetry_trace_incomplete`, `telemetry_trace_unknown`, `telemetry_log_unknown`, `telemetry_metric_unknown`, `telemetry_trace_ingest_latency`, `telemetry_log_ingest_latency`, `telemetry_metric_ingest_latency`, `telemetry_trace_query_duration`, `telemetry_log_query_duration`, `telemetry_metric_query_duration`, `telemetry_trace_export_wait`, `telemetry_log_export_wait`, `telemetry_trace_backend_latency`, `telemetry_log_backend_latency`, `query`, `alert_time_to_fire`, `alert_time_to_notify`, `alert_time_to_resolve`, `alert_unexpected`",
        ),
        (
            format!("{VALID}  telemetry:\n    sample: {{rate: 2}}\n"),
            "scenario.yaml:16:14: spec.telemetry.sample.rate: must be a fraction > 0 and <= 1, got 2",
        ),
        (
            format!(
                "{VALID}  telemetry:\n    traces: {{tempo: {{url: http://tempo:3200, bearerToken: {{}}}}}}\n"
            ),
            "scenario.yaml:16:46: spec.telemetry.traces.tempo.bearerToken: needs exactly one of `env` (a variable name) or `file` (a path); secrets are never written in the document",
        ),
        (
            format!(
                "{VALID}  telemetry:\n    expectKeep: [{{name: errors, status: 9xx, keep: 1}}]\n"
            ),
            "scenario.yaml:16:33: spec.telemetry.expectKeep[0].status: `9xx` is neither a status (100-599) nor a class such as `5xx`",
        ),
        (
            format!("{VALID}  chaos:\n    - {{at: 5s, fault: {{telemetryDropRate: 1.5}}}}\n"),
            "scenario.yaml:16:24: spec.chaos[0].fault.telemetryDropRate: must be a fraction between 0 and 1, got 1.5",
        ),
        (
            VALID
                .replace(
                    "http_req_duration{scenario:api}",
                    "telemetry_trace_missing{scenario:api}",
                )
                .replace("p(99)<800ms", "rate<0.01"),
            "scenario.yaml:14:5: spec.thresholds.telemetry_trace_missing{scenario:api}: `telemetry_trace_missing` takes no tag filter: telemetry metrics are judged over the whole run",
        ),
        (
            VALID.replace("  scenarios:\n", "  scenarios:\n   - oops\n"),
            "scenario.yaml:8:11: YAML syntax error: mapping values are not allowed in this context",
        ),
    ];
    for (yaml, sentence) in cases {
        validate_text(&yaml, &[])
            .code(2)
            .stdout("")
            .stderr(format!("error: {sentence}\n"));
    }
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    validate_text(VALID, &["--multiplier=-1"])
        .code(2)
        .stderr("error: --multiplier: must be a finite number > 0, got -1\n");
    validate_text(VALID, &["--duration", "ten seconds"])
        .code(2)
        .stderr(predicate::str::contains(
            "`ten seconds` is not a duration; expected a number and a unit",
        ));
}

#[test]
fn a_missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    loadgen()
        .current_dir(dir.path())
        .args(["validate", "nope.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with(
            "error: nope.yaml: cannot read the scenario file: ",
        ));
}

#[test]
fn the_readme_loadtest_example_validates() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let start = readme
        .find("```yaml\napiVersion")
        .expect("README has a LoadTest example")
        + 8;
    let end = start + readme[start..].find("```").unwrap();
    validate_text(&readme[start..end], &[])
        .success()
        .stdout(predicate::str::contains(
            "2 scenarios (api, chat), target rate 1200 req/s",
        ));
}

// See: issue #15, items 1 and 2: each of these validated (exit 0) or crashed.
#[test]
fn plan_bounds_exit_2_with_one_sentence_naming_the_limit() {
    let target = |url: &str| {
        VALID.replace(
            "  traffic:",
            &format!("  target: {{url: \"{url}\"}}\n  traffic:"),
        )
    };
    let body_file = |file: &str| {
        VALID.replace(
            "path: /api/orders}",
            &format!("path: /api/orders, bodyFile: {file}}}"),
        )
    };
    let cases: [(String, &[&str], &str); 8] = [
        (
            target("http://127.0.0.1:99999"),
            &[],
            "scenario.yaml:5:12: spec.target.url: `http://127.0.0.1:99999` has port 99999; a port is a number from 1 to 65535",
        ),
        (
            target("http://alice:s3cretpw@svc:8080"),
            &[],
            "scenario.yaml:5:12: spec.target.url: userinfo (`user:password@`) is not allowed in a URL; write `http://svc:8080` and send credentials in the requests' `headers` (e.g. `authorization`) instead",
        ),
        (
            VALID.replace("share: 0.5", "rate: 1e12"),
            &[],
            "scenario.yaml:9:7: spec.scenarios[0].rate: gives a peak rate of 1000000000000 req/s, more than the 1000000 req/s one loadgen process can drive; use `parallelism` to split the load across runners",
        ),
        (
            VALID.replace("duration: 30s", "duration: 100000000h"),
            &[],
            "scenario.yaml:10:7: spec.scenarios[0].duration: `100000000h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
        ),
        (
            body_file("/dev/zero"),
            &[],
            "scenario.yaml:12:45: spec.scenarios[0].requests[0].bodyFile: `/dev/zero` is an absolute path; a body file must lie in the scenario file's folder or below it (or pass `--allow-body-files-outside`)",
        ),
        (
            body_file("/dev/zero"),
            &["--allow-body-files-outside"],
            "scenario.yaml:12:45: spec.scenarios[0].requests[0].bodyFile: `/dev/zero` (resolved to `/dev/zero`) is a character device, not a regular file; a body file must be a regular file",
        ),
        (
            VALID.to_owned(),
            &["--multiplier", "1e308"],
            "scenario.yaml: --multiplier: 1e308 gives spec.scenarios[0] a peak rate of inf req/s (0.5 x gaBaselineRps 100 x multiplier 1e308), more than the 1000000 req/s one loadgen process can drive; use `parallelism` to split the load across runners",
        ),
        (
            VALID.to_owned(),
            &["--duration", "745h"],
            "--duration: `745h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
        ),
    ];
    for (yaml, flags, sentence) in cases {
        validate_text(&yaml, flags)
            .code(2)
            .stdout("")
            .stderr(format!("error: {sentence}\n"));
    }
}

#[test]
fn vu_scenarios_alone_are_summarised_without_a_rate() {
    let vus = VALID
        .replace("constant-arrival-rate", "constant-vus")
        .replace("share: 0.5", "vus: 7");
    validate_text(&vus, &[]).success().stdout(
        "OK scenario.yaml: cli: 1 scenario (api), 7 VUs, duration 30s, 1 threshold, target embedded echo-server\n",
    );
}
