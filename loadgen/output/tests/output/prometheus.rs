//! Remote write into a real Prometheus (Debian's `prometheus` package, which
//! `scripts/test.sh` installs when absent): the test starts `/usr/bin/prometheus` with its
//! remote-write receiver on a free loopback port, a temp data dir and a config without
//! scrape jobs, pushes two batches and reads the values back with `/api/v1/query`,
//! polling with a patience of `RICOCHET_TEST_PATIENCE_SECS` (default 30 s). Without
//! prometheus installed the test fails; it is never skipped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ricochet_output::{Options, Output, Target};

use super::{batch, patience};

/// A Prometheus process, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start() -> Self {
        let bin = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join("prometheus"))
            .chain([PathBuf::from("/usr/bin/prometheus")])
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "prometheus is not installed, so the remote-write round trip cannot run: run \
                     scripts/test.sh (it installs Debian's `prometheus` package when absent) or \
                     `apt-get install -y prometheus`"
                )
            });
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path().join("prometheus.log");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// GETs `path` (with `query`), returning status and body; `None` on a connection error.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<(u16, String)> {
        let mut url = url::Url::parse(&format!("{}{path}", self.url)).unwrap();
        url.query_pairs_mut().extend_pairs(query);
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let resp = client.get(url.as_str().parse().unwrap()).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn wait_ready(&self) {
        let until = Instant::now() + patience();
        while Instant::now() < until {
            if let Some((200, _)) = self.get("/-/ready", &[]).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "prometheus at {} was not ready within {:?}; its log:\n{}",
            self.url,
            patience(),
            self.log_tail()
        );
    }

    /// The value of the single series `promql` selects at `at`.
    async fn value(&self, promql: &str, at: SystemTime) -> f64 {
        let time = at
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            .to_string();
        let (status, body) = self
            .get("/api/v1/query", &[("query", promql), ("time", &time)])
            .await
            .unwrap_or_else(|| panic!("cannot query {}", self.url));
        assert_eq!(status, 200, "{promql}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let result = json["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{promql} selects one series: {body}");
        result[0]["value"][1].as_str().unwrap().parse().unwrap()
    }
}

#[tokio::test]
async fn prometheus_stores_pushed_counters_and_classic_histograms() {
    let prometheus = Prometheus::start();
    prometheus.wait_ready().await;
    let url = format!("{}/api/v1/write", prometheus.url);
    let output = Output::start(vec![Target::remote_write(&url)], Options::default()).unwrap();
    // Whole seconds, so the query instants are exact.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t1 = UNIX_EPOCH + Duration::from_secs(now - 10);
    let t2 = t1 + Duration::from_secs(5);
    output.offer(batch(t1, 10.0, 4.0, [1, 2, 0])).unwrap();
    output.offer(batch(t2, 25.0, 3.0, [4, 5, 1])).unwrap();
    let reports = output.finish(patience()).await;
    assert_eq!(
        reports[0].batches_sent,
        2,
        "{reports:?}\nprometheus log:\n{}",
        prometheus.log_tail()
    );

    let sel = r#"{scenario="smoke"}"#;
    let at = |promql: String, when| {
        let p = &prometheus;
        async move { p.value(&promql, when).await }
    };
    assert_eq!(at(format!("ricochet_requests_total{sel}"), t1).await, 10.0);
    assert_eq!(at(format!("ricochet_requests_total{sel}"), t2).await, 25.0);
    assert_eq!(at(format!("ricochet_vus{sel}"), t2).await, 3.0);
    let bucket =
        |le: &str| format!(r#"ricochet_latency_seconds_bucket{{scenario="smoke",le="{le}"}}"#);
    // Per-bucket counts 4, 5, 1 become cumulative 4, 9, 10.
    assert_eq!(at(bucket("0.1"), t2).await, 4.0);
    assert_eq!(at(bucket("0.5"), t2).await, 9.0);
    assert_eq!(at(bucket("+Inf"), t2).await, 10.0);
    assert_eq!(
        at(format!("ricochet_latency_seconds_count{sel}"), t2).await,
        10.0
    );
    let sum = at(format!("ricochet_latency_seconds_sum{sel}"), t2).await;
    assert!((sum - (0.05 * 4.0 + 0.3 * 5.0 + 0.9)).abs() < 1e-9, "{sum}");
}

#[tokio::test]
async fn prometheus_refuses_an_out_of_order_sample_and_the_report_says_so() {
    let prometheus = Prometheus::start();
    prometheus.wait_ready().await;
    let url = format!("{}/api/v1/write", prometheus.url);
    let output = Output::start(vec![Target::remote_write(&url)], Options::default()).unwrap();
    let now = SystemTime::now();
    output.offer(batch(now, 2.0, 1.0, [0, 0, 0])).unwrap();
    output
        .offer(batch(now - Duration::from_secs(60), 1.0, 1.0, [0, 0, 0]))
        .unwrap();
    let reports = output.finish(patience()).await;

    let r = &reports[0];
    assert_eq!((r.batches_sent, r.batches_failed), (1, 1), "{r:?}");
    let err = r.first_error.as_deref().unwrap();
    assert!(err.contains(&url) && err.contains("400"), "{err}");
    assert!(err.contains("out of order"), "{err}");
}
