//! Routing and the handlers of the public listener.

pub mod api;
pub mod chat;
pub mod echo;
pub mod health;
pub mod metrics;
pub mod runs;
pub mod storm;

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{Either, Full};

use crate::AppState;
use crate::otlp::encode::StormSpan;
use crate::telemetry::SpanStart;

/// Body a handler produces: a whole body, or a stream.
pub type HandlerBody = Either<Full<Bytes>, UnsyncBoxBody<Bytes, Infallible>>;

/// A matched route; `as_str` is the `http.route` template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// `/echo`
    Echo,
    /// `/api/{*path}`
    Api,
    /// `/chat/stream`
    ChatStream,
    /// `/storm`
    Storm,
    /// `/healthz`
    Healthz,
    /// `/readyz`
    Readyz,
    /// `/metrics`
    Metrics,
    /// `/runs/{run}` and `/runs/{run}/traces`: run accounting, not workload (no span, log,
    /// metrics or run counts of its own).
    Runs,
    /// Anything else (404).
    Unmatched,
}

impl Route {
    /// Matches a request path.
    pub fn resolve(path: &str) -> Self {
        match path {
            "/echo" => Self::Echo,
            "/chat/stream" => Self::ChatStream,
            "/storm" => Self::Storm,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/metrics" => Self::Metrics,
            p if p.starts_with("/api/") || p == "/api" => Self::Api,
            p if p.starts_with("/runs/") => Self::Runs,
            _ => Self::Unmatched,
        }
    }

    /// The templates of the matched routes, as faults may name them in `route`.
    pub const TEMPLATES: [&'static str; 7] = [
        "/echo",
        "/api/{*path}",
        "/chat/stream",
        "/storm",
        "/healthz",
        "/readyz",
        "/metrics",
    ];

    /// The route template.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Echo => "/echo",
            Self::Api => "/api/{*path}",
            Self::ChatStream => "/chat/stream",
            Self::Storm => "/storm",
            Self::Healthz => "/healthz",
            Self::Readyz => "/readyz",
            Self::Metrics => "/metrics",
            Self::Runs => "/runs/{run}",
            Self::Unmatched => "unmatched",
        }
    }

    /// Workload routes are the ones unscoped chaos applies to.
    pub fn is_workload(self) -> bool {
        matches!(
            self,
            Self::Echo | Self::Api | Self::ChatStream | Self::Storm
        )
    }

    /// Whether a request counts for its run: every route but the
    /// [`NOT_WORKLOAD_ROUTES`](crate::contract::NOT_WORKLOAD_ROUTES) and `/runs` (unmatched
    /// paths count, as they do in the duration histogram's `_count`).
    pub fn is_accounted(self) -> bool {
        !matches!(
            self,
            Self::Healthz | Self::Readyz | Self::Metrics | Self::Runs
        )
    }
}

/// The semconv method label (`_OTHER` for non-standard methods).
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// What a handler returns: the response and any extra spans of the trace.
#[derive(Debug)]
pub struct Outcome {
    /// The response.
    pub response: Response<HandlerBody>,
    /// Child spans to emit with the server span.
    pub children: Vec<StormSpan>,
}

impl From<Response<HandlerBody>> for Outcome {
    fn from(response: Response<HandlerBody>) -> Self {
        Self {
            response,
            children: Vec::new(),
        }
    }
}

/// A JSON response.
pub fn json(status: StatusCode, body: Vec<u8>) -> Response<HandlerBody> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON value response.
pub fn json_value(status: StatusCode, v: &impl serde::Serialize) -> Response<HandlerBody> {
    json(status, serde_json::to_vec(v).unwrap_or_default())
}

/// `{"error": msg}` with `status`.
pub fn error(status: StatusCode, msg: &str) -> Response<HandlerBody> {
    json_value(status, &serde_json::json!({ "error": msg }))
}

/// 408 when `e`, the error of reading a request body, is the body read timeout (counted
/// in the connection metrics); the HTTP/1.1 connection is closed after it, since the rest
/// of the body is still on its way.
pub(crate) fn body_timeout(
    state: &AppState,
    version: http::Version,
    e: &(dyn std::error::Error + 'static),
) -> Option<Response<HandlerBody>> {
    crate::serve::BodyError::timeout_of(e)?;
    state.metrics.connections.body_timeout();
    let mut r = error(StatusCode::REQUEST_TIMEOUT, &e.to_string());
    if version < http::Version::HTTP_2 {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Some(r)
}

/// Query parameter `name` (first occurrence, not percent-decoded).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// Runs the handler of `route`.
pub async fn dispatch<B>(
    state: &AppState,
    route: Route,
    req: Request<B>,
    span: Option<&SpanStart>,
) -> Outcome
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let method = req.method().clone();
    let not_allowed = || error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into();
    match route {
        Route::Echo if method == Method::GET || method == Method::POST => {
            echo::handle(state, req).await.into()
        }
        Route::Api => api::handle(state, req).await.into(),
        Route::ChatStream if method == Method::POST => chat::handle(req).into(),
        Route::Storm if method == Method::GET || method == Method::POST => {
            storm::handle(state, &req, span)
        }
        Route::Healthz if method == Method::GET => health::healthz(state).into(),
        Route::Readyz if method == Method::GET => health::readyz(state).into(),
        Route::Metrics if method == Method::GET => metrics::handle(state, &req).into(),
        Route::Runs if method == Method::GET => runs::handle(state, &req).into(),
        Route::Unmatched => error(StatusCode::NOT_FOUND, "no such route").into(),
        _ => not_allowed(),
    }
}
