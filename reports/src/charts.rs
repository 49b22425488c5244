//! SVG charts for the HTML report, drawn with plotters' SVG backend into strings.

use std::error::Error as StdError;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::model::{ChaosEvent, PercentilePoint, QuerySeries, TimePoint, TrendStats};
use crate::{escape, units};

/// Time series longer than this are downsampled into buckets for charts.
pub(crate) const MAX_POINTS: usize = 600;

const WIDE: (u32, u32) = (1100, 300);
const SMALL: (u32, u32) = (540, 320);
const FONT: &str = "sans-serif";

const BLUE: RGBColor = RGBColor(31, 119, 180);
const GREY: RGBColor = RGBColor(120, 120, 120);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN_: RGBColor = RGBColor(44, 160, 44);
const RED_: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const CHAOS: RGBColor = RGBColor(214, 39, 40);
/// Colours of a query's series, in turn (red is the chaos shading's).
const SERIES: [RGBColor; 8] = [
    BLUE,
    ORANGE,
    GREEN_,
    PURPLE,
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Series of a query named in its chart's legend; the rest are drawn unnamed.
pub(crate) const MAX_LEGEND: usize = 8;
/// Longest series name in a legend, in characters.
const MAX_LABEL: usize = 60;

type ChartResult = Result<(), Box<dyn StdError>>;

/// One bucket of a (possibly downsampled) time series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bucket {
    /// Start, seconds since run start.
    pub t: f64,
    /// Achieved requests per second over the bucket.
    pub rps: f64,
    /// Planned arrivals per second over the bucket's planned seconds, if planned.
    pub target_rps: Option<f64>,
    /// Dropped iterations per second over the bucket.
    pub dropped: f64,
    /// Errors / requests over the bucket, 0..=1 (None without requests).
    pub error_rate: Option<f64>,
    /// Worst point's p50 in the bucket, ms.
    pub p50: Option<f64>,
    /// Worst point's p95 in the bucket, ms.
    pub p95: Option<f64>,
    /// Worst point's p99 in the bucket, ms.
    pub p99: Option<f64>,
}

/// Buckets `points` so at most [`MAX_POINTS`] remain; returns the buckets and the
/// bucket width in points (1 = not downsampled). Counts are divided by the seconds the
/// points cover ([`TimePoint::width_secs`]), so rates are per second whatever the points'
/// width.
pub(crate) fn downsample(points: &[TimePoint]) -> (Vec<Bucket>, usize) {
    let width = points.len().div_ceil(MAX_POINTS).max(1);
    let buckets = points
        .chunks(width)
        .filter_map(|chunk| {
            let first = chunk.first()?;
            let secs: f64 = chunk.iter().map(TimePoint::secs).sum();
            let requests: u64 = chunk.iter().map(|p| p.requests).sum();
            let errors: u64 = chunk.iter().map(|p| p.errors).sum();
            // Weighted by seconds: a shorter last point counts for its seconds only.
            let (planned, planned_secs) = chunk
                .iter()
                .filter_map(|p| p.target_rps.map(|r| (r * p.secs(), p.secs())))
                .fold((0.0, 0.0), |(a, s), (r, w)| (a + r, s + w));
            let worst = |f: fn(&TimePoint) -> Option<f64>| {
                chunk
                    .iter()
                    .filter_map(f)
                    .filter(|v| v.is_finite())
                    .reduce(f64::max)
            };
            Some(Bucket {
                t: first.t,
                rps: requests as f64 / secs,
                target_rps: (planned_secs > 0.0).then(|| planned / planned_secs),
                dropped: chunk.iter().map(|p| p.dropped).sum::<u64>() as f64 / secs,
                error_rate: (requests > 0).then(|| errors as f64 / requests as f64),
                p50: worst(|p| p.p50_ms),
                p95: worst(|p| p.p95_ms),
                p99: worst(|p| p.p99_ms),
            })
        })
        .collect();
    (buckets, width)
}

/// Seconds per point of `points` (the first point's width: every point but the last has
/// it), 1 for one-second points.
pub(crate) fn point_secs(points: &[TimePoint]) -> u32 {
    points.first().map_or(1, |p| p.width_secs.max(1))
}

/// A named line of a chart.
struct Line {
    /// Its legend entry; empty: none.
    label: String,
    color: RGBColor,
    points: Vec<(f64, Option<f64>)>,
    /// Marks each point too (sparse series, where a lone point has no line).
    dots: bool,
}

/// Contiguous runs of present values (gaps where the value is absent are not bridged).
fn segments(points: &[(f64, Option<f64>)]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for &(x, y) in points {
        match y.filter(|v| v.is_finite()) {
            Some(y) => current.push((x, y)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The y range: from 0 (or 10 % below the lowest negative value) to 10 % above the
/// highest value (1 when nothing is above 0).
fn y_range(lines: &[Line]) -> (f64, f64) {
    let values = || {
        lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|p| p.1))
            .filter(|v| v.is_finite())
    };
    let max = values().fold(0.0_f64, f64::max);
    let min = values().fold(0.0_f64, f64::min);
    (
        if min < 0.0 { min * 1.1 } else { 0.0 },
        if max > 0.0 { max * 1.1 } else { 1.0 },
    )
}

/// Shades each chaos event over the whole height of `chart`, one legend entry `chaos`
/// for all, and writes a named event's name at its top left.
fn shade_chaos(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    chaos: &[ChaosEvent],
    x_max: f64,
    (y_min, y_max): (f64, f64),
) -> ChartResult {
    if chaos.is_empty() {
        return Ok(());
    }
    chart
        .draw_series(chaos.iter().map(|c| {
            Rectangle::new(
                [
                    (c.start_secs.max(0.0), y_min),
                    (c.end_secs.min(x_max), y_max),
                ],
                CHAOS.mix(0.12).filled(),
            )
        }))?
        .label("chaos")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], CHAOS.mix(0.25).filled()));
    let nudge = x_max * 0.004;
    chart.draw_series(chaos.iter().filter_map(|c| {
        let name = escape::terminal(c.name.as_deref()?);
        Some(Text::new(
            name,
            (c.start_secs.max(0.0) + nudge, y_max),
            (FONT, 11).into_font().color(&CHAOS),
        ))
    }))?;
    Ok(())
}

/// A time chart (x: seconds since start) of `lines`, with chaos events shaded.
fn timeline(
    title: &str,
    y_desc: &str,
    duration_secs: f64,
    chaos: &[ChaosEvent],
    lines: Vec<Line>,
    y_fmt: fn(f64) -> String,
) -> Result<String, String> {
    let mut svg = String::new();
    draw_timeline(&mut svg, title, y_desc, duration_secs, chaos, &lines, y_fmt)
        .map_err(|e| e.to_string())?;
    Ok(svg)
}

fn draw_timeline(
    svg: &mut String,
    title: &str,
    y_desc: &str,
    duration_secs: f64,
    chaos: &[ChaosEvent],
    lines: &[Line],
    y_fmt: fn(f64) -> String,
) -> ChartResult {
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(duration_secs, f64::max)
        .max(1.0);
    let (y_min, y_max) = y_range(lines);
    let root = SVGBackend::with_string(svg, WIDE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .margin_right(36)
        .caption(title, (FONT, 18))
        .x_label_area_size(32)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..x_max, y_min..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time since start")
        .y_desc(y_desc)
        .x_label_formatter(&|x| units::secs(*x))
        .y_label_formatter(&|y| y_fmt(*y))
        .label_style((FONT, 12))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    shade_chaos(&mut chart, chaos, x_max, (y_min, y_max))?;
    for line in lines {
        let color = line.color;
        let drawn = chart.draw_series(
            segments(&line.points)
                .into_iter()
                .flat_map(move |seg| LineSeries::new(seg, color.stroke_width(2))),
        )?;
        if !line.label.is_empty() {
            drawn.label(line.label.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        }
        if line.dots {
            chart.draw_series(
                line.points
                    .iter()
                    .filter_map(|&(x, y)| Some((x, y.filter(|v| v.is_finite())?)))
                    .map(|p| Circle::new(p, 2, color.filled())),
            )?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 12))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Request rate achieved vs target (and dropped iterations) per second.
pub(crate) fn request_rate(
    b: &[Bucket],
    duration: f64,
    chaos: &[ChaosEvent],
) -> Result<String, String> {
    let mut lines = vec![Line {
        label: "achieved".to_owned(),
        color: BLUE,
        points: b.iter().map(|b| (b.t, Some(b.rps))).collect(),
        dots: false,
    }];
    if b.iter().any(|b| b.target_rps.is_some()) {
        lines.push(Line {
            label: "target".to_owned(),
            color: GREY,
            points: b.iter().map(|b| (b.t, b.target_rps)).collect(),
            dots: false,
        });
    }
    if b.iter().any(|b| b.dropped > 0.0) {
        lines.push(Line {
            label: "dropped".to_owned(),
            color: RED_,
            points: b.iter().map(|b| (b.t, Some(b.dropped))).collect(),
            dots: false,
        });
    }
    timeline(
        "Request rate: achieved vs target",
        "requests / s",
        duration,
        chaos,
        lines,
        |v| format!("{v:.0}"),
    )
}

/// Error rate per second, percent.
pub(crate) fn error_rate(
    b: &[Bucket],
    duration: f64,
    chaos: &[ChaosEvent],
) -> Result<String, String> {
    let lines = vec![Line {
        label: "error rate".to_owned(),
        color: RED_,
        points: b.iter().map(|b| (b.t, b.error_rate)).collect(),
        dots: false,
    }];
    timeline(
        "Error rate",
        "errors",
        duration,
        chaos,
        lines,
        units::percent,
    )
}

/// p50/p95/p99 latency per second.
pub(crate) fn latency(b: &[Bucket], duration: f64, chaos: &[ChaosEvent]) -> Result<String, String> {
    let lines = vec![
        Line {
            label: "p50".to_owned(),
            color: GREEN_,
            points: b.iter().map(|b| (b.t, b.p50)).collect(),
            dots: false,
        },
        Line {
            label: "p95".to_owned(),
            color: ORANGE,
            points: b.iter().map(|b| (b.t, b.p95)).collect(),
            dots: false,
        },
        Line {
            label: "p99".to_owned(),
            color: RED_,
            points: b.iter().map(|b| (b.t, b.p99)).collect(),
            dots: false,
        },
    ];
    timeline(
        "Latency over time (http_req_duration)",
        "latency",
        duration,
        chaos,
        lines,
        units::ms_axis,
    )
}

/// One query's series over run time, chaos shaded as on the latency chart: one line per
/// series (named by its labels, or by the query when it has none; the first
/// [`MAX_LEGEND`] in the legend), broken where an evaluation is missing (a gap longer
/// than 1.5 times `every_secs`), each point marked.
pub(crate) fn query(
    name: &str,
    series: &[QuerySeries],
    every_secs: f64,
    duration: f64,
    chaos: &[ChaosEvent],
) -> Result<String, String> {
    let lines = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let label = if i >= MAX_LEGEND {
                String::new()
            } else if s.labels.is_empty() {
                escape::terminal(name)
            } else {
                let l = escape::terminal(&crate::platform::labels(&s.labels));
                if l.chars().count() > MAX_LABEL {
                    let cut: String = l.chars().take(MAX_LABEL - 1).collect();
                    format!("{cut}…")
                } else {
                    l
                }
            };
            Line {
                label,
                color: SERIES[i % SERIES.len()],
                points: with_gaps(&s.points, every_secs),
                dots: true,
            }
        })
        .collect();
    timeline(
        &format!("query {}", escape::terminal(name)),
        "value",
        duration,
        chaos,
        lines,
        units::number,
    )
}

/// `points` in time order, with a break (a `None`) where consecutive points are more
/// than 1.5 evaluations apart.
fn with_gaps(points: &[[f64; 2]], every_secs: f64) -> Vec<(f64, Option<f64>)> {
    let mut sorted: Vec<[f64; 2]> = points
        .iter()
        .copied()
        .filter(|p| p[0].is_finite())
        .collect();
    sorted.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let mut out = Vec::with_capacity(sorted.len());
    let mut previous: Option<f64> = None;
    for [t, v] in sorted {
        if let Some(p) = previous
            && every_secs > 0.0
            && t - p > every_secs * 1.5
        {
            out.push(((p + t) / 2.0, None));
        }
        out.push((t, Some(v)));
        previous = Some(t);
    }
    out
}

/// Highest percentile plotted: 99.9999 (x = 6).
const MAX_X: f64 = 6.0;

/// Percentile (0..100) → x = -log10(1 - p/100): 90 → 1, 99 → 2, 99.9 → 3.
fn pct_x(p: f64) -> f64 {
    let rest = (1.0 - p / 100.0).max(10f64.powf(-MAX_X));
    (-rest.log10()).clamp(0.0, MAX_X)
}

/// x → percentile label, `99.9%`.
fn x_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let digits = (x.round() as i32 - 2).clamp(0, 6) as usize;
    format!("{p:.digits$}%")
}

/// The percentiles of a trend, as a spectrum (for ingest latency without its own spectrum).
pub(crate) fn trend_spectrum(t: &TrendStats) -> Vec<PercentilePoint> {
    [
        (0.0, t.min),
        (50.0, t.med),
        (90.0, t.p90),
        (95.0, t.p95),
        (99.0, t.p99),
        (100.0, t.max),
    ]
    .into_iter()
    .map(|(percentile, value_ms)| PercentilePoint {
        percentile,
        value_ms,
    })
    .collect()
}

/// HDR-style percentile plot: x is the percentile on a log scale of the tail
/// (50, 90, 99, 99.9, …), y the latency in ms.
pub(crate) fn percentile_plot(
    title: &str,
    spectrum: &[PercentilePoint],
    purple: bool,
) -> Result<String, String> {
    let mut svg = String::new();
    draw_percentiles(
        &mut svg,
        title,
        spectrum,
        if purple { PURPLE } else { BLUE },
    )
    .map_err(|e| e.to_string())?;
    Ok(svg)
}

fn draw_percentiles(
    svg: &mut String,
    title: &str,
    spectrum: &[PercentilePoint],
    color: RGBColor,
) -> ChartResult {
    let finite = spectrum
        .iter()
        .filter(|p| p.percentile.is_finite() && p.value_ms.is_finite());
    let mut points: Vec<(f64, f64)> = finite
        .clone()
        .filter(|p| p.percentile < 100.0)
        .map(|p| (pct_x(p.percentile), p.value_ms))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    // The maximum (percentile 100) has no place on a log axis of the tail: it is drawn
    // one decade after the highest percentile, at a tick labelled "max".
    let tail_end = points.last().map_or(2.0, |p| (p.0 - 1e-9).ceil().max(2.0));
    let max_point = finite
        .filter(|p| p.percentile >= 100.0)
        .map(|p| p.value_ms)
        .reduce(f64::max);
    let max_x = max_point.map(|_| tail_end + 1.0);
    if let (Some(x), Some(v)) = (max_x, max_point) {
        points.push((x, v));
    }
    let x_max = max_x.unwrap_or(tail_end);
    let y_max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let root = SVGBackend::with_string(svg, SMALL).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .margin_right(28)
        .caption(title, (FONT, 16))
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    let label = move |x: &f64| match max_x {
        Some(m) if (x - m).abs() < 1e-6 => "max".to_owned(),
        _ => x_label(*x),
    };
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_desc("percentile")
        .y_desc("latency")
        .x_label_formatter(&label)
        .y_label_formatter(&|y| units::ms_axis(*y))
        .label_style((FONT, 12))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    chart.draw_series(LineSeries::new(
        points.iter().copied(),
        color.stroke_width(2),
    ))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_is_log_of_the_tail() {
        assert!((pct_x(90.0) - 1.0).abs() < 1e-9);
        assert!((pct_x(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(pct_x(100.0), MAX_X);
        assert_eq!(x_label(1.0), "90%");
        assert_eq!(x_label(3.0), "99.9%");
        assert_eq!(x_label(4.0), "99.99%");
    }

    #[test]
    fn segments_do_not_bridge_gaps() {
        let s = segments(&[
            (0.0, Some(1.0)),
            (1.0, None),
            (2.0, Some(2.0)),
            (3.0, Some(3.0)),
        ]);
        assert_eq!(s, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
    }

    #[test]
    fn query_series_break_where_an_evaluation_is_missing() {
        let points = with_gaps(&[[30.0, 3.0], [0.0, 1.0], [15.0, 2.0], [75.0, 4.0]], 15.0);
        assert_eq!(
            points,
            vec![
                (0.0, Some(1.0)),
                (15.0, Some(2.0)),
                (30.0, Some(3.0)),
                (52.5, None),
                (75.0, Some(4.0))
            ]
        );
    }

    #[test]
    fn downsampling_keeps_totals_and_worst_latency() {
        let points: Vec<TimePoint> = (0..1200)
            .map(|i| TimePoint {
                t: f64::from(i),
                width_secs: 1,
                target_rps: Some(10.0),
                requests: 10,
                errors: u64::from(i % 2 == 0),
                dropped: 0,
                p50_ms: Some(1.0),
                p95_ms: Some(f64::from(i)),
                p99_ms: None,
            })
            .collect();
        let (b, width) = downsample(&points);
        assert_eq!(width, 2);
        assert_eq!(b.len(), 600);
        assert_eq!(b[0].rps, 10.0);
        assert_eq!(b[0].error_rate, Some(0.05));
        assert_eq!(b[1].p95, Some(3.0));
        assert_eq!(b[1].p99, None);
    }

    // See: issue #15 item 3 (long runs have points of several seconds).
    #[test]
    fn rates_of_wide_points_are_per_second() {
        let point = |t: f64, width_secs: u32, requests: u64| TimePoint {
            target_rps: Some(10.0),
            requests,
            errors: requests / 10,
            dropped: u64::from(width_secs),
            p99_ms: Some(t),
            ..TimePoint::empty(t, width_secs)
        };
        // Not downsampled: one bucket per point, at 10/s.
        let points = [
            point(0.0, 60, 600),
            point(60.0, 60, 600),
            point(120.0, 30, 300),
        ];
        let (b, width) = downsample(&points);
        assert_eq!(width, 1);
        let rates: Vec<_> = b.iter().map(|b| (b.t, b.rps, b.dropped)).collect();
        assert_eq!(
            rates,
            vec![(0.0, 10.0, 1.0), (60.0, 10.0, 1.0), (120.0, 10.0, 1.0)]
        );
        assert_eq!(b[2].target_rps, Some(10.0));
        assert_eq!(b[0].error_rate, Some(0.1));
        // Downsampled: two 248-second points and a 10-second one make one bucket of 506 s.
        let mut points: Vec<_> = (0..1200)
            .map(|i| point(f64::from(i) * 248.0, 248, 2480))
            .collect();
        points[1199] = TimePoint {
            target_rps: Some(4.0),
            ..point(1199.0 * 248.0, 10, 40)
        };
        let (b, width) = downsample(&points);
        assert_eq!((width, b.len()), (2, 600));
        assert_eq!((b[0].t, b[0].rps, b[0].target_rps), (0.0, 10.0, Some(10.0)));
        let last = b[599];
        assert_eq!(last.rps, 2520.0 / 258.0);
        assert_eq!(last.target_rps, Some((2480.0 + 40.0) / 258.0));
        assert_eq!(point_secs(&points), 248);
        assert_eq!(point_secs(&[]), 1);
    }
}
