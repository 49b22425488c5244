//! One request, every signal: the request log, the exemplar on /metrics, the span and log
//! at a real OTLP/gRPC receiver, and /healthz all carry the same trace id. Plus the
//! protocol limits, the admin API and the exporter-down path.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use support::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

struct Seen {
    trace_id: String,
    span_id: String,
}

/// Sends one /api request and checks every signal; returns the ids it saw.
async fn one_request_every_signal(traceparent: Option<&str>) -> Seen {
    let rx = Receiver::start().await;
    let log = Captured::default();
    let server = serve(config(Some(rx.endpoint()), &log)).await;
    let addr = server.local_addr();
    let c = client();
    let mut headers = vec![("x-tenant-id", "team-alpha"), ("x-request-id", "req-1")];
    if let Some(tp) = traceparent {
        headers.push(("traceparent", tp));
    }
    let r = get(&c, addr, "/api/orders?delay=5ms", &headers).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id").as_deref(), Some("req-1"));
    let tp = r
        .header("traceparent")
        .expect("traceparent on the response");
    let parts: Vec<&str> = tp.split('-').collect();
    let (trace_id, span_id) = (parts[1].to_owned(), parts[2].to_owned());
    if traceparent == Some(&format!("00-{TRACE}-{PARENT}-01")[..]) {
        assert_eq!(trace_id, TRACE);
    } else {
        assert_ne!(trace_id, TRACE);
    }
    assert_ne!(span_id, PARENT);

    // The log line.
    let line = eventually("the request log line", || {
        log.lines()
            .into_iter()
            .find(|l| l["route"] == "/api/{*path}")
    })
    .await;
    assert_eq!(line["trace_id"], trace_id.as_str());
    assert_eq!(line["span_id"], span_id.as_str());
    assert_eq!(line["tenant_id"], "team-alpha");
    assert_eq!(line["request_id"], "req-1");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 200);
    assert_eq!(line["service"], "echo-server");
    for k in ["ts", "level", "msg", "duration_ms"] {
        assert!(line.get(k).is_some(), "{k} missing from {line}");
    }

    // The exemplar, in OpenMetrics only.
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let m = get(&c, addr, "/metrics", &[("accept", accept)]).await;
    assert!(
        m.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = m.text();
    assert!(
        text.lines().any(
            |l| l.starts_with("http_server_request_duration_seconds_bucket{")
                && l.contains("http_route=\"/api/{*path}\"")
                && l.contains("tenant_id=\"team-alpha\"")
                && l.contains(&format!(
                    "# {{trace_id=\"{trace_id}\",span_id=\"{span_id}\"}}"
                ))
        ),
        "no exemplar for {trace_id} in\n{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    let plain = get(&c, addr, "/metrics", &[]).await.text();
    assert!(!plain.contains("trace_id=") && plain.contains("http_server_requests_total{"));

    // The span and the OTLP log at the receiver.
    let spans = eventually("the server span at the receiver", || {
        let s = rx.server_spans_of(&trace_id);
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(hex(&span.span_id), span_id);
    if traceparent == Some(&format!("00-{TRACE}-{PARENT}-01")[..]) {
        assert_eq!(hex(&span.parent_span_id), PARENT, "parent is the sent span");
    } else {
        assert!(span.parent_span_id.is_empty(), "a new root has no parent");
    }
    assert_eq!(span.name, "GET /api/{*path}");
    let attr = |k: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .map(|v| format!("{v:?}"))
    };
    assert!(attr("tenant.id").unwrap().contains("team-alpha"));
    assert!(attr("http.route").unwrap().contains("/api/{*path}"));
    assert!(attr("http.response.status_code").unwrap().contains("200"));
    assert!(attr("http.request.method").unwrap().contains("GET"));
    let logs = eventually("the OTLP log record", || {
        let l = rx.logs_of(&trace_id);
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(hex(&logs[0].span_id), span_id);

    // /healthz lists the trace as confirmed exported.
    let deadline = Instant::now() + patience();
    let h = loop {
        let h = get(&c, addr, "/healthz", &[]).await.json();
        if h["exported_trace_ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == trace_id.as_str())
        {
            break h;
        }
        assert!(Instant::now() < deadline, "{trace_id} never listed in {h}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(h["status"], "ok");
    assert!(h["exporter"]["exported"].as_u64().unwrap() >= 1);
    server.shutdown().await.unwrap();
    Seen { trace_id, span_id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_traceparent_is_carried_by_log_exemplar_span_and_healthz() {
    let seen = one_request_every_signal(Some(&format!("00-{TRACE}-{PARENT}-01"))).await;
    assert_eq!(seen.trace_id, TRACE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_without_traceparent_gets_a_new_trace_carried_everywhere() {
    let seen = one_request_every_signal(None).await;
    assert_eq!(seen.trace_id.len(), 32);
    assert_eq!(seen.span_id.len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_traceparent_starts_a_new_trace() {
    let seen = one_request_every_signal(Some(&format!("00-{TRACE}-{PARENT}"))).await;
    assert_ne!(seen.trace_id, TRACE);
    let log = Captured::default();
    let server = serve(config(None, &log)).await;
    for bad in [
        "zz-nothex",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        let r = get(
            &client(),
            server.local_addr(),
            "/echo",
            &[("traceparent", bad)],
        )
        .await;
        assert_eq!(r.status, 200);
        let tp = r.header("traceparent").unwrap();
        assert!(
            !tp.contains(TRACE) && !tp.contains("-00000000000000000000000000000000-"),
            "{bad} -> {tp}"
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mib_body_is_rejected_with_413_and_small_bodies_are_echoed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = serve(echo_server::Config::default()).await;
    // The 2 MiB body is refused on its declared length, before any of it is read. Only the
    // head is sent: a client still writing the body when the server closes gets a reset
    // that can overtake the 413 (the race every server that rejects early has).
    let mut raw = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    raw.write_all(
        format!(
            "POST /echo?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            2 * 1024 * 1024
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        answer.contains("exceeds the limit of 1048576 bytes"),
        "{answer}"
    );
    let c = client();
    let url = format!("http://{}/echo?x=1", server.local_addr());
    let small = http::Request::post(&url)
        .header("x-hello", "there")
        .body(Full::new(Bytes::from_static(b"ping")))
        .unwrap();
    let r = send(&c, small).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["query"], "x=1");
    assert_eq!(v["body"], "ping");
    assert_eq!(v["headers"]["x-hello"], "there");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connection_is_closed_after_the_header_timeout() {
    let mut config = echo_server::Config::default();
    config.limits.header_read_timeout = Duration::from_secs(1);
    let server = serve(config).await;
    let addr = server.local_addr();
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1000)))
            .unwrap();
        let started = Instant::now();
        let head =
            b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        for b in head {
            if s.write_all(&[*b]).is_err() {
                return started.elapsed();
            }
            // The read doubles as the one-second pause between bytes.
            match s.read(&mut [0u8; 1]) {
                Ok(0) => return started.elapsed(),
                Ok(_) => panic!("the server answered an incomplete request"),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return started.elapsed(),
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "connection still open after 15 s"
            );
        }
        panic!("the whole head was sent one byte a second without the connection being closed");
    })
    .await
    .unwrap();
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed too early: {closed_after:?}"
    );
    assert!(
        closed_after < Duration::from_secs(6),
        "closed too late: {closed_after:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_down_still_serves_and_reports_degraded() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let log = Captured::default();
    let server = serve(config(Some(format!("http://{dead}")), &log)).await;
    let c = client();
    for _ in 0..20 {
        assert_eq!(
            get(&c, server.local_addr(), "/api/x", &[]).await.status,
            200
        );
    }
    let deadline = Instant::now() + patience();
    let health = loop {
        let h = get(&c, server.local_addr(), "/healthz", &[]).await.json();
        let lost =
            h["exporter"]["failed"].as_u64().unwrap() + h["exporter"]["dropped"].as_u64().unwrap();
        if h["status"] == "degraded" && lost >= 20 {
            break h;
        }
        assert!(Instant::now() < deadline, "never degraded: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["exporter"]["state"], "degraded");
    assert_eq!(health["exporter"]["exported"], 0);
    assert!(health["exporter"]["last_error"].is_string());
    assert_eq!(health["exported_trace_ids"].as_array().unwrap().len(), 0);
    assert_eq!(
        log.lines()
            .iter()
            .filter(|l| l["route"] == "/api/{*path}")
            .count(),
        20,
        "requests are still logged"
    );
    let err = server.shutdown().await;
    assert!(err.is_err(), "shutdown reports the failed flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_needs_the_token_and_is_absent_unless_configured() {
    let server = serve(echo_server::Config::default()).await;
    assert!(server.admin_addr().is_none());
    server.shutdown().await.unwrap();

    let mut config = echo_server::Config {
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = echo_server::start(config.clone(), listener)
        .await
        .unwrap_err();
    assert!(
        matches!(err, echo_server::Error::AdminTokenMissing { .. }),
        "{err}"
    );

    config.admin_token = echo_server::config::AdminToken::new("t0ken");
    let server = serve(config).await;
    let admin = server.admin_addr().unwrap();
    let c = client();
    assert_eq!(get(&c, admin, "/chaos", &[]).await.status, 401);
    assert_eq!(
        get(&c, admin, "/chaos", &[("authorization", "Bearer wrong")])
            .await
            .status,
        401
    );
    let auth = [("authorization", "Bearer t0ken")];
    assert_eq!(
        get(&c, admin, "/chaos", &auth).await.json(),
        serde_json::json!({})
    );
    let put = |body: &'static str, token: &'static str| {
        http::Request::put(format!("http://{admin}/chaos"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    assert_eq!(
        send(&c, put(r#"{"errors":{"rate":1.0,"status":503}}"#, "nope"))
            .await
            .status,
        401
    );
    assert_eq!(
        send(&c, put(r#"{"errors":{"rate":2}}"#, "t0ken"))
            .await
            .status,
        400
    );
    let r = send(&c, put(r#"{"errors":{"rate":1.0,"status":503,"route":"/api/{*path}"},"latency":{"delay":"20ms"}}"#, "t0ken")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = Instant::now();
    assert_eq!(
        get(&c, server.local_addr(), "/api/a", &[]).await.status,
        503
    );
    assert!(t.elapsed() >= Duration::from_millis(20));
    assert_eq!(get(&c, server.local_addr(), "/echo", &[]).await.status, 200);
    let h = get(&c, server.local_addr(), "/healthz", &[]).await.json();
    assert_eq!(h["chaos"]["errors"]["status"], 503, "{h}");
    let del = http::Request::delete(format!("http://{admin}/chaos"))
        .header("authorization", "Bearer t0ken")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&c, del).await.status, 200);
    assert_eq!(
        get(&c, server.local_addr(), "/api/a", &[]).await.status,
        200
    );
    assert!(get(&c, server.local_addr(), "/healthz", &[]).await.json()["chaos"].is_null());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_chat_storm_and_readyz_behave() {
    let rx = Receiver::start().await;
    let log = Captured::default();
    let server = serve(config(Some(rx.endpoint()), &log)).await;
    let (c, addr) = (client(), server.local_addr());
    let r = get(&c, addr, "/api/pay?status=503&delay=1ms", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(get(&c, addr, "/api/pay?status=abc", &[]).await.status, 400);

    let chat = http::Request::post(format!("http://{addr}/chat/stream?tokens=5&interval=10ms"))
        .body(Full::default())
        .unwrap();
    let t = Instant::now();
    let r = send(&c, chat).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text().lines().count(), 5);
    assert!(t.elapsed() >= Duration::from_millis(40));
    assert_eq!(get(&c, addr, "/chat/stream", &[]).await.status, 405);

    let r = get(&c, addr, "/storm?width=10&depth=5", &[]).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["spans"], 51);
    let trace_id = v["trace_id"].as_str().unwrap().to_owned();
    let n = eventually("51 storm spans", || {
        let n = rx.with(|r| {
            r.spans
                .iter()
                .filter(|s| hex(&s.trace_id) == trace_id)
                .count()
        });
        (n == 51).then_some(n)
    })
    .await;
    assert_eq!(n, 51);
    assert_eq!(
        get(&c, addr, "/storm?width=100&depth=100", &[])
            .await
            .status,
        400
    );
    assert_eq!(
        get(&c, addr, "/storm?width=9999&depth=1", &[]).await.status,
        200
    );
    assert_eq!(get(&c, addr, "/readyz", &[]).await.status, 200);
    assert_eq!(get(&c, addr, "/nope", &[]).await.status, 404);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_served() {
    let server = serve(echo_server::Config::default()).await;
    let c: HttpClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let r = get(&c, server.local_addr(), "/echo", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], "HTTP/2.0");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_protobuf_is_honoured_from_the_env_map() {
    let rx = HttpReceiver::start().await;
    let env: std::collections::HashMap<&str, &str> = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &*Box::leak(rx.endpoint().into_boxed_str()),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_SERVICE_NAME", "from-env"),
    ]
    .into_iter()
    .collect();
    let log = Captured::default();
    let mut config = config(None, &log).apply_otel_env(&env).unwrap();
    assert_eq!(config.service_name, "from-env");
    config.telemetry.export_interval = Duration::from_millis(50);
    let server = serve(config).await;
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let r = get(
        &client(),
        server.local_addr(),
        "/echo",
        &[("traceparent", &tp)],
    )
    .await;
    assert_eq!(r.status, 200);
    let parent = eventually("the span over OTLP/HTTP", || {
        rx.with(|r| {
            r.spans
                .iter()
                .find(|s| hex(&s.trace_id) == TRACE)
                .map(|s| hex(&s.parent_span_id))
        })
    })
    .await;
    assert_eq!(parent, PARENT);
    eventually("the log over OTLP/HTTP", || {
        rx.with(|r| (!r.logs.is_empty()).then_some(()))
    })
    .await;
    // The request log is written by its own thread (at least every 10 ms): wait for it as
    // for the other signals; OTLP can arrive first.
    let line = eventually("the request log line", || log.lines().into_iter().next()).await;
    assert_eq!(line["service"], "from-env");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_head_is_refused() {
    let server = serve(echo_server::Config::default()).await;
    let big = "a".repeat(20 * 1024);
    let r = get(&client(), server.local_addr(), "/echo", &[("x-big", &big)]).await;
    assert_eq!(r.status, 431);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let server = serve(echo_server::Config::default()).await;
    let addr = server.local_addr();
    let c = client();
    let in_flight = tokio::spawn({
        let c = c.clone();
        async move { get(&c, addr, "/api/slow?delay=400ms", &[]).await.status }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown().await.unwrap();
    assert_eq!(
        in_flight.await.unwrap(),
        200,
        "the in-flight request finished"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_full_queue_is_exported_before_the_next_tick() {
    let rx = Receiver::start().await;
    let log = Captured::default();
    let mut config = config(Some(rx.endpoint()), &log);
    // The tick fires once at start, then not again during the test.
    config.telemetry.export_interval = Duration::from_secs(3600);
    config.telemetry.queue_capacity = 64;
    let server = serve(config).await;
    let c = client();
    for _ in 0..40 {
        assert_eq!(
            get(&c, server.local_addr(), "/api/x", &[]).await.status,
            200
        );
    }
    let spans = eventually("32 spans exported without a tick", || {
        let n = rx.with(|r| r.spans.len());
        (n >= 32).then_some(n)
    })
    .await;
    assert!(spans <= 40, "{spans}");
    let h = get(&c, server.local_addr(), "/healthz", &[]).await.json();
    assert_eq!(h["exporter"]["dropped"], 0);
    server.shutdown().await.unwrap();
    // The rest at shutdown, with the /healthz request's span.
    assert_eq!(rx.with(|r| r.spans.len()), 41);
}
