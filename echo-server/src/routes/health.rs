//! `/healthz` and `/readyz`.

use std::sync::atomic::Ordering;

use http::{Response, StatusCode};
use serde_json::json;

use super::{HandlerBody, json_value};
use crate::AppState;
use crate::contract::Health;

/// Liveness, exporter counters, the last confirmed trace ids and active faults. Status is
/// `degraded` while exports fail.
pub fn healthz(state: &AppState) -> Response<HandlerBody> {
    let exporter = state.telemetry.health();
    let chaos = state.chaos.get();
    let health = Health {
        status: if exporter.state == "degraded" {
            "degraded"
        } else {
            "ok"
        }
        .to_owned(),
        service: state.config.service_name.clone(),
        exporter,
        exported_trace_ids: state.telemetry.span_stats().recent_trace_ids(),
        request_log_dropped: state.log.as_ref().map(|l| l.dropped()).unwrap_or(0),
        chaos: (!chaos.is_empty()).then(|| (*chaos).clone()),
    };
    json_value(StatusCode::OK, &health)
}

/// 200 while serving, 503 once shutdown began.
pub fn readyz(state: &AppState) -> Response<HandlerBody> {
    if state.draining.load(Ordering::Acquire) {
        json_value(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "draining" }),
        )
    } else {
        json_value(StatusCode::OK, &json!({ "status": "ready" }))
    }
}
