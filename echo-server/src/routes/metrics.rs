//! `GET /metrics`: OpenMetrics (with exemplars) when asked for, Prometheus text otherwise.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{Either, Full};

use super::HandlerBody;
use crate::AppState;
use crate::metrics::Format;

/// Renders the RED metrics in the negotiated format.
pub fn handle<B>(state: &AppState, req: &Request<B>) -> Response<HandlerBody> {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(
        state.metrics.render(format),
    ))));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}
