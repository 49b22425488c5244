//! Writes the test fixture's reports (summary.json, report.md, report.html, junit.xml)
//! into the directory given as the only argument; used by `tests/browser.sh`.
//!
//! `cargo run -p ricochet-reports --example render_fixture -- DIR [large|platform]`

#[path = "../tests/support/fixture.rs"]
mod fixture;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: render_fixture DIR [large|platform]");
        return ExitCode::from(2);
    };
    let summary = match args.next().as_deref() {
        Some("large") => fixture::large(3600, 10),
        Some("platform") => fixture::with_platform(),
        _ => fixture::realistic(),
    };
    match ricochet_reports::write_all(&summary, std::path::Path::new(&dir)) {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
