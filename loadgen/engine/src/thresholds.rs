//! k6-style thresholds: `metric{tag:value}: ["p(99)<800ms"]` parsed into [`Threshold`]s.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::metric::{Metric, MetricKind};

/// One parsed threshold condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// The metric key as written, e.g. `http_req_duration{scenario:api}`.
    pub key: String,
    /// The metric, e.g. [`Metric::HttpReqDuration`].
    pub metric: Metric,
    /// Tag filter: every tag must match for a sample to count.
    pub filter: BTreeMap<String, String>,
    /// The condition as written, e.g. `p(99)<800ms`.
    pub expression: String,
    /// What is computed from the metric.
    pub aggregation: Aggregation,
    /// How it is compared.
    pub comparison: Comparison,
    /// The limit, in milliseconds for durations, a fraction for `rate`, a number otherwise.
    pub limit: f64,
    /// Stop the run as soon as this fails.
    pub abort_on_fail: bool,
    /// No abort evaluation before this much of the run has passed.
    pub delay_abort_eval: Duration,
    /// Which samples are judged.
    pub scope: Scope,
}

/// What a threshold computes from its metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Aggregation {
    /// `p(N)`, N in 0..=100.
    Percentile(f64),
    /// `avg`.
    Avg,
    /// `med`.
    Med,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `count`.
    Count,
    /// `rate`: fraction of true samples (rate metrics) or per-second rate (counters).
    Rate,
    /// `last`: the latest value of a query series.
    Last,
}

/// Comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// Which samples a threshold judges.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    /// The whole run.
    Run,
    /// Every tumbling window of this length; the threshold fails if any window fails.
    Window(Duration),
    /// Only samples scheduled during the stages with this phase name.
    Phase(String),
}

/// Whether a threshold on a metric of `kind` may use `aggregation`.
fn allows(kind: MetricKind, aggregation: Aggregation) -> bool {
    match kind {
        MetricKind::Counter => matches!(aggregation, Aggregation::Count | Aggregation::Rate),
        MetricKind::Rate => matches!(aggregation, Aggregation::Rate),
        MetricKind::Trend => matches!(
            aggregation,
            Aggregation::Percentile(_)
                | Aggregation::Avg
                | Aggregation::Med
                | Aggregation::Min
                | Aggregation::Max
        ),
        MetricKind::Gauge => !matches!(aggregation, Aggregation::Rate),
    }
}

fn known_metrics() -> String {
    Metric::ALL
        .iter()
        .map(|m| format!("`{m}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Comparison {
    /// The operator as written: `<`, `<=`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Eq => "==",
            Comparison::Ne => "!=",
        }
    }

    /// Whether `value <op> limit` holds. `==` and `!=` allow the rounding of a limit
    /// converted to milliseconds (`1005us` is 1.0050000000000001 ms): values within
    /// [`f64::EPSILON`] relative (absolute below 1) are equal.
    pub fn holds(self, value: f64, limit: f64) -> bool {
        let equal = || (value - limit).abs() <= f64::EPSILON * limit.abs().max(1.0);
        match self {
            Comparison::Lt => value < limit,
            Comparison::Le => value <= limit,
            Comparison::Gt => value > limit,
            Comparison::Ge => value >= limit,
            Comparison::Eq => equal(),
            Comparison::Ne => !equal(),
        }
    }
}

/// The part of a threshold entry an error is about, so it can be located in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdField {
    /// The metric key, `http_req_duration{scenario:api}`.
    Key,
    /// The condition, `p(99)<800ms` (the string, or `threshold` of the detailed form).
    Condition,
    /// `delayAbortEval`.
    DelayAbortEval,
    /// `window`.
    Window,
    /// `phase`.
    Phase,
}

/// A threshold entry that cannot be parsed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ThresholdError {
    /// Which part of the entry is wrong.
    pub field: ThresholdField,
    /// One sentence: what is wrong and what is valid.
    pub message: String,
}

/// What a threshold may refer to in its plan: scenario names (tag filters), phase names,
/// and the platform checks' query names, alert names and chaos entry names.
#[derive(Clone, Debug, Default)]
pub struct ThresholdContext {
    /// Names of the plan's scenarios.
    pub scenarios: Vec<String>,
    /// Stage names of the plan's ramping scenarios.
    pub phases: Vec<String>,
    /// `spec.queries` names (`query{name:...}`).
    pub queries: Vec<String>,
    /// Drilled alert names (`alert_*{alert:...}`).
    pub alerts: Vec<String>,
    /// Named `spec.chaos` entries, which query thresholds may take as `phase`.
    pub chaos: Vec<String>,
}

fn fail(field: ThresholdField, message: String) -> ThresholdError {
    ThresholdError { field, message }
}

fn backticked(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a threshold key, `metric` or `metric{tag:value,tag2:value}`, into metric and filter.
pub fn parse_key(
    key: &str,
    ctx: &ThresholdContext,
) -> Result<(Metric, BTreeMap<String, String>), ThresholdError> {
    let (metric, filter_text) = match key.find('{') {
        Some(open) => (&key[..open], Some(&key[open..])),
        None => (key, None),
    };
    let name = metric.trim();
    let Some(metric) = Metric::parse(name) else {
        return Err(fail(
            ThresholdField::Key,
            format!(
                "unknown metric `{name}`, expected one of {}",
                known_metrics()
            ),
        ));
    };
    let mut filter = BTreeMap::new();
    if let Some(text) = filter_text {
        let bad = || {
            fail(
                ThresholdField::Key,
                format!(
                    "bad tag filter `{text}`, expected `{{tag:value}}` or `{{tag:value,tag2:value}}`"
                ),
            )
        };
        let inner = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .ok_or_else(bad)?;
        if inner.trim().is_empty() {
            return Err(bad());
        }
        for pair in inner.split(',') {
            let (tag, value) = pair.split_once(':').ok_or_else(bad)?;
            let (tag, value) = (tag.trim(), value.trim());
            let tag_ok = tag
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if !tag_ok || value.is_empty() || value.contains(['{', '}']) {
                return Err(bad());
            }
            if filter.insert(tag.to_owned(), value.to_owned()).is_some() {
                return Err(fail(
                    ThresholdField::Key,
                    format!("tag `{tag}` appears twice in the filter `{text}`"),
                ));
            }
        }
        if let Some(scenario) = filter.get("scenario")
            && !metric.is_platform()
            && !ctx.scenarios.iter().any(|s| s == scenario)
        {
            return Err(fail(
                ThresholdField::Key,
                format!(
                    "no scenario is named `{scenario}`, expected one of {}",
                    backticked(&ctx.scenarios)
                ),
            ));
        }
    }
    platform_key(metric, &filter, ctx)?;
    Ok((metric, filter))
}

/// The tags a platform metric's key must and may carry: `query{name:<query>}` (other tags
/// filter the series by label), `alert_*{alert:<alertname>}` (or none, for every drilled
/// alert).
fn platform_key(
    metric: Metric,
    filter: &BTreeMap<String, String>,
    ctx: &ThresholdContext,
) -> Result<(), ThresholdError> {
    let key = |m: String| Err(fail(ThresholdField::Key, m));
    match metric {
        Metric::Query => match filter.get("name") {
            None if ctx.queries.is_empty() => key(
                "`query` needs `spec.queries` and names one of them: `query{name:<query name>}`"
                    .to_owned(),
            ),
            None => key(format!(
                "`query` needs the query's name: `query{{name:<name>}}` with one of {}",
                backticked(&ctx.queries)
            )),
            Some(n) if !ctx.queries.iter().any(|q| q == n) => key(format!(
                "no query is named `{n}`, expected one of {}",
                if ctx.queries.is_empty() {
                    "the names of `spec.queries` (there are none)".to_owned()
                } else {
                    backticked(&ctx.queries)
                }
            )),
            Some(_) => Ok(()),
        },
        Metric::Alert(_) => {
            if ctx.alerts.is_empty() {
                return key(format!(
                    "`{metric}` needs `spec.alerts` with the alerts to drill"
                ));
            }
            if let Some(tag) = filter.keys().find(|t| *t != "alert") {
                return key(format!(
                    "`{metric}` takes only the tag `alert`, not `{tag}`: e.g. `{metric}{{alert:{}}}`",
                    ctx.alerts[0]
                ));
            }
            match filter.get("alert") {
                Some(a) if !ctx.alerts.iter().any(|x| x == a) => key(format!(
                    "no drilled alert is named `{a}`, expected one of {}",
                    backticked(&ctx.alerts)
                )),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Parses a condition such as `p(99)<800ms`, `rate<0.003` or `count>=100` for `metric`:
/// the aggregation, comparison and limit (milliseconds for trends).
pub fn parse_condition(
    metric: Metric,
    condition: &str,
) -> Result<(Aggregation, Comparison, f64), ThresholdError> {
    let kind = metric.kind();
    let bad = |why: String| fail(ThresholdField::Condition, why);
    let syntax = || {
        bad(format!(
            "`{condition}` is not a threshold condition, expected `AGGREGATION OP VALUE` such as `p(99)<800ms` or `rate<0.01` (OP is one of `<`, `<=`, `>`, `>=`, `==`, `!=`)"
        ))
    };
    let op_at = condition.find(['<', '>', '=', '!']).ok_or_else(syntax)?;
    let aggregation_text = condition[..op_at].trim();
    let rest = &condition[op_at..];
    let (comparison, value_text) = [
        ("<=", Comparison::Le),
        (">=", Comparison::Ge),
        ("===", Comparison::Eq),
        ("==", Comparison::Eq),
        ("!=", Comparison::Ne),
        ("<", Comparison::Lt),
        (">", Comparison::Gt),
    ]
    .iter()
    .find_map(|(op, cmp)| rest.strip_prefix(op).map(|v| (*cmp, v.trim())))
    .ok_or_else(syntax)?;

    let aggregation = match aggregation_text {
        "avg" => Aggregation::Avg,
        "med" => Aggregation::Med,
        "min" => Aggregation::Min,
        "max" => Aggregation::Max,
        "count" => Aggregation::Count,
        "rate" => Aggregation::Rate,
        "last" => Aggregation::Last,
        other => {
            let n = other
                .strip_prefix("p(")
                .and_then(|t| t.strip_suffix(')'))
                .ok_or_else(|| {
                    bad(format!(
                        "unknown aggregation `{other}` in `{condition}`, expected {} for `{metric}` (a {})",
                        kind.valid_aggregations(),
                        kind.as_str()
                    ))
                })?;
            match n.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Aggregation::Percentile(p),
                _ => {
                    return Err(bad(format!(
                        "bad percentile `{other}` in `{condition}`, expected `p(N)` with N between 0 and 100, e.g. `p(99)` or `p(99.9)`"
                    )));
                }
            }
        }
    };
    if !allows(kind, aggregation) {
        return Err(bad(format!(
            "`{aggregation_text}` does not apply to `{metric}` (a {}), expected {}",
            kind.as_str(),
            kind.valid_aggregations()
        )));
    }

    let split = value_text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .unwrap_or(value_text.len());
    let (number_text, unit) = value_text.split_at(split);
    let unit = unit.trim();
    let number: f64 = number_text
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(syntax)?;
    if number < 0.0 && kind != MetricKind::Gauge {
        return Err(bad(format!(
            "the limit in `{condition}` is negative; limits are numbers >= 0"
        )));
    }
    let limit = match kind {
        MetricKind::Trend => {
            let ms_per_unit = match unit {
                "" | "ms" => 1.0,
                "us" | "µs" => 1e-3,
                "s" => 1e3,
                "m" => 60e3,
                _ => {
                    return Err(bad(format!(
                        "unknown unit `{unit}` in `{condition}`, expected `us`, `ms`, `s` or `m` (no unit means `ms`)"
                    )));
                }
            };
            number * ms_per_unit
        }
        MetricKind::Counter | MetricKind::Rate if !unit.is_empty() => {
            return Err(bad(format!(
                "`{condition}` has the unit `{unit}`, but `{metric}` is a {} and its limits take no unit",
                kind.as_str()
            )));
        }
        MetricKind::Rate if number > 1.0 => {
            return Err(bad(format!(
                "the rate limit in `{condition}` is above 1; `rate` of `{metric}` is a fraction between 0 and 1, e.g. `rate<0.01` for 1%"
            )));
        }
        MetricKind::Gauge if !unit.is_empty() => {
            return Err(bad(format!(
                "`{condition}` has the unit `{unit}`, but a query's values are plain numbers (seconds where the query returns seconds): write `max<10`"
            )));
        }
        MetricKind::Counter | MetricKind::Rate | MetricKind::Gauge => number,
    };
    // A finite number times a unit can overflow (`1e308m`); an infinite limit would always
    // pass or fail and is written to summary.json as `null`, which no reader accepts.
    if !limit.is_finite() {
        return Err(bad(format!(
            "the limit in `{condition}` is too large; write a finite limit such as `p(99)<800ms`"
        )));
    }
    Ok((aggregation, comparison, limit))
}

/// Parses one threshold entry (`key` and its `index`-th condition) into a [`Threshold`].
pub fn parse_threshold(
    key: &str,
    spec: &ricochet_crds::ThresholdSpec,
    ctx: &ThresholdContext,
) -> Result<Threshold, ThresholdError> {
    use ricochet_crds::ThresholdSpec;

    let (metric, filter) = parse_key(key, ctx)?;
    let (expression, detail) = match spec {
        ThresholdSpec::Expression(e) => (e.as_str(), None),
        ThresholdSpec::Detailed(d) => (d.threshold.as_str(), Some(d)),
    };
    let (aggregation, comparison, limit) = parse_condition(metric, expression)?;
    let duration = |field: ThresholdField, text: &str| {
        crate::duration::parse_duration(text).map_err(|e| fail(field, e.to_string()))
    };
    let mut threshold = Threshold {
        key: key.to_owned(),
        metric,
        filter,
        expression: expression.to_owned(),
        aggregation,
        comparison,
        limit,
        abort_on_fail: false,
        delay_abort_eval: Duration::ZERO,
        scope: Scope::Run,
    };
    if let Some(detail) = detail {
        threshold.abort_on_fail = detail.abort_on_fail;
        if let Some(text) = &detail.delay_abort_eval {
            threshold.delay_abort_eval = duration(ThresholdField::DelayAbortEval, text)?;
        }
        match (&detail.window, &detail.phase) {
            (Some(_), Some(_)) => {
                return Err(fail(
                    ThresholdField::Phase,
                    "`window` and `phase` cannot both be set; a threshold judges either every window of the run or one phase".to_owned(),
                ));
            }
            (Some(text), None) => {
                let window = duration(ThresholdField::Window, text)?;
                if window.is_zero() {
                    return Err(fail(
                        ThresholdField::Window,
                        "`window` must be longer than 0s, e.g. `1m`".to_owned(),
                    ));
                }
                threshold.scope = Scope::Window(window);
            }
            (None, Some(phase)) => {
                let chaos = metric == Metric::Query && ctx.chaos.iter().any(|c| c == phase);
                if !chaos && !ctx.phases.iter().any(|p| p == phase) {
                    let message = if metric == Metric::Query {
                        format!(
                            "no stage and no chaos entry is named `{phase}`, expected a stage name ({}) or a chaos entry's `name` ({})",
                            backticked(&ctx.phases),
                            backticked(&ctx.chaos)
                        )
                    } else {
                        format!(
                            "no stage is named `{phase}`, expected one of the stage names: {}",
                            backticked(&ctx.phases)
                        )
                    };
                    return Err(fail(ThresholdField::Phase, message));
                }
                threshold.scope = Scope::Phase(phase.clone());
            }
            (None, None) => {}
        }
    }
    if matches!(threshold.metric, Metric::Alert(_)) && threshold.scope != Scope::Run {
        let field = match threshold.scope {
            Scope::Window(_) => ThresholdField::Window,
            _ => ThresholdField::Phase,
        };
        return Err(fail(
            field,
            format!(
                "`{}` cannot be judged per window or phase: each drilled alert is measured against its own `during`",
                threshold.metric
            ),
        ));
    }
    if threshold.metric.is_telemetry() {
        if !threshold.filter.is_empty() {
            return Err(fail(
                ThresholdField::Key,
                format!(
                    "`{}` takes no tag filter: telemetry metrics are judged over the whole run",
                    threshold.metric
                ),
            ));
        }
        let field = match threshold.scope {
            Scope::Run => None,
            Scope::Window(_) => Some(ThresholdField::Window),
            Scope::Phase(_) => Some(ThresholdField::Phase),
        };
        if let Some(field) = field {
            return Err(fail(
                field,
                format!(
                    "`{}` cannot be judged per window or phase: telemetry metrics are judged over the whole run",
                    threshold.metric
                ),
            ));
        }
    }
    Ok(threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ricochet_crds::{ThresholdDetail, ThresholdSpec};

    fn ctx() -> ThresholdContext {
        ThresholdContext {
            scenarios: vec!["api".into(), "chat".into()],
            phases: vec!["ramp-up".into(), "steady".into()],
            queries: vec!["lag".into(), "up".into()],
            alerts: vec!["EchoServerHighErrorRate".into()],
            chaos: vec!["errors".into()],
        }
    }

    #[test]
    fn platform_keys_name_a_declared_query_or_alert() {
        let parse = |key: &str, cond: &str| {
            parse_threshold(key, &ThresholdSpec::Expression(cond.into()), &ctx())
        };
        let lag = parse("query{name:lag}", "max<10").unwrap();
        assert_eq!(
            (lag.metric, lag.aggregation, lag.limit),
            (Metric::Query, Aggregation::Max, 10.0)
        );
        let up = parse("query{name:up,job:echo}", "last>=1").unwrap();
        assert_eq!(up.filter["job"], "echo");
        assert_eq!(up.aggregation, Aggregation::Last);
        assert_eq!(parse("query{name:lag}", "min>-5").unwrap().limit, -5.0);
        let fire = parse(
            "alert_time_to_fire{alert:EchoServerHighErrorRate}",
            "max<2m",
        )
        .unwrap();
        assert_eq!(fire.limit, 120_000.0);
        assert!(parse("alert_unexpected", "count==0").is_ok());
        for (key, cond, want) in [
            ("query", "max<10", "`query` needs the query's name"),
            (
                "query{name:nope}",
                "max<10",
                "no query is named `nope`, expected one of `lag`, `up`",
            ),
            (
                "query{name:lag}",
                "max<10s",
                "a query's values are plain numbers",
            ),
            (
                "query{name:lag}",
                "rate<1",
                "`rate` does not apply to `query`",
            ),
            (
                "alert_time_to_fire{alert:Other}",
                "max<1m",
                "no drilled alert is named `Other`",
            ),
            (
                "alert_unexpected{job:x}",
                "count==0",
                "takes only the tag `alert`, not `job`",
            ),
            (
                "http_reqs",
                "last>1",
                "`last` does not apply to `http_reqs`",
            ),
        ] {
            let e = parse(key, cond).unwrap_err().message;
            assert!(e.contains(want), "{key} {cond}: {e}");
        }
        let scoped = |window: Option<&str>, phase: Option<&str>, key: &str| {
            let d = ThresholdDetail {
                threshold: "max<10".into(),
                abort_on_fail: false,
                delay_abort_eval: None,
                window: window.map(Into::into),
                phase: phase.map(Into::into),
            };
            parse_threshold(key, &ThresholdSpec::Detailed(d), &ctx())
        };
        assert_eq!(
            scoped(None, Some("errors"), "query{name:up}")
                .unwrap()
                .scope,
            Scope::Phase("errors".into()),
            "a query may be judged during a named chaos entry"
        );
        assert!(scoped(None, Some("errors"), "http_req_duration").is_err());
        assert!(scoped(Some("30s"), None, "query{name:up}").is_ok());
        let e = scoped(Some("30s"), None, "alert_time_to_fire").unwrap_err();
        assert!(
            e.message.contains("cannot be judged per window"),
            "{}",
            e.message
        );
    }

    #[test]
    fn k6_conditions_parse_with_units_in_milliseconds() {
        use Aggregation as A;
        use Comparison as C;
        let cases = [
            (
                "http_req_duration",
                "p(99)<800ms",
                A::Percentile(99.0),
                C::Lt,
                800.0,
            ),
            (
                "http_req_duration",
                "p(99.9) <= 1.5s",
                A::Percentile(99.9),
                C::Le,
                1500.0,
            ),
            ("http_req_duration", "avg<200", A::Avg, C::Lt, 200.0),
            ("http_req_waiting", "med>250us", A::Med, C::Gt, 0.25),
            ("http_stream_duration", "max>=1m", A::Max, C::Ge, 60_000.0),
            ("http_stream_duration", "min==0", A::Min, C::Eq, 0.0),
            ("http_req_failed", "rate<0.003", A::Rate, C::Lt, 0.003),
            ("http_reqs", "count>100", A::Count, C::Gt, 100.0),
            ("http_reqs", "rate!=0", A::Rate, C::Ne, 0.0),
            ("dropped_iterations", "count===0", A::Count, C::Eq, 0.0),
            ("data_received", "count>1e6", A::Count, C::Gt, 1e6),
            (
                "http_req_schedule_lag",
                "p(99)<1ms",
                A::Percentile(99.0),
                C::Lt,
                1.0,
            ),
            (
                "http_req_service_duration",
                "p(95)<1s",
                A::Percentile(95.0),
                C::Lt,
                1000.0,
            ),
            ("interrupted_iterations", "count==0", A::Count, C::Eq, 0.0),
        ];
        for (metric, condition, aggregation, comparison, limit) in cases {
            let m = Metric::parse(metric).unwrap();
            assert_eq!(
                parse_condition(m, condition),
                Ok((aggregation, comparison, limit)),
                "{metric}: {condition}"
            );
        }
    }

    #[test]
    fn wrong_conditions_say_what_is_valid() {
        let cases = [
            (
                "http_req_duration",
                "p(99)<800 millis",
                "unknown unit `millis` in `p(99)<800 millis`, expected `us`, `ms`, `s` or `m` (no unit means `ms`)",
            ),
            (
                "http_req_duration",
                "p(99)<-5ms",
                "the limit in `p(99)<-5ms` is negative; limits are numbers >= 0",
            ),
            // Found by fuzzing (issue #15, item 5): 1e308 minutes overflow to infinity.
            (
                "http_req_waiting",
                "p(99)<1e308m",
                "the limit in `p(99)<1e308m` is too large; write a finite limit such as `p(99)<800ms`",
            ),
            (
                "http_req_duration",
                "p(101)<5ms",
                "bad percentile `p(101)` in `p(101)<5ms`, expected `p(N)` with N between 0 and 100, e.g. `p(99)` or `p(99.9)`",
            ),
            (
                "http_req_duration",
                "rate<0.1",
                "`rate` does not apply to `http_req_duration` (a trend), expected `p(N)`, `avg`, `med`, `min` or `max`",
            ),
            (
                "http_req_duration",
                "p99<800ms",
                "unknown aggregation `p99` in `p99<800ms`, expected `p(N)`, `avg`, `med`, `min` or `max` for `http_req_duration` (a trend)",
            ),
            (
                "http_req_duration",
                "p(99)800ms",
                "`p(99)800ms` is not a threshold condition, expected `AGGREGATION OP VALUE` such as `p(99)<800ms` or `rate<0.01` (OP is one of `<`, `<=`, `>`, `>=`, `==`, `!=`)",
            ),
            (
                "http_req_duration",
                "p(99)<",
                "`p(99)<` is not a threshold condition, expected `AGGREGATION OP VALUE` such as `p(99)<800ms` or `rate<0.01` (OP is one of `<`, `<=`, `>`, `>=`, `==`, `!=`)",
            ),
            (
                "http_req_failed",
                "rate<1%",
                "`rate<1%` has the unit `%`, but `http_req_failed` is a rate and its limits take no unit",
            ),
            (
                "http_req_failed",
                "rate<3",
                "the rate limit in `rate<3` is above 1; `rate` of `http_req_failed` is a fraction between 0 and 1, e.g. `rate<0.01` for 1%",
            ),
            (
                "http_req_failed",
                "rate<-0.1",
                "the limit in `rate<-0.1` is negative; limits are numbers >= 0",
            ),
            (
                "http_req_failed",
                "count<10",
                "`count` does not apply to `http_req_failed` (a rate), expected `rate`",
            ),
            (
                "http_reqs",
                "count>10s",
                "`count>10s` has the unit `s`, but `http_reqs` is a counter and its limits take no unit",
            ),
            (
                "http_reqs",
                "avg>10",
                "`avg` does not apply to `http_reqs` (a counter), expected `count` or `rate`",
            ),
        ];
        for (metric, condition, want) in cases {
            let m = Metric::parse(metric).unwrap();
            let err = parse_condition(m, condition).unwrap_err();
            assert_eq!(err.field, ThresholdField::Condition);
            assert_eq!(err.message, want, "{metric}: {condition}");
        }
    }

    #[test]
    fn keys_carry_known_metrics_and_well_formed_tag_filters() {
        let (metric, filter) =
            parse_key("http_req_duration{scenario:api, name:list-orders}", &ctx()).unwrap();
        assert_eq!(metric, Metric::HttpReqDuration);
        assert_eq!(metric.kind(), MetricKind::Trend);
        assert_eq!(filter.get("scenario").map(String::as_str), Some("api"));
        assert_eq!(filter.get("name").map(String::as_str), Some("list-orders"));

        let bad = |key: &str| {
            format!(
                "bad tag filter `{key}`, expected `{{tag:value}}` or `{{tag:value,tag2:value}}`"
            )
        };
        let cases = [
            ("http_req_durations", "unknown metric `http_req_durations`, expected one of `http_reqs`, `http_req_duration`, `http_req_waiting`, `http_req_service_duration`, `http_req_schedule_lag`, `http_req_blocked`, `http_req_connecting`, `http_req_tls_handshaking`, `http_stream_duration`, `http_req_failed`, `iterations`, `dropped_iterations`, `interrupted_iterations`, `data_sent`, `data_received`, `telemetry_trace_missing`, `telemetry_log_missing`, `telemetry_metric_missing`, `telemetry_trace_incomplete`, `telemetry_trace_unknown`, `telemetry_log_unknown`, `telemetry_metric_unknown`, `telemetry_trace_ingest_latency`, `telemetry_log_ingest_latency`, `telemetry_metric_ingest_latency`, `telemetry_trace_query_duration`, `telemetry_log_query_duration`, `telemetry_metric_query_duration`, `telemetry_trace_export_wait`, `telemetry_log_export_wait`, `telemetry_trace_backend_latency`, `telemetry_log_backend_latency`, `query`, `alert_time_to_fire`, `alert_time_to_notify`, `alert_time_to_resolve`, `alert_unexpected`".to_owned()),
            ("http_reqs{}", bad("{}")),
            ("http_reqs{scenario}", bad("{scenario}")),
            ("http_reqs{scenario:}", bad("{scenario:}")),
            ("http_reqs{:api}", bad("{:api}")),
            ("http_reqs{scenario:api", bad("{scenario:api")),
            ("http_reqs{scenario:api}x", bad("{scenario:api}x")),
            ("http_reqs{status:200,status:500}", "tag `status` appears twice in the filter `{status:200,status:500}`".to_owned()),
            ("http_reqs{scenario:web}", "no scenario is named `web`, expected one of `api`, `chat`".to_owned()),
        ];
        for (key, want) in cases {
            let err = parse_key(key, &ctx()).unwrap_err();
            assert_eq!(err.field, ThresholdField::Key);
            assert_eq!(err.message, want, "{key}");
        }
    }

    fn detail(threshold: &str) -> ThresholdDetail {
        ThresholdDetail {
            threshold: threshold.into(),
            abort_on_fail: false,
            delay_abort_eval: None,
            window: None,
            phase: None,
        }
    }

    #[test]
    fn options_set_abort_and_scope() {
        let spec = ThresholdSpec::Detailed(ThresholdDetail {
            abort_on_fail: true,
            delay_abort_eval: Some("30s".into()),
            window: Some("1m".into()),
            ..detail("rate<0.003")
        });
        let t = parse_threshold("http_req_failed", &spec, &ctx()).unwrap();
        assert!(t.abort_on_fail);
        assert_eq!(t.delay_abort_eval, Duration::from_secs(30));
        assert_eq!(t.scope, Scope::Window(Duration::from_secs(60)));
        assert_eq!(t.expression, "rate<0.003");

        let phase = ThresholdSpec::Detailed(ThresholdDetail {
            phase: Some("steady".into()),
            ..detail("p(99)<800ms")
        });
        let t = parse_threshold("http_req_duration{scenario:api}", &phase, &ctx()).unwrap();
        assert_eq!(t.scope, Scope::Phase("steady".into()));
        assert_eq!(t.metric, Metric::HttpReqDuration);
        assert_eq!(t.metric.kind(), MetricKind::Trend);

        let cases = [
            (
                ThresholdDetail {
                    phase: Some("warm".into()),
                    ..detail("rate<0.1")
                },
                ThresholdField::Phase,
                "no stage is named `warm`, expected one of the stage names: `ramp-up`, `steady`",
            ),
            (
                ThresholdDetail {
                    window: Some("1 minute".into()),
                    ..detail("rate<0.1")
                },
                ThresholdField::Window,
                "`1 minute` is not a duration; expected a number and a unit (`us`, `ms`, `s`, `m` or `h`), e.g. `30s`, `1m30s` or `500ms`",
            ),
            (
                ThresholdDetail {
                    window: Some("0s".into()),
                    ..detail("rate<0.1")
                },
                ThresholdField::Window,
                "`window` must be longer than 0s, e.g. `1m`",
            ),
            (
                ThresholdDetail {
                    window: Some("1m".into()),
                    phase: Some("steady".into()),
                    ..detail("rate<0.1")
                },
                ThresholdField::Phase,
                "`window` and `phase` cannot both be set; a threshold judges either every window of the run or one phase",
            ),
            (
                ThresholdDetail {
                    delay_abort_eval: Some("soon".into()),
                    ..detail("rate<0.1")
                },
                ThresholdField::DelayAbortEval,
                "`soon` is not a duration; expected a number and a unit (`us`, `ms`, `s`, `m` or `h`), e.g. `30s`, `1m30s` or `500ms`",
            ),
        ];
        for (d, field, want) in cases {
            let err = parse_threshold("http_req_failed", &ThresholdSpec::Detailed(d), &ctx())
                .unwrap_err();
            assert_eq!((err.field, err.message.as_str()), (field, want));
        }
    }

    #[test]
    fn comparisons_hold_as_written() {
        assert!(Comparison::Lt.holds(1.0, 2.0));
        assert!(!Comparison::Lt.holds(2.0, 2.0));
        assert!(Comparison::Le.holds(2.0, 2.0));
        assert!(Comparison::Ne.holds(1.0, 2.0));
        assert_eq!(Comparison::Ge.as_str(), ">=");
    }

    #[test]
    fn equality_survives_the_unit_conversion_of_the_limit() {
        // `1005us` becomes 1005 × 0.001 = 1.0050000000000001 ms, while an observed 1005 µs
        // is 1005 / 1000 = 1.005 ms: exact `==` would call them different.
        let (_, eq, limit) = parse_condition(Metric::HttpReqDuration, "min==1005us").unwrap();
        let observed = 1005.0 / 1000.0;
        assert_ne!(observed, limit);
        assert!(eq.holds(observed, limit));
        assert!(!Comparison::Ne.holds(observed, limit));
        let (_, _, limit) = parse_condition(Metric::HttpReqDuration, "max==1.005s").unwrap();
        assert!(Comparison::Eq.holds(1005.0, limit));
        // One microsecond, the histograms' resolution, is still a difference.
        assert!(!Comparison::Eq.holds(1006.0 / 1000.0, 1005.0 / 1000.0));
        assert!(Comparison::Ne.holds(1004.0 / 1000.0, 1005.0 / 1000.0));
        assert!(Comparison::Eq.holds(0.0, 0.0));
    }
}
