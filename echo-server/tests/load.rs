//! Bounded load through the real stack: 1 000 requests with a telemetry drop rate of 0.2
//! set through the admin API. Kept in its own test binary so it runs apart from the others.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::*;

const REQUESTS: usize = 1_000;
const CONCURRENCY: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_rate_point_two_loses_a_fifth_of_spans_and_logs_but_no_metrics() {
    let rx = Receiver::start().await;
    let log = Captured::default();
    let mut config = config(Some(rx.endpoint()), &log);
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    config.admin_token = echo_server::config::AdminToken::new("t");
    // Seeded (support::config sets 42) so the test cannot flake; the draws are still a real
    // PRNG stream (SplitMix64), and the hit count depends only on the seed, not on thread
    // scheduling.
    let server = serve(config).await;
    let (addr, admin) = (server.local_addr(), server.admin_addr().unwrap());
    let c = client();
    let put = http::Request::put(format!("http://{admin}/chaos"))
        .header("authorization", "Bearer t")
        .body(Full::new(Bytes::from_static(
            br#"{"telemetryDrop":{"rate":0.2}}"#,
        )))
        .unwrap();
    assert_eq!(send(&c, put).await.status, 200);

    let work = tokio::time::timeout(Duration::from_secs(60), async {
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..CONCURRENCY {
            let (c, next) = (c.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < REQUESTS {
                    assert_eq!(get(&c, addr, "/api/load", &[]).await.status, 200);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    work.await.expect("1 000 requests within 60 s");

    // Everything is flushed by shutdown; count after it.
    let metrics = get(&c, addr, "/metrics", &[]).await.text();
    let api_count: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("http_server_requests_total{") && l.contains("/api/{*path}"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        api_count, REQUESTS as u64,
        "the request counter counts dropped requests too"
    );
    server.shutdown().await.unwrap();

    let spans = rx.with(|r| {
        r.spans
            .iter()
            .filter(|s| s.name == "GET /api/{*path}")
            .count()
    });
    let otlp_logs = rx.with(|r| r.logs.len());
    let lines = log
        .lines()
        .into_iter()
        .filter(|l| l["route"] == "/api/{*path}")
        .count();
    let expect = 800usize;
    for (what, n) in [
        ("spans at the receiver", spans),
        ("request log lines", lines),
        ("OTLP logs", otlp_logs),
    ] {
        assert!(n.abs_diff(expect) <= 40, "{what}: {n}, expected 800 ± 40");
    }
    assert_eq!(spans, lines, "span and log are dropped together");
}
