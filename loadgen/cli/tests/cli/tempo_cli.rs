//! `loadgen run` verifying traces in a stub Tempo on loopback (`tempo_stub.rs`): a real
//! echo-server in this process exports OTLP (HTTP, or gRPC for RESOURCE_EXHAUSTED) to the
//! stub, which makes each trace queryable a set time after it accepted the export,
//! refuses every other export, or never finds anything. Each test asserts on the run's
//! summary.json what the verdict must say about that backend: refusals split from loss
//! after acceptance (counted against the echo-server's export ledger), ingest latency
//! that is the backend's and not the query backlog's, the backend's part of it, and a
//! settle budget that ends the run on time. One run at a time (2 to 15 s of load at 20
//! to 50 requests/s, 5 to 25 s per test), all on loopback.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::tempo_stub::{Ran, Refusal, Rig, StubConfig, loadgen_run};

/// The `traces` entry of the summary's telemetry section.
fn traces(s: &Value) -> &Value {
    s["telemetry"]["signals"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["signal"] == "traces"))
        .unwrap_or_else(|| panic!("no traces signal in {:#}", s["telemetry"]))
}

fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no count `{key}` in {v:#}"))
}

/// The threshold result for `metric` and `expression`.
fn threshold<'a>(s: &'a Value, metric: &str, expression: &str) -> &'a Value {
    s["thresholds"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|t| t["metric"] == metric && t["expression"] == expression)
        })
        .unwrap_or_else(|| panic!("no threshold {metric} {expression}: {:#}", s["thresholds"]))
}

/// The observed value of a threshold, ms for durations.
fn observed(s: &Value, metric: &str, expression: &str) -> f64 {
    let t = threshold(s, metric, expression);
    t["observed"]
        .as_f64()
        .unwrap_or_else(|| panic!("{metric} {expression} observed nothing: {t:#}"))
}

fn context(ran: &Ran) -> String {
    format!(
        "exit {:?}; stderr: {}\ntelemetry: {:#}\nthresholds: {:#}",
        ran.code, ran.stderr, ran.summary["telemetry"], ran.summary["thresholds"]
    )
}

fn scenario(name: &str, target: &str, load: &str, telemetry: &str, thresholds: &str) -> String {
    format!(
        r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {{name: {name}}}
spec:
  target: {{url: "{target}"}}
  scenarios:
    - name: api
      executor: constant-arrival-rate
      {load}
      requests: [{{name: orders, path: /api/orders}}]
  telemetry:
{telemetry}
  thresholds:
{thresholds}
"#
    )
}

/// 40 requests, every one sampled; every other distinct trace export refused (a 429 is
/// retried by the exporter and refused again each time). The refused traces, exactly as
/// the echo-server's export ledger counts them, are the missing ones, split as refused;
/// nothing is lost after acceptance; every other trace is found.
fn refused_exports_are_missing_as_refused(refusal: Refusal) {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let rig = Rig::start(
            StubConfig {
                queryable_after: Some(Duration::ZERO),
                lookup_delay: Duration::ZERO,
                refuse: Some(refusal),
            },
            Duration::from_millis(200),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let ran = loadgen_run(
            dir.path(),
            &scenario(
                "refusals",
                &rig.forwarder.url(),
                "rate: 20\n      duration: 2s",
                &format!(
                    "    sample: {{rate: 1}}\n    settleTimeout: 3s\n    maxQueriesPerSecond: 200\n    traces: {{tempo: {{url: \"{}\"}}}}",
                    rig.stub.url()
                ),
                "    telemetry_trace_missing: [\"rate<0.01\"]",
            ),
        )
        .await;
        let s = &ran.summary;
        let t = traces(s);

        // What the stub did, and the echo-server's ledger of the same traces.
        let (refused_ids, accepted_ids, errors) = {
            let r = rig.stub.record();
            (r.refused_ids.clone(), r.accepted_ids.clone(), r.errors.clone())
        };
        assert!(errors.is_empty(), "the stub could not read: {errors:?}");
        assert!(
            refused_ids.is_disjoint(&accepted_ids),
            "a trace's spans travelled in two exports: {:?}",
            refused_ids.intersection(&accepted_ids).collect::<Vec<_>>()
        );
        let seen: Vec<String> = refused_ids.union(&accepted_ids).cloned().collect();
        let fates = rig.fates(&seen).await;
        let ledger_refused: BTreeSet<String> = fates
            .iter()
            .filter(|f| f.spans.refused > 0)
            .map(|f| f.trace_id.clone())
            .collect();
        let ledger_accepted = fates
            .iter()
            .filter(|f| f.spans.accepted == f.spans.emitted && f.spans.refused == 0)
            .count() as u64;
        let refused = ledger_refused.len() as u64;
        assert!(
            ledger_refused.is_subset(&refused_ids),
            "the ledger says refused what the stub accepted"
        );

        let sampled = count(t, "sampled");
        let requests = s["metrics"]["http_reqs"]["count"].as_u64().unwrap();
        assert_eq!(
            (sampled, fates.len() as u64, rig.forwarder.seen().requests),
            (requests, requests, requests),
            "every request sampled, traced and in the ledger; {}",
            context(&ran)
        );
        assert!(requests >= 38, "{requests} requests");
        assert!(
            refused >= 1 && refused < sampled && ledger_accepted + refused == sampled,
            "the stub refused {refused} of {sampled} traces ({ledger_accepted} accepted)"
        );
        assert_eq!(
            (count(t, "missing"), count(t, "found"), count(t, "unknown")),
            (refused, sampled - refused, 0),
            "missing = refused per the ledger; {}",
            context(&ran)
        );
        let exporter = s["telemetry"]["exporter"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["signal"] == "spans"))
            .expect("exporter counts");
        let account = rig.account().await;
        assert_eq!(
            exporter["refused"], account["spans"]["refused"],
            "{exporter:#} vs {account:#}"
        );
        assert!(count(exporter, "refused") >= refused, "{exporter:#}");
        // The split: all refused, none lost after acceptance, none unaccounted.
        let split = &t["missingSplit"];
        assert_eq!(
            ["refused", "afterAcceptance", "dropped", "injected", "unaccounted"]
                .map(|k| count(split, k)),
            [refused, 0, 0, 0, 0],
            "{split:#}"
        );
        // The gate fails on a known rate, not an unknown one.
        assert_eq!(ran.code, Some(1), "{}", context(&ran));
        let th = threshold(s, "telemetry_trace_missing", "rate<0.01");
        assert_eq!(th["verdict"], "fail", "{th:#}");
        let rate = refused as f64 / sampled as f64;
        assert!(
            (th["observed"].as_f64().unwrap() - rate).abs() < 1e-9,
            "{th:#} vs {rate}"
        );
        let (exports, refusals, grpc) = {
            let r = rig.stub.record();
            (r.refused_exports, r.refusals, r.grpc_exports)
        };
        assert_eq!(grpc > 0, refusal.grpc(), "{grpc} exports over gRPC");
        eprintln!(
            "refusals {refusal:?}: {sampled} sampled, {refused} refused (ledger), {exports} \
             refused exports, {refusals} refusals answered, missingSplit {split}"
        );
        // A 429 is retried (and refused again); a 500 and RESOURCE_EXHAUSTED are not.
        match refusal {
            Refusal::TooManyRequests => assert!(refusals > exports, "{refusals} {exports}"),
            Refusal::InternalError | Refusal::ResourceExhausted => {
                assert_eq!(refusals, exports)
            }
        }
        let _ = rig.server.shutdown().await;
    });
}

#[test]
fn exports_refused_with_429_read_as_missing_refused_and_none_after_acceptance() {
    refused_exports_are_missing_as_refused(Refusal::TooManyRequests);
}

#[test]
fn exports_refused_with_500_read_as_missing_refused_and_none_after_acceptance() {
    refused_exports_are_missing_as_refused(Refusal::InternalError);
}

#[test]
fn grpc_exports_refused_with_resource_exhausted_read_as_missing_refused() {
    refused_exports_are_missing_as_refused(Refusal::ResourceExhausted);
}

/// The echo-server exports every 20 ms; the stub makes a trace queryable 130 ms after it
/// accepted the export (~150 ms after the request completed) and answers each look-up in
/// ~5 ms; default sampling and query budget (20/s), which the load outruns: a look-up
/// backlog builds behind the latency probes. The reported ingest latency is the ~150 ms
/// the backend took, each recorded probe within one poll interval (250 ms) of it, never
/// the backlog; and the probes are asked on time (they go ahead of the backlog), so few
/// are lost as "first asked late".
#[test]
fn ingest_latency_is_the_backends_not_the_query_backlogs() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let rig = Rig::start(
            StubConfig {
                queryable_after: Some(Duration::from_millis(130)),
                lookup_delay: Duration::from_millis(5),
                refuse: None,
            },
            Duration::from_millis(20),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let ran = loadgen_run(
            dir.path(),
            &scenario(
                "ingest",
                &rig.forwarder.url(),
                "rate: 50\n      duration: 15s",
                &format!(
                    "    settleTimeout: 10s\n    traces: {{tempo: {{url: \"{}\"}}}}",
                    rig.stub.url()
                ),
                "    telemetry_trace_ingest_latency: [\"med<10s\"]",
            ),
        )
        .await;
        let s = &ran.summary;
        let t = traces(s);
        assert!(rig.stub.record().errors.is_empty());
        let latency = &t["ingestLatency"];
        let med = latency["med"]
            .as_f64()
            .unwrap_or_else(|| panic!("no ingest latency; {}", context(&ran)));
        eprintln!(
            "ingest latency {latency}; sampling {}; traces {t}; {} look-ups; run {:.1}s",
            s["telemetry"]["sampling"],
            rig.stub.record().lookups,
            (ran.exited - ran.spawned).as_secs_f64()
        );
        assert!(
            (100.0..=400.0).contains(&med),
            "ingest latency med {med} ms; {}",
            context(&ran)
        );
        assert_eq!(
            observed(s, "telemetry_trace_ingest_latency", "med<10s"),
            med
        );
        // Every sample was settled found; only the probes' latencies were recorded.
        assert_eq!(
            (count(t, "missing"), count(t, "unknown")),
            (0, 0),
            "{}",
            context(&ran)
        );
        assert_eq!(count(t, "found"), count(t, "sampled"));
        assert!(count(t, "sampled") >= 100, "{t:#}");
        assert_eq!(ran.code, Some(0), "{}", context(&ran));
        // The probes go ahead of the backlog: asked on time (1 probe/s at the default
        // budget, some 15 over the load), so at most 2 are lost as first asked late ...
        let late = count(t, "firstAskedLate");
        let presence = count(t, "presenceOnly");
        assert!(presence > 0, "the load outran the budget: {t:#}");
        assert!(
            late <= 2,
            "{late} latency probes first asked late, {} recorded: probes waited behind \
             the backlog; {t:#}",
            t["latencyProbes"]
        );
        // ... and none recorded is more than one poll interval behind the backend's ~150 ms.
        let max = latency["max"].as_f64().unwrap();
        assert!(
            max <= 150.0 + 250.0,
            "a probe recorded {max} ms where the backend took ~150 ms: its look-ups waited \
             behind the backlog; {latency}"
        );
        let _ = rig.server.shutdown().await;
    });
}

/// The echo-server exports every 200 ms (its default); the stub makes a trace queryable
/// 50 ms after it accepted the export. The backend's part of the ingest latency
/// (acknowledged → found) is those 50 ms (p95 under 100 ms, the gate passes); the
/// end-to-end ingest latency adds the export wait (up to 200 ms).
#[test]
fn the_backend_part_of_ingest_latency_is_what_the_backend_took_after_acceptance() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let rig = Rig::start(
            StubConfig {
                queryable_after: Some(Duration::from_millis(50)),
                lookup_delay: Duration::ZERO,
                refuse: None,
            },
            Duration::from_millis(200),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let ran = loadgen_run(
            dir.path(),
            &scenario(
                "backend",
                &rig.forwarder.url(),
                "rate: 20\n      duration: 10s",
                &format!(
                    "    sample: {{rate: 1}}\n    settleTimeout: 5s\n    maxQueriesPerSecond: 200\n    traces: {{tempo: {{url: \"{}\"}}}}",
                    rig.stub.url()
                ),
                "    telemetry_trace_backend_latency: [\"p(95)<100ms\", \"med<10s\"]\n    telemetry_trace_export_wait: [\"med<10s\"]",
            ),
        )
        .await;
        let s = &ran.summary;
        let t = traces(s);
        assert!(rig.stub.record().errors.is_empty());
        let backend_med = observed(s, "telemetry_trace_backend_latency", "med<10s");
        let backend_p95 = observed(s, "telemetry_trace_backend_latency", "p(95)<100ms");
        let export_wait = observed(s, "telemetry_trace_export_wait", "med<10s");
        let ingest_med = t["ingestLatency"]["med"]
            .as_f64()
            .unwrap_or_else(|| panic!("no ingest latency; {}", context(&ran)));
        eprintln!(
            "backend med {backend_med} p95 {backend_p95}; export wait med {export_wait}; \
             ingest {}",
            t["ingestLatency"]
        );
        assert_eq!(ran.code, Some(0), "{}", context(&ran));
        assert_eq!(
            threshold(s, "telemetry_trace_backend_latency", "p(95)<100ms")["verdict"],
            "pass"
        );
        assert!(
            (40.0..=100.0).contains(&backend_med),
            "backend part med {backend_med} ms; {}",
            context(&ran)
        );
        assert!(
            (50.0..=250.0).contains(&ingest_med),
            "ingest latency med {ingest_med} ms; {}",
            context(&ran)
        );
        assert!(export_wait <= 250.0, "export wait med {export_wait} ms");
        // The summary's own figures agree with the thresholds' observations.
        assert_eq!(t["backendLatency"]["med"].as_f64(), Some(backend_med), "{t:#}");
        assert_eq!(t["exportWait"]["med"].as_f64(), Some(export_wait), "{t:#}");
        assert_eq!(
            (count(t, "found"), count(t, "missing"), count(t, "unknown")),
            (count(t, "sampled"), 0, 0),
            "{}",
            context(&ran)
        );
        let _ = rig.server.shutdown().await;
    });
}

/// Seconds of day of an RFC 3339 UTC timestamp (`2026-12-03T13:43:56.123Z`).
fn seconds_of_day(ts: &str) -> f64 {
    let time = ts
        .split_once('T')
        .map(|(_, t)| t.trim_end_matches('Z'))
        .unwrap_or_else(|| panic!("not RFC 3339: {ts}"));
    time.split(':')
        .map(|p| p.parse::<f64>().unwrap())
        .fold(0.0, |acc, x| acc * 60.0 + x)
}

/// A backend that never holds anything (always Tempo's not-found) and takes 100 ms per
/// look-up, settleTimeout 2 s, 40 samples: fewer can be asked by their deadline than are
/// due, so some settle missing (lost after acceptance) and the rest unknown ("not asked"),
/// and the run ends within the settle timeout plus one poll interval of the load's end,
/// not when the backlog is through; the gate fails.
#[test]
fn the_settle_budget_ends_the_run_on_time_when_the_backend_finds_nothing() {
    let _guard = crate::support::one_at_a_time();
    crate::support::runtime().block_on(async {
        let rig = Rig::start(
            StubConfig {
                queryable_after: None,
                lookup_delay: Duration::from_millis(100),
                refuse: None,
            },
            Duration::from_millis(200),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let ran = loadgen_run(
            dir.path(),
            &scenario(
                "settle",
                &rig.forwarder.url(),
                "rate: 20\n      duration: 2s",
                &format!(
                    "    sample: {{rate: 1}}\n    settleTimeout: 2s\n    traces: {{tempo: {{url: \"{}\"}}}}",
                    rig.stub.url()
                ),
                "    telemetry_trace_missing: [\"rate<0.01\"]",
            ),
        )
        .await;
        let s = &ran.summary;
        let t = traces(s);
        let seen = rig.forwarder.seen();
        let last = seen.last_request.expect("requests reached the echo-server");
        // From the last request of the load to the process's exit (reports written).
        let after_load = (ran.exited - last).as_secs_f64();
        // From the summary: the whole run minus the load.
        let run = &s["run"];
        let mut total = seconds_of_day(run["endedAt"].as_str().unwrap())
            - seconds_of_day(run["startedAt"].as_str().unwrap());
        if total < 0.0 {
            total += 86_400.0;
        }
        let settled = total - run["durationSecs"].as_f64().unwrap();
        eprintln!(
            "settled {settled:.3}s after the load (summary), process exited {after_load:.3}s \
             after the last request; traces {t}; {} look-ups",
            rig.stub.record().lookups
        );
        assert_eq!(ran.code, Some(1), "{}", context(&ran));
        let th = threshold(s, "telemetry_trace_missing", "rate<0.01");
        assert_ne!(th["verdict"], "pass", "{th:#}");
        let sampled = count(t, "sampled");
        assert!(sampled >= 38, "{t:#}");
        let (missing, unknown) = (count(t, "missing"), count(t, "unknown"));
        assert_eq!(count(t, "found"), 0, "{t:#}");
        assert!(missing > 0 && unknown > 0, "{t:#}");
        assert_eq!(missing + unknown, sampled, "{t:#}");
        assert!(
            t["unknownReasons"]
                .as_object()
                .is_some_and(|r| r.keys().all(|k| k.contains("not asked"))),
            "{t:#}"
        );
        // The stub accepted every export: what is missing was lost after acceptance.
        assert_eq!(count(&t["missingSplit"], "afterAcceptance"), missing, "{t:#}");
        // The last sample completes at the load's end and is asked until 2 s later; the
        // run ends within settleTimeout + one poll interval (250 ms) of it, + 1 s margin.
        assert!(
            (1.9..=3.0).contains(&settled),
            "settled {settled:.3}s after the load, settleTimeout 2s; {}",
            context(&ran)
        );
        assert!(
            (1.9..=4.0).contains(&after_load),
            "exited {after_load:.3}s after the last request"
        );
        let _ = rig.server.shutdown().await;
    });
}
