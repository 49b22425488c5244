//! The OTLP messages the server exports, encoded in one pass straight from the request's
//! fields (no intermediate proto structs): server spans and `/storm` child spans for an
//! `ExportTraceServiceRequest`, request-completed log records for an
//! `ExportLogsServiceRequest`, each under one resource and the `echo-server` instrumentation
//! scope. Spans and log records are encoded when the request completes, while its data is
//! still in cache, as ready-made list items (`ScopeSpans.spans`, `ScopeLogs.log_records`);
//! the export task only wraps a batch of them in the request. The result decodes to exactly
//! what opentelemetry-proto's conversion of the SDK types used to send.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::logs::Severity;
use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry::{Array, InstrumentationScope, Value};
use opentelemetry_sdk::Resource;

use super::wire;

/// `Span.flags`: the `has_is_remote` bit (always set) and the `is_remote` bit.
const SPAN_FLAGS_HAS_IS_REMOTE: u32 = 0x100;
const SPAN_FLAGS_IS_REMOTE: u32 = 0x200;
/// `Span.SpanKind` values.
const KIND_INTERNAL: u64 = 1;
const KIND_SERVER: u64 = 2;
/// `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;
/// Field number of the items in `ScopeSpans` (`spans`) and `ScopeLogs` (`log_records`).
const ITEM: u32 = 2;

/// A finished span, borrowed from the request it describes.
#[derive(Debug, Clone, Copy)]
pub struct SpanRecord<'a> {
    /// Trace id.
    pub trace_id: TraceId,
    /// This span's id.
    pub span_id: SpanId,
    /// Parent span id; `SpanId::INVALID` for a root.
    pub parent_span_id: SpanId,
    /// W3C trace flags.
    pub flags: TraceFlags,
    /// The caller's `tracestate`.
    pub trace_state: &'a TraceState,
    /// Start time.
    pub start: SystemTime,
    /// End time.
    pub end: SystemTime,
    /// What kind of span, with its attributes.
    pub shape: SpanShape<'a>,
}

/// The two span shapes the server makes.
#[derive(Debug, Clone, Copy)]
pub enum SpanShape<'a> {
    /// The server span of a request.
    Server(ServerSpan<'a>),
    /// A `/storm` child span (`storm.node`, internal).
    Storm {
        /// `storm.branch` attribute.
        branch: u64,
        /// `storm.level` attribute.
        level: u64,
    },
}

/// Name and attributes of a server span.
#[derive(Debug, Clone, Copy)]
pub struct ServerSpan<'a> {
    /// Span name (`"GET /echo"`, or the method alone for unmatched paths).
    pub name: &'a str,
    /// Whether the parent came from the caller's `traceparent`.
    pub parent_is_remote: bool,
    /// `http.request.method`.
    pub method: &'a str,
    /// `http.route`.
    pub route: &'a str,
    /// `http.response.status_code`; 5xx also sets the span status to error.
    pub status: u16,
    /// `url.path`.
    pub path: &'a str,
    /// `url.scheme`.
    pub scheme: &'a str,
    /// `network.protocol.version`.
    pub version: &'a str,
    /// `url.query`, when the request had one.
    pub query: Option<&'a str>,
    /// `user_agent.original`, when sent.
    pub user_agent: Option<&'a str>,
    /// `tenant.id`, when known.
    pub tenant: Option<&'a str>,
    /// `request.id`.
    pub request_id: &'a str,
}

/// A `/storm` child span, kept until the request completes (trace id, flags and
/// `tracestate` are the server span's).
#[derive(Debug, Clone, Copy)]
pub struct StormSpan {
    /// This span's id.
    pub span_id: SpanId,
    /// The span above it in its chain (the server span for the first level).
    pub parent_span_id: SpanId,
    /// Start time.
    pub start: SystemTime,
    /// End time.
    pub end: SystemTime,
    /// `storm.branch` attribute.
    pub branch: u64,
    /// `storm.level` attribute.
    pub level: u64,
}

/// A request-completed log record, borrowed from the request it describes.
#[derive(Debug, Clone, Copy)]
pub struct LogRecord<'a> {
    /// Timestamp (also the observed timestamp).
    pub time: SystemTime,
    /// Severity (`INFO`, `WARN` for 4xx, `ERROR` for 5xx).
    pub severity: Severity,
    /// Trace id of the request.
    pub trace_id: TraceId,
    /// Server span id of the request.
    pub span_id: SpanId,
    /// W3C trace flags.
    pub flags: TraceFlags,
    /// `request_id` attribute.
    pub request_id: &'a str,
    /// `method` attribute.
    pub method: &'a str,
    /// `route` attribute.
    pub route: &'a str,
    /// `status` attribute.
    pub status: u16,
    /// `duration_ms` attribute.
    pub duration_ms: f64,
    /// `tenant_id` attribute, when known.
    pub tenant: Option<&'a str>,
}

/// Body of every log record.
pub const LOG_BODY: &str = "request completed";

/// Appends `span` as an item of `ScopeSpans.spans` (tag, length, `Span`).
pub fn span_item(buf: &mut Vec<u8>, span: &SpanRecord<'_>) {
    // Room for the fixed fields and attribute keys, plus the variable strings.
    buf.reserve(match &span.shape {
        SpanShape::Server(h) => {
            320 + h.name.len()
                + h.path.len()
                + h.query.map_or(0, str::len)
                + h.user_agent.map_or(0, str::len)
                + h.tenant.map_or(0, str::len)
                + h.request_id.len()
        }
        SpanShape::Storm { .. } => 128,
    });
    let at = wire::begin_2(buf, ITEM);
    self::span(buf, span);
    wire::end_2(buf, at);
}

/// Appends `log` as an item of `ScopeLogs.log_records` (tag, length, `LogRecord`).
pub fn log_item(buf: &mut Vec<u8>, log: &LogRecord<'_>) {
    // Room for the fixed fields and attribute keys, plus the variable strings.
    buf.reserve(192 + log.request_id.len() + log.route.len() + log.tenant.map_or(0, str::len));
    let at = wire::begin_2(buf, ITEM);
    self::log(buf, log);
    wire::end_2(buf, at);
}

/// The resource and scope every request carries, encoded once.
#[derive(Debug, Clone)]
pub struct Envelope {
    resource: Vec<u8>,
    scope: Vec<u8>,
    resource_schema_url: Option<String>,
}

impl Envelope {
    /// Encodes `resource` and `scope`.
    pub fn new(resource: &Resource, scope: &InstrumentationScope) -> Self {
        let mut r = Vec::new();
        for (k, v) in resource.iter() {
            key_value(&mut r, 1, k.as_str(), v);
        }
        let mut s = Vec::new();
        string(&mut s, 1, scope.name());
        string(&mut s, 2, scope.version().unwrap_or_default());
        for kv in scope.attributes() {
            key_value(&mut s, 3, kv.key.as_str(), &kv.value);
        }
        Self {
            resource: r,
            scope: s,
            // An empty schema URL is proto3's default: not written.
            resource_schema_url: resource
                .schema_url()
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
        }
    }

    /// Bytes to leave free in front of a batch's items for [`Self::wrap`] (the most the
    /// request's head can take).
    pub fn head_room(&self) -> usize {
        // Four length-delimited headers, each at most a tag byte and a 5-byte length.
        4 * 6 + self.resource.len() + self.scope.len()
    }

    /// Turns `buf[items..]`, a batch of items (made by [`span_item`] or [`log_item`], one
    /// signal only) with at least [`Self::head_room`] free bytes before it, into the export
    /// request in place: the head goes just before the items, the tail after them, and
    /// the items are never copied. Returns where the request starts in `buf`.
    /// `ExportTraceServiceRequest` and `ExportLogsServiceRequest` share their layout:
    /// `resource_*` 1 > (`resource` 1, `scope_*` 2 > (`scope` 1, items 2), `schema_url` 3).
    pub fn wrap(&self, buf: &mut Vec<u8>, items: usize) -> usize {
        let items_len = buf.len() - items;
        if items_len == 0 {
            return items;
        }
        let scope_len = wire::header_len(1, self.scope.len()) + items_len;
        let schema_len = self
            .resource_schema_url
            .as_deref()
            .map_or(0, |u| wire::header_len(3, u.len()));
        let outer_len =
            wire::header_len(1, self.resource.len()) + wire::header_len(2, scope_len) + schema_len;
        let mut head = Vec::with_capacity(self.head_room());
        wire::header(&mut head, 1, outer_len);
        wire::header(&mut head, 1, self.resource.len());
        head.extend_from_slice(&self.resource);
        wire::header(&mut head, 2, scope_len);
        wire::header(&mut head, 1, self.scope.len());
        head.extend_from_slice(&self.scope);
        let start = items - head.len();
        buf[start..items].copy_from_slice(&head);
        if let Some(url) = &self.resource_schema_url {
            wire::bytes(buf, 3, url.as_bytes());
        }
        start
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A string field, left out when empty (proto3).
fn string(buf: &mut Vec<u8>, field: u32, v: &str) {
    if !v.is_empty() {
        wire::bytes(buf, field, v.as_bytes());
    }
}

/// A `KeyValue` (non-empty `key`) whose `AnyValue` body, `any_len` bytes, `value` writes.
#[inline]
fn kv(buf: &mut Vec<u8>, field: u32, key: &str, any_len: usize, value: impl FnOnce(&mut Vec<u8>)) {
    let key_len = wire::header_len(1, key.len());
    let kv_len = key_len + wire::header_len(2, any_len);
    wire::header(buf, field, kv_len);
    wire::bytes(buf, 1, key.as_bytes());
    wire::header(buf, 2, any_len);
    value(buf);
}

/// A `KeyValue` with a string value.
#[inline]
fn kv_str(buf: &mut Vec<u8>, field: u32, key: &str, v: &str) {
    let (k, v) = (key.as_bytes(), v.as_bytes());
    // The usual attribute: field, key and value all short, so every tag and length takes
    // one byte and the pair goes out in four copies.
    let kv_len = 2 + k.len() + 4 + v.len();
    if field < 16 && kv_len < 0x80 {
        buf.extend_from_slice(&[(field << 3 | 2) as u8, kv_len as u8, 0x0a, k.len() as u8]);
        buf.extend_from_slice(k);
        buf.extend_from_slice(&[0x12, (2 + v.len()) as u8, 0x0a, v.len() as u8]);
        buf.extend_from_slice(v);
        return;
    }
    kv(buf, field, key, wire::header_len(1, v.len()), |buf| {
        wire::bytes(buf, 1, v)
    });
}

/// A `KeyValue` with an int value.
#[inline]
fn kv_int(buf: &mut Vec<u8>, field: u32, key: &str, v: i64) {
    kv(buf, field, key, 1 + wire::varint_len(v as u64), |buf| {
        wire::uint(buf, 3, v as u64)
    });
}

/// A `KeyValue` with a double value.
#[inline]
fn kv_double(buf: &mut Vec<u8>, field: u32, key: &str, v: f64) {
    kv(buf, field, key, 9, |buf| wire::fixed64(buf, 4, v.to_bits()));
}

/// A `KeyValue` of any attribute value.
fn key_value(buf: &mut Vec<u8>, field: u32, key: &str, v: &Value) {
    let kv = wire::begin(buf, field);
    string(buf, 1, key);
    let any = wire::begin(buf, 2);
    any_value(buf, v);
    wire::end(buf, any);
    wire::end(buf, kv);
}

/// The `oneof` of an `AnyValue` (always written, even when zero).
fn any_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => wire::bytes(buf, 1, s.as_str().as_bytes()),
        Value::Bool(b) => wire::uint(buf, 2, u64::from(*b)),
        Value::I64(i) => wire::uint(buf, 3, *i as u64),
        Value::F64(f) => wire::fixed64(buf, 4, f.to_bits()),
        Value::Array(a) => {
            let array = wire::begin(buf, 5);
            let mut item = |v: Value| {
                let at = wire::begin(buf, 1);
                any_value(buf, &v);
                wire::end(buf, at);
            };
            match a {
                Array::Bool(v) => v.iter().for_each(|x| item(Value::Bool(*x))),
                Array::I64(v) => v.iter().for_each(|x| item(Value::I64(*x))),
                Array::F64(v) => v.iter().for_each(|x| item(Value::F64(*x))),
                Array::String(v) => v.iter().for_each(|x| item(Value::String(x.clone()))),
                _ => {}
            }
            wire::end(buf, array);
        }
        // Value is non-exhaustive; any later variant goes as its string form.
        other => wire::bytes(buf, 1, other.as_str().as_bytes()),
    }
}

fn span(buf: &mut Vec<u8>, s: &SpanRecord<'_>) {
    wire::bytes(buf, 1, &s.trace_id.to_bytes());
    wire::bytes(buf, 2, &s.span_id.to_bytes());
    string(buf, 3, &s.trace_state.header());
    if s.parent_span_id != SpanId::INVALID {
        wire::bytes(buf, 4, &s.parent_span_id.to_bytes());
    }
    let (name, kind, remote) = match &s.shape {
        SpanShape::Server(h) => (h.name, KIND_SERVER, h.parent_is_remote),
        SpanShape::Storm { .. } => ("storm.node", KIND_INTERNAL, false),
    };
    string(buf, 5, name);
    wire::uint(buf, 6, kind);
    wire::fixed64(buf, 7, nanos(s.start));
    wire::fixed64(buf, 8, nanos(s.end));
    let mut error_status = None;
    match &s.shape {
        SpanShape::Server(h) => {
            kv_str(buf, 9, "http.request.method", h.method);
            kv_str(buf, 9, "http.route", h.route);
            kv_int(buf, 9, "http.response.status_code", i64::from(h.status));
            kv_str(buf, 9, "url.path", h.path);
            kv_str(buf, 9, "url.scheme", h.scheme);
            kv_str(buf, 9, "network.protocol.version", h.version);
            if let Some(q) = h.query {
                kv_str(buf, 9, "url.query", q);
            }
            if let Some(ua) = h.user_agent {
                kv_str(buf, 9, "user_agent.original", ua);
            }
            if let Some(t) = h.tenant {
                kv_str(buf, 9, "tenant.id", t);
            }
            kv_str(buf, 9, "request.id", h.request_id);
            if h.status >= 500 {
                error_status = Some(h.status);
            }
        }
        SpanShape::Storm { branch, level } => {
            kv_int(buf, 9, "storm.branch", *branch as i64);
            kv_int(buf, 9, "storm.level", *level as i64);
        }
    }
    // Status is always present (Unset is the empty message).
    let status = wire::begin(buf, 15);
    if let Some(code) = error_status {
        let message = wire::begin(buf, 2);
        buf.extend_from_slice(b"HTTP ");
        buf.extend_from_slice(code.to_string().as_bytes());
        wire::end(buf, message);
        wire::uint(buf, 3, STATUS_ERROR);
    }
    wire::end(buf, status);
    let flags = u32::from(s.flags.to_u8())
        | SPAN_FLAGS_HAS_IS_REMOTE
        | if remote { SPAN_FLAGS_IS_REMOTE } else { 0 };
    wire::fixed32(buf, 16, flags);
}

fn log(buf: &mut Vec<u8>, l: &LogRecord<'_>) {
    let t = nanos(l.time);
    wire::fixed64(buf, 1, t);
    wire::uint(buf, 2, l.severity as u64);
    string(buf, 3, l.severity.name());
    let body = wire::begin(buf, 5);
    wire::bytes(buf, 1, LOG_BODY.as_bytes());
    wire::end(buf, body);
    kv_str(buf, 6, "request_id", l.request_id);
    kv_str(buf, 6, "method", l.method);
    kv_str(buf, 6, "route", l.route);
    kv_int(buf, 6, "status", i64::from(l.status));
    kv_double(buf, 6, "duration_ms", l.duration_ms);
    if let Some(t) = l.tenant {
        kv_str(buf, 6, "tenant_id", t);
    }
    let flags = u32::from(l.flags.to_u8());
    if flags != 0 {
        wire::fixed32(buf, 8, flags);
    }
    wire::bytes(buf, 9, &l.trace_id.to_bytes());
    wire::bytes(buf, 10, &l.span_id.to_bytes());
    wire::fixed64(buf, 11, t);
}

#[cfg(test)]
mod tests {
    //! The encoder against the reference: the same spans and log records built as the SDK
    //! types the server used to export, converted by opentelemetry-proto, and compared
    //! with what prost decodes from our bytes.

    use std::borrow::Cow;
    use std::sync::Arc;
    use std::time::Duration;

    use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};
    use opentelemetry::trace::{SpanContext, SpanKind, Status};
    use opentelemetry::{KeyValue, StringValue};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::logs::{LogBatch, SdkLoggerProvider};
    use opentelemetry_sdk::trace::SpanData;
    use prost::Message as _;

    use super::*;

    /// The export request of `items`, wrapped in place as the export task does.
    fn request(envelope: &Envelope, items: &[u8]) -> Vec<u8> {
        let mut buf = vec![0xee; envelope.head_room()];
        buf.extend_from_slice(items);
        let start = envelope.wrap(&mut buf, envelope.head_room());
        buf.split_off(start)
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_service_name("echo-test")
            .with_attribute(KeyValue::new("deployment.environment", "ci"))
            .with_attribute(KeyValue::new("telemetry.sdk.language", "rust"))
            .build()
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("echo-server")
            .with_version("0.1.0")
            .build()
    }

    fn at(micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_790_000_000) + Duration::from_micros(micros)
    }

    fn trace_state(optional: bool) -> &'static TraceState {
        static SOME: std::sync::LazyLock<TraceState> = std::sync::LazyLock::new(|| {
            TraceState::from_key_value([("vendor", "x1"), ("other", "y")]).unwrap()
        });
        if optional { &SOME } else { &TraceState::NONE }
    }

    fn server(status: u16, remote: bool, optional: bool) -> SpanRecord<'static> {
        SpanRecord {
            trace_id: TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            span_id: SpanId::from(0x00f0_67aa_0ba9_02b7),
            parent_span_id: if remote {
                SpanId::from(0x1111_2222_3333_4444)
            } else {
                SpanId::INVALID
            },
            flags: if optional {
                TraceFlags::NOT_SAMPLED
            } else {
                TraceFlags::SAMPLED
            },
            trace_state: trace_state(optional),
            start: at(0),
            end: at(1_250),
            shape: SpanShape::Server(ServerSpan {
                name: "GET /api/{*path}",
                parent_is_remote: remote,
                method: "GET",
                route: "/api/{*path}",
                status,
                path: "/api/pay",
                scheme: "http",
                version: "1.1",
                // Long enough that its lengths take two bytes.
                query: optional.then(|| &*format!("status=503&pad={}", "x".repeat(300)).leak()),
                // An empty value is still a value.
                user_agent: optional.then_some(""),
                tenant: optional.then_some("team-alpha"),
                request_id: "r-1",
            }),
        }
    }

    fn storm(root: &SpanRecord<'static>, width: u64, depth: u64) -> Vec<SpanRecord<'static>> {
        let mut out = Vec::new();
        let mut next = 0x100u64;
        for branch in 0..width {
            let mut parent = root.span_id;
            for level in 0..depth {
                next += 1;
                let id = SpanId::from(next);
                out.push(SpanRecord {
                    span_id: id,
                    parent_span_id: parent,
                    start: at(level),
                    end: at(level + 1),
                    shape: SpanShape::Storm { branch, level },
                    ..*root
                });
                parent = id;
            }
        }
        out
    }

    /// The span as the server built it for the SDK exporter.
    fn sdk_span(s: &SpanRecord<'_>) -> SpanData {
        let (kind, name, remote, attributes, status) = match &s.shape {
            SpanShape::Server(h) => {
                let mut a = vec![
                    KeyValue::new("http.request.method", h.method.to_owned()),
                    KeyValue::new("http.route", h.route.to_owned()),
                    KeyValue::new("http.response.status_code", i64::from(h.status)),
                    KeyValue::new("url.path", h.path.to_owned()),
                    KeyValue::new("url.scheme", h.scheme.to_owned()),
                    KeyValue::new("network.protocol.version", h.version.to_owned()),
                ];
                if let Some(q) = h.query {
                    a.push(KeyValue::new("url.query", q.to_owned()));
                }
                if let Some(ua) = h.user_agent {
                    a.push(KeyValue::new("user_agent.original", ua.to_owned()));
                }
                if let Some(t) = h.tenant {
                    a.push(KeyValue::new(
                        "tenant.id",
                        StringValue::from(Arc::<str>::from(t)),
                    ));
                }
                a.push(KeyValue::new(
                    "request.id",
                    StringValue::from(Arc::<str>::from(h.request_id)),
                ));
                let status = if h.status >= 500 {
                    Status::error(format!("HTTP {}", h.status))
                } else {
                    Status::Unset
                };
                (SpanKind::Server, h.name, h.parent_is_remote, a, status)
            }
            SpanShape::Storm { branch, level } => (
                SpanKind::Internal,
                "storm.node",
                false,
                vec![
                    KeyValue::new("storm.branch", *branch as i64),
                    KeyValue::new("storm.level", *level as i64),
                ],
                Status::Unset,
            ),
        };
        SpanData {
            span_context: SpanContext::new(
                s.trace_id,
                s.span_id,
                s.flags,
                false,
                s.trace_state.clone(),
            ),
            parent_span_id: s.parent_span_id,
            parent_span_is_remote: remote,
            span_kind: kind,
            name: Cow::Owned(name.to_owned()),
            start_time: s.start,
            end_time: s.end,
            attributes,
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status,
            instrumentation_scope: scope(),
        }
    }

    fn sorted_resource_attrs<T>(
        m: &mut T,
        resources: impl Fn(&mut T) -> Vec<&mut Vec<opentelemetry_proto::tonic::common::v1::KeyValue>>,
    ) {
        for attrs in resources(m) {
            attrs.sort_by(|a, b| a.key.cmp(&b.key));
        }
    }

    #[test]
    fn spans_decode_to_what_the_sdk_conversion_sends() {
        let res = resource();
        let envelope = Envelope::new(&res, &scope());
        let root = server(503, true, true);
        let mut spans = storm(&root, 3, 2);
        spans.push(root);
        spans.push(server(200, false, false));
        spans.push(server(404, false, true));

        let mut items = Vec::new();
        for s in &spans {
            span_item(&mut items, s);
        }
        let buf = request(&envelope, &items);
        let mut got = ExportTraceServiceRequest::decode(&buf[..]).unwrap();
        let mut want = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans.iter().map(sdk_span).collect(),
                &ResourceAttributesWithSchema::from(&res),
            ),
        };
        for m in [&mut got, &mut want] {
            sorted_resource_attrs(m, |m| {
                m.resource_spans
                    .iter_mut()
                    .filter_map(|r| r.resource.as_mut())
                    .map(|r| &mut r.attributes)
                    .collect()
            });
        }
        assert_eq!(got.resource_spans.len(), 1);
        assert_eq!(got.resource_spans[0].scope_spans.len(), 1);
        let (g, w) = (
            &got.resource_spans[0].scope_spans[0],
            &want.resource_spans[0].scope_spans[0],
        );
        assert_eq!(g.scope, w.scope);
        assert_eq!(g.spans.len(), 9);
        for (g, w) in g.spans.iter().zip(&w.spans) {
            assert_eq!(g, w, "span {}", w.name);
        }
        // /storm: each chain hangs below the server span, one level at a time.
        let children = &got.resource_spans[0].scope_spans[0].spans[..6];
        assert_eq!(children[0].parent_span_id, spans[6].span_id.to_bytes());
        assert_eq!(children[1].parent_span_id, children[0].span_id);
        assert_eq!(children[2].parent_span_id, spans[6].span_id.to_bytes());
        assert_eq!(got, want);
    }

    #[test]
    fn log_records_decode_to_what_the_sdk_conversion_sends() {
        let res = resource();
        let scope = scope();
        let envelope = Envelope::new(&res, &scope);
        let logs = [
            LogRecord {
                time: at(7),
                severity: Severity::Info,
                trace_id: TraceId::from(0xabc),
                span_id: SpanId::from(0xdef),
                flags: TraceFlags::SAMPLED,
                request_id: "r-1",
                method: "GET",
                route: "/echo",
                status: 200,
                duration_ms: 0.0,
                tenant: Some("team-alpha"),
            },
            LogRecord {
                time: at(9),
                severity: Severity::Error,
                trace_id: TraceId::from(0x123),
                span_id: SpanId::from(0x456),
                flags: TraceFlags::NOT_SAMPLED,
                request_id: "0123456789abcdef",
                method: "POST",
                route: "unmatched",
                status: 503,
                duration_ms: 12.5,
                tenant: None,
            },
        ];
        // The records as the server built them for the SDK's OTLP log exporter.
        let provider = SdkLoggerProvider::builder().build();
        let logger = provider.logger("echo-test");
        let sdk: Vec<_> = logs
            .iter()
            .map(|l| {
                let mut rec = logger.create_log_record();
                rec.set_timestamp(l.time);
                rec.set_observed_timestamp(l.time);
                rec.set_severity_number(l.severity);
                rec.set_severity_text(l.severity.name());
                rec.set_body(AnyValue::from(LOG_BODY));
                rec.set_trace_context(l.trace_id, l.span_id, Some(l.flags));
                rec.add_attribute(
                    "request_id",
                    StringValue::from(Arc::<str>::from(l.request_id)),
                );
                rec.add_attribute("method", l.method);
                rec.add_attribute("route", l.route);
                rec.add_attribute("status", i64::from(l.status));
                rec.add_attribute("duration_ms", l.duration_ms);
                if let Some(t) = l.tenant {
                    rec.add_attribute("tenant_id", StringValue::from(Arc::<str>::from(t)));
                }
                rec
            })
            .collect();
        let refs: Vec<_> = sdk.iter().map(|r| (r, &scope)).collect();
        let mut want = ExportLogsServiceRequest {
            resource_logs: group_logs_by_resource_and_scope(
                &LogBatch::new(&refs),
                &ResourceAttributesWithSchema::from(&res),
            ),
        };

        let mut items = Vec::new();
        for l in &logs {
            log_item(&mut items, l);
        }
        let buf = request(&envelope, &items);
        let mut got = ExportLogsServiceRequest::decode(&buf[..]).unwrap();
        for m in [&mut got, &mut want] {
            sorted_resource_attrs(m, |m| {
                m.resource_logs
                    .iter_mut()
                    .filter_map(|r| r.resource.as_mut())
                    .map(|r| &mut r.attributes)
                    .collect()
            });
        }
        let (g, w) = (
            &got.resource_logs[0].scope_logs[0],
            &want.resource_logs[0].scope_logs[0],
        );
        assert_eq!(g.scope, w.scope);
        assert_eq!(g.log_records.len(), 2);
        for (g, w) in g.log_records.iter().zip(&w.log_records) {
            assert_eq!(g, w);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn an_empty_batch_is_an_empty_request() {
        let envelope = Envelope::new(&resource(), &scope());
        assert!(request(&envelope, &[]).is_empty());
    }

    #[test]
    fn batches_of_any_size_are_wrapped_in_place() {
        let envelope = Envelope::new(&resource(), &scope());
        // 20 000 spans take megabytes: every length in the head needs several bytes.
        for n in [1, 300, 20_000] {
            let mut items = Vec::new();
            for _ in 0..n {
                span_item(&mut items, &server(200, false, false));
            }
            let got = ExportTraceServiceRequest::decode(&request(&envelope, &items)[..]).unwrap();
            let spans = &got.resource_spans[0].scope_spans[0].spans;
            assert_eq!(spans.len(), n);
            assert_eq!(spans[n - 1].name, spans[0].name);
        }
    }

    #[test]
    fn a_schema_url_is_carried() {
        let res = Resource::builder_empty()
            .with_schema_url(
                [KeyValue::new("service.name", "s")],
                "https://opentelemetry.io/schemas/1.30.0",
            )
            .build();
        let envelope = Envelope::new(&res, &scope());
        let mut items = Vec::new();
        span_item(&mut items, &server(200, false, false));
        let buf = request(&envelope, &items);
        let got = ExportTraceServiceRequest::decode(&buf[..]).unwrap();
        assert_eq!(
            got.resource_spans[0].schema_url,
            "https://opentelemetry.io/schemas/1.30.0"
        );
        assert_eq!(got.resource_spans[0].scope_spans[0].spans.len(), 1);
    }
}
