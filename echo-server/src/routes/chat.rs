//! `POST /chat/stream`: a chunked reply of `?tokens=N` chunks, `?interval=20ms` apart.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, StreamBody};
use hyper::body::Frame;

use super::{HandlerBody, error, query_param};

/// Most tokens per reply.
pub const MAX_TOKENS: u32 = 100_000;
/// Longest interval between tokens.
pub const MAX_INTERVAL: Duration = Duration::from_secs(10);

/// Starts the stream; the body yields one NDJSON line per token.
pub fn handle<B>(req: Request<B>) -> Response<HandlerBody> {
    let query = req.uri().query();
    let tokens = match query_param(query, "tokens") {
        None => 16,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if n <= MAX_TOKENS => n,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid tokens {raw:?}: expected a whole number up to {MAX_TOKENS}"),
                );
            }
        },
    };
    let interval = match query_param(query, "interval") {
        None => Duration::from_millis(20),
        Some(raw) => match humantime::parse_duration(raw) {
            Ok(d) if d <= MAX_INTERVAL => d,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "invalid interval {raw:?}: expected a duration up to 10s such as 20ms"
                    ),
                );
            }
        },
    };
    let chunks = stream::unfold(0u32, move |i| async move {
        if i >= tokens {
            return None;
        }
        if i > 0 && !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        let line = format!("{{\"index\":{i},\"token\":\"tok{i}\"}}\n");
        Some((
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(line))),
            i + 1,
        ))
    });
    let mut r = Response::new(Either::Right(StreamBody::new(chunks).boxed_unsync()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r
}
