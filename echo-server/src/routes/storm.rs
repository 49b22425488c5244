//! `/storm?width=W&depth=D`: a trace of `W x D` child spans below the server span (W
//! chains of D nested spans). At most 10 000 spans per trace, root included.

use std::time::{Duration, SystemTime};

use http::{Request, StatusCode};
use serde_json::json;

use super::{Outcome, error, json_value, query_param};
use crate::AppState;
use crate::otlp::encode::StormSpan;
use crate::telemetry::SpanStart;

/// Largest trace `/storm` makes, root included.
pub const MAX_SPANS: u64 = 10_000;

/// Builds the child spans; they are emitted with the server span.
pub fn handle<B>(state: &AppState, req: &Request<B>, span: Option<&SpanStart>) -> Outcome {
    let query = req.uri().query();
    let parse = |name: &str| -> Result<u64, String> {
        match query_param(query, name) {
            None => Ok(1),
            Some(raw) => raw
                .parse::<u64>()
                .map_err(|_| format!("invalid {name} {raw:?}: expected a whole number")),
        }
    };
    let (width, depth) = match (parse("width"), parse("depth")) {
        (Ok(w), Ok(d)) => (w, d),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, &e).into(),
    };
    let spans = width
        .checked_mul(depth)
        .and_then(|n| n.checked_add(1))
        .unwrap_or(u64::MAX);
    if spans > MAX_SPANS {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "width x depth + 1 = {spans} spans exceeds the limit of {MAX_SPANS} spans per trace"
            ),
        )
        .into();
    }
    let mut children = Vec::new();
    if let Some(root) = span
        && state.telemetry.exporting()
    {
        children.reserve(spans as usize - 1);
        let now = SystemTime::now();
        for w in 0..width {
            let mut parent = root.span_id;
            for d in 0..depth {
                let id = state.telemetry.new_span_id();
                let start = now + Duration::from_micros(d);
                children.push(StormSpan {
                    span_id: id,
                    parent_span_id: parent,
                    start,
                    end: start + Duration::from_micros(1),
                    branch: w,
                    level: d,
                });
                parent = id;
            }
        }
    }
    let response = json_value(
        StatusCode::OK,
        &json!({
            "trace_id": span.map(|s| s.trace_id.to_string()),
            "width": width,
            "depth": depth,
            "spans": if span.is_some() { spans } else { 0 },
        }),
    );
    Outcome { response, children }
}
