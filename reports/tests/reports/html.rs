//! HTML: structure snapshot, self-containment, escaping.

use std::fmt::Write as _;

use ricochet_reports::html;

use crate::{fixture, hostile};

/// The opening tags named `tag` (`<figure ...>`), each up to its `>`.
pub(crate) fn open_tags<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let needle = format!("<{tag}");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&needle) {
        let after = &rest[i + needle.len()..];
        if after.starts_with([' ', '>']) {
            let end = after.find('>').unwrap();
            out.push(&rest[i..i + needle.len() + end + 1]);
        }
        rest = after;
    }
    out
}

pub(crate) fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let i = tag.find(&needle)? + needle.len();
    let len = tag[i..].find('"')?;
    Some(&tag[i..i + len])
}

/// A readable outline of the page: sections, figures (with their SVG count), table rows.
pub(crate) fn outline(page: &str) -> String {
    let mut out = String::new();
    for s in open_tags(page, "section") {
        let _ = writeln!(out, "section #{}", attr(s, "id").unwrap());
    }
    let figures: Vec<&str> = page.split("<figure ").skip(1).collect();
    for f in figures {
        let open = &f[..f.find('>').unwrap()];
        let body = &f[..f.find("</figure>").unwrap()];
        // `query=` only on a platform query's chart, so older outlines read as before.
        let query = attr(&format!(" {open}"), "data-query")
            .map(|q| format!(" query={q:?}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "figure #{} chart={} scenario={:?} signal={:?}{query} svg={} polylines={}",
            attr(&format!(" {open}"), "id").unwrap(),
            attr(&format!(" {open}"), "data-chart").unwrap(),
            attr(&format!(" {open}"), "data-scenario"),
            attr(&format!(" {open}"), "data-signal"),
            body.matches("<svg").count(),
            body.matches("<polyline").count() > 0,
        );
    }
    let table = &page[page.find("<table class=\"thresholds\">").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    for row in table.split("<tr class=\"").skip(1) {
        let class = &row[..row.find('"').unwrap()];
        let metric = &row[row.find("<code>").unwrap() + 6..row.find("</code>").unwrap()];
        let _ = writeln!(out, "threshold row class={class} metric={metric}");
    }
    out
}

#[test]
fn html_structure_matches_the_snapshot() {
    insta::assert_snapshot!(
        "html_outline",
        outline(&html::render(&fixture::realistic()))
    );
}

#[test]
fn html_has_one_chart_per_series_kind_scenario_and_signal() {
    let summary = fixture::realistic();
    let page = html::render(&summary);
    let figures = open_tags(&page, "figure");
    let count = |kind: &str| {
        figures
            .iter()
            .filter(|f| attr(f, "data-chart") == Some(kind))
            .count()
    };
    assert_eq!(count("request-rate"), 1);
    assert_eq!(count("error-rate"), 1);
    assert_eq!(count("latency-over-time"), 1);
    assert_eq!(count("latency-distribution"), summary.scenarios.len());
    // metrics has no ingest latency, so two of three signals are plotted.
    assert_eq!(count("ingest-distribution"), 2);
    assert_eq!(page.matches("<svg").count(), figures.len());
    assert!(!page.contains("class=\"chart-error\""));
    let rows = open_tags(&page, "tr");
    let class = |c: &str| rows.iter().filter(|r| attr(r, "class") == Some(c)).count();
    // Thresholds: 4 pass, 1 fail, 1 unknown; signals: traces and logs lost some (chaos
    // dropped their telemetry), metrics unknown.
    assert_eq!((class("pass"), class("fail"), class("unknown")), (4, 3, 2));
}

// See: issue #14: the ledger's and the poll schedule's measurements are on the page.
#[test]
fn html_shows_latency_parts_probes_missing_by_fate_and_injected_beside_measured_loss() {
    let page = html::render(&fixture::realistic());
    let table = &page[page.find("<table class=\"telemetry\">").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(table.contains("<th class=\"num\">Missing rate</th><th class=\"num\">Injected</th>"));
    assert!(
        table.contains("<td class=\"num\">1.48%</td><td class=\"num\">1.25%</td></tr>"),
        "{table}"
    );
    assert!(
        table.contains("<td class=\"num\">236 probes</td>"),
        "{table}"
    );
    let latency = &page[page.find("<table class=\"telemetry-latency\">").unwrap()..];
    let latency = &latency[..latency.find("</table>").unwrap()];
    for row in [
        "<tr><td>traces</td><td>ingest</td><td class=\"num\">118</td><td class=\"num\">31.00ms</td>",
        "<tr><td>traces</td><td>export wait</td><td class=\"num\">116</td><td class=\"num\">11.00ms</td>",
        "<tr><td>traces</td><td>backend</td><td class=\"num\">116</td><td class=\"num\">19.00ms</td>",
    ] {
        assert!(latency.contains(row), "{row} not in {latency}");
    }
    for note in [
        "traces: ingest latency from 118 latency probes asked on time (look-ups 25 ms apart up to 100 ms after the anchor",
        "; 1015 other found samples were asked whether, not when, they arrived; 2 found probes were first asked late and are not counted</li>",
        "belongs on telemetry_trace_backend_latency",
        "traces: 17 missing: 1 refused at export (the pipeline said no), 0 dropped in the workload&#39;s export queue, 14 injected by chaos, 2 lost after acceptance",
        "traces: the pipeline refused 1 and lost 2 after accepting them",
        "traces: injected loss 1.25% (chaos dropped 5400 of 432000 spans on purpose) beside measured missing 1.48%",
        "traces: 236 spans in found traces were not the echo-server&#39;s own",
        "metrics: 240 metric probes sent, 236 verified",
    ] {
        assert!(page.contains(note), "{note}");
    }
}

/// Every way a page could make the browser fetch something.
pub(crate) fn remote_references(page: &str) -> Vec<String> {
    let lower = page.to_ascii_lowercase();
    let mut found = Vec::new();
    for pattern in [
        "src=",
        "href=",
        "url(",
        "@import",
        "srcset=",
        "xlink:href",
        "<link",
        "<script",
        "<iframe",
        "<object",
        "<embed",
    ] {
        for (i, _) in lower.match_indices(pattern) {
            found.push(lower[i..(i + 80).min(lower.len())].to_owned());
        }
    }
    found
}

#[test]
fn html_is_self_contained_with_no_resource_references() {
    for summary in [fixture::realistic(), hostile(), fixture::large(200, 4)] {
        let page = html::render(&summary);
        let refs = remote_references(&page);
        assert!(refs.is_empty(), "resource references: {refs:#?}");
        for (i, _) in page.match_indices("http") {
            // URLs only appear as text the user supplied (target, backends), escaped in cells.
            let before = &page[i.saturating_sub(12)..i];
            assert!(
                !before.contains('='),
                "URL in an attribute: {}",
                &page[i.saturating_sub(40)..i + 40]
            );
        }
        assert!(page.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    }
}

#[test]
fn html_escapes_every_user_string() {
    let summary = hostile();
    let page = html::render(&summary);
    assert!(!page.contains("<script>"));
    assert!(!page.contains("</td><script"));
    assert!(page.contains("chat&lt;/td&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    // Inside the SVG chart titles too (plotters escapes text content).
    assert!(
        !page.contains('\u{1b}'),
        "control characters reach the page"
    );
    assert_eq!(open_tags(&page, "figure").len(), 3 + 2 + 2);
}

#[test]
fn html_of_a_long_run_says_charts_are_downsampled() {
    let page = html::render(&fixture::large(3600, 2));
    assert!(page.contains("class=\"note downsampled\""));
    assert!(page.contains("The 3600 one-second points are downsampled to 600 buckets of 6 s"));
    let short = html::render(&fixture::realistic());
    assert!(!short.contains("downsampled"));
}

/// `summary` with its time series folded into points of `width` seconds (counts summed,
/// the worst percentile kept as a stand-in for the merged histogram's).
fn widened(mut summary: ricochet_reports::Summary, width: usize) -> ricochet_reports::Summary {
    use ricochet_reports::model::TimePoint;
    let fold = |points: &[TimePoint]| -> Vec<TimePoint> {
        points
            .chunks(width)
            .map(|c| {
                let secs = c.len() as f64;
                let worst =
                    |f: fn(&TimePoint) -> Option<f64>| c.iter().filter_map(f).reduce(f64::max);
                TimePoint {
                    target_rps: Some(c.iter().filter_map(|p| p.target_rps).sum::<f64>() / secs),
                    requests: c.iter().map(|p| p.requests).sum(),
                    errors: c.iter().map(|p| p.errors).sum(),
                    dropped: c.iter().map(|p| p.dropped).sum(),
                    p50_ms: worst(|p| p.p50_ms),
                    p95_ms: worst(|p| p.p95_ms),
                    p99_ms: worst(|p| p.p99_ms),
                    ..TimePoint::empty(c[0].t, c.len() as u32)
                }
            })
            .collect()
    };
    summary.time_series = fold(&summary.time_series);
    for s in &mut summary.scenarios {
        s.time_series = fold(&s.time_series);
    }
    summary
}

/// The largest number labelling the y axis of figure `id` (x labels read as durations).
fn y_axis_max(page: &str, id: &str) -> f64 {
    let start = page.find(&format!("id=\"{id}\"")).unwrap();
    let figure = &page[start..start + page[start..].find("</figure>").unwrap()];
    figure
        .split("</text>")
        .filter_map(|t| t.rsplit('>').next()?.trim().parse::<f64>().ok())
        .fold(0.0, f64::max)
}

// See: issue #15 item 3 (long runs have points of several seconds).
#[test]
fn html_of_wide_points_charts_rates_per_second_and_says_how_wide() {
    let seconds = fixture::realistic();
    let wide = widened(fixture::realistic(), 20);
    assert_eq!(wide.time_series.len(), 6);
    let (a, b) = (html::render(&seconds), html::render(&wide));
    // About 1200 requests a second either way (a 20-second point holds ~24 000).
    let (rate_1s, rate_20s) = (
        y_axis_max(&a, "chart-request-rate"),
        y_axis_max(&b, "chart-request-rate"),
    );
    assert!((1_000.0..1_400.0).contains(&rate_1s), "{rate_1s}");
    assert!((1_000.0..1_400.0).contains(&rate_20s), "{rate_20s}");
    assert!(!a.contains("wide-points"));
    assert!(b.contains("each point of its time series covers 20 s"));
    assert!(b.contains("completed in each 20-second point"));
    let long = html::render(&widened(fixture::large(7200, 2), 2));
    assert!(
        long.contains("The 3600 2-second points are downsampled to 600 buckets of 12 s"),
        "{}",
        &long[long.find("note downsampled").unwrap_or(0)..][..200.min(long.len())]
    );
}
