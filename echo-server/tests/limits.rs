//! The bounds that keep a client from holding the server's resources (issue #15 item 4):
//! idle and keep-alive timeouts, the body read timeout, the connection limit, and admin
//! faults that used to panic a worker. Timeouts are configured at 1 s and asserted with
//! wide margins ("closed within 10 s"), so a loaded 2-core machine does not flake them.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use echo_server::metrics::CloseReason;
use http_body_util::{BodyExt as _, Full};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Reads (and discards) until the server closes the connection; how long that took, or
/// `None` if it was still open after `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all)
        .await
        .ok()
        .map(|()| started.elapsed())
}

// See: issue #15 item 4 -- an HTTP/2 connection that only sent the preface stayed open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connection_that_only_sent_the_preface_is_closed_after_the_idle_timeout() {
    let mut config = echo_server::Config::default();
    config.limits.idle_timeout = Duration::from_secs(1);
    let server = serve(config).await;
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(SETTINGS).await.unwrap();
    let after = closed_within(&mut s, Duration::from_secs(10))
        .await
        .expect("the preface-only connection is closed within 10 s");
    assert!(
        after >= Duration::from_millis(900),
        "closed too early: {after:?}"
    );
    let c = &server.state().metrics.connections;
    assert_eq!(c.closed_for(CloseReason::Idle), 1);
    assert_eq!(c.open(), 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connection_that_does_not_answer_pings_is_closed() {
    let mut config = echo_server::Config::default();
    config.limits.h2_keep_alive_interval = Duration::from_secs(1);
    config.limits.h2_keep_alive_timeout = Duration::from_secs(1);
    let server = serve(config).await;
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(SETTINGS).await.unwrap();
    // Reads what the server sends (its PING among it) and never acknowledges anything.
    let after = closed_within(&mut s, Duration::from_secs(10))
        .await
        .expect("the silent h2 connection is closed within 10 s");
    assert!(
        after >= Duration::from_millis(1900),
        "closed too early: {after:?}"
    );
    assert_eq!(
        server
            .state()
            .metrics
            .connections
            .closed_for(CloseReason::Idle),
        0,
        "closed by the PING timeout, not the idle timeout (60 s)"
    );
    server.shutdown().await.unwrap();
}

// See: issue #15 item 4 -- a trickled request body held a connection indefinitely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_body_is_answered_408_and_its_connection_closed() {
    let mut config = echo_server::Config::default();
    config.limits.body_read_timeout = Duration::from_secs(1);
    let server = serve(config).await;
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    // A few bytes, slowly; then nothing (a client still writing when the server closes
    // gets a reset that can overtake the 408).
    for _ in 0..3 {
        s.write_all(b"a").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "neither answered nor closed within 10 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(
        answer.ends_with(r#"{"error":"the request body did not arrive within 1s"}"#),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(server.state().metrics.connections.body_timeouts(), 1);
    server.shutdown().await.unwrap();
}

/// An HTTP/1.1 connection of its own (hyper's client connection API), kept open.
async fn connection(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let s = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn get_on(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
) -> Result<(u16, String), hyper::Error> {
    let req = http::Request::get(path)
        .header("host", "x")
        .body(Full::default())
        .unwrap();
    let resp = tokio::time::timeout(patience(), send.send_request(req))
        .await
        .expect("an answer or an error in time")?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_maximum_are_refused_counted_and_served_again_once_freed() {
    let mut config = echo_server::Config::default();
    config.limits.max_connections = 2;
    let server = serve(config).await;
    let addr = server.local_addr();
    let mut first = connection(addr).await;
    let mut second = connection(addr).await;
    assert_eq!(get_on(&mut first, "/healthz").await.unwrap().0, 200);
    assert_eq!(get_on(&mut second, "/healthz").await.unwrap().0, 200);

    let mut third = connection(addr).await;
    let refused = get_on(&mut third, "/healthz").await;
    assert!(
        refused.is_err(),
        "the third connection was served: {refused:?}"
    );
    let metrics = get_on(&mut first, "/metrics").await.unwrap().1;
    assert!(
        metrics.contains("\necho_connections_refused_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\necho_connections_open 2\n"), "{metrics}");

    drop(second);
    let deadline = Instant::now() + patience();
    loop {
        let mut again = connection(addr).await;
        if let Ok((200, _)) = get_on(&mut again, "/healthz").await {
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed after closing one");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await.unwrap();
}

// See: issue #15 item 4 -- `exp:500000000000years` was accepted, then panicked a worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_that_used_to_panic_is_refused_and_the_server_keeps_serving() {
    let config = echo_server::Config {
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_token: echo_server::config::AdminToken::new("t"),
        ..Default::default()
    };
    let server = serve(config).await;
    let (addr, admin) = (server.local_addr(), server.admin_addr().unwrap());
    let c = client();
    let put = |body: &'static str| {
        http::Request::put(format!("http://{admin}/chaos"))
            .header("authorization", "Bearer t")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let r = send(&c, put(r#"{"latency":{"delay":"exp:500000000000years"}}"#)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        serde_json::json!({
            "error": r#"latency.delay "exp:500000000000years" is invalid: expected an exp: mean of at most 3s (draws reach 20x the mean, which must stay within 60s)"#,
            "field": "latency.delay",
            "value": r#""exp:500000000000years""#,
            "expected": "an exp: mean of at most 3s (draws reach 20x the mean, which must stay within 60s)",
        })
    );
    let r = send(&c, put(r#"{"errors":{"rate":0.5,"status":999}}"#)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        "errors.status 999 is invalid: expected an error status between 400 and 599"
    );
    assert_eq!(
        get(&c, admin, "/chaos", &[("authorization", "Bearer t")])
            .await
            .json(),
        serde_json::json!({})
    );
    for _ in 0..20 {
        assert_eq!(get(&c, addr, "/api/after", &[]).await.status, 200);
    }
    let r = send(&c, put(r#"{"latency":{"delay":"exp:2ms"}}"#)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..20 {
        assert_eq!(get(&c, addr, "/api/after", &[]).await.status, 200);
    }
    server.shutdown().await.unwrap();
}
