//! Builders of hand-made [`Plan`]s and [`Stats`] for tests and benchmarks.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::metric::Metric;
use crate::plan::{Executor, Plan, RequestPlan, ScenarioPlan, StagePlan, TargetPlan, TargetUrl};
use crate::stats::{Measurement, SeriesKey, Stats};
use crate::thresholds::{Aggregation, Comparison, Scope, Threshold};

/// A plan against the embedded echo-server with `scenarios`, no thresholds and no
/// telemetry verification (tests of the load engine alone).
pub fn plan_with(scenarios: Vec<ScenarioPlan>) -> Plan {
    Plan {
        name: "test".into(),
        source: None,
        target: TargetPlan::Embedded,
        multiplier: None,
        scenarios,
        thresholds: Vec::new(),
        telemetry: None,
        chaos: crate::plan::chaos::ChaosPlan::default(),
        platform: crate::plan::platform::PlatformPlan::default(),
        output: None,
        embedded_listen: None,
    }
}

/// A target URL such as `http://127.0.0.1:8080` with 256 connections and a 10 s timeout.
pub fn target(url: &str) -> TargetPlan {
    TargetPlan::Url(TargetUrl {
        base: url.parse().unwrap_or_default(),
        http2: false,
        max_connections: NonZeroU32::new(256).unwrap_or(NonZeroU32::MIN),
        timeout: Duration::from_secs(10),
        replicas: Vec::new(),
        tls: Box::default(),
    })
}

/// A GET request named after its path.
pub fn get(path: &str) -> RequestPlan {
    RequestPlan {
        name: path.trim_start_matches('/').into(),
        method: http::Method::GET,
        path_and_query: path.into(),
        headers: http::HeaderMap::new(),
        body: Bytes::new(),
        weight: NonZeroU32::MIN,
        stream: false,
    }
}

/// A constant-arrival-rate scenario of `rate`/s for 1 s, GET `path`.
pub fn scenario(name: &str, rate: f64, path: &str) -> ScenarioPlan {
    ScenarioPlan {
        name: name.into(),
        executor: Executor::ConstantArrivalRate {
            rate,
            duration: Duration::from_secs(1),
        },
        start_time: Duration::ZERO,
        graceful_stop: Duration::from_secs(5),
        max_in_flight: NonZeroU32::new(10_000).unwrap_or(NonZeroU32::MIN),
        tags: BTreeMap::new(),
        requests: vec![get(path)],
    }
}

/// A ramping stage.
pub fn stage(target: f64, secs: u64, name: Option<&str>) -> StagePlan {
    StagePlan {
        target,
        duration: Duration::from_secs(secs),
        name: name.map(str::to_owned),
    }
}

/// A threshold on `metric` with `filter`, e.g. `p(99) < limit`.
pub fn threshold(
    metric: Metric,
    filter: &[(&str, &str)],
    aggregation: Aggregation,
    comparison: Comparison,
    limit: f64,
) -> Threshold {
    let filter: BTreeMap<String, String> = filter
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let key = if filter.is_empty() {
        metric.name().to_owned()
    } else {
        let tags: Vec<String> = filter.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("{metric}{{{}}}", tags.join(","))
    };
    Threshold {
        key,
        metric,
        filter,
        expression: format!("{aggregation:?} {comparison:?} {limit}"),
        aggregation,
        comparison,
        limit,
        abort_on_fail: false,
        delay_abort_eval: Duration::ZERO,
        scope: Scope::Run,
    }
}

/// Stats of one finished request per entry of `latencies_ms`, sent at once and answered
/// with `status` (failed from 400), of request 0 of scenario `scenario` in `phase` (the
/// 1-based stage, 0 for none).
pub fn requests(scenario: u16, phase: u16, status: u16, latencies_ms: &[u64]) -> Stats {
    let mut stats = Stats::default();
    let t0 = Instant::now();
    for &ms in latencies_ms {
        stats.record(&Measurement {
            key: SeriesKey {
                scenario,
                request: 0,
                status,
                phase,
            },
            failed: status >= 400,
            stream: false,
            scheduled: t0,
            started: t0,
            sent: t0,
            first_byte: t0,
            end: t0 + Duration::from_millis(ms),
            bytes_sent: 1,
            bytes_received: 1,
            connected: None,
        });
    }
    stats
}
