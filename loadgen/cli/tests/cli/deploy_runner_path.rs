//! The runner path on loopback (issue 6): a run split exactly over N `loadgen runner`
//! processes — each given the whole spec, its index and the count, as the operator's Jobs
//! are — started together at one instant, whose partial results the operator's merge and
//! threshold code turns into one verdict: the same verdict, and the same number of requests
//! within sampling noise, as one process running the whole run.

use std::path::Path;
use std::process::Command;

use ricochet_crds::{LoadTest, LoadTestSpec, Verdict};
use ricochet_engine::{Overrides, Plan};
use ricochet_operator::partial::{Partial, counters, judge_merged, merge_run};

const SPEC: &str = "\
scenarios:
  - {name: api, executor: constant-arrival-rate, rate: 150, duration: 3s, gracefulStop: 2s,
     requests: [{name: get, path: /api/orders}]}
  - {name: echo, executor: constant-arrival-rate, rate: 30, duration: 3s, gracefulStop: 2s,
     requests: [{name: echo, path: /echo}]}
thresholds:
  http_req_duration{scenario:api}: [\"p(99)<800ms\"]
  http_req_failed: [\"rate<0.01\", {threshold: \"rate<0.05\", window: 1s}]
  http_reqs: [\"count>300\"]
  telemetry_trace_missing: [\"rate<0.003\"]
telemetry: {sample: {rate: 1}, settleTimeout: 10s}
";

/// Runs `spec` split over `n` runner processes; returns (verdict, http_reqs, traces
/// found by the runners' telemetry verification, merged).
fn run_split(dir: &Path, spec: &LoadTestSpec, plan: &Plan, n: u32) -> (Verdict, u64, u64) {
    // The whole spec, as the operator writes it into `<run>-spec`'s `loadtest.yaml`.
    let file = dir.join(format!("n{n}-loadtest.yaml"));
    std::fs::write(
        &file,
        serde_saphyr::to_string(&LoadTest::new("e2e", spec.clone())).unwrap(),
    )
    .unwrap();
    let start_at =
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(2);
    let children: Vec<_> = (0..n)
        .map(|i| {
            let result = dir.join(format!("n{n}-result-{i}.json"));
            let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
                .args(["runner", "--spec"])
                .arg(&file)
                .args(["--index", &i.to_string(), "--runners", &n.to_string()])
                .args(["--start-at", &start_at.to_string(), "--result-file"])
                .arg(&result)
                .spawn()
                .unwrap();
            (child, result)
        })
        .collect();
    let mut partials = Vec::new();
    for (i, (mut child, result)) in children.into_iter().enumerate() {
        assert!(child.wait().unwrap().success(), "runner {i} of {n} failed");
        let text = std::fs::read_to_string(&result).unwrap();
        partials.push(Partial::from_json(&text, i as u32).unwrap());
    }
    let merged = merge_run(plan, &partials).unwrap();
    assert!(
        merged.telemetry.is_some(),
        "every runner verified its samples"
    );
    let (verdicts, verdict) = judge_merged(plan, &merged);
    let windowed = verdicts
        .iter()
        .find(|v| v.metric == "http_req_failed" && v.condition == "rate<0.05")
        .expect("the windowed threshold");
    assert_eq!(
        windowed.verdict,
        Verdict::Pass,
        "judged per window: {windowed:?}"
    );
    assert!(
        windowed
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("windows passed")),
        "{windowed:?}"
    );
    let (stats, telemetry) = (merged.stats, merged.telemetry.unwrap());
    let missing = verdicts
        .iter()
        .find(|v| v.metric == "telemetry_trace_missing")
        .expect("judged on the merged tallies");
    assert_eq!(missing.verdict, Verdict::Pass, "{missing:?}");
    let traces = telemetry
        .signals
        .iter()
        .find(|(_, t)| t.signal == ricochet_verify::Signal::Traces)
        .map(|(_, t)| t.found)
        .unwrap_or(0);
    (verdict, counters(&stats)["http_reqs"], traces)
}

#[test]
fn three_runners_on_loopback_reach_the_verdict_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let spec: LoadTestSpec = serde_saphyr::from_str(SPEC).unwrap();
    let plan = Plan::from_spec("e2e", &spec, dir.path(), &Overrides::default()).unwrap();

    let (single_verdict, single_reqs, single_traces) = run_split(dir.path(), &spec, &plan, 1);
    let (split_verdict, split_reqs, split_traces) = run_split(dir.path(), &spec, &plan, 3);

    // 180 iterations/s for 3 s: 540 requests planned, whichever way it is split.
    for reqs in [single_reqs, split_reqs] {
        assert!((486..=594).contains(&reqs), "{reqs} requests, 540 planned");
    }
    // Every request sampled, every trace found, merged across the runners' tallies.
    assert_eq!(single_traces, single_reqs);
    assert_eq!(split_traces, split_reqs);
    assert_eq!(single_verdict, Verdict::Pass);
    assert_eq!(split_verdict, single_verdict);
}
