//! The terminal summary `loadgen run` prints at the end, in the style of k6's.

use std::fmt::Write as _;

use crate::model::{MetricKind, MetricSummary, Outcome, Summary, ThresholdResult, Verdict};
use crate::units::{self, ms, per_sec, percent};
use crate::{escape, notes, platform as pf};

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Column at which metric values start (names are padded with dots up to it).
const NAME_WIDTH: usize = 40;

struct Paint {
    color: bool,
}

impl Paint {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("{code}{s}{RESET}")
        } else {
            s.to_owned()
        }
    }
}

/// Renders the end-of-run summary: verdict line, thresholds (✓ pass, ✗ fail, ? unknown),
/// k6-style metric table, dropped iterations, telemetry table, the platform's queries
/// and alerts, and chaos events.
///
/// `color` adds ANSI colours; the caller decides (colour only when stdout is a terminal
/// and `NO_COLOR` is unset). Every string from the summary is stripped of control
/// characters, so a scenario name cannot rewrite the terminal.
pub fn render(summary: &Summary, color: bool) -> String {
    let p = Paint { color };
    let mut out = String::new();
    verdict(&mut out, summary, &p);
    thresholds(&mut out, &summary.thresholds, &p);
    metrics(&mut out, summary, &p);
    telemetry(&mut out, summary, &p);
    platform(&mut out, summary, &p);
    chaos(&mut out, summary, &p);
    out
}

/// Counts of (failed, unknown) thresholds.
pub(crate) fn failing(thresholds: &[ThresholdResult]) -> (usize, usize) {
    let failed = thresholds
        .iter()
        .filter(|t| t.verdict == Verdict::Fail)
        .count();
    let unknown = thresholds
        .iter()
        .filter(|t| t.verdict == Verdict::Unknown)
        .count();
    (failed, unknown)
}

/// One-line description of the outcome, shared by the text and Markdown renderers.
pub(crate) fn verdict_sentence(summary: &Summary) -> String {
    let total = summary.thresholds.len();
    let (failed, unknown) = failing(&summary.thresholds);
    let mut s = match summary.run.outcome {
        Outcome::Passed => format!("all {total} thresholds passed"),
        Outcome::Failed => format!(
            "{} of {total} thresholds did not pass ({failed} failed, {unknown} unknown)",
            failed + unknown
        ),
        Outcome::Error => "the run could not be carried out".to_owned(),
    };
    match (&summary.run.stop_reason, summary.run.outcome) {
        (Some(reason), Outcome::Error) => {
            let _ = write!(s, ": {reason}");
        }
        (Some(reason), _) => {
            let _ = write!(s, "; stopped early: {reason}");
        }
        (None, _) => {}
    }
    s
}

fn verdict(out: &mut String, summary: &Summary, p: &Paint) {
    let (mark, word, code) = match summary.run.outcome {
        Outcome::Passed => ("✓", "PASSED", GREEN),
        Outcome::Failed => ("✗", "FAILED", RED),
        Outcome::Error => ("✗", "ERROR", RED),
    };
    let _ = writeln!(
        out,
        "\n  {} {} — {} (exit code {})\n",
        p.paint(&format!("{BOLD}{code}"), &format!("{mark} {word}")),
        escape::terminal(&summary.run.name),
        escape::terminal(&verdict_sentence(summary)),
        summary.run.exit_code,
    );
    let _ = writeln!(
        out,
        "  {}",
        p.paint(
            DIM,
            &format!(
                "target {} · {} · {} scenario(s) · loadgen {}",
                escape::terminal(&summary.run.target),
                units::secs(summary.run.duration_secs),
                summary.scenarios.len(),
                escape::terminal(&summary.run.loadgen_version),
            )
        )
    );
    if summary.run.insecure_skip_verify {
        let _ = writeln!(
            out,
            "  {}",
            p.paint(
                &format!("{BOLD}{RED}"),
                &format!("⚠ WARNING: {}", units::INSECURE_SKIP_VERIFY)
            )
        );
    }
}

fn thresholds(out: &mut String, thresholds: &[ThresholdResult], p: &Paint) {
    if thresholds.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n  {}\n", p.paint(BOLD, "THRESHOLDS"));
    let mut last_metric: Option<&str> = None;
    for t in thresholds {
        if last_metric != Some(t.metric.as_str()) {
            let _ = writeln!(out, "    {}", escape::terminal(&t.metric));
            last_metric = Some(&t.metric);
        }
        let (mark, code) = match t.verdict {
            Verdict::Pass => ("✓", GREEN),
            Verdict::Fail => ("✗", RED),
            Verdict::Unknown => ("?", YELLOW),
        };
        let mut line = format!(
            "    {} '{}'",
            p.paint(code, mark),
            escape::terminal(&t.expression)
        );
        match t.observed {
            Some(_) => {
                let _ = write!(line, " observed {}", units::observed(t));
            }
            None if t.verdict == Verdict::Unknown => line.push_str(" unknown"),
            None => {}
        }
        if let Some(phase) = &t.phase {
            let _ = write!(line, " [phase {}]", escape::terminal(phase));
        }
        if let Some(reason) = &t.reason {
            let _ = write!(line, " — {}", escape::terminal(reason));
        }
        if t.abort_on_fail {
            line.push_str(" (abortOnFail)");
        }
        let _ = writeln!(out, "{line}");
    }
}

fn dotted(name: &str, width: usize) -> String {
    let name = escape::terminal(name);
    let len = name.chars().count();
    if len + 1 >= width {
        format!("{name}: ")
    } else {
        format!("{name}{}: ", ".".repeat(width - len))
    }
}

pub(crate) fn metric_value(m: &MetricSummary) -> String {
    match m.kind {
        MetricKind::Trend => match m.trend {
            Some(t) => format!(
                "avg={} min={} med={} max={} p(90)={} p(95)={} p(99)={}",
                ms(t.avg),
                ms(t.min),
                ms(t.med),
                ms(t.max),
                ms(t.p90),
                ms(t.p95),
                ms(t.p99)
            ),
            None => format!("no values ({} samples)", m.count),
        },
        MetricKind::Rate => {
            let mut s = format!(
                "{}  {} out of {}",
                percent(m.rate),
                m.passes.unwrap_or(0),
                m.count
            );
            if let Some(causes) = units::error_breakdown(&m.errors) {
                let _ = write!(s, " (no answer: {causes})");
            }
            s
        }
        MetricKind::Counter => format!("{}  {}", m.count, per_sec(m.rate)),
    }
}

fn metrics(out: &mut String, summary: &Summary, p: &Paint) {
    let _ = writeln!(out, "\n  {}\n", p.paint(BOLD, "METRICS"));
    for (name, m) in &summary.metrics {
        // A tagged metric is indented under its untagged parent, as k6 does.
        let nested = name
            .split_once('{')
            .is_some_and(|(base, _)| summary.metrics.contains_key(base));
        let (indent, width) = if nested {
            ("      ", NAME_WIDTH - 2)
        } else {
            ("    ", NAME_WIDTH)
        };
        let _ = writeln!(out, "{indent}{}{}", dotted(name, width), metric_value(m));
    }
    if !summary.metrics.contains_key("dropped_iterations") {
        let _ = writeln!(
            out,
            "    {}{}",
            dotted("dropped_iterations", NAME_WIDTH),
            summary.dropped_iterations
        );
    }
}

fn telemetry(out: &mut String, summary: &Summary, p: &Paint) {
    let Some(telemetry) = &summary.telemetry else {
        return;
    };
    let _ = writeln!(out, "\n  {}\n", p.paint(BOLD, "TELEMETRY ROUND TRIP"));
    let header = [
        "signal",
        "sampled",
        "found",
        "missing",
        "incomplete",
        "unknown",
        "missing rate",
        "injected",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    for s in &telemetry.signals {
        rows.push(vec![
            escape::terminal(&s.signal),
            notes::sampled_cell(s),
            s.found.to_string(),
            s.missing.to_string(),
            s.incomplete.to_string(),
            s.unknown.to_string(),
            notes::missing_rate_cell(s),
            notes::injected_cell(telemetry, s),
        ]);
    }
    table(out, &rows);
    out.push('\n');
    let mut rows: Vec<Vec<String>> = vec![
        ["latency", "values", "p50", "p95", "p99", "max"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    ];
    for s in &telemetry.signals {
        for (what, n, t) in notes::latency_rows(s) {
            let mut row = vec![format!("{} {what}", escape::terminal(&s.signal)), n];
            match t {
                Some(t) => row.extend([t.med, t.p95, t.p99, t.max].map(ms)),
                None => row.extend(["—"; 4].map(str::to_owned)),
            }
            rows.push(row);
        }
    }
    table(out, &rows);
    for s in &telemetry.signals {
        let _ = writeln!(
            out,
            "    {}",
            p.paint(
                DIM,
                &format!(
                    "{}: {}",
                    escape::terminal(&s.signal),
                    escape::terminal(&s.backend)
                )
            )
        );
    }
    for note in notes::telemetry_notes(telemetry) {
        let _ = writeln!(out, "    {}", escape::terminal(&note));
    }
}

/// One line per query (and per series when it returned several), per alert and for the
/// receiver; query expressions dimmed under their line.
fn platform(out: &mut String, summary: &Summary, p: &Paint) {
    let Some(platform) = pf::present(summary) else {
        return;
    };
    let _ = writeln!(out, "\n  {}\n", p.paint(BOLD, "PLATFORM"));
    for q in &platform.queries {
        let mut line = format!(
            "query {} ({}): {} evaluations",
            q.name,
            pf::cadence(q),
            q.evaluations
        );
        let stats: Vec<_> = q.series.iter().map(|s| (s, pf::series_stats(s))).collect();
        match stats.as_slice() {
            [] => line.push_str(", no series"),
            [(_, Some(one))] => {
                let _ = write!(line, ", {}", one.sentence());
            }
            [(_, None)] => line.push_str(", no points"),
            several => {
                let _ = write!(line, ", {} series", several.len());
            }
        }
        if q.empty > 0 {
            let _ = write!(line, ", {} empty", q.empty);
        }
        let _ = write!(line, ", {}", pf::errors_short(q));
        let _ = writeln!(out, "    {}", escape::terminal(&line));
        if stats.len() > 1 {
            for (series, s) in &stats {
                let values = s.map_or("no points".to_owned(), |s| s.sentence());
                let _ = writeln!(
                    out,
                    "      {}: {values}",
                    escape::terminal(&pf::labels(&series.labels))
                );
            }
        }
        let _ = writeln!(
            out,
            "      {}",
            p.paint(
                DIM,
                &escape::terminal(&format!("{}: {}", q.backend, q.expr))
            )
        );
    }
    for a in &platform.alerts {
        let during = if pf::expects_firing(a) {
            match &a.during {
                Some(d) => format!("during {d}"),
                None => "expected to fire".to_owned(),
            }
        } else {
            pf::expectation(a)
        };
        let line = format!("alert {} {during}: {}", pf::selector(a), pf::essentials(a));
        let _ = writeln!(out, "    {}", escape::terminal(&line));
    }
    if let Some(r) = &platform.receiver {
        let _ = writeln!(out, "    {}", escape::terminal(&pf::receiver(r)));
    }
}

fn chaos(out: &mut String, summary: &Summary, p: &Paint) {
    if summary.chaos.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n  {}\n", p.paint(BOLD, "CHAOS"));
    for c in &summary.chaos {
        let _ = writeln!(
            out,
            "    {} → {}  {}",
            units::secs(c.start_secs),
            units::secs(c.end_secs),
            escape::terminal(&pf::chaos_label(c))
        );
    }
}

/// Left-aligned first column, right-aligned others, two spaces apart.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::from("    ");
        for (c, cell) in row.iter().enumerate() {
            let pad = widths
                .get(c)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            if c == 0 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str("  ");
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}
