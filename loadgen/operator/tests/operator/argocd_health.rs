//! Argo CD's health of a LoadTestRun (`deploy/argocd/health.lua`), the gate where releases
//! are promoted: Debian's `lua5.4` runs the script on each recorded LoadTestRun under
//! `deploy/argocd/testdata/`, as Argo CD would, and the status and message it returns are
//! checked. See: #18.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ricochet_crds::LoadTestRun;
use serde_json::{Value, json};

use super::repo;

fn argocd() -> PathBuf {
    repo().join("deploy/argocd")
}

fn script() -> String {
    std::fs::read_to_string(argocd().join("health.lua")).expect("deploy/argocd/health.lua")
}

/// `s` as a Lua string literal (decimal escapes for control characters, UTF-8 as is).
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\{:03}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `value` as a Lua table constructor, decoded as Argo CD hands an object to a health
/// script: objects are tables keyed by strings, arrays sequences from 1, null is nil.
fn lua(value: &Value) -> String {
    let join = |items: Vec<String>| format!("{{{}}}", items.join(", "));
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => join(items.iter().map(lua).collect()),
        Value::Object(map) => join(
            map.iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua(v)))
                .collect(),
        ),
    }
}

/// Runs `program` with `lua5.4 -` and returns its standard output.
fn run_lua(program: &str) -> String {
    let mut child = Command::new("lua5.4")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("lua5.4 is needed for this test (scripts/test.sh installs it): {e}")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(program.as_bytes())
        .expect("write the program to lua5.4");
    let out = child.wait_with_output().expect("lua5.4 ran");
    assert!(
        out.status.success(),
        "lua5.4 failed (`stdin:N` is line N - 2 of health.lua): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// What the health check returns for `object`: `(hs.status, hs.message)`.
fn health(script: &str, object: &Value) -> (String, String) {
    // `obj` is a global, as in Argo CD; the script ends in `return hs`, hence the function.
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{script}\nend)()\nassert(type(hs) == \"table\", \"the script returned no table\")\nio.write(tostring(hs.status), \"\\n\", tostring(hs.message), \"\\n\")\n",
        lua(object)
    );
    let out = run_lua(&program);
    let (status, message) = out
        .strip_suffix('\n')
        .and_then(|o| o.split_once('\n'))
        .unwrap_or_else(|| panic!("unexpected output {out:?}"));
    (status.to_owned(), message.to_owned())
}

/// A recorded LoadTestRun of `testdata/`, checked to be one the operator's own type reads
/// and writes back unchanged, so that its field names and values are the real ones.
fn fixture(name: &str) -> Value {
    let path = argocd().join("testdata").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let run: LoadTestRun = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} is no LoadTestRun: {e}", path.display()));
    let back = serde_json::to_value(&run).expect("serializes");
    if let Some(at) = first_difference(&doc, &back, String::new()) {
        panic!(
            "{}: at `{at}`, a field the LoadTestRun type does not know, or a value it writes differently",
            path.display()
        );
    }
    doc
}

/// The path of the first place where `a` and `b` differ.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.keys()
                .chain(y.keys())
                .find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => first_difference(v, w, format!("{at}.{k}")),
                    _ => Some(format!("{at}.{k}")),
                })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, format!("{at}[{i}]"))),
        _ => (a != b).then_some(at),
    }
}

/// Each file of `testdata/`, the health Argo CD must show for it, and the message.
const EXPECTED: &[(&str, &str, &str)] = &[
    (
        "created.json",
        "Progressing",
        "waiting for the ricochet operator to start the run",
    ),
    (
        "pending.json",
        "Progressing",
        "Pending: waiting for 3 runner pods to be running",
    ),
    (
        "running.json",
        "Progressing",
        "Running: 3 runners start at 2026-11-21T02:01:10Z",
    ),
    (
        "passed.json",
        "Healthy",
        "Passed: all 3 thresholds passed on the merged results of 3 runners",
    ),
    (
        "failed-thresholds.json",
        "Degraded",
        "Failed: 2 of 3 thresholds not passed: http_req_duration{scenario:api} p(99)<800ms failed (observed 912.4); http_req_failed rate<0.003 failed (observed 0.0041)",
    ),
    (
        "could-not-run.json",
        "Degraded",
        "Failed: the run could not be carried out (RunnerFailed): runner 1 failed: Job has reached the specified backoff limit",
    ),
];

#[test]
fn each_recorded_run_gets_its_argo_cd_health_and_a_message_saying_why() {
    let script = script();
    let mut wrong = Vec::new();
    for (file, status, message) in EXPECTED {
        let got = health(&script, &fixture(file));
        if got != (status.to_string(), message.to_string()) {
            wrong.push(format!(
                "{file}:\n  expected {status}: {message}\n       got {}: {}",
                got.0, got.1
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_recorded_run_under_testdata_is_checked() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(argocd().join("testdata"))
        .expect("deploy/argocd/testdata")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let checked: BTreeSet<String> = EXPECTED.iter().map(|e| e.0.to_owned()).collect();
    assert_eq!(on_disk, checked);
}

#[test]
fn an_unjudged_threshold_and_an_unknown_phase_are_named() {
    let script = script();
    // A threshold that could not be measured fails closed and says why.
    let mut run = fixture("failed-thresholds.json");
    run["status"]["thresholds"][2] = json!({
        "metric": "telemetry_trace_missing",
        "condition": "rate<0.01",
        "verdict": "Unknown",
        "reason": "no runner verified any trace"
    });
    assert_eq!(
        health(&script, &run),
        (
            "Degraded".to_owned(),
            "Failed: 2 of 3 thresholds not passed: http_req_duration{scenario:api} p(99)<800ms failed (observed 912.4); telemetry_trace_missing rate<0.01 could not be judged (no runner verified any trace)".to_owned()
        )
    );
    // A run whose requests got no answer: thresholds judged, but the run measured nothing.
    let mut run = fixture("passed.json");
    run["status"]["phase"] = json!("Failed");
    for c in run["status"]["conditions"]
        .as_array_mut()
        .expect("conditions")
    {
        if c["type"] != "Started" {
            c["reason"] = json!("NoAnswer");
        }
    }
    run["status"]["message"] = json!("no request got an answer (all 3 runners)");
    assert_eq!(
        health(&script, &run),
        (
            "Degraded".to_owned(),
            "Failed: the run could not be carried out (NoAnswer): no request got an answer (all 3 runners)".to_owned()
        )
    );
    // A phase from a newer operator than this script.
    let mut run = fixture("running.json");
    run["status"]["phase"] = json!("Paused");
    assert_eq!(
        health(&script, &run),
        (
            "Progressing".to_owned(),
            "phase Paused is not one this health check knows (Pending, Running, Passed, Failed)"
                .to_owned()
        )
    );
}

#[test]
fn objects_reach_lua_unchanged_quotes_backslashes_and_control_characters_included() {
    let text = "say \"hi\"\\ then\n\ttab \u{1}, 1\u{7f}2 ÷ ✓";
    let value = json!({"a": [1, 2.5, true, text], "b": {"c": -3}});
    let program = format!(
        "local v = {}\nio.write(v.a[4], \"|\", #v.a, \"|\", tostring(v.a[3]), \"|\", v.a[2], \"|\", v.b.c)\n",
        lua(&value)
    );
    assert_eq!(run_lua(&program), format!("{text}|4|true|2.5|-3"));
}

#[test]
fn the_argocd_cm_snippet_holds_health_lua_verbatim() {
    let path = argocd().join("argocd-cm-snippet.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/argocd/argocd-cm-snippet.yaml");
    let cm: Value = serde_saphyr::from_str(&text).expect("YAML");
    assert_eq!(cm["apiVersion"], "v1");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let data = cm["data"].as_object().expect("data");
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["resource.customizations.health.ricochet.dev_LoadTestRun"]
    );
    let inlined = data["resource.customizations.health.ricochet.dev_LoadTestRun"]
        .as_str()
        .expect("a string");
    let script = script();
    if inlined != script {
        let line = inlined
            .lines()
            .zip(script.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "its end".to_owned(), |n| format!("line {}", n + 1));
        panic!(
            "{} differs from health.lua at {line}: copy health.lua into it, indented by four spaces",
            path.display()
        );
    }
}
