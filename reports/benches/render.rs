//! Renders a one-hour run (3 600 one-second points, 10 scenarios) to HTML, Markdown and
//! JUnit. Checks the HTML report stays interactive to produce: target < 1 s per render
//! and < 2 MiB of HTML (printed once before the measurements; charts downsample long
//! series to 600 buckets).
//!
//! `cargo bench -p ricochet-reports --bench render`

#[path = "../tests/support/fixture.rs"]
mod fixture;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ricochet_reports::{Format, render};

fn one_hour(c: &mut Criterion) {
    let summary = fixture::large(3600, 10);
    let html = render(&summary, Format::Html);
    let json = render(&summary, Format::Json);
    eprintln!(
        "one-hour run, 10 scenarios: report.html {} bytes ({:.2} MiB), summary.json {} bytes",
        html.len(),
        html.len() as f64 / (1024.0 * 1024.0),
        json.len()
    );
    let mut group = c.benchmark_group("one_hour_10_scenarios");
    group.sample_size(20);
    group.bench_function("html", |b| {
        b.iter(|| render(black_box(&summary), Format::Html))
    });
    group.bench_function("markdown", |b| {
        b.iter(|| render(black_box(&summary), Format::Markdown))
    });
    group.bench_function("junit", |b| {
        b.iter(|| render(black_box(&summary), Format::Junit))
    });
    group.bench_function("parse_summary_json", |b| {
        b.iter(|| {
            ricochet_reports::parse_summary(black_box(&json), std::path::Path::new("summary.json"))
        })
    });
    group.finish();
}

criterion_group!(benches, one_hour);
criterion_main!(benches);
