//! summary.json: committed JSON Schema, golden fixture, loading and its errors.

use std::path::Path;

use ricochet_reports::{Error, load_summary, parse_summary, to_json};

use crate::{crate_path, fixture, golden};

#[test]
fn committed_schema_equals_the_one_generated_from_the_types() {
    golden("summary.schema.json", &ricochet_reports::json_schema());
}

#[test]
fn fixture_summary_json_is_committed_and_round_trips() {
    let summary = fixture::realistic();
    let json = to_json(&summary);
    golden("tests/data/fixture.summary.json", &json);
    assert_eq!(
        parse_summary(&json, Path::new("summary.json")).unwrap(),
        summary
    );
}

#[test]
fn written_summary_validates_against_the_committed_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(crate_path("summary.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for summary in [fixture::realistic(), fixture::large(30, 3)] {
        let instance = serde_json::to_value(&summary).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
    let mut broken = serde_json::to_value(fixture::realistic()).unwrap();
    broken["run"]["outcome"] = "maybe".into();
    assert!(!validator.is_valid(&broken));
}

#[test]
fn another_schema_version_is_rejected_with_one_clear_sentence() {
    let mut value = serde_json::to_value(fixture::realistic()).unwrap();
    value["schemaVersion"] = 2.into();
    // A newer version may have changed any field; the version is checked first.
    value["run"] = "something else entirely".into();
    let err = parse_summary(&value.to_string(), Path::new("summary.json")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "summary.json: schemaVersion 2 is not supported by this loadgen (reads 1); re-render it with the loadgen that wrote it"
    );
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn malformed_json_names_line_and_column() {
    let err = parse_summary(
        "{\n  \"schemaVersion\": 1,\n  \"run\": {,\n}",
        Path::new("out/summary.json"),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Json {
                line: 3,
                column: 11,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "out/summary.json: not valid JSON at line 3, column 11: key must be a string"
    );
}

#[test]
fn missing_field_names_the_field_and_position() {
    let mut value = serde_json::to_value(fixture::realistic()).unwrap();
    value["run"].as_object_mut().unwrap().remove("target");
    let text = serde_json::to_string_pretty(&value).unwrap();
    let err = parse_summary(&text, Path::new("summary.json")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Schema { .. }), "{err:?}");
    assert!(msg.starts_with("summary.json: line "), "{msg}");
    assert!(msg.contains("missing field `target`"), "{msg}");
}

#[test]
fn a_json_file_that_is_not_a_summary_says_so() {
    let err = parse_summary("[1, 2]", Path::new("k6-summary.json")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "k6-summary.json: no numeric top-level `schemaVersion`; is this a summary.json written by `loadgen run --out DIR`?"
    );
}

#[test]
fn unreadable_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.json");
    let err = load_summary(&path).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot read: ", path.display()))
    );
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn write_all_writes_every_format_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run-1");
    let summary = fixture::realistic();
    let written = ricochet_reports::write_all(&summary, &out).unwrap();
    let names: Vec<_> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["summary.json", "report.md", "report.html", "junit.xml"]
    );
    assert_eq!(load_summary(&out.join("summary.json")).unwrap(), summary);
}

#[test]
fn format_names_parse_and_unknown_ones_list_the_valid_ones() {
    use ricochet_reports::Format;
    assert_eq!("md".parse::<Format>().unwrap(), Format::Markdown);
    assert_eq!("HTML".parse::<Format>().unwrap(), Format::Html);
    assert_eq!(
        "pdf".parse::<Format>().unwrap_err().to_string(),
        "--format \"pdf\": unknown format; valid: text, json, md, html, junit"
    );
}

// See: issue #15 item 3 (long runs have points of several seconds).
#[test]
fn a_summary_without_point_widths_reads_as_one_second_points() {
    let committed =
        std::fs::read_to_string(crate::crate_path("tests/data/fixture.summary.json")).unwrap();
    assert!(!committed.contains("widthSecs"));
    let summary = parse_summary(&committed, Path::new("summary.json")).unwrap();
    assert!(!summary.time_series.is_empty());
    assert!(
        summary
            .time_series
            .iter()
            .chain(summary.scenarios.iter().flat_map(|s| &s.time_series))
            .all(|p| p.width_secs == 1)
    );
    // Wider points carry their width, and read back.
    let mut wide = fixture::realistic();
    wide.time_series[0].width_secs = 248;
    let json = to_json(&wide);
    assert_eq!(
        json.matches("\"widthSecs\": 248").count(),
        1,
        "only wide points say so"
    );
    assert_eq!(
        parse_summary(&json, Path::new("summary.json")).unwrap(),
        wide
    );
}
