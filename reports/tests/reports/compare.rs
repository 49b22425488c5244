//! Run comparison and `--max-regression` parsing.

use ricochet_reports::compare::{Allowance, Key, Limits, Status, compare};

use crate::fixture;

fn bump_p99(summary: &mut ricochet_reports::Summary, key: &str, factor: f64) {
    let t = summary
        .metrics
        .get_mut(key)
        .unwrap()
        .trend
        .as_mut()
        .unwrap();
    t.p99 *= factor;
}

#[test]
fn identical_runs_have_no_regression() {
    let run = fixture::realistic();
    let limits =
        Limits::parse("p50=0%,p95=0%,p99=0%,avg=0%,max=0%,error_rate=0pp,rps=0%,dropped=0")
            .unwrap();
    let c = compare(&run, &run, &limits);
    assert!(!c.has_regression(), "{}", c.to_text());
    assert!(c.rows.iter().all(|r| r.status == Status::Ok));
    assert_eq!(c.rows.len(), 3 * Key::ALL.len());
}

#[test]
fn p99_up_25_percent_with_a_10_percent_limit_is_a_regression_naming_the_metric() {
    let baseline = fixture::realistic();
    let mut current = baseline.clone();
    bump_p99(&mut current, "http_req_duration{scenario:api}", 1.25);
    let c = compare(&baseline, &current, &Limits::parse("p99=10%").unwrap());
    assert!(c.has_regression());
    let sentences = c.regression_sentences();
    assert_eq!(sentences.len(), 1, "{sentences:?}");
    assert_eq!(
        sentences[0],
        "p99 of http_req_duration{scenario:api} regressed: 34.80ms → 43.50ms (+25.0% (+8.70ms)), limit p99=10%"
    );
    assert!(
        c.to_text()
            .contains("p99 of http_req_duration{scenario:api} regressed")
    );
    assert!(c.to_markdown().contains("❌ **regressed**"));
    assert!(c.to_html().contains("<tr class=\"regressed\"><td>p99</td>"));
}

#[test]
fn p99_within_the_limit_is_not_a_regression() {
    let baseline = fixture::realistic();
    let mut current = baseline.clone();
    bump_p99(&mut current, "http_req_duration{scenario:api}", 1.09);
    assert!(!compare(&baseline, &current, &Limits::parse("p99=10%").unwrap()).has_regression());
}

#[test]
fn scoped_limit_overrides_the_run_wide_one_for_its_scenario() {
    let baseline = fixture::realistic();
    let mut current = baseline.clone();
    bump_p99(&mut current, "http_req_duration{scenario:chat}", 1.25);
    let limits = Limits::parse("p99=10%,p99{scenario:chat}=30%").unwrap();
    assert!(!compare(&baseline, &current, &limits).has_regression());
    let limits = Limits::parse("p99=30%,p99{scenario:chat}=10%").unwrap();
    let c = compare(&baseline, &current, &limits);
    let regressed: Vec<_> = c.regressions().map(|r| r.label()).collect();
    assert_eq!(regressed, ["p99 of http_req_duration{scenario:chat}"]);
}

#[test]
fn error_rate_is_limited_in_percentage_points_and_rps_by_relative_drop() {
    let baseline = fixture::realistic();
    let mut current = baseline.clone();
    current.metrics.get_mut("http_req_failed").unwrap().rate += 0.002; // +0.2pp
    current.metrics.get_mut("http_reqs").unwrap().rate *= 0.9; // -10%
    let c = compare(
        &baseline,
        &current,
        &Limits::parse("error_rate=0.1pp,rps=5%").unwrap(),
    );
    let regressed: Vec<_> = c.regressions().map(|r| (r.key, r.delta_text())).collect();
    assert_eq!(
        regressed,
        [
            (Key::ErrorRate, "+0.200pp".to_owned()),
            (Key::Rps, "-10.0%".to_owned())
        ]
    );
    assert!(
        !compare(
            &baseline,
            &current,
            &Limits::parse("error_rate=0.3pp,rps=15%").unwrap()
        )
        .has_regression()
    );
}

#[test]
fn limits_parse_every_key_and_scope() {
    let l = Limits::parse(
        " p50=1%, p95=2.5% ,p99{scenario:a,b}=3%,avg=4%,max=5%,error_rate=0.1pp,rps=5%,dropped=10",
    )
    .unwrap();
    assert_eq!(l.limits.len(), 8);
    assert_eq!(l.limits[2].scenario.as_deref(), Some("a,b"));
    assert_eq!(l.limits[5].allowance, Allowance::Points(0.1));
    assert_eq!(l.limits[7].allowance, Allowance::Count(10.0));
    assert_eq!(l.limits[2].to_string(), "p99{scenario:a,b}=3%");
    Limits::parse(Limits::DEFAULT_SPEC).unwrap();
}

#[test]
fn malformed_limits_get_clear_errors() {
    let cases = [
        (
            "p98=10%",
            "--max-regression \"p98=10%\": unknown metric key `p98`; valid keys: p50, p95, p99, avg, max (relative increase, e.g. p99=10%), error_rate (absolute increase in percentage points, e.g. error_rate=0.1pp), rps (relative drop, e.g. rps=5%), dropped (absolute increase, e.g. dropped=0); any key may be scoped, e.g. p99{scenario:api}=10%",
        ),
        (
            "p99",
            "--max-regression \"p99\": `p99` has no `=`; write KEY=VALUE, e.g. p99=10%",
        ),
        (
            "p99=10",
            "--max-regression \"p99=10\": `p99=10`: p99 takes a relative change in percent, e.g. p99=10%",
        ),
        (
            "p99=ten%",
            "--max-regression \"p99=ten%\": `p99=ten%`: `ten` is not a non-negative number",
        ),
        (
            "p99=-5%",
            "--max-regression \"p99=-5%\": `p99=-5%`: `-5` is not a non-negative number",
        ),
        (
            "error_rate=10%",
            "--max-regression \"error_rate=10%\": `error_rate=10%`: error_rate takes an absolute change in percentage points, e.g. error_rate=0.1pp (0.1pp allows 0.20% → 0.30%)",
        ),
        (
            "p99=10%,,rps=5%",
            "--max-regression \"p99=10%,,rps=5%\": item 2 is empty; write KEY=VALUE items separated by commas, e.g. p99=10%,error_rate=0.1pp",
        ),
        (
            "p99{region:eu}=10%",
            "--max-regression \"p99{region:eu}=10%\": `p99{region:eu}=10%`: only {scenario:NAME} scopes are supported, e.g. p99{scenario:api}=10%",
        ),
        (
            "p99=10%,p99=20%",
            "--max-regression \"p99=10%,p99=20%\": `p99=20%`: p99 is limited twice; give each key (and scope) once",
        ),
        (
            "dropped=5%",
            "--max-regression \"dropped=5%\": `dropped=5%`: dropped takes an absolute count of iterations, e.g. dropped=0",
        ),
    ];
    for (spec, expected) in cases {
        let err = Limits::parse(spec).unwrap_err();
        assert_eq!(err.to_string(), expected);
        assert_eq!(err.exit_code(), 2);
    }
}

#[test]
fn scenarios_in_one_run_only_are_noted_not_regressed() {
    let baseline = fixture::realistic();
    let mut current = baseline.clone();
    current.scenarios.remove(1);
    current.metrics.retain(|k, _| !k.contains("scenario:chat"));
    let c = compare(
        &baseline,
        &current,
        &Limits::parse("p99=10%,p99{scenario:gone}=1%").unwrap(),
    );
    assert!(!c.has_regression());
    assert_eq!(
        c.notes,
        [
            "scenario `chat` is only in the baseline",
            "limit `p99{scenario:gone}=1%` matches no scenario in either run"
        ]
    );
    assert!(c.rows.iter().any(|r| r.status == Status::Missing));
}

#[test]
fn comparison_text_matches_the_snapshot() {
    let baseline = fixture::realistic();
    let mut current = baseline.clone();
    bump_p99(&mut current, "http_req_duration{scenario:api}", 1.25);
    current.run.started_at = "2026-11-22T02:00:00Z".to_owned();
    let c = compare(
        &baseline,
        &current,
        &Limits::parse(Limits::DEFAULT_SPEC).unwrap(),
    );
    insta::assert_snapshot!("compare_text", c.to_text());
    insta::assert_snapshot!("compare_markdown", c.to_markdown());
}

/// The fixture as a run that could not be carried out: every request timed out.
fn errored() -> ricochet_reports::Summary {
    let mut s = fixture::realistic();
    s.run.outcome = ricochet_reports::model::Outcome::Error;
    s.run.exit_code = 3;
    s.run.stop_reason = Some(
        "no request got an answer: 12 of 12 timed out after 1s waiting on http://127.0.0.1:4100 (0 refused, 0 reset)"
            .to_owned(),
    );
    s
}

// See: issue "runs that measured nothing" (a comparison against an errored run said
// "no regression").
#[test]
fn a_current_run_that_could_not_be_carried_out_never_passes_whatever_its_numbers() {
    let baseline = fixture::realistic();
    let c = compare(&baseline, &errored(), &Limits::default());
    assert!(!c.has_regression(), "identical numbers: no row regressed");
    assert!(!c.passes());
    assert_eq!(
        c.unfit_sentences(),
        [
            "the current run could not be carried out (exit code 3): no request got an answer: 12 of 12 timed out after 1s waiting on http://127.0.0.1:4100 (0 refused, 0 reset)"
        ]
    );
    assert!(
        c.to_text()
            .starts_with("✗ NOT COMPARABLE — the current run could not be carried out"),
        "{}",
        c.to_text()
    );
    assert!(c.to_markdown().starts_with("## ❌ Not comparable: "));
    assert!(c.to_html().contains("<header class=\"failed\">"));
    // An errored baseline is no yardstick either.
    let c = compare(&errored(), &baseline, &Limits::default());
    assert!(!c.passes());
    assert!(c.unfit_sentences()[0].starts_with("the baseline run could not be carried out"));
}

#[test]
fn a_current_run_without_requests_never_passes() {
    let baseline = fixture::realistic();
    let mut current = baseline.clone();
    current.metrics.get_mut("http_reqs").unwrap().count = 0;
    let c = compare(&baseline, &current, &Limits::default());
    assert!(!c.passes());
    assert_eq!(
        c.unfit_sentences(),
        [
            "the current run has no requests (`http_reqs` is 0 or absent), so it measured nothing to compare"
        ]
    );
}

#[test]
fn a_metric_the_baseline_has_and_the_current_run_lacks_is_named() {
    let baseline = fixture::realistic();
    let mut current = baseline.clone();
    current.metrics.remove("telemetry_trace_ingest_latency");
    let c = compare(&baseline, &current, &Limits::default());
    assert!(!c.has_regression());
    assert!(!c.passes());
    assert_eq!(
        c.unfit_sentences(),
        ["the current run lacks `telemetry_trace_ingest_latency`, which the baseline has"]
    );
    // A trend present without values lacks them too; several are listed in one sentence.
    current
        .metrics
        .get_mut("http_req_duration{scenario:api}")
        .unwrap()
        .trend = None;
    let c = compare(&baseline, &current, &Limits::default());
    assert_eq!(
        c.unfit_sentences(),
        [
            "the current run lacks 2 metrics the baseline has: `http_req_duration{scenario:api}` (no values), `telemetry_trace_ingest_latency`"
        ]
    );
    // A metric only the current run has is no reason to fail.
    let c = compare(&current, &baseline, &Limits::default());
    assert!(c.passes(), "{:?}", c.unfit);
}

#[test]
fn the_metrics_of_a_scenario_gone_from_the_current_run_are_noted_not_missing() {
    let baseline = fixture::realistic();
    let mut current = baseline.clone();
    current.scenarios.remove(1);
    current.metrics.retain(|k, _| !k.contains("scenario:chat"));
    let c = compare(&baseline, &current, &Limits::default());
    assert!(c.passes(), "{:?}", c.unfit);
    assert_eq!(c.notes, ["scenario `chat` is only in the baseline"]);
}
