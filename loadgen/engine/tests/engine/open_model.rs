//! Open-model load tests, in-process, against loopback servers. One test at a time.
//! Tolerances hold on a busy 2-core machine: counts are exact by construction of the
//! schedule (issued + dropped = planned), latencies are compared with generous margins.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use ricochet_engine::metric::Metric;
use ricochet_engine::plan::{Executor, TargetPlan, TargetUrl};
use ricochet_engine::run::{RunOptions, Stopper, execute};
use ricochet_engine::testing::{plan_with, scenario, stage, target, threshold};
use ricochet_engine::thresholds::{Aggregation, Comparison};
use ricochet_engine::worker::Pacing;
use ricochet_reports::model::{Summary, Verdict};

fn metric<'a>(s: &'a Summary, key: &str) -> &'a ricochet_reports::model::MetricSummary {
    s.metrics
        .get(key)
        .unwrap_or_else(|| panic!("metric {key} missing: {:?}", s.metrics.keys()))
}

#[test]
fn constant_arrival_rate_2000_per_second_for_10s_issues_20000_requests() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let mut sc = scenario("api", 2000.0, "/api/x");
        sc.executor = Executor::ConstantArrivalRate {
            rate: 2000.0,
            duration: Duration::from_secs(10),
        };
        sc.graceful_stop = Duration::from_secs(30);
        let plan = plan_with(vec![sc]);
        let report = crate::support::run(&plan).await;
        let s = &report.summary;
        let reqs = metric(s, "http_reqs").count;
        let dropped = s.dropped_iterations;
        let interrupted = metric(s, "interrupted_iterations").count;
        // The schedule emits exactly 20 000 instants; each is either sent (and completes,
        // or is cut off after gracefulStop) or counted as dropped.
        assert_eq!(
            reqs + dropped + interrupted,
            20_000,
            "reqs {reqs} dropped {dropped}, series {:?}, stop {:?}",
            s.time_series,
            s.run.stop_reason
        );
        assert!((19_800..=20_200).contains(&reqs), "reqs {reqs}");
        assert_eq!(metric(s, "http_req_failed").passes, Some(0));
        assert_eq!(report.exit, ricochet_engine::Exit::Passed);
        let planned: f64 = s.time_series.iter().filter_map(|p| p.target_rps).sum();
        assert!((planned - 20_000.0).abs() < 1.0, "planned {planned}");
    });
}

#[test]
fn ramping_arrival_rate_follows_its_stages() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let mut sc = scenario("ramp", 1.0, "/api/x");
        sc.executor = Executor::RampingArrivalRate {
            start_rate: 50.0,
            stages: vec![
                stage(400.0, 4, Some("up")),
                stage(400.0, 3, Some("steady")),
                stage(100.0, 2, None),
            ],
        };
        let mut plan = plan_with(vec![sc]);
        let mut steady = threshold(
            Metric::HttpReqs,
            &[],
            Aggregation::Count,
            Comparison::Gt,
            1000.0,
        );
        steady.scope = ricochet_engine::thresholds::Scope::Phase("steady".into());
        plan.thresholds.push(steady);
        let report = crate::support::run(&plan).await;
        let s = &report.summary;
        // Integral: (50+400)/2*4 + 400*3 + (400+100)/2*2 = 900 + 1200 + 500 = 2600.
        let reqs = metric(s, "http_reqs").count;
        assert_eq!(reqs + s.dropped_iterations, 2600);
        // The schedule itself, not completion timing (which a starved machine shifts
        // between seconds): each second's planned rate is the stages' integral over it,
        // and every completion lands in exactly one second of the series.
        let series = &s.scenarios[0].time_series;
        let planned = [
            93.75, 181.25, 268.75, 356.25, 400.0, 400.0, 400.0, 325.0, 175.0,
        ];
        for (p, want) in series.iter().zip(planned) {
            let target = p.target_rps.expect("open model has a target per second");
            assert!(
                (target - want).abs() < 1e-6,
                "second {}: planned {target} vs {want} (series {series:?})",
                p.t
            );
        }
        assert!(series.len() >= planned.len(), "{series:?}");
        let in_series: u64 = series.iter().map(|p| p.requests).sum();
        assert_eq!(in_series, reqs, "{series:?}");
        // The steady phase holds 1200 planned arrivals.
        assert_eq!(
            s.thresholds[0].verdict,
            Verdict::Pass,
            "{:?}",
            s.thresholds[0]
        );
        assert_eq!(s.thresholds[0].observed, Some(1200.0));
        assert_eq!(s.scenarios[0].phases.len(), 2);
    });
}

#[test]
fn both_pacings_issue_the_whole_schedule_and_the_summary_says_which_ran() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let addr = crate::support::server_with(|_| Duration::ZERO).await;
        for pacing in [Pacing::Spin, Pacing::Sleep] {
            let mut sc = scenario("api", 1000.0, "/x");
            sc.executor = Executor::ConstantArrivalRate {
                rate: 1000.0,
                duration: Duration::from_secs(2),
            };
            let mut plan = plan_with(vec![sc]);
            plan.target = target(&format!("http://{addr}"));
            let opts = RunOptions {
                pacing,
                ..RunOptions::default()
            };
            let report = execute(&plan, &opts, Arc::new(Stopper::new()))
                .await
                .expect("run starts");
            let s = &report.summary;
            let reqs = metric(s, "http_reqs").count;
            assert_eq!(reqs + s.dropped_iterations, 2000, "{pacing:?}");
            assert_eq!(s.run.pacing.as_deref(), Some(pacing.name()));
            assert_eq!(metric(s, "http_req_schedule_lag").count, reqs);
            assert_eq!(report.exit, ricochet_engine::Exit::Passed, "{pacing:?}");
        }
    });
}

#[test]
fn max_in_flight_drops_iterations_and_does_not_understate_latency() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let addr = crate::support::server_with(|_| Duration::from_millis(200)).await;
        let mut sc = scenario("api", 1000.0, "/slow");
        sc.executor = Executor::ConstantArrivalRate {
            rate: 1000.0,
            duration: Duration::from_secs(3),
        };
        sc.max_in_flight = NonZeroU32::new(10).expect("10");
        let mut plan = plan_with(vec![sc]);
        plan.target = target(&format!("http://{addr}"));
        plan.thresholds.push(threshold(
            Metric::DroppedIterations,
            &[],
            Aggregation::Count,
            Comparison::Eq,
            0.0,
        ));
        let report = crate::support::run(&plan).await;
        let s = &report.summary;
        let reqs = metric(s, "http_reqs").count;
        assert_eq!(reqs + s.dropped_iterations, 3000);
        // 10 in flight x 200 ms → about 50 completions per second; the rest is dropped.
        assert!(
            s.dropped_iterations >= 2500,
            "dropped {}",
            s.dropped_iterations
        );
        assert_eq!(metric(s, "dropped_iterations").count, s.dropped_iterations);
        let d = metric(s, "http_req_duration").trend.expect("trend");
        assert!(d.min >= 199.0 && d.med >= 199.0, "{d:?}");
        assert_eq!(
            report.exit,
            ricochet_engine::Exit::ThresholdFailed,
            "count==0 on dropped_iterations fails"
        );
        assert!(s.time_series.iter().any(|p| p.dropped > 0));
    });
}

#[test]
fn waiting_for_a_full_connection_pool_is_blocked_time_not_schedule_lag() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        // Two connections to a 50 ms endpoint serve 40 requests a second; 100 arrive in
        // the first second, so most wait for a connection, up to about 1.5 s.
        let addr = crate::support::server_with(|_| Duration::from_millis(50)).await;
        let mut sc = scenario("api", 100.0, "/slow");
        sc.executor = Executor::ConstantArrivalRate {
            rate: 100.0,
            duration: Duration::from_secs(1),
        };
        let mut plan = plan_with(vec![sc]);
        plan.target = match target(&format!("http://{addr}")) {
            TargetPlan::Url(url) => TargetPlan::Url(TargetUrl {
                max_connections: NonZeroU32::new(2).expect("2"),
                ..url
            }),
            embedded => embedded,
        };
        let report = crate::support::run(&plan).await;
        let s = &report.summary;
        // An arrival the dispatcher reaches after the end (a busy machine) is dropped,
        // not sent late.
        let reqs = metric(s, "http_reqs").count;
        assert_eq!(reqs + s.dropped_iterations, 100);
        assert!(reqs >= 90, "{reqs} sent");
        let trend = |key| metric(s, key).trend.expect("trend");
        let (lag, blocked, duration) = (
            trend("http_req_schedule_lag"),
            trend("http_req_blocked"),
            trend("http_req_duration"),
        );
        // The generator started every iteration on time; the pool held them back.
        assert!(blocked.max >= 1000.0, "blocked {blocked:?}");
        assert!(lag.p99 < 100.0, "lag {lag:?}, blocked {blocked:?}");
        // The open-model latency counts the wait.
        assert!(
            duration.max >= blocked.max + 45.0,
            "{duration:?} {blocked:?}"
        );
    });
}

#[test]
fn a_stalling_target_shows_as_latency_where_a_closed_loop_hides_it() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        // Stalls for 1 s once per 10 s (seconds 5..6 of every 10), like a GC pause: every
        // request arriving in the stall is answered at its end.
        let addr = crate::support::server_with(|t| {
            let in_period = t.as_secs_f64() % 10.0;
            if (5.0..6.0).contains(&in_period) {
                Duration::from_secs_f64(6.0 - in_period)
            } else {
                Duration::ZERO
            }
        })
        .await;
        let mut open = scenario("open", 200.0, "/x");
        open.executor = Executor::ConstantArrivalRate {
            rate: 200.0,
            duration: Duration::from_secs(10),
        };
        let mut plan = plan_with(vec![open]);
        plan.target = target(&format!("http://{addr}"));
        let mut p99 = threshold(
            Metric::HttpReqDuration,
            &[],
            Aggregation::Percentile(99.0),
            Comparison::Lt,
            500.0,
        );
        p99.expression = "p(99)<500ms".into();
        plan.thresholds.push(p99.clone());
        let report = crate::support::run(&plan).await;
        let s = &report.summary;
        let d = metric(s, "http_req_duration").trend.expect("trend");
        assert!(
            d.p99 >= 500.0,
            "open model p99 {} ms must expose the 1 s stall",
            d.p99
        );
        assert_eq!(s.thresholds[0].verdict, Verdict::Fail);
        assert_eq!(report.exit, ricochet_engine::Exit::ThresholdFailed);

        // The same target measured closed-loop (one VU): the stall delays one request,
        // and the p99 hides it. (Why open model is the default.)
        let addr = crate::support::server_with(|t| {
            let in_period = t.as_secs_f64() % 10.0;
            if (5.0..6.0).contains(&in_period) {
                Duration::from_secs_f64(6.0 - in_period)
            } else {
                Duration::from_millis(2)
            }
        })
        .await;
        let mut closed = scenario("closed", 1.0, "/x");
        closed.executor = Executor::ConstantVus {
            vus: NonZeroU32::MIN,
            duration: Duration::from_secs(10),
        };
        let mut plan = plan_with(vec![closed]);
        plan.target = target(&format!("http://{addr}"));
        let report = crate::support::run(&plan).await;
        let d = metric(&report.summary, "http_req_duration")
            .trend
            .expect("trend");
        assert!(d.p99 < 500.0, "closed loop p99 {} ms", d.p99);
        assert!(
            d.max >= 500.0,
            "the stalled request itself was seen: max {}",
            d.max
        );
    });
}

#[test]
fn windowed_threshold_judges_every_window_and_names_the_failing_one() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        // Slow (120 ms) only during seconds 2..3 of the run.
        let addr = crate::support::server_with(|t| {
            if (2.0..3.0).contains(&t.as_secs_f64()) {
                Duration::from_millis(120)
            } else {
                Duration::ZERO
            }
        })
        .await;
        let mut sc = scenario("api", 100.0, "/x");
        sc.executor = Executor::ConstantArrivalRate {
            rate: 100.0,
            duration: Duration::from_secs(5),
        };
        let mut plan = plan_with(vec![sc]);
        plan.target = target(&format!("http://{addr}"));
        let mut whole = threshold(
            Metric::HttpReqDuration,
            &[("scenario", "api")],
            Aggregation::Percentile(50.0),
            Comparison::Lt,
            100.0,
        );
        whole.expression = "p(50)<100ms".into();
        let mut windowed = whole.clone();
        windowed.scope = ricochet_engine::thresholds::Scope::Window(Duration::from_secs(1));
        plan.thresholds = vec![whole, windowed];
        let report = crate::support::run(&plan).await;
        let s = &report.summary;
        assert_eq!(
            s.thresholds[0].verdict,
            Verdict::Pass,
            "{:?}",
            s.thresholds[0]
        );
        assert_eq!(
            s.thresholds[1].verdict,
            Verdict::Fail,
            "{:?}",
            s.thresholds[1]
        );
        let reason = s.thresholds[1].reason.clone().unwrap_or_default();
        // The slow second is 2..3 of the server's clock; completions that a starved
        // machine delays can move the first failing window by one either way.
        assert!(
            (2..=5).any(|w| reason.contains(&format!("window {w} "))),
            "{reason}"
        );
        assert!(s.thresholds[1].observed.is_some_and(|o| o >= 100.0));
        assert_eq!(s.thresholds[1].window_secs, Some(1.0));
    });
}
