//! `loadgen canary`: 66 s against the embedded target with 5 % of its telemetry dropped
//! (chaos) from 20 s to 40 s, `/metrics` scraped every second: missing counters rise only
//! in that window (plus the settle deadline), the rolling window forgets them, found
//! counters keep rising, and SIGTERM ends the canary with exit 0. A configuration error
//! exits 2 at once.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, one_at_a_time};

const SCENARIO: &str = r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: canary-test}
spec:
  scenarios:
    - name: canary
      executor: constant-arrival-rate
      rate: 40
      duration: 1h
      requests: [{name: orders, path: /api/orders}]
  telemetry:
    sample: {rate: 1.0}
    settleTimeout: 5s
  chaos:
    - {name: drop, at: 20s, for: 20s, fault: {telemetryDropRate: 0.05}}
  thresholds:
    telemetry_trace_missing: ["rate<0.003"]
"#;

/// Kills the canary if the test fails before it is stopped.
struct Canary(Child);

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `name{labels} value` lines of the exposition text, the label set as written.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of `name` whose labels contain `filter`.
fn sum(m: &BTreeMap<String, f64>, name: &str, filter: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && k.contains(filter))
        .map(|(_, v)| v)
        .sum()
}

fn scrape(url: &str) -> Option<BTreeMap<String, f64>> {
    crate::support::runtime().block_on(async {
        let r = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        Some(parse(&r.text().await.ok()?))
    })
}

#[test]
fn canary_counts_missing_telemetry_only_while_it_is_dropped_and_stops_cleanly_on_sigterm() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("canary.yaml");
    std::fs::write(&file, SCENARIO).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let mut canary = Canary(
        Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["canary", file.to_str().unwrap(), "--metrics-addr", &addr])
            .args(["--duration", "5m", "--window", "10s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://{addr}/metrics");
    // (seconds since start, scrape)
    let mut seen: Vec<(f64, BTreeMap<String, f64>)> = Vec::new();
    while started.elapsed() < Duration::from_secs(66) {
        let t = started.elapsed().as_secs_f64();
        if let Some(m) = scrape(&url) {
            seen.push((t, m));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let missing = |m: &BTreeMap<String, f64>| {
        sum(m, "ricochet_telemetry_missing_total", "signal=\"trace\"")
            + sum(m, "ricochet_telemetry_missing_total", "signal=\"log\"")
    };
    let found =
        |m: &BTreeMap<String, f64>| sum(m, "ricochet_telemetry_found_total", "signal=\"trace\"");
    let timeline: Vec<(f64, f64, f64)> = seen
        .iter()
        .map(|(t, m)| (*t, missing(m), found(m)))
        .collect();
    let show = format!("(t, missing traces+logs, found traces): {timeline:.1?}");
    assert!(seen.len() >= 40, "too few scrapes answered: {show}");

    // Nothing missing before the drop starts at 20 s (19 s: the round starts a little
    // after the process).
    assert!(
        timeline
            .iter()
            .filter(|(t, ..)| *t < 19.0)
            .all(|(_, m, _)| *m == 0.0),
        "missing before the drop: {show}"
    );
    // Missing rises while it drops (decided at the 5 s settle deadline), and not after:
    // from 54 s (40 s + 5 s deadline + slack for a loaded machine) on, it stays put.
    let after: Vec<f64> = timeline
        .iter()
        .filter(|(t, ..)| *t >= 54.0)
        .map(|(_, m, _)| *m)
        .collect();
    assert!(after.len() >= 5, "{show}");
    let total = after[0];
    assert!(
        after.iter().all(|m| *m == total),
        "missing rose after the drop ended: {show}"
    );
    // 40 req/s for 20 s, 5 % of spans and of log records dropped: about 40 of each.
    assert!(
        (20.0..=160.0).contains(&total),
        "{total} missing traces and logs, expected about 80: {show}"
    );
    // Found keeps rising to the end: the canary keeps verifying.
    let last = timeline.last().unwrap();
    let at_54 = timeline.iter().find(|(t, ..)| *t >= 54.0).unwrap();
    assert!(last.2 > at_54.2 + 100.0, "found stalled: {show}");

    // The rolling window (10 s) saw missing samples during the drop and forgets them.
    let window = |m: &BTreeMap<String, f64>| {
        sum(
            m,
            "ricochet_canary_window_telemetry_missing",
            "signal=\"trace\"",
        ) + sum(
            m,
            "ricochet_canary_window_telemetry_missing",
            "signal=\"log\"",
        )
    };
    assert!(
        seen.iter()
            .any(|(t, m)| (20.0..54.0).contains(t) && window(m) > 0.0),
        "the window never showed the drop"
    );
    let (_, final_scrape) = seen.last().unwrap();
    assert_eq!(window(final_scrape), 0.0, "the window kept old misses");
    let p99 = final_scrape
        .iter()
        .find(|(k, _)| {
            k.starts_with("ricochet_canary_window_http_req_duration_seconds{")
                && k.contains("quantile=\"0.99\"")
        })
        .map(|(_, v)| *v);
    assert!(
        p99.is_some_and(|v| v > 0.0 && v < 5.0),
        "the window's request latency p99: {p99:?}"
    );
    assert!(
        sum(final_scrape, "ricochet_http_req_duration_seconds_count", "") > 2000.0,
        "request latency histogram: {:?}",
        final_scrape
            .iter()
            .filter(|(k, _)| k.contains("duration_seconds_count"))
            .collect::<Vec<_>>()
    );

    // Every name served is one the dashboards and alert rules are checked against.
    let names = ricochet_engine::canary::metric_names();
    let unknown: Vec<&String> = final_scrape
        .keys()
        .map(|k| k.split('{').next().unwrap())
        .filter(|n| !names.iter().any(|x| x == n))
        .map(|n| final_scrape.keys().find(|k| k.starts_with(n)).unwrap())
        .collect();
    assert!(
        unknown.is_empty(),
        "not in canary::metric_names(): {unknown:?}"
    );

    // SIGTERM: a clean exit, promptly.
    let pid = canary.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = canary.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the canary ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(canary.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("canary: stopped after"), "{stderr}");
}

#[test]
fn canary_configuration_errors_exit_2_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, SCENARIO.replace("rate: 40", "rate: -1")).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let o = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["canary", bad.to_str().unwrap(), "--metrics-addr", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.yaml:") && stderr.contains("rate"),
        "{stderr}"
    );

    // The metrics address already taken.
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, SCENARIO).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["canary", good.to_str().unwrap(), "--metrics-addr", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("--metrics-addr {addr}: cannot listen")),
        "{stderr}"
    );
}
