//! Metrics with nothing installed: scrape the echo-server's own `/metrics` (OpenMetrics,
//! with exemplars) the way Prometheus would, for the embedded default of `loadgen run`.
//!
//! The echo-server keeps the **latest** exemplar per bucket and series, so a trace id is
//! visible only until the next request in its bucket replaces it; Prometheus has the same
//! limit, bounded by its scrape interval. [`ExpositionVerifier`] therefore remembers every
//! trace id it has seen in any scrape (bounded, oldest evicted) and answers from that
//! memory: each check scrapes once more, so polling more often sees more ids. Under load
//! only a fraction of sampled ids can ever be seen as exemplars; the engine judges this
//! signal accordingly (see [`super::prometheus`]).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::http::HttpBackend;
use super::prometheus::{Exemplar, Newest, ProbeSeries};
use super::recent::{Recent, Retention};
use super::{BoxFuture, Check, Outcome, Sample, Signal, Verifier};

/// The Accept header Prometheus sends, so the echo-server answers OpenMetrics.
pub const ACCEPT_OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One sample line of a text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Metric name (with `_bucket`, `_count`, `_total` suffixes as written).
    pub name: String,
    /// Labels, in written order.
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// The exemplar, if any.
    pub exemplar: Option<LineExemplar>,
}

/// Label pairs in written order.
pub type Labels = Vec<(String, String)>;

/// An exemplar as written after ` # ` on a sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineExemplar {
    /// Its labels (`trace_id`, `span_id`).
    pub labels: Labels,
    /// The observed value.
    pub value: f64,
    /// Its timestamp in unix seconds, if written.
    pub timestamp: Option<f64>,
}

impl Line {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `{k="v",…}` starting at `s` (which begins with `{`); returns the labels and the
/// rest after the closing brace.
fn parse_labels(s: &str) -> Option<(Labels, &str)> {
    let mut rest = s.strip_prefix('{')?;
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if let Some(r) = rest.strip_prefix('}') {
            return Some((out, r));
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                other => value.push(other),
            }
        };
        out.push((key, value));
        rest = &rest[end + 1..];
    }
}

/// Parses one exposition line; `None` for comments, blank or malformed lines.
pub fn parse_line(line: &str) -> Option<Line> {
    let line = line.trim_end();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let (labels, rest) = if line[name_end..].starts_with('{') {
        parse_labels(&line[name_end..])?
    } else {
        (Vec::new(), &line[name_end..])
    };
    let (sample, exemplar) = match rest.split_once(" # ") {
        Some((s, e)) => (s, Some(e)),
        None => (rest, None),
    };
    let value = sample.split_whitespace().next()?.parse().ok()?;
    let exemplar = exemplar.and_then(|e| {
        let (labels, rest) = parse_labels(e.trim_start())?;
        let mut it = rest.split_whitespace();
        let v = it.next()?.parse().ok()?;
        let timestamp = it.next().and_then(|t| t.parse().ok());
        Some(LineExemplar {
            labels,
            value: v,
            timestamp,
        })
    });
    Some(Line {
        name,
        labels,
        value,
        exemplar,
    })
}

/// Every exemplar with a `trace_id` label in an exposition.
pub fn exemplars(text: &str) -> Vec<Exemplar> {
    text.lines()
        .filter_map(parse_line)
        .filter_map(|l| {
            let LineExemplar {
                labels,
                value,
                timestamp: ts,
            } = l.exemplar.as_ref()?;
            let id = labels
                .iter()
                .find(|(k, _)| k == "trace_id")?
                .1
                .parse()
                .ok()?;
            let at = ts
                .filter(|t| t.is_finite() && *t >= 0.0)
                .map_or(UNIX_EPOCH, |t| {
                    UNIX_EPOCH + Duration::from_millis((t * 1000.0).round() as u64)
                });
            Some(Exemplar {
                trace_id: id,
                at,
                value: *value,
                series: ProbeSeries::of(l.label("slot"), l.label("replica")),
            })
        })
        .collect()
}

/// The sum of metric `name` over the series whose labels include every `filter` pair
/// (e.g. `http_server_request_duration_seconds_count`, `[("http_route", "/api/{*path}")]`).
pub fn sum(text: &str, name: &str, filter: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(parse_line)
        .filter(|l| l.name == name && filter.iter().all(|(k, v)| l.label(k) == Some(*v)))
        .map(|l| l.value)
        .sum()
}

#[derive(Debug)]
struct Seen {
    /// When each exemplar's trace id was first scraped, and the exemplar's own timestamp.
    ids: Recent<(Instant, SystemTime)>,
    /// The newest exemplar of each probe series seen.
    newest: Newest,
}

/// Verifies exemplars by scraping an exposition (the embedded echo-server's `/metrics`).
#[derive(Debug)]
pub struct ExpositionVerifier {
    backend: HttpBackend,
    path: String,
    seen: Mutex<Seen>,
}

impl ExpositionVerifier {
    /// Scrapes `metrics` under the backend's base URL and remembers the exemplars' trace
    /// ids within `limits`.
    pub fn new(backend: HttpBackend, limits: Retention) -> Self {
        Self {
            backend,
            path: "metrics".to_owned(),
            seen: Mutex::new(Seen {
                ids: Recent::new(limits),
                newest: Newest::default(),
            }),
        }
    }

    /// Trace ids forgotten to stay within the cap.
    pub fn evicted(&self) -> u64 {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ids
            .evicted()
    }

    /// Scrapes once: the exposition text, or why not.
    pub async fn scrape(&self) -> Result<(String, super::http::Answer), String> {
        let a = self
            .backend
            .get(&self.path, &[], ACCEPT_OPENMETRICS)
            .await
            .map_err(|u| u.reason)?;
        if !a.status.is_success() {
            return Err(self.backend.status_reason(&a));
        }
        Ok((String::from_utf8_lossy(&a.body).into_owned(), a))
    }
}

impl Verifier for ExpositionVerifier {
    fn signal(&self) -> Signal {
        Signal::Metrics
    }

    fn name(&self) -> &str {
        self.backend.name()
    }

    fn max_batch(&self) -> usize {
        4096
    }

    fn check<'a>(&'a self, samples: &'a [Sample]) -> BoxFuture<'a, Check> {
        Box::pin(async move {
            let (text, a) = match self.scrape().await {
                Ok(x) => x,
                Err(reason) => return Check::all_unknown(samples.len(), &reason, Vec::new()),
            };
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            for e in exemplars(&text)
                .into_iter()
                .filter(|e| e.series.slot.is_some())
            {
                seen.newest.note(&e);
                seen.ids
                    .entry(e.trace_id, a.received, || (a.received, e.at));
            }
            let outcomes = samples
                .iter()
                .map(|s| match seen.ids.get(&s.trace_id) {
                    Some((first_seen, at)) => Outcome::Found {
                        first_seen: *first_seen,
                        spans: None,
                        extra_spans: None,
                        recorded_at: Some(*at),
                    },
                    None => seen.newest.outcome_of_absent(s),
                })
                .collect();
            Check {
                outcomes,
                query_durations: vec![a.took],
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_braces_in_label_values_and_exemplars_parse() {
        let l = parse_line(
            r#"http_server_request_duration_seconds_bucket{http_route="/api/{*path}",le="0.005"} 1 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 0.0012 1795266279.715"#,
        )
        .unwrap();
        assert_eq!(l.label("http_route"), Some("/api/{*path}"));
        assert_eq!(l.value, 1.0);
        let LineExemplar {
            labels,
            value: v,
            timestamp: ts,
        } = l.exemplar.unwrap();
        assert_eq!(
            labels[0],
            (
                "trace_id".to_owned(),
                "4bf92f3577b34da6a3ce929d0e0e4736".to_owned()
            )
        );
        assert_eq!((v, ts), (0.0012, Some(1795266279.715)));
        let plain = parse_line(r#"up{a="x\"y"} 1"#).unwrap();
        assert_eq!(plain.label("a"), Some("x\"y"));
        assert_eq!(parse_line("x_total 3").unwrap().value, 3.0);
        assert!(parse_line("# EOF").is_none());
    }
}
