//! Shared helpers of the load tests: one load test at a time, a runtime per test, and
//! tiny hyper servers that misbehave on purpose (all on 127.0.0.1:0).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ricochet_engine::plan::Plan;
use ricochet_engine::run::{RunOptions, RunOutcome, Stopper, execute};
use tokio::net::TcpListener;

static LOAD: Mutex<()> = Mutex::new(());

/// Serializes load tests within a binary (the machine is small and shared).
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    LOAD.lock().unwrap_or_else(|p| p.into_inner())
}

/// A multi-threaded runtime like the CLI's.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `plan` in-process to completion.
pub async fn run(plan: &Plan) -> RunOutcome {
    execute(plan, &RunOptions::default(), Arc::new(Stopper::new()))
        .await
        .expect("run starts")
}

/// A server whose every response takes `delay(elapsed since server start)`.
pub async fn server_with<F>(delay: F) -> SocketAddr
where
    F: Fn(Duration) -> Duration + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let start = Instant::now();
    let delay = Arc::new(delay);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let delay = delay.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let d = delay(start.elapsed());
                    async move {
                        if !d.is_zero() {
                            tokio::time::sleep(d).await;
                        }
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
    addr
}
