//! The request log: one line per request, appended to a shared buffer under a short lock
//! and written out by a dedicated thread at least every 10 ms, so a slow stdout never sits
//! on the request path and lines still appear promptly.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{LogFormat, RequestLog, SharedWriter};
use crate::error::{Error, Result};

/// Lines buffered beyond this many bytes (a blocked stdout) are dropped and counted.
const MAX_BUFFERED: usize = 8 * 1024 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// One request, as logged. `ts`, `level`, `msg`, `trace_id`, `span_id`, `method` and
/// `route` go into the JSON line unescaped: they must be text JSON does not escape (the
/// server's own timestamps, hex ids and labels are).
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
            LogFormat::Json => self.write_json(out),
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

impl RequestRecord<'_> {
    /// The JSON object, byte for byte what `serde_json` makes of the derived `Serialize`
    /// (same field order, escaping and number formatting), written directly: the line is
    /// on every request's path and serde's per-field machinery cost more than the rest of
    /// the log. The timestamp, the ids, the level, the message, the method label and the
    /// route template are the server's own ASCII, which JSON never escapes: they are
    /// copied as they are; the rest is escaped.
    fn write_json(&self, out: &mut Vec<u8>) {
        let own = |out: &mut Vec<u8>, s: &str| {
            debug_assert!(!needs_escape(s.as_bytes()), "{s:?} needs escaping");
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        };
        out.reserve(
            192 + self.service.len()
                + self.request_id.len()
                + self.path.len()
                + self.tenant_id.map_or(0, str::len),
        );
        out.extend_from_slice(b"{\"ts\":");
        own(out, self.ts);
        out.extend_from_slice(b",\"level\":");
        own(out, self.level);
        out.extend_from_slice(b",\"msg\":");
        own(out, self.msg);
        out.extend_from_slice(b",\"service\":");
        json_str(out, self.service);
        out.extend_from_slice(b",\"trace_id\":");
        own(out, self.trace_id);
        out.extend_from_slice(b",\"span_id\":");
        own(out, self.span_id);
        out.extend_from_slice(b",\"tenant_id\":");
        match self.tenant_id {
            Some(t) => json_str(out, t),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"request_id\":");
        json_str(out, self.request_id);
        out.extend_from_slice(b",\"method\":");
        own(out, self.method);
        out.extend_from_slice(b",\"route\":");
        own(out, self.route);
        out.extend_from_slice(b",\"path\":");
        json_str(out, self.path);
        out.extend_from_slice(b",\"status\":");
        decimal(out, self.status);
        out.extend_from_slice(b",\"duration_ms\":");
        // serde_json's float formatting (shortest round-trip; null when not finite).
        let _ = serde_json::to_writer(&mut *out, &self.duration_ms);
        out.push(b'}');
    }
}

/// `n` in decimal.
fn decimal(out: &mut Vec<u8>, n: u16) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `s` as a JSON string, escaped as serde_json does: `"` and `\\`, the short escapes
/// `\b \t \n \f \r`, other control characters as `\u00xx`; everything else verbatim.
fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(&[b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether `bytes` holds a `"`, a `\\` or a control character, eight bytes at a time (the
/// usual zero-byte tests on a word: `(x - 0x01..) & !x & 0x80..` finds a zero byte, with
/// `0x20..` a byte below 0x20).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let quote = zero_byte(x ^ (ONES * u64::from(b'"')));
        let backslash = zero_byte(x ^ (ONES * u64::from(b'\\')));
        if control | quote | backslash != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// RFC 3339 UTC timestamps with milliseconds (`2026-01-01T00:00:00.000Z`, as
/// `humantime::format_rfc3339_millis`), formatting the date and time of day only when the
/// second changes.
#[derive(Debug, Default)]
pub struct TimestampCache {
    second: Option<u64>,
    prefix: String,
}

impl TimestampCache {
    /// Replaces `out` with the timestamp of `t`.
    pub fn format(&mut self, t: SystemTime, out: &mut String) {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs();
        if self.second != Some(second) {
            self.prefix.clear();
            let whole = UNIX_EPOCH + Duration::from_secs(second);
            let _ = std::fmt::Write::write_fmt(
                &mut self.prefix,
                format_args!("{}", humantime::format_rfc3339_seconds(whole)),
            );
            // Drop the trailing `Z`; the milliseconds go before it.
            self.prefix.pop();
            self.second = Some(second);
        }
        out.clear();
        out.push_str(&self.prefix);
        let ms = since.subsec_millis();
        let digits = [
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ];
        out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
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

    fn record<'a>(tenant: Option<&'a str>, path: &'a str, duration_ms: f64) -> RequestRecord<'a> {
        RequestRecord {
            ts: "2026-01-01T00:00:00.000Z",
            level: "warn",
            msg: "request completed",
            service: "echo \"svc\"\\",
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            span_id: "00f067aa0ba902b7",
            tenant_id: tenant,
            request_id: "r\u{1}\u{1f}\u{7f}",
            method: "GET",
            route: "/api/{*path}",
            path,
            status: 404,
            duration_ms,
        }
    }

    #[test]
    fn json_line_is_what_serde_json_writes() {
        for r in [
            record(None, "/api/x", 0.0),
            record(Some("t\u{8}\t\n\u{c}\r\u{0}"), "/api/é✓\u{1F600}", 1.5),
            record(Some(""), "/", 1e-7),
            record(Some("a"), "/api/\\\"", 123456.789),
            record(None, "/x", f64::NAN),
            record(None, "/x", f64::INFINITY),
        ] {
            let mut got = Vec::new();
            r.write_line(LogFormat::Json, &mut got);
            let mut want = serde_json::to_vec(&r).unwrap();
            want.push(b'\n');
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }

    #[test]
    fn statuses_are_written_in_decimal() {
        for n in [0u16, 7, 10, 99, 200, 404, 599, 1000, 65535] {
            let mut out = Vec::new();
            decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn escape_detection_finds_every_special_byte_at_every_position() {
        for len in 0..24 {
            let plain = vec![b'a'; len];
            assert!(!needs_escape(&plain));
            // Bytes from 0x80 up (UTF-8) and DEL need no escape.
            assert!(!needs_escape(&vec![0xc3; len]));
            assert!(!needs_escape(&vec![0x7f; len]));
            for at in 0..len {
                for special in (0u8..0x20).chain([b'"', b'\\']) {
                    let mut b = plain.clone();
                    b[at] = special;
                    assert!(needs_escape(&b), "{special:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn cached_timestamps_match_humantime() {
        let mut cache = TimestampCache::default();
        let mut out = String::new();
        let base = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        for offset_ms in [
            0u64, 1, 9, 10, 99, 100, 999, 1_000, 1_001, 59_999, 86_400_000, 7,
        ] {
            let t = base + Duration::from_millis(offset_ms) + Duration::from_micros(999);
            cache.format(t, &mut out);
            assert_eq!(out, humantime::format_rfc3339_millis(t).to_string());
        }
        cache.format(UNIX_EPOCH, &mut out);
        assert_eq!(out, "1970-01-01T00:00:00.000Z");
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
