//! `/api/{*path}`: a simulated API whose latency and status come from `?delay=&status=`
//! or from the configured distribution and error rate.

use http::{Request, Response, StatusCode};

use super::{HandlerBody, error, json_value, query_param};
use crate::AppState;
/// Longest `?delay=` accepted (the same cap as every other delay).
pub use crate::config::MAX_DELAY;
use crate::config::RESPONSE_STATUSES;

/// Sleeps, then answers with the chosen status.
pub async fn handle<B>(state: &AppState, req: Request<B>) -> Response<HandlerBody> {
    let query = req.uri().query();
    let delay = match query_param(query, "delay") {
        Some(raw) => match humantime::parse_duration(raw) {
            Ok(d) if d <= MAX_DELAY => d,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid delay {raw:?}: expected a duration up to 60s such as 25ms"),
                );
            }
        },
        None => state
            .config
            .api
            .delay
            .map(|d| d.sample(state.chaos.uniform()))
            .unwrap_or_default(),
    };
    let status = match query_param(query, "status") {
        Some(raw) => match raw
            .parse::<u16>()
            .ok()
            .filter(|s| RESPONSE_STATUSES.contains(s))
            .and_then(|s| StatusCode::from_u16(s).ok())
        {
            Some(s) => s,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "invalid status {raw:?}: expected a final HTTP status between {} and {}",
                        RESPONSE_STATUSES.start(),
                        RESPONSE_STATUSES.end()
                    ),
                );
            }
        },
        None if state.chaos.chance(state.config.api.error_rate) => {
            StatusCode::from_u16(state.config.api.error_status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        None => StatusCode::OK,
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    #[derive(serde::Serialize)]
    struct Reply<'a> {
        path: &'a str,
        status: u16,
        delay_ms: f64,
    }
    let reply = Reply {
        path: req.uri().path(),
        status: status.as_u16(),
        delay_ms: delay.as_secs_f64() * 1e3,
    };
    json_value(status, &reply)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::Request;
    use http_body_util::{BodyExt, Full};

    /// Each bad query parameter of `/api`, `/chat/stream` and `/storm`, and the exact
    /// 400 message it gets; then the edges that are valid.
    #[tokio::test]
    async fn bad_query_parameters_get_400_naming_parameter_value_and_range() {
        let state = crate::AppState::new(crate::Config::default()).unwrap();
        let cases: &[(&str, &str)] = &[
            (
                "/api/x?delay=61s",
                r#"invalid delay "61s": expected a duration up to 60s such as 25ms"#,
            ),
            (
                "/api/x?delay=500000000000years",
                r#"invalid delay "500000000000years": expected a duration up to 60s such as 25ms"#,
            ),
            (
                "/api/x?delay=soon",
                r#"invalid delay "soon": expected a duration up to 60s such as 25ms"#,
            ),
            // See: issue #15 item 4 -- 999 used to be served though the text said 200-599.
            (
                "/api/x?status=999",
                r#"invalid status "999": expected a final HTTP status between 200 and 599"#,
            ),
            (
                "/api/x?status=600",
                r#"invalid status "600": expected a final HTTP status between 200 and 599"#,
            ),
            (
                "/api/x?status=199",
                r#"invalid status "199": expected a final HTTP status between 200 and 599"#,
            ),
            (
                "/api/x?status=100",
                r#"invalid status "100": expected a final HTTP status between 200 and 599"#,
            ),
            (
                "/api/x?status=abc",
                r#"invalid status "abc": expected a final HTTP status between 200 and 599"#,
            ),
            (
                "/chat/stream?tokens=100001",
                r#"invalid tokens "100001": expected a whole number up to 100000"#,
            ),
            (
                "/chat/stream?interval=11s",
                r#"invalid interval "11s": expected a duration up to 10s such as 20ms"#,
            ),
            (
                "/storm?width=x",
                r#"invalid width "x": expected a whole number"#,
            ),
        ];
        for (uri, want) in cases {
            let req = Request::post(*uri).body(Full::new(Bytes::new())).unwrap();
            let resp = crate::handle(state.clone(), req).await;
            assert_eq!(resp.status(), 400, "{uri}");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"], *want, "{uri}");
        }
        for (uri, status) in [
            ("/api/x?status=200", 200),
            ("/api/x?status=599", 599),
            ("/api/x?delay=0s", 200),
        ] {
            let req = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
            assert_eq!(
                crate::handle(state.clone(), req).await.status(),
                status,
                "{uri}"
            );
        }
    }
}
