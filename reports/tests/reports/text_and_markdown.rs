//! Terminal text and Markdown: snapshots and escaping.

use ricochet_reports::{Format, markdown, render, text};

use crate::{fixture, hostile};

#[test]
fn markdown_matches_the_snapshot() {
    insta::assert_snapshot!("markdown", markdown::render(&fixture::realistic()));
}

#[test]
fn markdown_puts_the_verdict_first() {
    let md = render(&fixture::realistic(), Format::Markdown);
    assert!(md.starts_with("## ❌ FAILED: api-3x-ga\n"), "{md}");
}

#[test]
fn text_matches_the_snapshot() {
    insta::assert_snapshot!("text", text::render(&fixture::realistic(), false));
}

#[test]
fn text_has_colour_only_when_asked() {
    let summary = fixture::realistic();
    assert!(!text::render(&summary, false).contains('\u{1b}'));
    let coloured = text::render(&summary, true);
    assert!(coloured.contains("\u{1b}[32m✓\u{1b}[0m"));
    assert!(coloured.contains("\u{1b}[33m?\u{1b}[0m"));
}

#[test]
fn markdown_cells_cannot_be_broken_by_scenario_names() {
    let md = markdown::render(&hostile());
    // Outside code spans no HTML survives; inside them Markdown shows it literally.
    let outside: String = md.split('`').step_by(2).collect();
    assert!(!outside.contains("<script>"), "{md}");
    assert!(!md.contains('\u{1b}'));
    let pipes = |l: &str| l.replace("\\|", "").matches('|').count();
    let lines: Vec<&str> = md.lines().collect();
    let mut header = 0;
    let mut checked = 0;
    for (i, line) in lines.iter().enumerate() {
        if lines.get(i + 1).is_some_and(|n| n.starts_with("|---")) {
            header = pipes(line);
        } else if line.starts_with("| ") && line.contains("alert") {
            assert_eq!(pipes(line), header, "row splits into extra cells: {line}");
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "hostile strings should appear in several tables"
    );
}

#[test]
fn text_strips_terminal_escapes_from_user_strings() {
    let t = text::render(&hostile(), false);
    assert!(!t.contains('\u{1b}'));
}

// See: issue "runs that measured nothing": an errored run's reports say why, in the
// same sentence the run printed.
#[test]
fn an_errored_run_says_why_it_could_not_be_carried_out_in_every_format() {
    let mut s = fixture::realistic();
    s.thresholds.clear();
    s.run.outcome = ricochet_reports::model::Outcome::Error;
    s.run.exit_code = 3;
    let why = "no request got an answer: 12 of 12 timed out after 1s waiting on http://127.0.0.1:4100 (0 refused, 0 reset)";
    s.run.stop_reason = Some(why.to_owned());
    let sentence = format!("the run could not be carried out: {why}");
    let t = text::render(&s, false);
    assert!(
        t.contains(&format!("✗ ERROR api-3x-ga — {sentence} (exit code 3)")),
        "{t}"
    );
    let md = markdown::render(&s);
    assert!(
        md.starts_with("## 💥 ERROR: api-3x-ga\n\nThe run could not be carried out: "),
        "{md}"
    );
    assert!(
        md.contains("| Could not be carried out | no request got an answer: "),
        "{md}"
    );
    let html = ricochet_reports::html::render(&s);
    assert!(
        html.contains(&format!("<p>{sentence} (exit code 3).</p>")),
        "{html}"
    );
}
