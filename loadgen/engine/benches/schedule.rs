//! Cost of computing intended instants: one arrival of a ramping profile must cost far
//! less than the 50 µs between arrivals at 20 000 req/s (target: < 0.2 %, i.e. < 100 ns;
//! measured 2026-11-21: ~51 ns per arrival).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ricochet_engine::schedule::RateProfile;

fn bench(c: &mut Criterion) {
    let ramp = RateProfile::ramping(
        1000.0,
        &[
            (20_000.0, Duration::from_secs(1)),
            (20_000.0, Duration::from_secs(1)),
            (5_000.0, Duration::from_secs(1)),
        ],
    );
    let n = ramp.count();
    c.bench_function(&format!("{n} arrivals of a 3-stage ramp"), |b| {
        b.iter(|| black_box(ramp.arrivals().fold(Duration::ZERO, |a, d| a.max(d))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
