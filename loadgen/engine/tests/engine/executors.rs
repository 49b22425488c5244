//! VU executors, streaming, HTTP/2, abortOnFail and trace headers, in-process against
//! loopback servers. One test at a time.

use std::collections::HashSet;
use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ricochet_engine::metric::Metric;
use ricochet_engine::plan::{Executor, TargetPlan};
use ricochet_engine::testing::{plan_with, scenario, stage, target, threshold};
use ricochet_engine::thresholds::{Aggregation, Comparison};
use ricochet_reports::model::{MetricSummary, Outcome, Summary, TrendStats, Verdict};

fn metric<'a>(s: &'a Summary, key: &str) -> &'a MetricSummary {
    s.metrics
        .get(key)
        .unwrap_or_else(|| panic!("metric {key} missing: {:?}", s.metrics.keys()))
}

fn trend(s: &Summary, key: &str) -> TrendStats {
    metric(s, key)
        .trend
        .unwrap_or_else(|| panic!("{key} has no values"))
}

#[test]
fn ramping_vus_follow_their_stages_closed_loop() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let mut sc = scenario("vus", 1.0, "/api/x?delay=50ms");
        sc.executor = Executor::RampingVus {
            start_vus: 0,
            stages: vec![stage(4.0, 2, None), stage(4.0, 2, None)],
        };
        let plan = plan_with(vec![sc]);
        let report = crate::support::run(&plan).await;
        let s = &report.summary;
        let n = metric(s, "http_reqs").count;
        // Ramp: ~2 VUs x 2 s x 20/s = 80; plateau: 4 x 2 s x 20/s = 160.
        assert!((120..=260).contains(&n), "requests {n}");
        assert_eq!(s.scenarios[0].vus, Some(4));
        assert_eq!(s.scenarios[0].executor, "ramping-vus");
        let first: u64 = s.scenarios[0]
            .time_series
            .iter()
            .take(1)
            .map(|p| p.requests)
            .sum();
        let third: u64 = s.scenarios[0]
            .time_series
            .iter()
            .skip(2)
            .take(1)
            .map(|p| p.requests)
            .sum();
        assert!(
            third > first,
            "more VUs, more requests: {first} then {third}"
        );
        assert_eq!(report.exit, ricochet_engine::Exit::Passed);
    });
}

#[test]
fn constant_vus_wait_for_each_response() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let mut sc = scenario("vus", 1.0, "/api/x?delay=100ms");
        sc.executor = Executor::ConstantVus {
            vus: NonZeroU32::new(2).expect("2"),
            duration: Duration::from_secs(2),
        };
        let report = crate::support::run(&plan_with(vec![sc])).await;
        let n = metric(&report.summary, "http_reqs").count;
        assert!(
            (24..=42).contains(&n),
            "2 VUs x 2 s / 100 ms = at most 40, got {n}"
        );
        assert!(trend(&report.summary, "http_req_duration").min >= 99.0);
    });
}

#[test]
fn streamed_requests_record_time_to_first_and_last_byte() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let mut sc = scenario("chat", 10.0, "/chat/stream?tokens=5&interval=40ms");
        sc.executor = Executor::ConstantArrivalRate {
            rate: 10.0,
            duration: Duration::from_secs(2),
        };
        sc.requests[0].method = http::Method::POST;
        sc.requests[0].stream = true;
        let report = crate::support::run(&plan_with(vec![sc])).await;
        let s = &report.summary;
        assert_eq!(metric(s, "http_req_failed").passes, Some(0));
        let stream = trend(s, "http_stream_duration{scenario:chat}");
        let waiting = trend(s, "http_req_waiting");
        assert!(stream.med >= 160.0, "4 intervals of 40 ms: {stream:?}");
        assert!(
            waiting.med < stream.med - 100.0,
            "first token well before the last: {waiting:?} vs {stream:?}"
        );
        assert!(metric(s, "data_received").count > 0);
    });
}

/// A server that records every request's trace headers (HTTP/1.1 and h2c).
async fn header_recorder() -> (
    std::net::SocketAddr,
    Arc<Mutex<Vec<(String, String, http::Version)>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    seen.lock().expect("lock").push((
                        h("traceparent"),
                        h("x-request-id"),
                        req.version(),
                    ));
                    async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[test]
fn every_request_carries_a_fresh_sampled_traceparent_over_http1_and_http2() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        for http2 in [false, true] {
            let (addr, seen) = header_recorder().await;
            let mut sc = scenario("api", 100.0, "/x");
            sc.executor = Executor::ConstantArrivalRate {
                rate: 100.0,
                duration: Duration::from_secs(1),
            };
            let mut plan = plan_with(vec![sc]);
            let mut t = target(&format!("http://{addr}"));
            if let TargetPlan::Url(u) = &mut t {
                u.http2 = http2;
                u.max_connections = NonZeroU32::new(4).expect("4");
            }
            plan.target = t;
            let report = crate::support::run(&plan).await;
            assert_eq!(metric(&report.summary, "http_reqs").count, 100);
            assert_eq!(metric(&report.summary, "http_req_failed").passes, Some(0));
            let seen = seen.lock().expect("lock").clone();
            assert_eq!(seen.len(), 100);
            let want = if http2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            };
            assert!(seen.iter().all(|(_, _, v)| *v == want));
            let trace_ids: HashSet<&str> = seen.iter().map(|(tp, _, _)| &tp[3..35]).collect();
            let request_ids: HashSet<&str> = seen.iter().map(|(_, id, _)| id.as_str()).collect();
            assert_eq!(trace_ids.len(), 100);
            assert_eq!(request_ids.len(), 100);
            assert!(
                seen.iter().all(|(tp, _, _)| tp.len() == 55
                    && tp.starts_with("00-")
                    && tp.ends_with("-01"))
            );
        }
    });
}

#[test]
fn abort_on_fail_stops_the_run_early_and_exits_1() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let mut sc = scenario("api", 20.0, "/api/slow?delay=20ms");
        sc.executor = Executor::ConstantArrivalRate {
            rate: 20.0,
            duration: Duration::from_secs(10),
        };
        sc.graceful_stop = Duration::from_secs(2);
        let mut plan = plan_with(vec![sc]);
        let mut th = threshold(
            Metric::HttpReqDuration,
            &[],
            Aggregation::Percentile(99.0),
            Comparison::Lt,
            1.0,
        );
        th.expression = "p(99)<1ms".into();
        th.abort_on_fail = true;
        th.delay_abort_eval = Duration::from_secs(1);
        plan.thresholds.push(th);
        let started = Instant::now();
        let report = crate::support::run(&plan).await;
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "aborted early: {:?}",
            started.elapsed()
        );
        let s = &report.summary;
        assert_eq!(report.exit, ricochet_engine::Exit::ThresholdFailed);
        assert_eq!(s.run.outcome, Outcome::Failed);
        assert!(
            s.run
                .stop_reason
                .as_deref()
                .is_some_and(|r| r.contains("abortOnFail")),
            "{:?}",
            s.run.stop_reason
        );
        assert_eq!(s.thresholds[0].verdict, Verdict::Fail);
    });
}

#[test]
fn start_time_delays_a_scenario_and_graceful_stop_cuts_off_slow_iterations() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let mut late = scenario("late", 20.0, "/api/x");
        late.start_time = Duration::from_secs(1);
        let mut slow = scenario("slow", 10.0, "/api/x?delay=5s");
        slow.graceful_stop = Duration::from_millis(500);
        let started = Instant::now();
        let report = crate::support::run(&plan_with(vec![late, slow])).await;
        let elapsed = started.elapsed();
        let s = &report.summary;
        // slow: 1 s of arrivals + 0.5 s graceful stop, then its 10 requests are cut off.
        assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
        assert_eq!(metric(s, "interrupted_iterations{scenario:slow}").count, 10);
        assert_eq!(metric(s, "http_reqs{scenario:late}").count, 20);
        let late_series = &s.scenarios[0].time_series;
        assert_eq!(
            late_series.first().map(|p| p.requests),
            Some(0),
            "nothing before startTime: {late_series:?}"
        );
        assert_eq!(s.scenarios[0].start_secs, 1.0);
    });
}
