//! Scheduled `LoadTest`s: a `LoadTestRun` on every cron tick, CronJob semantics.
//!
//! Cron expressions are the 5 fields a CronJob takes, in UTC, parsed by `croner` (the
//! `cron` crate wants a seconds field, which CronJob users do not write). Missed ticks are
//! not caught up one by one: only the latest due tick runs, as a CronJob does. A run is
//! named `<loadtest>-<minutes since the epoch of its tick>`, so a retried reconcile cannot
//! create a tick's run twice (the second create is `AlreadyExists`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::resources::{LABEL_LOAD_TEST, status_params, status_patch};
use super::{Context, Error, Result};
use chrono::{DateTime, Utc};
use croner::Cron;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use ricochet_crds::{
    ConcurrencyPolicy, DEFAULT_FAILED_RUNS_HISTORY_LIMIT, DEFAULT_SUCCESSFUL_RUNS_HISTORY_LIMIT,
    LoadTest, LoadTestRef, LoadTestRun, LoadTestRunSpec, LoadTestStatus, RunPhase,
};

/// Parses a 5-field cron expression, or says what is wrong.
pub fn parse_cron(expr: &str) -> std::result::Result<Cron, String> {
    if expr.split_whitespace().count() != 5 {
        return Err(format!(
            "spec.schedule: `{expr}` is not a 5-field cron expression (minute hour day-of-month month day-of-week, e.g. `0 2 * * *`)"
        ));
    }
    expr.parse::<Cron>()
        .map_err(|e| format!("spec.schedule: `{expr}` is not a valid cron expression: {e}"))
}

fn to_chrono(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

fn to_jiff(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_second(t.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// What the schedule asks for now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is due; look again at `next`.
    Wait {
        /// The next tick.
        next: Option<Timestamp>,
    },
    /// Tick `due` runs now; first delete `replace` (policy `Replace`).
    Create {
        /// The tick.
        due: Timestamp,
        /// Active runs to delete first.
        replace: Vec<String>,
        /// The tick after.
        next: Option<Timestamp>,
    },
    /// Tick `due` is skipped: a run is still active (policy `Forbid`).
    Skip {
        /// The tick.
        due: Timestamp,
        /// The tick after.
        next: Option<Timestamp>,
    },
}

/// The decision for `cron` at `now`, given the last handled tick (or the LoadTest's
/// creation), the policy and the active runs.
pub fn decide(
    cron: &Cron,
    now: Timestamp,
    last: Timestamp,
    policy: ConcurrencyPolicy,
    active: &[String],
) -> Decision {
    let now_c = to_chrono(now);
    let next = cron.find_next_occurrence(&now_c, false).ok().map(to_jiff);
    let due = cron
        .find_previous_occurrence(&now_c, true)
        .ok()
        .map(to_jiff)
        .filter(|due| *due > last);
    match due {
        None => Decision::Wait { next },
        Some(due) => match policy {
            ConcurrencyPolicy::Forbid if !active.is_empty() => Decision::Skip { due, next },
            ConcurrencyPolicy::Replace => Decision::Create {
                due,
                replace: active.to_vec(),
                next,
            },
            _ => Decision::Create {
                due,
                replace: Vec::new(),
                next,
            },
        },
    }
}

/// Finished runs beyond the history limits, oldest first: `(name, passed, finished at)`.
pub fn beyond_history(
    finished: &[(String, bool, Timestamp)],
    successful_limit: u32,
    failed_limit: u32,
) -> Vec<String> {
    let mut out = Vec::new();
    for (passed, limit) in [(true, successful_limit), (false, failed_limit)] {
        let mut runs: Vec<&(String, bool, Timestamp)> =
            finished.iter().filter(|r| r.1 == passed).collect();
        // Newest first; ties by name for a stable order.
        runs.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| b.0.cmp(&a.0)));
        out.extend(runs.into_iter().skip(limit as usize).map(|r| r.0.clone()));
    }
    out
}

/// Name of the run of tick `due`.
pub fn run_name(load_test: &str, due: Timestamp) -> String {
    format!("{load_test}-{}", due.as_second().div_euclid(60))
}

fn requeue_at(now: Timestamp, next: Option<Timestamp>) -> Action {
    match next {
        Some(next) => {
            let left = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
            // One second past the tick, so that it is due when we look.
            Action::requeue(left + Duration::from_secs(1))
        }
        None => Action::await_change(),
    }
}

/// The tick of a run a schedule created, read back from its name (`<loadtest>-<minutes>`,
/// [`run_name`]); `None` for runs named otherwise (created by hand).
pub fn tick_of(load_test: &str, run: &str) -> Option<Timestamp> {
    let minutes: i64 = run
        .strip_prefix(load_test)?
        .strip_prefix('-')?
        .parse()
        .ok()?;
    Timestamp::from_second(minutes.checked_mul(60)?).ok()
}

/// Reconciles one `LoadTest`: prune history, create (or skip) the due run, update status.
///
/// The object the controller hands over comes from its watch cache, which can lag the
/// operator's own last status patch by a tick: decisions are taken on a fresh GET of the
/// LoadTest and a LIST of its runs, and a tick whose run exists is handled whatever the
/// status says, so a tick never deletes (`Replace`) or skips (`Forbid`) its own run and
/// `lastRun` never goes back. See: #18.
#[tracing::instrument(skip(lt, ctx), fields(load_test = %lt.name_any()))]
pub async fn reconcile_load_test(lt: Arc<LoadTest>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciliations.fetch_add(1, Ordering::Relaxed);
    if lt.spec.schedule.is_none() {
        return Ok(Action::await_change());
    }
    let name = lt.name_any();
    let ns = lt
        .namespace()
        .ok_or_else(|| Error::MissingField(name.clone(), "metadata.namespace"))?;
    let tests: Api<LoadTest> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(lt) = tests.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let Some(expr) = lt.spec.schedule.clone() else {
        return Ok(Action::await_change());
    };
    let old = lt.status.clone().unwrap_or_default();
    let cron = match parse_cron(&expr) {
        Ok(c) => c,
        Err(message) => {
            if old.message.as_deref() != Some(message.as_str()) {
                let status = LoadTestStatus {
                    message: Some(message),
                    ..old
                };
                patch_status(&tests, &lt, &status).await?;
            }
            return Ok(Action::await_change());
        }
    };
    let now = ctx.clock.now();
    let runs: Api<LoadTestRun> = Api::namespaced(ctx.client.clone(), &ns);
    let list = runs
        .list(&ListParams::default().labels(&format!("{LABEL_LOAD_TEST}={name}")))
        .await?;
    let mut active = Vec::new();
    let mut finished = Vec::new();
    let mut newest: Option<(Timestamp, String, Option<ricochet_crds::Verdict>)> = None;
    // The latest tick whose run exists, and that run: the status may not know it yet.
    let mut latest: Option<(Timestamp, String)> = None;
    for run in &list.items {
        let status = run.status.clone().unwrap_or_default();
        let run_name = run.name_any();
        if let Some(tick) = tick_of(&name, &run_name)
            && latest.as_ref().is_none_or(|l| tick > l.0)
        {
            latest = Some((tick, run_name.clone()));
        }
        match status.phase {
            Some(phase) if phase.is_finished() => {
                let at = status
                    .completion_time
                    .map(|t| t.0)
                    .unwrap_or(Timestamp::UNIX_EPOCH);
                if newest.as_ref().is_none_or(|n| at > n.0) {
                    newest = Some((at, run_name.clone(), status.verdict));
                }
                finished.push((run_name, phase == RunPhase::Passed, at));
            }
            _ => active.push(run_name),
        }
    }
    active.sort();
    let prune = beyond_history(
        &finished,
        lt.spec
            .successful_runs_history_limit
            .unwrap_or(DEFAULT_SUCCESSFUL_RUNS_HISTORY_LIMIT),
        lt.spec
            .failed_runs_history_limit
            .unwrap_or(DEFAULT_FAILED_RUNS_HISTORY_LIMIT),
    );
    for old_run in &prune {
        runs.delete(old_run, &DeleteParams::foreground()).await?;
    }
    let mut last_schedule_time = old.last_schedule_time.clone();
    let mut last_run = old.last_run.clone();
    if let Some((tick, _)) = &latest
        && last_schedule_time.as_ref().is_none_or(|t| t.0 < *tick)
    {
        last_schedule_time = Some(Time(*tick));
    }
    if let Some((tick, run)) = &latest {
        let known = last_run.as_deref().and_then(|r| tick_of(&name, r));
        if known.is_none_or(|k| k < *tick) {
            last_run = Some(run.clone());
        }
    }
    let last = last_schedule_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| lt.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let policy = lt.spec.concurrency_policy.unwrap_or_default();
    let decision = if lt.spec.suspend {
        Decision::Wait { next: None }
    } else {
        decide(&cron, now, last, policy, &active)
    };
    let mut status = LoadTestStatus {
        active: active.clone(),
        last_run,
        last_verdict: newest.as_ref().and_then(|n| n.2).or(old.last_verdict),
        last_schedule_time,
        message: None,
    };
    let next = match decision {
        Decision::Wait { next } => next,
        Decision::Skip { due, next } => {
            status.last_schedule_time = Some(Time(due));
            let blocking = active.join(", ");
            let note = format!(
                "skipped a tick: run {blocking} is still active (concurrencyPolicy Forbid)"
            );
            if let Some(blocker) = list.items.iter().find(|r| active.contains(&r.name_any())) {
                event(&lt, &ctx, EventType::Warning, "RunSkipped", note, blocker).await?;
            }
            status.message = Some(format!(
                "tick {due} skipped: run {blocking} is still active (concurrencyPolicy Forbid)"
            ));
            next
        }
        Decision::Create { due, replace, next } => {
            let run_name = run_name(&name, due);
            for old_run in replace.iter().filter(|r| **r != run_name) {
                runs.delete(old_run, &DeleteParams::foreground()).await?;
            }
            let run = scheduled_run(&lt, &run_name)?;
            match runs.create(&PostParams::default(), &run).await {
                Ok(created) => {
                    ctx.metrics.scheduled_runs.fetch_add(1, Ordering::Relaxed);
                    let note = format!("created run {run_name} for tick {due}");
                    event(&lt, &ctx, EventType::Normal, "RunCreated", note, &created).await?;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            status.active = vec![run_name.clone()];
            if policy == ConcurrencyPolicy::Allow {
                status.active = active.iter().cloned().chain([run_name.clone()]).collect();
            }
            status.last_run = Some(run_name);
            status.last_schedule_time = Some(Time(due));
            next
        }
    };
    if status != old {
        patch_status(&tests, &lt, &status).await?;
    }
    Ok(requeue_at(now, next))
}

/// Publishes an Event on the LoadTest about `run`, its `related` object. kube's Recorder
/// folds repeated Events by (type, reason, action, regarding, related) and keeps the first
/// one's note: with the run as `related`, an Event about another run is another Event, and
/// the note says nothing the fold could make wrong. See: #18.
async fn event(
    lt: &LoadTest,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: String,
    run: &LoadTestRun,
) -> Result<()> {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Schedule".into(),
        secondary: Some(run.object_ref(&())),
    };
    ctx.recorder.publish(&event, &lt.object_ref(&())).await?;
    Ok(())
}

/// Writes the LoadTest's status as the operator's field manager; absent fields are written
/// as null, so that an emptied `active` or `message` is cleared. See: #18.
async fn patch_status(tests: &Api<LoadTest>, lt: &LoadTest, status: &LoadTestStatus) -> Result<()> {
    let body = status_patch::<LoadTest>(status, lt.metadata.resource_version.as_deref())?;
    tests
        .patch_status(&lt.name_any(), &status_params(), &Patch::Merge(body))
        .await?;
    Ok(())
}

/// The run a tick creates: a reference to the LoadTest, owned by it, labelled with it; the
/// LoadTest's TTL travels as an annotation.
fn scheduled_run(lt: &LoadTest, run_name: &str) -> Result<LoadTestRun> {
    let owner = lt
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingField(lt.name_any(), "metadata.uid"))?;
    let mut annotations = std::collections::BTreeMap::new();
    if let Some(ttl) = lt
        .spec
        .cleanup
        .as_ref()
        .and_then(|c| c.ttl_seconds_after_finished)
    {
        annotations.insert(
            "ricochet.dev/ttl-seconds-after-finished".to_owned(),
            ttl.to_string(),
        );
    }
    Ok(LoadTestRun {
        metadata: ObjectMeta {
            name: Some(run_name.to_owned()),
            namespace: lt.namespace(),
            labels: Some(std::collections::BTreeMap::from([(
                LABEL_LOAD_TEST.to_owned(),
                lt.name_any(),
            )])),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: LoadTestRunSpec {
            load_test_ref: Some(LoadTestRef {
                name: lt.name_any(),
            }),
            spec: None,
            overrides: None,
        },
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_due_tick_creates_a_run_and_a_handled_tick_waits_for_the_next() {
        let cron = parse_cron("0 2 * * *").unwrap();
        let d = decide(
            &cron,
            ts("2026-11-21T02:00:30Z"),
            ts("2026-11-20T02:00:00Z"),
            ConcurrencyPolicy::Forbid,
            &[],
        );
        assert_eq!(
            d,
            Decision::Create {
                due: ts("2026-11-21T02:00:00Z"),
                replace: vec![],
                next: Some(ts("2026-11-22T02:00:00Z"))
            }
        );
        let d = decide(
            &cron,
            ts("2026-11-21T02:05:00Z"),
            ts("2026-11-21T02:00:00Z"),
            ConcurrencyPolicy::Forbid,
            &[],
        );
        assert_eq!(
            d,
            Decision::Wait {
                next: Some(ts("2026-11-22T02:00:00Z"))
            }
        );
    }

    #[test]
    fn forbid_skips_and_replace_replaces_an_active_run() {
        let cron = parse_cron("*/10 * * * *").unwrap();
        let (now, last) = (ts("2026-11-21T10:10:05Z"), ts("2026-11-21T10:00:00Z"));
        let active = vec!["nightly-1".to_owned()];
        assert!(matches!(
            decide(&cron, now, last, ConcurrencyPolicy::Forbid, &active),
            Decision::Skip { .. }
        ));
        assert!(matches!(
            decide(&cron, now, last, ConcurrencyPolicy::Replace, &active),
            Decision::Create { replace, .. } if replace == active
        ));
        assert!(matches!(
            decide(&cron, now, last, ConcurrencyPolicy::Allow, &active),
            Decision::Create { replace, .. } if replace.is_empty()
        ));
    }

    #[test]
    fn history_keeps_the_newest_runs_per_outcome() {
        let runs = vec![
            ("a".to_owned(), true, ts("2026-11-01T00:00:00Z")),
            ("b".to_owned(), true, ts("2026-11-02T00:00:00Z")),
            ("c".to_owned(), false, ts("2026-11-03T00:00:00Z")),
            ("d".to_owned(), false, ts("2026-11-04T00:00:00Z")),
            ("e".to_owned(), true, ts("2026-11-05T00:00:00Z")),
        ];
        assert_eq!(beyond_history(&runs, 2, 1), ["a", "c"]);
        assert!(beyond_history(&runs, 3, 2).is_empty());
    }

    #[test]
    fn a_cron_expression_with_seconds_or_garbage_is_refused_with_the_field() {
        let err = parse_cron("0 0 2 * * *").unwrap_err();
        assert!(
            err.starts_with("spec.schedule: `0 0 2 * * *` is not a 5-field"),
            "{err}"
        );
        let err = parse_cron("61 * * * *").unwrap_err();
        assert!(
            err.starts_with("spec.schedule: `61 * * * *` is not a valid"),
            "{err}"
        );
    }
}
