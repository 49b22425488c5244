//! A tiny OTLP sink for the benchmark: accepts trace and log exports and prints totals
//! every 5 s and on exit, keeping nothing.
//!
//! - default: OTLP/gRPC through tonic; decodes every message and counts spans and log
//!   records, as a collector's receiver would.
//! - `--discard`: OTLP/gRPC (h2c) or OTLP/HTTP; reads every byte of every export and
//!   answers success without decoding, counting requests and bytes. The exporter does the
//!   same work either way; only the receiver's decoding, which a real deployment runs on
//!   another machine, is left out.
//!
//! `cargo run --release -p echo-server --example otlp-sink -- 127.0.0.1:4317 [--discard]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

#[derive(Clone, Default)]
struct Counts {
    spans: Arc<AtomicU64>,
    logs: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Counts {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Counts {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let n: usize = request
            .into_inner()
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        self.logs.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

/// Reads an export whole and answers success: an empty gRPC message with `grpc-status: 0`
/// for OTLP/gRPC, an empty protobuf body for OTLP/HTTP.
async fn discard(
    req: http::Request<hyper::body::Incoming>,
    requests: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
) -> Result<http::Response<DiscardBody>, hyper::Error> {
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let mut body = req.into_body();
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
        }
    }
    requests.fetch_add(1, Ordering::Relaxed);
    bytes.fetch_add(n, Ordering::Relaxed);
    let response = if grpc {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(
                Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
                    .with_trailers(async { Some(Ok(trailers)) })
                    .boxed(),
            )
    } else {
        http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::new()).boxed())
    };
    Ok(response.expect("static response parts are valid"))
}

type DiscardBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn serve_discarding(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let (requests, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let totals = {
        let (requests, bytes) = (requests.clone(), bytes.clone());
        move || {
            format!(
                "requests={} bytes={}",
                requests.load(Ordering::Relaxed),
                bytes.load(Ordering::Relaxed)
            )
        }
    };
    let report = totals.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            eprintln!("otlp-sink (discard): {}", report());
        }
    });
    eprintln!("otlp-sink (discard): listening on {addr}");
    let accept = async {
        loop {
            let (stream, _) = listener.accept().await?;
            let (requests, bytes) = (requests.clone(), bytes.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    discard(req, requests.clone(), bytes.clone())
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    };
    tokio::select! {
        r = accept => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("otlp-sink (discard): final {}", totals());
            Ok(())
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:4317".into())
        .parse()?;
    if args.next().as_deref() == Some("--discard") {
        return serve_discarding(addr).await;
    }
    let counts = Counts::default();
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            eprintln!(
                "otlp-sink: spans={} logs={}",
                c.spans.load(Ordering::Relaxed),
                c.logs.load(Ordering::Relaxed)
            );
        }
    });
    eprintln!("otlp-sink: listening on {addr}");
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(counts.clone()))
        .add_service(LogsServiceServer::new(counts.clone()))
        .serve_with_shutdown(addr, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    eprintln!(
        "otlp-sink: final spans={} logs={}",
        counts.spans.load(Ordering::Relaxed),
        counts.logs.load(Ordering::Relaxed)
    );
    Ok(())
}
