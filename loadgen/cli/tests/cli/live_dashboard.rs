//! `deploy/grafana/` and the operator dashboard: ricochet's alert rules pass `promtool check
//! rules` and the canary alerts' unit tests (`promtool test rules`), the PrometheusRule holds
//! exactly the plain file's groups, every query of both dashboards parses as PromQL and
//! names only metrics loadgen pushes live (`ricochet_engine::live::metric_names()`), the
//! canary serves (`ricochet_engine::canary::metric_names()`) or the operator exports
//! (`ricochet_operator::Metrics::render()`), and `kubectl kustomize deploy/grafana` renders.
//! promtool (Debian `prometheus`) and kubectl are needed; a missing tool fails the test, it
//! is never skipped.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn grafana() -> PathBuf {
    repo().join("deploy/grafana")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_file(path: &Path) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn live_dashboard() -> Value {
    json_file(&grafana().join("ricochet-live.json"))
}

fn operator_dashboard() -> Value {
    json_file(&repo().join("deploy/base/grafana/ricochet.json"))
}

fn rules() -> Value {
    yaml_file(&grafana().join("ricochet-alerts.rules.yml"))
}

/// Runs promtool and fails the test, with its output, unless it exits 0; returns stdout.
fn promtool<S: AsRef<OsStr>>(args: &[S]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is needed for this test and could not run: {e}. Install the Debian \
             package `prometheus` (scripts/test.sh does)."
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "promtool failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every PromQL expression of a dashboard: panel targets (rows' panels too) and annotations,
/// each with where it is.
fn dashboard_exprs(dash: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push((at.to_owned(), e.clone())),
                        _ => walk(v, &format!("{at}.{k}"), out),
                    }
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{at}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], "panels", &mut out);
    walk(&dash["annotations"], "annotations", &mut out);
    out
}

/// The queries of a dashboard's query variables (`label_values(...)`, not PromQL).
fn variable_queries(dash: &Value) -> Vec<(String, String)> {
    dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]
                .as_str()
                .or_else(|| v["query"]["query"].as_str())
                .unwrap();
            (format!("templating.{}", v["name"]), q.to_owned())
        })
        .collect()
}

/// Every rule's expression of a rule file's `groups`, with the rule's name.
fn rule_exprs(groups: &Value) -> Vec<(String, String)> {
    groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| {
            let name = r["alert"]
                .as_str()
                .or_else(|| r["record"].as_str())
                .unwrap();
            (name.to_owned(), r["expr"].as_str().unwrap().to_owned())
        })
        .collect()
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

/// The `ricochet_*` metric names a PromQL expression reads: identifiers outside quoted
/// strings, label matchers (`{...}`), ranges (`[...]`) and label lists (`by (...)`,
/// `without`, `on`, `ignoring`, `group_left`, `group_right`).
fn metric_names_in(promql: &str) -> Vec<String> {
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut kept = String::new();
    let mut chars = promql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                // A quoted string: a label value or a regex, never a name read.
                while let Some(q) = chars.next() {
                    if q == '\\' && c != '`' {
                        chars.next();
                    } else if q == c {
                        break;
                    }
                }
                kept.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                for q in chars.by_ref() {
                    if q == close {
                        break;
                    }
                }
                kept.push(' ');
            }
            '(' => {
                let last = kept
                    .trim_end()
                    .rsplit(|c: char| !ident(c))
                    .next()
                    .unwrap_or_default();
                if LABEL_LISTS.contains(&last) {
                    for q in chars.by_ref() {
                        if q == ')' {
                            break;
                        }
                    }
                    // Not a space: the next `(` must not see `by` again.
                    kept.push(',');
                } else {
                    kept.push(c);
                }
            }
            _ => kept.push(c),
        }
    }
    kept.split(|c: char| !ident(c))
        .filter(|w| w.starts_with("ricochet_"))
        .map(str::to_owned)
        .collect()
}

/// What loadgen pushes while a run goes.
fn live_names() -> BTreeSet<String> {
    ricochet_engine::live::metric_names()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// What the operator serves on `/metrics` (every `# TYPE` line, series or not).
fn operator_names() -> BTreeSet<String> {
    ricochet_operator::Metrics::default()
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// `where: name` for every `ricochet_*` name in `exprs` that `known` lacks, and how many
/// names were looked at.
fn unknown_names(exprs: &[(String, String)], known: &BTreeSet<String>) -> (Vec<String>, usize) {
    let mut unknown = Vec::new();
    let mut seen = 0;
    for (at, expr) in exprs {
        for name in metric_names_in(expr) {
            seen += 1;
            if !known.contains(&name) {
                unknown.push(format!("{at}: {name} (in `{expr}`)"));
            }
        }
    }
    (unknown, seen)
}

#[test]
fn the_alert_rule_file_passes_promtool_check_rules_and_each_alert_has_a_severity_and_a_runbook() {
    let rules = rules();
    let count: usize = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    let out = promtool(&[
        OsStr::new("check"),
        OsStr::new("rules"),
        grafana().join("ricochet-alerts.rules.yml").as_os_str(),
    ]);
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "{out}"
    );

    let runbooks = read(&grafana().join("README.md"));
    let mut names = Vec::new();
    for alert in alerts(&rules["groups"]) {
        let name = alert["alert"].as_str().unwrap();
        names.push(name);
        assert!(
            ["critical", "warning"].contains(&alert["labels"]["severity"].as_str().unwrap_or("")),
            "{name} has no severity critical or warning"
        );
        for annotation in ["summary", "description", "runbook_url"] {
            assert!(
                alert["annotations"][annotation].is_string(),
                "{name} has no {annotation}"
            );
        }
        let anchor = name.to_ascii_lowercase();
        assert!(
            alert["annotations"]["runbook_url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("deploy/grafana/README.md#{anchor}")),
            "{name}: runbook_url should point at deploy/grafana/README.md#{anchor}"
        );
        assert!(
            runbooks.contains(&format!("\n### {name}\n")),
            "deploy/grafana/README.md has no runbook `### {name}`"
        );
    }
    assert_eq!(
        names,
        [
            "RicochetNightlyGateFailed",
            "RicochetNightlyGateStale",
            "RicochetTelemetryLossAboveBudget",
            "RicochetIngestLatencyAboveBudget",
            "RicochetBackendIngestLatencyAboveBudget",
            "RicochetCanaryNotRunning",
            "RicochetCanaryTelemetryLoss",
        ]
    );
}

#[test]
fn the_canary_alerts_fire_when_their_promtool_unit_tests_say() {
    // ricochet-alerts.test.yml: a canary that stops sending, one never scraped, and 1.3 %
    // of traces missing over 15 minutes (logs intact).
    let out = promtool(&[
        OsStr::new("test"),
        OsStr::new("rules"),
        grafana().join("ricochet-alerts.test.yml").as_os_str(),
    ]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_prometheusrule_holds_exactly_the_groups_of_the_plain_rule_file() {
    let plain = rules();
    let operator = yaml_file(&grafana().join("ricochet-alerts.prometheusrule.yaml"));
    assert_eq!(operator["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(operator["kind"], "PrometheusRule");
    assert_eq!(
        operator["spec"]["groups"], plain["groups"],
        "ricochet-alerts.prometheusrule.yaml and ricochet-alerts.rules.yml differ: change both"
    );
}

#[test]
fn every_metric_the_dashboards_and_the_rules_query_is_one_loadgen_pushes_or_the_operator_exports() {
    let live = live_names();
    let operator = operator_names();
    let canary: BTreeSet<String> = ricochet_engine::canary::metric_names()
        .into_iter()
        .collect();
    let either: BTreeSet<String> = live.union(&operator).chain(&canary).cloned().collect();

    let dash = live_dashboard();
    let mut exprs = dashboard_exprs(&dash);
    exprs.extend(variable_queries(&dash));
    let (unknown, live_seen) = unknown_names(&exprs, &live);
    assert!(
        unknown.is_empty(),
        "deploy/grafana/ricochet-live.json queries metrics loadgen does not push:\n{}",
        unknown.join("\n")
    );

    let (unknown, operator_seen) =
        unknown_names(&dashboard_exprs(&operator_dashboard()), &operator);
    assert!(
        unknown.is_empty(),
        "deploy/base/grafana/ricochet.json queries metrics the operator does not export:\n{}",
        unknown.join("\n")
    );

    let (unknown, rules_seen) = unknown_names(&rule_exprs(&rules()["groups"]), &either);
    assert!(
        unknown.is_empty(),
        "deploy/grafana/ricochet-alerts.rules.yml reads metrics neither loadgen, its canary nor \
         the operator has:\n{}",
        unknown.join("\n")
    );
    assert!(
        live_seen >= 30 && operator_seen >= 8 && rules_seen >= 5,
        "{live_seen} {operator_seen} {rules_seen}"
    );

    // What each dashboard is for shows in what it reads.
    let read: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| metric_names_in(e)).collect();
    for wanted in [
        "ricochet_http_reqs_total",
        "ricochet_target_rate",
        "ricochet_http_req_duration_p99",
        "ricochet_http_req_failed_rate",
        "ricochet_http_req_errors_total",
        "ricochet_dropped_iterations_total",
        "ricochet_telemetry_missing_total",
        "ricochet_telemetry_sampled_total",
        "ricochet_telemetry_unknown_total",
        "ricochet_telemetry_trace_ingest_latency_p99",
        "ricochet_threshold_passed",
        "ricochet_run_passed",
        "ricochet_chaos_active",
    ] {
        assert!(
            read.contains(wanted),
            "the live dashboard does not show {wanted}"
        );
    }
    let read: BTreeSet<String> = dashboard_exprs(&operator_dashboard())
        .iter()
        .flat_map(|(_, e)| metric_names_in(e))
        .collect();
    for wanted in [
        "ricochet_loadtest_last_run_passed",
        "ricochet_loadtest_last_run_duration_seconds",
        "ricochet_loadtest_last_run_finished_timestamp_seconds",
        "ricochet_loadtest_threshold_passed",
    ] {
        assert!(
            read.contains(wanted),
            "the operator dashboard does not show {wanted}"
        );
    }
}

#[test]
fn a_misspelt_metric_is_caught_and_label_names_and_values_are_not_taken_for_metrics() {
    let expr = r#"sum by (ricochet_label) (rate(ricochet_http_reqs_totl{threshold="ricochet_x", expression='ricochet_y'}[$__rate_interval])) / on (ricochet_z) group_left (ricochet_w) ricochet_target_rate"#;
    assert_eq!(
        metric_names_in(expr),
        ["ricochet_http_reqs_totl", "ricochet_target_rate"]
    );
    let (unknown, seen) = unknown_names(&[("here".into(), expr.into())], &live_names());
    assert_eq!(seen, 2);
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(
        unknown[0].starts_with("here: ricochet_http_reqs_totl "),
        "{unknown:?}"
    );
}

#[test]
fn the_live_dashboard_picks_the_datasource_and_the_run_and_every_query_parses_as_promql() {
    let dash = live_dashboard();
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    let vars = dash["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    assert_eq!(
        var("testid")["query"],
        "label_values(ricochet_http_reqs_total, testid)"
    );
    assert_eq!(var("scenario")["type"], "query");
    let datasource = json!({"type": "prometheus", "uid": "${datasource}"});
    for panel in dash["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"], datasource, "{}", panel["title"]);
        for target in panel["targets"].as_array().unwrap() {
            assert!(target["expr"].is_string(), "{}", panel["title"]);
        }
    }
    let chaos = dash["annotations"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "Chaos")
        .expect("a Chaos annotation");
    assert_eq!(chaos["datasource"], datasource);
    assert!(
        chaos["expr"].as_str().unwrap().ends_with("== 1"),
        "{}",
        chaos["expr"]
    );

    // promtool parses what Grafana sends: each query, its variables given values, as a
    // recording rule (the operator dashboard's too).
    let mut rules = Vec::new();
    for (file, dash) in [("live", dash), ("operator", operator_dashboard())] {
        for (i, (at, expr)) in dashboard_exprs(&dash).into_iter().enumerate() {
            let promql = expr
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "15s")
                .replace("$__range", "1h")
                .replace("$testid", "nightly-3x-ga-0200")
                .replace("$scenario", ".*");
            assert!(
                !promql.contains('$'),
                "{file} {at}: a variable left in `{promql}`"
            );
            rules.push(json!({"record": format!("dashboard:{file}_{i}"), "expr": promql}));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboards.rules.yml");
    std::fs::write(
        &file,
        json!({"groups": [{"name": "dashboards", "rules": rules}]}).to_string(),
    )
    .unwrap();
    let out = promtool(&[OsStr::new("check"), OsStr::new("rules"), file.as_os_str()]);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{out}"
    );
}

#[test]
fn the_grafana_folder_renders_with_kubectl_kustomize_into_the_dashboard_and_the_rules() {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(grafana())
        .output()
        .unwrap_or_else(|e| panic!("kubectl is needed for this test and could not run: {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/grafana: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "PrometheusRule"],
        "the dashboard and the rules"
    );
    for doc in &docs {
        assert_eq!(doc["metadata"]["namespace"], "ricochet", "{}", doc["kind"]);
    }
    let dashboard = &docs[0];
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        dashboard["data"]["ricochet-live.json"],
        read(&grafana().join("ricochet-live.json")).as_str(),
        "the ConfigMap carries the dashboard file unchanged"
    );
    assert_eq!(docs[1]["spec"]["groups"], rules()["groups"]);
}
