//! `/api/{*path}`: a simulated API whose latency and status come from `?delay=&status=`
//! or from the configured distribution and error rate.

use std::time::Duration;

use http::{Request, Response, StatusCode};

use super::{HandlerBody, error, json_value, query_param};
use crate::AppState;

/// Longest `?delay=` accepted.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

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
            .and_then(|s| StatusCode::from_u16(s).ok())
            .filter(|s| s.as_u16() >= 200)
        {
            Some(s) => s,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid status {raw:?}: expected 200-599"),
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
