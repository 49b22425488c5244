//! The platform section's pieces that every renderer shows (escaped for its format):
//! query series statistics and error counts, alert expectations, their times against
//! their bounds and their timelines, the receiver, and which thresholds judge a query or
//! an alert.
//!
//! Times of an alert's timeline are offsets from the start of its window (the fault or
//! phase it is tied to; the run's start for an alert tied to the whole run), so they read
//! like `alert_time_to_fire`.

use std::collections::BTreeMap;

use crate::model::{
    AlertEvent, AlertSummary, ChaosEvent, PlatformSummary, QuerySeries, QuerySummary,
    ReceiverSummary, Summary, ThresholdResult, Verdict,
};
use crate::units;

/// Whether there is anything to show: a platform with no query, alert or receiver is
/// left out like an absent one.
pub(crate) fn present(summary: &Summary) -> Option<&PlatformSummary> {
    summary
        .platform
        .as_ref()
        .filter(|p| !p.queries.is_empty() || !p.alerts.is_empty() || p.receiver.is_some())
}

/// Labels as a PromQL selector body: `{instance="prom-0", job="echo"}`, `{}` for none.
pub(crate) fn labels(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", quoted(v)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// A label value in double quotes, `\` and `"` escaped as PromQL writes them.
fn quoted(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// What a series returned: its latest value and the range of its values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SeriesStats {
    /// The value of the latest point (`NaN` stays `NaN`).
    pub last: f64,
    /// Smallest finite value, if any.
    pub min: Option<f64>,
    /// Largest finite value, if any.
    pub max: Option<f64>,
}

impl SeriesStats {
    /// `last 1.2, min 0.8, max 3.4` (`min —` without finite values).
    pub(crate) fn sentence(&self) -> String {
        let [last, min, max] = self.cells();
        format!("last {last}, min {min}, max {max}")
    }

    /// Last, min, max, formatted.
    pub(crate) fn cells(&self) -> [String; 3] {
        let or_dash = |v: Option<f64>| v.map_or("—".to_owned(), units::number);
        [
            units::number(self.last),
            or_dash(self.min),
            or_dash(self.max),
        ]
    }
}

/// The statistics of `series`, `None` without points.
pub(crate) fn series_stats(series: &QuerySeries) -> Option<SeriesStats> {
    // The latest point by time; of equal times, the later written.
    let last = series
        .points
        .iter()
        .reduce(|a, b| if b[0] >= a[0] { b } else { a })?;
    let finite = series.points.iter().map(|p| p[1]).filter(|v| v.is_finite());
    Some(SeriesStats {
        last: last[1],
        min: finite.clone().reduce(f64::min),
        max: finite.reduce(f64::max),
    })
}

/// Evaluations that could not be asked or were refused.
pub(crate) fn error_count(q: &QuerySummary) -> u64 {
    q.errors.values().sum()
}

/// `0 errors`, `3 errors (3 timeout)`, `3 errors (2 timeout, 1 other)`: the count and
/// its most frequent reason (ties by name).
pub(crate) fn errors_short(q: &QuerySummary) -> String {
    let total = error_count(q);
    let noun = if total == 1 { "error" } else { "errors" };
    let top = q
        .errors
        .iter()
        .filter(|(_, n)| **n > 0)
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
    match top {
        None => format!("{total} {noun}"),
        Some((reason, &n)) if n == total => format!("{total} {noun} ({n} {reason})"),
        Some((reason, &n)) => format!("{total} {noun} ({n} {reason}, {} other)", total - n),
    }
}

/// `0 errors`, `3 errors (2 timeout, 1 status 502)`: the count and every reason, most
/// frequent first.
pub(crate) fn errors_full(q: &QuerySummary) -> String {
    let total = error_count(q);
    let noun = if total == 1 { "error" } else { "errors" };
    match units::error_breakdown(&q.errors) {
        Some(causes) => format!("{total} {noun} ({causes})"),
        None => format!("{total} {noun}"),
    }
}

/// `promql, every 15s`.
pub(crate) fn cadence(q: &QuerySummary) -> String {
    format!("{}, every {}", q.language, units::secs(q.every_secs))
}

/// `EchoServerHighErrorRate{severity="page"}`, or the bare name without matchers.
pub(crate) fn selector(a: &AlertSummary) -> String {
    if a.matchers.is_empty() {
        a.alert.clone()
    } else {
        format!("{}{}", a.alert, labels(&a.matchers))
    }
}

/// Whether the alert is expected to fire (otherwise it must stay silent).
pub(crate) fn expects_firing(a: &AlertSummary) -> bool {
    a.expect == "fires"
}

/// `fires during errors`, `silent in baseline`, `silent for the whole run`.
pub(crate) fn expectation(a: &AlertSummary) -> String {
    match (expects_firing(a), &a.during) {
        (true, Some(d)) => format!("fires during {d}"),
        (true, None) => "fires".to_owned(),
        (false, Some(d)) => format!("silent in {d}"),
        (false, None) => "silent for the whole run".to_owned(),
    }
}

/// `1m00s → 1m30s`, run time.
pub(crate) fn window(a: &AlertSummary) -> String {
    format!(
        "{} → {}",
        units::secs(a.window_start_secs),
        units::secs(a.window_end_secs)
    )
}

/// A measured time against its bound: `+12.0s (limit 2m00s)`, `— (limit 2m00s)`,
/// `+12.0s`, or `—`.
pub(crate) fn against(measured: Option<f64>, bound: Option<f64>) -> String {
    let v = measured.map_or("—".to_owned(), units::offset);
    match bound {
        Some(b) => format!("{v} (limit {})", units::secs(b)),
        None => v,
    }
}

/// The alert's essentials in one sentence, for the terminal:
/// `fired +12.0s (limit 2m00s), notified +14.1s (limit 3m00s), resolved +9.8s after
/// the fault ended (limit 5m00s)`, or `fired 2 times (first +20.0s)`, then why a part
/// is unknown.
pub(crate) fn essentials(a: &AlertSummary) -> String {
    let mut parts = Vec::new();
    if expects_firing(a) {
        let bound = |b: Option<f64>| b.map(|b| format!(" (limit {})", units::secs(b)));
        parts.push(match a.time_to_fire_secs {
            Some(t) => format!(
                "fired {}{}",
                units::offset(t),
                bound(a.fires_within_secs).unwrap_or_default()
            ),
            None => format!(
                "not seen firing{}",
                bound(a.fires_within_secs).unwrap_or_default()
            ),
        });
        match (a.time_to_notify_secs, a.notifies_within_secs) {
            (Some(t), b) => parts.push(format!(
                "notified {}{}",
                units::offset(t),
                bound(b).unwrap_or_default()
            )),
            (None, Some(b)) => {
                parts.push(format!("no firing notification (limit {})", units::secs(b)))
            }
            (None, None) => {}
        }
        match (a.time_to_resolve_secs, a.resolves_within_secs) {
            (Some(t), b) => parts.push(format!(
                "resolved {} after the fault ended{}",
                units::offset(t),
                bound(b).unwrap_or_default()
            )),
            (None, Some(b)) => parts.push(format!("not seen resolved (limit {})", units::secs(b))),
            (None, None) => {}
        }
        if a.unexpected > 0 {
            parts.push(format!("{} unexpected", times(a.unexpected)));
        }
    } else if a.unexpected > 0 {
        let first = a
            .timeline
            .iter()
            .find(|e| e.state.ends_with("firing"))
            .map(|e| format!(" (first {})", units::offset(e.t - a.window_start_secs)))
            .unwrap_or_default();
        parts.push(format!("fired {}{first}", times(a.unexpected)));
    } else if a.unknown.is_empty() {
        parts.push("stayed silent".to_owned());
    } else {
        parts.push("not seen firing".to_owned());
    }
    let mut s = parts.join(", ");
    if !a.unknown.is_empty() {
        s.push_str("; unknown: ");
        s.push_str(&a.unknown.join("; "));
    }
    s
}

/// `1 time`, `2 times`.
fn times(n: u64) -> String {
    if n == 1 {
        "1 time".to_owned()
    } else {
        format!("{n} times")
    }
}

/// One timeline event: `+12.0s prometheus firing`, from the start of the alert's window.
pub(crate) fn event(a: &AlertSummary, e: &AlertEvent) -> String {
    format!(
        "{} {} {}",
        units::offset(e.t - a.window_start_secs),
        e.source,
        e.state
    )
}

/// `receiver 0.0.0.0:9097: 2 notifications accepted, 1 refused`.
pub(crate) fn receiver(r: &ReceiverSummary) -> String {
    let noun = if r.notifications == 1 {
        "notification"
    } else {
        "notifications"
    };
    format!(
        "receiver {}: {} {noun} accepted, {} refused",
        r.listen, r.notifications, r.refused
    )
}

/// A chaos event as people name it: `errors (errorRate=0.3)`, or the fault alone.
pub(crate) fn chaos_label(c: &ChaosEvent) -> String {
    match &c.name {
        Some(name) => format!("{name} ({})", c.fault),
        None => c.fault.clone(),
    }
}

/// Whether `metric` is `{base}{{{tag}:{value}}}` or has that tag first among others
/// (`query{name:lag,instance:a}`).
fn tagged(metric: &str, base: &str, tag: &str, value: &str) -> bool {
    metric
        .strip_prefix(base)
        .and_then(|m| m.strip_prefix('{'))
        .and_then(|m| m.strip_prefix(tag))
        .and_then(|m| m.strip_prefix(':'))
        .and_then(|m| m.strip_prefix(value))
        .is_some_and(|rest| rest.starts_with(['}', ',']))
}

/// The thresholds on `query{name:NAME…}`, in the order written.
pub(crate) fn query_thresholds<'a>(summary: &'a Summary, name: &str) -> Vec<&'a ThresholdResult> {
    summary
        .thresholds
        .iter()
        .filter(|t| tagged(&t.metric, "query", "name", name))
        .collect()
}

/// The thresholds on `alert_*{alert:NAME…}` (`alert_time_to_fire`, `alert_unexpected`, …).
pub(crate) fn alert_thresholds<'a>(summary: &'a Summary, alert: &str) -> Vec<&'a ThresholdResult> {
    summary
        .thresholds
        .iter()
        .filter(|t| {
            let base = t.metric.split('{').next().unwrap_or_default();
            base.starts_with("alert_") && tagged(&t.metric, base, "alert", alert)
        })
        .collect()
}

/// The worst verdict of `thresholds` (fail, then unknown, then pass); `None` without any.
pub(crate) fn worst(thresholds: &[&ThresholdResult]) -> Option<Verdict> {
    let has = |v: Verdict| thresholds.iter().any(|t| t.verdict == v);
    if thresholds.is_empty() {
        None
    } else if has(Verdict::Fail) {
        Some(Verdict::Fail)
    } else if has(Verdict::Unknown) {
        Some(Verdict::Unknown)
    } else {
        Some(Verdict::Pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(metric: &str) -> ThresholdResult {
        ThresholdResult {
            metric: metric.to_owned(),
            expression: "max<30".to_owned(),
            observed: None,
            limit: 30.0,
            verdict: Verdict::Pass,
            reason: None,
            abort_on_fail: false,
            window_secs: None,
            phase: None,
        }
    }

    #[test]
    fn a_querys_thresholds_are_its_own_not_a_longer_names() {
        let mut summary: Summary =
            serde_json::from_str(include_str!("../tests/data/fixture.summary.json")).unwrap();
        summary.thresholds = [
            "query{name:lag}",
            "query{name:lag_total}",
            "query{name:lag,instance:a}",
            "alert_time_to_fire{alert:High}",
            "alert_unexpected{alert:High,severity:page}",
            "alert_time_to_fire{alert:HighLatency}",
            "http_req_failed{alert:High}",
        ]
        .map(threshold)
        .into();
        let metrics = |ts: Vec<&ThresholdResult>| -> Vec<String> {
            ts.iter().map(|t| t.metric.clone()).collect()
        };
        assert_eq!(
            metrics(query_thresholds(&summary, "lag")),
            ["query{name:lag}", "query{name:lag,instance:a}"]
        );
        assert_eq!(
            metrics(alert_thresholds(&summary, "High")),
            [
                "alert_time_to_fire{alert:High}",
                "alert_unexpected{alert:High,severity:page}"
            ]
        );
    }

    #[test]
    fn series_statistics_take_the_latest_point_and_skip_nan_in_the_range() {
        let s = QuerySeries {
            labels: BTreeMap::new(),
            points: vec![[30.0, 2.0], [0.0, 9.0], [45.0, f64::NAN], [15.0, 1.0]],
        };
        let stats = series_stats(&s).unwrap();
        assert!(stats.last.is_nan());
        assert_eq!((stats.min, stats.max), (Some(1.0), Some(9.0)));
        assert_eq!(stats.sentence(), "last NaN, min 1, max 9");
        let empty = QuerySeries {
            labels: BTreeMap::new(),
            points: Vec::new(),
        };
        assert_eq!(series_stats(&empty), None);
    }

    #[test]
    fn labels_read_as_a_promql_selector() {
        let l = BTreeMap::from([
            ("job".to_owned(), "echo".to_owned()),
            ("path".to_owned(), "a\"b\\c".to_owned()),
        ]);
        assert_eq!(labels(&l), r#"{job="echo", path="a\"b\\c"}"#);
        assert_eq!(labels(&BTreeMap::new()), "{}");
    }
}
