//! Comparison of two runs: a side-by-side table per metric with deltas, and regressions
//! judged against `--max-regression` limits.
//!
//! A comparison never passes when either run could not be carried out or has no requests,
//! or when the current run lacks a metric the baseline has ([`Unfit`]): a run that
//! measured nothing is never better than the last good one.
//!
//! Intended CLI: `loadgen compare BASELINE.json CURRENT.json [--max-regression SPEC]
//! [--format text|md|html]`, exit 1 unless [`Comparison::passes`], 2 when a summary is
//! unreadable or SPEC is malformed ([`crate::Error::exit_code`]).

use std::fmt::{self, Write as _};

use crate::escape;
use crate::model::{Outcome, Summary};
use crate::units::{self, ms, per_sec, percent};
use crate::{Error, Result};

/// A metric that can be compared and limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// Median of `http_req_duration`; limited by relative increase (%).
    P50,
    /// 95th percentile of `http_req_duration`; relative increase (%).
    P95,
    /// 99th percentile of `http_req_duration`; relative increase (%).
    P99,
    /// Mean of `http_req_duration`; relative increase (%).
    Avg,
    /// Maximum of `http_req_duration`; relative increase (%).
    Max,
    /// `http_req_failed` rate; limited by absolute increase in percentage points (pp).
    ErrorRate,
    /// `http_reqs` per second; limited by relative drop (%).
    Rps,
    /// Dropped iterations; limited by absolute increase (count).
    Dropped,
}

impl Key {
    /// Every key, in table order.
    pub const ALL: [Key; 8] = [
        Key::P50,
        Key::P95,
        Key::P99,
        Key::Avg,
        Key::Max,
        Key::ErrorRate,
        Key::Rps,
        Key::Dropped,
    ];

    /// The key as written in `--max-regression`.
    pub fn name(self) -> &'static str {
        match self {
            Key::P50 => "p50",
            Key::P95 => "p95",
            Key::P99 => "p99",
            Key::Avg => "avg",
            Key::Max => "max",
            Key::ErrorRate => "error_rate",
            Key::Rps => "rps",
            Key::Dropped => "dropped",
        }
    }

    /// The summary metric the key reads, for messages.
    pub fn metric(self) -> &'static str {
        match self {
            Key::P50 | Key::P95 | Key::P99 | Key::Avg | Key::Max => "http_req_duration",
            Key::ErrorRate => "http_req_failed",
            Key::Rps => "http_reqs",
            Key::Dropped => "dropped_iterations",
        }
    }

    fn parse(s: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == s)
    }

    fn is_latency(self) -> bool {
        matches!(self, Key::P50 | Key::P95 | Key::P99 | Key::Avg | Key::Max)
    }

    fn format(self, v: f64) -> String {
        match self {
            Key::ErrorRate => percent(v),
            Key::Rps => per_sec(v),
            Key::Dropped => format!("{v:.0}"),
            _ => ms(v),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How much worse a metric may get.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Allowance {
    /// Relative change in percent of the baseline (`10%`).
    Percent(f64),
    /// Absolute change in percentage points of a rate (`0.1pp`).
    Points(f64),
    /// Absolute change in a count (`5`).
    Count(f64),
}

impl fmt::Display for Allowance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allowance::Percent(v) => write!(f, "{v}%"),
            Allowance::Points(v) => write!(f, "{v}pp"),
            Allowance::Count(v) => write!(f, "{v}"),
        }
    }
}

/// One `KEY[{scenario:NAME}]=AMOUNT` item of `--max-regression`.
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    /// The metric.
    pub key: Key,
    /// Restricts the limit to one scenario; `None` applies it to the whole run and to
    /// every scenario without a scoped limit of its own.
    pub scenario: Option<String>,
    /// How much worse the metric may get.
    pub allowance: Allowance,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scenario {
            Some(s) => write!(f, "{}{{scenario:{s}}}={}", self.key, self.allowance),
            None => write!(f, "{}={}", self.key, self.allowance),
        }
    }
}

/// Parsed `--max-regression` limits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// The limits, in the order given.
    pub limits: Vec<Limit>,
}

const VALID: &str = "valid keys: p50, p95, p99, avg, max (relative increase, e.g. p99=10%), \
error_rate (absolute increase in percentage points, e.g. error_rate=0.1pp), \
rps (relative drop, e.g. rps=5%), dropped (absolute increase, e.g. dropped=0); \
any key may be scoped, e.g. p99{scenario:api}=10%";

impl Limits {
    /// A sensible default for `loadgen compare` without `--max-regression`.
    pub const DEFAULT_SPEC: &'static str = "p95=10%,p99=10%,error_rate=0.1pp,rps=5%";

    /// Parses `p99=10%,error_rate=0.1pp,p95{scenario:api}=5%`.
    ///
    /// Errors name the offending item and what would be valid.
    pub fn parse(spec: &str) -> Result<Limits> {
        let err = |reason: String| Error::Limits {
            spec: spec.to_owned(),
            reason,
        };
        let mut limits: Vec<Limit> = Vec::new();
        for (i, item) in split_items(spec).into_iter().enumerate() {
            let item = item.trim();
            if item.is_empty() {
                return Err(err(format!(
                    "item {} is empty; write KEY=VALUE items separated by commas, e.g. p99=10%,error_rate=0.1pp",
                    i + 1
                )));
            }
            let limit = parse_item(item).map_err(&err)?;
            if limits
                .iter()
                .any(|l| l.key == limit.key && l.scenario == limit.scenario)
            {
                return Err(err(format!(
                    "`{item}`: {} is limited twice; give each key (and scope) once",
                    match &limit.scenario {
                        Some(s) => format!("{}{{scenario:{s}}}", limit.key),
                        None => limit.key.to_string(),
                    }
                )));
            }
            limits.push(limit);
        }
        Ok(Limits { limits })
    }

    /// The limit for `key` in `scenario` (`None` = whole run): a scoped limit wins over
    /// an unscoped one.
    pub fn get(&self, key: Key, scenario: Option<&str>) -> Option<&Limit> {
        let scoped = scenario.and_then(|s| {
            self.limits
                .iter()
                .find(|l| l.key == key && l.scenario.as_deref() == Some(s))
        });
        scoped.or_else(|| {
            self.limits
                .iter()
                .find(|l| l.key == key && l.scenario.is_none())
        })
    }
}

/// Splits on commas outside `{…}` (scenario names may contain commas).
fn split_items(spec: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in spec.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&spec[start..]);
    items
}

fn parse_item(item: &str) -> std::result::Result<Limit, String> {
    let Some((lhs, rhs)) = item.rsplit_once('=') else {
        return Err(format!(
            "`{item}` has no `=`; write KEY=VALUE, e.g. p99=10%"
        ));
    };
    let lhs = lhs.trim();
    let (key_text, scenario) = match lhs.split_once('{') {
        None => (lhs, None),
        Some((k, rest)) => {
            let Some(inner) = rest.strip_suffix('}') else {
                return Err(format!(
                    "`{item}`: unclosed `{{`; write e.g. p99{{scenario:api}}=10%"
                ));
            };
            let Some(name) = inner.trim().strip_prefix("scenario:") else {
                return Err(format!(
                    "`{item}`: only {{scenario:NAME}} scopes are supported, e.g. p99{{scenario:api}}=10%"
                ));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("`{item}`: the scenario name is empty"));
            }
            (k.trim(), Some(name.to_owned()))
        }
    };
    let Some(key) = Key::parse(key_text) else {
        return Err(format!("unknown metric key `{key_text}`; {VALID}"));
    };
    let rhs = rhs.trim();
    let number = |text: &str| -> std::result::Result<f64, String> {
        match text.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(format!(
                "`{item}`: `{}` is not a non-negative number",
                text.trim()
            )),
        }
    };
    let allowance = if key.is_latency() || key == Key::Rps {
        let Some(n) = rhs.strip_suffix('%') else {
            return Err(format!(
                "`{item}`: {key} takes a relative change in percent, e.g. {key}=10%"
            ));
        };
        Allowance::Percent(number(n)?)
    } else if key == Key::ErrorRate {
        let Some(n) = rhs.strip_suffix("pp") else {
            return Err(format!(
                "`{item}`: error_rate takes an absolute change in percentage points, e.g. error_rate=0.1pp (0.1pp allows 0.20% → 0.30%)"
            ));
        };
        Allowance::Points(number(n)?)
    } else {
        if rhs.ends_with('%') {
            return Err(format!(
                "`{item}`: dropped takes an absolute count of iterations, e.g. dropped=0"
            ));
        }
        Allowance::Count(number(rhs)?)
    };
    Ok(Limit {
        key,
        scenario,
        allowance,
    })
}

/// How a row compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Within its limit.
    Ok,
    /// Worse than its limit allows.
    Regressed,
    /// No limit applies; shown for information.
    Unlimited,
    /// One of the runs lacks the value (scenario or metric absent).
    Missing,
}

/// One metric of one scope, side by side.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Scenario name, or `None` for the whole run.
    pub scenario: Option<String>,
    /// The metric.
    pub key: Key,
    /// Baseline value (ms, fraction, per second or count by key).
    pub baseline: Option<f64>,
    /// Current value.
    pub current: Option<f64>,
    /// The limit that applied, if any.
    pub limit: Option<Limit>,
    /// The judgement.
    pub status: Status,
}

impl Row {
    /// Current minus baseline, when both exist.
    pub fn delta(&self) -> Option<f64> {
        Some(self.current? - self.baseline?)
    }

    /// Relative change in percent of the baseline, when both exist and the baseline is not 0.
    pub fn relative(&self) -> Option<f64> {
        let (b, c) = (self.baseline?, self.current?);
        (b != 0.0).then(|| (c - b) / b * 100.0)
    }

    /// The metric named as in the summary, e.g. `p99 of http_req_duration{scenario:api}`.
    pub fn label(&self) -> String {
        let metric = match &self.scenario {
            Some(s) => units::scoped(self.key.metric(), s),
            None => self.key.metric().to_owned(),
        };
        match self.key {
            Key::ErrorRate | Key::Rps | Key::Dropped => metric,
            k => format!("{k} of {metric}"),
        }
    }

    /// The change, formatted for its key: `+25.0% (+200.00ms)`, `+0.05pp`, `-3.1%`, `+4`.
    pub fn delta_text(&self) -> String {
        let Some(d) = self.delta() else {
            return "—".to_owned();
        };
        let sign = if d > 0.0 { "+" } else { "" };
        let rel = self
            .relative()
            .map(|r| format!("{}{r:.1}%", if r > 0.0 { "+" } else { "" }));
        match self.key {
            Key::ErrorRate => format!("{sign}{:.3}pp", d * 100.0),
            Key::Dropped => format!("{sign}{d:.0}"),
            Key::Rps => rel.unwrap_or_else(|| format!("{sign}{d:.1}/s")),
            _ => match rel {
                Some(r) => format!("{r} ({sign}{})", ms(d)),
                None => format!("{sign}{}", ms(d)),
            },
        }
    }

    fn judge(&mut self) {
        let (Some(b), Some(c)) = (self.baseline, self.current) else {
            self.status = Status::Missing;
            return;
        };
        let Some(limit) = &self.limit else {
            self.status = Status::Unlimited;
            return;
        };
        const EPS: f64 = 1e-9;
        let worse = match (self.key, limit.allowance) {
            (Key::Rps, Allowance::Percent(max)) => {
                if b > 0.0 {
                    (b - c) / b * 100.0 > max + EPS
                } else {
                    false
                }
            }
            (_, Allowance::Percent(max)) => {
                if b > 0.0 {
                    (c - b) / b * 100.0 > max + EPS
                } else {
                    c > 0.0
                }
            }
            (_, Allowance::Points(max)) => (c - b) * 100.0 > max + EPS,
            (_, Allowance::Count(max)) => c - b > max + EPS,
        };
        self.status = if worse { Status::Regressed } else { Status::Ok };
    }
}

/// One of the two compared runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The last good run.
    Baseline,
    /// The run under judgement.
    Current,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Baseline => "baseline",
            Side::Current => "current",
        })
    }
}

/// A metric of the baseline that the current run lacks.
#[derive(Clone, Debug, PartialEq)]
pub struct MissingMetric {
    /// Its key, e.g. `http_req_duration{scenario:api}`.
    pub metric: String,
    /// The current run has the key but none of the values the baseline has (a trend
    /// without statistics).
    pub no_values: bool,
}

impl fmt::Display for MissingMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.metric)?;
        if self.no_values {
            f.write_str(" (no values)")?;
        }
        Ok(())
    }
}

/// Why a comparison cannot pass, whatever its rows say.
#[derive(Clone, Debug, PartialEq)]
pub enum Unfit {
    /// A run could not be carried out (outcome `error`, exit code 3).
    Errored {
        /// Which run.
        run: Side,
        /// Its exit code.
        exit_code: u8,
        /// Its cause (`run.stopReason`), if recorded.
        reason: Option<String>,
    },
    /// A run has no requests (`http_reqs` is 0 or absent).
    NoRequests {
        /// Which run.
        run: Side,
    },
    /// Metrics the baseline has that the current run lacks, in key order.
    MissingMetrics(Vec<MissingMetric>),
}

/// Most missing metrics one sentence names; the rest are counted.
const NAMED_MISSING: usize = 5;

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Errored {
                run,
                exit_code,
                reason: Some(reason),
            } => write!(
                f,
                "the {run} run could not be carried out (exit code {exit_code}): {reason}"
            ),
            Unfit::Errored {
                run,
                exit_code,
                reason: None,
            } => write!(
                f,
                "the {run} run could not be carried out (exit code {exit_code})"
            ),
            Unfit::NoRequests { run } => write!(
                f,
                "the {run} run has no requests (`http_reqs` is 0 or absent), so it measured nothing to compare"
            ),
            Unfit::MissingMetrics(missing) => match missing.as_slice() {
                [one] if one.no_values => write!(
                    f,
                    "the current run has no values of `{}`, which the baseline has",
                    one.metric
                ),
                [one] => write!(
                    f,
                    "the current run lacks `{}`, which the baseline has",
                    one.metric
                ),
                many => {
                    let named: Vec<String> = many
                        .iter()
                        .take(NAMED_MISSING)
                        .map(ToString::to_string)
                        .collect();
                    write!(
                        f,
                        "the current run lacks {} metrics the baseline has: {}",
                        many.len(),
                        named.join(", ")
                    )?;
                    if many.len() > NAMED_MISSING {
                        write!(f, " and {} more", many.len() - NAMED_MISSING)?;
                    }
                    Ok(())
                }
            },
        }
    }
}

/// Why `current` compared with `baseline` cannot pass, most telling first: a run that
/// could not be carried out, one without requests, then the baseline's metrics the
/// current run lacks. Metrics of a scenario absent from the current run are left out: the
/// comparison notes that scenario instead.
fn unfit(baseline: &Summary, current: &Summary) -> Vec<Unfit> {
    let mut out = Vec::new();
    for (run, s) in [(Side::Current, current), (Side::Baseline, baseline)] {
        if s.run.outcome == Outcome::Error {
            out.push(Unfit::Errored {
                run,
                exit_code: s.run.exit_code,
                reason: s.run.stop_reason.clone(),
            });
        }
        if s.metrics.get("http_reqs").is_none_or(|m| m.count == 0) {
            out.push(Unfit::NoRequests { run });
        }
    }
    let gone: Vec<&str> = baseline
        .scenarios
        .iter()
        .filter(|b| !current.scenarios.iter().any(|c| c.name == b.name))
        .map(|b| b.name.as_str())
        .collect();
    let of_gone_scenario = |key: &str| {
        gone.iter().any(|s| {
            key.contains(&format!("scenario:{s}}}")) || key.contains(&format!("scenario:{s},"))
        })
    };
    let missing: Vec<MissingMetric> = baseline
        .metrics
        .iter()
        .filter(|(key, _)| !of_gone_scenario(key))
        .filter_map(|(key, b)| match current.metrics.get(key) {
            None => Some(MissingMetric {
                metric: key.clone(),
                no_values: false,
            }),
            Some(c) if b.trend.is_some() && c.trend.is_none() => Some(MissingMetric {
                metric: key.clone(),
                no_values: true,
            }),
            Some(_) => None,
        })
        .collect();
    if !missing.is_empty() {
        out.push(Unfit::MissingMetrics(missing));
    }
    out
}

/// Identifies a compared run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRef {
    /// LoadTest name.
    pub name: String,
    /// Start, RFC 3339.
    pub started_at: String,
    /// loadgen version.
    pub loadgen_version: String,
}

impl RunRef {
    fn of(s: &Summary) -> RunRef {
        RunRef {
            name: s.run.name.clone(),
            started_at: s.run.started_at.clone(),
            loadgen_version: s.run.loadgen_version.clone(),
        }
    }
}

/// The result of comparing two runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The baseline run.
    pub baseline: RunRef,
    /// The current run.
    pub current: RunRef,
    /// Whole-run rows first, then each scenario's, in [`Key::ALL`] order.
    pub rows: Vec<Row>,
    /// Remarks: scenarios present in only one run, limits that matched nothing.
    pub notes: Vec<String>,
    /// Why the comparison cannot pass whatever the rows say, most telling first (empty
    /// when it can).
    pub unfit: Vec<Unfit>,
}

/// Compares `current` against `baseline` under `limits`.
pub fn compare(baseline: &Summary, current: &Summary, limits: &Limits) -> Comparison {
    let mut scopes: Vec<Option<String>> = vec![None];
    let mut notes = Vec::new();
    for s in &baseline.scenarios {
        scopes.push(Some(s.name.clone()));
        if !current.scenarios.iter().any(|c| c.name == s.name) {
            notes.push(format!("scenario `{}` is only in the baseline", s.name));
        }
    }
    for s in &current.scenarios {
        if !baseline.scenarios.iter().any(|b| b.name == s.name) {
            scopes.push(Some(s.name.clone()));
            notes.push(format!("scenario `{}` is only in the current run", s.name));
        }
    }
    for l in &limits.limits {
        if let Some(s) = &l.scenario
            && !scopes.iter().any(|x| x.as_deref() == Some(s.as_str()))
        {
            notes.push(format!("limit `{l}` matches no scenario in either run"));
        }
    }
    let mut rows = Vec::new();
    for scope in &scopes {
        for key in Key::ALL {
            let mut row = Row {
                scenario: scope.clone(),
                key,
                baseline: value(baseline, key, scope.as_deref()),
                current: value(current, key, scope.as_deref()),
                limit: limits.get(key, scope.as_deref()).cloned(),
                status: Status::Missing,
            };
            row.judge();
            rows.push(row);
        }
    }
    Comparison {
        baseline: RunRef::of(baseline),
        current: RunRef::of(current),
        rows,
        notes,
        unfit: unfit(baseline, current),
    }
}

fn value(s: &Summary, key: Key, scenario: Option<&str>) -> Option<f64> {
    match key {
        Key::P50 => units::duration_trend(s, scenario).map(|t| t.med),
        Key::P95 => units::duration_trend(s, scenario).map(|t| t.p95),
        Key::P99 => units::duration_trend(s, scenario).map(|t| t.p99),
        Key::Avg => units::duration_trend(s, scenario).map(|t| t.avg),
        Key::Max => units::duration_trend(s, scenario).map(|t| t.max),
        Key::ErrorRate => units::metric(s, "http_req_failed", scenario).map(|m| m.rate),
        Key::Rps => units::metric(s, "http_reqs", scenario).map(|m| m.rate),
        Key::Dropped => match units::metric(s, "dropped_iterations", scenario) {
            Some(m) => Some(m.count as f64),
            None => match scenario {
                None => Some(s.dropped_iterations as f64),
                Some(name) => s
                    .scenarios
                    .iter()
                    .find(|x| x.name == name)
                    .map(|x| x.time_series.iter().map(|p| p.dropped).sum::<u64>() as f64),
            },
        },
    }
}

impl Comparison {
    /// Whether the current run is no worse than the baseline: both runs measured
    /// something, the current one has every metric the baseline has, and no row regressed
    /// beyond its limit (`loadgen compare` exits 1 otherwise).
    pub fn passes(&self) -> bool {
        self.unfit.is_empty() && !self.has_regression()
    }

    /// Whether any row regressed beyond its limit.
    pub fn has_regression(&self) -> bool {
        self.rows.iter().any(|r| r.status == Status::Regressed)
    }

    /// One sentence per reason the comparison cannot pass besides regressions
    /// ([`Comparison::unfit`]).
    pub fn unfit_sentences(&self) -> Vec<String> {
        self.unfit.iter().map(ToString::to_string).collect()
    }

    /// The regressed rows.
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.status == Status::Regressed)
    }

    /// One sentence per regression, e.g. `p99 of http_req_duration{scenario:api}
    /// regressed: 800.00ms → 1.00s (+25.0% (+200.00ms)), limit p99=10%`.
    pub fn regression_sentences(&self) -> Vec<String> {
        self.regressions()
            .map(|r| {
                format!(
                    "{} regressed: {} → {} ({}), limit {}",
                    r.label(),
                    fmt_opt(r.key, r.baseline),
                    fmt_opt(r.key, r.current),
                    r.delta_text(),
                    r.limit
                        .as_ref()
                        .map_or("none".to_owned(), ToString::to_string)
                )
            })
            .collect()
    }

    fn verdict(&self) -> String {
        let n = self.regressions().count();
        if let Some(first) = self.unfit.first() {
            first.to_string()
        } else if n == 0 {
            "no regression beyond the limits".to_owned()
        } else {
            format!("{n} regression(s) beyond the limits")
        }
    }

    fn table_cells(&self, r: &Row) -> [String; 6] {
        [
            r.key.name().to_owned(),
            fmt_opt(r.key, r.baseline),
            fmt_opt(r.key, r.current),
            r.delta_text(),
            r.limit
                .as_ref()
                .map_or("—".to_owned(), |l| l.allowance.to_string()),
            match r.status {
                Status::Ok => "ok",
                Status::Regressed => "REGRESSED",
                Status::Unlimited => "",
                Status::Missing => "missing",
            }
            .to_owned(),
        ]
    }

    fn scopes(&self) -> Vec<(Option<&str>, Vec<&Row>)> {
        let mut out: Vec<(Option<&str>, Vec<&Row>)> = Vec::new();
        for r in &self.rows {
            match out.last_mut() {
                Some((s, rows)) if *s == r.scenario.as_deref() => rows.push(r),
                _ => out.push((r.scenario.as_deref(), vec![r])),
            }
        }
        out
    }

    /// Plain-text rendering for the terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mark = if !self.unfit.is_empty() {
            "✗ NOT COMPARABLE"
        } else if self.has_regression() {
            "✗ REGRESSION"
        } else {
            "✓ OK"
        };
        let _ = writeln!(
            out,
            "{mark} — {}\nbaseline: {} ({}, loadgen {})\ncurrent:  {} ({}, loadgen {})",
            self.verdict(),
            escape::terminal(&self.baseline.name),
            escape::terminal(&self.baseline.started_at),
            escape::terminal(&self.baseline.loadgen_version),
            escape::terminal(&self.current.name),
            escape::terminal(&self.current.started_at),
            escape::terminal(&self.current.loadgen_version),
        );
        for s in self
            .unfit_sentences()
            .into_iter()
            .chain(self.regression_sentences())
        {
            let _ = writeln!(out, "  ✗ {}", escape::terminal(&s));
        }
        let header = ["metric", "baseline", "current", "delta", "limit", "status"];
        for (scope, rows) in self.scopes() {
            let _ = writeln!(
                out,
                "\n{}",
                scope.map_or("all scenarios".to_owned(), |s| format!(
                    "scenario {}",
                    escape::terminal(s)
                ))
            );
            let mut cells: Vec<[String; 6]> = vec![header.map(str::to_owned)];
            cells.extend(rows.iter().map(|r| self.table_cells(r)));
            let widths: Vec<usize> = (0..6)
                .map(|c| {
                    cells
                        .iter()
                        .map(|r| r[c].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for row in cells {
                let mut line = String::from(" ");
                for (c, cell) in row.iter().enumerate() {
                    let w = widths.get(c).copied().unwrap_or(0);
                    if c == 0 || c == 5 {
                        let _ = write!(line, " {cell:<w$}");
                    } else {
                        let _ = write!(line, " {cell:>w$}");
                    }
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "\nnote: {}", escape::terminal(n));
        }
        out
    }

    /// Markdown rendering, for a pull-request comment.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let mark = if !self.unfit.is_empty() {
            "❌ Not comparable"
        } else if self.has_regression() {
            "❌ Regression"
        } else {
            "✅ No regression"
        };
        let _ = writeln!(
            out,
            "## {mark}: {}\n\nBaseline **{}** ({}, loadgen {}) vs current **{}** ({}, loadgen {}).\n",
            self.verdict(),
            escape::markdown(&self.baseline.name),
            escape::markdown(&self.baseline.started_at),
            escape::markdown(&self.baseline.loadgen_version),
            escape::markdown(&self.current.name),
            escape::markdown(&self.current.started_at),
            escape::markdown(&self.current.loadgen_version),
        );
        for s in self
            .unfit_sentences()
            .into_iter()
            .chain(self.regression_sentences())
        {
            let _ = writeln!(out, "- ❌ {}", escape::markdown(&s));
        }
        if !self.passes() {
            out.push('\n');
        }
        for (scope, rows) in self.scopes() {
            let _ = writeln!(
                out,
                "### {}\n\n| Metric | Baseline | Current | Delta | Limit | Status |\n|---|---:|---:|---:|---:|---|",
                scope.map_or("All scenarios".to_owned(), |s| format!(
                    "Scenario {}",
                    escape::markdown(s)
                ))
            );
            for r in rows {
                let c = self.table_cells(r);
                let status = if r.status == Status::Regressed {
                    "❌ **regressed**".to_owned()
                } else {
                    c[5].clone()
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {status} |",
                    c[0], c[1], c[2], c[3], c[4]
                );
            }
            out.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(out, "> note: {}", escape::markdown(n));
        }
        out
    }

    /// A self-contained HTML page (inline CSS, no script, no network).
    pub fn to_html(&self) -> String {
        let esc = escape::xml;
        let mut out = String::new();
        let (class, mark) = if !self.unfit.is_empty() {
            ("failed", "✗ Not comparable")
        } else if self.has_regression() {
            ("failed", "✗ Regression")
        } else {
            ("passed", "✓ No regression")
        };
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
             <title>{mark}: {} — ricochet compare</title>\n<style>\
             body{{font:14px/1.45 system-ui,sans-serif;max-width:1000px;margin:0 auto;padding:24px;color:#1f2328}}\
             header{{border-radius:8px;padding:12px 16px;color:#fff}} header.passed{{background:#1a7f37}} header.failed{{background:#cf222e}}\
             table{{border-collapse:collapse;width:100%;margin:6px 0 14px}} th,td{{border:1px solid #d0d7de;padding:4px 8px}}\
             th{{background:#f6f8fa}} td.num{{text-align:right;font-variant-numeric:tabular-nums}}\
             tr.regressed td{{background:#ffebe9;color:#cf222e;font-weight:600}} tr.ok td.status{{color:#1a7f37}}\
             .note{{color:#57606a}}</style>\n</head>\n<body>\n\
             <header class=\"{class}\"><h1>{mark}: {}</h1><p>Baseline {} ({}) vs current {} ({}).</p></header>\n",
            esc(&self.current.name),
            esc(&self.verdict()),
            esc(&self.baseline.name),
            esc(&self.baseline.started_at),
            esc(&self.current.name),
            esc(&self.current.started_at),
        );
        if !self.passes() {
            out.push_str("<ul class=\"regressions\">\n");
            for s in self
                .unfit_sentences()
                .into_iter()
                .chain(self.regression_sentences())
            {
                let _ = writeln!(out, "<li>{}</li>", esc(&s));
            }
            out.push_str("</ul>\n");
        }
        for (scope, rows) in self.scopes() {
            let _ = writeln!(
                out,
                "<h2>{}</h2>\n<table class=\"compare\">\n<thead><tr><th>Metric</th><th>Baseline</th><th>Current</th>\
                 <th>Delta</th><th>Limit</th><th>Status</th></tr></thead>\n<tbody>",
                scope.map_or("All scenarios".to_owned(), |s| format!(
                    "Scenario {}",
                    esc(s)
                ))
            );
            for r in rows {
                let c = self.table_cells(r);
                let class = match r.status {
                    Status::Regressed => "regressed",
                    Status::Ok => "ok",
                    Status::Unlimited => "unlimited",
                    Status::Missing => "missing",
                };
                let _ = writeln!(
                    out,
                    "<tr class=\"{class}\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                     <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"status\">{}</td></tr>",
                    esc(&c[0]),
                    esc(&c[1]),
                    esc(&c[2]),
                    esc(&c[3]),
                    esc(&c[4]),
                    esc(&c[5])
                );
            }
            out.push_str("</tbody>\n</table>\n");
        }
        for n in &self.notes {
            let _ = writeln!(out, "<p class=\"note\">Note: {}</p>", esc(n));
        }
        out.push_str("</body>\n</html>\n");
        out
    }
}

fn fmt_opt(key: Key, v: Option<f64>) -> String {
    v.map_or("—".to_owned(), |v| key.format(v))
}
