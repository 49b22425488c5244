//! A few thousand inputs per target, 0 panics and 0 hangs. `bench/fuzz.sh` runs a million
//! each; this is the regression net in the test command.

use std::time::Duration;

use ricochet_fuzz::{Config, Report, runner, targets};

/// Inputs per target in the test command: `RICOCHET_FUZZ_INPUTS` or a few thousand.
fn inputs(default: u64) -> u64 {
    std::env::var("RICOCHET_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fuzz(name: &str, default_inputs: u64) -> Report {
    let target = targets::find(name).unwrap_or_else(|| panic!("no target {name}"));
    let config = Config {
        inputs: inputs(default_inputs),
        seed: 1,
        // Generous: a debug build on a loaded 2-core machine. Release bounds are 1 s.
        hang: Duration::from_secs(5),
        abort_after: Duration::from_secs(120),
        findings: None,
        ..Config::default()
    };
    let report = runner::run(&target, &config);
    let findings: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
    assert_eq!(
        (report.panics, report.hangs),
        (0, 0),
        "{name}: {} panics and {} hangs in {} inputs\n{}",
        report.panics,
        report.hangs,
        report.inputs,
        findings.join("\n")
    );
    assert_eq!(report.inputs, config.inputs);
    assert!(
        report.outcomes > 1,
        "{name}: every input had the same outcome"
    );
    report
}

macro_rules! fuzz_tests {
    ($($test:ident: $name:literal, $inputs:literal;)*) => {
        $(
            #[test]
            fn $test() {
                fuzz($name, $inputs);
            }
        )*

        #[test]
        fn every_target_has_a_test_here() {
            let tested = [$($name),*];
            for t in targets::all() {
                assert!(tested.contains(&t.name), "target {} is not fuzzed by the tests", t.name);
            }
        }
    };
}

fuzz_tests! {
    threshold_expressions_never_panic: "threshold", 5_000;
    durations_never_panic: "duration", 5_000;
    scenario_files_never_panic_the_planner: "plan", 2_000;
    http1_responses_never_panic_the_client: "h1", 5_000;
    otlp_requests_never_panic_the_sink: "otlp", 5_000;
    expositions_never_panic: "exposition", 3_000;
    tempo_json_answers_never_panic: "tempo-json", 3_000;
    tempo_protobuf_answers_never_panic: "tempo-protobuf", 3_000;
    jaeger_answers_never_panic: "jaeger", 3_000;
    loki_answers_never_panic: "loki", 3_000;
    prometheus_answers_never_panic: "prometheus", 3_000;
    retry_after_headers_never_panic: "retry-after", 3_000;
    summaries_never_panic_report_or_compare: "summary", 1_000;
    compare_limits_never_panic: "compare-limits", 3_000;
    echo_server_requests_never_panic: "echo", 3_000;
    chaos_documents_never_panic: "chaos-spec", 3_000;
    resource_attributes_never_panic: "resource-attributes", 3_000;
}
