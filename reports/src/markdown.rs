//! Markdown report, ready to paste into an issue or pull request (GitHub-flavoured tables).

use std::fmt::Write as _;

use crate::escape::markdown as md;
use crate::model::{Outcome, Summary, Verdict};
use crate::notes;
use crate::platform as pf;
use crate::text::{metric_value, verdict_sentence};
use crate::units::{self, ms, per_sec, percent};

/// Renders the run as Markdown: verdict first, then thresholds, latency percentiles per
/// scenario, the telemetry round trip, the platform's queries and alerts, the chaos
/// timeline and run metadata.
///
/// Every string from the summary is escaped so it cannot break a table or inject HTML.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let mark = match summary.run.outcome {
        Outcome::Passed => "✅ PASSED",
        Outcome::Failed => "❌ FAILED",
        Outcome::Error => "💥 ERROR",
    };
    let _ = writeln!(out, "## {mark}: {}\n", md(&summary.run.name));
    let _ = writeln!(
        out,
        "{} (exit code {}).\n",
        capitalise(&md(&verdict_sentence(summary))),
        summary.run.exit_code
    );
    if summary.run.insecure_skip_verify {
        let _ = writeln!(
            out,
            "> ⚠️ **Warning:** {}.\n",
            md(units::INSECURE_SKIP_VERIFY)
        );
    }
    thresholds(&mut out, summary);
    latency(&mut out, summary);
    telemetry(&mut out, summary);
    platform(&mut out, summary);
    chaos(&mut out, summary);
    metadata(&mut out, summary);
    out
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn thresholds(out: &mut String, summary: &Summary) {
    out.push_str("### Thresholds\n\n");
    if summary.thresholds.is_empty() {
        out.push_str("No thresholds were defined.\n\n");
        return;
    }
    out.push_str("| | Metric | Condition | Observed | Limit | Note |\n");
    out.push_str("|---|---|---|---:|---:|---|\n");
    for t in &summary.thresholds {
        let mark = match t.verdict {
            Verdict::Pass => "✅ pass",
            Verdict::Fail => "❌ fail",
            Verdict::Unknown => "❔ unknown",
        };
        let note = units::threshold_note(t, md);
        let _ = writeln!(
            out,
            "| {mark} | `{}` | `{}` | {} | {} | {} |",
            code(&t.metric),
            code(&t.expression),
            units::observed(t),
            units::limit(t),
            note
        );
    }
    out.push('\n');
}

/// Text for inside a code span in a table cell: backticks and pipes cannot be
/// backslash-escaped in code spans everywhere, so they are replaced.
fn code(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '`' => '\'',
            '|' => '¦',
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

fn latency(out: &mut String, summary: &Summary) {
    out.push_str("### Latency (`http_req_duration`, from the scheduled start)\n\n");
    out.push_str("| Scenario | Executor | Target | Requests | Errors | avg | p50 | p90 | p95 | p99 | max |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut rows: Vec<(String, Option<&str>, String, String)> = summary
        .scenarios
        .iter()
        .map(|s| {
            let target = match (s.target_rps, s.vus) {
                (Some(rps), _) => per_sec(rps),
                (None, Some(vus)) => format!("{vus} VUs"),
                (None, None) => "—".to_owned(),
            };
            (md(&s.name), Some(s.name.as_str()), md(&s.executor), target)
        })
        .collect();
    rows.push((
        "**all**".to_owned(),
        None,
        String::new(),
        summary.run.target_rps.map_or("—".to_owned(), per_sec),
    ));
    for (label, scenario, executor, target) in rows {
        let requests = units::metric(summary, "http_reqs", scenario)
            .map_or("—".to_owned(), |m| m.count.to_string());
        let errors =
            units::metric(summary, "http_req_failed", scenario).map_or("—".to_owned(), |m| {
                match units::error_breakdown(&m.errors) {
                    Some(causes) => format!("{} ({})", percent(m.rate), md(&causes)),
                    None => percent(m.rate),
                }
            });
        let cells = match units::duration_trend(summary, scenario) {
            Some(t) => [t.avg, t.med, t.p90, t.p95, t.p99, t.max]
                .map(ms)
                .join(" | "),
            None => ["—"; 6].join(" | "),
        };
        let _ = writeln!(
            out,
            "| {label} | {executor} | {target} | {requests} | {errors} | {cells} |"
        );
    }
    let _ = writeln!(
        out,
        "\nDropped iterations (maxInFlight reached): **{}**.\n",
        summary.dropped_iterations
    );
    let others: Vec<_> = summary
        .metrics
        .iter()
        .filter(|(name, _)| {
            !name.starts_with("http_req_duration")
                && !name.starts_with("http_reqs")
                && !name.starts_with("http_req_failed")
        })
        .collect();
    if !others.is_empty() {
        out.push_str("<details><summary>Other metrics</summary>\n\n");
        out.push_str("| Metric | Value |\n|---|---|\n");
        for (name, m) in others {
            let _ = writeln!(out, "| `{}` | {} |", code(name), metric_value(m));
        }
        out.push_str("\n</details>\n\n");
    }
}

fn telemetry(out: &mut String, summary: &Summary) {
    let Some(telemetry) = &summary.telemetry else {
        return;
    };
    out.push_str("### Telemetry round trip\n\n");
    out.push_str(
        "| Signal | Backend | Sampled | Found | Missing | Incomplete | Unknown | Missing rate | Injected |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in &telemetry.signals {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md(&s.signal),
            md(&s.backend),
            notes::sampled_cell(s),
            s.found,
            s.missing,
            s.incomplete,
            s.unknown,
            notes::missing_rate_cell(s),
            notes::injected_cell(telemetry, s),
        );
    }
    out.push('\n');
    out.push_str("| Signal | Latency | Values | p50 | p95 | p99 | max |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    for s in &telemetry.signals {
        for (what, n, t) in notes::latency_rows(s) {
            let cells = match t {
                Some(t) => [t.med, t.p95, t.p99, t.max].map(ms).join(" | "),
                None => ["—"; 4].join(" | "),
            };
            let _ = writeln!(out, "| {} | {what} | {n} | {cells} |", md(&s.signal));
        }
    }
    out.push('\n');
    let sentences = notes::telemetry_notes(telemetry);
    for note in &sentences {
        let _ = writeln!(out, "- {}", md(note));
    }
    if !sentences.is_empty() {
        out.push('\n');
    }
}

/// A code span outside tables, showing `s` exactly: fenced by more backticks than any
/// run inside it (CommonMark), padded when it starts or ends with one.
fn code_span(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect();
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// Queries (one row per series, the query's counts on its first), their expressions
/// below, alerts with their times against their bounds, the receiver, and each alert's
/// timeline in `<details>`.
fn platform(out: &mut String, summary: &Summary) {
    let Some(platform) = pf::present(summary) else {
        return;
    };
    out.push_str("### Platform\n\n");
    if !platform.queries.is_empty() {
        out.push_str(
            "| Query | Series | Language | Every | Evaluations | Empty | Last | Min | Max | Errors |\n",
        );
        out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---|\n");
        for q in &platform.queries {
            let counts = [
                md(&q.language),
                units::secs(q.every_secs),
                q.evaluations.to_string(),
                q.empty.to_string(),
            ];
            let errors = match units::error_breakdown(&q.errors) {
                Some(causes) => format!("{} ({})", pf::error_count(q), md(&causes)),
                None => "0".to_owned(),
            };
            let rows: Vec<(String, [String; 3])> = if q.series.is_empty() {
                vec![("no series".to_owned(), ["—"; 3].map(str::to_owned))]
            } else {
                q.series
                    .iter()
                    .map(|s| {
                        let cells = pf::series_stats(s)
                            .map_or(["—"; 3].map(str::to_owned), |st| st.cells());
                        (format!("`{}`", code(&pf::labels(&s.labels))), cells)
                    })
                    .collect()
            };
            for (i, (series, [last, min, max])) in rows.into_iter().enumerate() {
                let (name, counts, errors) = if i == 0 {
                    (
                        format!("`{}`", code(&q.name)),
                        counts.join(" | "),
                        errors.as_str(),
                    )
                } else {
                    (String::new(), [""; 4].join(" | "), "")
                };
                let _ = writeln!(
                    out,
                    "| {name} | {series} | {counts} | {last} | {min} | {max} | {errors} |"
                );
            }
        }
        out.push('\n');
        for q in &platform.queries {
            let _ = writeln!(
                out,
                "- {} on {}: {}",
                code_span(&q.name),
                md(&q.backend),
                code_span(&q.expr)
            );
        }
        out.push('\n');
    }
    if !platform.alerts.is_empty() {
        out.push_str(
            "| Alert | Expectation | Window | Time to fire | Time to notify | Time to resolve | Unexpected | Unknown |\n",
        );
        out.push_str("|---|---|---|---:|---:|---:|---:|---|\n");
        for a in &platform.alerts {
            let unknown = if a.unknown.is_empty() {
                "—".to_owned()
            } else {
                md(&a.unknown.join("; "))
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {} | {unknown} |",
                code(&pf::selector(a)),
                md(&pf::expectation(a)),
                pf::window(a),
                pf::against(a.time_to_fire_secs, a.fires_within_secs),
                pf::against(a.time_to_notify_secs, a.notifies_within_secs),
                pf::against(a.time_to_resolve_secs, a.resolves_within_secs),
                a.unexpected,
            );
        }
        out.push_str(
            "\nTimes to fire and to notify count from the start of the alert's window, time to resolve from its end.\n\n",
        );
    }
    if let Some(r) = &platform.receiver {
        let _ = writeln!(out, "{}.\n", capitalise(&md(&pf::receiver(r))));
    }
    let seen: Vec<_> = platform
        .alerts
        .iter()
        .filter(|a| !a.timeline.is_empty())
        .collect();
    if !seen.is_empty() {
        out.push_str("<details><summary>Alert timelines (from the start of each alert's window)</summary>\n\n");
        for a in seen {
            let events: Vec<String> = a.timeline.iter().map(|e| md(&pf::event(a, e))).collect();
            let _ = writeln!(
                out,
                "- `{}` ({}): {}",
                code(&pf::selector(a)),
                md(&pf::expectation(a)),
                events.join(" · ")
            );
        }
        out.push_str("\n</details>\n\n");
    }
}

fn chaos(out: &mut String, summary: &Summary) {
    if summary.chaos.is_empty() {
        return;
    }
    // The name column only when an entry has one, so older runs read as before.
    let named = summary.chaos.iter().any(|c| c.name.is_some());
    if named {
        out.push_str(
            "### Chaos timeline\n\n| From | To | Duration | Name | Fault |\n|---:|---:|---:|---|---|\n",
        );
    } else {
        out.push_str(
            "### Chaos timeline\n\n| From | To | Duration | Fault |\n|---:|---:|---:|---|\n",
        );
    }
    for c in &summary.chaos {
        let name = match (&c.name, named) {
            (Some(n), _) => format!(" {} |", md(n)),
            (None, true) => " — |".to_owned(),
            (None, false) => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} |{name} `{}` |",
            units::secs(c.start_secs),
            units::secs(c.end_secs),
            units::secs(c.end_secs - c.start_secs),
            code(&c.fault)
        );
    }
    out.push('\n');
}

fn metadata(out: &mut String, summary: &Summary) {
    out.push_str("<details><summary>Run metadata</summary>\n\n| | |\n|---|---|\n");
    let rows = units::metadata_rows(summary, md, |s| format!("`{}`", code(s)));
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    out.push_str("\n</details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_outside_tables_show_the_text_exactly() {
        assert_eq!(
            code_span("{app=\"x\"} |= \"<b>\""),
            "`{app=\"x\"} |= \"<b>\"`"
        );
        // A fence longer than any backtick run inside, padded when the text starts or
        // ends with one.
        assert_eq!(code_span("a `b` c"), "``a `b` c``");
        assert_eq!(code_span("`x``"), "``` `x`` ```");
        assert_eq!(code_span("a\nb"), "`a b`");
    }
}
