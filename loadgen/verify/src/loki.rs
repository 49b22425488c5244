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
//! **Found is the echo-server's line.** The line filter only narrows what Loki sends
//! back; it matches the id anywhere in a line, e.g. in another service's
//! `upstream trace 4bf9…`. A sample is found only by a line whose **fields** are the
//! request's: `trace_id` equal to the sample's trace id and `request_id` equal to the
//! request id loadgen sent (`x-request-id`), read from the echo-server's JSON line
//! (`{"ts":…,"trace_id":"…","span_id":"…","request_id":"…",…}`) or from its text format
//! (`… trace_id=… request_id="…" …`). A sample without a request id (older callers) is
//! matched by `trace_id` alone. The first matching entry's timestamp becomes
//! [`super::Outcome::Found::recorded_at`].
//!
//! **Classification.** `200` `{"status":"success","data":{"resultType":"streams",…}}` is
//! Loki's own answer: a sample with no matching line in it is missing (an empty `result`
//! means none of the batch). If the answer holds `limit` entries it may be truncated: ids
//! not seen are then unknown, not missing. A `400` plain-text answer is Loki refusing the
//! query. Everything else (a proxy's HTML 404, a gateway's JSON, a login redirect, a
//! `401`, a `200` that is not Loki's JSON, a `resultType` other than `streams`) is
//! unknown with a reason naming the URL and what came back
//! ([`HttpBackend::foreign_reason`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::http::{Answer, HttpBackend};
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
        Check {
            outcomes: self.interpret(&a, &query, samples),
            query_durations: vec![a.took],
        }
    }

    /// One outcome per sample from one answer (see the module docs).
    fn interpret(&self, a: &Answer, query: &str, samples: &[Sample]) -> Vec<Outcome> {
        let all = |reason: String| vec![Outcome::unknown(reason); samples.len()];
        if a.is_redirect() || a.is_html() {
            return all(self.backend.foreign_reason(a, "Loki"));
        }
        match a.status.as_u16() {
            200 => match read_streams(&a.body) {
                Ok((entries, lines)) => {
                    let truncated = entries >= self.limit;
                    samples
                        .iter()
                        .map(|s| match first_match(&lines, s) {
                            Some(at) => Outcome::Found {
                                first_seen: a.received,
                                spans: None,
                                extra_spans: None,
                                recorded_at: Some(at),
                            },
                            None if truncated => Outcome::unknown(format!(
                                "loki answer held {entries} entries (the limit): it may be truncated, so an id not in it is not known to be missing"
                            )),
                            None => Outcome::Missing,
                        })
                        .collect()
                }
                Err(StreamsError::NotLoki) => all(self.backend.foreign_reason(a, "Loki")),
                Err(StreamsError::Unexpected(e)) => all(format!(
                    "{} answered 200 with an unexpected body: {e}",
                    a.url
                )),
            },
            400 if !a.is_json() => all(format!(
                "{} rejected the query `{query}` (400): {}",
                self.backend.name(),
                a.snippet()
            )),
            _ => all(self.backend.foreign_reason(a, "Loki")),
        }
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

/// One log entry of a `streams` answer whose line carries a `trace_id` field.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogLine {
    /// Loki's entry timestamp.
    at: SystemTime,
    /// The line's `trace_id` field.
    trace_id: TraceId,
    /// The line's `request_id` field, if any.
    request_id: Option<String>,
}

/// Why a body is not a `streams` answer.
#[derive(Debug)]
enum StreamsError {
    /// Not Loki's JSON at all (no `status`): a proxy's or another server's answer.
    NotLoki,
    /// Loki's JSON, but not a successful `streams` answer.
    Unexpected(String),
}

/// The earliest entry whose fields are `s`'s: `trace_id`, and `request_id` unless the
/// sample has none.
fn first_match(lines: &[LogLine], s: &Sample) -> Option<SystemTime> {
    lines
        .iter()
        .filter(|l| l.trace_id == s.trace_id)
        .filter(|l| {
            s.request_id.is_empty()
                || l.request_id
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(&s.request_id))
        })
        .map(|l| l.at)
        .min()
}

/// Reads a `streams` answer: the number of entries, and the entries whose line carries a
/// `trace_id` field.
fn read_streams(body: &[u8]) -> Result<(usize, Vec<LogLine>), StreamsError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| StreamsError::NotLoki)?;
    let status = v
        .get("status")
        .and_then(Value::as_str)
        .ok_or(StreamsError::NotLoki)?;
    let unexpected = |e: String| StreamsError::Unexpected(e);
    if status != "success" {
        return Err(unexpected(format!(
            "status is not `success`: {}",
            v.get("error").unwrap_or(&Value::Null)
        )));
    }
    let data = v
        .get("data")
        .ok_or_else(|| unexpected("no `data`".into()))?;
    let kind = data.get("resultType").and_then(Value::as_str).unwrap_or("");
    if kind != "streams" {
        return Err(unexpected(format!(
            "resultType is `{kind}`, expected `streams` (is the selector a log query?)"
        )));
    }
    let mut entries = 0;
    let mut lines = Vec::new();
    for stream in data
        .get("result")
        .and_then(Value::as_array)
        .ok_or_else(|| unexpected("`result` is not an array".into()))?
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
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    unexpected("an entry timestamp is not a nanosecond string".into())
                })?;
            let line = entry.get(1).and_then(Value::as_str).unwrap_or("");
            if let Some((trace_id, request_id)) = line_ids(line) {
                lines.push(LogLine {
                    at: UNIX_EPOCH + Duration::from_nanos(ts),
                    trace_id,
                    request_id,
                });
            }
        }
    }
    Ok((entries, lines))
}

/// Parses a `streams` answer: the number of entries and, per trace id found in a line's
/// `trace_id` field, the earliest entry timestamp.
pub fn parse_streams(body: &[u8]) -> Result<(usize, HashMap<TraceId, SystemTime>), String> {
    let (entries, lines) = read_streams(body).map_err(|e| match e {
        StreamsError::NotLoki => "not a Loki answer (not JSON, or no `status`)".to_owned(),
        StreamsError::Unexpected(e) => e,
    })?;
    let mut found: HashMap<TraceId, SystemTime> = HashMap::new();
    for l in lines {
        found
            .entry(l.trace_id)
            .and_modify(|t| *t = (*t).min(l.at))
            .or_insert(l.at);
    }
    Ok((entries, found))
}

/// The `trace_id` (32 hex digits) and `request_id` fields of a log line: a JSON object's
/// fields, or `key=value` pairs as the echo-server's text format writes them (values bare
/// or JSON-quoted). `None` when the line has no such `trace_id` field; an id elsewhere in
/// the line (a message, another field) does not count.
pub fn line_ids(line: &str) -> Option<(TraceId, Option<String>)> {
    let trimmed = line.trim();
    let (trace, request) = if trimmed.starts_with('{') {
        let v: Value = serde_json::from_str(trimmed).ok()?;
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        (field("trace_id")?, field("request_id"))
    } else {
        let pairs = logfmt(trimmed);
        let field = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        (field("trace_id")?, field("request_id"))
    };
    if trace.len() != 32 {
        return None;
    }
    Some((trace.parse().ok()?, request))
}

/// `key=value` pairs of a text line; a value is bare (up to the next space) or a
/// JSON-quoted string. Words without `=` are skipped.
fn logfmt(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return out;
        }
        let word_end = rest.find([' ', '=']).unwrap_or(rest.len());
        if !rest[word_end..].starts_with('=') {
            // A word without a value: skip it.
            rest = &rest[word_end..];
            continue;
        }
        let key = &rest[..word_end];
        rest = &rest[word_end + 1..];
        let value = if rest.starts_with('"') {
            // The closing quote: the first `"` not escaped by a backslash.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in rest.char_indices().skip(1) {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let Some(end) = end else {
                return out;
            };
            let raw = &rest[..=end];
            rest = &rest[end + 1..];
            serde_json::from_str::<String>(raw).unwrap_or_default()
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            let v = rest[..end].to_owned();
            rest = &rest[end..];
            v
        };
        out.push((key.to_owned(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn the_echo_servers_json_and_text_lines_give_their_fields() {
        let json = r#"{"ts":"2026-11-21T13:04:39.715Z","level":"info","msg":"request","service":"echo-server","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","tenant_id":null,"request_id":"0123456789abcdef0123456789abcdef","method":"GET","route":"/api/{*path}","path":"/api/orders","status":200,"duration_ms":1.2}"#;
        let text = r#"ts=2026-11-21T13:04:39.715Z level=info msg="request" service="echo-server" trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 tenant_id="" request_id="0123456789abcdef0123456789abcdef" method=GET route="/api/{*path}" path="/a b\"c" status=200 duration_ms=1.200"#;
        for line in [json, text] {
            let (id, rid) = line_ids(line).unwrap();
            assert_eq!(id.to_hex(), T1, "{line}");
            assert_eq!(rid.as_deref(), Some("0123456789abcdef0123456789abcdef"));
        }
    }

    #[test]
    fn an_id_anywhere_but_the_trace_id_field_is_not_the_lines_id() {
        for line in [
            "proxy: upstream trace 4bf92f3577b34da6a3ce929d0e0e4736 took 3ms",
            r#"{"msg":"upstream trace 4bf92f3577b34da6a3ce929d0e0e4736","trace_id":"5b8efff798038103d269b633813fc60c"}"#,
            r#"{"parent_trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#,
            r#"msg="trace_id=4bf92f3577b34da6a3ce929d0e0e4736""#,
        ] {
            let got = line_ids(line).map(|(id, _)| id.to_hex());
            assert_ne!(got.as_deref(), Some(T1), "{line}");
        }
        // A short id in the field is not a trace id.
        assert_eq!(line_ids(r#"{"trace_id":"abc"}"#), None);
    }
}
