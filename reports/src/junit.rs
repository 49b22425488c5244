//! JUnit XML: one test case per threshold and one per verified telemetry signal, for CI
//! test reporters (GitLab, Jenkins, GitHub test-report actions).

use std::fmt::Write as _;

use crate::escape::xml;
use crate::model::{Outcome, SignalSummary, Summary, TelemetrySummary, ThresholdResult, Verdict};
use crate::notes;
use crate::units::{self, Measure};

/// Renders the run as JUnit XML.
///
/// Two `<testsuite>`s: `thresholds` (one `<testcase>` per threshold; a failed or
/// unknown verdict is a `<failure>` whose message names the expression and the observed
/// value, or why it is unknown — unknown fails closed) and `telemetry` (one per signal;
/// it fails when the round trip could not be judged, `unknown > 0`, or when nothing
/// sampled arrived; tolerable loss is judged by the `telemetry_*` thresholds). A run that
/// could not be carried out (outcome `error`) adds a `run` suite whose one case is an
/// `<error>` with the cause, so a CI reporter never shows it green, thresholds or not.
/// Every string from the summary is escaped.
pub fn render(summary: &Summary) -> String {
    let mut cases_thresholds = String::new();
    let mut failures_thresholds = 0;
    for t in &summary.thresholds {
        if threshold_case(&mut cases_thresholds, t) {
            failures_thresholds += 1;
        }
    }
    let default = TelemetrySummary::default();
    let telemetry = summary.telemetry.as_ref().unwrap_or(&default);
    let signals = telemetry.signals.as_slice();
    let mut cases_telemetry = String::new();
    let mut failures_telemetry = 0;
    for s in signals {
        if signal_case(&mut cases_telemetry, telemetry, s) {
            failures_telemetry += 1;
        }
    }

    let name = xml(&format!("ricochet {}", summary.run.name));
    let time = format!("{:.3}", summary.run.duration_secs);
    let errored = summary.run.outcome == Outcome::Error;
    let tests = summary.thresholds.len() + signals.len() + usize::from(errored);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{name}\" tests=\"{tests}\" failures=\"{}\" errors=\"{}\" time=\"{time}\">",
        failures_thresholds + failures_telemetry,
        usize::from(errored)
    );
    if errored {
        run_error(&mut out, summary, &time);
    }
    let _ = writeln!(
        out,
        "  <testsuite name=\"thresholds\" tests=\"{}\" failures=\"{failures_thresholds}\" errors=\"0\" skipped=\"0\" time=\"{time}\" timestamp=\"{}\">",
        summary.thresholds.len(),
        xml(&summary.run.started_at),
    );
    properties(&mut out, summary);
    out.push_str(&cases_thresholds);
    out.push_str("  </testsuite>\n");
    if !signals.is_empty() {
        let _ = writeln!(
            out,
            "  <testsuite name=\"telemetry\" tests=\"{}\" failures=\"{failures_telemetry}\" errors=\"0\" skipped=\"0\" time=\"{time}\" timestamp=\"{}\">",
            signals.len(),
            xml(&summary.run.started_at),
        );
        out.push_str(&cases_telemetry);
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// The `run` suite of a run that could not be carried out: one case, an `<error>` with
/// the cause (the run's stop reason).
fn run_error(out: &mut String, summary: &Summary, time: &str) {
    let message = format!(
        "the run could not be carried out (exit code {}): {}",
        summary.run.exit_code,
        summary
            .run
            .stop_reason
            .as_deref()
            .unwrap_or("no cause recorded")
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"run\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"{time}\" timestamp=\"{}\">",
        xml(&summary.run.started_at),
    );
    let _ = writeln!(
        out,
        "    <testcase classname=\"run\" name=\"{}\" time=\"{time}\">",
        xml(&format!("run {}", summary.run.name))
    );
    let _ = writeln!(
        out,
        "      <error type=\"run\" message=\"{0}\">{0}</error>",
        xml(&message)
    );
    out.push_str("    </testcase>\n  </testsuite>\n");
}

fn properties(out: &mut String, summary: &Summary) {
    let run = &summary.run;
    let mut props = vec![
        ("loadtest", run.name.clone()),
        ("target", run.target.clone()),
        ("loadgen_version", run.loadgen_version.clone()),
        ("started_at", run.started_at.clone()),
        ("outcome", format!("{:?}", run.outcome).to_lowercase()),
        ("exit_code", run.exit_code.to_string()),
        ("dropped_iterations", summary.dropped_iterations.to_string()),
    ];
    if let Some(rps) = run.target_rps {
        props.push(("target_rps", format!("{rps}")));
    }
    out.push_str("    <properties>\n");
    for (k, v) in props {
        let _ = writeln!(out, "      <property name=\"{k}\" value=\"{}\"/>", xml(&v));
    }
    out.push_str("    </properties>\n");
}

/// Writes one threshold test case; returns whether it failed.
fn threshold_case(out: &mut String, t: &ThresholdResult) -> bool {
    let mut name = format!("{}: {}", t.metric, t.expression);
    if let Some(phase) = &t.phase {
        let _ = write!(name, " [phase {phase}]");
    }
    let _ = write!(
        out,
        "    <testcase classname=\"thresholds\" name=\"{}\" time=\"0\"",
        xml(&name)
    );
    let measure = Measure::of_threshold(t);
    match t.verdict {
        Verdict::Pass => {
            let _ = writeln!(out, ">");
            let _ = writeln!(
                out,
                "      <system-out>{}</system-out>",
                xml(&format!(
                    "observed {} (limit {})",
                    units::observed(t),
                    measure.format(t.limit)
                ))
            );
        }
        Verdict::Fail => {
            let mut message = format!(
                "{} {} failed: observed {}, limit {}",
                t.metric,
                t.expression,
                units::observed(t),
                measure.format(t.limit)
            );
            if let Some(reason) = &t.reason {
                let _ = write!(message, " ({reason})");
            }
            let _ = writeln!(out, ">");
            let _ = writeln!(
                out,
                "      <failure type=\"threshold\" message=\"{0}\">{0}</failure>",
                xml(&message)
            );
        }
        Verdict::Unknown => {
            let message = format!(
                "{} {} could not be judged (unknown fails closed): {}",
                t.metric,
                t.expression,
                t.reason.as_deref().unwrap_or("no reason given")
            );
            let _ = writeln!(out, ">");
            let _ = writeln!(
                out,
                "      <failure type=\"unknown\" message=\"{0}\">{0}</failure>",
                xml(&message)
            );
        }
    }
    out.push_str("    </testcase>\n");
    t.verdict != Verdict::Pass
}

/// Writes one telemetry signal test case; returns whether it failed.
fn signal_case(out: &mut String, t: &TelemetrySummary, s: &SignalSummary) -> bool {
    let what = if s.signal == "metrics" {
        "metric probes"
    } else {
        "sampled requests"
    };
    let mut counts = format!(
        "sampled {}, found {}, missing {}",
        notes::sampled_cell(s),
        s.found,
        s.missing
    );
    if let Some(m) = s.missing_split.filter(|_| s.missing > 0) {
        let _ = write!(
            counts,
            " (refused {}, dropped {}, injected {}, after acceptance {}, unaccounted {})",
            m.refused, m.dropped, m.injected, m.after_acceptance, m.unaccounted
        );
    }
    let _ = write!(
        counts,
        ", incomplete {}, unknown {}; missing rate {}, injected {}",
        s.incomplete,
        s.unknown,
        notes::missing_rate_cell(s),
        notes::injected_cell(t, s)
    );
    if s.extra_spans > 0 {
        let _ = write!(counts, "; extra spans {}", s.extra_spans);
    }
    let mut latency = String::new();
    for (name, n, stats) in notes::latency_rows(s) {
        if let Some(st) = stats {
            let _ = write!(
                latency,
                "; {name} p50 {} p95 {} p99 {} ({n} values)",
                units::ms(st.med),
                units::ms(st.p95),
                units::ms(st.p99)
            );
        }
    }
    if s.presence_only + s.first_asked_late > 0 {
        let _ = write!(
            latency,
            "; no latency: {} presence only, {} first asked late",
            s.presence_only, s.first_asked_late
        );
    }
    let _ = writeln!(
        out,
        "    <testcase classname=\"telemetry\" name=\"{}\" time=\"0\">",
        xml(&format!("{} round trip ({})", s.signal, s.backend))
    );
    let failure = if s.unknown > 0 {
        Some((
            "unknown",
            format!(
                "{}: {} of {} {what} could not be checked (backend could not be asked; unknown fails closed): {counts}",
                s.signal, s.unknown, s.sampled
            ),
        ))
    } else if s.sampled > 0 && s.found == 0 {
        Some((
            "missing",
            format!(
                "{}: none of {} {what} arrived: {counts}",
                s.signal, s.sampled
            ),
        ))
    } else {
        None
    };
    match &failure {
        Some((kind, message)) => {
            let _ = writeln!(
                out,
                "      <failure type=\"{kind}\" message=\"{0}\">{0}</failure>",
                xml(message)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "      <system-out>{}</system-out>",
                xml(&format!("{counts}{latency}"))
            );
        }
    }
    out.push_str("    </testcase>\n");
    failure.is_some()
}
