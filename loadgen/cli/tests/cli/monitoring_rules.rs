//! `deploy/monitoring/`: the echo-server's SLO rules pass `promtool check rules` and their
//! unit tests (`promtool test rules`: the alerts fire and resolve in the time a drill
//! allows), the PrometheusRule holds exactly the plain file's groups, and the Alertmanager
//! configurations pass `amtool check-config` and route every echo-server alert to ricochet's
//! receiver. promtool (Debian `prometheus`) and amtool (Debian `prometheus-alertmanager`)
//! are installed by scripts/test.sh; a missing tool fails the test, it is never skipped.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/monitoring")
}

fn yaml(name: &str) -> Value {
    let path = monitoring().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `tool` (from the Debian package `package`) and returns its output, whatever its
/// exit status; a tool that cannot be started fails the test saying what to install.
fn run<S: AsRef<OsStr>>(tool: &str, package: &str, args: &[S]) -> Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "{tool} is needed for this test and could not run: {e}. Install the Debian \
             package `{package}` (scripts/test.sh does)."
        )
    })
}

/// Runs `tool` and fails the test, with its output, unless it exits 0; returns stdout.
fn succeeds<S: AsRef<OsStr>>(tool: &str, package: &str, args: &[S]) -> String {
    let out = run(tool, package, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`{tool} {}` failed ({}):\n{stdout}\n{}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn promtool<S: AsRef<OsStr>>(args: &[S]) -> String {
    succeeds("promtool", "prometheus", args)
}

fn amtool<S: AsRef<OsStr>>(args: &[S]) -> String {
    succeeds("amtool", "prometheus-alertmanager", args)
}

/// The alerting rules of a rule file's `groups`.
fn alerts(groups: &Value) -> Vec<&Value> {
    groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

/// Checks with `amtool config routes test` that an alert with `labels` goes to `receiver`.
fn routes_to(config: &Path, labels: &[String], receiver: &str) {
    let mut args = vec![
        "config".to_owned(),
        "routes".to_owned(),
        "test".to_owned(),
        format!("--config.file={}", config.display()),
        format!("--verify.receivers={receiver}"),
    ];
    args.extend_from_slice(labels);
    amtool(&args);
}

/// The labels each alert of the rule file carries when it fires (alertname, job and its
/// static labels).
fn alert_labels() -> Vec<Vec<String>> {
    let rules = yaml("echo-server-slo.rules.yml");
    alerts(&rules["groups"])
        .into_iter()
        .map(|a| {
            let mut labels = vec![
                format!("alertname={}", a["alert"].as_str().unwrap()),
                "job=echo-server".to_owned(),
            ];
            for (k, v) in a["labels"].as_object().unwrap() {
                labels.push(format!("{k}={}", v.as_str().unwrap()));
            }
            labels
        })
        .collect()
}

#[test]
fn the_slo_rule_file_passes_promtool_check_rules() {
    let rules = yaml("echo-server-slo.rules.yml");
    let count: usize = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    let out = promtool(&[
        OsStr::new("check"),
        OsStr::new("rules"),
        monitoring().join("echo-server-slo.rules.yml").as_os_str(),
    ]);
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "{out}"
    );
    // Every alert reaches the drill route (`service="echo-server"`) and says how bad it is.
    for alert in alerts(&rules["groups"]) {
        let name = alert["alert"].as_str().unwrap();
        assert_eq!(alert["labels"]["service"], "echo-server", "{name}");
        assert!(alert["labels"]["severity"].is_string(), "{name}");
        for annotation in ["summary", "description", "runbook_url"] {
            assert!(
                alert["annotations"][annotation].is_string(),
                "{name} has no {annotation}"
            );
        }
    }
}

#[test]
fn the_slo_alerts_fire_and_resolve_when_their_promtool_unit_tests_say() {
    // The unit tests (echo-server-slo.test.yml) pin the drill timings: 50 % errors at
    // 20 req/s fire EchoServerHighErrorRate within 30 s and resolve within 60 s after, 1 %
    // never does; failed scrapes fire EchoServerDown; a slow p99 fires EchoServerHighLatency.
    let out = promtool(&[
        OsStr::new("test"),
        OsStr::new("rules"),
        monitoring().join("echo-server-slo.test.yml").as_os_str(),
    ]);
    assert!(out.contains("SUCCESS"), "{out}");

    // Each alert has a case where it fires and one where it must not.
    let tests = yaml("echo-server-slo.test.yml");
    let rules = yaml("echo-server-slo.rules.yml");
    for alert in alerts(&rules["groups"]) {
        let name = alert["alert"].as_str().unwrap();
        let cases: Vec<&Value> = tests["tests"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
            .filter(|c| c["alertname"] == name)
            .collect();
        let fires = |c: &&Value| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
        assert!(cases.iter().any(fires), "no unit test where {name} fires");
        assert!(
            cases.iter().any(|c| !fires(c)),
            "no unit test where {name} stays silent"
        );
    }
}

#[test]
fn the_prometheusrule_holds_exactly_the_groups_of_the_plain_rule_file() {
    let plain = yaml("echo-server-slo.rules.yml");
    let operator = yaml("echo-server-slo.prometheusrule.yaml");
    assert_eq!(operator["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(operator["kind"], "PrometheusRule");
    assert_eq!(
        operator["spec"]["groups"], plain["groups"],
        "echo-server-slo.prometheusrule.yaml and echo-server-slo.rules.yml differ: change both"
    );

    // `kubectl apply -k deploy/monitoring` applies it, in the namespace `ricochet`, unchanged.
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(monitoring())
        .output()
        .unwrap_or_else(|e| panic!("kubectl is needed for this test and could not run: {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/monitoring: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["Service", "PrometheusRule"],
        "the receiver's Service and the rules"
    );
    let rule = &docs[1];
    assert_eq!(rule["metadata"]["namespace"], "ricochet");
    assert_eq!(rule["spec"]["groups"], plain["groups"]);
    assert_eq!(
        docs[0]["spec"]["selector"]["ricochet.dev/runner-index"],
        "0"
    );
}

#[test]
fn the_drill_prometheus_and_alertmanager_configs_pass_promtool_and_amtool() {
    let out = promtool(&[
        OsStr::new("check"),
        OsStr::new("config"),
        monitoring().join("prometheus-drill.yml").as_os_str(),
    ]);
    // It loads the SLO rule file itself, not a copy.
    assert!(out.contains("echo-server-slo.rules.yml"), "{out}");
    let config = monitoring().join("alertmanager-drill.yml");
    amtool(&[OsStr::new("check-config"), config.as_os_str()]);

    for labels in alert_labels() {
        routes_to(&config, &labels, "ricochet-drill");
    }
    let am = yaml("alertmanager-drill.yml");
    let hook = &am["receivers"][0]["webhook_configs"][0];
    assert_eq!(hook["url"], "http://127.0.0.1:9097/alerts");
    assert_eq!(hook["send_resolved"], true);
    assert!(hook["http_config"]["authorization"]["credentials_file"].is_string());
}

#[test]
fn the_alertmanager_route_snippet_sends_every_echo_server_alert_to_ricochets_receiver() {
    // The snippet merged into a configuration that has its own receivers and routes, as
    // the snippet's header says: its route first, its receiver added. JSON is YAML.
    let snippet = yaml("alertmanager-route.yml");
    let mut routes = snippet["route"]["routes"].as_array().unwrap().clone();
    routes.push(json!({"receiver": "on-call", "matchers": ["severity=~\"critical|warning\""]}));
    let mut receivers = vec![json!({"name": "on-call"}), json!({"name": "default"})];
    receivers.extend(snippet["receivers"].as_array().unwrap().iter().cloned());
    let merged = json!({
        "route": {"receiver": "default", "group_by": ["alertname"], "routes": routes},
        "receivers": receivers,
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, serde_json::to_string_pretty(&merged).unwrap()).unwrap();
    amtool(&[OsStr::new("check-config"), config.as_os_str()]);

    for labels in alert_labels() {
        routes_to(&config, &labels, "ricochet-drill");
    }
    // Other services' alerts still reach the routes after it.
    routes_to(
        &config,
        &[
            "alertname=KubePodCrashLooping".to_owned(),
            "service=checkout".to_owned(),
            "severity=critical".to_owned(),
        ],
        "on-call",
    );

    let hook = &snippet["receivers"][0]["webhook_configs"][0];
    assert_eq!(
        hook["url"],
        "http://loadgen-receiver.ricochet.svc:9097/alerts"
    );
    assert_eq!(hook["send_resolved"], true);
    assert!(hook["http_config"]["authorization"]["credentials_file"].is_string());
}

/// The ready checks under `scenarios/checks/`, each a `LoadTest`: (file name, document).
fn ready_checks() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/checks");
    let mut checks: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let doc =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                doc,
            )
        })
        .collect();
    checks.sort_by(|a, b| a.0.cmp(&b.0));
    checks
}

/// The names with colons in a PromQL expression (recording rules, by convention), outside
/// quoted label values.
fn recorded_names(promql: &str) -> Vec<&str> {
    promql
        .split('"')
        .step_by(2)
        .flat_map(|unquoted| {
            unquoted.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        })
        .filter(|word| word.contains(':') && word.starts_with(|c: char| c.is_ascii_alphabetic()))
        .collect()
}

#[test]
fn every_promql_query_of_the_ready_checks_parses_and_is_gated_by_a_threshold() {
    // loadgen itself validates these documents (the deploy_manifests test loads every file
    // under scenarios/); this checks what it cannot: that Prometheus parses each PromQL query.
    let checks = ready_checks();
    assert!(checks.len() >= 6, "{checks:?}");
    let mut rules = Vec::new();
    for (file, doc) in &checks {
        assert_eq!(doc["kind"], "LoadTest", "{file}");
        let spec = &doc["spec"];
        let queries = spec["queries"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for q in queries {
            let name = q["name"].as_str().unwrap();
            assert!(
                spec["thresholds"][format!("query{{name:{name}}}")].is_array(),
                "{file}: query {name} has no threshold"
            );
            if let Some(promql) = q["promql"].as_str() {
                assert!(
                    spec["telemetry"]["metrics"]["prometheus"]["url"].is_string(),
                    "{file}: PromQL needs spec.telemetry.metrics.prometheus"
                );
                rules.push(json!({"record": format!("check:{name}"), "expr": promql}));
            } else {
                assert!(q["logql"].is_string(), "{file}: {name} has no query");
                assert!(
                    spec["telemetry"]["logs"]["loki"]["url"].is_string(),
                    "{file}: LogQL needs spec.telemetry.logs.loki"
                );
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ready-checks.rules.yml");
    std::fs::write(
        &file,
        json!({"groups": [{"name": "ready-checks", "rules": rules}]}).to_string(),
    )
    .unwrap();
    let out = promtool(&[OsStr::new("check"), OsStr::new("rules"), file.as_os_str()]);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{out}"
    );
}

#[test]
fn the_ready_checks_name_only_rules_and_alerts_the_slo_rule_file_defines() {
    let rules = yaml("echo-server-slo.rules.yml");
    let all: Vec<&Value> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let recorded: Vec<&str> = all.iter().filter_map(|r| r["record"].as_str()).collect();
    let alerted: Vec<&str> = all.iter().filter_map(|r| r["alert"].as_str()).collect();
    let mut named = 0;
    for (file, doc) in ready_checks() {
        let spec = &doc["spec"];
        for q in spec["queries"].as_array().into_iter().flatten() {
            for name in recorded_names(q["promql"].as_str().unwrap_or_default()) {
                assert!(
                    recorded.contains(&name),
                    "{file}: {name} is not recorded by echo-server-slo.rules.yml ({recorded:?})"
                );
                named += 1;
            }
        }
        for kind in ["expect", "silent"] {
            for a in spec["alerts"][kind].as_array().into_iter().flatten() {
                let name = a["alert"].as_str().unwrap();
                assert!(
                    alerted.contains(&name),
                    "{file}: alerts.{kind} names {name}, which echo-server-slo.rules.yml does not define"
                );
                assert_eq!(a["matchers"]["service"], "echo-server", "{file}: {name}");
                named += 1;
            }
        }
    }
    assert!(named >= 5, "{named}");
}
