//! The client side of `bench/echo-connections.sh`: a normal client's latency against an
//! echo-server alone, then while a crowd of idle keep-alive connections and slowloris
//! connections (trickling header bytes) is held open. Prints the figures and the ratio,
//! and the server's RSS and open descriptors (from /proc of the given pid).
//!
//! ```sh
//! cargo run --release -p echo-server --example conn-crowd -- ADDR PID [IDLE] [SLOW] [REQUESTS]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const REQUEST: &[u8] = b"GET /api/bench HTTP/1.1\r\nHost: bench\r\n\r\n";

/// Reads one response whose head carries `content-length` (what every echo-server
/// response without streaming has).
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            return Ok(status);
        }
    }
}

/// `requests` sequential GETs on one keep-alive connection; sorted latencies in µs.
async fn probe(addr: SocketAddr, requests: usize) -> Vec<u64> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        s.write_all(REQUEST).await.unwrap();
        let status = read_response(&mut s, &mut buf).await.unwrap();
        assert_eq!(status, 200);
        out.push(t.elapsed().as_micros() as u64);
    }
    out.sort_unstable();
    out
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn server_resources(pid: u32) -> (u64, usize) {
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss_kib, fds)
}

/// Opens `n` connections that each make one request and then stay idle (keep-alive).
async fn idle_crowd(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for batch in 0..n.div_ceil(250) {
        let size = 250.min(n - batch * 250);
        let opened = futures_util::future::join_all((0..size).map(|_| async move {
            let mut s = TcpStream::connect(addr).await.ok()?;
            s.write_all(REQUEST).await.ok()?;
            let mut buf = Vec::new();
            read_response(&mut s, &mut buf).await.ok()?;
            Some(s)
        }))
        .await;
        held.extend(opened.into_iter().flatten());
    }
    held
}

/// Opens `n` connections that send a request line and then one header line per second,
/// never finishing the head. Returns their tasks and a count of those still open.
async fn slowloris_crowd(
    addr: SocketAddr,
    n: usize,
    alive: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let alive = alive.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return;
            };
            if s.write_all(b"GET /echo HTTP/1.1\r\nHost: slow\r\n")
                .await
                .is_err()
            {
                return;
            }
            alive.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Spread the trickles over the second.
            tokio::time::sleep(Duration::from_millis((i % 1000) as u64)).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if s.write_all(b"X-Slow: a\r\n").await.is_err() {
                    break;
                }
            }
            alive.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }));
    }
    tasks
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args.get(1).expect("ADDR").parse().expect("ADDR");
    let pid: u32 = args.get(2).expect("PID").parse().expect("PID");
    let arg = |i: usize, d: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (idle, slow, requests) = (arg(3, 10_000), arg(4, 500), arg(5, 2_000));

    let _warm = probe(addr, 200).await;
    let (rss0, fds0) = server_resources(pid);
    let base = probe(addr, requests).await;
    println!(
        "baseline:   {requests} sequential GETs  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms   server RSS {} MiB, {} fds",
        pct(&base, 0.50),
        pct(&base, 0.99),
        pct(&base, 1.0),
        rss0 / 1024,
        fds0
    );

    let t = Instant::now();
    let crowd = idle_crowd(addr, idle).await;
    let alive = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let slow_tasks = slowloris_crowd(addr, slow, alive.clone()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "crowd:      {} idle keep-alive connections + {} slowloris connections open after {:.1} s",
        crowd.len(),
        alive.load(std::sync::atomic::Ordering::Relaxed),
        t.elapsed().as_secs_f64()
    );
    let (rss1, fds1) = server_resources(pid);
    let loaded = probe(addr, requests).await;
    println!(
        "with crowd: {requests} sequential GETs  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms   server RSS {} MiB, {} fds",
        pct(&loaded, 0.50),
        pct(&loaded, 0.99),
        pct(&loaded, 1.0),
        rss1 / 1024,
        fds1
    );
    println!(
        "ratio (with crowd / baseline): p50 {:.2}x  p99 {:.2}x;  server memory per held connection ≈ {:.1} KiB",
        pct(&loaded, 0.50) / pct(&base, 0.50),
        pct(&loaded, 0.99) / pct(&base, 0.99),
        (rss1.saturating_sub(rss0)) as f64 / (fds1.saturating_sub(fds0)).max(1) as f64
    );
    println!(
        "still open at the end: {} slowloris",
        alive.load(std::sync::atomic::Ordering::Relaxed)
    );
    for t in slow_tasks {
        t.abort();
    }
    drop(crowd);
}
