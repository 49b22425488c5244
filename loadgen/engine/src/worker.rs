//! The hot loop: one iteration = one request, measured from its intended instant.
//!
//! Arrival-rate scenarios are driven by a dispatcher task that waits for each intended
//! instant ([`Pacing`]) and spawns the iteration; when `maxInFlight` iterations are
//! already running the iteration is counted in `dropped_iterations` at once, never
//! delayed. VU scenarios run closed loops. Both stop scheduling when asked,
//! give in-flight iterations `gracefulStop`, then interrupt them (unrecorded, as k6).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, FailureKind, OwnedConn, Prepared, TraceIds, random_u64};
use crate::plan::ScenarioPlan;
use ricochet_verify::TraceId;
use ricochet_verify::sampler::{Completed, Sampler};

use crate::plan::telemetry::expected_spans;
use crate::schedule::{RateProfile, VuProfile, stage_at};
use crate::stats::{Measurement, Recorder, ScenarioKey, SeriesKey};

/// Everything an iteration of one scenario needs.
#[derive(Debug)]
pub struct ScenarioCtx {
    /// Index of the scenario in the plan.
    pub index: u16,
    /// The scenario.
    pub plan: ScenarioPlan,
    /// Its connection pool.
    pub client: Client,
    /// Its requests, prepared.
    pub requests: Vec<Prepared>,
    cumulative_weights: Vec<u64>,
    /// Where samples go.
    pub recorder: Arc<Recorder>,
    /// The scenario's start (run start + `startTime`).
    pub start: Instant,
    /// Interrupts in-flight iterations (after `gracefulStop`).
    pub hard_stop: CancellationToken,
    /// Chooses completed requests for telemetry verification, when it runs.
    pub sampler: Option<Arc<Sampler>>,
    scenario_name: Arc<str>,
    request_names: Vec<Arc<str>>,
    expected_spans: Vec<usize>,
}

impl ScenarioCtx {
    /// Bundles a scenario for running; `requests` are `plan.requests`, prepared.
    pub fn new(
        index: u16,
        plan: ScenarioPlan,
        client: Client,
        requests: Vec<Prepared>,
        recorder: Arc<Recorder>,
        start: Instant,
    ) -> Self {
        let mut acc = 0;
        let cumulative_weights = plan
            .requests
            .iter()
            .map(|r| {
                acc += u64::from(r.weight.get());
                acc
            })
            .collect();
        let scenario_name = Arc::from(plan.name.as_str());
        let request_names = plan
            .requests
            .iter()
            .map(|r| Arc::from(r.name.as_str()))
            .collect();
        let expected_spans = plan
            .requests
            .iter()
            .map(|r| expected_spans(&r.path_and_query))
            .collect();
        Self {
            index,
            plan,
            client,
            requests,
            cumulative_weights,
            recorder,
            start,
            hard_stop: CancellationToken::new(),
            sampler: None,
            scenario_name,
            request_names,
            expected_spans,
        }
    }

    fn pick(&self) -> usize {
        let total = self.cumulative_weights.last().copied().unwrap_or(0);
        if self.cumulative_weights.len() <= 1 || total == 0 {
            return 0;
        }
        let x = random_u64() % total;
        self.cumulative_weights.partition_point(|&c| c <= x)
    }

    /// Stage index + 1 in which `at` falls, 0 for executors without stages.
    pub fn phase_of(&self, at: Instant) -> u16 {
        stage_at(
            &self.plan.executor,
            at.saturating_duration_since(self.start),
        )
        .map_or(0, |i| u16::try_from(i + 1).unwrap_or(u16::MAX))
    }

    /// Runs one iteration intended at `scheduled` and records it (unless interrupted);
    /// over `conn` when the caller owns a connection, else over the pool.
    pub async fn iteration(&self, scheduled: Instant, conn: Option<&mut OwnedConn>) {
        let started = Instant::now();
        let idx = self.pick();
        let Some(req) = self.requests.get(idx) else {
            return;
        };
        let mut ids = TraceIds::fresh();
        ids.probe = self.sampler.as_ref().and_then(|s| s.probe_slot());
        let outcome = tokio::select! {
            biased;
            () = self.hard_stop.cancelled() => {
                let key = ScenarioKey { scenario: self.index, phase: self.phase_of(scheduled) };
                self.recorder.record_interrupted(key, Instant::now());
                return;
            }
            r = async {
                match conn {
                    Some(c) => self.client.send_owned(c, req, ids).await,
                    None => self.client.send_ids(req, ids).await,
                }
            } => r,
        };
        let key = |status| SeriesKey {
            scenario: self.index,
            request: u16::try_from(idx).unwrap_or(u16::MAX),
            status,
            phase: self.phase_of(scheduled),
        };
        let sample = match outcome {
            Ok(ex) => {
                self.recorder.note_response();
                if let Some(sampler) = &self.sampler {
                    sampler.offer(Completed {
                        scenario: &self.scenario_name,
                        request: &self.request_names[idx],
                        expected_spans: self.expected_spans[idx],
                        scheduled,
                        sent: ex.sent,
                        end: ex.end,
                        status: ex.status,
                        trace_id: TraceId(ex.ids.trace_id_bytes()),
                        request_id: ex.ids.request_id(),
                        parent_span_id: ex.ids.span_id,
                        probe: ex.ids.probe,
                        replica: ex.replica.as_ref(),
                    });
                }
                Measurement {
                    key: key(ex.status),
                    failed: ex.status >= 400,
                    stream: req.stream,
                    scheduled,
                    started,
                    sent: ex.sent,
                    first_byte: ex.first_byte,
                    end: ex.end,
                    bytes_sent: ex.bytes_sent,
                    bytes_received: ex.bytes_received,
                    connected: ex.connected,
                }
            }
            Err(f) => {
                if let FailureKind::Connect { detail, .. } = &f.kind {
                    self.recorder.note_connect_error(detail);
                }
                let cause = f.kind.cause();
                self.recorder.note_failure(cause, f.kind.detail());
                let sample = Measurement {
                    key: key(0),
                    failed: true,
                    stream: req.stream,
                    scheduled,
                    started,
                    sent: f.sent,
                    first_byte: f.end,
                    end: f.end,
                    bytes_sent: f.bytes_sent,
                    bytes_received: 0,
                    connected: None,
                };
                self.recorder.record_failure(&sample, cause);
                return;
            }
        };
        self.recorder.record(&sample);
    }
}

/// How an arrival-rate dispatcher waits for each arrival's intended instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// `spin`, unless the process runs under a CPU quota (cgroup `cpu.max` or
    /// `cpu.cfs_quota_us`), where polling would spend the quota: then `sleep`.
    Auto,
    /// Sleep until 2 ms before each arrival, then poll the clock between the runtime's
    /// other work: sub-millisecond schedule lag, paid for with the client core's idle
    /// time whenever arrivals are less than 2 ms apart.
    Spin,
    /// Only sleep on the runtime's timer: no CPU beyond the requests, but each arrival
    /// waits for the timer's millisecond tick and the OS's wake-up, several ms on a
    /// virtual machine.
    Sleep,
}

/// How long before an arrival `spin` pacing stops sleeping: a sleep's overshoot (timer
/// tick plus wake-up latency) must fit in it for the arrival to be on time.
pub const SPIN_WINDOW: Duration = Duration::from_millis(2);

impl Pacing {
    /// `Auto` decided for this process: `Spin` or `Sleep`.
    pub fn resolve(self) -> Self {
        match self {
            Self::Auto if cpu_quota_in_force() => Self::Sleep,
            Self::Auto => Self::Spin,
            other => other,
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Spin => "spin",
            Self::Sleep => "sleep",
        }
    }
}

/// Whether this process's cgroup limits its CPU time (v2 `cpu.max`, v1 `cpu.cfs_quota_us`).
fn cpu_quota_in_force() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    quota_in_force(
        read("/sys/fs/cgroup/cpu.max").as_deref(),
        [
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us",
        ]
        .iter()
        .filter_map(|p| read(p)),
    )
}

/// A quota from cgroup v2's `cpu.max` (`max 100000` = none, `50000 100000` = half a CPU)
/// or, without it, from v1's `cpu.cfs_quota_us` files (`-1` = none).
fn quota_in_force(v2_max: Option<&str>, v1_quotas: impl IntoIterator<Item = String>) -> bool {
    if let Some(max) = v2_max {
        return max.split_whitespace().next().is_some_and(|q| q != "max");
    }
    v1_quotas
        .into_iter()
        .any(|q| q.trim().parse::<i64>().is_ok_and(|q| q > 0))
}

/// Arrivals dispatched back to back (the dispatcher behind its schedule) before it lets
/// the runtime's other tasks run: the collector, signal handling, a current-thread runtime.
const YIELD_EVERY: u32 = 1024;

/// Runs an arrival-rate scenario until its profile ends or `stop` is cancelled, then
/// drains in-flight iterations for `gracefulStop`. The dispatcher is a task on the
/// runtime, so handing an iteration over is a local spawn, not a cross-thread wake-up.
/// `pacing` is as [`Pacing::resolve`] decided it once for the run (`Auto` paces as `Sleep`).
///
/// No arrival is sent after the scenario's end, whatever the rate: when the dispatcher has
/// fallen so far behind that the end has passed, the arrivals it has not reached are
/// counted in `dropped_iterations` at once (O(stages), not one by one) and it stops.
pub async fn run_arrivals(
    ctx: Arc<ScenarioCtx>,
    profile: RateProfile,
    stop: CancellationToken,
    pacing: Pacing,
) {
    let max_in_flight = ctx.plan.max_in_flight.get();
    let permits = Arc::new(Semaphore::new(
        usize::try_from(max_in_flight).unwrap_or(usize::MAX),
    ));
    let end = ctx.start.checked_add(profile.duration());
    let mut arrivals = profile.arrivals();
    let mut back_to_back = 0u32;
    while let Some(offset) = arrivals.next() {
        let Some(at) = ctx.start.checked_add(offset) else {
            break;
        };
        let Some(now) = wait_until(at, pacing, &stop).await else {
            break;
        };
        if end.is_some_and(|end| now >= end) {
            // Past the end: this arrival and every later one are not sent.
            let from = arrivals.yielded().saturating_sub(1);
            for (first, n) in profile.unsent(from) {
                let at = ctx.start.checked_add(first).unwrap_or(at);
                let key = ScenarioKey {
                    scenario: ctx.index,
                    phase: ctx.phase_of(at),
                };
                ctx.recorder.record_dropped_many(key, at, n);
            }
            break;
        }
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let _watch = PanicWatch(&ctx);
                    ctx.iteration(at, None).await;
                    drop(permit);
                });
            }
            Err(_) => ctx.recorder.record_dropped(
                ScenarioKey {
                    scenario: ctx.index,
                    phase: ctx.phase_of(at),
                },
                at,
            ),
        }
        // Behind schedule nothing above awaits: let the runtime breathe now and then.
        if now.saturating_duration_since(at) > SPIN_WINDOW {
            back_to_back += 1;
            if back_to_back >= YIELD_EVERY {
                back_to_back = 0;
                tokio::task::yield_now().await;
            }
        }
    }
    drain(&ctx, || permits.acquire_many(max_in_flight)).await;
}

/// Held by an iteration task: when the task panics, the runtime drops its future while
/// unwinding, and this notes the panic in the recorder, so the run ends as failed (exit
/// 3) with the cause in its summary instead of passing with a request missing. The
/// panic's message itself goes to stderr through the panic hook.
struct PanicWatch<'a>(&'a ScenarioCtx);

impl Drop for PanicWatch<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.recorder.note_panic(format!(
                "an iteration of scenario `{}` panicked (a bug in loadgen; its message is on stderr)",
                self.0.plan.name
            ));
        }
    }
}

/// The message of a panic's payload, when it is a string.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// Waits until `at` as `pacing` says: the clock's reading once `at` has come, `None` when
/// `stop` came first.
async fn wait_until(at: Instant, pacing: Pacing, stop: &CancellationToken) -> Option<Instant> {
    loop {
        if stop.is_cancelled() {
            return None;
        }
        let now = Instant::now();
        if now >= at {
            return Some(now);
        }
        let wake = match pacing {
            Pacing::Spin => at.checked_sub(SPIN_WINDOW).filter(|w| *w > now),
            _ => Some(at),
        };
        match wake {
            Some(w) => tokio::select! {
                () = tokio::time::sleep_until(w.into()) => {}
                () = stop.cancelled() => return None,
            },
            // Within the window: let the runtime run everything ready and poll I/O once,
            // then look at the clock again.
            None => tokio::task::yield_now().await,
        }
    }
}

/// Waits up to `gracefulStop` for `all_idle`, then interrupts what is left.
async fn drain<F, Fut, T>(ctx: &ScenarioCtx, all_idle: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
{
    if tokio::time::timeout(ctx.plan.graceful_stop, all_idle())
        .await
        .is_err()
    {
        ctx.hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), all_idle()).await;
    }
}

/// `start + d`, or a century from `start` where that instant cannot be represented.
fn far_end(start: Instant, d: Duration) -> Instant {
    start
        .checked_add(d)
        .or_else(|| start.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(start)
}

/// Runs a VU scenario: each active VU loops request after request until the profile ends
/// or `stop` is cancelled; then in-flight iterations get `gracefulStop`.
pub async fn run_vus(ctx: Arc<ScenarioCtx>, profile: VuProfile, stop: CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep_until(ctx.start.into()) => {}
        () = stop.cancelled() => return,
    }
    let end = far_end(ctx.start, profile.duration());
    let profile = Arc::new(profile);
    let mut set = JoinSet::new();
    // Each VU owns its connection when maxConnections allows it (no pool per request).
    let dedicated = ctx
        .client
        .can_dedicate(usize::try_from(profile.max_vus()).unwrap_or(usize::MAX));
    for vu in 0..profile.max_vus() {
        let ctx = ctx.clone();
        let profile = profile.clone();
        let stop = stop.clone();
        set.spawn(async move {
            let mut conn = dedicated.then(OwnedConn::default);
            loop {
                let now = Instant::now();
                if stop.is_cancelled() || ctx.hard_stop.is_cancelled() || now >= end {
                    break;
                }
                let active = profile.vus_at(now.saturating_duration_since(ctx.start).as_secs_f64());
                if vu >= active {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                        () = stop.cancelled() => break,
                    }
                    continue;
                }
                ctx.iteration(now, conn.as_mut()).await;
            }
        });
    }
    tokio::select! {
        () = tokio::time::sleep_until(end.into()) => {}
        () = stop.cancelled() => {}
    }
    let set = tokio::sync::Mutex::new(set);
    drain(&ctx, || async {
        let mut set = set.lock().await;
        while let Some(joined) = set.join_next().await {
            if let Err(e) = joined
                && e.is_panic()
            {
                ctx.recorder.note_panic(format!(
                    "a virtual user of scenario `{}` panicked: {}",
                    ctx.plan.name,
                    panic_message(&*e.into_panic())
                ));
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_cpu_quota_is_recognised_in_v2_and_v1_form() {
        let none: [String; 0] = [];
        assert!(!quota_in_force(Some("max 100000\n"), none.clone()));
        assert!(quota_in_force(Some("50000 100000\n"), none.clone()));
        assert!(!quota_in_force(None, ["-1\n".to_owned()]));
        assert!(quota_in_force(
            None,
            ["-1\n".to_owned(), "200000\n".to_owned()]
        ));
        assert!(!quota_in_force(None, none));
        // v2 wins when present: a v1 file is not looked at.
        assert!(!quota_in_force(Some("max 100000"), ["50000".to_owned()]));
    }

    fn ctx() -> Arc<ScenarioCtx> {
        let target = crate::client::Target::loopback(
            std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
            1,
            Duration::from_secs(1),
        );
        Arc::new(ScenarioCtx::new(
            0,
            crate::testing::scenario("api", 10.0, "/x"),
            Client::new(target),
            Vec::new(),
            Arc::new(Recorder::new(Instant::now())),
            Instant::now(),
        ))
    }

    #[tokio::test]
    async fn a_panicking_iteration_task_is_noted_for_the_summary() {
        // See: issue #15 (a panic in a spawned task must not pass unnoticed).
        let ctx = ctx();
        assert_eq!(ctx.recorder.panics(), None);
        let task = ctx.clone();
        let joined = tokio::spawn(async move {
            let _watch = PanicWatch(&task);
            tokio::task::yield_now().await;
            panic!("on purpose");
        })
        .await;
        assert!(joined.is_err_and(|e| e.is_panic()));
        let (n, what) = ctx.recorder.panics().expect("noted");
        assert_eq!(n, 1);
        assert_eq!(
            what,
            "an iteration of scenario `api` panicked (a bug in loadgen; its message is on stderr)"
        );
        // A task that ends normally, or is aborted, notes nothing.
        let task = ctx.clone();
        tokio::spawn(async move {
            let _watch = PanicWatch(&task);
        })
        .await
        .expect("ends");
        let task = ctx.clone();
        let aborted = tokio::spawn(async move {
            let _watch = PanicWatch(&task);
            std::future::pending::<()>().await;
        });
        aborted.abort();
        assert!(aborted.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(ctx.recorder.panics().map(|p| p.0), Some(1));
    }

    #[test]
    fn only_auto_is_decided_by_the_environment() {
        assert_eq!(Pacing::Spin.resolve(), Pacing::Spin);
        assert_eq!(Pacing::Sleep.resolve(), Pacing::Sleep);
        assert_ne!(Pacing::Auto.resolve(), Pacing::Auto);
    }
}
