//! The platform checks of a run: query checks evaluated on their interval beside the load
//! and once at its end, and alert drills that watch Prometheus' rule state, Alertmanager
//! and loadgen's own webhook receiver on the chaos timeline.
//!
//! Every backend request goes through the run's shared query budget (the verifiers'
//! [`RateLimiter`]). What was seen is kept in [`Observed`], which judges the `query`
//! and `alert_*` thresholds and the drilled alerts' expectations. "Could not ask" is never
//! "did not happen": a bound whose source could not be read is unknown, with the reason.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ricochet_reports::model::{
    AlertEvent, AlertSummary, PlatformSummary, QuerySeries, QuerySummary, ReceiverSummary,
    ThresholdResult, Verdict,
};
use ricochet_verify::RateLimiter;
use ricochet_verify::alerts::{AlertmanagerClient, Notification, Receiver};
use ricochet_verify::http::HttpBackend;
use ricochet_verify::prometheus::{PrometheusClient, RuleAlert};
use ricochet_verify::query::QueryClient;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::duration::format_duration;
use crate::evaluate::{Judgement, aggregation_name, worse};
use crate::metric::{AlertMeasure, Metric};
use crate::plan::Plan;
use crate::plan::platform::{AlertWindow, ExpectedAlert, PlatformPlan, SilentAlert};
use crate::thresholds::{Aggregation, Scope, Threshold};

/// A series' labels.
pub type Labels = BTreeMap<String, String>;
/// A series' points: `(seconds since run start, value)`.
pub type Points = Vec<(f64, f64)>;

/// Series kept per query; more are counted as dropped.
pub const MAX_SERIES: usize = 1_000;
/// Points kept per query, all its series together (about 3 MB); later ones are dropped.
pub const MAX_POINTS: usize = 200_000;
/// Timeline entries kept per alert.
pub const MAX_TIMELINE: usize = 1_000;

/// The platform checks could not start.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// A backend's endpoint or secret is unusable.
    #[error("{0}")]
    Backend(#[from] ricochet_verify::VerifyError),
    /// The webhook receiver could not listen.
    #[error("cannot start the alert webhook receiver on {addr}: {source}")]
    Receiver {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One query's evaluations so far.
#[derive(Debug, Clone, Default)]
pub struct QueryRecord {
    /// Evaluations asked.
    pub evaluations: u64,
    /// Failed evaluations by reason.
    pub errors: BTreeMap<String, u64>,
    /// Evaluations that returned no series.
    pub empty: u64,
    /// Each series' points `(seconds since run start, value)`.
    pub series: Vec<(Labels, Points)>,
    /// Series not kept beyond [`MAX_SERIES`].
    pub dropped_series: u64,
    /// Points kept, all series together.
    pub points: usize,
}

/// What a drilled alert is expected to do.
#[derive(Debug, Clone)]
pub enum Expectation {
    /// Fire, notify, resolve.
    Fires(ExpectedAlert),
    /// Stay silent.
    Silent(SilentAlert),
}

impl Expectation {
    fn alert(&self) -> &str {
        match self {
            Self::Fires(e) => &e.alert,
            Self::Silent(s) => &s.alert,
        }
    }

    fn matchers(&self) -> &BTreeMap<String, String> {
        match self {
            Self::Fires(e) => &e.matchers,
            Self::Silent(s) => &s.matchers,
        }
    }

    fn window(&self) -> &AlertWindow {
        match self {
            Self::Fires(e) => &e.window,
            Self::Silent(s) => &s.window,
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        labels.get("alertname").map(String::as_str) == Some(self.alert())
            && self
                .matchers()
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// Reads of one source (Prometheus' rules, Alertmanager): when they succeeded, and why
/// the others failed.
#[derive(Debug, Clone, Default)]
pub struct Reads {
    ok: Vec<f64>,
    errors: BTreeMap<String, u64>,
}

impl Reads {
    fn ok_between(&self, from: f64, to: f64) -> bool {
        self.ok.iter().any(|&t| t >= from && t <= to)
    }

    fn first_error(&self) -> Option<&str> {
        self.errors
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(r, _)| r.as_str())
    }

    fn note(&mut self, t: f64, result: Result<(), String>) {
        match result {
            Ok(()) if self.ok.len() < MAX_POINTS => self.ok.push(t),
            Ok(()) => {}
            Err(reason) => *self.errors.entry(reason).or_default() += 1,
        }
    }
}

/// One drilled alert: what was seen of it.
#[derive(Debug, Clone)]
pub struct AlertRecord {
    /// What it must do.
    pub expectation: Expectation,
    timeline: Vec<(f64, &'static str, String)>,
    rule_state: Option<&'static str>,
    manager_state: Option<String>,
    /// Firing when its window started (since this time): its firing cannot be told apart
    /// from the fault's.
    already_firing: Option<f64>,
    fired: Option<f64>,
    notified: Option<f64>,
    resolved: Option<f64>,
    /// When the receiver got the resolved notification (after the alert fired).
    notified_resolved: Option<f64>,
    /// A silent alert's current episode of firing was counted already.
    episode: bool,
    unexpected: u64,
}

impl AlertRecord {
    fn new(expectation: Expectation) -> Self {
        Self {
            expectation,
            timeline: Vec::new(),
            rule_state: None,
            manager_state: None,
            already_firing: None,
            fired: None,
            notified: None,
            resolved: None,
            notified_resolved: None,
            episode: false,
            unexpected: 0,
        }
    }

    fn record(&mut self, t: f64, source: &'static str, state: String) {
        if self.timeline.len() < MAX_TIMELINE {
            self.timeline.push((t, source, state));
        }
    }

    /// The alert was seen firing at `t` by a source that only ever holds firing alerts
    /// (Alertmanager, a firing notification): it fired no later than `t`, even if the
    /// rule-state read that shows it comes a little later.
    fn firing_seen(&mut self, t: f64) {
        let (start, _) = bounds(self.expectation.window());
        if let Expectation::Fires(_) = self.expectation
            && t >= start
            && self.already_firing.is_none()
            && self.resolved.is_none()
            && self.fired.is_none_or(|f| t < f)
        {
            self.fired = Some(t);
        }
    }

    /// Counts a silent alert's episode of firing (or notification) in its window once.
    fn unexpected_at(&mut self, t: f64) {
        let (start, end) = bounds(self.expectation.window());
        if t >= start && t <= end && !self.episode {
            self.unexpected += 1;
            self.episode = true;
        }
    }

    /// Prometheus' rule state at `t`: `firing`, `pending` or `inactive`.
    fn rule_seen(&mut self, t: f64, state: &'static str) {
        let (start, end) = bounds(self.expectation.window());
        let before = self.rule_state.replace(state);
        if before != Some(state) {
            self.record(t, "prometheus", state.to_owned());
        }
        let firing = state == "firing";
        match &self.expectation {
            Expectation::Fires(_) => {
                if t < start {
                    self.already_firing = match (firing, self.already_firing) {
                        (true, since) => since.or(Some(t)),
                        (false, _) => None,
                    };
                } else if self.fired.is_none() {
                    if firing && self.already_firing.is_none() {
                        self.fired = Some(t);
                    } else if !firing {
                        self.already_firing = None;
                    }
                } else if !firing && self.resolved.is_none() && t >= end {
                    self.resolved = Some(t);
                }
            }
            Expectation::Silent(s) => {
                if !firing {
                    self.episode = false;
                } else if !s.allow_firing {
                    self.unexpected_at(t);
                }
            }
        }
    }

    fn manager_seen(&mut self, t: f64, state: String) {
        if self.manager_state.as_ref() != Some(&state) {
            self.record(t, "alertmanager", state.clone());
            if state == "active" {
                self.firing_seen(t);
            }
            self.manager_state = Some(state);
        }
    }

    fn notified_at(&mut self, t: f64, status: &str) {
        self.record(t, "receiver", format!("notified {status}"));
        let (start, _) = bounds(self.expectation.window());
        match (&self.expectation, status) {
            (Expectation::Fires(_), "firing") => {
                self.firing_seen(t);
                if t >= start && self.notified.is_none() {
                    self.notified = Some(t);
                }
            }
            (Expectation::Fires(_), _) => {
                if self.fired.is_some() && self.notified_resolved.is_none() {
                    self.notified_resolved = Some(t);
                }
            }
            (Expectation::Silent(_), "firing") => self.unexpected_at(t),
            (Expectation::Silent(_), _) => {}
        }
    }
}

fn bounds(w: &AlertWindow) -> (f64, f64) {
    (w.start.as_secs_f64(), w.end.as_secs_f64())
}

/// Everything the platform checks saw: the query series and the drilled alerts.
#[derive(Debug, Clone)]
pub struct Observed {
    plan: PlatformPlan,
    /// Each query's record, in plan order.
    pub queries: Vec<QueryRecord>,
    /// Each drilled alert, expected ones first, in plan order.
    pub alerts: Vec<AlertRecord>,
    rules: Reads,
    manager: Reads,
    /// Where the receiver listened, notifications accepted, requests refused.
    receiver: Option<(String, u64, u64)>,
    /// Named windows (phases and chaos entries) for `phase`-scoped query thresholds.
    scopes: BTreeMap<String, (f64, f64)>,
    /// Until when (seconds since run start) the alert state was watched.
    watched_until: f64,
    /// Why watching stopped early, if it did.
    cut_short: Option<String>,
    seen_notifications: usize,
}

impl Observed {
    /// Nothing seen yet, for `plan`'s platform checks.
    pub fn new(plan: &Plan) -> Self {
        let p = &plan.platform;
        let mut alerts = Vec::new();
        if let Some(a) = &p.alerts {
            alerts.extend(a.expect.iter().cloned().map(Expectation::Fires));
            alerts.extend(a.silent.iter().cloned().map(Expectation::Silent));
        }
        let mut scopes = BTreeMap::new();
        for (_, phase) in plan.phases() {
            let e = scopes
                .entry(phase.name.clone())
                .or_insert((f64::MAX, 0.0f64));
            e.0 = e.0.min(phase.start.as_secs_f64());
            e.1 = e.1.max(phase.end.as_secs_f64());
        }
        for c in &plan.chaos.events {
            if let Some(n) = &c.name {
                let end = c.until.unwrap_or(plan.duration());
                scopes.insert(n.clone(), (c.at.as_secs_f64(), end.as_secs_f64()));
            }
        }
        Self {
            plan: p.clone(),
            queries: vec![QueryRecord::default(); p.queries.len()],
            alerts: alerts.into_iter().map(AlertRecord::new).collect(),
            rules: Reads::default(),
            manager: Reads::default(),
            receiver: None,
            scopes,
            watched_until: 0.0,
            cut_short: None,
            seen_notifications: 0,
        }
    }

    fn add_answer(&mut self, q: usize, t: f64, answer: Result<Vec<(Labels, f64)>, String>) {
        let Some(r) = self.queries.get_mut(q) else {
            return;
        };
        r.evaluations += 1;
        let values = match answer {
            Ok(v) => v,
            Err(reason) => {
                *r.errors.entry(reason).or_default() += 1;
                return;
            }
        };
        if values.is_empty() {
            r.empty += 1;
        }
        for (labels, value) in values {
            if r.points >= MAX_POINTS {
                break;
            }
            match r.series.iter().position(|(l, _)| *l == labels) {
                Some(k) => r.series[k].1.push((t, value)),
                None if r.series.len() < MAX_SERIES => r.series.push((labels, vec![(t, value)])),
                None => {
                    r.dropped_series += 1;
                    continue;
                }
            }
            r.points += 1;
        }
    }

    fn add_alert_reads(
        &mut self,
        t: f64,
        rules: Result<Vec<RuleAlert>, String>,
        manager: Option<Result<Vec<ricochet_verify::alerts::ManagedAlert>, String>>,
        notifications: &[Notification],
        run_start: Instant,
    ) {
        self.watched_until = self.watched_until.max(t);
        match rules {
            Ok(list) => {
                self.rules.note(t, Ok(()));
                for rec in &mut self.alerts {
                    let matching = list.iter().filter(|a| rec.expectation.matches(&a.labels));
                    let state = matching.fold("inactive", |s, a| match (s, a.state.as_str()) {
                        (_, "firing") | ("firing", _) => "firing",
                        (_, "pending") | ("pending", _) => "pending",
                        _ => s,
                    });
                    rec.rule_seen(t, state);
                }
            }
            Err(reason) => self.rules.note(t, Err(reason)),
        }
        match manager {
            None => {}
            Some(Ok(list)) => {
                self.manager.note(t, Ok(()));
                for rec in &mut self.alerts {
                    let state = list
                        .iter()
                        .filter(|a| rec.expectation.matches(&a.labels))
                        .map(|a| a.state.clone())
                        .max_by_key(|s| s == "active")
                        .unwrap_or_else(|| "absent".to_owned());
                    rec.manager_seen(t, state);
                }
            }
            Some(Err(reason)) => self.manager.note(t, Err(reason)),
        }
        for n in notifications.iter().skip(self.seen_notifications) {
            let at = n
                .received
                .saturating_duration_since(run_start)
                .as_secs_f64();
            for a in &n.alerts {
                for rec in &mut self.alerts {
                    if rec.expectation.matches(&a.labels) {
                        rec.notified_at(at, &a.status);
                    }
                }
            }
        }
        self.seen_notifications = notifications.len().max(self.seen_notifications);
    }

    /// Whether every expectation is decided (so watching may stop before the last deadline).
    fn decided(&self) -> bool {
        let now = self.watched_until;
        self.alerts.iter().all(|r| match &r.expectation {
            Expectation::Fires(e) => {
                let (start, end) = bounds(&e.window);
                let fire = r.fired.is_some() || now > start + e.fires_within.as_secs_f64();
                let notify = e
                    .notifies_within
                    .is_none_or(|d| r.notified.is_some() || now > start + d.as_secs_f64());
                // With the receiver, also the resolved notification (Alertmanager sends it
                // at its next flush after the rule resolves), so the timeline holds it.
                let heard = self.receiver.is_none() || e.notifies_within.is_none();
                let resolve = e.resolves_within.is_none_or(|d| {
                    (r.resolved.is_some() && (heard || r.notified_resolved.is_some()))
                        || now > end + d.as_secs_f64()
                });
                fire && notify && resolve
            }
            Expectation::Silent(s) => now >= s.window.end.as_secs_f64(),
        })
    }

    /// Judges a `query` or `alert_*` threshold on what was seen.
    pub fn judge(&self, th: &Threshold, seconds: f64) -> Judgement {
        match th.metric {
            Metric::Query => self.judge_query(th),
            Metric::Alert(m) => self.judge_alert(th, m, seconds),
            _ => Judgement::unknown(format!("`{}` is not a platform metric", th.metric)),
        }
    }

    fn judge_query(&self, th: &Threshold) -> Judgement {
        let name = th
            .filter
            .get("name")
            .map(String::as_str)
            .unwrap_or_default();
        let Some(i) = self.plan.queries.iter().position(|q| q.name == name) else {
            return Judgement::unknown(format!("no query `{name}` ran"));
        };
        let (q, rec) = (&self.plan.queries[i], &self.queries[i]);
        let range = match &th.scope {
            Scope::Phase(p) => match self.scopes.get(p) {
                Some(&r) => Some(r),
                None => return Judgement::unknown(format!("no phase or chaos entry `{p}` ran")),
            },
            _ => None,
        };
        let series: Vec<(&Labels, Points)> = rec
            .series
            .iter()
            .filter(|(labels, _)| {
                th.filter
                    .iter()
                    .filter(|(k, _)| *k != "name")
                    .all(|(k, v)| labels.get(k) == Some(v))
            })
            .map(|(labels, points)| {
                let pts = points
                    .iter()
                    .copied()
                    .filter(|(t, _)| range.is_none_or(|(s, e)| *t >= s && *t <= e))
                    .collect();
                (labels, pts)
            })
            .filter(|(_, pts): &(_, Vec<_>)| !pts.is_empty())
            .collect();
        if series.is_empty() {
            let when = match &th.scope {
                Scope::Phase(p) => format!(" during `{p}`"),
                _ => String::new(),
            };
            let why = match rec.errors.iter().max_by_key(|(_, n)| **n) {
                Some((reason, n)) => format!(
                    "query `{name}` returned no value{when}: {n} of {} evaluations failed: {reason}",
                    rec.evaluations
                ),
                None if rec.evaluations == 0 => {
                    format!("query `{name}` was not evaluated{when}")
                }
                None => format!(
                    "query `{name}` returned no series{when} ({} evaluations{}); check the query and its labels",
                    rec.evaluations,
                    if th.filter.len() > 1 {
                        ", after the key's label filter"
                    } else {
                        ""
                    }
                ),
            };
            return Judgement::unknown(why);
        }
        if series.len() > 1 && !q.each_series {
            let shown: Vec<String> = series.iter().take(3).map(|(l, _)| labels_text(l)).collect();
            return Judgement::unknown(format!(
                "query `{name}` returned {} series ({}{}); aggregate them in the query (e.g. `max(...)`), pick one with a label in the key (`query{{name:{name},label:value}}`), or set `eachSeries: true`",
                series.len(),
                shown.join(", "),
                if series.len() > 3 { ", ..." } else { "" }
            ));
        }
        let mut worst: Option<(f64, String, bool)> = None;
        for (labels, points) in &series {
            let j = match th.scope {
                Scope::Window(d) => judge_windows(th, points, d.as_secs_f64()),
                _ => judge_values(th, points),
            };
            let Some(v) = j.observed else {
                return j;
            };
            let failed = j.verdict == Verdict::Fail;
            let detail = match (series.len() > 1, j.reason) {
                (true, Some(r)) => format!("{}: {r}", labels_text(labels)),
                (true, None) => labels_text(labels),
                (false, r) => r.unwrap_or_default(),
            };
            let replace = match &worst {
                None => true,
                Some((w, _, wf)) => {
                    (failed && !wf) || (failed == *wf && worse(th.comparison, v, *w))
                }
            };
            if replace {
                worst = Some((v, detail, failed));
            }
        }
        match worst {
            Some((v, detail, failed)) => Judgement {
                observed: Some(v),
                verdict: if failed { Verdict::Fail } else { Verdict::Pass },
                reason: (!detail.is_empty()).then_some(detail),
            },
            None => Judgement::unknown(format!("query `{name}` returned no value")),
        }
    }

    fn judge_alert(&self, th: &Threshold, m: AlertMeasure, seconds: f64) -> Judgement {
        let wanted = th.filter.get("alert");
        let records: Vec<&AlertRecord> = self
            .alerts
            .iter()
            .filter(|r| wanted.is_none_or(|a| r.expectation.alert() == a))
            .collect();
        if m == AlertMeasure::Unexpected {
            let silent: Vec<&&AlertRecord> = records
                .iter()
                .filter(|r| matches!(r.expectation, Expectation::Silent(_)))
                .collect();
            if silent.is_empty() {
                return Judgement::unknown(format!(
                    "`{}` counts alerts declared `silent`, and none matches",
                    th.key
                ));
            }
            if let Some(reason) = silent.iter().find_map(|r| self.silent_unknown(r)) {
                return Judgement::unknown(reason);
            }
            let n: u64 = silent.iter().map(|r| r.unexpected).sum();
            let observed = match th.aggregation {
                Aggregation::Rate => n as f64 / seconds.max(1e-9),
                _ => n as f64,
            };
            return verdict(th, observed, None);
        }
        let mut values = Vec::new();
        let mut missing = Vec::new();
        for r in records {
            let Expectation::Fires(e) = &r.expectation else {
                continue;
            };
            match self.measure(r, e, m) {
                Ok(v) => values.push((0.0, v * 1000.0)),
                Err(reason) => missing.push(reason),
            }
        }
        if let Some(reason) = missing.into_iter().next() {
            return Judgement::unknown(reason);
        }
        if values.is_empty() {
            return Judgement::unknown(format!(
                "`{}` measures alerts declared in `expect`, and none matches",
                th.key
            ));
        }
        judge_values(th, &values)
    }

    /// Seconds of `m` for one expected alert, or why it was not measured.
    fn measure(&self, r: &AlertRecord, e: &ExpectedAlert, m: AlertMeasure) -> Result<f64, String> {
        let (start, end) = bounds(&e.window);
        let during = during_text(&e.window);
        match m {
            AlertMeasure::TimeToFire => match r.fired {
                Some(t) => Ok(t - start),
                None => Err(self.not_fired(r, e)),
            },
            AlertMeasure::TimeToNotify => match r.notified {
                Some(t) => Ok(t - start),
                None => Err(self.not_notified(r, e, self.watched_until)),
            },
            AlertMeasure::TimeToResolve => match (r.fired, r.resolved) {
                (_, Some(t)) => Ok(t - end),
                (None, None) => Err(format!(
                    "{} never fired, so its resolution after {during} was not measured",
                    e.alert
                )),
                (Some(_), None) => Err(self.not_resolved(e)),
            },
            AlertMeasure::Unexpected => Err("not a time".to_owned()),
        }
    }

    fn not_fired(&self, r: &AlertRecord, e: &ExpectedAlert) -> String {
        let (start, _) = bounds(&e.window);
        let during = during_text(&e.window);
        let deadline = start + e.fires_within.as_secs_f64();
        if let Some(since) = r.already_firing {
            return format!(
                "{} was already firing when {during} started (seen firing since +{since:.1}s), so the drill cannot tell that the fault fired it",
                e.alert
            );
        }
        if let Some(cut) = &self.cut_short
            && self.watched_until < deadline
        {
            return format!("{}: {cut} before its firesWithin deadline", e.alert);
        }
        if !self
            .rules
            .ok_between(start, deadline.max(self.watched_until))
        {
            return format!(
                "{}: Prometheus' rule state could not be read during {during}: {}",
                e.alert,
                self.rules.first_error().unwrap_or("no read was made")
            );
        }
        let last = r.rule_state.unwrap_or("inactive");
        format!(
            "{} did not fire within {} of {during} starting (watched until +{:.1}s; last state {last})",
            e.alert,
            format_duration(e.fires_within),
            self.watched_until
        )
    }

    fn not_notified(&self, r: &AlertRecord, e: &ExpectedAlert, now: f64) -> String {
        let (start, _) = bounds(&e.window);
        let during = during_text(&e.window);
        let heard = self.receiver.as_ref().map_or(0, |(_, n, _)| *n);
        let nothing = if heard == 0 {
            "the receiver heard nothing at all".to_owned()
        } else {
            format!("the receiver got {heard} notifications, none firing for it")
        };
        if self.manager.errors.values().sum::<u64>() > 0 && !self.manager.ok_between(start, now) {
            return format!(
                "{}: no notification reached the receiver, and Alertmanager could not be asked: {}; {nothing}",
                e.alert,
                self.manager.first_error().unwrap_or_default()
            );
        }
        if let Some(cut) = &self.cut_short
            && e.notifies_within
                .is_some_and(|d| now < start + d.as_secs_f64())
        {
            return format!("{}: {cut} before its notifiesWithin deadline", e.alert);
        }
        let held = match r.manager_state.as_deref() {
            Some("suppressed") => "; Alertmanager holds it suppressed (silenced or inhibited)",
            Some("active") => {
                "; Alertmanager holds it active: check the route to loadgen's receiver"
            }
            Some(_) => "; Alertmanager never received it from Prometheus",
            None => "",
        };
        format!(
            "{}: no firing notification reached the receiver within {} of {during} starting ({nothing}){held}",
            e.alert,
            e.notifies_within
                .map_or_else(|| "the run".to_owned(), format_duration)
        )
    }

    fn not_resolved(&self, e: &ExpectedAlert) -> String {
        let (_, end) = bounds(&e.window);
        let during = during_text(&e.window);
        let deadline = end + e.resolves_within.unwrap_or_default().as_secs_f64();
        if let Some(cut) = &self.cut_short
            && self.watched_until < deadline
        {
            return format!("{}: {cut} before its resolvesWithin deadline", e.alert);
        }
        if !self.rules.ok_between(end, deadline.max(self.watched_until)) {
            return format!(
                "{}: Prometheus' rule state could not be read after {during} ended: {}",
                e.alert,
                self.rules.first_error().unwrap_or("no read was made")
            );
        }
        format!(
            "{} was still firing {:.1}s after {during} ended",
            e.alert,
            self.watched_until - end
        )
    }

    fn silent_unknown(&self, r: &AlertRecord) -> Option<String> {
        let Expectation::Silent(s) = &r.expectation else {
            return None;
        };
        let (start, end) = bounds(&s.window);
        let during = during_text(&s.window);
        if r.unexpected > 0 {
            return None;
        }
        if !s.allow_firing && !self.rules.ok_between(start, end.max(start)) {
            return Some(format!(
                "{}: Prometheus' rule state could not be read during {during}, so its silence is not known: {}",
                s.alert,
                self.rules.first_error().unwrap_or("no read was made")
            ));
        }
        None
    }

    /// The verdicts of the drilled alerts' own bounds (`firesWithin`, `notifiesWithin`,
    /// `resolvesWithin`, silence), as threshold results.
    pub fn expectation_results(&self) -> Vec<ThresholdResult> {
        let mut out = Vec::new();
        for r in &self.alerts {
            match &r.expectation {
                Expectation::Fires(e) => {
                    let during = during_text(&e.window);
                    let bounds = [
                        (
                            AlertMeasure::TimeToFire,
                            Some(e.fires_within),
                            "started",
                            "fired",
                        ),
                        (
                            AlertMeasure::TimeToNotify,
                            e.notifies_within,
                            "started",
                            "notified",
                        ),
                        (
                            AlertMeasure::TimeToResolve,
                            e.resolves_within,
                            "ended",
                            "resolved",
                        ),
                    ];
                    for (m, bound, edge, did) in bounds {
                        let Some(bound) = bound else { continue };
                        let limit = bound.as_secs_f64() * 1000.0;
                        let (observed, verdict, reason) = match self.measure(r, e, m) {
                            Ok(secs) => {
                                let pass = secs * 1000.0 <= limit;
                                let what = if pass { "within" } else { "later than" };
                                (
                                    Some(secs * 1000.0),
                                    if pass { Verdict::Pass } else { Verdict::Fail },
                                    format!(
                                        "{} {did} {secs:.1}s after {during} {edge}, {what} {}",
                                        e.alert,
                                        format_duration(bound)
                                    ),
                                )
                            }
                            Err(reason) => {
                                let decided_missing = reason.contains("did not fire")
                                    || reason.contains("was still firing")
                                    || (reason.contains("no firing notification reached")
                                        && !reason.contains("could not be asked"));
                                let v = if decided_missing {
                                    Verdict::Fail
                                } else {
                                    Verdict::Unknown
                                };
                                (None, v, reason)
                            }
                        };
                        out.push(ThresholdResult {
                            metric: format!("{}{{alert:{}}}", Metric::Alert(m).name(), e.alert),
                            expression: format!("<={}", format_duration(bound)),
                            observed,
                            limit,
                            verdict,
                            reason: Some(reason),
                            abort_on_fail: false,
                            window_secs: None,
                            phase: e.window.during.clone(),
                        });
                    }
                }
                Expectation::Silent(s) => {
                    let during = during_text(&s.window);
                    let (observed, verdict, reason) = match self.silent_unknown(r) {
                        Some(reason) => (None, Verdict::Unknown, reason),
                        None if r.unexpected == 0 => (
                            Some(0.0),
                            Verdict::Pass,
                            format!(
                                "{} stayed {} during {during}",
                                s.alert,
                                if s.allow_firing {
                                    "unnotified"
                                } else {
                                    "silent"
                                }
                            ),
                        ),
                        None => (
                            Some(r.unexpected as f64),
                            Verdict::Fail,
                            format!(
                                "{} was seen {} {} times during {during}, where it had to stay silent{}",
                                s.alert,
                                if s.allow_firing {
                                    "notified"
                                } else {
                                    "firing or notified"
                                },
                                r.unexpected,
                                first_firing(r)
                                    .map_or_else(String::new, |t| format!(" (first at +{t:.1}s)"))
                            ),
                        ),
                    };
                    out.push(ThresholdResult {
                        metric: format!("alert_unexpected{{alert:{}}}", s.alert),
                        expression: "count==0".to_owned(),
                        observed,
                        limit: 0.0,
                        verdict,
                        reason: Some(reason),
                        abort_on_fail: false,
                        window_secs: None,
                        phase: s.window.during.clone(),
                    });
                }
            }
        }
        out
    }

    /// The `platform` section of `summary.json`.
    pub fn summary(&self, clients: &[String]) -> PlatformSummary {
        let queries = self
            .plan
            .queries
            .iter()
            .zip(&self.queries)
            .enumerate()
            .map(|(i, (q, r))| QuerySummary {
                name: q.name.clone(),
                language: q.language.as_str().to_owned(),
                expr: q.expr.clone(),
                backend: clients.get(i).cloned().unwrap_or_default(),
                every_secs: q.every.as_secs_f64(),
                evaluations: r.evaluations,
                errors: r.errors.clone(),
                empty: r.empty,
                series: r
                    .series
                    .iter()
                    .map(|(labels, points)| QuerySeries {
                        labels: labels.clone(),
                        points: points
                            .iter()
                            .filter(|(_, v)| v.is_finite())
                            .map(|&(t, v)| [round3(t), v])
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        let alerts = self
            .alerts
            .iter()
            .map(|r| {
                let w = r.expectation.window();
                let (fires, notifies, resolves) = match &r.expectation {
                    Expectation::Fires(e) => (
                        Some(e.fires_within.as_secs_f64()),
                        e.notifies_within.map(|d| d.as_secs_f64()),
                        e.resolves_within.map(|d| d.as_secs_f64()),
                    ),
                    Expectation::Silent(_) => (None, None, None),
                };
                let measured = |m| match &r.expectation {
                    Expectation::Fires(e) => self.measure(r, e, m).ok().map(round3),
                    Expectation::Silent(_) => None,
                };
                let mut unknown = Vec::new();
                if let Expectation::Fires(e) = &r.expectation {
                    for m in [
                        AlertMeasure::TimeToFire,
                        AlertMeasure::TimeToNotify,
                        AlertMeasure::TimeToResolve,
                    ] {
                        let declared = match m {
                            AlertMeasure::TimeToFire => true,
                            AlertMeasure::TimeToNotify => e.notifies_within.is_some(),
                            _ => e.resolves_within.is_some(),
                        };
                        if declared && let Err(reason) = self.measure(r, e, m) {
                            unknown.push(reason);
                        }
                    }
                } else if let Some(reason) = self.silent_unknown(r) {
                    unknown.push(reason);
                }
                AlertSummary {
                    alert: r.expectation.alert().to_owned(),
                    matchers: r.expectation.matchers().clone(),
                    expect: match r.expectation {
                        Expectation::Fires(_) => "fires",
                        Expectation::Silent(_) => "silent",
                    }
                    .to_owned(),
                    during: w.during.clone(),
                    window_start_secs: w.start.as_secs_f64(),
                    window_end_secs: w.end.as_secs_f64(),
                    fires_within_secs: fires,
                    notifies_within_secs: notifies,
                    resolves_within_secs: resolves,
                    time_to_fire_secs: measured(AlertMeasure::TimeToFire),
                    time_to_notify_secs: measured(AlertMeasure::TimeToNotify),
                    time_to_resolve_secs: measured(AlertMeasure::TimeToResolve),
                    unexpected: r.unexpected,
                    timeline: sorted(&r.timeline)
                        .into_iter()
                        .map(|(t, source, state)| AlertEvent {
                            t: round3(t),
                            source: source.to_owned(),
                            state,
                        })
                        .collect(),
                    unknown,
                }
            })
            .collect();
        PlatformSummary {
            queries,
            alerts,
            receiver: self
                .receiver
                .as_ref()
                .map(|(listen, n, refused)| ReceiverSummary {
                    listen: listen.clone(),
                    notifications: *n,
                    refused: *refused,
                }),
        }
    }
}

/// "`errors`" for a named window, "the run" for the whole run.
fn during_text(w: &AlertWindow) -> String {
    match &w.during {
        Some(d) => format!("`{d}`"),
        None => "the run".to_owned(),
    }
}

fn first_firing(r: &AlertRecord) -> Option<f64> {
    let (start, end) = bounds(r.expectation.window());
    r.timeline
        .iter()
        .find(|(t, _, s)| *t >= start && *t <= end && s.contains("firing"))
        .map(|(t, _, _)| *t)
}

/// The timeline in time order (notifications are filed at the read after they arrive).
fn sorted(t: &[(f64, &'static str, String)]) -> Vec<(f64, &'static str, String)> {
    let mut t = t.to_vec();
    t.sort_by(|a, b| a.0.total_cmp(&b.0));
    t
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn labels_text(l: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn verdict(th: &Threshold, observed: f64, reason: Option<String>) -> Judgement {
    let pass = th.comparison.holds(observed, th.limit);
    Judgement {
        observed: Some(observed),
        verdict: if pass { Verdict::Pass } else { Verdict::Fail },
        reason,
    }
}

/// `th`'s aggregation of `points`' values (`(t, value)`, in time order).
fn aggregate(a: Aggregation, points: &[(f64, f64)]) -> Option<f64> {
    let mut values: Vec<f64> = points.iter().map(|p| p.1).filter(|v| !v.is_nan()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = |p: f64| {
        // Nearest rank, as k6 and HdrHistogram read a percentile: the smallest value with
        // at least p% of the values at or below it.
        let k = ((p / 100.0) * n as f64).ceil() as usize;
        values[k.clamp(1, n) - 1]
    };
    Some(match a {
        Aggregation::Last => points.iter().rev().map(|p| p.1).find(|v| !v.is_nan())?,
        Aggregation::Min => values[0],
        Aggregation::Max => values[n - 1],
        Aggregation::Avg => values.iter().sum::<f64>() / n as f64,
        Aggregation::Med => rank(50.0),
        Aggregation::Percentile(p) => rank(p),
        Aggregation::Count | Aggregation::Rate => n as f64,
    })
}

fn judge_values(th: &Threshold, points: &[(f64, f64)]) -> Judgement {
    match aggregate(th.aggregation, points) {
        Some(v) => verdict(th, v, None),
        None => Judgement::unknown(format!("`{}` has only NaN values", th.key)),
    }
}

/// Judges each tumbling window of `len` seconds; fails on the first failing window, naming
/// it, and reports the worst.
fn judge_windows(th: &Threshold, points: &[(f64, f64)], len: f64) -> Judgement {
    let len = len.max(1e-3);
    let mut windows: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
    for &(t, v) in points {
        windows
            .entry((t / len).floor() as u64)
            .or_default()
            .push((t, v));
    }
    let span = |w: u64| format!("{:.0}s–{:.0}s", w as f64 * len, (w + 1) as f64 * len);
    let mut worst: Option<(f64, u64)> = None;
    let mut first_fail: Option<(f64, u64)> = None;
    for (w, pts) in &windows {
        let Some(v) = aggregate(th.aggregation, pts) else {
            continue;
        };
        if worst.is_none_or(|(x, _)| worse(th.comparison, v, x)) {
            worst = Some((v, *w));
        }
        if !th.comparison.holds(v, th.limit) && first_fail.is_none() {
            first_fail = Some((v, *w));
        }
    }
    match (first_fail, worst) {
        (Some((v, w)), Some((worst, ww))) => Judgement {
            observed: Some(worst),
            verdict: Verdict::Fail,
            reason: Some(format!(
                "window {} ({}) failed first with {} {v}; worst window {} ({}) {worst}",
                w + 1,
                span(w),
                aggregation_name(th.aggregation),
                ww + 1,
                span(ww)
            )),
        },
        (None, Some((worst, ww))) => Judgement {
            observed: Some(worst),
            verdict: Verdict::Pass,
            reason: Some(format!(
                "{} windows passed; worst window {} ({})",
                windows.len(),
                ww + 1,
                span(ww)
            )),
        },
        _ => Judgement::unknown(format!("`{}` has no values in any window", th.key)),
    }
}

#[derive(Debug)]
struct Sources {
    queries: Vec<QueryClient>,
    rules: Option<PrometheusClient>,
    manager: Option<AlertmanagerClient>,
}

/// The running platform checks of one run.
#[derive(Debug)]
pub struct Platform {
    observed: Arc<Mutex<Observed>>,
    sources: Arc<SourcesHandle>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    run_start: Instant,
}

#[derive(Debug)]
struct SourcesHandle {
    descriptions: Vec<String>,
    inner: Sources,
}

impl Platform {
    /// Starts the query loops, the alert watch and the webhook receiver of `plan`'s
    /// platform checks; `None` when the plan has none. Every backend request waits for
    /// `limiter`, the run's shared query budget. Times count from `run_start`.
    pub async fn start(
        plan: &Plan,
        limiter: RateLimiter,
        run_start: Instant,
    ) -> Result<Option<Self>, PlatformError> {
        let p = &plan.platform;
        if p.is_empty() {
            return Ok(None);
        }
        let mut queries = Vec::new();
        let mut descriptions = Vec::new();
        for q in &p.queries {
            let name = match q.language {
                ricochet_verify::query::Language::PromQl => "prometheus",
                ricochet_verify::query::Language::LogQl => "loki",
            };
            let b = HttpBackend::new(name, &q.backend.endpoint()?, limiter.clone())?;
            let c = QueryClient::new(q.language, b);
            descriptions.push(c.describe());
            queries.push(c);
        }
        let mut observed = Observed::new(plan);
        let (mut rules, mut manager, mut receiver) = (None, None, None);
        if let Some(a) = &p.alerts {
            rules = Some(PrometheusClient::new(HttpBackend::new(
                "prometheus",
                &a.rules.endpoint()?,
                limiter.clone(),
            )?));
            if let Some(m) = &a.alertmanager {
                manager = Some(AlertmanagerClient::new(HttpBackend::new(
                    "alertmanager",
                    &m.endpoint()?,
                    limiter.clone(),
                )?));
            }
            if let Some(r) = &a.receiver {
                let token = r.token.as_ref().map(|t| t.read()).transpose()?;
                let rec = Receiver::start(r.listen, token).await.map_err(|source| {
                    PlatformError::Receiver {
                        addr: r.listen,
                        source,
                    }
                })?;
                observed.receiver = Some((rec.addr().to_string(), 0, 0));
                receiver = Some(rec);
            }
        }
        let observed = Arc::new(Mutex::new(observed));
        let sources = Arc::new(SourcesHandle {
            descriptions,
            inner: Sources {
                queries,
                rules,
                manager,
            },
        });
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for (i, q) in p.queries.iter().enumerate() {
            let (observed, sources) = (observed.clone(), sources.clone());
            tasks.spawn(on_interval(run_start, q.every, cancel.clone(), move || {
                let (observed, sources) = (observed.clone(), sources.clone());
                async move { evaluate(&sources, &observed, i, run_start).await }
            }));
        }
        if let Some(a) = &p.alerts {
            let (observed, sources) = (observed.clone(), sources.clone());
            let receiver = receiver.map(Arc::new);
            let held = receiver.clone();
            let watching = on_interval(run_start, a.every, cancel.clone(), move || {
                let (observed, sources, receiver) =
                    (observed.clone(), sources.clone(), receiver.clone());
                async move { watch(&sources, &observed, receiver.as_deref(), run_start).await }
            });
            tasks.spawn(async move {
                watching.await;
                if let Some(r) = held {
                    r.stop();
                }
            });
        }
        Ok(Some(Self {
            observed,
            sources,
            cancel,
            tasks,
            run_start,
        }))
    }

    /// What was seen so far (locked: judge and let go).
    pub fn observed(&self) -> MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After the load: evaluates every query once more, then watches the drilled alerts
    /// until every expectation is decided or its last deadline has passed, or `stop` is
    /// cancelled (Ctrl-C). Returns what was seen and the backends' descriptions.
    pub async fn finish(mut self, stop: &CancellationToken) -> (Observed, Vec<String>) {
        let queries = self.observed().queries.len();
        for i in 0..queries {
            tokio::select! {
                () = stop.cancelled() => break,
                () = evaluate(&self.sources, &self.observed, i, self.run_start) => {}
            }
        }
        let deadline = {
            let o = self.observed();
            o.plan
                .alerts
                .as_ref()
                .map(|a| self.run_start + a.last_deadline())
        };
        if let Some(deadline) = deadline {
            let every = self
                .observed()
                .plan
                .alerts
                .as_ref()
                .map_or(Duration::from_secs(1), |a| a.every);
            loop {
                if self.observed().decided() || Instant::now() >= deadline + every {
                    break;
                }
                tokio::select! {
                    () = stop.cancelled() => {
                        self.observed().cut_short =
                            Some("the run was stopped early, so watching ended".to_owned());
                        break;
                    }
                    () = tokio::time::sleep(every) => {}
                }
            }
        }
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
        let observed = self.observed().clone();
        (observed, self.sources.descriptions.clone())
    }
}

/// Runs `f` at `start`, then every `every` (a slow `f` delays the next run rather than
/// doubling up), until `cancel`.
async fn on_interval<F, Fut>(start: Instant, every: Duration, cancel: CancellationToken, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval_at(start.into(), every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = f() => {}
        }
    }
}

async fn evaluate(
    sources: &SourcesHandle,
    observed: &Mutex<Observed>,
    i: usize,
    run_start: Instant,
) {
    let (Some(client), Some(expr)) = (
        sources.inner.queries.get(i),
        observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .plan
            .queries
            .get(i)
            .map(|q| q.expr.clone()),
    ) else {
        return;
    };
    let answer = client
        .instant(&expr)
        .await
        .map(|v| v.into_iter().map(|s| (s.labels, s.value)).collect())
        .map_err(|u| u.reason);
    let t = run_start.elapsed().as_secs_f64();
    observed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .add_answer(i, t, answer);
}

async fn watch(
    sources: &SourcesHandle,
    observed: &Mutex<Observed>,
    receiver: Option<&Receiver>,
    run_start: Instant,
) {
    let s = &sources.inner;
    let Some(rules) = &s.rules else { return };
    let (rule_alerts, managed) = tokio::join!(rules.alerts(), async {
        match &s.manager {
            Some(m) => Some(m.alerts().await.map_err(|u| u.reason)),
            None => None,
        }
    });
    let t = run_start.elapsed().as_secs_f64();
    let notifications = receiver.map(Receiver::notifications).unwrap_or_default();
    let mut o = observed.lock().unwrap_or_else(PoisonError::into_inner);
    if let (Some(r), Some(rec)) = (receiver, o.receiver.as_mut()) {
        rec.1 = notifications.len() as u64;
        rec.2 = r.refused();
    }
    o.add_alert_reads(
        t,
        rule_alerts.map_err(|u| u.reason),
        managed,
        &notifications,
        run_start,
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ricochet_crds::ThresholdSpec;
    use ricochet_verify::alerts::{ManagedAlert, NotifiedAlert};

    use super::*;
    use crate::load::Document;
    use crate::plan::Overrides;
    use crate::thresholds::{ThresholdContext, parse_threshold};

    const DRILL: &str = r#"
apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: drill}
spec:
  scenarios:
    - name: api
      executor: ramping-arrival-rate
      rate: 20
      stages:
        - {target: 1, duration: 10s, name: baseline}
        - {target: 1, duration: 30s, name: fault}
      requests: [{name: echo, path: /api/echo}]
  chaos:
    - {name: errors, at: 10s, for: 20s, fault: {errorRate: 0.5}}
  telemetry:
    metrics: {prometheus: {url: "http://127.0.0.1:9"}}
  queries:
    - {name: lag, promql: 'max(lag)', every: 5s}
    - {name: up, promql: 'up', every: 5s, eachSeries: true}
  alerts:
    alertmanager: {url: "http://127.0.0.1:9"}
    receiver: {listen: "127.0.0.1:0"}
    expect:
      - {alert: HighErrors, during: errors, firesWithin: 20s, notifiesWithin: 25s, resolvesWithin: 30s}
    silent:
      - {alert: HighErrors, during: baseline}
"#;

    fn observed() -> Observed {
        let plan = Document::parse(Path::new("x.yaml"), DRILL)
            .and_then(|d| d.plan(&Overrides::default()))
            .unwrap();
        Observed::new(&plan)
    }

    fn threshold(key: &str, cond: &str, window: Option<&str>, phase: Option<&str>) -> Threshold {
        let ctx = ThresholdContext {
            queries: vec!["lag".into(), "up".into()],
            alerts: vec!["HighErrors".into()],
            chaos: vec!["errors".into()],
            phases: vec!["baseline".into(), "fault".into()],
            ..ThresholdContext::default()
        };
        let spec = ThresholdSpec::Detailed(ricochet_crds::ThresholdDetail {
            threshold: cond.into(),
            abort_on_fail: false,
            delay_abort_eval: None,
            window: window.map(Into::into),
            phase: phase.map(Into::into),
        });
        parse_threshold(key, &spec, &ctx).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn rule(state: &str) -> Vec<RuleAlert> {
        vec![RuleAlert {
            labels: labels(&[("alertname", "HighErrors"), ("service", "echo")]),
            state: state.into(),
        }]
    }

    fn notification(at: Instant, status: &str) -> Notification {
        Notification {
            received: at,
            receiver: "r".into(),
            alerts: vec![NotifiedAlert {
                status: status.into(),
                labels: labels(&[("alertname", "HighErrors")]),
            }],
        }
    }

    #[test]
    fn query_thresholds_judge_the_series_by_scope_window_and_labels() {
        let mut o = observed();
        for (t, v) in [(0.0, 1.0), (5.0, 2.0), (12.0, 30.0), (20.0, 3.0)] {
            o.add_answer(0, t, Ok(vec![(BTreeMap::new(), v)]));
        }
        let v = |o: &Observed, th: &Threshold| {
            let j = o.judge(th, 30.0);
            (j.verdict, j.observed, j.reason)
        };
        assert_eq!(
            v(&o, &threshold("query{name:lag}", "max<10", None, None)).0,
            Verdict::Fail
        );
        assert_eq!(
            v(
                &o,
                &threshold("query{name:lag}", "max<10", None, Some("baseline"))
            )
            .1,
            Some(2.0),
            "only the points in the baseline phase (0s–10s)"
        );
        assert_eq!(
            v(
                &o,
                &threshold("query{name:lag}", "max<10", None, Some("errors"))
            )
            .1,
            Some(30.0),
            "the chaos entry's window (10s–30s)"
        );
        assert_eq!(
            v(&o, &threshold("query{name:lag}", "last<5", None, None)).1,
            Some(3.0)
        );
        assert_eq!(
            v(&o, &threshold("query{name:lag}", "avg<10", None, None)).1,
            Some(9.0)
        );
        assert_eq!(
            v(&o, &threshold("query{name:lag}", "p(50)<10", None, None)).1,
            Some(2.0)
        );
        let (verdict, observed, reason) = v(
            &o,
            &threshold("query{name:lag}", "max<10", Some("10s"), None),
        );
        assert_eq!((verdict, observed), (Verdict::Fail, Some(30.0)));
        assert_eq!(
            reason.as_deref(),
            Some("window 2 (10s–20s) failed first with max 30; worst window 2 (10s–20s) 30")
        );

        // Several series: judged each by its labels when the query says so.
        for (t, a, b) in [(0.0, 1.0, 1.0), (5.0, 1.0, 0.0)] {
            let answer = vec![(labels(&[("job", "a")]), a), (labels(&[("job", "b")]), b)];
            o.add_answer(1, t, Ok(answer));
        }
        let (verdict, observed, reason) = v(&o, &threshold("query{name:up}", "min>=1", None, None));
        assert_eq!((verdict, observed), (Verdict::Fail, Some(0.0)));
        assert_eq!(
            reason.as_deref(),
            Some("{job=\"b\"}"),
            "names the failing series"
        );
        assert_eq!(
            v(&o, &threshold("query{name:up,job:a}", "min>=1", None, None)).0,
            Verdict::Pass,
            "a label in the key picks one series"
        );
        let mut single = o.clone();
        single.plan.queries[1].each_series = false;
        let j = single.judge(&threshold("query{name:up}", "min>=1", None, None), 30.0);
        assert_eq!(j.verdict, Verdict::Unknown);
        assert!(
            j.reason
                .unwrap()
                .contains("returned 2 series ({job=\"a\"}, {job=\"b\"})")
        );
    }

    #[test]
    fn a_query_that_cannot_be_asked_or_returns_nothing_is_unknown_with_the_reason() {
        let mut o = observed();
        let th = threshold("query{name:lag}", "max<10", None, None);
        assert_eq!(
            o.judge(&th, 1.0).reason.as_deref(),
            Some("query `lag` was not evaluated")
        );
        o.add_answer(0, 1.0, Ok(Vec::new()));
        let j = o.judge(&th, 1.0);
        assert_eq!(j.verdict, Verdict::Unknown);
        assert!(
            j.reason
                .unwrap()
                .contains("returned no series (1 evaluations)")
        );
        let msg = "prometheus (http://p/api/v1/query) answered 400 bad_data: 1:5: parse error";
        o.add_answer(0, 2.0, Err(msg.into()));
        let j = o.judge(&th, 2.0);
        assert_eq!(j.verdict, Verdict::Unknown);
        assert!(
            j.reason
                .unwrap()
                .ends_with(&format!("1 of 2 evaluations failed: {msg}"))
        );
    }

    #[test]
    fn an_alert_is_timed_from_its_fault_and_a_silent_one_counts_its_firings() {
        let mut o = observed();
        let start = Instant::now();
        let at = |s: f64| start + Duration::from_secs_f64(s);
        let mut notes = Vec::new();
        for (t, state) in [
            (1.0, "inactive"),
            (5.0, "firing"),
            (9.0, "inactive"),
            (14.0, "pending"),
            (17.0, "firing"),
        ] {
            if t == 17.5 {
                notes.push(notification(at(t), "firing"));
            }
            o.add_alert_reads(t, Ok(rule(state)), Some(Ok(Vec::new())), &notes, start);
        }
        notes.push(notification(at(18.5), "firing"));
        o.add_alert_reads(19.0, Ok(rule("firing")), None, &notes, start);
        o.add_alert_reads(31.0, Ok(rule("firing")), None, &notes, start);
        o.add_alert_reads(36.0, Ok(Vec::new()), None, &notes, start);
        let results = o.expectation_results();
        let by = |m: &str| results.iter().find(|r| r.metric.starts_with(m)).unwrap();
        let fire = by("alert_time_to_fire");
        assert_eq!(
            (fire.verdict, fire.observed),
            (Verdict::Pass, Some(7_000.0))
        );
        assert_eq!(
            fire.reason.as_deref(),
            Some("HighErrors fired 7.0s after `errors` started, within 20s")
        );
        assert_eq!(by("alert_time_to_notify").observed, Some(8_500.0));
        assert_eq!(
            by("alert_time_to_resolve").observed,
            Some(6_000.0),
            "36s - 30s"
        );
        let silent = by("alert_unexpected");
        assert_eq!(
            (silent.verdict, silent.observed),
            (Verdict::Fail, Some(1.0))
        );
        assert!(
            silent
                .reason
                .as_deref()
                .unwrap()
                .contains("(first at +5.0s)")
        );
        assert!(o.decided());

        let ttf = threshold("alert_time_to_fire{alert:HighErrors}", "max<5s", None, None);
        assert_eq!(o.judge(&ttf, 40.0).verdict, Verdict::Fail, "7s is not < 5s");
    }

    #[test]
    fn the_earliest_source_times_the_firing_and_the_resolved_notification_is_awaited() {
        let start = Instant::now();
        let at = |s: f64| start + Duration::from_secs_f64(s);
        let mut o = observed();
        o.receiver = Some(("127.0.0.1:9".into(), 0, 0));
        let mut notes = vec![notification(at(16.5), "firing")];
        // The notification arrived before the rule read that shows the alert firing.
        o.add_alert_reads(17.0, Ok(rule("firing")), None, &notes, start);
        o.add_alert_reads(31.0, Ok(Vec::new()), None, &notes, start);
        let fire = &o.expectation_results()[0];
        assert_eq!(
            fire.observed,
            Some(6_500.0),
            "16.5s - 10s, not the 17s read"
        );
        assert!(
            !o.decided(),
            "resolved in Prometheus, but the receiver has not heard it yet"
        );
        notes.push(notification(at(33.0), "resolved"));
        o.add_alert_reads(34.0, Ok(Vec::new()), None, &notes, start);
        assert!(o.decided());
        let silent = o.expectation_results().pop().unwrap();
        assert_eq!(
            silent.verdict,
            Verdict::Unknown,
            "nothing was read in the baseline"
        );
        assert!(
            silent
                .reason
                .as_deref()
                .unwrap()
                .ends_with("no read was made")
        );

        // One episode seen by the rules and by the receiver counts once.
        let mut o = observed();
        let notes = vec![notification(at(5.5), "firing")];
        o.add_alert_reads(5.0, Ok(rule("firing")), None, &[], start);
        o.add_alert_reads(6.0, Ok(rule("firing")), None, &notes, start);
        o.add_alert_reads(7.0, Ok(Vec::new()), None, &notes, start);
        o.add_alert_reads(8.0, Ok(rule("firing")), None, &notes, start);
        let silent = o.expectation_results().pop().unwrap();
        assert_eq!(silent.observed, Some(2.0), "two episodes: 5s and 8s");
    }

    #[test]
    fn an_alert_firing_before_its_fault_or_unreadable_is_unknown_not_passed() {
        let start = Instant::now();
        let mut o = observed();
        o.add_alert_reads(9.0, Ok(rule("firing")), None, &[], start);
        o.add_alert_reads(11.0, Ok(rule("firing")), None, &[], start);
        o.add_alert_reads(40.0, Ok(rule("firing")), None, &[], start);
        let fire = &o.expectation_results()[0];
        assert_eq!(fire.verdict, Verdict::Unknown);
        assert!(
            fire.reason
                .as_deref()
                .unwrap()
                .contains("already firing when `errors` started")
        );

        let mut o = observed();
        let refused = "http://127.0.0.1:9/api/v1/alerts: connection refused".to_owned();
        for t in [1.0, 12.0, 40.0, 70.0] {
            let down: Result<Vec<ManagedAlert>, String> = Err(format!("alertmanager {refused}"));
            o.add_alert_reads(t, Err(refused.clone()), Some(down), &[], start);
        }
        let results = o.expectation_results();
        assert!(
            results.iter().all(|r| r.verdict == Verdict::Unknown),
            "{results:?}"
        );
        assert!(
            results[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("rule state could not be read")
        );
        assert!(
            results[1]
                .reason
                .as_deref()
                .unwrap()
                .contains("Alertmanager could not be asked"),
            "{:?}",
            results[1].reason
        );

        // Read fine but never fired: that is a failure, not an unknown.
        let mut o = observed();
        for t in [1.0, 12.0, 31.0, 61.0] {
            o.add_alert_reads(t, Ok(Vec::new()), Some(Ok(Vec::new())), &[], start);
        }
        let fire = &o.expectation_results()[0];
        assert_eq!(fire.verdict, Verdict::Fail);
        assert!(
            fire.reason
                .as_deref()
                .unwrap()
                .contains("did not fire within 20s of `errors` starting")
        );
    }
}
