//! Accept loops: one task per connection, HTTP/1.1 and h2c via hyper-util's auto builder,
//! bounded request heads, a header read timeout, and graceful draining.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::AppState;

/// Which service a listener runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Public,
    Admin,
}

fn builder(state: &AppState) -> Builder<TokioExecutor> {
    let limits = &state.config.limits;
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    b
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<AppState>,
    cancel: CancellationToken,
    kind: Kind,
) {
    let builder = builder(&state);
    let graceful = GracefulShutdown::new();
    let header_timeout = state.config.limits.header_read_timeout;
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let state = state.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            // A client that connects and sends nothing would never reach hyper's header
            // timer (protocol detection waits for bytes), so wait for the first byte here.
            let mut first = [0u8; 1];
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = tokio::time::timeout(header_timeout, stream.peek(&mut first)) => match r {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                },
            }
            let io = TokioIo::new(stream);
            let result = match kind {
                Kind::Public => {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(crate::handle(state, req).await) }
                    });
                    watcher.watch(builder.serve_connection(io, svc)).await
                }
                Kind::Admin => {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                crate::admin::handle(&state, req).await,
                            )
                        }
                    });
                    watcher.watch(builder.serve_connection(io, svc)).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = state.config.limits.grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "in-flight requests did not finish within the grace period"
        );
    }
}
