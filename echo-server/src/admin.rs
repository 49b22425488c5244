//! The admin listener: `GET/PUT/DELETE /chaos`, every call with `Authorization: Bearer`.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full, Limited};

use crate::chaos::ChaosSpec;
use crate::routes::{body_timeout, error, json_value};
use crate::{AppState, ResponseBody};

const MAX_BODY: usize = 64 * 1024;

fn full(r: Response<crate::routes::HandlerBody>) -> Response<ResponseBody> {
    let (parts, body) = r.into_parts();
    let body = match body {
        Either::Left(b) => b,
        Either::Right(_) => Full::new(Bytes::new()),
    };
    Response::from_parts(parts, Either::Left(body))
}

pub(crate) async fn handle<B>(state: &AppState, req: Request<B>) -> Response<ResponseBody>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut r = full(route(state, req).await);
    r.headers_mut()
        .insert(crate::REPLICA, state.replica_header.clone());
    r
}

async fn route<B>(state: &AppState, req: Request<B>) -> Response<crate::routes::HandlerBody>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let authorized = match (
        &state.config.admin_token,
        req.headers().get(header::AUTHORIZATION),
    ) {
        (Some(token), Some(v)) => v
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .is_some_and(|t| token.matches(t)),
        _ => false,
    };
    if !authorized {
        let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    if req.uri().path() != "/chaos" {
        return error(StatusCode::NOT_FOUND, "no such admin route; try /chaos");
    }
    match *req.method() {
        Method::GET => json_value(StatusCode::OK, &*state.chaos.get()),
        Method::DELETE => {
            state.chaos.set(ChaosSpec::default());
            json_value(StatusCode::OK, &ChaosSpec::default())
        }
        Method::PUT => {
            let version = req.version();
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return body_timeout(state, version, &*e).unwrap_or_else(|| {
                        error(
                            StatusCode::BAD_REQUEST,
                            &format!("cannot read the body: {e}"),
                        )
                    });
                }
            };
            let spec: ChaosSpec = match serde_json::from_slice(&body) {
                Ok(s) => s,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid chaos document: {e}"),
                    );
                }
            };
            if let Err(e) = spec.validate() {
                return json_value(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({
                        "error": e.to_string(),
                        "field": e.field,
                        "value": e.value,
                        "expected": e.expected,
                    }),
                );
            }
            state.chaos.set(spec);
            json_value(StatusCode::OK, &*state.chaos.get())
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "use GET, PUT or DELETE"),
    }
}
