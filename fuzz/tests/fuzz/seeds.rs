//! The seeds are real, valid inputs (else mutations start from noise and stay shallow).

use std::path::Path;

use ricochet_engine::Overrides;
use ricochet_engine::load::Document;

fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(dir);
    let mut out: Vec<_> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_summary_seed_is_a_valid_summary() {
    for (name, bytes) in corpus("summary") {
        let text = String::from_utf8(bytes).unwrap();
        ricochet_reports::parse_summary(&text, Path::new(&name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn the_scenario_seeds_plan() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in corpus("plan") {
        let text = String::from_utf8(bytes).unwrap();
        let file = dir.path().join("scenario.yaml");
        let doc = Document::parse(&file, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
        doc.plan(&Overrides::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn the_backend_seeds_read_as_answers() {
    for (name, bytes) in corpus("tempo-protobuf") {
        let spans = ricochet_verify::tempo::count_protobuf_spans(&bytes);
        assert!(matches!(spans, Ok(Some(n)) if n > 0), "{name}: {spans:?}");
    }
    for (name, bytes) in corpus("jaeger") {
        assert!(
            ricochet_verify::tempo::count_jaeger_spans(&bytes).is_ok(),
            "{name}"
        );
    }
    let found = corpus("loki")
        .iter()
        .filter(
            |(_, b)| matches!(ricochet_verify::loki::parse_streams(b), Ok((_, f)) if !f.is_empty()),
        )
        .count();
    assert!(found > 0, "no Loki seed holds a trace id");
    let exposition = corpus("exposition");
    let text = String::from_utf8_lossy(&exposition[0].1);
    assert!(!ricochet_verify::exposition::exemplars(&text).is_empty());
}
