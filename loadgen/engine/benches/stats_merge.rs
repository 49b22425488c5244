//! Cost of the measurement path: `Stats::record` per sample, from empty histograms (hot
//! loop; must stay < 2 % of the ~20 µs of CPU a request costs end to end, i.e. < 400 ns;
//! measured 2026-11-21: ~330 ns), and merging one second of 16 shards with
//! `Histogram::add` (collector tick, once per second; must stay < 10 ms = 1 % of a core;
//! measured: ~3.4 ms).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ricochet_engine::stats::{Measurement, SeriesKey, Stats};

fn sample(t0: Instant, i: u64) -> Measurement {
    let scheduled = t0 + Duration::from_micros(i * 50);
    Measurement {
        key: SeriesKey {
            scenario: 0,
            request: (i % 3) as u16,
            status: if i.is_multiple_of(100) { 503 } else { 200 },
            phase: 0,
        },
        failed: i.is_multiple_of(100),
        stream: false,
        scheduled,
        started: scheduled + Duration::from_micros(5),
        sent: scheduled + Duration::from_micros(30),
        first_byte: scheduled + Duration::from_micros(400 + i % 997),
        end: scheduled + Duration::from_micros(500 + (i * 7919) % 200_000),
        bytes_sent: 120,
        bytes_received: 200,
        connected: None,
    }
}

fn bench(c: &mut Criterion) {
    let t0 = Instant::now();
    let samples: Vec<Measurement> = (0..10_000).map(|i| sample(t0, i)).collect();
    c.bench_function("record 10k samples", |b| {
        b.iter(|| {
            let mut st = Stats::default();
            for s in &samples {
                st.record(s);
            }
            black_box(st)
        })
    });
    let shards: Vec<Stats> = (0..16)
        .map(|k| {
            let mut st = Stats::default();
            for s in samples.iter().skip(k).step_by(16) {
                st.record(s);
            }
            st
        })
        .collect();
    c.bench_function("merge 16 shards", |b| {
        b.iter(|| {
            let mut acc = Stats::default();
            for s in &shards {
                acc.merge(s);
            }
            black_box(acc)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
