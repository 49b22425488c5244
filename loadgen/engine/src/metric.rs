//! The built-in metrics: one table of names, kinds and a parser, as k6's `metrics/builtin.go`.
//!
//! Thresholds name a metric by its text (`http_req_duration`); [`Metric::parse`] turns it
//! into a [`Metric`] once, and everything after that matches on the enum.

use std::fmt;

use ricochet_verify::Signal;

/// The kind of a metric, which decides the aggregations and units its thresholds may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonic sum (requests, bytes): `count`, `rate` (per second); limits take no unit.
    Counter,
    /// A fraction of true samples (failed requests): `rate`, a fraction between 0 and 1.
    Rate,
    /// A distribution of durations: `p(N)`, `avg`, `med`, `min`, `max`; limits in `ms` by default.
    Trend,
    /// A series of values over time (a query's answers): `last`, `min`, `max`, `avg`,
    /// `med`, `p(N)`, `count`; limits are plain numbers.
    Gauge,
}

impl MetricKind {
    /// The k6 word for the kind, as used in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Rate => "rate",
            MetricKind::Trend => "trend",
            MetricKind::Gauge => "query series",
        }
    }

    /// The aggregations a threshold on a metric of this kind may use, for error messages.
    pub fn valid_aggregations(self) -> &'static str {
        match self {
            MetricKind::Counter => "`count` or `rate`",
            MetricKind::Rate => "`rate`",
            MetricKind::Trend => "`p(N)`, `avg`, `med`, `min` or `max`",
            MetricKind::Gauge => "`last`, `min`, `max`, `avg`, `med`, `p(N)` or `count`",
        }
    }
}

/// A built-in metric a threshold may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `http_reqs`: requests completed.
    HttpReqs,
    /// `http_req_duration`: completion − scheduled instant.
    HttpReqDuration,
    /// `http_req_waiting`: first byte − scheduled instant.
    HttpReqWaiting,
    /// `http_req_service_duration`: completion − actual send.
    HttpReqServiceDuration,
    /// `http_req_schedule_lag`: the iteration's start − its scheduled instant.
    HttpReqScheduleLag,
    /// `http_req_blocked`: actual send − the iteration's start (waiting for a connection).
    HttpReqBlocked,
    /// `http_req_connecting`: the TCP connect, requests that opened their connection.
    HttpReqConnecting,
    /// `http_req_tls_handshaking`: the TLS handshake, `https://` requests that opened
    /// their connection.
    HttpReqTlsHandshaking,
    /// `http_stream_duration`: last byte − scheduled instant (streamed requests only).
    HttpStreamDuration,
    /// `http_req_failed`: the fraction of failed requests.
    HttpReqFailed,
    /// `iterations`: completed iterations.
    Iterations,
    /// `dropped_iterations`: iterations not started because `maxInFlight` was reached.
    DroppedIterations,
    /// `interrupted_iterations`: iterations cut off after `gracefulStop`.
    InterruptedIterations,
    /// `data_sent`: bytes sent.
    DataSent,
    /// `data_received`: bytes received.
    DataReceived,
    /// `telemetry_<signal>_<what>`: the telemetry round trip, judged on the verifiers'
    /// tallies over the whole run, untagged.
    Telemetry(RoundTrip),
    /// `query{name:<name>}`: the values a `spec.queries` entry returned over the run.
    Query,
    /// `alert_<what>`: an alert drill's measurements.
    Alert(AlertMeasure),
}

/// A measurement of an alert drill (`spec.alerts`), per alert (`{alert:<alertname>}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertMeasure {
    /// `alert_time_to_fire`: from the fault's start to the alert seen firing.
    TimeToFire,
    /// `alert_time_to_notify`: from the fault's start to the receiver's firing notification.
    TimeToNotify,
    /// `alert_time_to_resolve`: from the fault's end to the alert no longer firing.
    TimeToResolve,
    /// `alert_unexpected`: times an alert that had to stay silent was seen firing or
    /// notified.
    Unexpected,
}

/// A measurement of the telemetry round trip (`spec.telemetry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoundTrip {
    /// `telemetry_<signal>_missing`: the fraction of sampled requests whose signal did not arrive.
    Missing(Signal),
    /// `telemetry_trace_incomplete`: the fraction of traces found incomplete.
    TraceIncomplete,
    /// `telemetry_<signal>_unknown`: the fraction that could not be checked.
    Unknown(Signal),
    /// `telemetry_<signal>_ingest_latency`: from the request to its signal being found.
    IngestLatency(Signal),
    /// `telemetry_<signal>_query_duration`: how long the backend's queries took.
    QueryDuration(Signal),
    /// `telemetry_<signal>_export_wait`: from the request to the workload's export of its
    /// telemetry being acknowledged (latency probes, from the echo-server's ledger).
    ExportWait(Signal),
    /// `telemetry_<signal>_backend_latency`: from that acknowledgement to the telemetry
    /// being queryable: the backend's part of the ingest latency.
    BackendLatency(Signal),
}

impl RoundTrip {
    /// The signal measured.
    pub fn signal(self) -> Signal {
        match self {
            RoundTrip::Missing(s)
            | RoundTrip::Unknown(s)
            | RoundTrip::IngestLatency(s)
            | RoundTrip::QueryDuration(s)
            | RoundTrip::ExportWait(s)
            | RoundTrip::BackendLatency(s) => s,
            RoundTrip::TraceIncomplete => Signal::Traces,
        }
    }
}

impl Metric {
    /// Every built-in metric, in table order (the order of the "unknown metric" error and of
    /// the summary's metrics).
    pub const ALL: [Metric; 37] = {
        use RoundTrip as R;
        use Signal::{Logs, Metrics, Traces};
        [
            Metric::HttpReqs,
            Metric::HttpReqDuration,
            Metric::HttpReqWaiting,
            Metric::HttpReqServiceDuration,
            Metric::HttpReqScheduleLag,
            Metric::HttpReqBlocked,
            Metric::HttpReqConnecting,
            Metric::HttpReqTlsHandshaking,
            Metric::HttpStreamDuration,
            Metric::HttpReqFailed,
            Metric::Iterations,
            Metric::DroppedIterations,
            Metric::InterruptedIterations,
            Metric::DataSent,
            Metric::DataReceived,
            Metric::Telemetry(R::Missing(Traces)),
            Metric::Telemetry(R::Missing(Logs)),
            Metric::Telemetry(R::Missing(Metrics)),
            Metric::Telemetry(R::TraceIncomplete),
            Metric::Telemetry(R::Unknown(Traces)),
            Metric::Telemetry(R::Unknown(Logs)),
            Metric::Telemetry(R::Unknown(Metrics)),
            Metric::Telemetry(R::IngestLatency(Traces)),
            Metric::Telemetry(R::IngestLatency(Logs)),
            Metric::Telemetry(R::IngestLatency(Metrics)),
            Metric::Telemetry(R::QueryDuration(Traces)),
            Metric::Telemetry(R::QueryDuration(Logs)),
            Metric::Telemetry(R::QueryDuration(Metrics)),
            Metric::Telemetry(R::ExportWait(Traces)),
            Metric::Telemetry(R::ExportWait(Logs)),
            Metric::Telemetry(R::BackendLatency(Traces)),
            Metric::Telemetry(R::BackendLatency(Logs)),
            Metric::Query,
            Metric::Alert(AlertMeasure::TimeToFire),
            Metric::Alert(AlertMeasure::TimeToNotify),
            Metric::Alert(AlertMeasure::TimeToResolve),
            Metric::Alert(AlertMeasure::Unexpected),
        ]
    };

    /// The metric named `name` exactly, `None` for a name not in [`Metric::ALL`].
    pub fn parse(name: &str) -> Option<Metric> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The name thresholds and the summary use, e.g. `http_req_duration`.
    pub fn name(self) -> &'static str {
        use RoundTrip as R;
        use Signal::{Logs, Metrics, Traces};
        match self {
            Metric::HttpReqs => "http_reqs",
            Metric::HttpReqDuration => "http_req_duration",
            Metric::HttpReqWaiting => "http_req_waiting",
            Metric::HttpReqServiceDuration => "http_req_service_duration",
            Metric::HttpReqScheduleLag => "http_req_schedule_lag",
            Metric::HttpReqBlocked => "http_req_blocked",
            Metric::HttpReqConnecting => "http_req_connecting",
            Metric::HttpReqTlsHandshaking => "http_req_tls_handshaking",
            Metric::HttpStreamDuration => "http_stream_duration",
            Metric::HttpReqFailed => "http_req_failed",
            Metric::Iterations => "iterations",
            Metric::DroppedIterations => "dropped_iterations",
            Metric::InterruptedIterations => "interrupted_iterations",
            Metric::DataSent => "data_sent",
            Metric::DataReceived => "data_received",
            Metric::Telemetry(r) => match r {
                R::Missing(Traces) => "telemetry_trace_missing",
                R::Missing(Logs) => "telemetry_log_missing",
                R::Missing(Metrics) => "telemetry_metric_missing",
                R::TraceIncomplete => "telemetry_trace_incomplete",
                R::Unknown(Traces) => "telemetry_trace_unknown",
                R::Unknown(Logs) => "telemetry_log_unknown",
                R::Unknown(Metrics) => "telemetry_metric_unknown",
                R::IngestLatency(Traces) => "telemetry_trace_ingest_latency",
                R::IngestLatency(Logs) => "telemetry_log_ingest_latency",
                R::IngestLatency(Metrics) => "telemetry_metric_ingest_latency",
                R::QueryDuration(Traces) => "telemetry_trace_query_duration",
                R::QueryDuration(Logs) => "telemetry_log_query_duration",
                R::QueryDuration(Metrics) => "telemetry_metric_query_duration",
                R::ExportWait(Traces) => "telemetry_trace_export_wait",
                R::ExportWait(Logs) => "telemetry_log_export_wait",
                // Exemplars are not exported by the workload's OTLP exporter.
                R::ExportWait(Metrics) => "telemetry_metric_export_wait",
                R::BackendLatency(Traces) => "telemetry_trace_backend_latency",
                R::BackendLatency(Logs) => "telemetry_log_backend_latency",
                R::BackendLatency(Metrics) => "telemetry_metric_backend_latency",
            },
            Metric::Query => "query",
            Metric::Alert(a) => match a {
                AlertMeasure::TimeToFire => "alert_time_to_fire",
                AlertMeasure::TimeToNotify => "alert_time_to_notify",
                AlertMeasure::TimeToResolve => "alert_time_to_resolve",
                AlertMeasure::Unexpected => "alert_unexpected",
            },
        }
    }

    /// The metric's kind.
    pub fn kind(self) -> MetricKind {
        match self {
            Metric::HttpReqs
            | Metric::Alert(AlertMeasure::Unexpected)
            | Metric::Iterations
            | Metric::DroppedIterations
            | Metric::InterruptedIterations
            | Metric::DataSent
            | Metric::DataReceived => MetricKind::Counter,
            Metric::HttpReqFailed => MetricKind::Rate,
            Metric::HttpReqDuration
            | Metric::HttpReqWaiting
            | Metric::HttpReqServiceDuration
            | Metric::HttpReqScheduleLag
            | Metric::HttpReqBlocked
            | Metric::HttpReqConnecting
            | Metric::HttpReqTlsHandshaking
            | Metric::HttpStreamDuration
            | Metric::Alert(
                AlertMeasure::TimeToFire | AlertMeasure::TimeToNotify | AlertMeasure::TimeToResolve,
            ) => MetricKind::Trend,
            Metric::Query => MetricKind::Gauge,
            Metric::Telemetry(
                RoundTrip::Missing(_) | RoundTrip::TraceIncomplete | RoundTrip::Unknown(_),
            ) => MetricKind::Rate,
            Metric::Telemetry(
                RoundTrip::IngestLatency(_)
                | RoundTrip::QueryDuration(_)
                | RoundTrip::ExportWait(_)
                | RoundTrip::BackendLatency(_),
            ) => MetricKind::Trend,
        }
    }

    /// Whether this is a telemetry round-trip metric (judged from the verifiers' tallies,
    /// not from request samples).
    pub fn is_telemetry(self) -> bool {
        matches!(self, Metric::Telemetry(_))
    }

    /// Whether this measures the platform itself (query checks, alert drills), judged on
    /// what the run's platform checks saw, not on request samples.
    pub fn is_platform(self) -> bool {
        matches!(self, Metric::Query | Metric::Alert(_))
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_metric_and_no_other_does() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.name()), Some(m), "{m}");
        }
        let mut names: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len(), "duplicate names");
        for name in [
            "",
            "http_req_durations",
            "HTTP_REQS",
            " http_reqs",
            "telemetry_log_incomplete",
            "telemetry_metric_incomplete",
            "telemetry_traces_missing",
            "telemetry_trace_keep",
        ] {
            assert_eq!(Metric::parse(name), None, "{name}");
        }
    }

    #[test]
    fn telemetry_names_are_telemetry_signal_what() {
        for m in Metric::ALL {
            let Metric::Telemetry(r) = m else {
                assert!(!m.name().starts_with("telemetry_"), "{m}");
                continue;
            };
            let what = match r {
                RoundTrip::Missing(_) => "missing",
                RoundTrip::TraceIncomplete => "incomplete",
                RoundTrip::Unknown(_) => "unknown",
                RoundTrip::IngestLatency(_) => "ingest_latency",
                RoundTrip::QueryDuration(_) => "query_duration",
                RoundTrip::ExportWait(_) => "export_wait",
                RoundTrip::BackendLatency(_) => "backend_latency",
            };
            let want = format!("telemetry_{}_{what}", r.signal().metric_label());
            assert_eq!(m.name(), want);
        }
        let telemetry = Metric::ALL.iter().filter(|m| m.is_telemetry()).count();
        assert_eq!(
            telemetry,
            3 * 4 + 1 + 2 * 2,
            "three signals × four, incomplete traces, and the two legs of traces and logs"
        );
    }

    #[test]
    fn kinds_follow_k6() {
        let kind = |name: &str| Metric::parse(name).map(Metric::kind);
        assert_eq!(kind("http_reqs"), Some(MetricKind::Counter));
        assert_eq!(kind("data_received"), Some(MetricKind::Counter));
        assert_eq!(kind("http_req_failed"), Some(MetricKind::Rate));
        assert_eq!(kind("http_req_blocked"), Some(MetricKind::Trend));
        assert_eq!(kind("http_req_connecting"), Some(MetricKind::Trend));
        assert_eq!(kind("http_req_tls_handshaking"), Some(MetricKind::Trend));
        assert_eq!(kind("telemetry_trace_incomplete"), Some(MetricKind::Rate));
        assert_eq!(kind("telemetry_metric_unknown"), Some(MetricKind::Rate));
        assert_eq!(
            kind("telemetry_log_ingest_latency"),
            Some(MetricKind::Trend)
        );
        assert_eq!(
            kind("telemetry_log_query_duration"),
            Some(MetricKind::Trend)
        );
    }
}
