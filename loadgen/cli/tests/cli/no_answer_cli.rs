//! `loadgen run` against a target that accepts connections and never answers, with no
//! thresholds: exit 3 and one sentence naming the cause and the counts. See: issue "runs
//! that measured nothing" (it printed "✓ PASSED — all 0 thresholds passed" and exited 0).

use std::net::TcpListener;
use std::process::Command;

use ricochet_reports::model::{Outcome, Summary};

#[test]
fn a_target_that_never_answers_exits_3_with_one_sentence_and_the_reports_say_the_same() {
    let _guard = crate::support::one_at_a_time();
    // Accepts every connection and holds it, reading and writing nothing.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in listener.incoming() {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("scenario.yaml");
    std::fs::write(
        &scenario,
        format!(
            r#"apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {{name: silent}}
spec:
  target: {{url: "http://{addr}", timeout: 300ms}}
  scenarios:
    - {{name: api, executor: constant-arrival-rate, rate: 5, duration: 1s, requests: [{{name: x, path: /api/x}}]}}
"#
        ),
    )
    .expect("scenario");
    let out = dir.path().join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run loadgen");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let sentence = format!(
        "no request got an answer: 5 of 5 timed out after 300ms waiting on http://{addr} (0 refused, 0 reset)"
    );
    assert_eq!(output.status.code(), Some(3), "stderr: {stderr}");
    // Progress lines aside, one error line: the sentence.
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors, [format!("error: {sentence}")], "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "✗ ERROR silent — the run could not be carried out: {sentence} (exit code 3)"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("PASSED"), "{stdout}");
    let summary: Summary = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("summary.json"),
    )
    .expect("parses");
    assert_eq!(summary.run.outcome, Outcome::Error);
    assert_eq!(summary.run.stop_reason.as_deref(), Some(sentence.as_str()));
    assert_eq!(
        summary.metrics["http_req_failed"].errors,
        [("timeout".to_owned(), 5)].into()
    );
}
