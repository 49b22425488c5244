//! A down endpoint must never slow the run: offers stay instant while one target refuses
//! connections and another accepts them and never answers, and `finish` keeps to its
//! wait and says what happened, naming each URL.

use std::time::{Duration, Instant, SystemTime};

use ricochet_output::{Options, Output, Target};

use super::batch;

/// An address where nothing listens: a port bound and released.
fn refused() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/api/v1/write")
}

/// Accepts connections and never answers; the listener lives as long as the test.
async fn black_hole() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

#[tokio::test]
async fn offers_stay_fast_and_finish_reports_why_when_nothing_answers() {
    const OFFERS: u64 = 10_000;
    let refused = refused();
    // Connections wait in the listen backlog: the request is sent and never answered.
    let (_hole, hole) = black_hole().await;
    let output = Output::start(
        vec![
            Target::remote_write(&refused),
            Target::otlp(&hole).with_timeout(Duration::from_millis(200)),
        ],
        Options {
            queue: 4,
            flush_interval: Duration::from_millis(500),
            resource: Vec::new(),
        },
    )
    .unwrap();

    let started = Instant::now();
    for i in 0..OFFERS {
        output
            .offer(batch(SystemTime::now(), i as f64, 1.0, [0, 0, 0]))
            .unwrap();
    }
    let offering = started.elapsed();
    // Not a benchmark: 10 000 offers take milliseconds; a bound this loose fails only
    // if an offer waited on the network (the black hole's timeout alone is 200 ms).
    assert!(
        offering < Duration::from_secs(5),
        "10 000 offers took {offering:?}"
    );

    let wait = Duration::from_secs(1);
    let started = Instant::now();
    let reports = output.finish(wait).await;
    let finishing = started.elapsed();
    assert!(
        finishing < wait + Duration::from_secs(3),
        "finish took {finishing:?} for a wait of {wait:?}"
    );

    for (r, url) in reports
        .iter()
        .zip([refused.clone(), format!("{hole}/v1/metrics")])
    {
        assert_eq!(r.batches_sent, 0, "{r:?}");
        assert_eq!(r.samples_sent, 0, "{r:?}");
        assert!(r.batches_failed >= 1, "{r:?}");
        assert!(r.batches_dropped >= OFFERS - 10, "the queue holds 4: {r:?}");
        assert_eq!(r.batches_failed + r.batches_dropped, OFFERS, "{r:?}");
        assert!(r.target.ends_with(&url), "{r:?}");
        let err = r.first_error.as_deref().unwrap();
        assert!(err.contains(&url), "{err}");
    }
    let refused_err = reports[0].first_error.as_deref().unwrap();
    assert!(refused_err.contains("could not connect"), "{refused_err}");
    let hole_err = reports[1].first_error.as_deref().unwrap();
    assert!(hole_err.contains("timed out after 200ms"), "{hole_err}");
}
