//! Human formatting of the summary's numbers (ms, fractions, rates), shared by renderers.

use std::collections::BTreeMap;

use crate::model::{Outcome, Summary, ThresholdResult, TrendStats};

/// A latency in ms, k6 style: `350µs`, `12.34ms`, `1.21s`.
pub(crate) fn ms(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else if a >= 1.0 || a == 0.0 {
        format!("{v:.2}ms")
    } else {
        format!("{:.0}µs", v * 1000.0)
    }
}

/// A latency in ms for an axis label, short: `0.5ms`, `12ms`, `480ms`, `1.5s`.
pub(crate) fn ms_axis(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    if v.abs() >= 1000.0 {
        format!("{}s", trim(format!("{:.2}", v / 1000.0)))
    } else if v.abs() >= 10.0 || v == 0.0 {
        format!("{v:.0}ms")
    } else {
        format!("{}ms", trim(format!("{v:.2}")))
    }
}

/// A fraction (0..=1) as a percentage: `0.12%`.
pub(crate) fn percent(fraction: f64) -> String {
    if !fraction.is_finite() {
        return "n/a".to_owned();
    }
    let p = fraction * 100.0;
    if p != 0.0 && p.abs() < 0.01 {
        format!("{p:.4}%")
    } else {
        format!("{p:.2}%")
    }
}

/// A rate per second: `1151.9/s`.
pub(crate) fn per_sec(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}/s")
    } else {
        "n/a".to_owned()
    }
}

/// Seconds as `1h02m03s`, `4m05s`, `12s` or `1.5s`.
pub(crate) fn secs(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return "n/a".to_owned();
    }
    if v < 60.0 {
        return if v.fract() == 0.0 {
            format!("{v:.0}s")
        } else {
            format!("{v:.1}s")
        };
    }
    let total = v.round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else {
        format!("{m}m{s:02}s")
    }
}

/// How a threshold's observed value and limit are measured, from its expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Measure {
    /// `rate<0.003`: a fraction.
    Fraction,
    /// `count<10`: a count.
    Count,
    /// `p(99)<800ms`, `avg<…`: a duration in ms.
    Millis,
    /// `max<30` on `query{name:…}`: whatever the query returns, without a unit.
    Plain,
}

impl Measure {
    /// Classifies a k6 threshold expression by its aggregation.
    pub(crate) fn of(expression: &str) -> Measure {
        let e = expression.trim_start();
        if e.starts_with("rate") {
            Measure::Fraction
        } else if e.starts_with("count") {
            Measure::Count
        } else {
            Measure::Millis
        }
    }

    /// Classifies a threshold: by its expression, except that the values of a
    /// `query{name:…}` are the query's own, unitless, unless counted.
    pub(crate) fn of_threshold(t: &ThresholdResult) -> Measure {
        match Measure::of(&t.expression) {
            Measure::Millis if t.metric.starts_with("query{") => Measure::Plain,
            m => m,
        }
    }

    /// Formats a value measured this way.
    pub(crate) fn format(self, v: f64) -> String {
        match self {
            Measure::Fraction => percent(v),
            Measure::Count => format!("{v:.0}"),
            Measure::Millis => ms(v),
            Measure::Plain => number(v),
        }
    }
}

/// The observed value of a threshold, formatted, or `—` when there is none.
pub(crate) fn observed(t: &ThresholdResult) -> String {
    match t.observed {
        Some(v) => Measure::of_threshold(t).format(v),
        None => "—".to_owned(),
    }
}

/// The limit of a threshold, formatted.
pub(crate) fn limit(t: &ThresholdResult) -> String {
    Measure::of_threshold(t).format(t.limit)
}

/// A value without a unit (what a PromQL or LogQL query returns), short and exact
/// enough to read: `12`, `0.0421`, `1234.57`, `1.25e9`, and `NaN`, `+Inf`, `-Inf` as
/// Prometheus writes them.
pub(crate) fn number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e9).contains(&a) {
        let s = format!("{v:.3e}");
        return match s.split_once('e') {
            Some((mantissa, exp)) => {
                let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
                format!("{mantissa}e{exp}")
            }
            None => s,
        };
    }
    let decimals = if a >= 100.0 {
        2
    } else if a >= 1.0 {
        3
    } else {
        4
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    // `-0.00001` rounds to `-0`.
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// Seconds from a reference instant, signed: `+12.0s`, `+2m05s`, `-3.0s`.
pub(crate) fn offset(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let sign = if v < 0.0 { '-' } else { '+' };
    let a = v.abs();
    if a < 60.0 {
        format!("{sign}{a:.1}s")
    } else {
        format!("{sign}{}", secs(a))
    }
}

/// `http_req_duration{scenario:NAME}`.
pub(crate) fn scoped(metric: &str, scenario: &str) -> String {
    format!("{metric}{{scenario:{scenario}}}")
}

/// The `http_req_duration` trend of a scenario, or of the whole run when `scenario` is None.
pub(crate) fn duration_trend(summary: &Summary, scenario: Option<&str>) -> Option<TrendStats> {
    let key = match scenario {
        Some(s) => scoped("http_req_duration", s),
        None => "http_req_duration".to_owned(),
    };
    summary.metrics.get(&key).and_then(|m| m.trend)
}

/// The value of `metric` (whole run or one scenario), if present.
pub(crate) fn metric<'a>(
    summary: &'a Summary,
    name: &str,
    scenario: Option<&str>,
) -> Option<&'a crate::model::MetricSummary> {
    let key = match scenario {
        Some(s) => scoped(name, s),
        None => name.to_owned(),
    };
    summary.metrics.get(&key)
}

/// The warning every report shows for a run whose target certificate went unverified.
pub(crate) const INSECURE_SKIP_VERIFY: &str = "the target's TLS certificate was NOT verified (spec.target.insecureSkipVerify: true): the answers measured may not come from the service";

/// The run-metadata rows (label, value) that the Markdown and HTML reports show, with
/// user-supplied text passed through `text` and literal values (paths, URLs) through
/// `code`, each renderer escaping for its own format.
pub(crate) fn metadata_rows(
    summary: &Summary,
    text: impl Fn(&str) -> String,
    code: impl Fn(&str) -> String,
) -> Vec<(&'static str, String)> {
    let run = &summary.run;
    let mut rows: Vec<(&'static str, String)> = vec![("LoadTest", text(&run.name))];
    if let Some(source) = &run.source {
        rows.push(("Scenario file", code(source)));
    }
    let embedded = if run.embedded {
        " (embedded echo-server)"
    } else {
        ""
    };
    rows.push(("Target", format!("{}{embedded}", code(&run.target))));
    if run.insecure_skip_verify {
        rows.push(("TLS", text(INSECURE_SKIP_VERIFY)));
    }
    if let Some(rps) = run.target_rps {
        rows.push(("Target rate", per_sec(rps)));
    }
    if let Some(m) = run.multiplier {
        rows.push(("GA multiplier", format!("{m}×")));
    }
    if let Some(reqs) = metric(summary, "http_reqs", None) {
        rows.push(("Achieved rate", per_sec(reqs.rate)));
    }
    for s in &summary.scenarios {
        rows.push((
            "Scenario",
            format!(
                "{} — {}, starts at {}, runs {}",
                text(&s.name),
                text(&s.executor),
                secs(s.start_secs),
                secs(s.duration_secs)
            ),
        ));
    }
    if let Some(reason) = &run.stop_reason {
        let label = if run.outcome == Outcome::Error {
            "Could not be carried out"
        } else {
            "Stopped early"
        };
        rows.push((label, text(reason)));
    }
    rows.push(("Started", text(&run.started_at)));
    rows.push(("Ended", text(&run.ended_at)));
    rows.push(("Duration", secs(run.duration_secs)));
    rows.push(("loadgen", text(&run.loadgen_version)));
    rows.push(("Schema version", summary.schema_version.to_string()));
    rows
}

/// The causes of requests without an answer, most frequent first (ties by name):
/// `12 timeout, 3 reset`; `None` when there are none.
pub(crate) fn error_breakdown(errors: &BTreeMap<String, u64>) -> Option<String> {
    let mut causes: Vec<(&String, u64)> = errors
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| (c, *n))
        .collect();
    if causes.is_empty() {
        return None;
    }
    causes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    Some(
        causes
            .iter()
            .map(|(c, n)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// The "note" cell of a threshold row (phase, window, reason, abortOnFail), with
/// user-supplied text passed through `text` so each renderer escapes for its format.
pub(crate) fn threshold_note(t: &ThresholdResult, text: impl Fn(&str) -> String) -> String {
    let mut note = Vec::new();
    if let Some(phase) = &t.phase {
        note.push(format!("phase {}", text(phase)));
    }
    if let Some(w) = t.window_secs {
        note.push(format!("window {}", secs(w)));
    }
    if let Some(reason) = &t.reason {
        note.push(text(reason));
    }
    if t.abort_on_fail {
        note.push("abortOnFail".to_owned());
    }
    note.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_k6() {
        assert_eq!(ms(0.35), "350µs");
        assert_eq!(ms(12.345), "12.35ms");
        assert_eq!(ms(1210.0), "1.21s");
        assert_eq!(ms(0.0), "0.00ms");
        assert_eq!(ms_axis(500.0), "500ms");
        assert_eq!(ms_axis(2500.0), "2.5s");
        assert_eq!(ms_axis(0.25), "0.25ms");
    }

    #[test]
    fn fractions_keep_small_values_visible() {
        assert_eq!(percent(0.0012), "0.12%");
        assert_eq!(percent(0.000_01), "0.0010%");
        assert_eq!(percent(0.0), "0.00%");
    }

    #[test]
    fn seconds_read_as_clock_durations() {
        assert_eq!(secs(12.0), "12s");
        assert_eq!(secs(125.0), "2m05s");
        assert_eq!(secs(3725.0), "1h02m05s");
    }

    #[test]
    fn error_causes_read_most_frequent_first() {
        let errors = BTreeMap::from([
            ("reset".to_owned(), 3),
            ("timeout".to_owned(), 12),
            ("refused".to_owned(), 3),
            ("dns".to_owned(), 0),
        ]);
        assert_eq!(
            error_breakdown(&errors).as_deref(),
            Some("12 timeout, 3 refused, 3 reset")
        );
        assert_eq!(error_breakdown(&BTreeMap::new()), None);
    }

    #[test]
    fn threshold_measure_follows_the_aggregation() {
        assert_eq!(Measure::of("rate<0.003"), Measure::Fraction);
        assert_eq!(Measure::of("count<10"), Measure::Count);
        assert_eq!(Measure::of("p(99)<800ms"), Measure::Millis);
    }

    #[test]
    fn query_thresholds_are_unitless_unless_counted() {
        let t = |metric: &str, expression: &str| ThresholdResult {
            metric: metric.to_owned(),
            expression: expression.to_owned(),
            observed: Some(18.5),
            limit: 30.0,
            verdict: crate::model::Verdict::Pass,
            reason: None,
            abort_on_fail: false,
            window_secs: None,
            phase: None,
        };
        let lag = t("query{name:remote_write_lag}", "max<30");
        assert_eq!(Measure::of_threshold(&lag), Measure::Plain);
        assert_eq!((observed(&lag), limit(&lag)), ("18.5".into(), "30".into()));
        let counted = t("query{name:remote_write_lag}", "count<30");
        assert_eq!(Measure::of_threshold(&counted), Measure::Count);
        let latency = t("http_req_duration", "p(99)<30");
        assert_eq!(observed(&latency), "18.50ms");
    }

    #[test]
    fn query_values_read_short_and_keep_prometheus_specials() {
        assert_eq!(number(12.0), "12");
        assert_eq!(number(0.042_13), "0.0421");
        assert_eq!(number(1234.5678), "1234.57");
        assert_eq!(number(3.251_59), "3.252");
        assert_eq!(number(-0.000_001), "-1e-6");
        assert_eq!(number(1.25e9), "1.25e9");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn offsets_are_signed_seconds() {
        assert_eq!(offset(12.0), "+12.0s");
        assert_eq!(offset(9.84), "+9.8s");
        assert_eq!(offset(125.0), "+2m05s");
        assert_eq!(offset(-3.0), "-3.0s");
    }
}
