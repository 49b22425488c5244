//! A run stops when its scenarios end, whatever the plan asks, and every way it can end
//! leaves a summary with the cause or refuses before anything starts. See: issue #15.
//! In-process against loopback servers, one load test at a time; wall-clock bounds are
//! generous (a loaded 2-core machine), the failures they catch are hours long.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ricochet_engine::Exit;
use ricochet_engine::metric::Metric;
use ricochet_engine::plan::{Executor, Plan};
use ricochet_engine::progress::{ProgressSink, Snapshot};
use ricochet_engine::run::{MAX_CONCURRENCY, RunError, RunOptions, RunOutcome, Stopper, execute};
use ricochet_engine::testing::{plan_with, scenario, stage, target, threshold};
use ricochet_engine::thresholds::{Aggregation, Comparison};
use ricochet_reports::model::{Outcome, Summary, Verdict};

fn count(s: &Summary, key: &str) -> u64 {
    s.metrics
        .get(key)
        .unwrap_or_else(|| panic!("metric {key} missing: {:?}", s.metrics.keys()))
        .count
}

/// Runs `plan`, failing the test when it is still running after `patience`.
async fn run_within(plan: &Plan, opts: &RunOptions, patience: Duration) -> (Summary, Exit) {
    let started = Instant::now();
    let report = tokio::time::timeout(patience, execute(plan, opts, Arc::new(Stopper::new())))
        .await
        .unwrap_or_else(|_| panic!("the run was still going after {patience:?}"))
        .expect("the run starts");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "the run took {took:?}");
    (report.summary, report.exit)
}

/// The error of a run that should have been refused before it started.
fn refused(result: Result<RunOutcome, RunError>) -> RunError {
    match result {
        Ok(outcome) => panic!("the run went ahead: {:?}", outcome.summary.run),
        Err(e) => e,
    }
}

#[test]
fn an_absurd_arrival_rate_stops_at_the_scenario_end_and_counts_the_rest_as_dropped() {
    // Before: 1e12/s for 1 s dispatched every planned arrival, for about 40 hours.
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let addr = crate::support::server_with(|_| Duration::ZERO).await;
        let mut constant = scenario("constant", 1e12, "/x");
        constant.executor = Executor::ConstantArrivalRate {
            rate: 1e12,
            duration: Duration::from_secs(1),
        };
        constant.max_in_flight = NonZeroU32::new(200).expect("200");
        let mut ramp = scenario("ramp", 0.0, "/x");
        ramp.executor = Executor::RampingArrivalRate {
            start_rate: 0.0,
            stages: vec![stage(1e12, 1, Some("up"))],
        };
        ramp.max_in_flight = NonZeroU32::new(200).expect("200");
        let mut plan = plan_with(vec![constant, ramp]);
        plan.target = target(&format!("http://{addr}"));
        let (s, _) = run_within(&plan, &RunOptions::default(), Duration::from_secs(60)).await;

        // Nothing lost, nothing extra: every planned arrival was either sent or dropped.
        for (name, planned) in [
            ("constant", 1_000_000_000_000u64),
            ("ramp", 500_000_000_000),
        ] {
            let sent = count(&s, &format!("http_reqs{{scenario:{name}}}"));
            let dropped = count(&s, &format!("dropped_iterations{{scenario:{name}}}"));
            assert_eq!(
                sent + dropped,
                planned,
                "{name}: {sent} sent, {dropped} dropped"
            );
            assert!(sent > 0, "{name} sent nothing");
        }
        assert_eq!(
            s.dropped_iterations,
            1_500_000_000_000 - count(&s, "http_reqs")
        );
    });
}

#[test]
fn no_vu_iteration_starts_after_the_scenario_end() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        // Each request takes 300 ms: at most 4 iterations start within 1 s per VU. A VU
        // that went on past the end would keep sending until gracefulStop (5 s) ran out.
        let seen = Arc::new(Mutex::new(None::<(Duration, Duration)>));
        let record = seen.clone();
        let addr = crate::support::server_with(move |elapsed| {
            let mut s = record.lock().unwrap_or_else(|p| p.into_inner());
            let (first, last) = s.unwrap_or((elapsed, elapsed));
            *s = Some((first.min(elapsed), last.max(elapsed)));
            Duration::from_millis(300)
        })
        .await;
        let mut sc = scenario("vus", 1.0, "/x");
        sc.executor = Executor::ConstantVus {
            vus: NonZeroU32::new(3).expect("3"),
            duration: Duration::from_secs(1),
        };
        sc.graceful_stop = Duration::from_secs(5);
        let mut plan = plan_with(vec![sc]);
        plan.target = target(&format!("http://{addr}"));
        let (s, exit) = run_within(&plan, &RunOptions::default(), Duration::from_secs(60)).await;
        assert_eq!(exit, Exit::Passed);
        let reqs = count(&s, "http_reqs");
        assert!((3..=12).contains(&reqs), "3 VUs x at most 4: {reqs}");
        let (first, last) = seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expect("requests arrived");
        // Within the second, with a generous allowance for a busy machine.
        assert!(
            last - first < Duration::from_millis(1500),
            "requests arrived from {first:?} to {last:?}"
        );
    });
}

#[test]
fn a_plan_beyond_the_process_concurrency_is_refused_before_anything_starts() {
    // Before: `vus: 4000000000` spawned a task per VU and died allocating, no summary.
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let out = tempfile::tempdir().expect("tempdir");
        let opts = RunOptions {
            out: Some(out.path().join("reports")),
            ..RunOptions::default()
        };
        let mut vus = scenario("vus", 1.0, "/x");
        vus.executor = Executor::ConstantVus {
            vus: NonZeroU32::new(4_000_000_000).expect("vus"),
            duration: Duration::from_secs(1),
        };
        let mut in_flight = scenario("api", 10.0, "/x");
        in_flight.max_in_flight = NonZeroU32::MAX;
        // maxInFlight first: were the check gone, that plan would merely run.
        for sc in [in_flight, vus] {
            let started = Instant::now();
            let e = refused(execute(&plan_with(vec![sc]), &opts, Arc::new(Stopper::new())).await);
            assert!(started.elapsed() < Duration::from_secs(5));
            assert!(matches!(e, RunError::Capacity { .. }), "{e}");
            assert_eq!(e.exit(), Exit::InvalidInput);
            let text = e.to_string();
            assert!(
                text.contains(&format!("holds at most {MAX_CONCURRENCY}")),
                "{text}"
            );
        }
        assert!(
            !out.path().join("reports").exists(),
            "refused before anything was written"
        );
        // Up to the bound, the plan runs.
        let mut sc = scenario("api", 10.0, "/x");
        sc.max_in_flight =
            NonZeroU32::new(u32::try_from(MAX_CONCURRENCY).expect("u32")).expect("bound");
        let report = execute(&plan_with(vec![sc]), &opts, Arc::new(Stopper::new()))
            .await
            .expect("at the bound the run starts");
        assert_eq!(report.exit, Exit::Passed, "{:?}", report.message);
    });
}

#[test]
fn an_output_directory_that_cannot_be_written_is_refused_before_the_run() {
    crate::support::runtime().block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").expect("file");
        let opts = RunOptions {
            out: Some(file.join("reports")),
            ..RunOptions::default()
        };
        let e = refused(
            execute(
                &plan_with(vec![scenario("api", 10.0, "/x")]),
                &opts,
                Arc::new(Stopper::new()),
            )
            .await,
        );
        assert!(matches!(e, RunError::Output { .. }), "{e}");
        assert_eq!(e.exit(), Exit::InvalidInput);
        assert!(
            e.to_string().starts_with(&format!(
                "cannot write reports into {}",
                file.join("reports").display()
            )),
            "{e}"
        );
    });
}

/// A progress sink that panics on the first tick: a bug inside the run's own task.
#[derive(Debug)]
struct PanickingProgress;

impl ProgressSink for PanickingProgress {
    fn update(&self, _snapshot: &Snapshot) {
        panic!("progress sink exploded on purpose");
    }
}

#[test]
fn a_panic_inside_the_run_still_writes_the_summary_with_the_cause() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let out = tempfile::tempdir().expect("tempdir");
        let opts = RunOptions {
            out: Some(out.path().to_owned()),
            progress: Arc::new(PanickingProgress),
            tick: Duration::from_millis(100),
            ..RunOptions::default()
        };
        let mut sc = scenario("api", 20.0, "/api/x");
        sc.executor = Executor::ConstantArrivalRate {
            rate: 20.0,
            duration: Duration::from_secs(3),
        };
        let mut plan = plan_with(vec![sc]);
        plan.thresholds = vec![threshold(
            Metric::HttpReqFailed,
            &[],
            Aggregation::Rate,
            Comparison::Lt,
            0.01,
        )];
        let report = tokio::time::timeout(
            Duration::from_secs(60),
            execute(&plan, &opts, Arc::new(Stopper::new())),
        )
        .await
        .expect("the run ends")
        .expect("the run started");
        assert_eq!(report.exit, Exit::RunFailed);
        let cause = "loadgen panicked during the run: progress sink exploded on purpose";
        assert_eq!(report.message.as_deref(), Some(cause));
        let written: Summary = serde_json::from_str(
            &std::fs::read_to_string(out.path().join("summary.json")).expect("summary.json"),
        )
        .expect("parses");
        assert_eq!(written.run.outcome, Outcome::Error);
        assert_eq!(written.run.exit_code, 3);
        assert_eq!(written.run.stop_reason.as_deref(), Some(cause));
        assert_eq!(written.thresholds[0].verdict, Verdict::Unknown);
        assert!(
            written.thresholds[0]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains(cause)),
            "{:?}",
            written.thresholds[0]
        );
    });
}
