//! One self-contained HTML report: inline CSS, inline SVG charts, no script, no network.

use std::fmt::Write as _;

use crate::charts::{self, Bucket};
use crate::escape::{self, xml as esc};
use crate::model::{AlertSummary, Outcome, PlatformSummary, Summary, ThresholdResult, Verdict};
use crate::notes;
use crate::platform as pf;
use crate::text::{metric_value, verdict_sentence};
use crate::units::{self, ms, per_sec, percent};

const STYLE: &str = r#"
:root { --pass: #1a7f37; --fail: #cf222e; --unknown: #9a6700; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #1f2328; margin: 0 auto; padding: 24px; max-width: 1180px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 8px; }
header.verdict { border-radius: 8px; padding: 14px 18px; color: #fff; }
header.passed { background: var(--pass); }
header.failed, header.error { background: var(--fail); }
header p { margin: 0; opacity: .95; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.thresholds td:nth-child(3) code, table.thresholds td:nth-child(2) code { white-space: nowrap; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: anywhere; }
tr.pass td.verdict { background: #dafbe1; color: var(--pass); font-weight: 600; }
tr.fail td.verdict { background: #ffebe9; color: var(--fail); font-weight: 600; }
tr.unknown td.verdict { background: #fff8c5; color: var(--unknown); font-weight: 600; }
tr.fail, tr.unknown { background: #fffbfa; }
figure.chart { margin: 10px 0 18px; }
figure.chart svg { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 4px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 0 18px; }
.note { color: var(--muted); font-size: 12.5px; }
.chart-error { color: var(--fail); }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"#;

/// Added to [`STYLE`] only when the page has a platform section, so other pages are
/// byte for byte what they were.
const PLATFORM_STYLE: &str = r#"div.query { margin: 0 0 22px; }
div.query pre { margin: 4px 0 8px; padding: 6px 8px; background: #f6f8fa; border-radius: 6px; white-space: pre-wrap; }
table.alerts code.alert { white-space: nowrap; }
table.alerts td .note { display: block; }
table.alerts tr.timeline td { border-top: 0; padding-top: 0; }
ul.timeline { display: inline; margin: 0; padding: 0; list-style: none; font-variant-numeric: tabular-nums; }
ul.timeline li { display: inline; white-space: nowrap; }
ul.timeline li + li::before { content: " · "; color: var(--muted); }
"#;

/// Renders the run as one self-contained HTML document.
///
/// Charts (each a `<figure class="chart" data-chart="…">` with inline SVG drawn by
/// plotters): request rate achieved vs target, error rate, p50/p95/p99 latency over time
/// (chaos events shaded), one latency percentile plot per scenario, one ingest-latency
/// percentile plot per telemetry signal and one chart per platform query (its series
/// over run time, chaos shaded alike). Time series longer than 600 points are
/// downsampled into buckets and the page says so. A Content-Security-Policy forbids
/// every fetch; there is no script. Every string from the summary is escaped.
pub fn render(summary: &Summary) -> String {
    let run = &summary.run;
    let (class, mark, word) = match run.outcome {
        Outcome::Passed => ("passed", "✓", "PASSED"),
        Outcome::Failed => ("failed", "✗", "FAILED"),
        Outcome::Error => ("error", "✗", "ERROR"),
    };
    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"ricochet-reports {}\">\n\
         <title>{word}: {} — ricochet</title>\n<style>{STYLE}{}</style>\n</head>\n<body>\n",
        env!("CARGO_PKG_VERSION"),
        esc(&run.name),
        if pf::present(summary).is_some() {
            PLATFORM_STYLE
        } else {
            ""
        },
    );
    let _ = write!(
        out,
        "<header class=\"verdict {class}\" id=\"verdict\">\n<h1>{mark} {word}: {}</h1>\n<p>{} (exit code {}).</p>\n</header>\n",
        esc(&run.name),
        esc(&verdict_sentence(summary)),
        run.exit_code
    );
    if run.insecure_skip_verify {
        let _ = writeln!(
            out,
            "<p class=\"warning\" id=\"insecure-skip-verify\"><strong>Warning:</strong> {}.</p>",
            esc(units::INSECURE_SKIP_VERIFY)
        );
    }
    thresholds(&mut out, summary);
    timeline(&mut out, summary);
    latency(&mut out, summary);
    telemetry(&mut out, summary);
    platform(&mut out, summary);
    chaos(&mut out, summary);
    metrics(&mut out, summary);
    metadata(&mut out, summary);
    let _ = write!(
        out,
        "<footer>Generated by ricochet-reports {} from summary.json schemaVersion {}. \
         Latency is measured from each request's scheduled start (open model).</footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        summary.schema_version
    );
    out
}

fn thresholds(out: &mut String, summary: &Summary) {
    out.push_str("<section id=\"thresholds\">\n<h2>Thresholds</h2>\n");
    if summary.thresholds.is_empty() {
        out.push_str("<p class=\"note\">No thresholds were defined.</p>\n</section>\n");
        return;
    }
    out.push_str("<table class=\"thresholds\">\n");
    out.push_str(THRESHOLD_HEAD);
    for t in &summary.thresholds {
        threshold_row(out, t);
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// The head of a thresholds table (the run's, and each query's).
const THRESHOLD_HEAD: &str = "<thead><tr><th>Verdict</th><th>Metric</th><th>Condition</th>\
     <th class=\"num\">Observed</th><th class=\"num\">Limit</th><th>Note</th></tr></thead>\n<tbody>\n";

/// The class and label of a verdict's row.
fn verdict_cell(v: Verdict) -> (&'static str, &'static str) {
    match v {
        Verdict::Pass => ("pass", "✓ pass"),
        Verdict::Fail => ("fail", "✗ fail"),
        Verdict::Unknown => ("unknown", "? unknown"),
    }
}

fn threshold_row(out: &mut String, t: &ThresholdResult) {
    let (class, label) = verdict_cell(t.verdict);
    let note = units::threshold_note(t, esc);
    let _ = writeln!(
        out,
        "<tr class=\"{class}\"><td class=\"verdict\">{label}</td><td><code>{}</code></td><td><code>{}</code></td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
        esc(&t.metric),
        esc(&t.expression),
        esc(&units::observed(t)),
        esc(&units::limit(t)),
        note
    );
}

fn figure(
    out: &mut String,
    id: &str,
    kind: &str,
    extra: &str,
    svg: Result<String, String>,
    caption: &str,
) {
    let _ = writeln!(
        out,
        "<figure class=\"chart\" id=\"{id}\" data-chart=\"{kind}\"{extra}>"
    );
    match svg {
        // Inline SVG in HTML needs no namespace declaration; dropping it keeps the page
        // free of any URL that is not the user's own data.
        Ok(svg) => out.push_str(&svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)),
        Err(e) => {
            let _ = write!(
                out,
                "<p class=\"chart-error\">Chart could not be drawn: {}</p>",
                esc(&e)
            );
        }
    }
    let _ = write!(out, "\n<figcaption>{caption}</figcaption>\n</figure>\n");
}

fn timeline(out: &mut String, summary: &Summary) {
    out.push_str("<section id=\"timeline\">\n<h2>Over time</h2>\n");
    let points = &summary.time_series;
    if points.is_empty() {
        out.push_str("<p class=\"note\">The summary has no time series.</p>\n</section>\n");
        return;
    }
    let (buckets, width): (Vec<Bucket>, usize) = charts::downsample(points);
    let point_secs = charts::point_secs(points);
    // "second" for one-second points, "30-second point" for wider ones.
    let point = if point_secs > 1 {
        format!("{point_secs}-second point")
    } else {
        "second".to_owned()
    };
    if point_secs > 1 {
        let _ = writeln!(
            out,
            "<p class=\"note wide-points\">This run is long, so each point of its time series covers {point_secs} s \
             (the last one may differ): counts are totals over the point, rates are per second, latency percentiles \
             are exact over the point's requests.</p>"
        );
    }
    if width > 1 {
        let points_desc = if point_secs > 1 {
            format!("{point_secs}-second")
        } else {
            "one-second".to_owned()
        };
        let _ = writeln!(
            out,
            "<p class=\"note downsampled\">The {} {points_desc} points are downsampled to {} buckets of {} s for these charts: \
             rates are bucket means, error rate is errors over requests in the bucket, latency percentiles are \
             the worst {point} in the bucket. Tables and thresholds use the full-resolution data.</p>",
            points.len(),
            buckets.len(),
            width as u64 * u64::from(point_secs)
        );
    }
    let duration = summary.run.duration_secs;
    let chaos = &summary.chaos;
    let shaded = if chaos.is_empty() {
        ""
    } else {
        " Shaded: chaos faults in force."
    };
    figure(
        out,
        "chart-request-rate",
        "request-rate",
        "",
        charts::request_rate(&buckets, duration, chaos),
        &format!("Requests completed per second against the planned arrival rate.{shaded}"),
    );
    figure(
        out,
        "chart-error-rate",
        "error-rate",
        "",
        charts::error_rate(&buckets, duration, chaos),
        &format!("Failed requests as a share of requests completed in each {point}.{shaded}"),
    );
    figure(
        out,
        "chart-latency-over-time",
        "latency-over-time",
        "",
        charts::latency(&buckets, duration, chaos),
        &format!(
            "Latency percentiles of the requests completed in each {point}, measured from the scheduled start.{shaded}"
        ),
    );
    out.push_str("</section>\n");
}

fn latency(out: &mut String, summary: &Summary) {
    out.push_str("<section id=\"latency\">\n<h2>Latency</h2>\n");
    out.push_str(
        "<table class=\"latency\">\n<thead><tr><th>Scenario</th><th>Executor</th><th class=\"num\">Target</th>\
         <th class=\"num\">Requests</th><th class=\"num\">Errors</th><th class=\"num\">avg</th><th class=\"num\">p50</th>\
         <th class=\"num\">p90</th><th class=\"num\">p95</th><th class=\"num\">p99</th><th class=\"num\">max</th></tr></thead>\n<tbody>\n",
    );
    let mut rows: Vec<(String, Option<&str>, String, String)> = summary
        .scenarios
        .iter()
        .map(|s| {
            let target = match (s.target_rps, s.vus) {
                (Some(rps), _) => per_sec(rps),
                (None, Some(vus)) => format!("{vus} VUs"),
                (None, None) => "—".to_owned(),
            };
            (
                esc(&s.name),
                Some(s.name.as_str()),
                esc(&s.executor),
                target,
            )
        })
        .collect();
    rows.push((
        "<strong>all</strong>".to_owned(),
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
                    Some(causes) => format!("{} ({})", percent(m.rate), esc(&causes)),
                    None => percent(m.rate),
                }
            });
        let cells: String = match units::duration_trend(summary, scenario) {
            Some(t) => [t.avg, t.med, t.p90, t.p95, t.p99, t.max]
                .map(|v| format!("<td class=\"num\">{}</td>", ms(v)))
                .concat(),
            None => "<td class=\"num\">—</td>".repeat(6),
        };
        let _ = writeln!(
            out,
            "<tr><td>{label}</td><td>{executor}</td><td class=\"num\">{target}</td><td class=\"num\">{requests}</td>\
             <td class=\"num\">{errors}</td>{cells}</tr>"
        );
    }
    let _ = writeln!(
        out,
        "</tbody>\n</table>\n<p>Dropped iterations (maxInFlight reached): <strong>{}</strong>.</p>",
        summary.dropped_iterations
    );
    out.push_str("<h3>Latency distribution per scenario</h3>\n<div class=\"grid\">\n");
    for (i, s) in summary.scenarios.iter().enumerate() {
        // plotters escapes markup in SVG text; control characters are replaced here.
        let title = format!(
            "{}: http_req_duration percentiles",
            escape::terminal(&s.name)
        );
        figure(
            out,
            &format!("chart-latency-distribution-{i}"),
            "latency-distribution",
            &format!(" data-scenario=\"{}\"", esc(&s.name)),
            charts::percentile_plot(&title, &s.latency_percentiles, false),
            &format!(
                "Scenario <code>{}</code>: latency at each percentile; the x axis stretches the tail (90, 99, 99.9 …).",
                esc(&s.name)
            ),
        );
    }
    out.push_str("</div>\n</section>\n");
}

fn telemetry(out: &mut String, summary: &Summary) {
    let Some(telemetry) = &summary.telemetry else {
        return;
    };
    out.push_str("<section id=\"telemetry\">\n<h2>Telemetry round trip</h2>\n");
    out.push_str(
        "<table class=\"telemetry\">\n<thead><tr><th>Signal</th><th>Backend</th><th class=\"num\">Sampled</th>\
         <th class=\"num\">Found</th><th class=\"num\">Missing</th><th class=\"num\">Incomplete</th>\
         <th class=\"num\">Unknown</th><th class=\"num\">Missing rate</th><th class=\"num\">Injected</th></tr></thead>\n<tbody>\n",
    );
    for s in &telemetry.signals {
        let class = if s.unknown > 0 {
            "unknown"
        } else if s.missing > 0 || s.incomplete > 0 {
            "fail"
        } else {
            "pass"
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td class=\"verdict\">{}</td><td><code>{}</code></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&s.signal),
            esc(&s.backend),
            esc(&notes::sampled_cell(s)),
            s.found,
            s.missing,
            s.incomplete,
            s.unknown,
            esc(&notes::missing_rate_cell(s)),
            esc(&notes::injected_cell(telemetry, s)),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out.push_str(
        "<table class=\"telemetry-latency\">\n<thead><tr><th>Signal</th><th>Latency</th><th class=\"num\">Values</th>\
         <th class=\"num\">p50</th><th class=\"num\">p95</th><th class=\"num\">p99</th><th class=\"num\">max</th></tr></thead>\n<tbody>\n",
    );
    for s in &telemetry.signals {
        for (what, n, t) in notes::latency_rows(s) {
            let cells: String = match t {
                Some(t) => [t.med, t.p95, t.p99, t.max]
                    .map(|v| format!("<td class=\"num\">{}</td>", ms(v)))
                    .concat(),
                None => "<td class=\"num\">—</td>".repeat(4),
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{what}</td><td class=\"num\">{}</td>{cells}</tr>",
                esc(&s.signal),
                esc(&n)
            );
        }
    }
    out.push_str("</tbody>\n</table>\n");
    let sentences = notes::telemetry_notes(telemetry);
    if !sentences.is_empty() {
        out.push_str("<ul class=\"notes\">\n");
        for note in &sentences {
            let _ = writeln!(out, "<li>{}</li>", esc(note));
        }
        out.push_str("</ul>\n");
    }
    let plotted: Vec<_> = telemetry
        .signals
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            if !s.ingest_percentiles.is_empty() {
                Some((i, s, s.ingest_percentiles.clone()))
            } else {
                s.ingest_latency
                    .as_ref()
                    .map(|t| (i, s, charts::trend_spectrum(t)))
            }
        })
        .collect();
    if !plotted.is_empty() {
        out.push_str("<h3>Ingest latency distribution per signal</h3>\n<div class=\"grid\">\n");
        for (i, s, spectrum) in plotted {
            figure(
                out,
                &format!("chart-ingest-distribution-{i}"),
                "ingest-distribution",
                &format!(" data-signal=\"{}\"", esc(&s.signal)),
                charts::percentile_plot(
                    &format!("{}: ingest latency percentiles", s.signal),
                    &spectrum,
                    true,
                ),
                &format!(
                    "Signal <code>{}</code>: time from request completion until first seen in <code>{}</code>, \
                     over the latency probes asked on time; it includes the workload's export wait.",
                    esc(&s.signal),
                    esc(&s.backend)
                ),
            );
        }
        out.push_str("</div>\n");
    }
    out.push_str("</section>\n");
}

/// Per query: its expression, what judged it, its chart (series over run time, chaos
/// shaded) and its series' statistics; then the alerts with their timelines, and the
/// receiver.
fn platform(out: &mut String, summary: &Summary) {
    let Some(platform) = pf::present(summary) else {
        return;
    };
    out.push_str("<section id=\"platform\">\n<h2>Platform</h2>\n");
    queries(out, summary, platform);
    alerts(out, summary, platform);
    if let Some(r) = &platform.receiver {
        let _ = writeln!(
            out,
            "<p class=\"receiver\">Receiver <code>{}</code>: {} accepted, {} refused.</p>",
            esc(&r.listen),
            if r.notifications == 1 {
                "1 notification".to_owned()
            } else {
                format!("{} notifications", r.notifications)
            },
            r.refused
        );
    }
    out.push_str("</section>\n");
}

fn queries(out: &mut String, summary: &Summary, platform: &PlatformSummary) {
    let shaded = if summary.chaos.is_empty() {
        ""
    } else {
        " Shaded: chaos faults in force."
    };
    for (i, q) in platform.queries.iter().enumerate() {
        let _ = writeln!(
            out,
            "<div class=\"query\" id=\"query-{i}\">\n<h3>Query <code>{}</code></h3>\n<pre><code>{}</code></pre>",
            esc(&q.name),
            esc(&q.expr)
        );
        let _ = writeln!(
            out,
            "<p class=\"note\">{}, on <code>{}</code>: {} evaluations, {} empty, {}.</p>",
            esc(&pf::cadence(q)),
            esc(&q.backend),
            q.evaluations,
            q.empty,
            esc(&pf::errors_full(q))
        );
        let verdicts = pf::query_thresholds(summary, &q.name);
        if verdicts.is_empty() {
            out.push_str("<p class=\"note\">No threshold judges this query.</p>\n");
        } else {
            out.push_str("<table class=\"thresholds query-verdicts\">\n");
            out.push_str(THRESHOLD_HEAD);
            for t in verdicts {
                threshold_row(out, t);
            }
            out.push_str("</tbody>\n</table>\n");
        }
        let legend = if q.series.len() > charts::MAX_LEGEND {
            format!(
                " The legend names the first {} of {} series.",
                charts::MAX_LEGEND,
                q.series.len()
            )
        } else {
            String::new()
        };
        let what = match q.series.len() {
            0 => "It returned no series.".to_owned(),
            1 => "One series, one point per evaluation that returned it.".to_owned(),
            n => format!("{n} series, one point per evaluation that returned each."),
        };
        figure(
            out,
            &format!("chart-query-{i}"),
            "query",
            &format!(" data-query=\"{}\"", esc(&q.name)),
            charts::query(
                &q.name,
                &q.series,
                q.every_secs,
                summary.run.duration_secs,
                &summary.chaos,
            ),
            &format!(
                "Query <code>{}</code> over run time. {what}{legend}{shaded}",
                esc(&q.name)
            ),
        );
        if !q.series.is_empty() {
            out.push_str(
                "<table class=\"query-series\">\n<thead><tr><th>Series</th><th class=\"num\">Points</th>\
                 <th class=\"num\">Last</th><th class=\"num\">Min</th><th class=\"num\">Max</th></tr></thead>\n<tbody>\n",
            );
            for s in &q.series {
                let cells: String = pf::series_stats(s)
                    .map_or(["—"; 3].map(str::to_owned), |st| st.cells())
                    .map(|c| format!("<td class=\"num\">{}</td>", esc(&c)))
                    .concat();
                let _ = writeln!(
                    out,
                    "<tr><td><code>{}</code></td><td class=\"num\">{}</td>{cells}</tr>",
                    esc(&pf::labels(&s.labels)),
                    s.points.len()
                );
            }
            out.push_str("</tbody>\n</table>\n");
        }
        out.push_str("</div>\n");
    }
}

fn alerts(out: &mut String, summary: &Summary, platform: &PlatformSummary) {
    if platform.alerts.is_empty() {
        return;
    }
    out.push_str(
        "<h3>Alerts</h3>\n<table class=\"alerts\">\n<thead><tr><th>Verdict</th><th>Alert</th><th>Expectation</th>\
         <th class=\"num\">Time to fire</th><th class=\"num\">Time to notify</th><th class=\"num\">Time to resolve</th>\
         <th class=\"num\">Unexpected</th><th>Unknown</th></tr></thead>\n<tbody>\n",
    );
    for a in &platform.alerts {
        alert_row(out, summary, a);
    }
    out.push_str(
        "</tbody>\n</table>\n<p class=\"note\">Times to fire and to notify, and the timelines, count from the start \
         of the alert&#39;s window (its fault or phase); time to resolve from its end. The verdicts are the \
         <code>alert_*</code> thresholds above.</p>\n",
    );
}

fn alert_row(out: &mut String, summary: &Summary, a: &AlertSummary) {
    let (class, label) = match pf::worst(&pf::alert_thresholds(summary, &a.alert)) {
        Some(v) => {
            let (class, label) = verdict_cell(v);
            (format!(" class=\"{class}\""), label)
        }
        None => (String::new(), "—"),
    };
    let unknown = if a.unknown.is_empty() {
        "—".to_owned()
    } else {
        a.unknown
            .iter()
            .map(|r| esc(r))
            .collect::<Vec<_>>()
            .join("<br>")
    };
    let _ = writeln!(
        out,
        "<tr{class}><td class=\"verdict\">{label}</td><td>{}</td><td>{}<span class=\"note\">{}</span></td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td>{unknown}</td></tr>",
        alert_cell(a),
        esc(&pf::expectation(a)),
        esc(&pf::window(a)),
        against(a.time_to_fire_secs, a.fires_within_secs),
        against(a.time_to_notify_secs, a.notifies_within_secs),
        against(a.time_to_resolve_secs, a.resolves_within_secs),
        a.unexpected,
    );
    // The timeline on a row of its own under the alert's, the width of the table.
    // Spaces between the items: where a long timeline may wrap.
    let items = a
        .timeline
        .iter()
        .map(|e| format!("<li>{}</li>", esc(&pf::event(a, e))))
        .collect::<Vec<_>>()
        .join(" ");
    let seen = if items.is_empty() {
        "<span class=\"note\">nothing seen</span>".to_owned()
    } else {
        format!("<ul class=\"timeline\">{items}</ul>")
    };
    let _ = writeln!(
        out,
        "<tr class=\"timeline\"><td></td><td colspan=\"7\">Timeline: {seen}</td></tr>"
    );
}

/// The alert's name, and its matchers below it.
fn alert_cell(a: &AlertSummary) -> String {
    let mut cell = format!("<code class=\"alert\">{}</code>", esc(&a.alert));
    if !a.matchers.is_empty() {
        let _ = write!(cell, "<br><code>{}</code>", esc(&pf::labels(&a.matchers)));
    }
    cell
}

/// A measured time over its bound: `+12.0s<span class="note">limit 2m00s</span>`.
fn against(measured: Option<f64>, bound: Option<f64>) -> String {
    let v = measured.map_or("—".to_owned(), units::offset);
    match bound {
        Some(b) => format!("{v}<span class=\"note\">limit {}</span>", units::secs(b)),
        None => v,
    }
}

fn chaos(out: &mut String, summary: &Summary) {
    if summary.chaos.is_empty() {
        return;
    }
    // The name column only when an entry has one, so older runs read as before.
    let named = summary.chaos.iter().any(|c| c.name.is_some());
    let _ = write!(
        out,
        "<section id=\"chaos\">\n<h2>Chaos timeline</h2>\n<table class=\"chaos\">\n<thead><tr><th class=\"num\">From</th>\
         <th class=\"num\">To</th><th class=\"num\">Duration</th>{}<th>Fault</th></tr></thead>\n<tbody>\n",
        if named { "<th>Name</th>" } else { "" }
    );
    for c in &summary.chaos {
        let name = match (&c.name, named) {
            (Some(n), _) => format!("<td>{}</td>", esc(n)),
            (None, true) => "<td>—</td>".to_owned(),
            (None, false) => String::new(),
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>{name}<td><code>{}</code></td></tr>",
            units::secs(c.start_secs),
            units::secs(c.end_secs),
            units::secs(c.end_secs - c.start_secs),
            esc(&c.fault)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn metrics(out: &mut String, summary: &Summary) {
    out.push_str(
        "<section id=\"metrics\">\n<h2>All metrics</h2>\n<table class=\"metrics\">\n<thead><tr><th>Metric</th><th>Value</th></tr></thead>\n<tbody>\n",
    );
    for (name, m) in &summary.metrics {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>",
            esc(name),
            esc(&metric_value(m))
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn metadata(out: &mut String, summary: &Summary) {
    out.push_str("<section id=\"run\">\n<h2>Run</h2>\n<dl class=\"meta\">\n");
    let rows = units::metadata_rows(summary, esc, |s| format!("<code>{}</code>", esc(s)));
    for (k, v) in rows {
        let _ = writeln!(out, "<dt>{k}</dt><dd>{v}</dd>");
    }
    out.push_str("</dl>\n</section>\n");
}
