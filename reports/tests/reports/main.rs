//! Tests of the reports crate: one binary, a module per topic.

#[path = "../support/fixture.rs"]
mod fixture;

mod compare;
mod html;
mod junit;
mod platform;
mod schema;
mod text_and_markdown;

use std::path::PathBuf;

/// `reports/<rel>`.
fn crate_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Compares `actual` with the committed file, or rewrites it when `RICOCHET_BLESS=1`.
fn golden(rel: &str, actual: &str) {
    let path = crate_path(rel);
    if std::env::var_os("RICOCHET_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with RICOCHET_BLESS=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from what the code generates; run `RICOCHET_BLESS=1 cargo test -p ricochet-reports` and commit the result",
        path.display()
    );
}

/// A fixture whose user-supplied strings try to break out of every format.
fn hostile() -> ricochet_reports::Summary {
    let mut s = fixture::realistic();
    let evil = "chat</td><script>alert(\"x\")</script> & 'q' | `b` ]]> \u{1b}[31m";
    s.run.name = format!("run {evil}");
    s.scenarios[1].name = evil.to_owned();
    s.thresholds[1].metric = format!("http_stream_duration{{scenario:{evil}}}");
    s.thresholds[5].reason = Some(format!("backend said {evil}"));
    s.chaos[0].fault = format!("fault {evil}");
    s
}
