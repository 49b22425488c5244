//! Run accounting end to end: requests tagged with `x-ricochet-run` against stub OTLP
//! collectors that refuse the exports of chosen traces (HTTP 429, gRPC RESOURCE_EXHAUSTED,
//! HTTP 500), and what `GET /runs/{run}` and `GET /runs/{run}/traces` then say, trace by
//! trace; chaos `telemetryDrop`; the `OTEL_BSP_*` / `OTEL_BLRP_*` batching; the replica
//! header; probes. Waits poll with `support::eventually` (patience from
//! `ECHO_TEST_PATIENCE_SECS`), never assert a duration.

mod support;

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use echo_server::contract::{
    Fate, PROBE_HEADER, REPLICA_HEADER, RUN_HEADER, RunAccount, RunExports, TraceFate, TraceFates,
};
use echo_server::{OtlpProtocol, Server};
use http_body_util::Full;
use support::*;

/// A trace id of the test's own, as 32 hex digits.
fn trace(n: u32) -> String {
    format!("{:032x}", 0x5eed_0000_0000_u128 + u128::from(n))
}

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-00f067aa0ba902b7-01")
}

async fn account(c: &HttpClient, server: &Server, run: &str) -> RunAccount {
    let r = get(c, server.local_addr(), &format!("/runs/{run}"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

async fn fates(c: &HttpClient, server: &Server, run: &str, ids: &[&str]) -> TraceFates {
    let path = format!("/runs/{run}/traces?ids={}", ids.join(","));
    let r = get(c, server.local_addr(), &path, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

/// The fate of `trace_id` once none of its items waits for an answer any more.
async fn settled(c: &HttpClient, server: &Server, run: &str, trace_id: &str) -> TraceFate {
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let f = fates(c, server, run, &[trace_id]).await;
        if let [fate] = &f.fates[..]
            && fate.spans.pending() == 0
            && fate.logs.pending() == 0
        {
            return fate.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{trace_id} of {run} never settled: {f:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn accepted(n: u32, acked_at: Option<u64>) -> Fate {
    Fate {
        emitted: n,
        accepted: n,
        acked_at_unix_nanos: acked_at,
        ..Fate::default()
    }
}

fn refused(n: u32) -> Fate {
    Fate {
        emitted: n,
        refused: n,
        ..Fate::default()
    }
}

/// A stub collector that refuses the exports of the traces in its [`Refuse`] set.
enum Stub {
    Grpc(Receiver),
    Http(HttpReceiver),
}

impl Stub {
    fn endpoint(&self) -> (String, OtlpProtocol) {
        match self {
            Self::Grpc(r) => (r.endpoint(), OtlpProtocol::Grpc),
            Self::Http(r) => (r.endpoint(), OtlpProtocol::HttpProtobuf),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Received) -> T) -> T {
        match self {
            Self::Grpc(r) => r.with(f),
            Self::Http(r) => r.with(f),
        }
    }

    /// Spans and log records of `trace_id` the stub accepted.
    fn accepted_of(&self, trace_id: &str) -> (usize, usize) {
        self.with(|r| {
            (
                r.spans
                    .iter()
                    .filter(|s| hex(&s.trace_id) == trace_id)
                    .count(),
                r.logs
                    .iter()
                    .filter(|l| hex(&l.trace_id) == trace_id)
                    .count(),
            )
        })
    }
}

/// Two runs against a stub that refuses every other request's exports (the test's choice
/// of trace ids; the stub refuses a trace's exports on every attempt, so the refusal is the
/// batch's final answer after retries). Each request is settled before the next is sent,
/// so that no batch carries two of them.
async fn refusals_are_attributed_per_trace_and_run(stub: Stub, refuse: Refuse, error: &str) {
    let log = Captured::default();
    let (endpoint, protocol) = stub.endpoint();
    let mut config = config(Some(endpoint), &log);
    if let Some(o) = &mut config.telemetry.otlp {
        o.protocol = protocol;
    }
    config.replica = Some("replica-a".into());
    let server = serve(config).await;
    let (c, addr) = (client(), server.local_addr());
    let started = unix_nanos();

    // run-a: four /api requests of one span and one log record each, every other refused.
    let a: Vec<String> = (0..4).map(trace).collect();
    for (i, t) in a.iter().enumerate() {
        if i % 2 == 1 {
            refuse.insert(t);
        }
        let r = get(
            &c,
            addr,
            "/api/orders",
            &[("traceparent", &traceparent(t)), (RUN_HEADER, "run-a")],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header(REPLICA_HEADER).as_deref(), Some("replica-a"));
        settled(&c, &server, "run-a", t).await;
    }
    // run-b: a /storm of 2 x 3 child spans (7 spans) accepted, an /echo refused.
    let (storm, echo) = (trace(10), trace(11));
    refuse.insert(&echo);
    for (path, t) in [("/storm?width=2&depth=3", &storm), ("/echo", &echo)] {
        let r = get(
            &c,
            addr,
            path,
            &[("traceparent", &traceparent(t)), (RUN_HEADER, "run-b")],
        )
        .await;
        assert_eq!(r.status, 200);
        settled(&c, &server, "run-b", t).await;
    }
    // Neither counted: an untagged request, and scrapes and probes that name a run.
    let untagged = trace(20);
    let r = get(
        &c,
        addr,
        "/api/x",
        &[("traceparent", &traceparent(&untagged))],
    )
    .await;
    assert_eq!(r.status, 200);
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(
            get(&c, addr, path, &[(RUN_HEADER, "run-a")]).await.status,
            200
        );
    }
    eventually("the untagged request's span and log at the stub", || {
        (stub.accepted_of(&untagged) == (1, 1)).then_some(())
    })
    .await;
    let acked_by = unix_nanos();

    let f = fates(
        &c,
        &server,
        "run-a",
        &[&a[0], &a[1], &a[2], &a[3], &storm, &untagged, "abc"],
    )
    .await;
    assert_eq!((f.replica.as_str(), f.run.as_str()), ("replica-a", "run-a"));
    assert_eq!(
        f.fates.len(),
        4,
        "only run-a's traces; run-b's, the untagged one and an unknown id are absent: {f:?}"
    );
    for (i, t) in a.iter().enumerate() {
        let fate = f.fates.iter().find(|x| &x.trace_id == t).unwrap();
        if i % 2 == 1 {
            assert_eq!((fate.spans, fate.logs), (refused(1), refused(1)), "{t}");
            assert_eq!(stub.accepted_of(t), (0, 0), "the stub never took {t}");
        } else {
            let at = |x: &Fate| {
                x.acked_at_unix_nanos
                    .filter(|&n| (started..=acked_by).contains(&n))
            };
            assert_eq!(fate.spans, accepted(1, at(&fate.spans)), "{t}");
            assert_eq!(fate.logs, accepted(1, at(&fate.logs)), "{t}");
            assert!(fate.spans.acked_at_unix_nanos.is_some(), "{fate:?}");
            assert_eq!(stub.accepted_of(t), (1, 1));
        }
    }
    let b = fates(&c, &server, "run-b", &[&storm, &echo, &a[0]]).await;
    assert_eq!(b.fates.len(), 2, "{b:?}");
    let storm_fate = b.fates.iter().find(|x| x.trace_id == storm).unwrap();
    assert_eq!(storm_fate.spans.accepted, 7);
    assert_eq!(
        (storm_fate.spans.emitted, storm_fate.spans.pending()),
        (7, 0)
    );
    assert_eq!(stub.accepted_of(&storm), (7, 1));
    let echo_fate = b.fates.iter().find(|x| x.trace_id == echo).unwrap();
    assert_eq!((echo_fate.spans, echo_fate.logs), (refused(1), refused(1)));

    let exports = |emitted, accepted, refused| RunExports {
        emitted,
        accepted,
        refused,
        ..RunExports::default()
    };
    let run_a = account(&c, &server, "run-a").await;
    assert_eq!(
        (run_a.requests, run_a.spans, run_a.logs),
        (4, exports(4, 2, 2), exports(4, 2, 2)),
        "{run_a:?}"
    );
    assert_eq!(run_a.replica, "replica-a");
    let refusal = run_a.last_refusal.unwrap_or_default();
    assert!(refusal.contains(error), "{refusal}");
    let run_b = account(&c, &server, "run-b").await;
    assert_eq!(
        (run_b.requests, run_b.spans, run_b.logs),
        (2, exports(8, 7, 1), exports(2, 1, 1)),
        "{run_b:?}"
    );
    assert_eq!(run_b.chaos_dropped_requests, 0);
    assert_eq!(
        account(&c, &server, "never-seen").await,
        RunAccount {
            replica: "replica-a".into(),
            run: "never-seen".into(),
            ..RunAccount::default()
        }
    );
    assert!(
        stub.with(|r| r.refused_requests) >= 6,
        "3 traces x 2 signals"
    );
    let _ = server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429_refusals_are_refused_items_of_their_trace_and_run() {
    let refuse = Refuse::default();
    let stub = Stub::Http(HttpReceiver::refusing(refuse.clone(), 429).await);
    refusals_are_attributed_per_trace_and_run(stub, refuse, "HTTP 429").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_resource_exhausted_refusals_are_refused_items_of_their_trace_and_run() {
    let refuse = Refuse::default();
    let stub = Stub::Grpc(Receiver::refusing(refuse.clone(), tonic::Code::ResourceExhausted).await);
    refusals_are_attributed_per_trace_and_run(stub, refuse, "gRPC status 8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_500_refusals_are_refused_items_of_their_trace_and_run() {
    let refuse = Refuse::default();
    let stub = Stub::Http(HttpReceiver::refusing(refuse.clone(), 500).await);
    refusals_are_attributed_per_trace_and_run(stub, refuse, "HTTP 500").await;
}

async fn put_chaos(c: &HttpClient, server: &Server, body: &'static str) {
    let admin = server.admin_addr().unwrap();
    let req = http::Request::put(format!("http://{admin}/chaos"))
        .header("authorization", "Bearer t")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let r = send(c, req).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_dropped_telemetry_is_counted_as_emitted_and_chaos_dropped_exactly() {
    let rx = Receiver::start().await;
    let log = Captured::default();
    let mut config = config(Some(rx.endpoint()), &log);
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    config.admin_token = echo_server::config::AdminToken::new("t");
    let server = serve(config).await;
    let (c, addr) = (client(), server.local_addr());

    put_chaos(&c, &server, r#"{"telemetryDrop":{"rate":1}}"#).await;
    let (storm, api, after) = (trace(1), trace(2), trace(3));
    for (path, t) in [("/storm?width=3&depth=2", &storm), ("/api/x", &api)] {
        let tp = traceparent(t);
        let h = [("traceparent", tp.as_str()), (RUN_HEADER, "run-c")];
        assert_eq!(get(&c, addr, path, &h).await.status, 200);
    }
    put_chaos(&c, &server, "{}").await;
    let h = traceparent(&after);
    get(
        &c,
        addr,
        "/api/y",
        &[("traceparent", &h), (RUN_HEADER, "run-c")],
    )
    .await;
    let fate = settled(&c, &server, "run-c", &after).await;
    assert_eq!((fate.spans.accepted, fate.logs.accepted), (1, 1));

    let chaos = |n| Fate {
        emitted: n,
        chaos_dropped: n,
        ..Fate::default()
    };
    let f = fates(&c, &server, "run-c", &[&storm, &api]).await;
    let of = |t: &str| f.fates.iter().find(|x| x.trace_id == t).unwrap().clone();
    assert_eq!((of(&storm).spans, of(&storm).logs), (chaos(7), chaos(1)));
    assert_eq!((of(&api).spans, of(&api).logs), (chaos(1), chaos(1)));
    let run = account(&c, &server, "run-c").await;
    assert_eq!((run.requests, run.chaos_dropped_requests), (3, 2));
    let exports = |emitted, accepted, chaos_dropped| RunExports {
        emitted,
        accepted,
        chaos_dropped,
        ..RunExports::default()
    };
    assert_eq!((run.spans, run.logs), (exports(9, 1, 8), exports(3, 1, 2)));
    assert_eq!(rx.accepted_spans(&storm) + rx.accepted_spans(&api), 0);

    // Half the requests, drawn from the seeded dice: the counts still add up exactly.
    put_chaos(&c, &server, r#"{"telemetryDrop":{"rate":0.5}}"#).await;
    let ids: Vec<String> = (100..140).map(trace).collect();
    for t in &ids {
        let h = traceparent(t);
        get(
            &c,
            addr,
            "/api/z",
            &[("traceparent", &h), (RUN_HEADER, "run-half")],
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + patience();
    let half = loop {
        let a = account(&c, &server, "run-half").await;
        if a.spans.accepted + a.spans.chaos_dropped == 40
            && a.logs.accepted + a.logs.chaos_dropped == 40
        {
            break a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled: {a:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let dropped = half.chaos_dropped_requests;
    assert!(
        (5..=35).contains(&dropped),
        "a seeded draw near 20: {dropped}"
    );
    assert_eq!(half.spans, exports(40, 40 - dropped, dropped));
    assert_eq!(half.logs, exports(40, 40 - dropped, dropped));
    let health = get(&c, addr, "/healthz", &[]).await.json();
    assert_eq!(health["exporter"]["chaos_dropped"], 2 + dropped, "{health}");
    let f = fates(
        &c,
        &server,
        "run-half",
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let chaos_traces = f
        .fates
        .iter()
        .filter(|x| x.spans.chaos_dropped == 1)
        .count() as u64;
    assert_eq!(chaos_traces, dropped);
    for x in &f.fates {
        let lost = x.spans.chaos_dropped == 1;
        assert_eq!(rx.accepted_spans(&x.trace_id), usize::from(!lost), "{x:?}");
    }
    let _ = server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_processor_variables_set_batches_queues_and_the_schedule_shown_in_healthz() {
    let rx = Receiver::start().await;
    let endpoint = rx.endpoint();
    let env: HashMap<&str, &str> = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "1234"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "40"),
        ("OTEL_BLRP_EXPORT_TIMEOUT", "3000"),
    ]
    .into_iter()
    .collect();
    let log = Captured::default();
    let config = echo_server::Config {
        request_log: echo_server::RequestLog::Writer(log.writer()),
        ..Default::default()
    }
    .apply_otel_env(&env)
    .unwrap();
    let server = serve(config).await;
    let (c, addr) = (client(), server.local_addr());

    // 11 spans into a queue of 4: 7 are dropped on the spot, the 4 queued go out in
    // batches of 2 (the queue reached half its size, so before the 1.2 s tick).
    let t = trace(1);
    let r = get(
        &c,
        addr,
        "/storm?width=10&depth=1",
        &[("traceparent", &traceparent(&t)), (RUN_HEADER, "run-e")],
    )
    .await;
    assert_eq!(r.status, 200);
    let fate = settled(&c, &server, "run-e", &t).await;
    assert_eq!(
        fate.spans,
        Fate {
            emitted: 11,
            accepted: 4,
            dropped: 7,
            ..fate.spans
        }
    );
    assert_eq!((fate.logs.emitted, fate.logs.accepted), (1, 1));
    let run = account(&c, &server, "run-e").await;
    assert_eq!((run.spans.dropped, run.spans.accepted), (7, 4));
    assert_eq!(rx.with(|r| r.span_batches.clone()), [2, 2]);

    let h = get(&c, addr, "/healthz", &[]).await.json();
    let e = &h["exporter"];
    assert_eq!(e["traces_batching"]["schedule_delay_ms"], 1234, "{h}");
    assert_eq!(e["traces_batching"]["max_export_batch_size"], 2);
    assert_eq!(e["traces_batching"]["max_queue_size"], 4);
    assert_eq!(e["traces_batching"]["export_timeout_ms"], 5000);
    assert_eq!(e["logs_batching"]["schedule_delay_ms"], 40);
    assert_eq!(e["logs_batching"]["max_export_batch_size"], 512);
    assert_eq!(e["logs_batching"]["export_timeout_ms"], 3000);
    assert_eq!(e["dropped"], 7);
    let _ = server.shutdown().await;

    let bad: HashMap<&str, &str> = [("OTEL_BLRP_SCHEDULE_DELAY", "fast")].into_iter().collect();
    let err = echo_server::Config::default()
        .apply_otel_env(&bad)
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert_eq!(
        err.to_string(),
        r#"invalid OTEL_BLRP_SCHEDULE_DELAY value "fast": expected a whole number of milliseconds from 0 to 86400000"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_names_the_replica_and_runs_routes_are_not_workload() {
    let log = Captured::default();
    let mut config = config(None, &log);
    config.replica = Some("pod-7".into());
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    config.admin_token = echo_server::config::AdminToken::new("t");
    let server = serve(config).await;
    let (c, addr) = (client(), server.local_addr());
    for path in [
        "/echo",
        "/api/x?status=503",
        "/metrics",
        "/healthz",
        "/nope",
        "/runs/r",
    ] {
        let r = get(&c, addr, path, &[]).await;
        assert_eq!(r.header(REPLICA_HEADER).as_deref(), Some("pod-7"), "{path}");
    }
    let admin = get(&c, server.admin_addr().unwrap(), "/chaos", &[]).await;
    assert_eq!(admin.header(REPLICA_HEADER).as_deref(), Some("pod-7"));

    let bad = [
        (
            "/runs/has%20space",
            400,
            r#"invalid run id "has%20space": expected 1 to 64 characters of A-Z a-z 0-9 . _ -"#,
        ),
        (
            "/runs/r/traces",
            400,
            "missing ids: expected ?ids= and at most 256 comma-separated trace ids of 1 to 32 hex digits",
        ),
        (
            "/runs/r/traces?ids=12,zz",
            400,
            r#"invalid trace id "zz": expected 1 to 32 hex digits"#,
        ),
        (
            "/runs/r/spans",
            404,
            "no such route: expected /runs/{run} or /runs/{run}/traces?ids=…",
        ),
    ];
    for (path, status, msg) in bad {
        let r = get(&c, addr, path, &[]).await;
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (status, Some(msg)),
            "{path}"
        );
    }
    let too_many = vec!["1"; 257].join(",");
    let r = get(&c, addr, &format!("/runs/r/traces?ids={too_many}"), &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        "too many trace ids: expected at most 256 per request"
    );
    let post = http::Request::post(format!("http://{addr}/runs/r"))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&c, post).await.status, 405);

    // A tracked request is counted; the /runs calls above (tagged or not) are not, nor
    // are they in the metrics.
    get(&c, addr, "/runs/r", &[(RUN_HEADER, "r")]).await;
    get(&c, addr, "/echo", &[(RUN_HEADER, "r")]).await;
    let run = account(&c, &server, "r").await;
    assert_eq!(run.requests, 1);
    let metrics = get(&c, addr, "/metrics", &[]).await.text();
    assert!(!metrics.contains("/runs"), "{metrics}");
    let _ = server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_counts_in_its_slot_with_its_trace_as_exemplar() {
    let log = Captured::default();
    let mut config = config(None, &log);
    config.replica = Some("pod-p".into());
    let server = serve(config).await;
    let (c, addr) = (client(), server.local_addr());
    let t = trace(7);
    let r = get(
        &c,
        addr,
        "/echo",
        &[("traceparent", &traceparent(&t)), (PROBE_HEADER, "5")],
    )
    .await;
    assert_eq!(r.status, 200);
    let span_id = r
        .header("traceparent")
        .unwrap()
        .split('-')
        .nth(2)
        .unwrap()
        .to_owned();
    for ignored in ["64", "x", "-1"] {
        get(&c, addr, "/echo", &[(PROBE_HEADER, ignored)]).await;
    }
    let accept = "application/openmetrics-text;version=1.0.0";
    let om = get(&c, addr, "/metrics", &[("accept", accept)])
        .await
        .text();
    let probes: Vec<&str> = om
        .lines()
        .filter(|l| l.starts_with("ricochet_probe_requests_total"))
        .collect();
    assert_eq!(probes.len(), 1, "{om}");
    let want = format!(
        r#"ricochet_probe_requests_total{{slot="5",replica="pod-p"}} 1 # {{trace_id="{t}",span_id="{span_id}"}} 1 "#
    );
    assert!(probes[0].starts_with(&want), "{}", probes[0]);
    let ts: f64 = probes[0].rsplit(' ').next().unwrap().parse().unwrap();
    let now = unix_nanos() as f64 / 1e9;
    assert!(ts > now - 3600.0 && ts <= now + 1.0, "{ts}");
    assert!(
        om.contains(r#"http_server_requests_total{http_request_method="GET",http_route="/echo",http_response_status_code="200",http_response_status_class="2xx",tenant_id="none"} 4"#),
        "a probe is a normal request too: {om}"
    );
    let _ = server.shutdown().await;
}
