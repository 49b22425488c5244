//! `loadgen run`: starts the target (embedded) or probes it, runs every scenario in
//! parallel, collects once per tick, judges thresholds live (abortOnFail) and at the end,
//! and writes `summary.json` on every exit path once the run started.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use ricochet_reports::model::{
    ExporterCounts, ExporterSource, Outcome, RequestCount, Summary, Verdict,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::Exit;
use crate::accounting::{self, Accounting, EchoLedger, RunTotals};
use crate::aggregate::{Aggregator, ClosedWindow};
use crate::chaos::Admin;
use crate::client::{Client, Prepared, Target, TargetError};
use crate::embedded::{Embedded, EmbeddedOptions};
use crate::judge::{Evidence, PlatformEvidence, TelemetryEvidence};
use crate::live::Live;
use crate::plan::chaos::AdminPlan;
use crate::plan::{Plan, TargetPlan};
use crate::platform::Platform;
use crate::progress::{Notice, ProgressSink, Silent, Snapshot};
use crate::schedule::{RateProfile, VuProfile};
use crate::stats::{Recorder, Stats};
use crate::summary::{Reach, RunFacts, build, threshold_result};
use crate::telemetry::TelemetryJudge as _;
use crate::worker::{Pacing, ScenarioCtx, panic_message, run_arrivals, run_vus};
use ricochet_verify::RateLimiter;
use ricochet_verify::fate::ExportLedger;
use ricochet_verify::plan::SINK_CAPACITY;
use ricochet_verify::recent::Retention;
use ricochet_verify::sink::Sink;
use ricochet_verify::verification::{EmbeddedMetrics, Results, StartError, Verification};

/// How to run, beside the plan.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Directory for `summary.json`.
    pub out: Option<PathBuf>,
    /// Where progress and notices go.
    pub progress: Arc<dyn ProgressSink>,
    /// Collection interval (live thresholds, progress).
    pub tick: Duration,
    /// Keep each closed window of windowed thresholds ([`RunOutcome::windows`]); runners do,
    /// so that the operator judges windows on every runner's data.
    pub keep_windows: bool,
    /// How arrival-rate dispatchers wait for each arrival.
    pub pacing: Pacing,
    /// The `testid` label of the live outputs (default: the run's own id); the runners of
    /// a split run share their LoadTestRun's name.
    pub testid: Option<String>,
    /// This process's runner index in a split run (the live outputs' `runner` label).
    pub runner: Option<u32>,
    /// Sees the totals at every tick (the canary's `/metrics`).
    pub observer: Option<Arc<dyn Observer>>,
}

/// Sees a run's measurements while it goes.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// Called at every collection tick with the run's time so far, everything measured so
    /// far and the telemetry samples settled so far.
    fn tick(&self, elapsed: Duration, stats: &Stats, telemetry: Option<&Results>);
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            out: None,
            progress: Arc::new(Silent),
            tick: Duration::from_secs(1),
            keep_windows: false,
            pacing: Pacing::Auto,
            testid: None,
            runner: None,
            observer: None,
        }
    }
}

/// Why a run stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// SIGINT or SIGTERM.
    Interrupted,
    /// A threshold with `abortOnFail` failed.
    ThresholdAbort,
    /// The target could not be reached.
    TargetFailure,
    /// A task of the run failed (a panic: a bug in loadgen).
    Internal,
}

/// Stops a run from outside (signals) or inside (abortOnFail, target failure).
#[derive(Debug, Default)]
pub struct Stopper {
    /// Stop scheduling new iterations; in-flight ones get `gracefulStop`.
    pub token: CancellationToken,
    /// Interrupt in-flight iterations too.
    pub hard: CancellationToken,
    reason: Mutex<Option<(StopKind, String)>>,
}

impl Stopper {
    /// A stopper that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops scheduling; the first reason given is kept.
    pub fn stop(&self, kind: StopKind, reason: impl Into<String>) {
        let mut r = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if r.is_none() {
            *r = Some((kind, reason.into()));
        }
        self.token.cancel();
    }

    /// Why the run was stopped, if it was.
    pub fn reason(&self) -> Option<(StopKind, String)> {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The target URL is not usable.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The plan asks for more concurrent iterations than one process holds.
    #[error(
        "the scenarios ask for {asked} concurrent iterations ({detail}); one loadgen process holds at most {MAX_CONCURRENCY}: lower `maxInFlight` or `vus`, or split the load over runners with `parallelism`"
    )]
    Capacity {
        /// The sum of `maxInFlight` and peak VUs over the scenarios.
        asked: u64,
        /// Each scenario's part, e.g. `api: maxInFlight 4000000000`.
        detail: String,
    },
    /// The report directory cannot be written.
    #[error("cannot write reports into {dir}: {reason}")]
    Output {
        /// The directory.
        dir: PathBuf,
        /// Why, e.g. `permission denied`.
        reason: String,
    },
    /// Telemetry verification could not start (secret, CA file, URL).
    #[error(transparent)]
    Verify(StartError),
    /// The query checks or alert drills could not start (a secret, the receiver's port).
    #[error(transparent)]
    Platform(#[from] crate::platform::PlatformError),
    /// A live output could not start (a secret, its configuration).
    #[error(transparent)]
    Live(#[from] crate::live::LiveError),
    /// The admin token (for `spec.chaos`) could not be read.
    #[error("cannot read the admin token that spec.chaos needs: {0}")]
    Secret(ricochet_verify::VerifyError),
    /// A request could not be built.
    #[error("scenario `{scenario}`, request `{request}`: {source}")]
    Request {
        /// Scenario name.
        scenario: String,
        /// Request name.
        request: String,
        /// What was wrong.
        source: http::Error,
    },
}

impl RunError {
    /// The exit code: invalid input for what the plan should have rejected, a failed run
    /// otherwise.
    pub fn exit(&self) -> Exit {
        match self {
            RunError::Target(
                TargetError::Scheme { .. } | TargetError::NoHost { .. } | TargetError::Port { .. },
            )
            | RunError::Capacity { .. }
            | RunError::Output { .. }
            | RunError::Request { .. }
            | RunError::Verify(_)
            | RunError::Platform(crate::platform::PlatformError::Backend(_))
            | RunError::Live(_)
            | RunError::Secret(_) => Exit::InvalidInput,
            _ => Exit::RunFailed,
        }
    }
}

/// A finished (or failed) run.
#[derive(Debug)]
pub struct RunOutcome {
    /// The summary, as written to `summary.json`.
    pub summary: Summary,
    /// How the run ended, as the process exit code.
    pub exit: Exit,
    /// A one-sentence error for stderr (target failure, write failure), if any.
    pub message: Option<String>,
    /// Where `summary.json` was written.
    pub written: Option<PathBuf>,
    /// Every measurement of the run, merged exactly (for merging runs across runners).
    pub stats: Stats,
    /// Run time, seconds (0 when the run did not start).
    pub elapsed_secs: f64,
    /// The telemetry verification's results (tallies, for merging across runners).
    pub telemetry: Option<Results>,
    /// What the query checks and alert drills saw, when the plan has them.
    pub platform: Option<crate::platform::Observed>,
    /// Closed windows of windowed thresholds, when [`RunOptions::keep_windows`].
    pub windows: Vec<ClosedWindow>,
}

/// Most iterations one process runs at once, summed over its scenarios: each
/// arrival-rate scenario's `maxInFlight` and each VU scenario's peak VUs. Every one is a
/// task and may hold a connection with its read buffer (8 KiB), so this bounds what a run
/// can allocate (a few hundred MiB to about 1 GiB at the limit) before it starts; more
/// load is split over runners (`parallelism`).
pub const MAX_CONCURRENCY: u64 = 100_000;

/// Runs `plan`. Errors are returned only when the run could not start (before anything
/// was started: invalid input, a target URL that cannot be used); once it has started,
/// every outcome is a [`RunOutcome`] and `summary.json` is written, with the cause in
/// `run.stopReason` when the run failed: target unreachable, the embedded echo-server or
/// OTLP sink failing to start, an interrupt, a panic in any of its tasks.
pub async fn execute(
    plan: &Plan,
    opts: &RunOptions,
    stopper: Arc<Stopper>,
) -> Result<RunOutcome, RunError> {
    let started_at = SystemTime::now();
    check_capacity(plan)?;
    if let Some(dir) = &opts.out {
        check_writable(dir)?;
    }
    // The run is a task of its own, so a panic anywhere in it (a bug) still ends in a
    // summary with the cause rather than in a process without one.
    let body = AbortOnDropHandle::new(tokio::spawn({
        let (plan, opts, stopper) = (plan.clone(), opts.clone(), stopper.clone());
        async move { run(&plan, &opts, stopper, started_at).await }
    }));
    match body.await {
        Ok(outcome) => outcome,
        Err(e) => {
            let cause = if e.is_panic() {
                format!(
                    "loadgen panicked during the run: {}",
                    panic_message(&*e.into_panic())
                )
            } else {
                "the run's task was cancelled".to_owned()
            };
            stopper.stop(StopKind::Internal, cause.clone());
            stopper.hard.cancel();
            let target = match &plan.target {
                TargetPlan::Url(u) => u.base.to_string(),
                TargetPlan::Embedded => "embedded".to_owned(),
            };
            Ok(failed_report(
                plan,
                opts,
                Unfinished {
                    started_at,
                    target: &target,
                    embedded: plan.target == TargetPlan::Embedded,
                    why: "the run did not finish",
                },
                cause,
            ))
        }
    }
}

/// Refuses a plan whose concurrency would exceed [`MAX_CONCURRENCY`].
fn check_capacity(plan: &Plan) -> Result<(), RunError> {
    let parts: Vec<(String, u64)> = plan
        .scenarios
        .iter()
        .map(|sc| match VuProfile::of(&sc.executor) {
            Some(v) => (
                format!("{}: vus {}", sc.name, v.max_vus()),
                u64::from(v.max_vus()),
            ),
            None => (
                format!("{}: maxInFlight {}", sc.name, sc.max_in_flight),
                u64::from(sc.max_in_flight.get()),
            ),
        })
        .collect();
    let asked = parts.iter().fold(0u64, |a, (_, n)| a.saturating_add(*n));
    if asked <= MAX_CONCURRENCY {
        return Ok(());
    }
    let detail = parts
        .into_iter()
        .map(|(d, _)| d)
        .collect::<Vec<_>>()
        .join(", ");
    Err(RunError::Capacity { asked, detail })
}

/// Creates `dir` and writes (then removes) a probe file in it, so that a run whose reports
/// could not be written is refused before it starts, not after.
fn check_writable(dir: &Path) -> Result<(), RunError> {
    let fail = |e: std::io::Error| RunError::Output {
        dir: dir.to_owned(),
        reason: crate::h1::describe_io(&e),
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".loadgen-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(fail)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The body of [`execute`], run as a task.
async fn run(
    plan: &Plan,
    opts: &RunOptions,
    stopper: Arc<Stopper>,
    started_at: SystemTime,
) -> Result<RunOutcome, RunError> {
    let telemetry = plan.telemetry.as_ref();
    let embedded_target = plan.target == TargetPlan::Embedded;
    let unstarted = |target: &str, message: String| {
        failed_report(
            plan,
            opts,
            Unfinished {
                started_at,
                target,
                embedded: embedded_target,
                why: "the run did not start",
            },
            message,
        )
    };
    let sink = match telemetry {
        Some(t) if t.uses_sink() && embedded_target => {
            let limits = Retention {
                capacity: SINK_CAPACITY,
                retention: t.poll.retention(),
            };
            match Sink::start(limits).await {
                Ok(s) => Some(s),
                Err(e) => return Ok(unstarted("embedded", e.to_string())),
            }
        }
        _ => None,
    };
    let (target, embedded) = match &plan.target {
        TargetPlan::Embedded => {
            let opts = EmbeddedOptions {
                otlp_grpc: sink.as_ref().map(Sink::grpc_endpoint),
                admin: !plan.chaos.events.is_empty(),
                listen: plan.embedded_listen,
            };
            match Embedded::start(&opts).await {
                Ok(e) => {
                    let t = Target::loopback(e.addr(), 256, crate::plan::DEFAULT_TIMEOUT);
                    (t, Some(e))
                }
                Err(e) => {
                    stop_started(None, sink).await;
                    return Ok(unstarted("embedded", e.to_string()));
                }
            }
        }
        TargetPlan::Url(u) => match Target::resolve(u).await {
            Ok(t) => (t, None),
            Err(e @ TargetError::Resolve { .. }) => {
                stop_started(None, sink).await;
                let url = u.base.to_string();
                return Ok(unstarted(&url, e.to_string()));
            }
            Err(e) => {
                stop_started(None, sink).await;
                return Err(e.into());
            }
        },
    };
    if let Err(e) = target.probe().await {
        stop_started(embedded, sink).await;
        return Ok(unstarted(&target.url, e.to_string()));
    }
    // Every request names the run, so the echo-server accounts for it alone.
    let run_id = accounting::run_id(&plan.name, None);
    let tag = telemetry.map(|_| run_id.as_str());
    let prepared = match prepare_requests(plan, &target, tag) {
        Ok(p) => p,
        Err(e) => {
            stop_started(embedded, sink).await;
            return Err(e);
        }
    };

    let admin = match (&plan.chaos.admin, &embedded) {
        (None, _) => None,
        (Some(AdminPlan::Embedded), Some(e)) => e
            .admin()
            .map(|(addr, token)| Admin::new(format!("http://{addr}"), token)),
        (Some(AdminPlan::Embedded), None) => None,
        (Some(AdminPlan::Remote { url, token }), _) => match token.read() {
            Ok(t) => Some(Admin::new(url.clone(), t)),
            Err(e) => {
                stop_started(embedded, sink).await;
                return Err(RunError::Secret(e));
            }
        },
    };
    let accounting = match telemetry {
        Some(_) => {
            match Accounting::discover(&replica_urls(plan, &target.url), run_id.clone()).await {
                Ok(a) => Some(Arc::new(a)),
                Err(reason) => {
                    opts.progress.notice(&Notice::Exporter(reason));
                    None
                }
            }
        }
        None => None,
    };
    let verify_cancel = CancellationToken::new();
    let verification = match telemetry {
        Some(t) => match Verification::start(
            t,
            sink.as_ref(),
            sink.as_ref()
                .and(embedded.as_ref())
                .map(|e| EmbeddedMetrics { addr: e.addr() }),
            accounting
                .clone()
                .map(|a| Arc::new(EchoLedger(a)) as Arc<dyn ExportLedger>),
            verify_cancel.clone(),
        ) {
            Ok(v) => Some(v),
            Err(e) => {
                stop_started(embedded, sink).await;
                return Err(RunError::Verify(e));
            }
        },
        None => None,
    };

    let requests_before = match &verification {
        Some(v) => v.requests_total().await,
        None => None,
    };
    let run_start = Instant::now();
    let limiter = match &verification {
        Some(v) => v.limiter(),
        None => RateLimiter::unlimited(),
    };
    let platform = match Platform::start(plan, limiter, run_start).await {
        Ok(p) => p,
        Err(e) => {
            verify_cancel.cancel();
            stop_started(embedded, sink).await;
            return Err(e.into());
        }
    };
    let testid = opts.testid.clone().unwrap_or_else(|| run_id.clone());
    let mut live = match Live::start(plan, &testid, opts.runner) {
        Ok(l) => l,
        Err(e) => {
            verify_cancel.cancel();
            stop_started(embedded, sink).await;
            return Err(e.into());
        }
    };
    let chaos_stop = CancellationToken::new();
    let chaos_task = admin.map(|a| {
        tokio::spawn(crate::chaos::drive(
            plan.chaos.events.clone(),
            a,
            run_start,
            chaos_stop.clone(),
        ))
    });
    let recorder = Arc::new(Recorder::new(run_start));
    let pacing = opts.pacing.resolve();
    let mut set = JoinSet::new();
    let mut rate_profiles = Vec::new();
    for ((i, sc), reqs) in plan.scenarios.iter().enumerate().zip(prepared) {
        let mut ctx = ScenarioCtx::new(
            u16::try_from(i).unwrap_or(u16::MAX),
            sc.clone(),
            Client::new(target.clone()),
            reqs,
            recorder.clone(),
            run_start + sc.start_time,
        );
        ctx.hard_stop = stopper.hard.child_token();
        ctx.sampler = verification.as_ref().map(Verification::sampler);
        let ctx = Arc::new(ctx);
        let stop = stopper.token.clone();
        if let Some(p) = RateProfile::of(&sc.executor) {
            rate_profiles.push((sc.start_time.as_secs_f64(), p.clone()));
            set.spawn(run_arrivals(ctx, p, stop, pacing));
        } else if let Some(v) = VuProfile::of(&sc.executor) {
            set.spawn(run_vus(ctx, v, stop));
        }
    }

    let mut agg = Aggregator::new(plan);
    if opts.keep_windows {
        agg.keep_window_stats();
    }
    let progress = &opts.progress;
    let tick = opts.tick.max(Duration::from_millis(50));
    let mut ticker = tokio::time::interval_at((run_start + tick).into(), tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = (run_start, 0u64);
    let mut infra_error: Option<String> = None;
    loop {
        tokio::select! {
            joined = set.join_next() => match joined {
                None => break,
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    let msg = if e.is_panic() {
                        format!("a scenario's dispatcher panicked: {}", panic_message(&*e.into_panic()))
                    } else {
                        format!("a scenario task failed: {e}")
                    };
                    infra_error.get_or_insert(msg.clone());
                    stopper.stop(StopKind::Internal, msg);
                }
            },
            _ = ticker.tick() => {
                let now = Instant::now();
                let elapsed = now.saturating_duration_since(run_start);
                let sec = u32::try_from(elapsed.as_secs()).unwrap_or(u32::MAX);
                agg.absorb(recorder.drain(), sec.saturating_sub(1));
                let tallies = verification.as_ref().map(Verification::snapshot);
                check_aborts(plan, &agg, tallies.as_ref(), platform.as_ref(), elapsed, &stopper);
                if let Some(o) = &opts.observer {
                    o.tick(elapsed, &agg.totals, tallies.as_ref());
                }
                if let Some(l) = live.as_mut() {
                    let judged = || judged_so_far(plan, &agg, tallies.as_ref(), platform.as_ref(), elapsed);
                    l.tick(plan, &agg.totals, tallies.as_ref(), judged);
                }
                if let Some((_, first)) = recorder.panics() {
                    stopper.stop(StopKind::Internal, first);
                }
                let (responses, connect_errors, first) = recorder.reachability();
                if responses == 0 && (connect_errors >= 20 || (connect_errors > 0 && elapsed >= Duration::from_secs(3))) {
                    stopper.stop(
                        StopKind::TargetFailure,
                        format!("cannot reach target {}: {}", target.url, first.unwrap_or_default()),
                    );
                }
                let (requests, errors, dropped) = agg.counts();
                let dt = now.saturating_duration_since(last.0).as_secs_f64().max(1e-3);
                let t = elapsed.as_secs_f64();
                let planned: f64 = rate_profiles.iter().map(|(start, p)| p.planned_between(t - 1.0 - start, t - start)).sum();
                progress.update(&Snapshot {
                    elapsed,
                    planned: plan.duration(),
                    requests,
                    achieved_rps: requests.saturating_sub(last.1) as f64 / dt,
                    target_rps: (!rate_profiles.is_empty()).then_some(planned),
                    errors,
                    dropped,
                    p99_ms: agg.p99_so_far(),
                });
                last = (now, requests);
            }
        }
    }
    progress.finish();
    let elapsed = run_start.elapsed();
    agg.absorb(recorder.drain(), 0);
    let last_sec = u32::try_from(elapsed.as_secs_f64().ceil() as u64)
        .unwrap_or(u32::MAX)
        .saturating_sub(1);
    agg.finish(last_sec);
    chaos_stop.cancel();
    let (chaos_events, chaos_errors) = match chaos_task {
        Some(t) => t.await.unwrap_or_default(),
        None => Default::default(),
    };
    for e in chaos_errors {
        progress.notice(&Notice::Chaos(e));
    }
    let platform_stop = CancellationToken::new();
    let (verified, observed) = tokio::join!(
        async {
            match &verification {
                Some(v) => Some(settle(v, &stopper, &verify_cancel, progress.as_ref()).await),
                None => None,
            }
        },
        async {
            let p = platform?;
            // A load cut short (Ctrl-C, abortOnFail, the target gone) ended its faults
            // early: their alerts' deadlines no longer mean anything, so no waiting.
            if stopper.reason().is_some() {
                platform_stop.cancel();
            }
            if !platform_stop.is_cancelled()
                && let Some(end) = plan.platform.alerts.as_ref().map(|a| a.last_deadline())
                && let Some(left) = end.checked_sub(run_start.elapsed())
            {
                progress.notice(&Notice::WatchingAlerts { at_most: left });
            }
            let stop_on_interrupt = async {
                interrupted(&stopper).await;
                platform_stop.cancel();
                std::future::pending::<()>().await
            };
            tokio::select! {
                r = p.finish(&platform_stop) => Some(r),
                () = stop_on_interrupt => None,
            }
        }
    );
    let exporter = match &accounting {
        Some(a) => Some(a.settled_totals(Duration::from_secs(2)).await),
        None => None,
    };
    if let Some(t) = &exporter {
        for reason in &t.unread {
            progress.notice(&Notice::Exporter(reason.clone()));
        }
    }
    let requests_after = match (&verification, &requests_before) {
        (Some(v), Some(_)) => v.requests_total().await,
        _ => None,
    };
    stop_started(embedded, sink).await;

    let secs = elapsed.as_secs_f64();
    let evidence = Evidence {
        platform: match &observed {
            Some((o, _)) => PlatformEvidence::Observed(o),
            None => PlatformEvidence::Unavailable(
                "the plan has no `queries` or `alerts`, so no platform check ran",
            ),
        },
        ..agg.evidence(
            secs,
            verified
                .as_ref()
                .map_or(TelemetryEvidence::NotVerified, TelemetryEvidence::Verified),
        )
    };
    let mut results: Vec<_> = plan
        .thresholds
        .iter()
        .enumerate()
        .map(|(i, th)| threshold_result(th, evidence.judge_threshold(i)))
        .collect();
    if let Some(v) = &verified {
        results.extend(v.class_results());
    }
    if let Some((o, _)) = &observed {
        results.extend(o.expectation_results());
    }
    let any_failed = results.iter().any(|r| r.verdict != Verdict::Pass);
    let reach = Reach::of(&agg.totals);
    let stop = stopper.reason();
    let mut message = None;
    if let Some((n, first)) = recorder.panics() {
        let more = if n > 1 {
            format!(" ({} more tasks panicked)", n - 1)
        } else {
            String::new()
        };
        infra_error.get_or_insert(format!("{first}{more}"));
    }
    // A run that measured nothing never passes (DESIGN.md): requests sent and none
    // answered, whatever stopped the run or the thresholds say; or none sent at all.
    let no_answer = reach.no_answer(&target.url, target.timeout(), |c| recorder.first_failure(c));
    let (outcome, exit) = if let Some(e) = infra_error {
        message = Some(e);
        (Outcome::Error, Exit::RunFailed)
    } else if let Some(sentence) = no_answer {
        message = Some(sentence);
        (Outcome::Error, Exit::RunFailed)
    } else {
        match &stop {
            Some((StopKind::TargetFailure, reason)) => {
                message = Some(reason.clone());
                (Outcome::Error, Exit::RunFailed)
            }
            Some((StopKind::Interrupted | StopKind::Internal, reason)) => {
                message = Some(reason.clone());
                (Outcome::Error, Exit::RunFailed)
            }
            _ => match reach.nothing_sent(elapsed.as_secs_f64()) {
                Some(sentence) => {
                    message = Some(sentence);
                    (Outcome::Error, Exit::RunFailed)
                }
                None if any_failed => (Outcome::Failed, Exit::ThresholdFailed),
                None => (Outcome::Passed, Exit::Passed),
            },
        }
    };
    let facts = RunFacts {
        target: target.url.clone(),
        embedded: plan.target == TargetPlan::Embedded,
        started_at,
        ended_at: SystemTime::now(),
        duration_secs: secs,
        outcome,
        exit,
        stop_reason: match (&outcome, stop) {
            // The cause of a failed run, not what stopping it was called.
            (Outcome::Error, _) => message.clone(),
            (_, stop) => stop.map(|s| s.1),
        },
        pacing: (!rate_profiles.is_empty()).then_some(pacing),
    };
    let mut summary = build(plan, &facts, &agg, results);
    if let Some(v) = &verified {
        let mut t = v.summary();
        if let Some(e) = &exporter {
            (t.exporter, t.exporter_source) = exporter_counts(e);
        }
        t.recovery_secs = storm_window(plan).and_then(|(s, e)| v.recovery_secs(s, e));
        if let (Some((b, _)), Some((a, source))) = (&requests_before, requests_after) {
            t.requests = Some(RequestCount {
                sent: recorder.reachability().0,
                counted: a - b,
                source,
            });
        }
        summary.telemetry = Some(t);
    }
    summary.chaos = chaos_events;
    summary.platform = observed.as_ref().map(|(o, backends)| o.summary(backends));
    if let Some(l) = live {
        summary.outputs = l
            .finish(plan, &agg.totals, verified.as_ref(), &summary)
            .await;
        for o in &summary.outputs {
            if o.batches_failed + o.batches_dropped > 0 {
                progress.notice(&Notice::Output(format!(
                    "{}: {} batches pushed, {} failed, {} dropped{}",
                    o.target,
                    o.batches_sent,
                    o.batches_failed,
                    o.batches_dropped,
                    o.first_error
                        .as_deref()
                        .map_or_else(String::new, |e| format!(" (first: {e})"))
                )));
            }
        }
    }
    let mut report = finish_report(summary, exit, message, opts.out.as_deref());
    report.stats = agg.totals.clone();
    report.elapsed_secs = secs;
    report.telemetry = verified;
    report.platform = observed.map(|(o, _)| o);
    report.windows = agg.closed_windows().to_vec();
    Ok(report)
}

/// Where the replicas' run accounting is read: `spec.target.replicas`, else the target.
fn replica_urls(plan: &Plan, target: &str) -> Vec<String> {
    match &plan.target {
        TargetPlan::Url(u) if !u.replicas.is_empty() => {
            u.replicas.iter().map(ToString::to_string).collect()
        }
        _ => vec![target.to_owned()],
    }
}

/// The run's exporter counts, summed over the replicas read, as the summary shows them,
/// and where they were read. No counts when no replica could be read: zeros would read
/// as "nothing emitted".
fn exporter_counts(t: &RunTotals) -> (Vec<ExporterCounts>, Option<ExporterSource>) {
    let a = &t.total;
    let counts = if t.replicas.is_empty() {
        Vec::new()
    } else {
        [("spans", &a.spans), ("logs", &a.logs)]
            .into_iter()
            .map(|(signal, x)| ExporterCounts {
                signal: signal.into(),
                emitted: x.emitted,
                accepted: x.accepted,
                refused: x.refused,
                dropped: x.dropped,
                injected: x.chaos_dropped,
            })
            .collect()
    };
    let source = ExporterSource {
        replicas: t.replicas.clone(),
        unread: t.unread.clone(),
        partial: t.partial,
        requests: a.requests,
        chaos_dropped_requests: a.chaos_dropped_requests,
    };
    (counts, Some(source))
}

/// Waits for the sampled requests' telemetry to settle. An interrupt (Ctrl-C, SIGTERM)
/// during the wait, or one that already stopped the run, settles what is pending as
/// unknown at once.
async fn settle(
    v: &Verification,
    stopper: &Stopper,
    cancel: &CancellationToken,
    progress: &dyn ProgressSink,
) -> Results {
    if matches!(stopper.reason(), Some((StopKind::Interrupted, _))) {
        cancel.cancel();
    }
    if !cancel.is_cancelled() {
        progress.notice(&Notice::Settling {
            settle_timeout: v.settle_timeout(),
        });
    }
    tokio::select! {
        r = v.finish() => r,
        () = interrupted(stopper) => {
            cancel.cancel();
            v.finish().await
        }
    }
}

/// Resolves when the user interrupts what follows the load: a first stop if the load
/// ended on its own, a second (hard) stop if the load was already stopped.
async fn interrupted(stopper: &Stopper) {
    if stopper.token.is_cancelled() {
        stopper.hard.cancelled().await;
    } else {
        stopper.token.cancelled().await;
    }
}

/// The `storm` phase (a stage named `storm`) of the plan, for the recovery time.
fn storm_window(plan: &Plan) -> Option<(Duration, Duration)> {
    plan.phases()
        .into_iter()
        .find(|(_, phase)| phase.name == "storm")
        .map(|(_, p)| (p.start, p.end))
}

/// What the run measured so far, handed to `f` as the thresholds' evidence: the
/// aggregates, the live telemetry tallies and the platform checks, when given.
fn with_live_evidence<R>(
    agg: &Aggregator,
    live: Option<&Results>,
    platform: Option<&Platform>,
    elapsed: Duration,
    f: impl FnOnce(&Evidence<'_>) -> R,
) -> R {
    let observed = platform.map(Platform::observed);
    let evidence = Evidence {
        platform: match &observed {
            Some(o) => PlatformEvidence::Observed(o),
            None => PlatformEvidence::Unavailable("no platform check observations yet"),
        },
        ..agg.evidence(
            elapsed.as_secs_f64(),
            live.map_or(TelemetryEvidence::NotVerified, TelemetryEvidence::Verified),
        )
    };
    f(&evidence)
}

/// Every threshold judged on what the run measured so far (live outputs).
fn judged_so_far(
    plan: &Plan,
    agg: &Aggregator,
    live: Option<&Results>,
    platform: Option<&Platform>,
    elapsed: Duration,
) -> Vec<ricochet_reports::model::ThresholdResult> {
    with_live_evidence(agg, live, platform, elapsed, |evidence| {
        plan.thresholds
            .iter()
            .enumerate()
            .map(|(i, th)| threshold_result(th, evidence.judge_threshold(i)))
            .collect()
    })
}

/// Judges `abortOnFail` thresholds past their `delayAbortEval`.
fn check_aborts(
    plan: &Plan,
    agg: &Aggregator,
    live: Option<&Results>,
    platform: Option<&Platform>,
    elapsed: Duration,
    stopper: &Stopper,
) {
    let platform = platform.filter(|_| {
        plan.thresholds
            .iter()
            .any(|t| t.abort_on_fail && t.metric.is_platform())
    });
    with_live_evidence(agg, live, platform, elapsed, |evidence| {
        abort_on(plan, evidence, elapsed, stopper);
    });
}

/// Stops the run on the first `abortOnFail` threshold that `evidence` fails.
fn abort_on(plan: &Plan, evidence: &Evidence<'_>, elapsed: Duration, stopper: &Stopper) {
    for (i, th) in plan.thresholds.iter().enumerate() {
        if !th.abort_on_fail || elapsed < th.delay_abort_eval || stopper.token.is_cancelled() {
            continue;
        }
        if evidence.judge_threshold(i).verdict == Verdict::Fail {
            stopper.stop(
                StopKind::ThresholdAbort,
                format!(
                    "threshold `{}: {}` failed at {:.1}s; run aborted (abortOnFail)",
                    th.key,
                    th.expression,
                    elapsed.as_secs_f64()
                ),
            );
        }
    }
}

/// Stops the embedded echo-server and OTLP sink, when they were started.
async fn stop_started(embedded: Option<Embedded>, sink: Option<Sink>) {
    if let Some(e) = embedded {
        e.stop().await;
    }
    if let Some(s) = sink {
        s.shutdown().await;
    }
}

/// Every scenario's requests, prepared for `target`.
fn prepare_requests(
    plan: &Plan,
    target: &Target,
    run_id: Option<&str>,
) -> Result<Vec<Vec<Prepared>>, RunError> {
    let run = run_id.and_then(|id| http::HeaderValue::from_str(id).ok());
    let mut prepared = Vec::with_capacity(plan.scenarios.len());
    for sc in &plan.scenarios {
        let mut reqs = Vec::with_capacity(sc.requests.len());
        for r in &sc.requests {
            let mut r = r.clone();
            if let Some(v) = &run {
                r.headers.insert(
                    http::HeaderName::from_static(accounting::RUN_HEADER),
                    v.clone(),
                );
            }
            reqs.push(target.prepare(&r).map_err(|source| RunError::Request {
                scenario: sc.name.clone(),
                request: r.name.clone(),
                source,
            })?);
        }
        prepared.push(reqs);
    }
    Ok(prepared)
}

/// How far a run got that has no measurements to report.
struct Unfinished<'a> {
    started_at: SystemTime,
    target: &'a str,
    embedded: bool,
    /// The start of each threshold's reason, e.g. `the run did not start`.
    why: &'a str,
}

/// The report of a run that did not start (target unreachable, embedded echo-server or
/// sink failing) or did not finish (a panic): every threshold unknown with the cause,
/// the cause as the stop reason, exit 3.
fn failed_report(
    plan: &Plan,
    opts: &RunOptions,
    run: Unfinished<'_>,
    message: String,
) -> RunOutcome {
    let mut agg = Aggregator::new(plan);
    agg.finish(0);
    let results = plan
        .thresholds
        .iter()
        .map(|th| {
            threshold_result(
                th,
                crate::evaluate::Judgement {
                    observed: None,
                    verdict: Verdict::Unknown,
                    reason: Some(format!("{}: {message}", run.why)),
                },
            )
        })
        .collect();
    let ended_at = SystemTime::now();
    let facts = RunFacts {
        target: run.target.trim_end_matches('/').to_owned(),
        embedded: run.embedded,
        started_at: run.started_at,
        ended_at,
        duration_secs: ended_at
            .duration_since(run.started_at)
            .map_or(0.0, |d| d.as_secs_f64()),
        outcome: Outcome::Error,
        exit: Exit::RunFailed,
        stop_reason: Some(message.clone()),
        pacing: None,
    };
    let mut summary = build(plan, &facts, &agg, results);
    summary.time_series.clear();
    for s in &mut summary.scenarios {
        s.time_series.clear();
    }
    finish_report(summary, Exit::RunFailed, Some(message), opts.out.as_deref())
}

fn finish_report(
    summary: Summary,
    mut exit: Exit,
    mut message: Option<String>,
    out: Option<&Path>,
) -> RunOutcome {
    let mut written = None;
    if let Some(dir) = out {
        match write_summary(&summary, dir) {
            Ok(p) => written = Some(p),
            Err(e) => {
                message = Some(match message {
                    Some(m) => format!("{m}; {e}"),
                    None => e,
                });
                exit = Exit::RunFailed;
            }
        }
    }
    RunOutcome {
        summary,
        exit,
        message,
        written,
        stats: Stats::default(),
        elapsed_secs: 0.0,
        telemetry: None,
        platform: None,
        windows: Vec::new(),
    }
}

/// Writes `dir/summary.json` and the other reports (`report.md`, `report.html`,
/// `junit.xml`), creating `dir`; returns the path of `summary.json`.
pub fn write_summary(summary: &Summary, dir: &Path) -> Result<PathBuf, String> {
    let written = ricochet_reports::write_all(summary, dir).map_err(|e| e.to_string())?;
    Ok(written
        .into_iter()
        .next()
        .unwrap_or_else(|| dir.join("summary.json")))
}

#[cfg(test)]
mod tests {
    use echo_server::contract::{RunAccount, RunExports};

    use super::*;

    #[test]
    fn exporter_counts_keep_chaos_apart_from_queue_drops_and_say_where_they_were_read() {
        let spans = RunExports {
            emitted: 100,
            accepted: 90,
            refused: 2,
            dropped: 3,
            chaos_dropped: 5,
        };
        let totals = RunTotals {
            total: RunAccount {
                spans,
                ..RunAccount::default()
            },
            replicas: vec!["echo-0".into()],
            unread: vec![
                "cannot read the run accounting at http://10.0.0.2:8080/runs/r: refused".into(),
            ],
            partial: true,
        };
        let (counts, source) = exporter_counts(&totals);
        assert_eq!(
            counts[0],
            ExporterCounts {
                signal: "spans".into(),
                emitted: 100,
                accepted: 90,
                refused: 2,
                dropped: 3,
                injected: 5,
            }
        );
        assert_eq!(counts[0].injected_fraction(), Some(0.05));
        let source = source.expect("source");
        assert_eq!(source.replicas, ["echo-0"]);
        assert!(source.partial && source.unread.len() == 1);
        // No replica read: no counts (zeros would read as nothing emitted), only why.
        let (counts, source) = exporter_counts(&RunTotals {
            unread: vec!["no answer".into()],
            ..RunTotals::default()
        });
        assert!(counts.is_empty());
        assert_eq!(source.expect("source").unread, ["no answer"]);
    }
}
