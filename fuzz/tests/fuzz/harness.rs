//! The harness must be able to fail: a target that panics on one byte is reported with a
//! minimized input, a slow input is a hang, and a seed replays the same run.

use std::time::Duration;

use ricochet_fuzz::{Config, FindingKind, Target, runner};

fn seeds() -> Vec<Vec<u8>> {
    vec![b"hello world".to_vec(), b"{\"a\": 1}".to_vec()]
}

/// Panics on any input holding a `~` (never in the seeds; mutations find it).
fn panics_on_tilde(input: &[u8]) -> u64 {
    assert!(!input.contains(&b'~'), "found a tilde");
    input.len() as u64
}

/// Slow on any input holding a `#`.
fn slow_on_hash(input: &[u8]) -> u64 {
    if input.contains(&b'#') {
        std::thread::sleep(Duration::from_millis(30));
    }
    input.len() as u64
}

fn target(name: &'static str, run: fn(&[u8]) -> u64) -> Target {
    Target {
        name,
        entry: "test",
        max_len: 256,
        seeds,
        dictionary: &[b"~", b"#"],
        generate: None,
        run,
    }
}

#[test]
fn a_target_that_panics_on_one_byte_is_reported_with_that_byte() {
    let dir = tempfile::tempdir().unwrap();
    let report = runner::run(
        &target("tilde", panics_on_tilde),
        &Config {
            inputs: 2_000,
            findings: Some(dir.path().to_owned()),
            ..Config::default()
        },
    );
    assert!(
        report.panics > 0,
        "no panic found in {} inputs",
        report.inputs
    );
    assert_eq!(report.hangs, 0);
    let first = &report.findings[0];
    assert_eq!(first.kind, FindingKind::Panic);
    assert!(
        first.message.starts_with("found a tilde at "),
        "{}",
        first.message
    );
    assert!(first.message.contains("harness.rs"), "{}", first.message);
    assert_eq!(first.minimized.as_deref(), Some(&b"~"[..]));
    let saved = first.saved.as_ref().expect("the finding was written");
    assert_eq!(std::fs::read(saved).unwrap(), b"~");
}

#[test]
fn a_slow_input_is_counted_as_a_hang() {
    let report = runner::run(
        &target("hash", slow_on_hash),
        &Config {
            inputs: 300,
            hang: Duration::from_millis(10),
            ..Config::default()
        },
    );
    assert!(report.hangs > 0, "no hang in {} inputs", report.inputs);
    assert_eq!(report.panics, 0);
    assert!(report.slowest >= Duration::from_millis(10));
    assert_eq!(report.findings[0].kind, FindingKind::Hang);
    assert!(report.findings[0].input.contains(&b'#'));
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let run = |seed| {
        let r = runner::run(
            &target("tilde", panics_on_tilde),
            &Config {
                inputs: 500,
                seed,
                minimize_budget: 0,
                ..Config::default()
            },
        );
        let first = r.findings.first().map(|f| f.input.clone());
        (r.panics, r.outcomes, r.corpus, first)
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn the_panic_hook_lets_other_panics_through() {
    // A panic outside a fuzzed call still unwinds normally (and would print).
    let caught = std::panic::catch_unwind(|| {
        let _ = runner::call(panics_on_tilde, b"~", true);
        panic!("ordinary");
    });
    assert!(caught.is_err());
}
