//! Alert drills and PromQL gates against a real Prometheus and Alertmanager (Debian's
//! `prometheus` and `prometheus-alertmanager`, which `scripts/test.sh` installs): each test
//! starts its own Prometheus and Alertmanager on free loopback ports, in a temp dir, with the
//! drill configurations of `deploy/monitoring/` (prometheus-drill.yml, alertmanager-drill.yml)
//! pointed at a free port for the embedded echo-server (`--embedded-listen`) and one for
//! loadgen's webhook receiver, and the rule file echo-server-slo.rules.yml copied as is.
//! `loadgen run` then injects errors into its embedded echo-server through `spec.chaos` and
//! judges what Prometheus, Alertmanager and the receiver saw. All load stays on loopback.
//! A missing binary fails the test; it is never skipped.
//!
//! The timings come from the rule file, with Prometheus scraping and evaluating every 1 s:
//! 50 % errors at 20 req/s fire EchoServerHighErrorRate about 14 s after they start and
//! resolve it about 30 s after they stop. The bounds below are generous against those.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ricochet_reports::model::{AlertSummary, Summary, ThresholdResult, Verdict};
use serde_json::{Value, json};

use crate::prometheus_roundtrip::{patience, tail};
use crate::support::free_port;

/// The alert the drills provoke.
const ALERT: &str = "EchoServerHighErrorRate";
/// The longest a `loadgen run` of these tests may take before it is killed.
const RUN_LIMIT: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn monitoring(file: &str) -> PathBuf {
    repo().join("deploy/monitoring").join(file)
}

/// `n` distinct free loopback ports.
fn free_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < n {
        let p = free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

/// A YAML file of `deploy/monitoring/`, as JSON.
fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A plain HTTP/1.0 GET on loopback: status and body, `None` when nothing answers.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((status, body))
}

/// A server process (Prometheus, Alertmanager), killed on drop.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(name: &'static str, bin: &str, package: &str, args: &[String], dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(bin)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {bin} ({e}): the alert drills need the Debian package \
                     `{package}` (scripts/test.sh installs it)"
                )
            });
        Self { name, child, log }
    }

    /// Fails the test, with its log, when the process has exited.
    fn alive(&mut self) {
        if let Ok(Some(exit)) = self.child.try_wait() {
            panic!("{} exited ({exit}) early:\n{}", self.name, tail(&self.log));
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One drill's Prometheus and Alertmanager, with their temp dir (where the scenario, the
/// token and loadgen's output go too) and the addresses loadgen must use.
struct Drill {
    dir: tempfile::TempDir,
    prometheus: Daemon,
    alertmanager: Option<Daemon>,
    prometheus_addr: SocketAddr,
    /// Where Alertmanager listens, or would (also when not started).
    alertmanager_addr: SocketAddr,
    /// `--embedded-listen`: the echo-server Prometheus scrapes as job `echo-server`.
    echo: SocketAddr,
    /// `spec.alerts.receiver.listen`, which Alertmanager's webhook points at.
    receiver: SocketAddr,
    /// The receiver's bearer token, also in `receiver.token` of the temp dir.
    token: String,
}

impl Drill {
    /// Starts Prometheus (the drill configuration, plus a scrape job per `extra_jobs`
    /// entry) and, with `alertmanager`, Alertmanager; returns once Prometheus has loaded
    /// the rules and Alertmanager is ready.
    fn start(alertmanager: bool, extra_jobs: &[(&str, SocketAddr)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(4);
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let (prometheus_addr, alertmanager_addr, echo, receiver) = (
            addr(ports[0]),
            addr(ports[1]),
            addr(ports[2]),
            addr(ports[3]),
        );

        // The rule file as is, beside the configuration that names it.
        std::fs::copy(
            monitoring("echo-server-slo.rules.yml"),
            dir.path().join("echo-server-slo.rules.yml"),
        )
        .unwrap();

        // prometheus-drill.yml with this drill's addresses (written as JSON, which is YAML).
        let mut prom = yaml(&monitoring("prometheus-drill.yml"));
        assert_eq!(
            prom["rule_files"],
            json!(["echo-server-slo.rules.yml"]),
            "prometheus-drill.yml"
        );
        prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] =
            json!([alertmanager_addr.to_string()]);
        let jobs = prom["scrape_configs"].as_array_mut().unwrap();
        let echo_job = jobs
            .iter_mut()
            .find(|j| j["job_name"] == "echo-server")
            .expect("prometheus-drill.yml scrapes a job `echo-server`, as the rules expect");
        echo_job["static_configs"] = json!([{"targets": [echo.to_string()]}]);
        for (name, target) in extra_jobs {
            jobs.push(
                json!({"job_name": name, "static_configs": [{"targets": [target.to_string()]}]}),
            );
        }
        let prom_config = dir.path().join("prometheus.yml");
        std::fs::write(&prom_config, serde_json::to_string_pretty(&prom).unwrap()).unwrap();

        // alertmanager-drill.yml with this drill's receiver; its token file beside it.
        let mut am = yaml(&monitoring("alertmanager-drill.yml"));
        let hooks = am["receivers"][0]["webhook_configs"]
            .as_array_mut()
            .unwrap();
        assert_eq!(hooks.len(), 1, "alertmanager-drill.yml: one webhook");
        hooks[0]["url"] = json!(format!("http://{receiver}/alerts"));
        let credentials = &hooks[0]["http_config"]["authorization"]["credentials_file"];
        assert_eq!(credentials, "receiver.token", "alertmanager-drill.yml");
        let am_config = dir.path().join("alertmanager.yml");
        std::fs::write(&am_config, serde_json::to_string_pretty(&am).unwrap()).unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let token = format!("drill-{}-{nanos:x}", std::process::id());
        std::fs::write(dir.path().join("receiver.token"), &token).unwrap();

        let d = dir.path();
        let prometheus = Daemon::start(
            "prometheus",
            "prometheus",
            "prometheus",
            &[
                format!("--config.file={}", prom_config.display()),
                format!("--storage.tsdb.path={}", d.join("prom-data").display()),
                format!("--web.listen-address={prometheus_addr}"),
                // The echo-server's exemplars, which the round trip of `spec.telemetry`
                // looks up: found at once rather than missing until the settle timeout.
                "--enable-feature=exemplar-storage".to_owned(),
            ],
            d,
        );
        let alertmanager = alertmanager.then(|| {
            Daemon::start(
                "alertmanager",
                "prometheus-alertmanager",
                "prometheus-alertmanager",
                &[
                    format!("--config.file={}", am_config.display()),
                    format!("--storage.path={}", d.join("am-data").display()),
                    format!("--web.listen-address={alertmanager_addr}"),
                    "--cluster.listen-address=".to_owned(),
                ],
                d,
            )
        });
        let mut drill = Self {
            dir,
            prometheus,
            alertmanager,
            prometheus_addr,
            alertmanager_addr,
            echo,
            receiver,
            token,
        };
        drill.wait_ready();
        drill
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + patience();
        loop {
            self.prometheus.alive();
            let rules = http_get(self.prometheus_addr, "/api/v1/rules");
            if rules.is_some_and(|(s, b)| s == 200 && b.contains(ALERT)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not load the rules within {:?}:\n{}",
                patience(),
                tail(&self.prometheus.log)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Some(am) = &mut self.alertmanager {
            loop {
                am.alive();
                if http_get(self.alertmanager_addr, "/-/ready").is_some_and(|(s, _)| s == 200) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "alertmanager not ready within {:?}:\n{}",
                    patience(),
                    tail(&am.log)
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn prometheus_url(&self) -> String {
        format!("http://{}", self.prometheus_addr)
    }

    fn alertmanager_url(&self) -> String {
        format!("http://{}", self.alertmanager_addr)
    }

    /// `spec.telemetry` and `spec.alerts` up to `expect:` (indented for `spec`), for a
    /// drill with the receiver's token in `receiver.token`.
    fn alerts_head(&self) -> String {
        format!(
            r#"  telemetry:
    sample: {{perSecond: 1}}
    maxQueriesPerSecond: 20
    metrics: {{prometheus: {{url: "{prom}", scrapeInterval: 1s}}}}
  alerts:
    alertmanager: {{url: "{am}"}}
    receiver: {{listen: "{receiver}", token: {{file: receiver.token}}}}
    every: 1s
"#,
            prom = self.prometheus_url(),
            am = self.alertmanager_url(),
            receiver = self.receiver,
        )
    }

    /// Writes `scenario` into the temp dir and starts `loadgen run` on it against the
    /// embedded echo-server on [`Drill::echo`], with `env` added to its environment.
    fn spawn(&self, scenario: &str, env: &[(&str, &str)]) -> Loadgen {
        let d = self.dir.path();
        let path = d.join("scenario.yaml");
        std::fs::write(&path, scenario).unwrap();
        let out = d.join("out");
        let (stdout, stderr) = (d.join("loadgen.stdout"), d.join("loadgen.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .arg("run")
            .arg(&path)
            .arg("--embedded-listen")
            .arg(self.echo.to_string())
            .arg("--out")
            .arg(&out)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Loadgen {
            child: Some(child),
            started: Instant::now(),
            out,
            stdout,
            stderr,
        }
    }

    /// [`Drill::spawn`] and wait for the run to end.
    fn run(&mut self, scenario: &str, env: &[(&str, &str)]) -> Finished {
        let mut l = self.spawn(scenario, env);
        l.wait(self)
    }
}

/// A running `loadgen run`, killed on drop.
struct Loadgen {
    child: Option<Child>,
    started: Instant,
    out: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Loadgen {
    /// Waits for the run to end (at most [`RUN_LIMIT`]), checking on the daemons.
    fn wait(&mut self, drill: &mut Drill) -> Finished {
        let child = self.child.as_mut().unwrap();
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code();
            }
            drill.prometheus.alive();
            if self.started.elapsed() > RUN_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "loadgen run did not end within {RUN_LIMIT:?}\nstdout:\n{}\nstderr:\n{}",
                    tail(&self.stdout),
                    tail(&self.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        self.child = None;
        let took = self.started.elapsed();
        let stdout = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let summary = std::fs::read_to_string(self.out.join("summary.json"))
            .ok()
            .map(|t| serde_json::from_str::<Summary>(&t).expect("summary.json parses"));
        let mut logs = format!("prometheus log:\n{}", tail(&drill.prometheus.log));
        if let Some(am) = &drill.alertmanager {
            logs.push_str(&format!("\nalertmanager log:\n{}", tail(&am.log)));
        }
        eprintln!("loadgen run took {took:.1?}, exit {code:?}");
        Finished {
            code,
            took,
            stdout,
            stderr,
            summary,
            logs,
        }
    }
}

/// What a `loadgen run` left.
struct Finished {
    code: Option<i32>,
    took: Duration,
    stdout: String,
    stderr: String,
    summary: Option<Summary>,
    logs: String,
}

impl Finished {
    /// Everything worth seeing when an assertion fails.
    fn context(&self) -> String {
        let s = self.summary.as_ref();
        format!(
            "exit {:?} after {:.1?}\nthresholds: {:#?}\nplatform: {:#?}\nstdout:\n{}\nstderr:\n{}\n{}",
            self.code,
            self.took,
            s.map(|s| &s.thresholds),
            s.and_then(|s| s.platform.as_ref()),
            self.stdout,
            self.stderr,
            self.logs
        )
    }

    fn summary(&self) -> &Summary {
        self.summary
            .as_ref()
            .unwrap_or_else(|| panic!("no summary.json\n{}", self.context()))
    }

    fn expect_exit(&self, code: i32) {
        assert_eq!(self.code, Some(code), "{}", self.context());
    }

    /// The threshold result of `metric` (as summary.json writes it), and `expression`.
    fn result(&self, metric: &str, expression: &str) -> &ThresholdResult {
        let s = self.summary();
        s.thresholds
            .iter()
            .find(|t| t.metric == metric && t.expression == expression)
            .unwrap_or_else(|| panic!("no result `{metric}` `{expression}`\n{}", self.context()))
    }

    /// The platform summary of the drilled alert `alert` declared as `expect`.
    fn alert(&self, expect: &str) -> &AlertSummary {
        let p = self
            .summary()
            .platform
            .as_ref()
            .unwrap_or_else(|| panic!("no platform summary\n{}", self.context()));
        p.alerts
            .iter()
            .find(|a| a.alert == ALERT && a.expect == expect)
            .unwrap_or_else(|| panic!("no `{expect}` alert {ALERT}\n{}", self.context()))
    }

    fn reason<'a>(&self, r: &'a ThresholdResult) -> &'a str {
        r.reason
            .as_deref()
            .unwrap_or_else(|| panic!("{} has no reason\n{}", r.metric, self.context()))
    }
}

/// A ramping-arrival-rate scenario at a flat 20 req/s through the named stages
/// (`(name, seconds)`), as the `spec.scenarios` block.
fn load(stages: &[(&str, u32)]) -> String {
    let stages: String = stages
        .iter()
        .map(|(name, secs)| format!("        - {{target: 1, duration: {secs}s, name: {name}}}\n"))
        .collect();
    format!(
        r#"  scenarios:
    - name: api
      executor: ramping-arrival-rate
      rate: 20
      startRate: 1
      stages:
{stages}      requests: [{{name: orders, path: /api/orders}}]
"#
    )
}

const HEADER: &str = "apiVersion: ricochet.dev/v1alpha1\nkind: LoadTest\nmetadata: {name: alert-drill-test}\nspec:\n";

#[test]
fn a_drill_that_injects_errors_sees_the_alert_fire_notify_and_resolve_in_time() {
    let _guard = crate::support::one_at_a_time();
    let mut drill = Drill::start(true, &[]);
    let scenario = format!(
        r#"{HEADER}{load}  chaos:
    - {{name: errors, at: 10s, for: 30s, fault: {{errorRate: 0.5}}}}
{alerts}    expect:
      - {{alert: {ALERT}, matchers: {{service: echo-server}}, during: errors, firesWithin: 40s, notifiesWithin: 45s, resolvesWithin: 60s}}
    silent:
      - {{alert: {ALERT}, during: baseline}}
"#,
        load = load(&[("baseline", 10), ("fault", 30)]),
        alerts = drill.alerts_head(),
    );
    let run = drill.run(&scenario, &[]);
    let ctx = run.context();
    run.expect_exit(0);

    let fire = run.result(&format!("alert_time_to_fire{{alert:{ALERT}}}"), "<=40s");
    let notify = run.result(&format!("alert_time_to_notify{{alert:{ALERT}}}"), "<=45s");
    let resolve = run.result(&format!("alert_time_to_resolve{{alert:{ALERT}}}"), "<=1m");
    let silent = run.result(&format!("alert_unexpected{{alert:{ALERT}}}"), "count==0");
    for r in [fire, notify, resolve, silent] {
        assert_eq!(r.verdict, Verdict::Pass, "{}: {ctx}", r.metric);
    }
    assert!(
        run.reason(fire).contains(&format!("{ALERT} fired "))
            && run
                .reason(fire)
                .contains("after `errors` started, within 40s"),
        "{ctx}"
    );

    let a = run.alert("fires");
    let fired = a.time_to_fire_secs.expect("time to fire");
    let notified = a.time_to_notify_secs.expect("time to notify");
    let resolved = a.time_to_resolve_secs.expect("time to resolve");
    eprintln!("fired +{fired:.1}s, notified +{notified:.1}s, resolved +{resolved:.1}s");
    assert!(fired > 0.0 && fired < 40.0, "{ctx}");
    // Firing is stamped by the first source that shows it (a rule-state read, Alertmanager
    // holding it active, or the firing notification itself), so never after the
    // notification.
    assert!(notified >= fired, "notified before it fired: {ctx}");
    assert!(resolved > 0.0 && resolved <= 60.0, "{ctx}");
    // The observed values are milliseconds, the summary's seconds.
    assert!(
        (fire.observed.unwrap() - fired * 1000.0).abs() < 1.0,
        "{ctx}"
    );
    assert_eq!(a.during.as_deref(), Some("errors"));
    assert_eq!(
        (a.window_start_secs, a.window_end_secs),
        (10.0, 40.0),
        "{ctx}"
    );
    let seen = |source: &str, state: &str| {
        a.timeline
            .iter()
            .any(|e| e.source == source && e.state == state)
    };
    assert!(seen("prometheus", "firing"), "{ctx}");
    assert!(seen("receiver", "notified firing"), "{ctx}");
    assert!(seen("alertmanager", "active"), "{ctx}");
    assert!(a.unknown.is_empty(), "{ctx}");
    assert_eq!(run.alert("silent").unexpected, 0, "{ctx}");

    let receiver = run
        .summary()
        .platform
        .as_ref()
        .unwrap()
        .receiver
        .as_ref()
        .expect("receiver");
    assert_eq!(receiver.listen, drill.receiver.to_string());
    assert_eq!(receiver.refused, 0, "Alertmanager sent the token: {ctx}");
    assert!(run.stdout.contains("PLATFORM"), "{ctx}");
    // `send_resolved: true`: the resolved notification reaches the receiver too.
    if !(seen("receiver", "notified resolved") && receiver.notifications >= 2) {
        // What Alertmanager did with it after the run (and its receiver) had ended.
        std::thread::sleep(Duration::from_secs(8));
        let am = &drill.alertmanager.as_ref().unwrap().log;
        panic!(
            "no resolved notification reached the receiver (notifications: {}), although \
             the alert resolved +{resolved:.1}s after the fault\n{ctx}\n\
             alertmanager log 8 s after the run:\n{}",
            receiver.notifications,
            tail(am)
        );
    }
}

#[test]
fn the_same_drill_declaring_fires_within_1s_fails_naming_the_alert_and_the_observed_time() {
    let _guard = crate::support::one_at_a_time();
    let mut drill = Drill::start(true, &[]);
    // The alert fires about 14 s into the fault, while the load still runs.
    let scenario = format!(
        r#"{HEADER}{load}  chaos:
    - {{name: errors, at: 10s, for: 25s, fault: {{errorRate: 0.5}}}}
{alerts}    expect:
      - {{alert: {ALERT}, matchers: {{service: echo-server}}, during: errors, firesWithin: 1s, notifiesWithin: 45s}}
"#,
        load = load(&[("baseline", 10), ("fault", 25)]),
        alerts = drill.alerts_head(),
    );
    let run = drill.run(&scenario, &[]);
    let ctx = run.context();
    run.expect_exit(1);

    let fire = run.result(&format!("alert_time_to_fire{{alert:{ALERT}}}"), "<=1s");
    assert_eq!(fire.verdict, Verdict::Fail, "{ctx}");
    let fired = run.alert("fires").time_to_fire_secs.expect("time to fire");
    assert!(fired > 1.0, "{ctx}");
    assert!(
        (fire.observed.unwrap() - fired * 1000.0).abs() < 1.0,
        "{ctx}"
    );
    let reason = run.reason(fire);
    assert!(reason.contains(ALERT), "{reason}");
    assert!(reason.contains("later than 1s"), "{reason}");
    assert!(
        reason.contains(&format!("{fired:.1}s")),
        "{reason} names {fired:.1}s"
    );
    // Only the fire bound failed: the notification came within its 45 s.
    let notify = run.result(&format!("alert_time_to_notify{{alert:{ALERT}}}"), "<=45s");
    assert_eq!(notify.verdict, Verdict::Pass, "{ctx}");
    eprintln!("{reason}");
}

#[test]
fn with_alertmanager_stopped_the_notification_is_unknown_with_the_reason() {
    let _guard = crate::support::one_at_a_time();
    // Prometheus sends its alerts to an Alertmanager port nothing listens on.
    let mut drill = Drill::start(false, &[]);
    let scenario = format!(
        r#"{HEADER}{load}  chaos:
    - {{name: errors, at: 10s, for: 25s, fault: {{errorRate: 0.5}}}}
{alerts}    expect:
      - {{alert: {ALERT}, matchers: {{service: echo-server}}, during: errors, firesWithin: 40s, notifiesWithin: 20s}}
"#,
        load = load(&[("baseline", 10), ("fault", 25)]),
        alerts = drill.alerts_head(),
    );
    let run = drill.run(&scenario, &[]);
    let ctx = run.context();
    run.expect_exit(1);

    let fire = run.result(&format!("alert_time_to_fire{{alert:{ALERT}}}"), "<=40s");
    assert_eq!(fire.verdict, Verdict::Pass, "{ctx}");
    let notify = run.result(&format!("alert_time_to_notify{{alert:{ALERT}}}"), "<=20s");
    assert_eq!(notify.verdict, Verdict::Unknown, "{ctx}");
    assert_eq!(notify.observed, None, "{ctx}");
    let reason = run.reason(notify);
    assert!(
        reason.contains("Alertmanager could not be asked"),
        "{reason}"
    );
    assert!(
        reason.contains(&drill.alertmanager_addr.to_string()),
        "{reason}"
    );
    assert!(reason.contains("the receiver heard nothing"), "{reason}");
    let a = run.alert("fires");
    assert!(
        a.unknown.iter().any(|u| u.contains("could not be asked")),
        "{ctx}"
    );
    eprintln!("{reason}");
}

#[test]
fn an_alert_firing_in_the_baseline_where_silence_was_declared_fails() {
    let _guard = crate::support::one_at_a_time();
    let mut drill = Drill::start(true, &[]);
    // The errors start with the run, so the alert fires (about 14 s in) in the baseline.
    let scenario = format!(
        r#"{HEADER}{load}  chaos:
    - {{name: errors, at: 0s, fault: {{errorRate: 0.5}}}}
{alerts}    silent:
      - {{alert: {ALERT}, during: baseline}}
"#,
        load = load(&[("baseline", 25)]),
        alerts = drill.alerts_head(),
    );
    let run = drill.run(&scenario, &[]);
    let ctx = run.context();
    run.expect_exit(1);

    let silent = run.result(&format!("alert_unexpected{{alert:{ALERT}}}"), "count==0");
    assert_eq!(silent.verdict, Verdict::Fail, "{ctx}");
    assert!(silent.observed.is_some_and(|n| n >= 1.0), "{ctx}");
    let a = run.alert("silent");
    assert!(a.unexpected >= 1, "{ctx}");
    let firing = a
        .timeline
        .iter()
        .find(|e| e.source == "prometheus" && e.state == "firing")
        .unwrap_or_else(|| panic!("never seen firing: {ctx}"));
    assert!(firing.t <= a.window_end_secs, "{ctx}");
    eprintln!(
        "seen firing at +{:.1}s in the baseline: {}",
        firing.t,
        run.reason(silent)
    );
}

/// Serves an empty `/metrics` (a scrape target that is up) until its runtime is dropped.
fn empty_target(rt: &tokio::runtime::Runtime) -> SocketAddr {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |_req: http::Request<hyper::body::Incoming>| async {
                            let mut r =
                                http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                            r.headers_mut().insert(
                                "content-type",
                                http::HeaderValue::from_static("text/plain; version=0.0.4"),
                            );
                            Ok::<_, std::convert::Infallible>(r)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    })
}

#[test]
fn a_promql_threshold_on_up_fails_in_the_window_where_its_target_went_away() {
    let _guard = crate::support::one_at_a_time();
    let target_rt = crate::support::runtime();
    let other = empty_target(&target_rt);
    let mut drill = Drill::start(false, &[("other", other)]);
    // Prometheus has the target up before the run starts.
    let deadline = Instant::now() + patience();
    loop {
        let q = "/api/v1/query?query=up%7Bjob%3D%22other%22%7D";
        if http_get(drill.prometheus_addr, q).is_some_and(|(_, b)| b.contains(r#""1"]"#)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped {other}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let scenario = format!(
        r#"{HEADER}{load}  telemetry:
    sample: {{perSecond: 1}}
    maxQueriesPerSecond: 20
    metrics: {{prometheus: {{url: "{prom}", scrapeInterval: 1s}}}}
  queries:
    - {{name: up, promql: 'up{{job="other"}}', every: 1s, eachSeries: false}}
  thresholds:
    "query{{name:up}}":
      - {{threshold: "min>=1", window: 5s}}
      - {{threshold: "min>=1", phase: early}}
"#,
        load = load(&[("early", 10), ("late", 15)]),
        prom = drill.prometheus_url(),
    );
    let mut loadgen = drill.spawn(&scenario, &[]);
    std::thread::sleep(Duration::from_secs(12).saturating_sub(loadgen.started.elapsed()));
    drop(target_rt);
    let stopped = loadgen.started.elapsed().as_secs_f64();
    let run = loadgen.wait(&mut drill);
    let ctx = run.context();
    run.expect_exit(1);

    // When the query first saw the target down (run-relative; the run starts a little
    // after the process, so no later than the stop measured from the spawn plus a scrape
    // or two).
    let q = &run.summary().platform.as_ref().unwrap().queries[0];
    assert_eq!(q.name, "up");
    assert_eq!(q.series.len(), 1, "{ctx}");
    let down = q.series[0]
        .points
        .iter()
        .find(|p| p[1] == 0.0)
        .unwrap_or_else(|| panic!("never seen down: {ctx}"))[0];
    assert!(
        down <= stopped + 3.0 && down >= stopped - 5.0,
        "stopped at +{stopped:.1}s of the spawn, seen down at +{down:.1}s: {ctx}"
    );

    let windowed = run
        .summary()
        .thresholds
        .iter()
        .find(|t| t.metric == "query{name:up}" && t.window_secs.is_some())
        .unwrap_or_else(|| panic!("{ctx}"));
    assert_eq!(windowed.verdict, Verdict::Fail, "{ctx}");
    assert_eq!(windowed.observed, Some(0.0), "{ctx}");
    let reason = run.reason(windowed);
    // "window 3 (10s–15s) failed first with min 0; worst window ..."
    let first = reason
        .strip_prefix("window ")
        .and_then(|r| r.split_once(' '))
        .and_then(|(n, _)| n.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no failing window named: {reason}"));
    let (start, end) = (f64::from(first - 1) * 5.0, f64::from(first) * 5.0);
    assert!(
        reason.contains(&format!(
            "window {first} ({start:.0}s–{end:.0}s) failed first"
        )),
        "{reason}"
    );
    assert!(
        start <= down && down < end,
        "the first failing window holds +{down:.1}s: {reason}"
    );
    // No earlier than one window before the stop (`stopped` counts from the spawn, up to a
    // couple of seconds before the run's start).
    assert!(
        start >= stopped - 5.0 - 2.0,
        "stopped +{stopped:.1}s: {reason}"
    );
    let early = run
        .summary()
        .thresholds
        .iter()
        .find(|t| t.metric == "query{name:up}" && t.phase.as_deref() == Some("early"))
        .unwrap_or_else(|| panic!("{ctx}"));
    assert_eq!(early.verdict, Verdict::Pass, "{ctx}");
    assert_eq!(early.observed, Some(1.0), "{ctx}");
    eprintln!("target stopped +{stopped:.1}s, seen down +{down:.1}s: {reason}");
}

#[test]
fn a_query_with_a_syntax_error_is_unknown_with_prometheus_own_message() {
    let _guard = crate::support::one_at_a_time();
    let mut drill = Drill::start(false, &[]);
    let scenario = |promql: &str| {
        format!(
            r#"{HEADER}{load}  telemetry:
    sample: {{perSecond: 1}}
    maxQueriesPerSecond: 20
    metrics: {{prometheus: {{url: "{prom}", scrapeInterval: 1s}}}}
  queries:
    - {{name: broken, promql: '{promql}', every: 1s}}
  thresholds:
    "query{{name:broken}}": ["last>=0"]
"#,
            load = load(&[("steady", 4)]),
            prom = drill.prometheus_url(),
        )
    };
    // Brackets balance, so validation lets it through; Prometheus' parser does not.
    let broken = scenario("sum(rate(http_server_requests_total[1m])) by");
    let unclosed = scenario("max(up");
    let run = drill.run(&broken, &[]);
    let ctx = run.context();
    run.expect_exit(1);
    let r = run.result("query{name:broken}", "last>=0");
    assert_eq!(r.verdict, Verdict::Unknown, "{ctx}");
    let reason = run.reason(r);
    assert!(reason.contains("parse error"), "{reason}");
    let q = &run.summary().platform.as_ref().unwrap().queries[0];
    assert!(q.evaluations >= 1, "{ctx}");
    assert_eq!(q.errors.values().sum::<u64>(), q.evaluations, "{ctx}");
    eprintln!("{reason}");

    // An unclosed bracket is caught before anything runs.
    let path = drill.dir.path().join("unclosed.yaml");
    std::fs::write(&path, unclosed).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("spec.queries[0].promql"), "{stderr}");
    assert!(stderr.contains("never closed"), "{stderr}");
}

#[test]
fn scenarios_alert_drill_passes_against_local_prometheus_and_alertmanager() {
    let _guard = crate::support::one_at_a_time();
    let mut drill = Drill::start(true, &[]);
    // The scenario as checked in, with only the three documented addresses moved to this
    // drill's ports (the embedded echo-server's is a flag), and the token from the
    // environment as documented.
    let path = repo().join("scenarios/alert-drill.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut scenario = text.clone();
    for (from, to) in [
        ("http://127.0.0.1:9090", drill.prometheus_url()),
        ("http://127.0.0.1:9093", drill.alertmanager_url()),
        ("127.0.0.1:9097", drill.receiver.to_string()),
    ] {
        assert!(text.contains(from), "{} names {from}", path.display());
        scenario = scenario.replace(from, &to);
    }
    assert!(
        text.contains("RECEIVER_TOKEN"),
        "the token comes from $RECEIVER_TOKEN"
    );
    let token = drill.token.clone();
    let run = drill.run(&scenario, &[("RECEIVER_TOKEN", &token)]);
    let ctx = run.context();
    run.expect_exit(0);
    let a = run.alert("fires");
    let receiver = run
        .summary()
        .platform
        .as_ref()
        .unwrap()
        .receiver
        .as_ref()
        .expect("receiver");
    assert!(receiver.notifications >= 1, "{ctx}");
    assert_eq!(receiver.refused, 0, "{ctx}");
    let secs = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.1}"));
    eprintln!(
        "fired +{}s, notified +{}s, resolved +{}s",
        secs(a.time_to_fire_secs),
        secs(a.time_to_notify_secs),
        secs(a.time_to_resolve_secs)
    );
}
