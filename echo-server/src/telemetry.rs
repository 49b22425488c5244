//! Spans and OTLP logs: building them per request, queueing them without blocking the
//! request, exporting them in batches on a background task, and keeping count of what the
//! exporter confirmed (`exported`), what it refused (`failed`) and what never reached it
//! (`dropped`: queue full or already shut down).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogRecord, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanData, SpanExporter};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{OtlpConfig, OtlpProtocol, TelemetryConfig};
use crate::error::{Error, Result};

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
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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

    fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
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

/// A [`SpanExporter`] wrapper that records, from the inner exporter's result, which trace
/// ids were really exported and how many spans failed.
#[derive(Debug)]
pub struct ConfirmingExporter<E> {
    inner: E,
    stats: Arc<ExportStats>,
}

impl<E> ConfirmingExporter<E> {
    /// Wraps `inner`, counting into `stats`.
    pub fn new(inner: E, stats: Arc<ExportStats>) -> Self {
        Self { inner, stats }
    }
}

impl<E: SpanExporter> SpanExporter for ConfirmingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let ids: Vec<TraceId> = batch
            .iter()
            .filter(|s| s.span_kind == SpanKind::Server)
            .map(|s| s.span_context.trace_id())
            .collect();
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.stats.confirm(n, ids),
            Err(e) => self.stats.fail(n, e.to_string()),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
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
    /// The W3C `traceparent` value of this span.
    pub fn traceparent(&self) -> String {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        crate::hex_id(&self.trace_id.to_bytes(), &mut out[3..35]);
        out[35] = b'-';
        crate::hex_id(&self.span_id.to_bytes(), &mut out[36..52]);
        out[52] = b'-';
        crate::hex_id(&[self.flags.to_u8()], &mut out[53..55]);
        String::from_utf8_lossy(&out).into_owned()
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

/// The caller's span context from `traceparent`/`tracestate`, when present and valid.
pub fn extract_parent(headers: &HeaderMap) -> Option<SpanContext> {
    if !headers.contains_key("traceparent") {
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

/// Telemetry of the server: span/log construction and the export pipelines.
pub struct Telemetry {
    enabled: bool,
    ids: RandomIdGenerator,
    spans: Option<mpsc::Sender<SpanData>>,
    logs: Option<mpsc::Sender<SdkLogRecord>>,
    logger: SdkLogger,
    _provider: SdkLoggerProvider,
    scope: InstrumentationScope,
    span_stats: Arc<ExportStats>,
    log_stats: Arc<ExportStats>,
    chaos_dropped: AtomicU64,
    otlp: Option<OtlpConfig>,
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
#[derive(Debug, Clone, Serialize)]
pub struct TelemetryReport {
    /// `ok`, `degraded` (exports failing) or `disabled` (no exporter).
    pub state: &'static str,
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

impl Telemetry {
    /// Sets up telemetry; with an OTLP endpoint, spawns the export tasks (call inside a
    /// Tokio runtime).
    pub fn new(service_name: &str, config: &TelemetryConfig) -> Result<Self> {
        let resource = resource(service_name, &config.resource_attributes);
        let provider = SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .build();
        let logger = provider.logger(service_name.to_owned());
        let scope = InstrumentationScope::builder("echo-server")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let span_stats = Arc::new(ExportStats::default());
        let log_stats = Arc::new(ExportStats::default());
        let mut workers = Vec::new();
        let (mut spans, mut logs) = (None, None);
        if let (true, Some(otlp)) = (config.enabled, &config.otlp) {
            let mut span_exporter = ConfirmingExporter::new(
                build_span_exporter(otlp, config.export_timeout)?,
                span_stats.clone(),
            );
            span_exporter.set_resource(&resource);
            let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
            let (ctl, ctl_rx) = mpsc::unbounded_channel();
            let handle = tokio::spawn(span_worker(
                span_exporter,
                rx,
                ctl_rx,
                config.export_interval,
                config.max_batch.max(1),
            ));
            workers.push(Worker {
                signal: "traces",
                ctl,
                handle,
            });
            spans = Some(tx);

            let mut log_exporter = build_log_exporter(otlp, config.export_timeout)?;
            log_exporter.set_resource(&resource);
            let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
            let (ctl, ctl_rx) = mpsc::unbounded_channel();
            let handle = tokio::spawn(log_worker(
                log_exporter,
                scope.clone(),
                log_stats.clone(),
                rx,
                ctl_rx,
                config.export_interval,
                config.max_batch.max(1),
            ));
            workers.push(Worker {
                signal: "logs",
                ctl,
                handle,
            });
            logs = Some(tx);
        }
        Ok(Self {
            enabled: config.enabled,
            ids: RandomIdGenerator::default(),
            spans,
            logs,
            logger,
            _provider: provider,
            scope,
            span_stats,
            log_stats,
            chaos_dropped: AtomicU64::new(0),
            otlp: config.otlp.clone().filter(|_| config.enabled),
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

    /// Builds span data for a finished span.
    #[allow(clippy::too_many_arguments)]
    pub fn span_data(
        &self,
        trace: &SpanStart,
        span_id: SpanId,
        parent_span_id: SpanId,
        parent_is_remote: bool,
        kind: SpanKind,
        name: std::borrow::Cow<'static, str>,
        start: SystemTime,
        end: SystemTime,
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                trace.trace_id,
                span_id,
                trace.flags,
                false,
                trace.trace_state.clone(),
            ),
            parent_span_id,
            parent_span_is_remote: parent_is_remote,
            span_kind: kind,
            name,
            start_time: start,
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// Queues a finished span for export (dropped and counted when the queue is full).
    pub fn emit_span(&self, span: SpanData) {
        if let Some(tx) = &self.spans
            && tx.try_send(span).is_err()
        {
            self.span_stats.drop_one();
        }
    }

    /// Whether finished spans go anywhere.
    pub fn exporting(&self) -> bool {
        self.spans.is_some()
    }

    /// Queues an OTLP log record built by `fill` (skipped when nothing exports logs).
    pub fn emit_log(
        &self,
        trace: &SpanStart,
        severity: Severity,
        body: &'static str,
        fill: impl FnOnce(&mut SdkLogRecord),
    ) {
        let Some(tx) = &self.logs else { return };
        let mut rec = self.logger.create_log_record();
        let now = SystemTime::now();
        rec.set_timestamp(now);
        rec.set_observed_timestamp(now);
        rec.set_severity_number(severity);
        rec.set_severity_text(severity.name());
        rec.set_body(AnyValue::from(body));
        rec.set_trace_context(trace.trace_id, trace.span_id, Some(trace.flags));
        fill(&mut rec);
        if tx.try_send(rec).is_err() {
            self.log_stats.drop_one();
        }
    }

    /// Counts a request whose telemetry chaos dropped.
    pub fn count_chaos_drop(&self) {
        self.chaos_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The `/healthz` view.
    pub fn report(&self) -> TelemetryReport {
        let spans = self.span_stats.snapshot();
        let logs = self.log_stats.snapshot();
        let state = match (&self.otlp, spans.degraded || logs.degraded) {
            (None, _) => "disabled",
            (Some(_), true) => "degraded",
            (Some(_), false) => "ok",
        };
        TelemetryReport {
            state,
            endpoint: self.otlp.as_ref().map(|o| o.endpoint.clone()),
            protocol: self.otlp.as_ref().map(|o| o.protocol.to_string()),
            spans,
            logs,
            chaos_dropped: self.chaos_dropped.load(Ordering::Relaxed),
        }
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

fn build_span_exporter(
    otlp: &OtlpConfig,
    timeout: Duration,
) -> Result<opentelemetry_otlp::SpanExporter> {
    let built = match otlp.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(otlp.endpoint.clone())
            .with_timeout(timeout)
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(signal_url(&otlp.endpoint, "traces"))
            .with_timeout(timeout)
            .build(),
    };
    built.map_err(|e| Error::Exporter {
        signal: "traces",
        endpoint: otlp.endpoint.clone(),
        reason: e.to_string(),
    })
}

fn build_log_exporter(
    otlp: &OtlpConfig,
    timeout: Duration,
) -> Result<opentelemetry_otlp::LogExporter> {
    let built = match otlp.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(otlp.endpoint.clone())
            .with_timeout(timeout)
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(signal_url(&otlp.endpoint, "logs"))
            .with_timeout(timeout)
            .build(),
    };
    built.map_err(|e| Error::Exporter {
        signal: "logs",
        endpoint: otlp.endpoint.clone(),
        reason: e.to_string(),
    })
}

/// `base` + `/v1/<signal>`, as the OTLP spec derives it from `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn signal_url(base: &str, signal: &str) -> String {
    format!("{}/v1/{signal}", base.trim_end_matches('/'))
}

async fn span_worker<E: SpanExporter>(
    exporter: E,
    mut rx: mpsc::Receiver<SpanData>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    interval: Duration,
    max_batch: usize,
) {
    let mut buf: Vec<SpanData> = Vec::with_capacity(max_batch);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The worker wakes on its tick (and on control messages) only, never per span: a
    // wake-up per request costs more than the export itself at high rates.
    loop {
        tokio::select! {
            _ = tick.tick() => {
                while let Ok(span) = rx.try_recv() {
                    buf.push(span);
                }
                while !buf.is_empty() {
                    let _ = exporter.export(take_batch(&mut buf, max_batch)).await;
                }
            }
            cmd = ctl.recv() => {
                let shutting = matches!(cmd, Some(Ctl::Shutdown(_)) | None);
                if shutting { rx.close(); }
                while let Ok(s) = rx.try_recv() { buf.push(s); }
                let mut last = Ok(());
                while !buf.is_empty() {
                    if let Err(e) = exporter.export(take_batch(&mut buf, max_batch)).await {
                        last = Err(e.to_string());
                    }
                }
                match cmd {
                    Some(Ctl::Flush(done)) => { let _ = done.send(()); }
                    Some(Ctl::Shutdown(done)) => {
                        let r = last.and(exporter.shutdown().map_err(|e| e.to_string()));
                        let _ = done.send(r);
                        return;
                    }
                    None => return,
                }
            }
        }
    }
}

fn take_batch<T>(buf: &mut Vec<T>, max: usize) -> Vec<T> {
    if buf.len() <= max {
        std::mem::take(buf)
    } else {
        buf.drain(..max).collect()
    }
}

async fn log_worker<E: LogExporter>(
    exporter: E,
    scope: InstrumentationScope,
    stats: Arc<ExportStats>,
    mut rx: mpsc::Receiver<SdkLogRecord>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    interval: Duration,
    max_batch: usize,
) {
    async fn export<E: LogExporter>(
        exporter: &E,
        scope: &InstrumentationScope,
        stats: &ExportStats,
        buf: &mut Vec<SdkLogRecord>,
        max: usize,
    ) -> Result<(), String> {
        let mut last = Ok(());
        while !buf.is_empty() {
            let batch = take_batch(buf, max);
            let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                batch.iter().map(|r| (r, scope)).collect();
            match exporter.export(LogBatch::new(&refs)).await {
                Ok(()) => stats.confirm(batch.len(), []),
                Err(e) => {
                    stats.fail(batch.len(), e.to_string());
                    last = Err(e.to_string());
                }
            }
        }
        last
    }
    let mut buf = Vec::with_capacity(max_batch);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                while let Ok(r) = rx.try_recv() { buf.push(r); }
                let _ = export(&exporter, &scope, &stats, &mut buf, max_batch).await;
            }
            cmd = ctl.recv() => {
                if matches!(cmd, Some(Ctl::Shutdown(_)) | None) { rx.close(); }
                while let Ok(r) = rx.try_recv() { buf.push(r); }
                let last = export(&exporter, &scope, &stats, &mut buf, max_batch).await;
                match cmd {
                    Some(Ctl::Flush(done)) => { let _ = done.send(()); }
                    Some(Ctl::Shutdown(done)) => {
                        let r = last.and(exporter.shutdown().map_err(|e| e.to_string()));
                        let _ = done.send(r);
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
            s.traceparent(),
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
    fn recent_ids_keep_the_last_hundred() {
        let s = ExportStats::default();
        s.confirm(150, (1..=150u128).map(TraceId::from));
        let ids = s.recent_trace_ids();
        assert_eq!(ids.len(), RECENT_TRACE_IDS);
        assert_eq!(ids[0], TraceId::from(51u128).to_string());
    }
}
