//! Fixture summaries for tests, the benchmark and the browser check: a realistic
//! two-scenario run (thresholds pass/fail/unknown, telemetry, chaos), the same with the
//! platform's queries and alerts, and a large one.
//!
//! Deterministic: values come from closed-form curves, not a random generator.

#![allow(dead_code)]

use std::collections::BTreeMap;

use ricochet_reports::model::*;

/// A 2-minute run of `api` (960/s) and `chat` (240/s) at 3x GA with a telemetry drop
/// chaos window from 60 s to 90 s; one threshold fails, one is unknown.
pub fn realistic() -> Summary {
    let scenarios = vec![
        scenario("api", 960.0, 120, 12.0, 1.0, (60.0, 90.0)),
        scenario("chat", 240.0, 120, 380.0, 0.25, (60.0, 90.0)),
    ];
    let time_series = merge(&scenarios);
    let mut metrics = BTreeMap::new();
    let mut total_reqs = 0;
    let mut total_errs = 0;
    for s in &scenarios {
        let reqs: u64 = s.time_series.iter().map(|p| p.requests).sum();
        let errs: u64 = s.time_series.iter().map(|p| p.errors).sum();
        total_reqs += reqs;
        total_errs += errs;
        let t = trend_of(&s.latency_percentiles);
        metrics.insert(
            format!("http_req_duration{{scenario:{}}}", s.name),
            trend(reqs, 120.0, t),
        );
        metrics.insert(
            format!("http_reqs{{scenario:{}}}", s.name),
            counter(reqs, 120.0),
        );
        metrics.insert(
            format!("http_req_failed{{scenario:{}}}", s.name),
            rate(reqs, errs),
        );
    }
    metrics.insert(
        "http_req_duration".to_owned(),
        trend(
            total_reqs,
            120.0,
            TrendStats {
                min: 0.9,
                avg: 84.2,
                med: 14.1,
                p90: 402.5,
                p95: 455.0,
                p99: 731.9,
                max: 1642.0,
            },
        ),
    );
    metrics.insert("http_reqs".to_owned(), counter(total_reqs, 120.0));
    metrics.insert("http_req_failed".to_owned(), rate(total_reqs, total_errs));
    metrics.insert(
        "http_stream_duration{scenario:chat}".to_owned(),
        trend(
            28_800,
            120.0,
            TrendStats {
                min: 402.0,
                avg: 811.0,
                med: 780.0,
                p90: 1090.0,
                p95: 1187.0,
                p99: 1402.0,
                max: 2210.0,
            },
        ),
    );
    metrics.insert(
        "telemetry_trace_ingest_latency".to_owned(),
        trend(118, 120.0, ingest_traces()),
    );
    // Of the failed requests, a few got no answer: the rest answered 5xx.
    for (key, causes) in [
        (
            "http_req_failed{scenario:api}",
            &[("timeout", 2), ("reset", 1)][..],
        ),
        ("http_req_failed{scenario:chat}", &[("timeout", 1)][..]),
        ("http_req_failed", &[("timeout", 3), ("reset", 1)][..]),
    ] {
        if let Some(m) = metrics.get_mut(key) {
            m.errors = causes.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect();
        }
    }
    let error_rate = total_errs as f64 / total_reqs as f64;
    Summary {
        schema_version: SCHEMA_VERSION,
        run: RunInfo {
            name: "api-3x-ga".to_owned(),
            source: Some("scenarios/3x-ga.yaml".to_owned()),
            target: "http://echo-server.observability.svc:8080".to_owned(),
            embedded: false,
            loadgen_version: "0.1.0".to_owned(),
            started_at: "2026-11-21T02:00:00Z".to_owned(),
            ended_at: "2026-11-21T02:02:31Z".to_owned(),
            duration_secs: 120.0,
            target_rps: Some(1200.0),
            multiplier: Some(3.0),
            pacing: Some("spin".to_owned()),
            outcome: Outcome::Failed,
            exit_code: 1,
            stop_reason: None,
            insecure_skip_verify: false,
        },
        scenarios,
        metrics,
        thresholds: vec![
            ThresholdResult {
                metric: "http_req_duration{scenario:api}".to_owned(),
                expression: "p(99)<800ms".to_owned(),
                observed: Some(34.8),
                limit: 800.0,
                verdict: Verdict::Pass,
                reason: None,
                abort_on_fail: false,
                window_secs: None,
                phase: None,
            },
            ThresholdResult {
                metric: "http_stream_duration{scenario:chat}".to_owned(),
                expression: "p(95)<1.2s".to_owned(),
                observed: Some(1187.0),
                limit: 1200.0,
                verdict: Verdict::Pass,
                reason: None,
                abort_on_fail: false,
                window_secs: None,
                phase: None,
            },
            ThresholdResult {
                metric: "http_req_failed".to_owned(),
                expression: "rate<0.003".to_owned(),
                observed: Some(error_rate),
                limit: 0.003,
                verdict: if error_rate < 0.003 {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                },
                reason: None,
                abort_on_fail: false,
                window_secs: None,
                phase: None,
            },
            ThresholdResult {
                metric: "telemetry_trace_missing".to_owned(),
                expression: "rate<0.003".to_owned(),
                observed: Some(58.0 / 1152.0),
                limit: 0.003,
                verdict: Verdict::Fail,
                reason: Some("worst window 60s–90s (chaos: telemetryDropRate=0.05)".to_owned()),
                abort_on_fail: false,
                window_secs: Some(30.0),
                phase: None,
            },
            ThresholdResult {
                metric: "telemetry_trace_ingest_latency".to_owned(),
                expression: "p(95)<100ms".to_owned(),
                observed: Some(87.5),
                limit: 100.0,
                verdict: Verdict::Pass,
                reason: None,
                abort_on_fail: false,
                window_secs: None,
                phase: None,
            },
            ThresholdResult {
                metric: "telemetry_exemplar_missing".to_owned(),
                expression: "rate<0.003".to_owned(),
                observed: None,
                limit: 0.003,
                verdict: Verdict::Unknown,
                reason: Some(
                    "mimir-gateway answered 503 Service Unavailable to every query".to_owned(),
                ),
                abort_on_fail: false,
                window_secs: None,
                phase: None,
            },
        ],
        dropped_iterations: time_series.iter().map(|p| p.dropped).sum(),
        time_series,
        telemetry: Some(TelemetrySummary {
            signals: vec![
                SignalSummary {
                    signal: "traces".to_owned(),
                    backend: "tempo http://tempo:3200".to_owned(),
                    sampled: 1152,
                    found: 1135,
                    missing: 17,
                    unknown: 0,
                    incomplete: 4,
                    missing_rate: Some(17.0 / 1152.0),
                    missing_split: Some(MissingSplit {
                        refused: 1,
                        dropped: 0,
                        injected: 14,
                        after_acceptance: 2,
                        unaccounted: 0,
                    }),
                    extra_spans: 236,
                    ingest_latency: Some(ingest_traces()),
                    latency_probes: 118,
                    first_asked_late: 2,
                    presence_only: 1015,
                    acknowledged_probes: 116,
                    export_wait: Some(TrendStats {
                        min: 1.2,
                        avg: 12.9,
                        med: 11.0,
                        p90: 24.0,
                        p95: 30.5,
                        p99: 61.0,
                        max: 402.0,
                    }),
                    backend_latency: Some(TrendStats {
                        min: 5.0,
                        avg: 24.6,
                        med: 19.0,
                        p90: 46.0,
                        p95: 57.0,
                        p99: 80.0,
                        max: 110.0,
                    }),
                    ingest_percentiles: vec![
                        pp(0.0, 8.1),
                        pp(50.0, 31.0),
                        pp(90.0, 71.0),
                        pp(95.0, 87.5),
                        pp(99.0, 140.0),
                        pp(99.9, 402.0),
                        pp(100.0, 512.0),
                    ],
                    ..Default::default()
                },
                SignalSummary {
                    signal: "logs".to_owned(),
                    backend: "loki http://loki-gateway".to_owned(),
                    sampled: 1152,
                    found: 1138,
                    missing: 14,
                    unknown: 0,
                    incomplete: 0,
                    missing_rate: Some(14.0 / 1152.0),
                    missing_split: Some(MissingSplit {
                        injected: 14,
                        ..MissingSplit::default()
                    }),
                    ingest_latency: Some(TrendStats {
                        min: 210.0,
                        avg: 1130.0,
                        med: 1020.0,
                        p90: 1810.0,
                        p95: 2140.0,
                        p99: 2890.0,
                        max: 3410.0,
                    }),
                    latency_probes: 120,
                    presence_only: 1018,
                    acknowledged_probes: 120,
                    export_wait: Some(TrendStats {
                        min: 150.0,
                        avg: 980.0,
                        med: 900.0,
                        p90: 1650.0,
                        p95: 1950.0,
                        p99: 2700.0,
                        max: 3200.0,
                    }),
                    backend_latency: Some(TrendStats {
                        min: 40.0,
                        avg: 150.0,
                        med: 110.0,
                        p90: 160.0,
                        p95: 190.0,
                        p99: 240.0,
                        max: 310.0,
                    }),
                    ingest_percentiles: Vec::new(),
                    ..Default::default()
                },
                SignalSummary {
                    signal: "metrics".to_owned(),
                    backend: "prometheus http://mimir-gateway/prometheus".to_owned(),
                    sampled: 236,
                    found: 0,
                    missing: 0,
                    unknown: 236,
                    incomplete: 0,
                    ingest_latency: None,
                    ingest_percentiles: Vec::new(),
                    ..Default::default()
                },
            ],
            sampling: Some("100/s".to_owned()),
            settle_timeout_secs: Some(30.0),
            samples_dropped: 0,
            // PollPolicy::schedule(true) of the default policy (250 ms, 5 s, ×2, 30 s).
            probe_schedule_ms: vec![
                25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0, 2000.0, 4000.0,
                8000.0, 13000.0, 18000.0, 23000.0, 28000.0, 30000.0,
            ],
            metric_probes: Some(240),
            exporter: vec![
                ExporterCounts {
                    signal: "spans".to_owned(),
                    emitted: 432_000,
                    accepted: 426_550,
                    refused: 50,
                    dropped: 0,
                    injected: 5_400,
                },
                ExporterCounts {
                    signal: "logs".to_owned(),
                    emitted: 144_000,
                    accepted: 142_200,
                    refused: 0,
                    dropped: 0,
                    injected: 1_800,
                },
            ],
            exporter_source: Some(ExporterSource {
                replicas: vec![
                    "echo-server-7d9f-0".to_owned(),
                    "echo-server-7d9f-1".to_owned(),
                ],
                unread: Vec::new(),
                partial: false,
                requests: 432_000,
                chaos_dropped_requests: 5_400,
            }),
            requests: None,
            recovery_secs: None,
        }),
        chaos: vec![ChaosEvent {
            name: None,
            fault: "telemetryDropRate=0.05".to_owned(),
            start_secs: 60.0,
            end_secs: 90.0,
        }],
        platform: None,
        outputs: Vec::new(),
    }
}

/// [`realistic`] with the platform's own signals: its chaos window named `errors`
/// (`errorRate=0.3`, 60–90 s), two queries (one with two labelled series, one with
/// errors, an empty answer and a missed evaluation), an alert expected to fire during
/// `errors` that fired, notified and resolved in time, one that had to stay silent in
/// `baseline` but fired twice while Alertmanager could not be asked, the receiver, and
/// the thresholds that judged them.
pub fn with_platform() -> Summary {
    let mut s = realistic();
    s.chaos = vec![ChaosEvent {
        name: Some("errors".to_owned()),
        fault: "errorRate=0.3".to_owned(),
        start_secs: 60.0,
        end_secs: 90.0,
    }];
    let every = |values: &[f64]| -> Vec<[f64; 2]> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| [i as f64 * 15.0, *v])
            .collect()
    };
    let instance = |name: &str| BTreeMap::from([("instance".to_owned(), name.to_owned())]);
    let event = |t: f64, source: &str, state: &str| AlertEvent {
        t,
        source: source.to_owned(),
        state: state.to_owned(),
    };
    s.platform = Some(PlatformSummary {
        queries: vec![
            QuerySummary {
                name: "remote_write_lag".to_owned(),
                language: "promql".to_owned(),
                expr: "max by (instance) (time() - prometheus_remote_storage_queue_highest_sent_timestamp_seconds{job=\"prometheus\"}) < 1e3".to_owned(),
                backend: "prometheus http://prometheus:9090".to_owned(),
                every_secs: 15.0,
                evaluations: 9,
                errors: BTreeMap::new(),
                empty: 0,
                series: vec![
                    QuerySeries {
                        labels: instance("prom-0"),
                        points: every(&[1.2, 1.4, 1.1, 1.3, 6.5, 18.5, 9.0, 2.2, 1.5]),
                    },
                    QuerySeries {
                        labels: instance("prom-1"),
                        points: every(&[0.8, 0.9, 0.7, 0.9, 4.25, 12.0, 5.5, 1.1, 0.9]),
                    },
                ],
            },
            QuerySummary {
                name: "echo_error_logs".to_owned(),
                language: "logql".to_owned(),
                expr: "sum(count_over_time({app=\"echo-server\"} |= \"error\" != \"<healthz>\" [1m]))"
                    .to_owned(),
                backend: "loki http://loki:3100".to_owned(),
                every_secs: 15.0,
                evaluations: 9,
                // 75 s and 105 s timed out, 120 s got a 502; 0 s had no series yet.
                errors: BTreeMap::from([("timeout".to_owned(), 2), ("status 502".to_owned(), 1)]),
                empty: 1,
                series: vec![QuerySeries {
                    labels: BTreeMap::new(),
                    points: vec![[15.0, 3.0], [30.0, 4.0], [45.0, 3.0], [60.0, 41.0], [90.0, 52.0]],
                }],
            },
        ],
        alerts: vec![
            AlertSummary {
                alert: "EchoServerHighErrorRate".to_owned(),
                matchers: BTreeMap::from([("severity".to_owned(), "page".to_owned())]),
                expect: "fires".to_owned(),
                during: Some("errors".to_owned()),
                window_start_secs: 60.0,
                window_end_secs: 90.0,
                fires_within_secs: Some(120.0),
                notifies_within_secs: Some(180.0),
                resolves_within_secs: Some(300.0),
                time_to_fire_secs: Some(12.0),
                time_to_notify_secs: Some(14.1),
                time_to_resolve_secs: Some(9.8),
                unexpected: 0,
                timeline: vec![
                    event(64.0, "prometheus", "pending"),
                    event(72.0, "prometheus", "firing"),
                    event(72.4, "alertmanager", "active"),
                    event(74.1, "receiver", "notified firing"),
                    event(99.8, "prometheus", "resolved"),
                    event(101.2, "receiver", "notified resolved"),
                ],
                unknown: Vec::new(),
            },
            AlertSummary {
                alert: "EchoServerHighLatency".to_owned(),
                matchers: BTreeMap::new(),
                expect: "silent".to_owned(),
                during: Some("baseline".to_owned()),
                window_start_secs: 0.0,
                window_end_secs: 60.0,
                fires_within_secs: None,
                notifies_within_secs: None,
                resolves_within_secs: None,
                time_to_fire_secs: None,
                time_to_notify_secs: None,
                time_to_resolve_secs: None,
                unexpected: 2,
                timeline: vec![
                    event(20.0, "prometheus", "firing"),
                    event(35.0, "prometheus", "resolved"),
                    event(41.0, "prometheus", "firing"),
                    event(52.5, "prometheus", "resolved"),
                ],
                unknown: vec![
                    "alertmanager http://alertmanager:9093: connection refused".to_owned(),
                ],
            },
        ],
        receiver: Some(ReceiverSummary {
            listen: "0.0.0.0:9097".to_owned(),
            notifications: 2,
            refused: 1,
        }),
    });
    let threshold =
        |metric: &str, expression: &str, observed: f64, limit: f64, verdict| ThresholdResult {
            metric: metric.to_owned(),
            expression: expression.to_owned(),
            observed: Some(observed),
            limit,
            verdict,
            reason: None,
            abort_on_fail: false,
            window_secs: None,
            phase: None,
        };
    s.thresholds.extend([
        threshold(
            "query{name:remote_write_lag}",
            "max<30",
            18.5,
            30.0,
            Verdict::Pass,
        ),
        threshold(
            "query{name:echo_error_logs}",
            "max<40",
            52.0,
            40.0,
            Verdict::Fail,
        ),
        threshold(
            "alert_time_to_fire{alert:EchoServerHighErrorRate}",
            "max<=2m",
            12_000.0,
            120_000.0,
            Verdict::Pass,
        ),
        threshold(
            "alert_time_to_notify{alert:EchoServerHighErrorRate}",
            "max<=3m",
            14_100.0,
            180_000.0,
            Verdict::Pass,
        ),
        threshold(
            "alert_time_to_resolve{alert:EchoServerHighErrorRate}",
            "max<=5m",
            9_800.0,
            300_000.0,
            Verdict::Pass,
        ),
        threshold(
            "alert_unexpected{alert:EchoServerHighLatency}",
            "count==0",
            2.0,
            0.0,
            Verdict::Fail,
        ),
    ]);
    s
}

/// A `secs`-second run of `scenarios` scenarios, for the benchmark (3 600 s × 10 for
/// the one-hour case).
pub fn large(secs: u32, scenarios: u32) -> Summary {
    let mut s = realistic();
    s.scenarios = (0..scenarios)
        .map(|i| {
            let chaos = (f64::from(secs) * 0.25, f64::from(secs) * 0.30);
            let mut sc = scenario(
                &format!("scenario-{i:02}"),
                100.0 + f64::from(i) * 20.0,
                secs,
                10.0 + f64::from(i) * 7.0,
                1.0,
                chaos,
            );
            sc.phases = vec![Phase {
                name: "steady".to_owned(),
                start_secs: 0.0,
                end_secs: f64::from(secs),
            }];
            sc
        })
        .collect();
    s.time_series = merge(&s.scenarios);
    s.dropped_iterations = s.time_series.iter().map(|p| p.dropped).sum();
    s.run.duration_secs = f64::from(secs);
    s.chaos = vec![
        ChaosEvent {
            name: None,
            fault: "latency=200ms".to_owned(),
            start_secs: f64::from(secs) * 0.25,
            end_secs: f64::from(secs) * 0.30,
        },
        ChaosEvent {
            name: None,
            fault: "errorRate=0.02".to_owned(),
            start_secs: f64::from(secs) * 0.6,
            end_secs: f64::from(secs) * 0.65,
        },
    ];
    let metrics = std::mem::take(&mut s.metrics);
    s.metrics = metrics
        .into_iter()
        .filter(|(k, _)| !k.contains("{scenario:"))
        .collect();
    let reqs: u64 = s.time_series.iter().map(|p| p.requests).sum();
    let errs: u64 = s.time_series.iter().map(|p| p.errors).sum();
    s.metrics
        .insert("http_reqs".to_owned(), counter(reqs, f64::from(secs)));
    s.metrics
        .insert("http_req_failed".to_owned(), rate(reqs, errs));
    s.run.target_rps = Some(s.scenarios.iter().filter_map(|x| x.target_rps).sum());
    for sc in &s.scenarios {
        let reqs: u64 = sc.time_series.iter().map(|p| p.requests).sum();
        let errs: u64 = sc.time_series.iter().map(|p| p.errors).sum();
        let t = trend_of(&sc.latency_percentiles);
        s.metrics.insert(
            format!("http_req_duration{{scenario:{}}}", sc.name),
            trend(reqs, f64::from(secs), t),
        );
        s.metrics.insert(
            format!("http_reqs{{scenario:{}}}", sc.name),
            counter(reqs, f64::from(secs)),
        );
        s.metrics.insert(
            format!("http_req_failed{{scenario:{}}}", sc.name),
            rate(reqs, errs),
        );
    }
    s
}

fn pp(percentile: f64, value_ms: f64) -> PercentilePoint {
    PercentilePoint {
        percentile,
        value_ms,
    }
}

fn ingest_traces() -> TrendStats {
    TrendStats {
        min: 8.1,
        avg: 38.4,
        med: 31.0,
        p90: 71.0,
        p95: 87.5,
        p99: 140.0,
        max: 512.0,
    }
}

/// One scenario at `rps` for `secs` seconds; latency scales with `base_ms`; the chaos
/// window (60–90 s in the realistic run) adds errors and latency.
fn scenario(
    name: &str,
    rps: f64,
    secs: u32,
    base_ms: f64,
    ramp_weight: f64,
    chaos: (f64, f64),
) -> ScenarioSummary {
    let spectrum = [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0];
    let latency_percentiles = spectrum
        .iter()
        .map(|&p| {
            let tail = -(1.0 - p / 100.0_f64).max(1e-5).log10(); // 0 .. 5
            pp(p, round2(base_ms * (0.5 + 0.5 * tail + 0.35 * tail * tail)))
        })
        .collect();
    let chaos = |t: f64| (chaos.0..chaos.1).contains(&t);
    let time_series = (0..secs)
        .map(|i| {
            let t = f64::from(i);
            let ramp = (t / 10.0).min(1.0);
            let target = (rps * ramp).round();
            let wobble = (t * 0.7).sin() * 0.01 + 0.99;
            let requests = (target * wobble).round() as u64;
            let error_share =
                if chaos(t) { 1.0 / 180.0 } else { 1.0 / 2000.0 } * (0.5 + ramp_weight);
            let errors = (requests as f64 * error_share).round() as u64;
            let dropped = if chaos(t) && i % 7 == 0 { 3 } else { 0 };
            let slow = if chaos(t) { 1.6 } else { 1.0 } * (1.0 + 0.08 * (t * 0.31).sin());
            TimePoint {
                t,
                width_secs: 1,
                target_rps: Some(target),
                requests,
                errors,
                dropped,
                p50_ms: (requests > 0).then(|| round2(base_ms * slow)),
                p95_ms: (requests > 0).then(|| round2(base_ms * 2.4 * slow)),
                p99_ms: (requests > 0).then(|| round2(base_ms * 4.2 * slow)),
            }
        })
        .collect();
    ScenarioSummary {
        name: name.to_owned(),
        executor: "constant-arrival-rate".to_owned(),
        target_rps: Some(rps),
        vus: None,
        start_secs: 0.0,
        duration_secs: f64::from(secs),
        phases: Vec::new(),
        latency_percentiles,
        time_series,
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The run's time series: sums of counts, worst scenario's percentiles (a stand-in:
/// the real engine merges histograms).
fn merge(scenarios: &[ScenarioSummary]) -> Vec<TimePoint> {
    let len = scenarios
        .iter()
        .map(|s| s.time_series.len())
        .max()
        .unwrap_or(0);
    (0..len)
        .map(|i| {
            let pts: Vec<&TimePoint> = scenarios
                .iter()
                .filter_map(|s| s.time_series.get(i))
                .collect();
            let max =
                |f: fn(&TimePoint) -> Option<f64>| pts.iter().filter_map(|p| f(p)).reduce(f64::max);
            TimePoint {
                t: i as f64,
                width_secs: 1,
                target_rps: Some(pts.iter().filter_map(|p| p.target_rps).sum()),
                requests: pts.iter().map(|p| p.requests).sum(),
                errors: pts.iter().map(|p| p.errors).sum(),
                dropped: pts.iter().map(|p| p.dropped).sum(),
                p50_ms: max(|p| p.p50_ms),
                p95_ms: max(|p| p.p95_ms),
                p99_ms: max(|p| p.p99_ms),
            }
        })
        .collect()
}

fn trend_of(spectrum: &[PercentilePoint]) -> TrendStats {
    let at = |p: f64| {
        spectrum
            .iter()
            .find(|x| x.percentile >= p)
            .map_or(0.0, |x| x.value_ms)
    };
    TrendStats {
        min: at(0.0),
        avg: round2((at(50.0) + at(90.0)) / 2.0),
        med: at(50.0),
        p90: at(90.0),
        p95: at(95.0),
        p99: at(99.0),
        max: at(100.0),
    }
}

fn trend(count: u64, secs: f64, t: TrendStats) -> MetricSummary {
    MetricSummary {
        kind: MetricKind::Trend,
        count,
        rate: count as f64 / secs,
        passes: None,
        trend: Some(t),
        errors: BTreeMap::new(),
    }
}

fn counter(count: u64, secs: f64) -> MetricSummary {
    MetricSummary {
        kind: MetricKind::Counter,
        count,
        rate: count as f64 / secs,
        passes: None,
        trend: None,
        errors: BTreeMap::new(),
    }
}

fn rate(count: u64, passes: u64) -> MetricSummary {
    MetricSummary {
        kind: MetricKind::Rate,
        count,
        rate: if count == 0 {
            0.0
        } else {
            passes as f64 / count as f64
        },
        passes: Some(passes),
        trend: None,
        errors: BTreeMap::new(),
    }
}
