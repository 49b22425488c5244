//! `spec.output` (and `--output`) lowered into the [`OutputPlan`]: where loadgen pushes its
//! own metrics live, how often, under which names, and which trend statistics.

use std::path::Path;
use std::time::Duration;

use ricochet_crds::OutputSpec;
use ricochet_verify::plan::BackendPlan;

use super::telemetry::backend;
use super::{FieldError, bounded_duration, field_err as err};

/// Default interval between pushes (k6's outputs push every 5 s too).
pub const DEFAULT_FLUSH: Duration = Duration::from_secs(5);
/// Shortest interval between pushes.
pub const MIN_FLUSH: Duration = Duration::from_secs(1);

/// A trend statistic pushed as a gauge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrendStat {
    /// `p(N)`.
    Percentile(f64),
    /// `avg`.
    Avg,
    /// `med`.
    Med,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `count`.
    Count,
    /// `sum`.
    Sum,
}

impl TrendStat {
    /// The metric name suffix k6 uses: `p99`, `p99_9`, `avg`, `med`, ...
    pub fn suffix(self) -> String {
        match self {
            TrendStat::Percentile(p) => format!("p{}", super::number(p).replace('.', "_")),
            TrendStat::Avg => "avg".into(),
            TrendStat::Med => "med".into(),
            TrendStat::Min => "min".into(),
            TrendStat::Max => "max".into(),
            TrendStat::Count => "count".into(),
            TrendStat::Sum => "sum".into(),
        }
    }
}

/// Metric names: `ricochet_http_reqs_total` or k6's `k6_http_reqs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `ricochet_` prefix.
    Ricochet,
    /// `k6_` prefix, as k6's remote-write output names its metrics.
    K6,
}

impl Naming {
    /// The prefix, without the underscore.
    pub fn prefix(self) -> &'static str {
        match self {
            Naming::Ricochet => "ricochet",
            Naming::K6 => "k6",
        }
    }
}

/// Where and how loadgen's metrics are pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputPlan {
    /// Prometheus remote write, with the trend statistics it gets as gauges.
    pub remote_write: Option<(BackendPlan, Vec<TrendStat>)>,
    /// OTLP metrics over HTTP.
    pub otlp: Option<BackendPlan>,
    /// Between pushes.
    pub flush_interval: Duration,
    /// Metric names.
    pub naming: Naming,
    /// Remote write gets trends as native histograms rather than statistic gauges.
    pub native_histograms: bool,
}

/// Parses a trend statistic (`p(99)`, `avg`, ...).
pub fn trend_stat(text: &str) -> Option<TrendStat> {
    Some(match text.trim() {
        "avg" => TrendStat::Avg,
        "med" => TrendStat::Med,
        "min" => TrendStat::Min,
        "max" => TrendStat::Max,
        "count" => TrendStat::Count,
        "sum" => TrendStat::Sum,
        other => {
            let p: f64 = other
                .strip_prefix("p(")?
                .strip_suffix(')')?
                .trim()
                .parse()
                .ok()?;
            if !(0.0..=100.0).contains(&p) {
                return None;
            }
            TrendStat::Percentile(p)
        }
    })
}

/// Validates `spec.output`; `None` when there is no output.
pub fn output_plan(spec: &OutputSpec, base_dir: &Path) -> Result<Option<OutputPlan>, FieldError> {
    const P: &str = "spec.output";
    if spec.prometheus_remote_write.is_none() && spec.otlp.is_none() {
        return Err(err(
            P,
            "names no output: add `prometheusRemoteWrite: {url: http://prometheus:9090/api/v1/write}` and/or `otlp: {url: http://collector:4318}`",
        ));
    }
    let remote_write = match &spec.prometheus_remote_write {
        None => None,
        Some(rw) => {
            let b = backend(&format!("{P}.prometheusRemoteWrite"), &rw.backend, base_dir)?;
            let mut stats = Vec::new();
            for (i, s) in rw.trend_stats.iter().enumerate() {
                let stat = trend_stat(s).ok_or_else(|| {
                    err(
                        format!("{P}.prometheusRemoteWrite.trendStats[{i}]"),
                        format!(
                            "`{s}` is not a trend statistic; expected `p(N)` (N from 0 to 100), `avg`, `med`, `min`, `max`, `count` or `sum`"
                        ),
                    )
                })?;
                stats.push(stat);
            }
            if stats.is_empty() {
                stats.push(TrendStat::Percentile(99.0));
            }
            Some((b, stats))
        }
    };
    let otlp = spec
        .otlp
        .as_ref()
        .map(|b| backend(&format!("{P}.otlp"), b, base_dir))
        .transpose()?;
    let flush_interval = match &spec.flush_interval {
        None => DEFAULT_FLUSH,
        Some(t) => {
            let d = bounded_duration(&format!("{P}.flushInterval"), t)?;
            if d < MIN_FLUSH {
                return Err(err(
                    format!("{P}.flushInterval"),
                    format!("`{t}` is too short; push at most once a second, e.g. `5s`"),
                ));
            }
            d
        }
    };
    let naming = match spec.naming.as_deref() {
        None | Some("ricochet") => Naming::Ricochet,
        Some("k6") => Naming::K6,
        Some(other) => {
            return Err(err(
                format!("{P}.naming"),
                format!("`{other}` is not a naming; expected `ricochet` (default) or `k6`"),
            ));
        }
    };
    Ok(Some(OutputPlan {
        native_histograms: spec
            .prometheus_remote_write
            .as_ref()
            .is_some_and(|r| r.native_histograms),
        remote_write,
        otlp,
        flush_interval,
        naming,
    }))
}
