//! The real binary: its stdout carries the request log line with the trace id sent in
//! `traceparent`, its responses name the replica, SIGTERM drains and exits 0, and an
//! invalid configuration exits 2 with one sentence naming the setting.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_logs_the_trace_id_on_stdout_and_exits_zero_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--service-name",
            "bin-test",
            "--replica",
            "bin-replica",
        ])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("\"addr\":\"").nth(1) {
                let _ = addr_tx.send(rest.split('"').next().unwrap().to_owned());
            }
        }
    });
    let addr: std::net::SocketAddr = addr_rx
        .recv_timeout(patience())
        .expect("listening line on stderr")
        .parse()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });

    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = get(
        &client(),
        addr,
        "/echo",
        &[("traceparent", tp), ("x-tenant-id", "t1")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header(echo_server::contract::REPLICA_HEADER).as_deref(),
        Some("bin-replica")
    );
    let line = line_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a log line on stdout");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(v["service"], "bin-test");
    assert_eq!(v["tenant_id"], "t1");
    assert_eq!(v["route"], "/echo");

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + patience();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn an_invalid_batch_processor_variable_exits_2_naming_variable_value_and_range() {
    let out = Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .args(["--listen", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: invalid configuration: invalid OTEL_BSP_MAX_EXPORT_BATCH_SIZE value \"0\": expected a whole number of spans from 1 to 1048576\n"
    );
    assert!(out.stdout.is_empty());
}
