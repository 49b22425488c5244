//! Accept loops: one task per connection, HTTP/1.1 and h2c via hyper-util's auto builder,
//! and the bounds that keep a client from holding the server's resources:
//!
//! - at most `limits.max_connections` connections at once: beyond it a new connection is
//!   accepted and closed at once (the client sees the connection close before any reply;
//!   no 503, which an h2 prior-knowledge client could not read), counted in
//!   `echo_connections_refused_total` and logged at most once a second;
//! - a connection that sends nothing is closed after `header_read_timeout`, and so is an
//!   HTTP/1.1 head that is not complete by then (hyper's timer, which also runs while a
//!   keep-alive connection waits for its next request);
//! - a connection with no request in flight (HTTP/2: no open stream, e.g. one that only
//!   sent the preface) is shut down gracefully after `idle_timeout` (HTTP/2: GOAWAY, then
//!   closed after a PING round trip or at most `min(grace, idle_timeout)` later);
//! - HTTP/2 PINGs after `h2_keep_alive_interval` of silence, the connection closed when one
//!   is not acknowledged within `h2_keep_alive_timeout`;
//! - a request body is read within `body_read_timeout` of the first wait for it, else the
//!   handler answers 408 ([`BodyError::Timeout`]) and an HTTP/1.1 connection is closed;
//! - on shutdown a connection gets `grace` to finish its requests, then it is dropped.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ADMIN_MAX_CONNECTIONS;
use crate::metrics::CloseReason;
use crate::{AppState, ResponseBody};

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
        .keep_alive_interval(limits.h2_keep_alive_interval)
        .keep_alive_timeout(limits.h2_keep_alive_timeout)
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
    let tracker = TaskTracker::new();
    let limit = match kind {
        Kind::Public => state.config.limits.max_connections,
        Kind::Admin => ADMIN_MAX_CONNECTIONS,
    }
    .clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(limit));
    let mut last_refusal_log: Option<std::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: the connection stays queued; try again shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Refused: counted, then closed before anything is read (dropping the stream
            // closes it), so a client that saw the close also sees the count.
            let refused = match kind {
                Kind::Public => state.metrics.connections.refuse(),
                Kind::Admin => 0,
            };
            drop(stream);
            if last_refusal_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_refusal_log = Some(std::time::Instant::now());
                tracing::warn!(
                    %peer,
                    listener = ?kind,
                    max_connections = limit,
                    refused_total = refused,
                    "connection refused: the listener holds its maximum of connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let held = Held::new(permit, &state, kind);
        tracker.spawn(connection(
            stream,
            peer,
            builder.clone(),
            state.clone(),
            cancel.clone(),
            kind,
            held,
        ));
    }
    drop(listener);
    tracker.close();
    let grace = state.config.limits.grace;
    // Each connection bounds its own drain by `grace`; this is the backstop.
    if tokio::time::timeout(grace + Duration::from_secs(1), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "in-flight requests did not finish within the grace period"
        );
    }
}

/// A connection slot: its permit, and the open-connections gauge while it lives.
struct Held {
    _permit: OwnedSemaphorePermit,
    state: Option<Arc<AppState>>,
}

impl Held {
    fn new(permit: OwnedSemaphorePermit, state: &Arc<AppState>, kind: Kind) -> Self {
        let state = (kind == Kind::Public).then(|| {
            state.metrics.connections.opened();
            state.clone()
        });
        Self {
            _permit: permit,
            state,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(s) = &self.state {
            s.metrics.connections.closed();
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    builder: Builder<TokioExecutor>,
    state: Arc<AppState>,
    cancel: CancellationToken,
    kind: Kind,
    _held: Held,
) {
    let limits = state.config.limits.clone();
    let count = |reason| {
        if kind == Kind::Public {
            state.metrics.connections.closed_by(reason);
        }
    };
    // A client that connects and sends nothing would never reach hyper's header timer
    // (protocol detection waits for bytes), so wait for the first byte here.
    let mut first = [0u8; 1];
    tokio::select! {
        _ = cancel.cancelled() => return,
        r = tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)) => match r {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return,
            Err(_) => {
                count(CloseReason::Silent);
                return;
            }
        },
    }
    let activity = Arc::new(Activity::new());
    let svc = {
        let (state, activity) = (state.clone(), activity.clone());
        let body_timeout = limits.body_read_timeout;
        service_fn(move |req: Request<Incoming>| {
            let state = state.clone();
            let guard = activity.begin();
            async move {
                let req = req.map(|b| TimedBody::new(b, body_timeout));
                let resp = match kind {
                    Kind::Public => crate::handle(state, req).await,
                    Kind::Admin => crate::admin::handle(&state, req).await,
                };
                Ok::<_, Infallible>(resp.map(|inner| Tracked {
                    inner,
                    _guard: guard,
                }))
            }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let timer = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(timer);
    let mut closing = false;
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = cancel.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
                timer.as_mut().reset(Instant::now() + limits.grace);
            }
            _ = timer.as_mut() => {
                if closing {
                    tracing::debug!(%peer, "connection dropped: not drained within the grace period");
                    break Ok(());
                }
                match activity.idle_deadline(limits.idle_timeout, Instant::now()) {
                    Some(at) => timer.as_mut().reset(at),
                    None => {
                        // Nothing in flight: HTTP/1.1 closes at once; HTTP/2 sends GOAWAY
                        // and closes after a PING round trip, which a peer that does not
                        // answer PINGs gets min(grace, idle timeout) for.
                        closing = true;
                        count(CloseReason::Idle);
                        conn.as_mut().graceful_shutdown();
                        let drain = limits.grace.min(limits.idle_timeout);
                        timer.as_mut().reset(Instant::now() + drain);
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            count(CloseReason::Timeout);
        }
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Requests in flight on one connection and when the last one finished.
#[derive(Debug)]
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `born` to the end of the last request.
    last_done_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When to look again, or `None` when the connection has been idle for `idle` at
    /// `now`.
    fn idle_deadline(&self, idle: Duration, now: Instant) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Some(now + idle);
        }
        let last = self.born + Duration::from_millis(self.last_done_ms.load(Ordering::Acquire));
        let at = last + idle;
        (at > now).then_some(at)
    }
}

/// One request in flight: from the service call until its response body is finished or
/// dropped.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.last_done_ms.store(ms, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is done.
struct Tracked {
    inner: ResponseBody,
    _guard: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = <ResponseBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// It did not arrive within the body read timeout.
    #[error("the request body did not arrive within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The connection failed.
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

impl BodyError {
    /// The timeout, when `e` (as a body collector boxes it) is one.
    pub(crate) fn timeout_of(e: &(dyn std::error::Error + 'static)) -> Option<Duration> {
        match e.downcast_ref::<Self>() {
            Some(Self::Timeout(d)) => Some(*d),
            _ => None,
        }
    }
}

/// A request body that fails with [`BodyError::Timeout`] when it has not ended within
/// `timeout` of the first time reading it had to wait. The timer is only made for bodies
/// that wait, so a request whose body is already there (or empty) costs no allocation.
pub(crate) struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

impl std::fmt::Debug for TimedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedBody")
            .field("timeout", &self.timeout)
            .field("expired", &self.expired)
            .finish_non_exhaustive()
    }
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            timer: None,
            expired: false,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Some(Err(BodyError::Timeout(this.timeout))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|f| f.map_err(BodyError::Read))),
            Poll::Pending => {
                let timeout = this.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.expired = true;
                        Poll::Ready(Some(Err(BodyError::Timeout(timeout))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_only_after_its_last_request_plus_the_timeout() {
        let idle = Duration::from_secs(5);
        let a = Arc::new(Activity::new());
        let at = |secs| a.born + Duration::from_secs(secs);
        assert_eq!(a.idle_deadline(idle, at(3)), Some(at(5)), "not idle yet");
        assert_eq!(a.idle_deadline(idle, at(6)), None, "no request for 6 s");
        let req = a.begin();
        assert_eq!(
            a.idle_deadline(idle, at(600)),
            Some(at(605)),
            "a request in flight is never idle"
        );
        drop(req);
        let done = a.born + Duration::from_millis(a.last_done_ms.load(Ordering::Acquire));
        assert_eq!(a.idle_deadline(idle, done), Some(done + idle));
        assert_eq!(a.idle_deadline(idle, done + idle), None);
    }
}
