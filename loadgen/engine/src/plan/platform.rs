//! `spec.queries` and `spec.alerts` lowered into the [`PlatformPlan`]: each query with its
//! language, backend and interval; each drilled alert with the window (a chaos entry or a
//! phase, in offsets from the run's start) its bounds count from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ricochet_crds::{AlertsSpec, QuerySpec};
use ricochet_verify::plan::{BackendPlan, SecretSource, TelemetryPlan};
use ricochet_verify::query::Language;

use super::chaos::ChaosPlan;
use super::telemetry::{backend, secret};
use super::{FieldError, Phase, bounded_duration, field_err as err};
use crate::duration::format_duration;

/// Default interval between a query's evaluations.
pub const DEFAULT_QUERY_EVERY: Duration = Duration::from_secs(15);
/// Default interval between reads of the alert state.
pub const DEFAULT_ALERT_EVERY: Duration = Duration::from_secs(5);
/// Shortest interval between evaluations or reads.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// Longest query expression, bytes.
pub const MAX_EXPR: usize = 16 * 1024;
/// Most queries, and most drilled alerts, in one plan.
pub const MAX_CHECKS: usize = 100;

/// One query check.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPlan {
    /// Its name.
    pub name: String,
    /// PromQL or LogQL.
    pub language: Language,
    /// The expression.
    pub expr: String,
    /// Between evaluations.
    pub every: Duration,
    /// Judge each series by its labels.
    pub each_series: bool,
    /// Prometheus (PromQL) or Loki (LogQL), from `spec.telemetry`.
    pub backend: BackendPlan,
}

/// Where a drilled alert's bounds count from: a chaos entry or a phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertWindow {
    /// The chaos entry's or phase's name; `None`: the whole run.
    pub during: Option<String>,
    /// Its start, from the run's start.
    pub start: Duration,
    /// Its end, from the run's start.
    pub end: Duration,
}

/// An alert that must fire, notify and resolve.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedAlert {
    /// `alertname`.
    pub alert: String,
    /// Labels it must carry.
    pub matchers: BTreeMap<String, String>,
    /// The fault it answers.
    pub window: AlertWindow,
    /// Fault start to firing.
    pub fires_within: Duration,
    /// Fault start to the firing notification.
    pub notifies_within: Option<Duration>,
    /// Fault end to no longer firing.
    pub resolves_within: Option<Duration>,
}

/// An alert that must stay silent.
#[derive(Debug, Clone, PartialEq)]
pub struct SilentAlert {
    /// `alertname`.
    pub alert: String,
    /// Labels it must carry.
    pub matchers: BTreeMap<String, String>,
    /// When it must stay silent.
    pub window: AlertWindow,
    /// It may fire in Prometheus, but no notification may arrive.
    pub allow_firing: bool,
}

/// loadgen's webhook receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverPlan {
    /// Listen address.
    pub listen: SocketAddr,
    /// The bearer token Alertmanager sends.
    pub token: Option<SecretSource>,
}

/// `spec.alerts`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsPlan {
    /// The Prometheus (or Mimir ruler) whose rule state is read.
    pub rules: BackendPlan,
    /// Alertmanager's API.
    pub alertmanager: Option<BackendPlan>,
    /// The webhook receiver.
    pub receiver: Option<ReceiverPlan>,
    /// Between reads of the rule state and Alertmanager.
    pub every: Duration,
    /// Alerts that must fire.
    pub expect: Vec<ExpectedAlert>,
    /// Alerts that must stay silent.
    pub silent: Vec<SilentAlert>,
}

impl AlertsPlan {
    /// Every drilled alert's name, once each, in the order written.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let all = self.expect.iter().map(|e| &e.alert);
        for a in all.chain(self.silent.iter().map(|s| &s.alert)) {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// How long after the run's start the last bound ends: the alert state is watched
    /// until then (or until every expectation is decided).
    pub fn last_deadline(&self) -> Duration {
        let expected = self.expect.iter().map(|e| {
            let fire = e.window.start + e.fires_within.max(e.notifies_within.unwrap_or_default());
            fire.max(e.window.end + e.resolves_within.unwrap_or_default())
        });
        let silent = self.silent.iter().map(|s| s.window.end);
        expected.chain(silent).max().unwrap_or_default()
    }
}

/// `spec.queries` and `spec.alerts`, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlatformPlan {
    /// Query checks, in the order written.
    pub queries: Vec<QueryPlan>,
    /// Alert drills.
    pub alerts: Option<AlertsPlan>,
}

impl PlatformPlan {
    /// True when the plan has neither queries nor alerts.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty() && self.alerts.is_none()
    }

    /// Backend requests per second the queries and alert reads make, at most.
    pub fn queries_per_second(&self) -> f64 {
        let queries: f64 = self
            .queries
            .iter()
            .map(|q| 1.0 / q.every.as_secs_f64())
            .sum();
        let alerts = self.alerts.as_ref().map_or(0.0, |a| {
            let sources = 1.0 + f64::from(u8::from(a.alertmanager.is_some()));
            sources / a.every.as_secs_f64()
        });
        queries + alerts
    }
}

/// What a platform plan is checked against.
pub struct Context<'a> {
    /// The validated `spec.telemetry`, whose backends the checks use.
    pub telemetry: Option<&'a TelemetryPlan>,
    /// The chaos timeline.
    pub chaos: &'a ChaosPlan,
    /// Every phase of every scenario.
    pub phases: Vec<Phase>,
    /// The planned load's length.
    pub load: Duration,
    /// Relative file paths start here.
    pub base_dir: &'a Path,
}

fn every(field: &str, text: Option<&String>, default: Duration) -> Result<Duration, FieldError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let d = bounded_duration(field, text)?;
    if d < MIN_EVERY {
        return Err(err(
            field,
            format!(
                "`{text}` is too short; evaluate at most once per {}, e.g. `15s`",
                format_duration(MIN_EVERY)
            ),
        ));
    }
    Ok(d)
}

/// A check name: letters, digits, `_`, `-`, `.`, as tags allow.
fn check_name(field: &str, name: &str, what: &str) -> Result<(), FieldError> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(err(
            field,
            format!(
                "`{name}` is not a valid {what} name: start with a letter or `_`, then letters, digits, `_`, `-`, `.` or `:` (at most 128)"
            ),
        ))
    }
}

/// Validates `spec.queries` and `spec.alerts`.
pub fn platform_plan(
    queries: &[QuerySpec],
    alerts: Option<&AlertsSpec>,
    cx: &Context<'_>,
) -> Result<PlatformPlan, FieldError> {
    if queries.len() > MAX_CHECKS {
        return Err(err(
            "spec.queries",
            format!(
                "has {} queries; at most {MAX_CHECKS} are allowed",
                queries.len()
            ),
        ));
    }
    let prometheus = cx.telemetry.and_then(|t| t.metrics.as_ref()).map(|m| &m.0);
    let loki = cx.telemetry.and_then(|t| t.logs.as_ref()).map(|l| &l.0);
    let mut out = PlatformPlan::default();
    for (i, q) in queries.iter().enumerate() {
        let path = format!("spec.queries[{i}]");
        check_name(&format!("{path}.name"), &q.name, "query")?;
        if let Some(j) = queries[..i].iter().position(|o| o.name == q.name) {
            return Err(err(
                format!("{path}.name"),
                format!(
                    "duplicate query name `{}` (spec.queries[{j}] has it too); query names must be unique",
                    q.name
                ),
            ));
        }
        let (language, expr, backend, field) = match (&q.promql, &q.logql) {
            (Some(e), None) => (Language::PromQl, e, prometheus, "promql"),
            (None, Some(e)) => (Language::LogQl, e, loki, "logql"),
            _ => {
                return Err(err(
                    path,
                    "needs exactly one of `promql` (asked of spec.telemetry.metrics.prometheus) and `logql` (asked of spec.telemetry.logs.loki)",
                ));
            }
        };
        let field = format!("{path}.{field}");
        if expr.trim().is_empty() {
            return Err(err(field, "is empty; write the query, e.g. `max(up)`"));
        }
        if expr.len() > MAX_EXPR {
            return Err(err(
                field,
                format!(
                    "is {} bytes long; at most {MAX_EXPR} are allowed",
                    expr.len()
                ),
            ));
        }
        if let Some(problem) = delimiter_problem(expr) {
            return Err(err(field, problem));
        }
        let Some(backend) = backend else {
            let needs = match language {
                Language::PromQl => {
                    "a PromQL query is asked of `spec.telemetry.metrics.prometheus`: add `telemetry: {metrics: {prometheus: {url: http://prometheus:9090}}}`"
                }
                Language::LogQl => {
                    "a LogQL query is asked of `spec.telemetry.logs.loki`: add `telemetry: {logs: {loki: {url: http://loki:3100, selector: '{app=\"echo-server\"}'}}}`"
                }
            };
            return Err(err(field, needs));
        };
        out.queries.push(QueryPlan {
            name: q.name.clone(),
            language,
            expr: expr.clone(),
            every: every(
                &format!("{path}.every"),
                q.every.as_ref(),
                DEFAULT_QUERY_EVERY,
            )?,
            each_series: q.each_series,
            backend: backend.clone(),
        });
    }
    if let Some(a) = alerts {
        out.alerts = Some(alerts_plan(a, prometheus, cx)?);
    }
    Ok(out)
}

fn alerts_plan(
    a: &AlertsSpec,
    prometheus: Option<&BackendPlan>,
    cx: &Context<'_>,
) -> Result<AlertsPlan, FieldError> {
    const P: &str = "spec.alerts";
    let Some(rules) = prometheus else {
        return Err(err(
            P,
            "reads the alerts' state from `spec.telemetry.metrics.prometheus` (Prometheus or the Mimir ruler, `GET /api/v1/alerts`): add `telemetry: {metrics: {prometheus: {url: http://prometheus:9090}}}`",
        ));
    };
    if a.expect.is_empty() && a.silent.is_empty() {
        return Err(err(
            P,
            "drills nothing: add `expect: [{alert: ..., during: ..., firesWithin: 2m}]` and/or `silent: [{alert: ...}]`",
        ));
    }
    if a.expect.len() + a.silent.len() > MAX_CHECKS {
        return Err(err(
            P,
            format!("drills more than {MAX_CHECKS} alerts; split the drill"),
        ));
    }
    let alertmanager = a
        .alertmanager
        .as_ref()
        .map(|b| backend(&format!("{P}.alertmanager"), b, cx.base_dir))
        .transpose()?;
    let receiver = match &a.receiver {
        None => None,
        Some(r) => {
            let listen: SocketAddr = r.listen.parse().map_err(|_| {
                err(
                    format!("{P}.receiver.listen"),
                    format!(
                        "`{}` is not an address to listen on; write `IP:PORT`, e.g. `127.0.0.1:9097` or `0.0.0.0:9097` in a cluster",
                        r.listen
                    ),
                )
            })?;
            let token = r
                .token
                .as_ref()
                .map(|t| secret(&format!("{P}.receiver.token"), t, cx.base_dir))
                .transpose()?;
            Some(ReceiverPlan { listen, token })
        }
    };
    let window = |field: &str, during: Option<&String>| -> Result<AlertWindow, FieldError> {
        let Some(name) = during else {
            return Ok(AlertWindow {
                during: None,
                start: Duration::ZERO,
                end: cx.load,
            });
        };
        if let Some(e) = cx
            .chaos
            .events
            .iter()
            .find(|e| e.name.as_ref() == Some(name))
        {
            return Ok(AlertWindow {
                during: Some(name.clone()),
                start: e.at,
                end: e.until.unwrap_or(cx.load).min(cx.load.max(e.at)),
            });
        }
        let mut phases = cx.phases.iter().filter(|p| p.name == *name).peekable();
        if phases.peek().is_some() {
            let (start, end) = phases.fold((Duration::MAX, Duration::ZERO), |(s, e), p| {
                (s.min(p.start), e.max(p.end))
            });
            return Ok(AlertWindow {
                during: Some(name.clone()),
                start,
                end,
            });
        }
        let chaos: Vec<String> = cx
            .chaos
            .events
            .iter()
            .filter_map(|e| e.name.clone())
            .collect();
        let mut phases: Vec<String> = cx.phases.iter().map(|p| p.name.clone()).collect();
        phases.dedup();
        Err(err(
            field,
            format!(
                "`{name}` names no chaos entry and no phase; name a `spec.chaos` entry (`name:`) or a stage; chaos names: {}; phases: {}",
                listed(&chaos),
                listed(&phases)
            ),
        ))
    };
    let bound = |field: &str, text: &str| bounded_duration(field, text);
    let mut expect = Vec::with_capacity(a.expect.len());
    for (i, e) in a.expect.iter().enumerate() {
        let path = format!("{P}.expect[{i}]");
        check_name(&format!("{path}.alert"), &e.alert, "alert")?;
        let notifies_within = e
            .notifies_within
            .as_ref()
            .map(|t| bound(&format!("{path}.notifiesWithin"), t))
            .transpose()?;
        if notifies_within.is_some() && receiver.is_none() {
            return Err(err(
                format!("{path}.notifiesWithin"),
                "needs loadgen's webhook receiver to hear the notification: add `spec.alerts.receiver: {listen: 127.0.0.1:9097}` and point an Alertmanager route at it",
            ));
        }
        expect.push(ExpectedAlert {
            alert: e.alert.clone(),
            matchers: e.matchers.clone(),
            window: window(&format!("{path}.during"), Some(&e.during))?,
            fires_within: bound(&format!("{path}.firesWithin"), &e.fires_within)?,
            notifies_within,
            resolves_within: e
                .resolves_within
                .as_ref()
                .map(|t| bound(&format!("{path}.resolvesWithin"), t))
                .transpose()?,
        });
    }
    let mut silent = Vec::with_capacity(a.silent.len());
    for (i, s) in a.silent.iter().enumerate() {
        let path = format!("{P}.silent[{i}]");
        check_name(&format!("{path}.alert"), &s.alert, "alert")?;
        if s.allow_firing && receiver.is_none() {
            return Err(err(
                format!("{path}.allowFiring"),
                "checks that no notification arrives, which needs loadgen's webhook receiver: add `spec.alerts.receiver: {listen: 127.0.0.1:9097}`",
            ));
        }
        silent.push(SilentAlert {
            alert: s.alert.clone(),
            matchers: s.matchers.clone(),
            window: window(&format!("{path}.during"), s.during.as_ref())?,
            allow_firing: s.allow_firing,
        });
    }
    Ok(AlertsPlan {
        rules: rules.clone(),
        alertmanager,
        receiver,
        every: every(&format!("{P}.every"), a.every.as_ref(), DEFAULT_ALERT_EVERY)?,
        expect,
        silent,
    })
}

fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The first unbalanced bracket or unterminated string of a PromQL or LogQL expression,
/// as a sentence with its column; `None` when they balance. (The rest of the syntax is the
/// backend's to judge: its own message comes back as the query's unknown reason.)
pub fn delimiter_problem(expr: &str) -> Option<String> {
    let mut open: Vec<(char, usize)> = Vec::new();
    let mut chars = expr.chars().enumerate();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let mut closed = false;
                while let Some((_, d)) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Some(format!(
                        "the string opened with {c} at column {} is never closed",
                        i + 1
                    ));
                }
            }
            '(' | '[' | '{' => open.push((c, i)),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match open.pop() {
                    Some((o, _)) if o == want => {}
                    Some((o, at)) => {
                        return Some(format!(
                            "`{c}` at column {} closes `{o}` from column {}; brackets must pair up",
                            i + 1,
                            at + 1
                        ));
                    }
                    None => {
                        return Some(format!(
                            "`{c}` at column {} closes nothing; brackets must pair up",
                            i + 1
                        ));
                    }
                }
            }
            '#' => break,
            _ => {}
        }
    }
    open.pop()
        .map(|(o, at)| format!("`{o}` at column {} is never closed", at + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbalanced_queries_are_named_with_their_column() {
        assert_eq!(delimiter_problem("max(up{job=\"a\"})"), None);
        assert_eq!(
            delimiter_problem(r#"sum(rate({app="x"} |= "a\"b" [1m]))"#),
            None
        );
        assert_eq!(
            delimiter_problem("sum(rate(x[5m])"),
            Some("`(` at column 4 is never closed".into())
        );
        assert_eq!(
            delimiter_problem("up{job=\"a}"),
            Some("the string opened with \" at column 8 is never closed".into())
        );
        assert_eq!(
            delimiter_problem("max(up])"),
            Some("`]` at column 7 closes `(` from column 4; brackets must pair up".into())
        );
        assert_eq!(delimiter_problem("up # a comment ("), None);
    }
}
