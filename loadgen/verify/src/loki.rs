//! Logs: Loki `GET /loki/api/v1/query_range` with the configured stream selector and a
//! line filter on the trace ids.
//!
//! **Batched, by choice.** One query covers up to [`LokiVerifier::DEFAULT_BATCH`] ids:
//! `{app="echo-server"} |~ "id1|id2|…"`, over the window from the earliest completion in
//! the batch (minus a clock-skew allowance) to now. Per-id queries would multiply the
//! query load by the batch size, and every Loki query pays a fixed cost (query planning,
//! index lookup of the selector's streams, splitting, scheduling) that dominates for a
//! tiny result. A regex alternation of plain literals is matched by RE2 as one
//! multi-literal scan, so the per-line cost of 50 ids is about that of one; the window
//! stays narrow because the poller batches samples whose polls fall due together, i.e.
//! that completed close together. The selector should name as few streams as possible.
//!
//! The answer's log lines are scanned for 32-hex-digit runs, which are looked up among the
//! batch's ids, so the line format does not matter (JSON `trace_id`, logfmt, plain text).
//! The first entry's timestamp becomes [`super::Outcome::Found::recorded_at`]. If the
//! answer holds `limit` entries it may be truncated: ids not seen are then unknown, not
//! missing.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::http::HttpBackend;
use super::{BoxFuture, Check, Outcome, Sample, Signal, TraceId, Verifier};

/// Verifies log lines in Loki.
#[derive(Debug)]
pub struct LokiVerifier {
    backend: HttpBackend,
    selector: String,
    batch: usize,
    limit: usize,
    skew: Duration,
}

impl LokiVerifier {
    /// Ids per query by default.
    pub const DEFAULT_BATCH: usize = 50;

    /// Queries the streams of `selector` (e.g. `{app="echo-server"}`), 50 ids per query,
    /// at most 5000 entries per answer, 60 s of clock-skew allowance.
    pub fn new(backend: HttpBackend, selector: impl Into<String>) -> Self {
        Self {
            backend,
            selector: selector.into(),
            batch: Self::DEFAULT_BATCH,
            limit: 5000,
            skew: Duration::from_secs(60),
        }
    }

    /// The LogQL query for `ids`.
    pub fn logql(&self, ids: &[TraceId]) -> String {
        let alt: Vec<String> = ids.iter().map(|id| id.to_hex()).collect();
        format!("{} |~ `{}`", self.selector, alt.join("|"))
    }

    async fn query(&self, samples: &[Sample]) -> Check {
        let n = samples.len();
        let ids: Vec<TraceId> = samples.iter().map(|s| s.trace_id).collect();
        let earliest = samples
            .iter()
            .map(|s| s.completed_at)
            .min()
            .unwrap_or_else(SystemTime::now);
        let start = unix_nanos(earliest.checked_sub(self.skew).unwrap_or(UNIX_EPOCH));
        let end = unix_nanos(SystemTime::now() + self.skew);
        let (query, start, end, limit) = (
            self.logql(&ids),
            start.to_string(),
            end.to_string(),
            self.limit.to_string(),
        );
        let params = [
            ("query", query.as_str()),
            ("start", &start),
            ("end", &end),
            ("limit", &limit),
            ("direction", "forward"),
        ];
        let a = match self
            .backend
            .get("loki/api/v1/query_range", &params, "application/json")
            .await
        {
            Ok(a) => a,
            Err(u) => return Check::all_unknown(n, &u.reason, u.took),
        };
        let took = vec![a.took];
        let reason = match a.status.as_u16() {
            200 => match parse_streams(&a.body) {
                Ok((entries, found)) => {
                    let truncated = entries >= self.limit;
                    let outcomes = ids
                        .iter()
                        .map(|id| match found.get(id) {
                            Some(ts) => Outcome::Found { first_seen: a.received, spans: None, recorded_at: Some(*ts) },
                            None if truncated => Outcome::unknown(format!(
                                "loki answer held {entries} entries (the limit): it may be truncated, so an id not in it is not known to be missing"
                            )),
                            None => Outcome::Missing,
                        })
                        .collect();
                    return Check {
                        outcomes,
                        query_durations: took,
                    };
                }
                Err(e) => format!(
                    "{} at {} answered 200 with an unexpected body: {e}",
                    self.backend.name(),
                    self.backend.base_for_display()
                ),
            },
            400 => format!(
                "{} rejected the query `{query}` (400): {}",
                self.backend.name(),
                a.snippet()
            ),
            401 | 403 => self.backend.auth_reason(&a),
            _ => self.backend.status_reason(&a),
        };
        Check::all_unknown(n, &reason, took)
    }
}

impl Verifier for LokiVerifier {
    fn signal(&self) -> Signal {
        Signal::Logs
    }

    fn name(&self) -> &str {
        self.backend.name()
    }

    fn max_batch(&self) -> usize {
        self.batch
    }

    fn check<'a>(&'a self, samples: &'a [Sample]) -> BoxFuture<'a, Check> {
        Box::pin(async move {
            let mut check = Check::default();
            for chunk in samples.chunks(self.batch) {
                let c = self.query(chunk).await;
                check.outcomes.extend(c.outcomes);
                check.query_durations.extend(c.query_durations);
            }
            check
        })
    }
}

fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Parses a `streams` answer: the number of entries and, per trace id found in a line,
/// the earliest entry timestamp.
pub fn parse_streams(body: &[u8]) -> Result<(usize, HashMap<TraceId, SystemTime>), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if v.get("status").and_then(Value::as_str) != Some("success") {
        return Err(format!(
            "status is not `success`: {}",
            v.get("error").unwrap_or(&Value::Null)
        ));
    }
    let data = v.get("data").ok_or("no `data`")?;
    let kind = data.get("resultType").and_then(Value::as_str).unwrap_or("");
    if kind != "streams" {
        return Err(format!(
            "resultType is `{kind}`, expected `streams` (is the selector a log query?)"
        ));
    }
    let mut entries = 0;
    let mut found: HashMap<TraceId, SystemTime> = HashMap::new();
    for stream in data
        .get("result")
        .and_then(Value::as_array)
        .ok_or("`result` is not an array")?
    {
        for entry in stream
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            entries += 1;
            let ts = entry
                .get(0)
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<u64>().ok());
            let ts = UNIX_EPOCH
                + Duration::from_nanos(ts.ok_or("an entry timestamp is not a nanosecond string")?);
            let line = entry.get(1).and_then(Value::as_str).unwrap_or("");
            for id in hex_ids(line) {
                found
                    .entry(id)
                    .and_modify(|t| *t = (*t).min(ts))
                    .or_insert(ts);
            }
        }
    }
    Ok((entries, found))
}

/// Every run of exactly 32 hex digits in `line`, as a trace id.
pub fn hex_ids(line: &str) -> impl Iterator<Item = TraceId> + '_ {
    line.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|run| run.len() == 32)
        .filter_map(|run| run.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_finds_trace_ids_and_skips_span_ids() {
        let line = r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","request_id":"3f2c8a4e-6b1d"}"#;
        let ids: Vec<String> = hex_ids(line).map(|i| i.to_hex()).collect();
        assert_eq!(ids, ["4bf92f3577b34da6a3ce929d0e0e4736"]);
    }
}
