//! JUnit XML: snapshot, parsed back with quick-xml, escaping.

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::{fixture, hostile};

#[derive(Debug, Default)]
pub(crate) struct Case {
    pub(crate) suite: String,
    pub(crate) name: String,
    pub(crate) failure: Option<(String, String)>,
}

#[derive(Debug, Default)]
pub(crate) struct Parsed {
    tests_attr: usize,
    failures_attr: usize,
    suites: Vec<(String, usize, usize)>,
    pub(crate) cases: Vec<Case>,
}

fn attr(e: &quick_xml::events::BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .map(|a| a.unwrap())
        .find(|a| a.key.as_ref() == name.as_bytes())
        .map(|a| a.unescape_value().unwrap().into_owned())
}

/// Parses the XML strictly (quick-xml checks end tags) into suites and cases.
pub(crate) fn parse(xml: &str) -> Parsed {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut parsed = Parsed::default();
    let mut suite = String::new();
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"testsuites" => {
                    parsed.tests_attr = attr(&e, "tests").unwrap().parse().unwrap();
                    parsed.failures_attr = attr(&e, "failures").unwrap().parse().unwrap();
                }
                b"testsuite" => {
                    suite = attr(&e, "name").unwrap();
                    parsed.suites.push((
                        suite.clone(),
                        attr(&e, "tests").unwrap().parse().unwrap(),
                        attr(&e, "failures").unwrap().parse().unwrap(),
                    ));
                }
                b"testcase" => parsed.cases.push(Case {
                    suite: suite.clone(),
                    name: attr(&e, "name").unwrap(),
                    failure: None,
                }),
                b"failure" => {
                    parsed.cases.last_mut().unwrap().failure =
                        Some((attr(&e, "type").unwrap(), attr(&e, "message").unwrap()));
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    parsed
}

#[test]
fn junit_matches_the_snapshot() {
    insta::assert_snapshot!(
        "junit",
        ricochet_reports::junit::render(&fixture::realistic())
    );
}

#[test]
fn junit_parses_back_with_one_case_per_threshold_and_signal() {
    let summary = fixture::realistic();
    let parsed = parse(&ricochet_reports::junit::render(&summary));
    let thresholds: Vec<&Case> = parsed
        .cases
        .iter()
        .filter(|c| c.suite == "thresholds")
        .collect();
    let signals: Vec<&Case> = parsed
        .cases
        .iter()
        .filter(|c| c.suite == "telemetry")
        .collect();
    assert_eq!(thresholds.len(), summary.thresholds.len());
    assert_eq!(signals.len(), 3);
    assert_eq!(parsed.tests_attr, parsed.cases.len());
    let failed = parsed.cases.iter().filter(|c| c.failure.is_some()).count();
    assert_eq!(parsed.failures_attr, failed);
    for (name, tests, failures) in &parsed.suites {
        let in_suite: Vec<_> = parsed.cases.iter().filter(|c| &c.suite == name).collect();
        assert_eq!(*tests, in_suite.len(), "suite {name}");
        assert_eq!(
            *failures,
            in_suite.iter().filter(|c| c.failure.is_some()).count(),
            "suite {name}"
        );
    }

    assert_eq!(
        thresholds[0].name,
        "http_req_duration{scenario:api}: p(99)<800ms"
    );
    assert!(thresholds[0].failure.is_none());
    let (kind, message) = thresholds[3].failure.as_ref().unwrap();
    assert_eq!(kind, "threshold");
    assert!(
        message
            .starts_with("telemetry_trace_missing rate<0.003 failed: observed 5.03%, limit 0.30%"),
        "{message}"
    );
    let (kind, message) = thresholds[5].failure.as_ref().unwrap();
    assert_eq!(kind, "unknown");
    assert!(
        message.contains("could not be judged") && message.contains("503"),
        "{message}"
    );

    assert!(
        signals[0].failure.is_none(),
        "traces: loss is judged by thresholds"
    );
    assert_eq!(signals[2].failure.as_ref().unwrap().0, "unknown");
}

#[test]
fn junit_escapes_user_strings_and_they_parse_back_verbatim() {
    let summary = hostile();
    let xml = ricochet_reports::junit::render(&summary);
    assert!(!xml.contains("<script>"));
    let parsed = parse(&xml);
    let expected = format!(
        "{}: {}",
        summary.thresholds[1].metric, summary.thresholds[1].expression
    );
    // The ESC control character is not allowed in XML 1.0 and is replaced.
    assert_eq!(parsed.cases[1].name, expected.replace('\u{1b}', "\u{FFFD}"));
}

// See: issue "runs that measured nothing": with no thresholds, an errored run still
// fails in a CI test reporter.
#[test]
fn an_errored_run_is_a_junit_error_even_without_thresholds() {
    let mut s = fixture::realistic();
    s.thresholds.clear();
    s.telemetry = None;
    s.run.outcome = ricochet_reports::model::Outcome::Error;
    s.run.exit_code = 3;
    s.run.stop_reason = Some("no request got an answer: 3 of 3 had their connection refused by http://127.0.0.1:1 (0 timed out, 0 reset)".to_owned());
    let xml = ricochet_reports::junit::render(&s);
    let parsed = parse(&xml);
    assert_eq!(parsed.tests_attr, 1);
    assert_eq!(parsed.suites[0], ("run".to_owned(), 1, 0));
    assert!(xml.contains("errors=\"1\""), "{xml}");
    assert!(
        xml.contains("<error type=\"run\" message=\"the run could not be carried out (exit code 3): no request got an answer: 3 of 3 had their connection refused by http://127.0.0.1:1 (0 timed out, 0 reset)\">"),
        "{xml}"
    );
    // A run that was carried out has no such suite.
    assert!(!ricochet_reports::junit::render(&fixture::realistic()).contains("name=\"run\""));
}
