//! The platform section (queries, alerts, receiver) in every format: what a user reads
//! there, the charts and their chaos shading, escaping, and that a run without one
//! renders as before.

use ricochet_reports::model::{PlatformSummary, Summary};
use ricochet_reports::{Format, html, junit, markdown, render, text};

use crate::fixture;
use crate::html::{attr, open_tags, outline, remote_references};

/// The part of `doc` from `from` up to (not including) `to`.
fn between<'a>(doc: &'a str, from: &str, to: &str) -> &'a str {
    let start = doc
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} not in {doc}"));
    let len = doc[start..]
        .find(to)
        .unwrap_or_else(|| panic!("{to:?} not after {from:?} in {doc}"));
    &doc[start..start + len]
}

/// `with_platform` with hostile strings everywhere the platform section shows one.
fn hostile_platform() -> Summary {
    let evil = "x</td><script>alert(\"x\")</script> & 'q' | `b` ]]> \u{1b}[31m";
    let mut s = fixture::with_platform();
    s.chaos[0].name = Some(format!("errors {evil}"));
    let p = s.platform.as_mut().unwrap();
    p.queries[0].name = format!("lag {evil}");
    p.queries[0].expr = format!("sum(rate(x{{path=\"{evil}\"}}[1m])) < 3");
    p.queries[0].series[0]
        .labels
        .insert("path".to_owned(), evil.to_owned());
    p.queries[1].backend = format!("loki {evil}");
    p.queries[1].errors.insert(format!("refused {evil}"), 1);
    p.alerts[0].alert = format!("Alert {evil}");
    p.alerts[0]
        .matchers
        .insert("team".to_owned(), evil.to_owned());
    p.alerts[0].timeline[0].state = evil.to_owned();
    p.alerts[1].during = Some(evil.to_owned());
    p.alerts[1]
        .unknown
        .push(format!("alertmanager said {evil}"));
    p.receiver.as_mut().unwrap().listen = evil.to_owned();
    s
}

#[test]
fn text_shows_each_query_alert_and_the_receiver_with_times_and_bounds() {
    let t = text::render(&fixture::with_platform(), false);
    // After the telemetry round trip, before the chaos it refers to.
    let order: Vec<usize> = ["TELEMETRY ROUND TRIP", "PLATFORM", "CHAOS"]
        .iter()
        .map(|h| t.find(&format!("\n  {h}\n")).unwrap())
        .collect();
    assert!(order.is_sorted(), "{t}");
    let platform = between(&t, "\n  PLATFORM\n", "\n  CHAOS\n");
    for line in [
        "    query remote_write_lag (promql, every 15s): 9 evaluations, 2 series, 0 errors\n",
        "      {instance=\"prom-0\"}: last 1.5, min 1.1, max 18.5\n",
        "      {instance=\"prom-1\"}: last 0.9, min 0.7, max 12\n",
        "      prometheus http://prometheus:9090: max by (instance) (time() - prometheus_remote_storage_queue_highest_sent_timestamp_seconds{job=\"prometheus\"}) < 1e3\n",
        "    query echo_error_logs (logql, every 15s): 9 evaluations, last 52, min 3, max 52, 1 empty, 3 errors (2 timeout, 1 other)\n",
        "    alert EchoServerHighErrorRate{severity=\"page\"} during errors: fired +12.0s (limit 2m00s), notified +14.1s (limit 3m00s), resolved +9.8s after the fault ended (limit 5m00s)\n",
        "    alert EchoServerHighLatency silent in baseline: fired 2 times (first +20.0s); unknown: alertmanager http://alertmanager:9093: connection refused\n",
        "    receiver 0.0.0.0:9097: 2 notifications accepted, 1 refused\n",
    ] {
        assert!(platform.contains(line), "{line:?} not in\n{platform}");
    }
    insta::assert_snapshot!("platform_text", platform);
    // The chaos entry the alert is tied to, by its name.
    assert!(
        t.contains("\n    1m00s → 1m30s  errors (errorRate=0.3)\n"),
        "{t}"
    );
}

#[test]
fn markdown_has_a_query_table_an_alert_table_and_the_expressions_verbatim() {
    let md = markdown::render(&fixture::with_platform());
    let platform = between(&md, "### Platform\n", "### Chaos timeline\n");
    for row in [
        "| Query | Series | Language | Every | Evaluations | Empty | Last | Min | Max | Errors |\n",
        "| `remote_write_lag` | `{instance=\"prom-0\"}` | promql | 15s | 9 | 0 | 1.5 | 1.1 | 18.5 | 0 |\n",
        "|  | `{instance=\"prom-1\"}` |  |  |  |  | 0.9 | 0.7 | 12 |  |\n",
        "| `echo_error_logs` | `{}` | logql | 15s | 9 | 1 | 52 | 3 | 52 | 3 (2 timeout, 1 status 502) |\n",
        // Code spans outside tables keep `|`, `"`, `<` as written.
        "- `echo_error_logs` on loki http://loki:3100: `sum(count_over_time({app=\"echo-server\"} |= \"error\" != \"<healthz>\" [1m]))`\n",
        "| Alert | Expectation | Window | Time to fire | Time to notify | Time to resolve | Unexpected | Unknown |\n",
        "| `EchoServerHighErrorRate{severity=\"page\"}` | fires during errors | 1m00s → 1m30s | +12.0s (limit 2m00s) | +14.1s (limit 3m00s) | +9.8s (limit 5m00s) | 0 | — |\n",
        "| `EchoServerHighLatency` | silent in baseline | 0s → 1m00s | — | — | — | 2 | alertmanager http://alertmanager:9093: connection refused |\n",
        "Receiver 0.0.0.0:9097: 2 notifications accepted, 1 refused.\n",
        "- `EchoServerHighErrorRate{severity=\"page\"}` (fires during errors): +4.0s prometheus pending · +12.0s prometheus firing · +12.4s alertmanager active · +14.1s receiver notified firing · +39.8s prometheus resolved · +41.2s receiver notified resolved\n",
    ] {
        assert!(platform.contains(row), "{row:?} not in\n{platform}");
    }
    insta::assert_snapshot!("platform_markdown", platform);
    assert!(
        md.contains("| From | To | Duration | Name | Fault |\n|---:|---:|---:|---|---|\n| 1m00s | 1m30s | 30s | errors | `errorRate=0.3` |\n"),
        "{md}"
    );
}

#[test]
fn query_thresholds_read_without_a_unit_in_every_format() {
    let s = fixture::with_platform();
    let t = text::render(&s, false);
    assert!(
        t.contains("    query{name:echo_error_logs}\n    ✗ 'max<40' observed 52\n"),
        "{t}"
    );
    let md = markdown::render(&s);
    assert!(
        md.contains("| ❌ fail | `query{name:echo_error_logs}` | `max<40` | 52 | 40 |  |\n"),
        "{md}"
    );
    let parsed = crate::junit::parse(&junit::render(&s));
    let case = parsed
        .cases
        .iter()
        .find(|c| c.name == "query{name:echo_error_logs}: max<40")
        .unwrap();
    assert_eq!(
        case.failure.as_ref().unwrap().1,
        "query{name:echo_error_logs} max<40 failed: observed 52, limit 40"
    );
    // Alert times stay durations.
    assert!(
        md.contains(
            "| ✅ pass | `alert_time_to_fire{alert:EchoServerHighErrorRate}` | `max<=2m` | 12.00s | 120.00s |  |\n"
        ),
        "{md}"
    );
}

/// The attribute `name` of each `<rect>` in `svg` drawn in the chaos colour.
fn chaos_rects(svg: &str) -> Vec<&str> {
    open_tags(svg, "rect")
        .into_iter()
        .filter(|r| attr(r, "fill") == Some("#D62728") && attr(r, "opacity") == Some("0.12"))
        .collect()
}

/// The x pixel of the x-axis tick labelled `label` (`1m00s`) in `svg`.
fn tick_x(svg: &str, label: &str) -> f64 {
    let end = svg
        .find(&format!(">\n{label}\n</text>"))
        .unwrap_or_else(|| panic!("no tick {label}"));
    let open = &svg[svg[..end].rfind("<text").unwrap()..end];
    attr(open, "x").unwrap().parse().unwrap()
}

/// The figure `id` of `page`, up to its end.
fn figure<'a>(page: &'a str, id: &str) -> &'a str {
    between(page, &format!("id=\"{id}\""), "</figure>")
}

#[test]
fn html_has_one_chart_per_query_with_the_chaos_window_shaded_where_the_latency_chart_shades_it() {
    let summary = fixture::with_platform();
    let page = html::render(&summary);
    let figures = open_tags(&page, "figure");
    let queries: Vec<Option<&str>> = figures
        .iter()
        .filter(|f| attr(f, "data-chart") == Some("query"))
        .map(|f| attr(f, "data-query"))
        .collect();
    assert_eq!(queries, [Some("remote_write_lag"), Some("echo_error_logs")]);
    assert_eq!(page.matches("<svg").count(), figures.len());
    assert!(!page.contains("class=\"chart-error\""));

    let latency = figure(&page, "chart-latency-over-time");
    let [latency_rect] = chaos_rects(latency)[..] else {
        panic!("the latency chart shades one chaos window")
    };
    for id in ["chart-query-0", "chart-query-1"] {
        let svg = figure(&page, id);
        let [rect] = chaos_rects(svg)[..] else {
            panic!("{id}: one chaos window, one shaded rectangle")
        };
        // From the 60 s tick to 90 s (between the 1m20s and 1m40s ticks): the x axis
        // runs 0 s → 2m00s, so a pixel is (2m00s − 0s) / 120 s wide.
        let (x0, x120) = (tick_x(svg, "0s"), tick_x(svg, "2m00s"));
        let px = |t: f64| x0 + (x120 - x0) * t / 120.0;
        let x: f64 = attr(rect, "x").unwrap().parse().unwrap();
        let width: f64 = attr(rect, "width").unwrap().parse().unwrap();
        assert!((x - px(60.0)).abs() <= 1.0, "{id}: {rect} starts at 60 s");
        assert!(
            (x + width - px(90.0)).abs() <= 1.0,
            "{id}: {rect} ends at 90 s"
        );
        assert_eq!(rect, latency_rect, "{id}: shaded as the latency chart is");
        // The chaos entry's name at the top of its window.
        assert!(svg.contains(">\nerrors\n</text>"), "{id}");
    }

    // One line per series, in its own colour and named by its labels in the legend.
    let lag = figure(&page, "chart-query-0");
    for colour in ["#1F77B4", "#FF7F0E"] {
        assert!(
            open_tags(lag, "polyline")
                .iter()
                .any(|p| attr(p, "stroke") == Some(colour)),
            "no {colour} line"
        );
    }
    assert!(lag.contains(">\n{instance=&quot;prom-0&quot;}\n</text>"));
    assert!(lag.contains(">\n{instance=&quot;prom-1&quot;}\n</text>"));
    // Five points, each marked: the one after the missed evaluation stands alone.
    assert_eq!(open_tags(figure(&page, "chart-query-1"), "circle").len(), 5);

    insta::assert_snapshot!("html_platform_outline", outline(&page));
}

#[test]
fn html_shows_each_querys_expression_escaped_and_its_verdicts() {
    let page = html::render(&fixture::with_platform());
    let lag = between(&page, "<div class=\"query\" id=\"query-0\">", "</div>");
    assert!(lag.contains(
        "<pre><code>max by (instance) (time() - prometheus_remote_storage_queue_highest_sent_timestamp_seconds{job=&quot;prometheus&quot;}) &lt; 1e3</code></pre>"
    ), "{lag}");
    assert!(lag.contains(
        "<tr class=\"pass\"><td class=\"verdict\">✓ pass</td><td><code>query{name:remote_write_lag}</code></td><td><code>max&lt;30</code></td>\
         <td class=\"num\">18.5</td><td class=\"num\">30</td><td></td></tr>"
    ), "{lag}");
    let logs = between(&page, "<div class=\"query\" id=\"query-1\">", "</div>");
    assert!(logs.contains(
        "<pre><code>sum(count_over_time({app=&quot;echo-server&quot;} |= &quot;error&quot; != &quot;&lt;healthz&gt;&quot; [1m]))</code></pre>"
    ), "{logs}");
    assert!(
        logs.contains("logql, every 15s, on <code>loki http://loki:3100</code>: 9 evaluations, 1 empty, 3 errors (2 timeout, 1 status 502).")
    );
    assert!(logs.contains("<tr class=\"fail\"><td class=\"verdict\">✗ fail</td><td><code>query{name:echo_error_logs}</code>"));
    assert!(!logs.contains("query{name:remote_write_lag}"));
}

#[test]
fn html_alerts_show_times_against_bounds_verdicts_and_each_timeline_event() {
    let page = html::render(&fixture::with_platform());
    let table = between(&page, "<table class=\"alerts\">", "</table>");
    let rows = open_tags(table, "tr");
    let classes: Vec<Option<&str>> = rows.iter().map(|r| attr(r, "class")).collect();
    assert_eq!(
        classes,
        [
            None,
            Some("pass"),
            Some("timeline"),
            Some("fail"),
            Some("timeline")
        ]
    );
    for cell in [
        "<td><code class=\"alert\">EchoServerHighErrorRate</code><br><code>{severity=&quot;page&quot;}</code></td>\
         <td>fires during errors<span class=\"note\">1m00s → 1m30s</span></td>\
         <td class=\"num\">+12.0s<span class=\"note\">limit 2m00s</span></td>\
         <td class=\"num\">+14.1s<span class=\"note\">limit 3m00s</span></td>\
         <td class=\"num\">+9.8s<span class=\"note\">limit 5m00s</span></td><td class=\"num\">0</td><td>—</td></tr>",
        "<td class=\"num\">2</td><td>alertmanager http://alertmanager:9093: connection refused</td></tr>",
        "<li>+4.0s prometheus pending</li> <li>+12.0s prometheus firing</li> <li>+12.4s alertmanager active</li> \
         <li>+14.1s receiver notified firing</li> <li>+39.8s prometheus resolved</li> <li>+41.2s receiver notified resolved</li>",
        "<li>+20.0s prometheus firing</li> <li>+35.0s prometheus resolved</li> <li>+41.0s prometheus firing</li>",
    ] {
        assert!(table.contains(cell), "{cell} not in {table}");
    }
    assert!(page.contains(
        "<p class=\"receiver\">Receiver <code>0.0.0.0:9097</code>: 2 notifications accepted, 1 refused.</p>"
    ));
    assert!(page.contains("<th>Name</th><th>Fault</th>"));
    assert!(page.contains("<td>errors</td><td><code>errorRate=0.3</code></td>"));
}

#[test]
fn html_with_a_platform_stays_self_contained() {
    for summary in [fixture::with_platform(), hostile_platform()] {
        let page = html::render(&summary);
        let refs = remote_references(&page);
        assert!(refs.is_empty(), "resource references: {refs:#?}");
        assert!(page.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    }
}

/// `md` without its code spans (CommonMark: a run of n backticks up to the next run of
/// exactly n), where nothing is HTML.
fn outside_code_spans(md: &str) -> String {
    let b = md.as_bytes();
    let run = |i: usize| b[i..].iter().take_while(|&&c| c == b'`').count();
    let (mut out, mut i) = (String::new(), 0);
    while i < b.len() {
        if b[i] != b'`' {
            let next = md[i..].find('`').map_or(md.len(), |n| i + n);
            out.push_str(&md[i..next]);
            i = next;
            continue;
        }
        let n = run(i);
        let mut j = i + n;
        let close = loop {
            match md[j..].find('`') {
                None => break None,
                Some(k) if run(j + k) == n => break Some(j + k),
                Some(k) => j += k + run(j + k),
            }
        };
        match close {
            Some(c) => i = c + n,
            None => {
                out.push_str(&md[i..i + n]);
                i += n;
            }
        }
    }
    out
}

#[test]
fn platform_strings_cannot_break_any_format() {
    let summary = hostile_platform();

    let page = html::render(&summary);
    assert!(!page.contains("<script>"), "markup reaches the page");
    assert!(
        !page.contains('\u{1b}'),
        "control characters reach the page"
    );
    assert!(page.contains("lag x&lt;/td&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    assert_eq!(
        open_tags(&page, "figure")
            .iter()
            .filter(|f| attr(f, "data-chart") == Some("query"))
            .count(),
        2
    );
    assert_eq!(
        page.matches("<svg").count(),
        open_tags(&page, "figure").len()
    );

    let md = markdown::render(&summary);
    let outside = outside_code_spans(&md);
    assert!(!outside.contains("<script>"), "{outside}");
    assert!(!md.contains('\u{1b}'));
    let pipes = |l: &str| l.replace("\\|", "").matches('|').count();
    let lines: Vec<&str> = md.lines().collect();
    let (mut header, mut checked) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        if lines.get(i + 1).is_some_and(|n| n.starts_with("|---")) {
            header = pipes(line);
        } else if line.starts_with("| ") && line.contains("script") {
            assert_eq!(pipes(line), header, "row splits into extra cells: {line}");
            checked += 1;
        }
    }
    // Two query rows (name, labels), the errors cell, both alert rows, the chaos row.
    assert!(
        checked >= 5,
        "hostile strings in {checked} table rows:\n{md}"
    );

    let t = text::render(&summary, false);
    assert!(!t.contains('\u{1b}'));
    assert!(
        t.contains("alert Alert x</td><script>alert(\"x\")</script> & 'q' | `b` ]]> \u{FFFD}[31m{")
    );
}

// The platform section is new: a run without one (or with an empty one) reads exactly
// as it did; the existing snapshots pin the rest.
#[test]
fn a_run_without_a_platform_renders_as_before() {
    let before = fixture::realistic();
    let mut empty = before.clone();
    empty.platform = Some(PlatformSummary::default());
    for format in [Format::Text, Format::Markdown, Format::Html, Format::Junit] {
        assert_eq!(render(&before, format), render(&empty, format), "{format}");
    }
    assert!(!text::render(&before, false).contains("PLATFORM"));
    assert!(!markdown::render(&before).contains("Platform"));
    let page = html::render(&before);
    assert!(!page.contains("id=\"platform\"") && !page.contains("div.query"));
    assert!(!page.contains("<th>Name</th>"), "no chaos entry is named");
}
