//! The Prometheus text exposition format (version 0.0.4) of a [`Batch`], for the
//! endpoints Prometheus scrapes rather than receives pushes from (`loadgen canary`'s
//! `/metrics`): one `# TYPE` line per metric name, then its samples; histograms as
//! cumulative `_bucket{le}` series with `_sum` and `_count`, as remote write sends them.

use std::fmt::Write as _;

use crate::model::{Batch, Histogram, Kind};

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `batch` as exposition text. Samples of one name are written together, in the order
/// their names first appear; no timestamps (the scrape's time is theirs).
pub fn render(batch: &Batch) -> String {
    let mut out = String::new();
    let mut names: Vec<(&str, Kind)> = Vec::new();
    for s in &batch.series {
        if !names.iter().any(|(n, _)| *n == s.name) {
            names.push((&s.name, s.kind));
        }
    }
    for (name, kind) in names {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in batch.series.iter().filter(|s| s.name == name) {
            sample(&mut out, name, &s.labels, None, s.value);
        }
    }
    let mut hist_names: Vec<&str> = Vec::new();
    for h in &batch.histograms {
        if !hist_names.contains(&h.name.as_str()) {
            hist_names.push(&h.name);
        }
    }
    for name in hist_names {
        let _ = writeln!(out, "# TYPE {name} histogram");
        for h in batch.histograms.iter().filter(|h| h.name == name) {
            histogram(&mut out, h);
        }
    }
    out
}

fn histogram(out: &mut String, h: &Histogram) {
    let bucket = format!("{}_bucket", h.name);
    let mut cumulative = 0u64;
    for (bound, n) in h.bounds.iter().zip(&h.counts) {
        cumulative += n;
        sample(
            out,
            &bucket,
            &h.labels,
            Some(&number(*bound)),
            cumulative as f64,
        );
    }
    sample(out, &bucket, &h.labels, Some("+Inf"), h.count as f64);
    sample(out, &format!("{}_sum", h.name), &h.labels, None, h.sum);
    sample(
        out,
        &format!("{}_count", h.name),
        &h.labels,
        None,
        h.count as f64,
    );
}

fn sample(out: &mut String, name: &str, labels: &[(String, String)], le: Option<&str>, v: f64) {
    out.push_str(name);
    let le = le.map(|b| ("le", b));
    let all = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(le);
    let mut first = true;
    for (k, v) in all {
        out.push(if first { '{' } else { ',' });
        first = false;
        let _ = write!(out, "{k}=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(v));
}

/// A sample value as the format spells it: `NaN`, `+Inf`, `-Inf`, or the shortest
/// decimal that reads back as `v`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::model::Series;

    fn counter(name: &str, labels: &[(&str, &str)], value: f64) -> Series {
        Series {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            value,
            kind: Kind::Counter,
        }
    }

    #[test]
    fn series_are_grouped_by_name_escaped_and_histograms_are_cumulative() {
        let mut b = Batch::new(SystemTime::now());
        b.series
            .push(counter("reqs_total", &[("path", "/a\"b\\")], 3.0));
        b.series.push(Series {
            name: "up".into(),
            labels: Vec::new(),
            value: 1.0,
            kind: Kind::Gauge,
        });
        b.series.push(counter("reqs_total", &[("path", "/c")], 0.5));
        b.histograms.push(Histogram {
            name: "lat_seconds".into(),
            labels: vec![("s".into(), "x".into())],
            count: 6,
            sum: 2.25,
            bounds: vec![0.1, 1.0],
            counts: vec![1, 3, 2],
        });
        let text = render(&b);
        assert_eq!(
            text,
            "# TYPE reqs_total counter\n\
             reqs_total{path=\"/a\\\"b\\\\\"} 3\n\
             reqs_total{path=\"/c\"} 0.5\n\
             # TYPE up gauge\n\
             up 1\n\
             # TYPE lat_seconds histogram\n\
             lat_seconds_bucket{s=\"x\",le=\"0.1\"} 1\n\
             lat_seconds_bucket{s=\"x\",le=\"1\"} 4\n\
             lat_seconds_bucket{s=\"x\",le=\"+Inf\"} 6\n\
             lat_seconds_sum{s=\"x\"} 2.25\n\
             lat_seconds_count{s=\"x\"} 6\n"
        );
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
    }
}
