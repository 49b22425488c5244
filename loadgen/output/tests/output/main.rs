//! Tests of the metrics output over real sockets: one binary, a module per topic.
//!
//! The stub endpoints here are small hyper servers on `127.0.0.1:0` that record each
//! request and answer as the test says; `prometheus` runs the real thing.

mod down;
mod otlp;
mod prometheus;
mod remote_write;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use ricochet_output::{Batch, Histogram, Kind, Series};

/// How long a poll may wait for a backend: `RICOCHET_TEST_PATIENCE_SECS`, default 30 s.
fn patience() -> Duration {
    let secs = std::env::var("RICOCHET_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// A request a stub received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A stub endpoint: its address and what it received, in order.
struct Stub {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Stub {
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// What the stub answers to its `n`-th request (from 0): status and body.
type Answers = Arc<dyn Fn(usize) -> (u16, &'static str) + Send + Sync>;

/// Serves on a free loopback port, over TLS when an acceptor is given.
async fn stub(answers: Answers, tls: Option<tokio_rustls::TlsAcceptor>) -> Stub {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (answers, log, tls) = (answers.clone(), log.clone(), tls.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (answers, log) = (answers.clone(), log.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let n = {
                                let mut log = log.lock().unwrap();
                                log.push(Received {
                                    path: parts.uri.path().to_owned(),
                                    headers: parts.headers,
                                    body,
                                });
                                log.len() - 1
                            };
                            let (status, text) = answers(n);
                            let mut r =
                                Response::new(Full::new(Bytes::from_static(text.as_bytes())));
                            *r.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(r)
                        }
                    });
                let http1 = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(acceptor) => {
                        // A client that rejects the certificate ends the handshake.
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = http1.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                    None => {
                        let _ = http1.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            });
        }
    });
    Stub { addr, received }
}

/// A stub that accepts every request with `answer`.
async fn always(status: u16, answer: &'static str) -> Stub {
    stub(Arc::new(move |_| (status, answer)), None).await
}

/// Label pairs from `(&str, &str)`s.
fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A batch at `at` with counter `ricochet_requests_total{scenario="smoke"}` = `requests`,
/// gauge `ricochet_vus` = `vus` and histogram `ricochet_latency_seconds` over bounds
/// 0.1, 0.5 with per-bucket `counts`.
fn batch(at: SystemTime, requests: f64, vus: f64, counts: [u64; 3]) -> Batch {
    Batch {
        at,
        series: vec![
            Series {
                name: "ricochet_requests_total".into(),
                labels: labels(&[("scenario", "smoke")]),
                value: requests,
                kind: Kind::Counter,
            },
            Series {
                name: "ricochet_vus".into(),
                labels: labels(&[("scenario", "smoke")]),
                value: vus,
                kind: Kind::Gauge,
            },
        ],
        histograms: vec![Histogram {
            name: "ricochet_latency_seconds".into(),
            labels: labels(&[("scenario", "smoke")]),
            count: counts.iter().sum(),
            sum: 0.05 * counts[0] as f64 + 0.3 * counts[1] as f64 + 0.9 * counts[2] as f64,
            bounds: vec![0.1, 0.5],
            counts: counts.to_vec(),
        }],
        native: Vec::new(),
    }
}
