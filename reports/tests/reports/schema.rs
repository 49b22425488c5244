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
    for summary in [
        fixture::realistic(),
        fixture::large(30, 3),
        fixture::with_platform(),
    ] {
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
fn a_summary_with_a_platform_round_trips() {
    let summary = fixture::with_platform();
    let json = to_json(&summary);
    assert!(json.contains("\"platform\": {") && json.contains("\"name\": \"errors\""));
    assert_eq!(
        parse_summary(&json, Path::new("summary.json")).unwrap(),
        summary
    );
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

// See: issue #14. The measurements added with the export ledger and the latency probes
// are written, read back, and present in the committed fixture: dropping one from the
// model, or from serialization, fails here.
#[test]
fn ledger_and_probe_measurements_are_written_and_read_back() {
    let summary = fixture::realistic();
    let value = serde_json::to_value(&summary).unwrap();
    let telemetry = &value["telemetry"];
    let traces = &telemetry["signals"][0];
    for (field, want) in [
        ("extraSpans", serde_json::json!(236)),
        ("latencyProbes", serde_json::json!(118)),
        ("firstAskedLate", serde_json::json!(2)),
        ("presenceOnly", serde_json::json!(1015)),
        ("acknowledgedProbes", serde_json::json!(116)),
        (
            "missingSplit",
            serde_json::json!({"refused": 1, "dropped": 0, "injected": 14, "afterAcceptance": 2, "unaccounted": 0}),
        ),
    ] {
        assert_eq!(traces[field], want, "{field}");
    }
    assert_eq!(traces["exportWait"]["med"], 11.0);
    assert_eq!(traces["backendLatency"]["p95"], 57.0);
    assert_eq!(telemetry["probeScheduleMs"][0], 25.0);
    assert_eq!(telemetry["metricProbes"], 240);
    assert_eq!(
        telemetry["exporter"][0],
        serde_json::json!({"signal": "spans", "emitted": 432000, "accepted": 426550, "refused": 50, "dropped": 0, "injected": 5400})
    );
    assert_eq!(
        telemetry["exporterSource"],
        serde_json::json!({"replicas": ["echo-server-7d9f-0", "echo-server-7d9f-1"], "partial": false, "requests": 432000, "chaosDroppedRequests": 5400})
    );
    // Exemplars do not go through the workload's exporter: no split for them.
    assert!(telemetry["signals"][2].get("missingSplit").is_none());
    let back = parse_summary(&value.to_string(), Path::new("summary.json")).unwrap();
    assert_eq!(back, summary);
}

#[test]
fn a_summary_written_before_the_ledger_reads_with_the_new_fields_empty() {
    let mut value = serde_json::to_value(fixture::realistic()).unwrap();
    let telemetry = value["telemetry"].as_object_mut().unwrap();
    for field in ["probeScheduleMs", "metricProbes", "exporterSource"] {
        telemetry.remove(field);
    }
    for e in telemetry["exporter"].as_array_mut().unwrap() {
        let e = e.as_object_mut().unwrap();
        e.remove("emitted");
        e.remove("injected");
    }
    for s in telemetry["signals"].as_array_mut().unwrap() {
        let s = s.as_object_mut().unwrap();
        for field in [
            "extraSpans",
            "latencyProbes",
            "firstAskedLate",
            "presenceOnly",
            "acknowledgedProbes",
            "missingSplit",
            "exportWait",
            "backendLatency",
        ] {
            s.remove(field);
        }
    }
    let old = parse_summary(&value.to_string(), Path::new("summary.json")).unwrap();
    let t = old.telemetry.unwrap();
    assert!(t.probe_schedule_ms.is_empty() && t.exporter_source.is_none());
    assert_eq!((t.exporter[0].emitted, t.exporter[0].injected), (0, 0));
    assert_eq!(t.exporter[0].injected_fraction(), None);
    assert!(
        t.signals
            .iter()
            .all(|s| s.missing_split.is_none() && s.latency_probes == 0)
    );
    // Its reports render, without a count they do not have.
    let text = ricochet_reports::text::render(
        &ricochet_reports::Summary {
            telemetry: Some(t),
            ..fixture::realistic()
        },
        false,
    );
    let ingest = text
        .lines()
        .find(|l| l.trim_start().starts_with("traces ingest"))
        .unwrap();
    assert_eq!(
        ingest.split_whitespace().collect::<Vec<_>>()[2..4],
        ["—", "31.00ms"],
        "{text}"
    );
    // Its exporter counts do not claim nothing was emitted or injected.
    assert!(
        text.contains("exporter spans: accepted 426550 refused 50 dropped 0 (written before emitted and injected were counted: dropped may include chaos drops)"),
        "{text}"
    );
}
