//! The telemetry round trip's details beyond its table, as plain sentences that every
//! renderer shows (escaped for its format): superseded exemplars, unknown reasons, keep
//! classes, exporter counters, the RED cross-check, recovery time.

use crate::model::{TelemetrySummary, Verdict};
use crate::units;

/// One sentence per detail, in a fixed order.
pub fn telemetry_notes(t: &TelemetrySummary) -> Vec<String> {
    let mut out = Vec::new();
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
    }
    for e in &t.exporter {
        out.push(format!(
            "exporter {}: accepted {} refused {} dropped {}",
            e.signal, e.accepted, e.refused, e.dropped
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
            "{} samples not verified: a verifier's queue was full",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExporterCounts, KeepClassSummary, RequestCount, SignalSummary};

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
                accepted: 10,
                refused: 1,
                dropped: 2,
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
        assert_eq!(notes[3], "exporter spans: accepted 10 refused 1 dropped 2");
        assert!(notes[4].starts_with("requests: 10 answered, 10 counted"));
        assert!(notes[5].starts_with("recovery: "));
        assert!(telemetry_notes(&TelemetrySummary::default()).is_empty());
    }
}
