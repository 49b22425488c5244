//! The hot loop: one iteration = one request, measured from its intended instant.
//!
//! Arrival-rate scenarios are driven by a dispatcher thread that sleeps precisely until
//! each intended instant and hands the iteration to the runtime; when `maxInFlight`
//! iterations are already running the iteration is counted in `dropped_iterations` at
//! once, never delayed. VU scenarios run closed loops. Both stop scheduling when asked,
//! give in-flight iterations `gracefulStop`, then interrupt them (unrecorded, as k6).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, FailureKind, OwnedConn, Prepared, random_u64};
use crate::plan::ScenarioPlan;
use crate::roundtrip::{Completed, Sampler, expected_spans};
use crate::schedule::{RateProfile, VuProfile, stage_at};
use crate::stats::{Recorder, Sample, ScenarioKey, SeriesKey};

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
        let idx = self.pick();
        let Some(req) = self.requests.get(idx) else {
            return;
        };
        let outcome = tokio::select! {
            biased;
            () = self.hard_stop.cancelled() => {
                let key = ScenarioKey { scenario: self.index, phase: self.phase_of(scheduled) };
                self.recorder.record_interrupted(key, Instant::now());
                return;
            }
            r = async {
                match conn {
                    Some(c) => self.client.send_owned(c, req).await,
                    None => self.client.send(req).await,
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
                        exchange: &ex,
                    });
                }
                Sample {
                    key: key(ex.status),
                    failed: ex.status >= 400,
                    stream: req.stream,
                    scheduled,
                    sent: ex.sent,
                    first_byte: ex.first_byte,
                    end: ex.end,
                    bytes_sent: ex.bytes_sent,
                    bytes_received: ex.bytes_received,
                }
            }
            Err(f) => {
                if let FailureKind::Connect(msg) = &f.kind {
                    self.recorder.note_connect_error(msg);
                }
                Sample {
                    key: key(0),
                    failed: true,
                    stream: req.stream,
                    scheduled,
                    sent: f.sent,
                    first_byte: f.end,
                    end: f.end,
                    bytes_sent: f.bytes_sent,
                    bytes_received: 0,
                }
            }
        };
        self.recorder.record(&sample);
    }
}

/// Runs an arrival-rate scenario until its profile ends or `stop` is cancelled, then
/// drains in-flight iterations for `gracefulStop`.
pub async fn run_arrivals(
    ctx: Arc<ScenarioCtx>,
    profile: RateProfile,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let max_in_flight = ctx.plan.max_in_flight.get();
    let permits = Arc::new(Semaphore::new(
        usize::try_from(max_in_flight).unwrap_or(usize::MAX),
    ));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::runtime::Handle::current();
    {
        let ctx = ctx.clone();
        let permits = permits.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("dispatch-{}", ctx.plan.name))
            .spawn(move || {
                dispatch(&ctx, &profile, &permits, &stop, &handle);
                let _ = done_tx.send(());
            })?;
    }
    let _ = done_rx.await;
    drain(&ctx, || permits.acquire_many(max_in_flight)).await;
    Ok(())
}

fn dispatch(
    ctx: &Arc<ScenarioCtx>,
    profile: &RateProfile,
    permits: &Arc<Semaphore>,
    stop: &CancellationToken,
    handle: &tokio::runtime::Handle,
) {
    // Sleeping at least SLICE between wakes batches arrivals at high rates (fewer thread
    // switches, one runtime unpark per batch) at the cost of < SLICE of schedule lag.
    const SLICE: Duration = Duration::from_micros(200);
    for offset in profile.arrivals() {
        let at = ctx.start + offset;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let now = Instant::now();
            if now >= at {
                break;
            }
            std::thread::sleep((at - now).clamp(SLICE, Duration::from_millis(20)));
        }
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let ctx = ctx.clone();
                handle.spawn(async move {
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

/// Runs a VU scenario: each active VU loops request after request until the profile ends
/// or `stop` is cancelled; then in-flight iterations get `gracefulStop`.
pub async fn run_vus(ctx: Arc<ScenarioCtx>, profile: VuProfile, stop: CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep_until(ctx.start.into()) => {}
        () = stop.cancelled() => return,
    }
    let end = ctx.start + profile.duration();
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
        while set.join_next().await.is_some() {}
    })
    .await;
}
