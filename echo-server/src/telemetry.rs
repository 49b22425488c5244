//! Spans and OTLP logs: building them per request, queueing them without blocking the
//! request, exporting them in batches on a background task, and keeping count of what the
//! exporter confirmed (`exported`), what it refused (`failed`) and what never reached it
//! (`dropped`: queue full or already shut down). Items of tracked runs are marked in their
//! batch and settled in the [`Ledger`] when the batch gets its final answer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{Batching, OtlpConfig, TelemetryConfig};
use crate::error::{Error, Result};
use crate::ledger::{Ledger, Mark, RunKey};
use crate::otlp::encode::{self, Envelope, LogRecord, SpanRecord, SpanShape, StormSpan};
use crate::otlp::transport::{Signal, Transport};

/// How many confirmed trace ids `/healthz` keeps.
pub const RECENT_TRACE_IDS: usize = 100;

/// Counters of one export pipeline (spans or logs).
#[derive(Debug, Default)]
pub struct ExportStats {
    exported: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    last_failed: AtomicBool,
    last_error: Mutex<Option<String>>,
    recent: Mutex<VecDeque<TraceId>>,
}

/// A copy of [`ExportStats`] for reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportSnapshot {
    /// Items the exporter confirmed.
    pub exported: u64,
    /// Items in export calls that returned an error.
    pub failed: u64,
    /// Items discarded before any export attempt (queue full, shut down).
    pub dropped: u64,
    /// Whether the latest export call failed.
    pub degraded: bool,
    /// The latest export error, if any.
    pub last_error: Option<String>,
}

impl ExportStats {
    fn confirm(&self, n: usize, ids: impl IntoIterator<Item = TraceId>) {
        self.exported.fetch_add(n as u64, Ordering::Relaxed);
        self.last_failed.store(false, Ordering::Relaxed);
        let mut recent = lock(&self.recent);
        for id in ids {
            if recent.back() == Some(&id) {
                continue;
            }
            if recent.len() == RECENT_TRACE_IDS {
                recent.pop_front();
            }
            recent.push_back(id);
        }
    }

    fn fail(&self, n: usize, error: String) {
        self.failed.fetch_add(n as u64, Ordering::Relaxed);
        self.last_failed.store(true, Ordering::Relaxed);
        *lock(&self.last_error) = Some(error);
    }

    fn drop_many(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Current values.
    pub fn snapshot(&self) -> ExportSnapshot {
        ExportSnapshot {
            exported: self.exported.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            degraded: self.last_failed.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
        }
    }

    /// Trace ids of server spans the exporter confirmed, oldest first (at most 100).
    pub fn recent_trace_ids(&self) -> Vec<String> {
        lock(&self.recent).iter().map(|t| t.to_string()).collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The identity of a server span, known when the request starts.
#[derive(Debug, Clone)]
pub struct SpanStart {
    /// Trace id (the caller's, or new).
    pub trace_id: TraceId,
    /// This span's id.
    pub span_id: SpanId,
    /// The caller's span id; `SpanId::INVALID` for a new root.
    pub parent_span_id: SpanId,
    /// Flags sent back in `traceparent`.
    pub flags: TraceFlags,
    /// The caller's `tracestate`.
    pub trace_state: TraceState,
    /// Start time.
    pub start: SystemTime,
}

impl SpanStart {
    /// The W3C `traceparent` header value of this span (always `Some`: lowercase hex and
    /// dashes are valid header bytes).
    pub fn traceparent(&self) -> Option<http::HeaderValue> {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        crate::hex_id(&self.trace_id.to_bytes(), &mut out[3..35]);
        out[35] = b'-';
        crate::hex_id(&self.span_id.to_bytes(), &mut out[36..52]);
        out[52] = b'-';
        crate::hex_id(&[self.flags.to_u8()], &mut out[53..55]);
        http::HeaderValue::from_bytes(&out).ok()
    }

    /// A `/storm` child of this span, ready to encode.
    pub fn child<'a>(&'a self, c: &StormSpan) -> SpanRecord<'a> {
        SpanRecord {
            trace_id: self.trace_id,
            span_id: c.span_id,
            parent_span_id: c.parent_span_id,
            flags: self.flags,
            trace_state: &self.trace_state,
            start: c.start,
            end: c.end,
            shape: SpanShape::Storm {
                branch: c.branch,
                level: c.level,
            },
        }
    }

    /// Span context of this span.
    pub fn context(&self) -> SpanContext {
        SpanContext::new(
            self.trace_id,
            self.span_id,
            self.flags,
            false,
            self.trace_state.clone(),
        )
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The W3C `traceparent` header (a constant: no name parsing per lookup); part of the
/// [`crate::contract`] with loadgen.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// The caller's span context from `traceparent`/`tracestate`, when present and valid.
pub fn extract_parent(headers: &HeaderMap) -> Option<SpanContext> {
    if !headers.contains_key(TRACEPARENT) {
        return None;
    }
    let cx = TraceContextPropagator::new().extract_with_context(&Context::new(), &Headers(headers));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// `tenant.id` (or `tenant_id`, `tenant`) from W3C `baggage`.
pub fn tenant_from_baggage(headers: &HeaderMap) -> Option<String> {
    use opentelemetry::baggage::BaggageExt;
    if !headers.contains_key("baggage") {
        return None;
    }
    let cx = BaggagePropagator::new().extract_with_context(&Context::new(), &Headers(headers));
    let b = cx.baggage();
    ["tenant.id", "tenant_id", "tenant"]
        .iter()
        .find_map(|k| b.get(*k).map(|v| v.as_str().to_owned()))
}

enum Ctl {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<Result<(), String>>),
}

struct Worker {
    signal: &'static str,
    ctl: mpsc::UnboundedSender<Ctl>,
    handle: JoinHandle<()>,
}

/// Encoded items (spans or log records) waiting for export, in batches of at most
/// `max_batch` items.
#[derive(Default)]
struct Pending {
    batches: Vec<Batch>,
    items: usize,
    /// The largest batch taken so far, in bytes: the capacity a new batch starts with, so
    /// that it does not grow (and copy itself) while it fills.
    batch_bytes: usize,
    closed: bool,
}

/// One export request in the making: its items encoded after `head_room` free bytes, where
/// the export task writes the request's head, so that the items are never copied.
struct Batch {
    bytes: Vec<u8>,
    items: usize,
    /// Trace ids of the server spans in the batch, confirmed when it is exported.
    confirms: Vec<TraceId>,
    /// The run and trace of the tracked items, settled when the batch is answered.
    marks: Vec<Mark>,
}

/// The layout of a queue's batches.
#[derive(Debug, Clone, Copy)]
struct BatchShape {
    max_items: usize,
    head_room: usize,
}

/// A bounded queue the request path encodes into under a short lock and the export task
/// empties on its tick (one swap of buffers, no wake-up per item), or sooner when the
/// queue reaches half its capacity (one wake-up per crossing), so that a burst or a late
/// tick does not fill it.
struct Queue {
    pending: Mutex<Pending>,
    capacity: usize,
    shape: BatchShape,
    half_full: tokio::sync::Notify,
}

/// Appends to a locked [`Queue`].
struct Appender<'a> {
    pending: &'a mut Pending,
    queue: &'a Queue,
    refused: u64,
    reached_half: bool,
}

impl Appender<'_> {
    /// Encodes one item with `encode`, unless the queue is full or closed; `mark` names
    /// the run and trace of a tracked item.
    fn item(
        &mut self,
        confirms: Option<TraceId>,
        mark: Option<(RunKey, TraceId)>,
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        let (p, q) = (&mut *self.pending, self.queue);
        if p.closed || p.items >= q.capacity {
            self.refused += 1;
            return;
        }
        if p.batches
            .last()
            .is_none_or(|b| b.items == q.shape.max_items)
        {
            let mut bytes = Vec::with_capacity(p.batch_bytes.max(q.shape.head_room + 4096));
            bytes.resize(q.shape.head_room, 0);
            p.batches.push(Batch {
                bytes,
                items: 0,
                confirms: Vec::new(),
                marks: Vec::new(),
            });
        }
        let Some(batch) = p.batches.last_mut() else {
            return;
        };
        encode(&mut batch.bytes);
        batch.items += 1;
        batch.confirms.extend(confirms);
        if let Some((run, trace)) = mark {
            match batch.marks.last_mut() {
                Some(m) if m.run == run && m.trace == trace => m.items += 1,
                _ => batch.marks.push(Mark {
                    run,
                    trace,
                    items: 1,
                }),
            }
        }
        p.items += 1;
        self.reached_half |= p.items == q.capacity.div_ceil(2);
    }
}

impl Queue {
    fn new(capacity: usize, shape: BatchShape) -> Self {
        Self {
            pending: Mutex::new(Pending::default()),
            capacity: capacity.max(1),
            shape: BatchShape {
                max_items: shape.max_items.max(1),
                ..shape
            },
            half_full: tokio::sync::Notify::new(),
        }
    }

    /// Appends items under one lock; returns how many did not fit. Wakes the export task
    /// when the queue reached half its capacity.
    fn append(&self, f: impl FnOnce(&mut Appender<'_>)) -> u64 {
        let (refused, reached_half) = {
            let mut pending = lock(&self.pending);
            let mut a = Appender {
                pending: &mut pending,
                queue: self,
                refused: 0,
                reached_half: false,
            };
            f(&mut a);
            (a.refused, a.reached_half)
        };
        if reached_half {
            self.half_full.notify_one();
        }
        refused
    }

    /// Moves every batch queued into `out` (which must be empty; its capacity is kept).
    fn take(&self, out: &mut Vec<Batch>) {
        let mut p = lock(&self.pending);
        std::mem::swap(&mut p.batches, out);
        p.items = 0;
        let largest = out.iter().map(|b| b.bytes.len()).max().unwrap_or(0);
        p.batch_bytes = p.batch_bytes.max(largest);
    }

    fn close(&self) {
        lock(&self.pending).closed = true;
    }
}

/// Telemetry of the server: span/log construction and the export pipelines.
pub struct Telemetry {
    enabled: bool,
    ids: RandomIdGenerator,
    spans: Option<Arc<Queue>>,
    logs: Option<Arc<Queue>>,
    span_stats: Arc<ExportStats>,
    log_stats: Arc<ExportStats>,
    chaos_dropped: AtomicU64,
    otlp: Option<OtlpConfig>,
    batching: [Batching; 2],
    workers: Mutex<Vec<Worker>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("enabled", &self.enabled)
            .field("otlp", &self.otlp)
            .finish()
    }
}

/// What `/healthz` reports about telemetry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExporterHealth {
    /// `ok`, `degraded` (exports failing) or `disabled` (no exporter).
    pub state: String,
    /// OTLP endpoint.
    pub endpoint: Option<String>,
    /// OTLP protocol.
    pub protocol: Option<String>,
    /// Span export counters (exported, failed, dropped).
    #[serde(flatten)]
    pub spans: ExportSnapshot,
    /// Log export counters.
    pub logs: ExportSnapshot,
    /// Requests whose span and log chaos dropped on purpose.
    pub chaos_dropped: u64,
    /// The span pipeline's batching (`OTEL_BSP_*`).
    #[serde(default)]
    pub traces_batching: BatchingHealth,
    /// The log pipeline's batching (`OTEL_BLRP_*`).
    #[serde(default)]
    pub logs_batching: BatchingHealth,
}

/// The batching one pipeline runs with, as `/healthz` shows it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchingHealth {
    /// Milliseconds between exports.
    pub schedule_delay_ms: u64,
    /// Most items per export call.
    pub max_export_batch_size: u64,
    /// Items held before new ones are dropped.
    pub max_queue_size: u64,
    /// Bound of one export in milliseconds, retries included (0: no limit).
    pub export_timeout_ms: u64,
}

impl From<Batching> for BatchingHealth {
    fn from(b: Batching) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            schedule_delay_ms: ms(b.schedule_delay),
            max_export_batch_size: b.max_export_batch_size as u64,
            max_queue_size: b.max_queue_size as u64,
            export_timeout_ms: ms(b.export_timeout),
        }
    }
}

fn resource(service_name: &str, attrs: &[(String, String)]) -> Resource {
    Resource::builder_empty()
        .with_service_name(service_name.to_owned())
        .with_attributes(
            attrs
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_attribute(KeyValue::new("telemetry.sdk.language", "rust"))
        .with_attribute(KeyValue::new("telemetry.sdk.name", "opentelemetry"))
        .build()
}

/// The instrumentation scope of every span and log record.
fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("echo-server")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

impl Telemetry {
    /// Sets up telemetry; with an OTLP endpoint, spawns the export tasks (call inside a
    /// Tokio runtime), which settle tracked items in `ledger`.
    pub fn new(service_name: &str, config: &TelemetryConfig, ledger: Arc<Ledger>) -> Result<Self> {
        let span_stats = Arc::new(ExportStats::default());
        let log_stats = Arc::new(ExportStats::default());
        let mut workers = Vec::new();
        let (mut spans, mut logs) = (None, None);
        if let (true, Some(otlp)) = (config.enabled, &config.otlp) {
            let envelope = Arc::new(Envelope::new(
                &resource(service_name, &config.resource_attributes),
                &scope(),
            ));
            let pipeline = |signal, stats: &Arc<ExportStats>| -> Result<(Worker, Arc<Queue>)> {
                let b = config.batching(signal);
                let settings = Settings {
                    signal,
                    transport: Transport::new(otlp, signal, no_limit_if_zero(b.export_timeout))?,
                    envelope: envelope.clone(),
                    // A zero delay exports on every tick of the millisecond timer.
                    interval: b.schedule_delay.max(Duration::from_millis(1)),
                    ledger: ledger.clone(),
                };
                let queue = Arc::new(Queue::new(
                    b.max_queue_size,
                    BatchShape {
                        max_items: b.max_export_batch_size,
                        head_room: settings.head_room(),
                    },
                ));
                Ok((spawn(signal, settings, queue.clone(), stats.clone()), queue))
            };
            let (worker, queue) = pipeline(Signal::Traces, &span_stats)?;
            workers.push(worker);
            spans = Some(queue);
            let (worker, queue) = pipeline(Signal::Logs, &log_stats)?;
            workers.push(worker);
            logs = Some(queue);
        }
        Ok(Self {
            enabled: config.enabled,
            ids: RandomIdGenerator::default(),
            spans,
            logs,
            span_stats,
            log_stats,
            chaos_dropped: AtomicU64::new(0),
            otlp: config.otlp.clone().filter(|_| config.enabled),
            batching: [
                config.batching(Signal::Traces),
                config.batching(Signal::Logs),
            ],
            workers: Mutex::new(workers),
        })
    }

    /// Whether spans and logs are made at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Span counters (for `/healthz`).
    pub fn span_stats(&self) -> &ExportStats {
        &self.span_stats
    }

    /// Starts the server span of a request: continues a valid `traceparent`, else a new
    /// root. `None` when telemetry is off.
    pub fn start_server_span(&self, headers: &HeaderMap, start: SystemTime) -> Option<SpanStart> {
        if !self.enabled {
            return None;
        }
        let span_id = self.ids.new_span_id();
        Some(match extract_parent(headers) {
            Some(parent) => SpanStart {
                trace_id: parent.trace_id(),
                span_id,
                parent_span_id: parent.span_id(),
                flags: parent.trace_flags(),
                trace_state: parent.trace_state().clone(),
                start,
            },
            None => SpanStart {
                trace_id: self.ids.new_trace_id(),
                span_id,
                parent_span_id: SpanId::INVALID,
                flags: TraceFlags::SAMPLED,
                trace_state: TraceState::NONE,
                start,
            },
        })
    }

    /// A new random span id.
    pub fn new_span_id(&self) -> SpanId {
        self.ids.new_span_id()
    }

    /// Encodes finished spans into the export queue (each one that does not fit is
    /// dropped and counted); server spans are confirmed by trace id, the spans of a
    /// tracked `run` marked for settling. Returns how many were dropped.
    pub fn emit_spans<'a>(
        &self,
        spans: impl IntoIterator<Item = SpanRecord<'a>>,
        run: Option<RunKey>,
    ) -> u64 {
        let Some(q) = &self.spans else {
            return 0;
        };
        let refused = q.append(|a| {
            for s in spans {
                let confirms = matches!(s.shape, SpanShape::Server(_)).then_some(s.trace_id);
                let mark = run.map(|r| (r, s.trace_id));
                a.item(confirms, mark, |buf| encode::span_item(buf, &s));
            }
        });
        self.span_stats.drop_many(refused);
        refused
    }

    /// Whether finished spans go anywhere.
    pub fn exporting(&self) -> bool {
        self.spans.is_some()
    }

    /// Encodes an OTLP log record into the export queue (skipped when nothing exports
    /// logs), marked for settling when its request is of a tracked `run`. Returns 1 when it
    /// was dropped.
    pub fn emit_log(&self, record: &LogRecord<'_>, run: Option<RunKey>) -> u64 {
        let Some(q) = &self.logs else {
            return 0;
        };
        let mark = run.map(|r| (r, record.trace_id));
        let refused = q.append(|a| a.item(None, mark, |buf| encode::log_item(buf, record)));
        self.log_stats.drop_many(refused);
        refused
    }

    /// Counts a request whose telemetry chaos dropped.
    pub fn count_chaos_drop(&self) {
        self.chaos_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The exporter's state and counters, as `/healthz` shows them.
    pub fn health(&self) -> ExporterHealth {
        let spans = self.span_stats.snapshot();
        let logs = self.log_stats.snapshot();
        let state = match (&self.otlp, spans.degraded || logs.degraded) {
            (None, _) => "disabled",
            (Some(_), true) => "degraded",
            (Some(_), false) => "ok",
        };
        ExporterHealth {
            state: state.to_owned(),
            endpoint: self.otlp.as_ref().map(|o| o.endpoint.clone()),
            protocol: self.otlp.as_ref().map(|o| o.protocol.to_string()),
            spans,
            logs,
            chaos_dropped: self.chaos_dropped.load(Ordering::Relaxed),
            traces_batching: self.batching[0].into(),
            logs_batching: self.batching[1].into(),
        }
    }

    /// How long a flush may take at most: twice the longer export timeout (every batch
    /// queued gets one), saturating when a timeout is unlimited.
    pub fn drain_timeout(&self) -> Duration {
        let longest = self.batching[0]
            .export_timeout
            .max(self.batching[1].export_timeout);
        no_limit_if_zero(longest)
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(1))
    }

    /// Exports everything queued so far (bounded by `timeout`).
    pub async fn flush(&self, timeout: Duration) {
        let waits: Vec<_> = {
            let workers = lock(&self.workers);
            workers
                .iter()
                .filter_map(|w| {
                    let (tx, rx) = oneshot::channel();
                    w.ctl.send(Ctl::Flush(tx)).ok().map(|_| rx)
                })
                .collect()
        };
        for rx in waits {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }

    /// Flushes and shuts down the trace pipeline, then the log pipeline; every failure is
    /// reported, including exports that failed or were dropped earlier in the run.
    pub async fn shutdown(&self, timeout: Duration) -> Result<()> {
        let workers = std::mem::take(&mut *lock(&self.workers));
        let mut failures = Vec::new();
        for w in workers {
            let (tx, rx) = oneshot::channel();
            if w.ctl.send(Ctl::Shutdown(tx)).is_err() {
                failures.push(format!("{} exporter task had already stopped", w.signal));
                continue;
            }
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => failures.push(format!("{} export: {e}", w.signal)),
                Ok(Err(_)) => failures.push(format!(
                    "{} exporter task ended without answering",
                    w.signal
                )),
                Err(_) => {
                    w.handle.abort();
                    failures.push(format!(
                        "{} flush did not finish within {timeout:?}",
                        w.signal
                    ));
                }
            }
        }
        for (signal, stats) in [("traces", &self.span_stats), ("logs", &self.log_stats)] {
            let snap = stats.snapshot();
            if snap.failed + snap.dropped > 0 {
                failures.push(format!(
                    "{signal}: {} items failed to export and {} were dropped during the run (last error: {})",
                    snap.failed,
                    snap.dropped,
                    snap.last_error.as_deref().unwrap_or("none")
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::TelemetryShutdown(failures))
        }
    }
}

/// An export timeout of zero is no limit, as the OpenTelemetry specification has it.
fn no_limit_if_zero(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        Duration::MAX
    } else {
        timeout
    }
}

/// How one export task sends.
struct Settings {
    signal: Signal,
    transport: Transport,
    envelope: Arc<Envelope>,
    interval: Duration,
    ledger: Arc<Ledger>,
}

impl Settings {
    /// Free bytes each batch keeps before its items: the request's head and the
    /// transport's prefix.
    fn head_room(&self) -> usize {
        self.transport.prefix_len() + self.envelope.head_room()
    }
}

fn spawn(signal: Signal, settings: Settings, queue: Arc<Queue>, stats: Arc<ExportStats>) -> Worker {
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(export_task(settings, queue, stats, ctl_rx));
    Worker {
        signal: signal.as_str(),
        ctl,
        handle,
    }
}

/// Exports `batches` one request each and empties it; the error of the last failed
/// batch, if any.
async fn export_batches(
    s: &Settings,
    stats: &ExportStats,
    batches: &mut Vec<Batch>,
) -> Result<(), String> {
    let mut last = Ok(());
    for mut batch in batches.drain(..) {
        let start = s.envelope.wrap(&mut batch.bytes, s.head_room()) - s.transport.prefix_len();
        match s.transport.export(batch.bytes, start).await {
            Ok(()) => {
                s.ledger.settle(s.signal, &batch.marks, Ok(()));
                stats.confirm(batch.items, batch.confirms);
            }
            Err(e) => {
                let e = e.to_string();
                s.ledger.settle(s.signal, &batch.marks, Err(&e));
                stats.fail(batch.items, e.clone());
                last = Err(e);
            }
        }
    }
    last
}

async fn export_task(
    s: Settings,
    queue: Arc<Queue>,
    stats: Arc<ExportStats>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
) {
    let mut pending = Vec::new();
    let mut tick = tokio::time::interval(s.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The task wakes on its tick, when the queue is half full, and on control messages,
    // never per item: a wake-up per request costs more than the export itself at high rates.
    loop {
        tokio::select! {
            _ = tick.tick() => {
                queue.take(&mut pending);
                let _ = export_batches(&s, &stats, &mut pending).await;
            }
            () = queue.half_full.notified() => {
                queue.take(&mut pending);
                let _ = export_batches(&s, &stats, &mut pending).await;
            }
            cmd = ctl.recv() => {
                if matches!(cmd, Some(Ctl::Shutdown(_)) | None) {
                    queue.close();
                }
                queue.take(&mut pending);
                let last = export_batches(&s, &stats, &mut pending).await;
                match cmd {
                    Some(Ctl::Flush(done)) => { let _ = done.send(()); }
                    Some(Ctl::Shutdown(done)) => {
                        let _ = done.send(last);
                        return;
                    }
                    None => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn traceparent_renders_w3c() {
        let s = SpanStart {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            parent_span_id: SpanId::INVALID,
            flags: TraceFlags::SAMPLED,
            trace_state: TraceState::NONE,
            start: SystemTime::now(),
        };
        assert_eq!(
            s.traceparent().unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn valid_traceparent_is_continued() {
        let h = headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]);
        let p = extract_parent(&h).unwrap();
        assert_eq!(p.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let h = headers(&[("traceparent", bad)]);
            assert!(extract_parent(&h).is_none(), "{bad}");
        }
    }

    #[test]
    fn tenant_comes_from_baggage() {
        let h = headers(&[("baggage", "tenant.id=team-alpha,other=1")]);
        assert_eq!(tenant_from_baggage(&h).as_deref(), Some("team-alpha"));
    }

    #[test]
    fn a_queue_signals_once_when_it_reaches_half_its_capacity() {
        let q = Queue::new(
            5,
            BatchShape {
                max_items: 2,
                head_room: 3,
            },
        );
        let push = |n: usize| q.append(|a| (0..n).for_each(|_| a.item(None, None, |b| b.push(1))));
        let signalled = || {
            let waiter = q.half_full.notified();
            tokio::pin!(waiter);
            waiter.as_mut().enable()
        };
        assert_eq!(push(2), 0);
        assert!(!signalled(), "2 of 5 is below half");
        assert_eq!(push(1), 0);
        assert!(signalled(), "3 of 5 reached half");
        assert_eq!(push(3), 1, "the sixth item does not fit");
        assert!(!signalled(), "no second signal past half");
        q.take(&mut Vec::new());
        assert_eq!(push(3), 0);
        assert!(signalled(), "emptied, then half again");
    }

    #[test]
    fn a_queue_fills_batches_of_at_most_max_items_after_their_head_room() {
        let q = Queue::new(
            10,
            BatchShape {
                max_items: 2,
                head_room: 3,
            },
        );
        q.append(|a| {
            for i in 1..=5u8 {
                let confirms = (i % 2 == 1).then(|| TraceId::from(u128::from(i)));
                a.item(confirms, None, |b| b.extend_from_slice(&[i; 2]));
            }
        });
        let mut batches = Vec::new();
        q.take(&mut batches);
        let got: Vec<_> = batches
            .iter()
            .map(|b| (b.items, b.bytes.clone(), b.confirms.clone()))
            .collect();
        let id = |i: u128| TraceId::from(i);
        assert_eq!(
            got,
            [
                (2, vec![0, 0, 0, 1, 1, 2, 2], vec![id(1)]),
                (2, vec![0, 0, 0, 3, 3, 4, 4], vec![id(3)]),
                (1, vec![0, 0, 0, 5, 5], vec![id(5)]),
            ]
        );
        assert_eq!(
            q.append(|a| a.item(None, None, |b| b.push(6))),
            0,
            "taking freed the room"
        );
    }

    #[test]
    fn tracked_items_are_marked_by_run_and_trace_in_each_batch_they_land_in() {
        let ledger = Ledger::new("r");
        let mut h = HeaderMap::new();
        h.insert(crate::contract::RUN_HEADER, "run-1".parse().unwrap());
        let run = ledger.track(&h).unwrap().key;
        let q = Queue::new(
            10,
            BatchShape {
                max_items: 3,
                head_room: 0,
            },
        );
        let (one, two) = (TraceId::from(1u128), TraceId::from(2u128));
        q.append(|a| {
            for _ in 0..4 {
                a.item(None, Some((run, one)), |b| b.push(1));
            }
            a.item(None, None, |b| b.push(0));
            a.item(None, Some((run, two)), |b| b.push(2));
        });
        let mut batches = Vec::new();
        q.take(&mut batches);
        let mark = |trace, items| Mark { run, trace, items };
        let got: Vec<_> = batches.iter().map(|b| b.marks.clone()).collect();
        assert_eq!(
            got,
            [vec![mark(one, 3)], vec![mark(one, 1), mark(two, 1)]],
            "the trace split over two batches is marked in both; the untracked item is not"
        );
    }

    #[test]
    fn recent_ids_keep_the_last_hundred() {
        let s = ExportStats::default();
        s.confirm(150, (1..=150u128).map(TraceId::from));
        let ids = s.recent_trace_ids();
        assert_eq!(ids.len(), RECENT_TRACE_IDS);
        assert_eq!(ids[0], TraceId::from(51u128).to_string());
    }
}
