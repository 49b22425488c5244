//! The telemetry round trip's details beyond its tables, as plain sentences that every
//! renderer shows (escaped for its format): superseded exemplars, unknown reasons, keep
//! classes, how ingest latency was measured and what it includes, missing samples by
//! export fate, injected against measured loss, foreign spans, exporter counters and where
//! they were read, metric probes, the RED cross-check, recovery time. Also the cells the
//! telemetry tables share.

use std::fmt::Write as _;

use crate::model::{ExporterCounts, SignalSummary, TelemetrySummary, TrendStats, Verdict};
use crate::units::{self, ms, percent};

/// One sentence per detail, in a fixed order.
pub fn telemetry_notes(t: &TelemetrySummary) -> Vec<String> {
    let mut out = Vec::new();
    // The schedule is the same for every signal: told in full once.
    let mut schedule_told = false;
    for s in &t.signals {
        if s.superseded > 0 {
            out.push(format!(
                "{}: {} exemplars taken over by a newer request before any scrape (neither found nor missing)",
                s.signal, s.superseded
            ));
        }
        for (reason, n) in &s.unknown_reasons {
            out.push(format!("{}: {n} unknown: {reason}", s.signal));
        }
        for c in &s.classes {
            let observed = match (c.observed, c.lower, c.upper) {
                (Some(o), Some(lo), Some(hi)) => format!("{o:.4} [{lo:.4}, {hi:.4}]"),
                _ => "—".to_owned(),
            };
            let verdict = match c.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
                Verdict::Unknown => "unknown",
            };
            out.push(format!(
                "{} keep, class {}: declared {} observed {observed} over {} samples: {verdict}",
                s.signal, c.name, c.declared, c.samples
            ));
        }
        out.extend(latency_probes(s, &t.probe_schedule_ms, &mut schedule_told));
        out.extend(latency_parts(s));
        out.extend(missing_split(s));
        out.extend(injected_beside_measured(t, s));
        if s.extra_spans > 0 {
            out.push(format!(
                "{}: {} spans in found traces were not the echo-server's own (a sidecar's, an ingress's), counted apart: not part of found or completeness",
                s.signal, s.extra_spans
            ));
        }
        if s.by_replica.len() > 1 {
            let each: Vec<String> = s
                .by_replica
                .iter()
                .map(|(r, c)| {
                    let n = c.found + c.missing + c.unknown;
                    format!("{r} {} of {n} missing, {} unknown", c.missing, c.unknown)
                })
                .collect();
            out.push(format!("{} by replica: {}", s.signal, each.join("; ")));
        }
    }
    for e in &t.exporter {
        if e.emitted == 0 && e.accepted + e.refused + e.dropped > 0 {
            out.push(format!(
                "exporter {}: accepted {} refused {} dropped {} (written before emitted and injected were counted: dropped may include chaos drops)",
                e.signal, e.accepted, e.refused, e.dropped
            ));
            continue;
        }
        out.push(format!(
            "exporter {}: emitted {} accepted {} refused {} dropped {} (export queue full) injected {} (chaos, on purpose)",
            e.signal, e.emitted, e.accepted, e.refused, e.dropped, e.injected
        ));
    }
    if let Some(src) = &t.exporter_source {
        if src.replicas.is_empty() {
            out.push(
                "exporter counts unavailable: no echo-server replica's run accounting could be read"
                    .to_owned(),
            );
        } else {
            out.push(format!(
                "exporter counts from the run accounting of {} echo-server replica{}: {}",
                src.replicas.len(),
                if src.replicas.len() == 1 { "" } else { "s" },
                src.replicas.join(", ")
            ));
            if src.chaos_dropped_requests > 0 {
                out.push(format!(
                    "injected: chaos dropped the telemetry of {} of the {} requests served ({})",
                    src.chaos_dropped_requests,
                    src.requests,
                    percent(src.chaos_dropped_requests as f64 / src.requests.max(1) as f64)
                ));
            }
        }
        for reason in &src.unread {
            out.push(format!(
                "exporter counts leave out a replica that could not be read: {reason}"
            ));
        }
        if src.partial {
            out.push(
                "exporter counts cover only some replicas: one address answered as several (a load-balanced Service), so only the replicas that happened to answer were read"
                    .to_owned(),
            );
        }
    }
    if let Some(n) = t.metric_probes {
        let verified = t
            .signals
            .iter()
            .find(|s| s.signal == "metrics")
            .map_or(0, |s| s.sampled);
        out.push(format!(
            "metrics: {n} metric probes sent, {verified} verified (a probe is verified once its request is answered)"
        ));
    }
    if let Some(r) = &t.requests {
        out.push(format!(
            "requests: {} answered, {} counted by the server ({})",
            r.sent, r.counted, r.source
        ));
    }
    if t.samples_dropped > 0 {
        out.push(format!(
            "{} samples not verified: a verifier's queue was full (counted as unknown)",
            t.samples_dropped
        ));
    }
    if let Some(r) = t.recovery_secs {
        out.push(format!(
            "recovery: trace ingest latency back to its pre-storm level {} after the storm",
            units::secs(r)
        ));
    }
    out
}

/// How the signal's ingest latency was measured: from how many probes, on what
/// schedule (in full unless `told` already), and which found samples carry no latency
/// and why.
fn latency_probes(s: &SignalSummary, schedule_ms: &[f64], told: &mut bool) -> Option<String> {
    if s.latency_probes + s.presence_only + s.first_asked_late == 0 {
        return None;
    }
    let mut line = format!(
        "{}: ingest latency from {} latency probes asked on time",
        s.signal, s.latency_probes
    );
    if let Some(schedule) = describe_schedule(schedule_ms) {
        if *told {
            line.push_str(" (look-ups as above)");
        } else {
            let _ = write!(line, " ({schedule})");
            *told = true;
        }
    }
    if s.presence_only > 0 {
        let _ = write!(
            line,
            "; {} other found samples were asked whether, not when, they arrived",
            s.presence_only
        );
    }
    if s.first_asked_late > 0 {
        let _ = write!(
            line,
            "; {} found probes were first asked late and are not counted",
            s.first_asked_late
        );
    }
    Some(line)
}

/// Ingest latency split into the workload's export wait and the backend's part, and
/// which metric a backend's ingest gate belongs on.
fn latency_parts(s: &SignalSummary) -> Option<String> {
    let (wait, backend) = (s.export_wait?, s.backend_latency?);
    let label = metric_label(&s.signal);
    let kind = match s.backend.split_whitespace().next() {
        Some("tempo") => "Tempo",
        Some("jaeger") => "Jaeger",
        Some("loki") => "Loki",
        _ => "backend",
    };
    Some(format!(
        "{}: ingest latency (completion → first seen) includes the workload's export wait (p50 {}, p95 {}); the backend's part (acknowledged → queryable) is p50 {}, p95 {} over {} acknowledged probes: a gate such as \"{kind} ingest < 100 ms\" belongs on telemetry_{label}_backend_latency, not telemetry_{label}_ingest_latency",
        s.signal,
        ms(wait.med),
        ms(wait.p95),
        ms(backend.med),
        ms(backend.p95),
        s.acknowledged_probes
    ))
}

/// The missing samples by export fate, and a sentence naming the pipeline's own loss.
fn missing_split(s: &SignalSummary) -> Vec<String> {
    let Some(m) = s.missing_split.filter(|_| s.missing > 0) else {
        return Vec::new();
    };
    let mut out = vec![format!(
        "{}: {} missing: {} refused at export (the pipeline said no), {} dropped in the workload's export queue, {} injected by chaos, {} lost after acceptance (the pipeline said yes), {} unaccounted (no ledger answer)",
        s.signal, s.missing, m.refused, m.dropped, m.injected, m.after_acceptance, m.unaccounted
    )];
    if m.refused + m.after_acceptance > 0 {
        out.push(format!(
            "{}: the pipeline refused {} and lost {} after accepting them: missing on the pipeline's side of the export, not the workload's",
            s.signal, m.refused, m.after_acceptance
        ));
    }
    out
}

/// Chaos's injected loss of the signal next to the missing rate measured.
fn injected_beside_measured(t: &TelemetrySummary, s: &SignalSummary) -> Option<String> {
    let e = exporter_of(t, s)?;
    let injected = e.injected_fraction().filter(|_| e.injected > 0)?;
    Some(format!(
        "{}: injected loss {} (chaos dropped {} of {} {} on purpose) beside measured missing {}",
        s.signal,
        percent(injected),
        e.injected,
        e.emitted,
        e.signal,
        missing_rate_cell(s)
    ))
}

/// The exporter counters of the items a signal's samples are made of (`spans` for
/// `traces`, `logs` for `logs`).
pub(crate) fn exporter_of<'a>(
    t: &'a TelemetrySummary,
    s: &SignalSummary,
) -> Option<&'a ExporterCounts> {
    let items = match s.signal.as_str() {
        "traces" => "spans",
        "logs" => "logs",
        _ => return None,
    };
    t.exporter.iter().find(|e| e.signal == items)
}

/// The `telemetry_<label>_*` metric label of a signal.
fn metric_label(signal: &str) -> &str {
    match signal {
        "traces" => "trace",
        "logs" => "log",
        "metrics" => "metric",
        other => other,
    }
}

/// The sampled cell: a count of requests, or of probes for `metrics`.
pub(crate) fn sampled_cell(s: &SignalSummary) -> String {
    if s.signal == "metrics" {
        format!("{} probes", s.sampled)
    } else {
        s.sampled.to_string()
    }
}

/// The measured missing rate: a percentage, `unknown` while samples could not be
/// checked, `—` without samples.
pub(crate) fn missing_rate_cell(s: &SignalSummary) -> String {
    match s.missing_rate {
        Some(r) => percent(r),
        None if s.sampled > 0 => "unknown".to_owned(),
        None => "—".to_owned(),
    }
}

/// The injected loss of a signal (chaos drops over items emitted), `—` without exporter
/// counters for it.
pub(crate) fn injected_cell(t: &TelemetrySummary, s: &SignalSummary) -> String {
    exporter_of(t, s)
        .and_then(ExporterCounts::injected_fraction)
        .map_or("—".to_owned(), percent)
}

/// The latency rows of a signal: what, how many values (`—` when a summary written
/// before the count existed has statistics without it), the statistics. Ingest always;
/// export wait and backend latency when measured.
pub(crate) fn latency_rows(s: &SignalSummary) -> Vec<(&'static str, String, Option<TrendStats>)> {
    let count = |n: u64, t: Option<TrendStats>| {
        if n == 0 && t.is_some() {
            "—".to_owned()
        } else {
            n.to_string()
        }
    };
    let mut rows = vec![(
        "ingest",
        count(s.latency_probes, s.ingest_latency),
        s.ingest_latency,
    )];
    if s.export_wait.is_some() || s.backend_latency.is_some() {
        let n = count(s.acknowledged_probes, s.export_wait.or(s.backend_latency));
        rows.push(("export wait", n.clone(), s.export_wait));
        rows.push(("backend", n, s.backend_latency));
    }
    rows
}

/// A latency probe's look-ups in words, e.g. "look-ups 25 ms apart up to 100 ms after
/// the anchor, 50 ms apart up to 200 ms, then backing off to at most 5 s apart until
/// 30 s"; `None` without a schedule.
pub(crate) fn describe_schedule(schedule_ms: &[f64]) -> Option<String> {
    let (&first, _) = schedule_ms.split_first()?;
    const ANCHOR: &str =
        "; the anchor is the export's acknowledgement when known, else the request's completion";
    if schedule_ms.len() == 1 {
        return Some(format!(
            "one look-up {} after the anchor{ANCHOR}",
            words(first)
        ));
    }
    // Runs of equal gaps: (gap, how many, where the run ends).
    let mut runs: Vec<(f64, usize, f64)> = Vec::new();
    let mut prev = 0.0;
    for &at in schedule_ms {
        let gap = at - prev;
        match runs.last_mut() {
            Some(r) if (r.0 - gap).abs() < 1e-6 => {
                r.1 += 1;
                r.2 = at;
            }
            _ => runs.push((gap, 1, at)),
        }
        prev = at;
    }
    let even = runs.iter().take_while(|r| r.1 >= 2).count();
    let mut parts: Vec<String> = runs[..even]
        .iter()
        .map(|(gap, _, end)| format!("{} apart up to {}", words(*gap), words(*end)))
        .collect();
    let rest = &runs[even..];
    let last = schedule_ms[schedule_ms.len() - 1];
    if parts.is_empty() {
        parts.push(format!("first {}", words(first)));
    }
    parts[0].push_str(" after the anchor");
    let mut text = format!("look-ups {}", parts.join(", "));
    if let Some(widest) = rest
        .iter()
        .skip(usize::from(even == 0))
        .map(|r| r.0)
        .reduce(f64::max)
    {
        let _ = write!(
            text,
            ", then backing off to at most {} apart until {}",
            words(widest),
            words(last)
        );
    }
    text.push_str(ANCHOR);
    Some(text)
}

/// A duration in ms as words: `25 ms`, `1.5 s`, `30 s`.
fn words(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    if v >= 1000.0 {
        format!("{} s", trim(format!("{:.2}", v / 1000.0)))
    } else {
        format!("{} ms", trim(format!("{v:.1}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        ExporterSource, KeepClassSummary, MissingSplit, RequestCount, SignalSummary,
    };

    fn trend(med: f64, p95: f64) -> TrendStats {
        TrendStats {
            min: med / 2.0,
            avg: med,
            med,
            p90: p95,
            p95,
            p99: p95,
            max: p95,
        }
    }

    /// The default poll policy's probe schedule (initial interval 250 ms, ceiling 5 s,
    /// factor 2, settle timeout 30 s).
    const SCHEDULE: [f64; 17] = [
        25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0,
        13000.0, 18000.0, 23000.0, 28000.0, 30000.0,
    ];

    #[test]
    fn every_detail_becomes_one_sentence() {
        let t = TelemetrySummary {
            signals: vec![SignalSummary {
                signal: "traces".into(),
                superseded: 3,
                unknown_reasons: [("tempo at http://t answered 500".to_owned(), 2)].into(),
                classes: vec![KeepClassSummary {
                    name: "baseline".into(),
                    declared: 0.5,
                    samples: 2000,
                    found: 200,
                    unknown: 0,
                    observed: Some(0.1),
                    lower: Some(0.085),
                    upper: Some(0.117),
                    verdict: Verdict::Fail,
                }],
                ..SignalSummary::default()
            }],
            exporter: vec![ExporterCounts {
                signal: "spans".into(),
                emitted: 13,
                accepted: 10,
                refused: 1,
                dropped: 2,
                injected: 0,
            }],
            requests: Some(RequestCount {
                sent: 10,
                counted: 10.0,
                source: "echo-server /metrics".into(),
            }),
            recovery_secs: Some(2.0),
            ..TelemetrySummary::default()
        };
        let notes = telemetry_notes(&t);
        assert_eq!(notes.len(), 6, "{notes:#?}");
        assert!(notes[0].contains("3 exemplars taken over"));
        assert_eq!(
            notes[1],
            "traces: 2 unknown: tempo at http://t answered 500"
        );
        assert_eq!(
            notes[2],
            "traces keep, class baseline: declared 0.5 observed 0.1000 [0.0850, 0.1170] over 2000 samples: FAIL"
        );
        assert_eq!(
            notes[3],
            "exporter spans: emitted 13 accepted 10 refused 1 dropped 2 (export queue full) injected 0 (chaos, on purpose)"
        );
        assert!(notes[4].starts_with("requests: 10 answered, 10 counted"));
        assert!(notes[5].starts_with("recovery: "));
        assert!(telemetry_notes(&TelemetrySummary::default()).is_empty());
    }

    // See: issue #14: found samples without a latency, and the poll schedule's
    // resolution, are stated in the report.
    #[test]
    fn ingest_latency_names_its_probes_the_schedule_and_what_is_not_counted() {
        let t = TelemetrySummary {
            signals: vec![
                SignalSummary {
                    signal: "traces".into(),
                    found: 1245,
                    latency_probes: 38,
                    presence_only: 1204,
                    first_asked_late: 3,
                    ingest_latency: Some(trend(31.0, 87.5)),
                    ..SignalSummary::default()
                },
                SignalSummary {
                    signal: "logs".into(),
                    found: 40,
                    latency_probes: 40,
                    ingest_latency: Some(trend(900.0, 1500.0)),
                    ..SignalSummary::default()
                },
            ],
            probe_schedule_ms: SCHEDULE.to_vec(),
            ..TelemetrySummary::default()
        };
        assert_eq!(
            telemetry_notes(&t),
            [
                "traces: ingest latency from 38 latency probes asked on time (look-ups 25 ms apart up to 100 ms after the anchor, 50 ms apart up to 200 ms, then backing off to at most 5 s apart until 30 s; the anchor is the export's acknowledgement when known, else the request's completion); 1204 other found samples were asked whether, not when, they arrived; 3 found probes were first asked late and are not counted",
                // The same schedule is not told twice.
                "logs: ingest latency from 40 latency probes asked on time (look-ups as above)",
            ]
        );
    }

    #[test]
    fn schedules_are_described_by_their_even_steps_then_the_backoff() {
        let anchor = "; the anchor is the export's acknowledgement when known, else the request's completion";
        assert_eq!(describe_schedule(&[]), None);
        assert_eq!(
            describe_schedule(&[400.0]).unwrap(),
            format!("one look-up 400 ms after the anchor{anchor}")
        );
        // Settle timeout 100 ms: only the first even steps fit.
        assert_eq!(
            describe_schedule(&[25.0, 50.0, 75.0, 100.0]).unwrap(),
            format!("look-ups 25 ms apart up to 100 ms after the anchor{anchor}")
        );
        assert_eq!(
            describe_schedule(&[10.0, 30.0, 70.0, 1500.0]).unwrap(),
            format!(
                "look-ups first 10 ms after the anchor, then backing off to at most 1.43 s apart until 1.5 s{anchor}"
            )
        );
    }

    #[test]
    fn missing_is_split_by_export_fate_and_the_pipelines_loss_is_named() {
        let split = MissingSplit {
            refused: 2,
            dropped: 1,
            injected: 50,
            after_acceptance: 3,
            unaccounted: 2,
        };
        let t = TelemetrySummary {
            signals: vec![SignalSummary {
                signal: "traces".into(),
                backend: "tempo http://tempo:3200".into(),
                sampled: 1000,
                found: 942,
                missing: 58,
                missing_rate: Some(0.058),
                missing_split: Some(split),
                latency_probes: 40,
                acknowledged_probes: 36,
                export_wait: Some(trend(12.0, 40.0)),
                backend_latency: Some(trend(19.0, 47.5)),
                extra_spans: 312,
                ..SignalSummary::default()
            }],
            exporter: vec![ExporterCounts {
                signal: "spans".into(),
                emitted: 30_000,
                accepted: 28_500,
                refused: 0,
                dropped: 0,
                injected: 1_500,
            }],
            ..TelemetrySummary::default()
        };
        let notes = telemetry_notes(&t);
        let has = |want: &str| {
            assert!(notes.iter().any(|n| n == want), "{want}\nnot in {notes:#?}");
        };
        has(
            "traces: ingest latency (completion → first seen) includes the workload's export wait (p50 12.00ms, p95 40.00ms); the backend's part (acknowledged → queryable) is p50 19.00ms, p95 47.50ms over 36 acknowledged probes: a gate such as \"Tempo ingest < 100 ms\" belongs on telemetry_trace_backend_latency, not telemetry_trace_ingest_latency",
        );
        has(
            "traces: 58 missing: 2 refused at export (the pipeline said no), 1 dropped in the workload's export queue, 50 injected by chaos, 3 lost after acceptance (the pipeline said yes), 2 unaccounted (no ledger answer)",
        );
        has(
            "traces: the pipeline refused 2 and lost 3 after accepting them: missing on the pipeline's side of the export, not the workload's",
        );
        has(
            "traces: injected loss 5.00% (chaos dropped 1500 of 30000 spans on purpose) beside measured missing 5.80%",
        );
        has(
            "traces: 312 spans in found traces were not the echo-server's own (a sidecar's, an ingress's), counted apart: not part of found or completeness",
        );
        // Nothing refused or lost after acceptance: no sentence blames the pipeline.
        let mut quiet = t;
        quiet.signals[0].missing_split = Some(MissingSplit {
            refused: 0,
            after_acceptance: 0,
            injected: 58,
            ..MissingSplit::default()
        });
        assert!(
            !telemetry_notes(&quiet)
                .iter()
                .any(|n| n.contains("the pipeline refused"))
        );
    }

    #[test]
    fn exporter_sources_and_metric_probes_are_stated() {
        let t = TelemetrySummary {
            signals: vec![SignalSummary {
                signal: "metrics".into(),
                sampled: 118,
                found: 118,
                ..SignalSummary::default()
            }],
            metric_probes: Some(120),
            exporter_source: Some(ExporterSource {
                replicas: vec!["echo-0".into(), "echo-1".into()],
                unread: vec!["cannot read the run accounting at http://10.0.0.3:8080/runs/r: no answer within 3s".into()],
                partial: true,
                requests: 2000,
                chaos_dropped_requests: 101,
            }),
            samples_dropped: 4,
            ..TelemetrySummary::default()
        };
        let notes = telemetry_notes(&t);
        assert_eq!(
            notes,
            [
                "exporter counts from the run accounting of 2 echo-server replicas: echo-0, echo-1",
                "injected: chaos dropped the telemetry of 101 of the 2000 requests served (5.05%)",
                "exporter counts leave out a replica that could not be read: cannot read the run accounting at http://10.0.0.3:8080/runs/r: no answer within 3s",
                "exporter counts cover only some replicas: one address answered as several (a load-balanced Service), so only the replicas that happened to answer were read",
                "metrics: 120 metric probes sent, 118 verified (a probe is verified once its request is answered)",
                "4 samples not verified: a verifier's queue was full (counted as unknown)",
            ]
        );
        let none = TelemetrySummary {
            exporter_source: Some(ExporterSource::default()),
            ..TelemetrySummary::default()
        };
        assert_eq!(
            telemetry_notes(&none),
            ["exporter counts unavailable: no echo-server replica's run accounting could be read"]
        );
    }

    #[test]
    fn table_cells_label_probes_and_say_unknown_rates() {
        let mut s = SignalSummary {
            signal: "metrics".into(),
            sampled: 12,
            unknown: 12,
            ..SignalSummary::default()
        };
        assert_eq!(sampled_cell(&s), "12 probes");
        assert_eq!(missing_rate_cell(&s), "unknown");
        s.signal = "traces".into();
        assert_eq!(sampled_cell(&s), "12");
        s.missing_rate = Some(0.0);
        assert_eq!(missing_rate_cell(&s), "0.00%");
        let t = TelemetrySummary::default();
        assert_eq!(injected_cell(&t, &s), "—");
    }

    #[test]
    fn loss_is_told_per_replica_when_several_served() {
        let counts = |found, missing| crate::model::ReplicaCounts {
            found,
            missing,
            unknown: 0,
        };
        let t = TelemetrySummary {
            signals: vec![SignalSummary {
                signal: "traces".into(),
                by_replica: [
                    ("echo-a".to_owned(), counts(50, 0)),
                    ("echo-b".to_owned(), counts(25, 25)),
                ]
                .into(),
                ..SignalSummary::default()
            }],
            ..TelemetrySummary::default()
        };
        assert!(
            telemetry_notes(&t)
                .contains(&"traces by replica: echo-a 0 of 50 missing, 0 unknown; echo-b 25 of 50 missing, 0 unknown".to_owned()),
            "{:?}",
            telemetry_notes(&t)
        );
    }
}
