//! Entry points for the `ricochet-fuzz` harness (feature `fuzzing`): private parsers
//! driven on in-memory input. Not an API; it exists only for the fuzz harness.

use std::task::{Context, Poll, Waker};

use http::{HeaderMap, Method};

use crate::h1::scripted::Scripted;
use crate::h1::{Conn, Template};

/// What one exchange read from the peer: status, bytes received (head and payload), whether
/// the connection may be reused.
pub type H1Outcome = (u16, u64, bool);

/// Sends a `GET` (or `HEAD` when `head_request`) on a connection whose peer answers with
/// `reads`, one read per element, then end of stream, and parses the response with the
/// engine's HTTP/1.1 client (head, Content-Length, chunked, read-until-close).
///
/// The in-memory peer is always ready, so the exchange completes without a runtime; an
/// exchange still pending after many polls is reported as `Err("pending ...")` (a hang).
pub fn h1_exchange(reads: Vec<Vec<u8>>, head_request: bool) -> Result<H1Outcome, String> {
    let method = if head_request {
        Method::HEAD
    } else {
        Method::GET
    };
    let template = Template::new(&method, "/fuzz", &HeaderMap::new(), b"");
    let mut conn = Conn::new(Scripted(reads.into()));
    let traceparent = [b'0'; 55];
    let request_id = [b'0'; 32];
    let mut exchange = std::pin::pin!(conn.exchange(&template, &traceparent, &request_id, None));
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(r) = exchange.as_mut().poll(&mut cx) {
            return r
                .map(|r| (r.status, r.received, r.reusable))
                .map_err(|e| e.to_string());
        }
    }
    Err("pending after 1 000 000 polls on an always-ready stream".to_owned())
}
