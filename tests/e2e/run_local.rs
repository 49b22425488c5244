//! The local loop a user runs first, in-process: the shipped smoke scenario, the embedded
//! echo-server on loopback, the reports written and read back, and the run compared with
//! itself as a promotion gate would.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ricochet_engine::Overrides;
use ricochet_engine::run::{RunOptions, Stopper, execute};
use ricochet_reports::compare::{Limits, compare};
use ricochet_reports::model::{Outcome, Verdict};
use ricochet_reports::{Format, load_summary, render};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_scenario_runs_embedded_writes_reports_and_gates_against_itself() {
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/smoke.yaml");
    let overrides = Overrides {
        duration: Some(Duration::from_secs(2)),
        ..Overrides::default()
    };
    let plan = ricochet_engine::load_plan(&smoke, &overrides).expect("smoke.yaml is valid");
    let out = tempfile::tempdir().expect("tempdir");
    let opts = RunOptions {
        out: Some(out.path().to_owned()),
        ..RunOptions::default()
    };

    let report = execute(&plan, &opts, Arc::new(Stopper::new()))
        .await
        .expect("the run starts");

    assert_eq!(
        report.exit,
        ricochet_engine::Exit::Passed,
        "{:?}",
        report.message
    );
    for file in ["summary.json", "report.md", "report.html", "junit.xml"] {
        assert!(out.path().join(file).is_file(), "{file} written");
    }
    let summary = load_summary(&out.path().join("summary.json")).expect("summary reads back");
    assert_eq!(summary, report.summary);
    assert_eq!(summary.run.outcome, Outcome::Passed);
    assert!(summary.run.embedded);
    assert!(
        summary
            .thresholds
            .iter()
            .all(|t| t.verdict == Verdict::Pass)
    );
    // 2 s at 50 + 5 iterations per second: every planned request was issued.
    let issued = summary.metrics["http_reqs"].count + summary.dropped_iterations;
    assert_eq!(issued, 110, "{:?}", summary.metrics["http_reqs"]);

    // The embedded default verified the round trip: traces, logs and exemplars.
    let telemetry = summary
        .telemetry
        .as_ref()
        .expect("telemetry verified by default");
    assert_eq!(telemetry.signals.len(), 3);
    assert!(
        telemetry
            .signals
            .iter()
            .all(|s| s.missing == 0 && s.unknown == 0)
    );

    // One testcase per threshold and per verified signal.
    let junit = render(&summary, Format::Junit);
    assert_eq!(
        junit.matches("<testcase").count(),
        summary.thresholds.len() + telemetry.signals.len()
    );
    let gate = compare(
        &summary,
        &summary,
        &Limits::parse("p99=10%").expect("limits"),
    );
    assert!(!gate.has_regression());
}
