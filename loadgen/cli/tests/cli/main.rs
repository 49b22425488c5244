//! The `loadgen` binary's tests, as a user runs it (subprocesses of `CARGO_BIN_EXE_loadgen`):
//! exit codes, stderr sentences, written reports, the deploy manifests and the runner path,
//! a real Prometheus. Load tests take `support::one_at_a_time()`.

mod alert_drill;
mod canary;
mod compare_cli;
mod deploy_cli;
mod deploy_manifests;
mod deploy_runner_path;
mod exemplar_probes;
mod live_dashboard;
mod live_output;
mod monitoring_rules;
mod no_answer_cli;
mod prometheus_roundtrip;
mod report_cli;
mod run_cli;
mod support;
mod telemetry_roundtrip;
mod tempo_cli;
mod tempo_stub;
mod validate;
