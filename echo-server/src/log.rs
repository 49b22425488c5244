//! The request log: one line per request, appended to a shared buffer under a short lock
//! and written out by a dedicated thread at least every 10 ms, so a slow stdout never sits
//! on the request path and lines still appear promptly.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::config::{LogFormat, RequestLog, SharedWriter};
use crate::error::{Error, Result};

/// Lines buffered beyond this many bytes (a blocked stdout) are dropped and counted.
const MAX_BUFFERED: usize = 8 * 1024 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// One request, as logged.
#[derive(Debug, Serialize)]
pub struct RequestRecord<'a> {
    /// RFC 3339 time, millisecond precision, UTC.
    pub ts: &'a str,
    /// `info`, `warn` (4xx) or `error` (5xx).
    pub level: &'static str,
    /// Message.
    pub msg: &'static str,
    /// service.name.
    pub service: &'a str,
    /// Trace id (hex).
    pub trace_id: &'a str,
    /// Server span id (hex).
    pub span_id: &'a str,
    /// Tenant, when the request named one.
    pub tenant_id: Option<&'a str>,
    /// `X-Request-Id` or a generated id.
    pub request_id: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Route template.
    pub route: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Response status.
    pub status: u16,
    /// Server-side duration.
    pub duration_ms: f64,
}

impl RequestRecord<'_> {
    /// Appends the line (with `\n`) to `out`.
    pub fn write_line(&self, format: LogFormat, out: &mut Vec<u8>) {
        match format {
            LogFormat::Json => {
                // Serializing plain strings and numbers into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, self);
            }
            LogFormat::Text => {
                let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
                let _ = write!(
                    out,
                    "ts={} level={} msg={} service={} trace_id={} span_id={} tenant_id={} request_id={} method={} route={} path={} status={} duration_ms={:.3}",
                    self.ts,
                    self.level,
                    q(self.msg),
                    q(self.service),
                    self.trace_id,
                    self.span_id,
                    q(self.tenant_id.unwrap_or("")),
                    q(self.request_id),
                    self.method,
                    q(self.route),
                    q(self.path),
                    self.status,
                    self.duration_ms
                );
            }
        }
        out.push(b'\n');
    }
}

struct Shared {
    buf: Mutex<Vec<u8>>,
    wake: Condvar,
    closed: AtomicBool,
    dropped: AtomicU64,
}

/// The request-log sink and its writer thread.
pub struct LogSink {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

enum Target {
    Stdout,
    Writer(SharedWriter),
}

impl LogSink {
    /// Starts the writer for `target`; `None` when the log is off.
    pub fn start(target: &RequestLog) -> Result<Option<Self>> {
        let target = match target {
            RequestLog::Off => return Ok(None),
            RequestLog::Stdout => Target::Stdout,
            RequestLog::Writer(w) => Target::Writer(w.clone()),
        };
        let shared = Arc::new(Shared {
            buf: Mutex::new(Vec::with_capacity(64 * 1024)),
            wake: Condvar::new(),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("request-log".into())
            .spawn(move || writer_loop(&s, target))
            .map_err(Error::LogWriter)?;
        Ok(Some(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Appends complete lines.
    pub fn append(&self, lines: &[u8]) {
        let mut buf = self.shared.buf.lock().unwrap_or_else(|p| p.into_inner());
        if buf.len() + lines.len() > MAX_BUFFERED {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        buf.extend_from_slice(lines);
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Writes out what is buffered and stops the thread (blocking; call off the runtime).
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn writer_loop(shared: &Shared, target: Target) {
    let mut spare = Vec::with_capacity(64 * 1024);
    loop {
        let closed;
        {
            let mut buf = shared.buf.lock().unwrap_or_else(|p| p.into_inner());
            if buf.is_empty() && !shared.closed.load(Ordering::Acquire) {
                buf = shared
                    .wake
                    .wait_timeout(buf, FLUSH_EVERY)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            closed = shared.closed.load(Ordering::Acquire);
            std::mem::swap(&mut *buf, &mut spare);
        }
        if !spare.is_empty() {
            // A failing stdout (closed pipe) must not take the server down; lines are lost.
            let _ = match &target {
                Target::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&spare).and_then(|_| out.flush())
                }
                Target::Writer(w) => {
                    let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                    w.write_all(&spare).and_then(|_| w.flush())
                }
            };
            spare.clear();
        }
        if closed {
            let empty = shared.buf.lock().map(|b| b.is_empty()).unwrap_or(true);
            if empty {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_every_field() {
        let r = RequestRecord {
            ts: "2026-01-01T00:00:00.000Z",
            level: "info",
            msg: "request completed",
            service: "echo-server",
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            span_id: "00f067aa0ba902b7",
            tenant_id: Some("team \"a\""),
            request_id: "r1",
            method: "GET",
            route: "/echo",
            path: "/echo",
            status: 200,
            duration_ms: 1.5,
        };
        let mut out = Vec::new();
        r.write_line(LogFormat::Json, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        for k in [
            "ts",
            "level",
            "msg",
            "service",
            "trace_id",
            "span_id",
            "tenant_id",
            "request_id",
            "method",
            "route",
            "status",
            "duration_ms",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["tenant_id"], "team \"a\"");
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
    }

    #[test]
    fn sink_writes_lines_promptly_and_on_close() {
        let cap: Arc<Mutex<Vec<u8>>> = Arc::default();
        let w: SharedWriter = cap.clone();
        let sink = LogSink::start(&RequestLog::Writer(w)).unwrap().unwrap();
        sink.append(b"one\n");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(&*cap.lock().unwrap(), b"one\n");
        sink.append(b"two\n");
        sink.close();
        assert_eq!(&*cap.lock().unwrap(), b"one\ntwo\n");
    }
}
