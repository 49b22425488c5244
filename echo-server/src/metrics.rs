//! RED metrics: a request-duration histogram plus request and error counters, labelled by
//! route, method, status (code and class) and tenant, with the latest trace per bucket kept
//! as exemplar; and the probe counter ([`PROBE_METRIC`]), one series per probe slot with
//! the latest probe's trace as exemplar. Hand-written rather than prometheus-client because the server must speak
//! both OpenMetrics (with exemplar timestamps and a `span_id` label, the shape Prometheus
//! 2.42 scrapes) and the classic Prometheus text format; the hot path is a read lock plus
//! atomics.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, TraceId};

use crate::chaos::StatusClass;
use crate::contract::{PROBE_HEADER, PROBE_METRIC, PROBE_SLOTS};

/// Upper bounds of the duration buckets, in seconds (the OTel HTTP semconv advice).
pub const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const BUCKET_LABELS: [&str; 15] = [
    "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0",
    "7.5", "10.0", "+Inf",
];

/// Distinct tenants tracked before further ones are folded into `other`.
pub const MAX_TENANTS: usize = 100;

/// Content type of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text exposition.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy)]
struct Exemplar {
    trace_id: TraceId,
    span_id: SpanId,
    value: f64,
    unix_ms: u64,
}

#[derive(Debug, Default)]
struct Series {
    buckets: [AtomicU64; 15],
    count: AtomicU64,
    sum_nanos: AtomicU64,
    exemplars: [Mutex<Option<Exemplar>>; 15],
}

type Outer = (&'static str, &'static str, u16);
type ByTenant = HashMap<Arc<str>, Arc<Series>>;

/// The RED metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {
    series: RwLock<HashMap<Outer, ByTenant>>,
    tenants: RwLock<HashMap<Arc<str>, ()>>,
    /// Connections of the public listener.
    pub connections: Connections,
    /// Probe requests.
    pub probes: Probes,
}

/// The slot a request's [`PROBE_HEADER`] names: a whole number below [`PROBE_SLOTS`];
/// anything else is not a probe.
pub fn probe_slot(headers: &http::HeaderMap) -> Option<u8> {
    const PROBE: http::HeaderName = http::HeaderName::from_static(PROBE_HEADER);
    let v = headers.get(PROBE)?.as_bytes();
    if v.is_empty() || v.len() > 5 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = v.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u8::try_from(n).ok().filter(|n| u16::from(*n) < PROBE_SLOTS)
}

#[derive(Debug, Default)]
struct ProbeSlot {
    count: AtomicU64,
    exemplar: Mutex<Option<Exemplar>>,
}

/// The probe counter of one replica: [`PROBE_SLOTS`] series at most, each with the latest
/// probe's trace as exemplar.
#[derive(Debug)]
pub struct Probes {
    replica: String,
    slots: Box<[ProbeSlot]>,
}

impl Default for Probes {
    fn default() -> Self {
        Self::new("echo-server")
    }
}

impl Probes {
    /// No probes yet; series labelled `replica`.
    pub fn new(replica: &str) -> Self {
        Self {
            replica: escape(replica),
            slots: (0..PROBE_SLOTS).map(|_| ProbeSlot::default()).collect(),
        }
    }

    /// Counts a probe of `slot` (ignored at or above [`PROBE_SLOTS`]), with its trace and
    /// span as exemplar.
    pub fn record(&self, slot: u8, exemplar: Option<(TraceId, SpanId)>) {
        let Some(s) = self.slots.get(usize::from(slot)) else {
            return;
        };
        s.count.fetch_add(1, Ordering::Relaxed);
        if let Some((trace_id, span_id)) = exemplar {
            *s.exemplar.lock().unwrap_or_else(|p| p.into_inner()) = Some(Exemplar {
                trace_id,
                span_id,
                value: 1.0,
                unix_ms: unix_ms(),
            });
        }
    }

    /// Probes of `slot` so far.
    pub fn count(&self, slot: u8) -> u64 {
        self.slots
            .get(usize::from(slot))
            .map_or(0, |s| s.count.load(Ordering::Relaxed))
    }

    fn render(&self, om: bool, out: &mut String) {
        let family = PROBE_METRIC.trim_end_matches("_total");
        let help =
            "Probe requests (x-ricochet-probe), by slot; the exemplar is the latest probe's trace.";
        if om {
            let _ = writeln!(out, "# TYPE {family} counter\n# HELP {family} {help}");
        } else {
            let _ = writeln!(
                out,
                "# HELP {PROBE_METRIC} {help}\n# TYPE {PROBE_METRIC} counter"
            );
        }
        for (slot, s) in self.slots.iter().enumerate() {
            let count = s.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let _ = write!(
                out,
                "{PROBE_METRIC}{{slot=\"{slot}\",replica=\"{}\"}} {count}",
                self.replica
            );
            if om && let Some(e) = *s.exemplar.lock().unwrap_or_else(|p| p.into_inner()) {
                write_exemplar(out, &e);
            }
            out.push('\n');
        }
    }
}

/// ` # {trace_id="…",span_id="…"} value seconds.millis`, as OpenMetrics writes an exemplar.
fn write_exemplar(out: &mut String, e: &Exemplar) {
    let _ = write!(
        out,
        " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {}.{:03}",
        e.trace_id,
        e.span_id,
        e.value,
        e.unix_ms / 1000,
        e.unix_ms % 1000
    );
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Open connections of the public listener (gauge).
pub const CONNECTIONS_OPEN: &str = "echo_connections_open";
/// Connections refused because `max_connections` were open (counter).
pub const CONNECTIONS_REFUSED: &str = "echo_connections_refused";
/// Connections the server closed on a timeout, by `reason` (counter).
pub const CONNECTIONS_CLOSED: &str = "echo_connections_closed";
/// Requests answered 408 because their body did not arrive in time (counter).
pub const BODY_TIMEOUTS: &str = "echo_request_body_timeouts";

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No byte within the header read timeout.
    Silent,
    /// No request in flight for the idle timeout.
    Idle,
    /// hyper's timers: an HTTP/1.1 head not complete in time, or an HTTP/2 PING not
    /// acknowledged.
    Timeout,
}

impl CloseReason {
    const ALL: [Self; 3] = [Self::Silent, Self::Idle, Self::Timeout];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Silent => "silent",
            Self::Idle => "idle",
            Self::Timeout => "timeout",
        }
    }
}

/// Connection counters of the public listener.
#[derive(Debug, Default)]
pub struct Connections {
    open: AtomicU64,
    refused: AtomicU64,
    closed: [AtomicU64; 3],
    body_timeouts: AtomicU64,
}

impl Connections {
    /// A connection was accepted and is held.
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A held connection ended.
    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection was refused; returns the total so far.
    pub fn refuse(&self) -> u64 {
        self.refused.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The server closed a connection for `reason`.
    pub fn closed_by(&self, reason: CloseReason) {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A request body timed out.
    pub fn body_timeout(&self) {
        self.body_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections held now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections closed for `reason` so far.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed[reason as usize].load(Ordering::Relaxed)
    }

    /// Request bodies that timed out so far.
    pub fn body_timeouts(&self) -> u64 {
        self.body_timeouts.load(Ordering::Relaxed)
    }

    fn render(&self, om: bool, out: &mut String) {
        let head = |out: &mut String, family: &str, kind: &str, help: &str| {
            let series = if kind == "counter" {
                format!("{family}_total")
            } else {
                family.to_owned()
            };
            if om {
                let _ = writeln!(out, "# TYPE {family} {kind}\n# HELP {family} {help}");
            } else {
                let _ = writeln!(out, "# HELP {series} {help}\n# TYPE {series} {kind}");
            }
        };
        head(
            out,
            CONNECTIONS_OPEN,
            "gauge",
            "Connections the public listener holds.",
        );
        let _ = writeln!(out, "{CONNECTIONS_OPEN} {}", self.open());
        head(
            out,
            CONNECTIONS_REFUSED,
            "counter",
            "Connections closed on accept because max_connections were open.",
        );
        let _ = writeln!(out, "{CONNECTIONS_REFUSED}_total {}", self.refused());
        head(
            out,
            CONNECTIONS_CLOSED,
            "counter",
            "Connections the server closed: silent (no byte), idle (no request in flight), timeout (head not read in time, HTTP/2 PING unanswered).",
        );
        for r in CloseReason::ALL {
            let _ = writeln!(
                out,
                "{CONNECTIONS_CLOSED}_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.closed_for(r)
            );
        }
        head(
            out,
            BODY_TIMEOUTS,
            "counter",
            "Requests answered 408 because their body did not arrive within the body read timeout.",
        );
        let _ = writeln!(out, "{BODY_TIMEOUTS}_total {}", self.body_timeouts());
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Formats as Prometheus and OpenMetrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, with exemplars.
    OpenMetrics,
    /// Prometheus text 0.0.4.
    Prometheus,
}

impl Format {
    /// OpenMetrics when `accept` lists `application/openmetrics-text`.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    /// The content type to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }
}

impl Metrics {
    /// An empty registry whose probe series are labelled `replica`.
    pub fn with_replica(replica: &str) -> Self {
        Self {
            probes: Probes::new(replica),
            ..Self::default()
        }
    }

    /// Records one request.
    pub fn record(
        &self,
        route: &'static str,
        method: &'static str,
        status: u16,
        tenant: Option<&str>,
        duration: Duration,
        exemplar: Option<(TraceId, SpanId)>,
    ) {
        let tenant = tenant.unwrap_or("none");
        let key = (route, method, status);
        let series = {
            let map = read(&self.series);
            map.get(&key).and_then(|m| m.get(tenant)).cloned()
        };
        let series = match series {
            Some(s) => s,
            None => self.insert(key, tenant),
        };
        let secs = duration.as_secs_f64();
        let idx = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        series.buckets[idx].fetch_add(1, Ordering::Relaxed);
        series.count.fetch_add(1, Ordering::Relaxed);
        series.sum_nanos.fetch_add(
            duration.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
        if let Some((trace_id, span_id)) = exemplar {
            let unix_ms = unix_ms();
            let mut slot = series.exemplars[idx]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *slot = Some(Exemplar {
                trace_id,
                span_id,
                value: secs,
                unix_ms,
            });
        }
    }

    fn insert(&self, key: Outer, tenant: &str) -> Arc<Series> {
        let tenant: Arc<str> = {
            let known = read(&self.tenants)
                .get_key_value(tenant)
                .map(|(k, _)| k.clone());
            match known {
                Some(t) => t,
                None => {
                    let mut tenants = write(&self.tenants);
                    if tenants.len() >= MAX_TENANTS || tenant.len() > 64 {
                        Arc::from("other")
                    } else {
                        let t: Arc<str> = Arc::from(tenant);
                        tenants.insert(t.clone(), ());
                        t
                    }
                }
            }
        };
        let mut map = write(&self.series);
        map.entry(key)
            .or_default()
            .entry(tenant)
            .or_default()
            .clone()
    }

    /// Total requests recorded (all series).
    pub fn total_requests(&self) -> u64 {
        read(&self.series)
            .values()
            .flat_map(|m| m.values())
            .map(|s| s.count.load(Ordering::Relaxed))
            .sum()
    }

    /// Renders the exposition.
    pub fn render(&self, format: Format) -> String {
        let mut rows: Vec<(Outer, Arc<str>, Arc<Series>)> = read(&self.series)
            .iter()
            .flat_map(|(k, m)| m.iter().map(move |(t, s)| (*k, t.clone(), s.clone())))
            .collect();
        rows.sort_by(|a, b| (a.0, &*a.1).cmp(&(b.0, &*b.1)));
        let om = format == Format::OpenMetrics;
        let mut out = String::with_capacity(4096 + rows.len() * 2048);
        let name = crate::contract::DURATION_METRIC;
        if om {
            let _ = writeln!(
                out,
                "# TYPE {name} histogram\n# UNIT {name} seconds\n# HELP {name} Duration of HTTP server requests."
            );
        } else {
            let _ = writeln!(
                out,
                "# HELP {name} Duration of HTTP server requests.\n# TYPE {name} histogram"
            );
        }
        for ((route, method, status), tenant, s) in &rows {
            let labels = labels(method, route, *status, tenant);
            let mut cum = 0u64;
            for (i, le) in BUCKET_LABELS.iter().enumerate() {
                cum += s.buckets[i].load(Ordering::Relaxed);
                let _ = write!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cum}");
                if om {
                    let ex = *s.exemplars[i].lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(e) = ex {
                        write_exemplar(&mut out, &e);
                    }
                }
                out.push('\n');
            }
            let sum = s.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "{name}_count{{{labels}}} {cum}\n{name}_sum{{{labels}}} {sum}"
            );
        }
        for (family, help, errors_only) in [
            (
                "http_server_requests",
                "HTTP server requests served.",
                false,
            ),
            (
                "http_server_errors",
                "HTTP server requests answered with a 5xx status.",
                true,
            ),
        ] {
            if om {
                let _ = writeln!(out, "# TYPE {family} counter\n# HELP {family} {help}");
            } else {
                let _ = writeln!(
                    out,
                    "# HELP {family}_total {help}\n# TYPE {family}_total counter"
                );
            }
            for ((route, method, status), tenant, s) in &rows {
                if errors_only && *status < 500 {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{family}_total{{{}}} {}",
                    labels(method, route, *status, tenant),
                    s.count.load(Ordering::Relaxed)
                );
            }
        }
        self.connections.render(om, &mut out);
        self.probes.render(om, &mut out);
        if om {
            out.push_str("# EOF\n");
        }
        out
    }
}

fn labels(method: &str, route: &str, status: u16, tenant: &str) -> String {
    format!(
        "http_request_method=\"{method}\",http_route=\"{}\",http_response_status_code=\"{status}\",http_response_status_class=\"{}\",tenant_id=\"{}\"",
        escape(route),
        StatusClass::of(status).as_str(),
        escape(tenant)
    )
}

fn escape(v: &str) -> String {
    if !v.contains(['\\', '"', '\n']) {
        return v.to_owned();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_has_exemplar_and_eof() {
        let m = Metrics::default();
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let s = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        m.record(
            "/api/{*path}",
            "GET",
            200,
            Some("team-a"),
            Duration::from_millis(12),
            Some((t, s)),
        );
        m.record(
            "/api/{*path}",
            "GET",
            503,
            None,
            Duration::from_millis(40),
            None,
        );
        let om = m.render(Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"));
        let line = om
            .lines()
            .find(|l| l.contains("le=\"0.025\"") && l.contains("team-a"))
            .unwrap();
        assert!(
            line.ends_with(&format!(
                "1 # {{trace_id=\"{t}\",span_id=\"{s}\"}} 0.012 {}",
                line.rsplit(' ').next().unwrap()
            )),
            "{line}"
        );
        assert!(om.contains("http_server_requests_total{"));
        assert!(om.contains("# TYPE http_server_requests counter"));
        assert_eq!(om.matches("http_server_errors_total{").count(), 1);
        let prom = m.render(Format::Prometheus);
        assert!(
            !prom.contains("# {")
                && !prom.contains("# EOF")
                && prom.contains("# TYPE http_server_requests_total counter")
        );
        assert_eq!(m.total_requests(), 2);
    }

    #[test]
    fn probe_slots_are_whole_numbers_below_the_slot_count() {
        let slot = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(PROBE_HEADER, v.parse().unwrap());
            probe_slot(&h)
        };
        assert_eq!(slot("0"), Some(0));
        assert_eq!(slot("63"), Some(63));
        assert_eq!(slot("007"), Some(7));
        for bad in [
            "64", "65535", "99999", "+1", "-1", "1.0", " 1", "", "x", "123456",
        ] {
            assert_eq!(slot(bad), None, "{bad:?}");
        }
        assert_eq!(probe_slot(&http::HeaderMap::new()), None);
    }

    #[test]
    fn probe_series_carry_slot_replica_and_the_latest_trace_as_exemplar() {
        let m = Metrics::with_replica("pod-a");
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let s = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        m.probes.record(3, None);
        m.probes.record(3, Some((t, s)));
        m.probes.record(64, Some((t, s)));
        let om = m.render(Format::OpenMetrics);
        let lines: Vec<&str> = om
            .lines()
            .filter(|l| l.starts_with("ricochet_probe_requests"))
            .collect();
        assert_eq!(lines.len(), 1, "{om}");
        let want = format!(
            "ricochet_probe_requests_total{{slot=\"3\",replica=\"pod-a\"}} 2 # {{trace_id=\"{t}\",span_id=\"{s}\"}} 1 "
        );
        assert!(lines[0].starts_with(&want), "{}", lines[0]);
        assert!(om.contains("# TYPE ricochet_probe_requests counter\n"));
        let prom = m.render(Format::Prometheus);
        assert!(prom.contains(
            "# TYPE ricochet_probe_requests_total counter\nricochet_probe_requests_total{slot=\"3\",replica=\"pod-a\"} 2\n"
        ), "{prom}");
    }

    #[test]
    fn negotiation_follows_the_prometheus_accept_header() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
    }

    #[test]
    fn tenant_cardinality_is_bounded() {
        let m = Metrics::default();
        for i in 0..(MAX_TENANTS + 20) {
            m.record(
                "/echo",
                "GET",
                200,
                Some(&format!("t{i}")),
                Duration::from_millis(1),
                None,
            );
        }
        let out = m.render(Format::Prometheus);
        assert_eq!(
            out.matches("http_server_requests_total{").count(),
            MAX_TENANTS + 1
        );
        assert!(out.contains("tenant_id=\"other\""));
    }
}
