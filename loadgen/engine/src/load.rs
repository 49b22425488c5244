//! A `LoadTest` YAML file read into a [`Plan`], every error located at a line and column.
//!
//! The file is parsed twice: once by the YAML event parser into a [`SourceIndex`] (field path
//! → position; YAML syntax errors come from here), once by serde-saphyr into the typed spec
//! (unknown fields, wrong types). Semantic checks in [`Plan::from_source`] then look up the
//! position of the field they reject in the index.
//!
//! A scenario file is at most [`MAX_SCENARIO_BYTES`] long, and holds at most
//! serde-saphyr's default budget of nodes, nesting and aliases; beyond, one sentence says so.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use ricochet_crds::LoadTestSpec;
use serde::Deserialize;
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::granit_parser::{Event, Parser};
use serde_saphyr::{Budget, DefaultMessageFormatter, MessageFormatter};

use crate::plan::{BodySource, Locate, Overrides, Plan, PlanError, Position};

/// The largest scenario file loadgen reads: 4 MiB (large request bodies go in `bodyFile`s).
pub const MAX_SCENARIO_BYTES: u64 = 4 * 1024 * 1024;

/// Reads the `LoadTest` at `path`, validates it and applies `overrides`; its `bodyFile`s
/// must lie in the file's folder.
pub fn load_plan(path: &Path, overrides: &Overrides) -> Result<Plan, PlanError> {
    load_plan_with(path, overrides, BodySource::default())
}

/// Like [`load_plan`], with the `bodyFile`s read from `bodies`.
pub fn load_plan_with(
    path: &Path,
    overrides: &Overrides,
    bodies: BodySource<'_>,
) -> Result<Plan, PlanError> {
    let doc = Document::read(path)?;
    Plan::from_source(
        &doc.name, &doc.spec, &doc.file, &doc.index, overrides, bodies,
    )
}

/// A parsed `LoadTest` document and where each of its fields was written.
#[derive(Debug)]
pub struct Document {
    /// The file it came from.
    pub file: PathBuf,
    /// `metadata.name`, or the file stem when absent.
    pub name: String,
    /// The spec as written.
    pub spec: LoadTestSpec,
    /// Field path → position.
    pub index: SourceIndex,
}

/// The `LoadTest` envelope as a user writes it (the CRD's `apiVersion`, `kind`, `metadata`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Envelope {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    spec: LoadTestSpec,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl Document {
    /// Reads and parses the file at `path`, at most [`MAX_SCENARIO_BYTES`] long.
    pub fn read(path: &Path) -> Result<Document, PlanError> {
        let unreadable = |message: String| PlanError {
            file: Some(path.to_path_buf()),
            position: None,
            field: None,
            message,
        };
        let mut bytes = Vec::new();
        // Through a cap, so that `/dev/zero` or a pipe that never ends is refused, not read.
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_SCENARIO_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| unreadable(format!("cannot read the scenario file: {e}")))?;
        if bytes.len() as u64 > MAX_SCENARIO_BYTES {
            return Err(unreadable(format!(
                "the scenario file is larger than {} MiB ({MAX_SCENARIO_BYTES} bytes), the most loadgen reads; put large request bodies in `bodyFile`s",
                MAX_SCENARIO_BYTES >> 20
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            unreadable(format!(
                "the scenario file is not UTF-8 text (byte {} is not valid UTF-8)",
                e.utf8_error().valid_up_to() + 1
            ))
        })?;
        Document::parse(path, &text)
    }

    /// Parses `text` (the contents of `file`) into a document, checking YAML syntax, field
    /// names and types, `apiVersion` and `kind`.
    pub fn parse(file: &Path, text: &str) -> Result<Document, PlanError> {
        let located =
            |position: Option<Position>, field: Option<String>, message: String| PlanError {
                file: Some(file.to_path_buf()),
                position,
                field,
                message,
            };
        let index = SourceIndex::build(text)
            .map_err(|(position, message)| located(Some(position), None, message))?;
        let envelope: Envelope = serde_saphyr::from_str(text).map_err(|e| {
            let e = e.without_snippet();
            let position = e.location().map(|l| Position {
                line: l.line() as usize,
                column: l.column() as usize,
            });
            let message = yaml_error_message(e, text, position);
            // A budget is the whole document's, not the field where it ran out.
            let budget = matches!(e, serde_saphyr::Error::Budget { .. });
            let field = position.filter(|_| !budget).and_then(|p| index.field_at(p));
            located(position, field.filter(|f| !f.is_empty()), message)
        })?;
        let at = |path: &str, message: String| {
            located(index.locate(path), Some(path.to_owned()), message)
        };
        let api_version = ricochet_crds::API_VERSION;
        if envelope.api_version != api_version {
            return Err(at(
                "apiVersion",
                format!(
                    "`{}` is not supported, expected `{api_version}`",
                    envelope.api_version
                ),
            ));
        }
        if envelope.kind != ricochet_crds::KIND {
            return Err(at(
                "kind",
                format!(
                    "`{}` is not supported, expected `{}`",
                    envelope.kind,
                    ricochet_crds::KIND
                ),
            ));
        }
        let name = match envelope.metadata.name {
            Some(name) if name.is_empty() => {
                return Err(at("metadata.name", "must not be empty".to_owned()));
            }
            Some(name) => name,
            None => file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "loadtest".to_owned()),
        };
        Ok(Document {
            file: file.to_path_buf(),
            name,
            spec: envelope.spec,
            index,
        })
    }

    /// Validates the document into a plan with `overrides` applied.
    pub fn plan(&self, overrides: &Overrides) -> Result<Plan, PlanError> {
        Plan::from_source(
            &self.name,
            &self.spec,
            &self.file,
            &self.index,
            overrides,
            BodySource::default(),
        )
    }
}

/// Where each field of a YAML document was written: `spec.scenarios[0].rate` → line 12,
/// column 7 (the key of a mapping entry, the item of a sequence).
#[derive(Debug, Default)]
pub struct SourceIndex {
    positions: HashMap<String, Position>,
    /// `(position, path, is_key)` in document order, for mapping error positions back to fields.
    nodes: Vec<(Position, String, bool)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl SourceIndex {
    /// Indexes `text`; a YAML syntax error, or more nodes or nesting than serde-saphyr's
    /// default [`Budget`] allows, is returned with its position and sentence.
    pub fn build(text: &str) -> Result<SourceIndex, (Position, String)> {
        let budget = Budget::default();
        let mut index = SourceIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let (event, span) = item.map_err(|e| {
                let m = e.marker();
                (
                    Position {
                        line: m.line(),
                        column: m.col() + 1,
                    },
                    format!("YAML syntax error: {}", e.info()),
                )
            })?;
            let position = Position {
                line: span.start.line(),
                column: span.start.col() + 1,
            };
            let is_node = matches!(
                event,
                Event::Scalar(..)
                    | Event::SequenceStart(..)
                    | Event::MappingStart(..)
                    | Event::Alias(_)
            );
            if matches!(event, Event::SequenceEnd | Event::MappingEnd) {
                stack.pop();
                if let Some(Frame::Map { key, .. }) = stack.last_mut() {
                    *key = None;
                }
                continue;
            }
            if !is_node {
                continue;
            }
            // Each node's path is stored, and is as long as the nesting is deep: both bounded.
            if index.nodes.len() >= budget.max_nodes {
                return Err((position, too_many_nodes(budget.max_nodes)));
            }
            if stack.len() >= budget.max_depth {
                return Err((position, too_deep(budget.max_depth)));
            }
            // The path of this node, or `None` when it is a mapping key.
            let path = match stack.last_mut() {
                None => Some(String::new()),
                Some(Frame::Map { path, key }) => match key.take() {
                    None => {
                        let name = match &event {
                            Event::Scalar(value, ..) => value.to_string(),
                            _ => String::from("?"),
                        };
                        let full = join_key(path, &name);
                        index.positions.entry(full.clone()).or_insert(position);
                        index.nodes.push((position, full, true));
                        *key = Some(name);
                        None
                    }
                    Some(name) => Some(join_key(path, &name)),
                },
                Some(Frame::Seq { path, next }) => {
                    let full = format!("{path}[{next}]");
                    *next += 1;
                    index.positions.entry(full.clone()).or_insert(position);
                    Some(full)
                }
            };
            let Some(path) = path else { continue };
            index.nodes.push((position, path.clone(), false));
            match event {
                Event::MappingStart(..) => stack.push(Frame::Map { path, key: None }),
                Event::SequenceStart(..) => stack.push(Frame::Seq { path, next: 0 }),
                _ => {}
            }
        }
        Ok(index)
    }

    /// The field an error reported at `position` is about: for a mapping key (an unknown
    /// field, say) the mapping that holds it, otherwise the value written there or just before.
    pub fn field_at(&self, position: Position) -> Option<String> {
        if let Some((_, path, _)) = self
            .nodes
            .iter()
            .find(|(p, _, is_key)| *p == position && *is_key)
        {
            return Some(parent(path).to_owned());
        }
        self.nodes
            .iter()
            .filter(|(p, _, _)| *p <= position)
            .max_by_key(|(p, _, is_key)| (*p, !*is_key))
            .map(|(_, path, _)| path.clone())
    }
}

/// The sentence for a serde-saphyr error: serde's wording with the valid names quoted, and
/// the offending scalar quoted where the crate only names the expected type.
fn yaml_error_message(e: &serde_saphyr::Error, text: &str, position: Option<Position>) -> String {
    use serde_saphyr::Error as E;
    let quoted = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match e {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            format!(
                "unknown field `{field}`, expected one of {}",
                quoted(expected)
            )
        }
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => format!(
            "unknown value `{variant}`, expected one of {}",
            quoted(expected)
        ),
        E::InvalidScalar { ty, .. } => {
            let expected = match *ty {
                "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number >= 0",
                "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
                "f32" | "f64" | "floating point" => "a number",
                "bool" => "`true` or `false`",
                other => other,
            };
            match position.and_then(|p| scalar_at(text, p)) {
                Some(value) => format!("`{value}` is not valid here, expected {expected}"),
                None => format!("invalid value, expected {expected}"),
            }
        }
        E::Unexpected { expected, .. } if expected.contains("sequence") => {
            "expected a list (`- item` lines or `[a, b]`)".to_owned()
        }
        E::Unexpected { expected, .. } if expected.contains("mapping") => {
            "expected a mapping of fields (`key: value` lines or `{key: value}`)".to_owned()
        }
        E::Eof { .. } if text.trim().is_empty() => {
            "the file is empty, expected a LoadTest document (`apiVersion`, `kind`, `metadata`, `spec`)".to_owned()
        }
        E::MultipleDocuments { .. } => {
            "the file holds more than one YAML document (`---`); a scenario file holds one LoadTest".to_owned()
        }
        E::DuplicateMappingKey { key: Some(key), .. } => {
            format!("`{key}` is written twice; each field may appear once")
        }
        E::Budget { breach, .. } => budget_message(breach),
        other => DefaultMessageFormatter.format_message(other).into_owned(),
    }
}

fn too_many_nodes(max: usize) -> String {
    format!(
        "the document holds more than {max} YAML nodes (values, lists and mappings), more than loadgen reads in a scenario file"
    )
}

fn too_deep(max: usize) -> String {
    format!(
        "the document nests lists and mappings more than {max} deep, more than loadgen reads in a scenario file"
    )
}

/// The sentence for a document beyond serde-saphyr's default [`Budget`].
fn budget_message(breach: &BudgetBreach) -> String {
    let budget = Budget::default();
    let beyond = |what: &str| {
        format!("the document holds {what}, more than loadgen reads in a scenario file")
    };
    match breach {
        BudgetBreach::Nodes { .. } => too_many_nodes(budget.max_nodes),
        BudgetBreach::Depth { .. } => too_deep(budget.max_depth),
        BudgetBreach::Events { .. } => {
            beyond(&format!("more than {} YAML events", budget.max_events))
        }
        BudgetBreach::Aliases { .. } | BudgetBreach::AliasAnchorRatio { .. } => {
            beyond("too many aliases (`*name`)")
        }
        BudgetBreach::Anchors { .. } => beyond("too many anchors (`&name`)"),
        BudgetBreach::Documents { .. } => beyond("too many YAML documents"),
        BudgetBreach::MergeKeys { .. } => beyond("too many merge keys (`<<`)"),
        BudgetBreach::ScalarBytes { .. } | BudgetBreach::InputBytes { .. } => {
            beyond("too much text")
        }
        _ => beyond("too much YAML structure"),
    }
}

/// The scalar written at `position` (up to a flow delimiter or comment), for messages.
fn scalar_at(text: &str, position: Position) -> Option<String> {
    let line = text.lines().nth(position.line.checked_sub(1)?)?;
    let start = line.char_indices().nth(position.column.checked_sub(1)?)?.0;
    let rest = &line[start..];
    let end = rest.find([',', '}', ']', '#']).unwrap_or(rest.len());
    let value = rest[..end].trim().trim_matches(['"', '\'']);
    (!value.is_empty()).then(|| value.to_owned())
}

fn parent(path: &str) -> &str {
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    &path[..cut]
}

impl Locate for SourceIndex {
    fn locate(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(p) = self.positions.get(path) {
                return Some(*p);
            }
            if path.is_empty() {
                return None;
            }
            path = parent(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentence(result: Result<impl Sized, PlanError>) -> String {
        result.map_or_else(|e| e.to_string(), |_| "(valid)".to_owned())
    }

    fn error_of(text: &str) -> String {
        sentence(Document::parse(Path::new("x.yaml"), text))
    }

    // See: issue #15, item 2: a 45 MB file ended in a Debug dump of the budget breach.
    #[test]
    fn a_file_beyond_the_limits_is_one_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        let line = "# padding\n";
        let lines = MAX_SCENARIO_BYTES as usize / line.len() + 1;
        std::fs::write(&big, line.repeat(lines)).unwrap();
        let latin1 = dir.path().join("latin1.yaml");
        std::fs::write(&latin1, b"kind: \xe9\n").unwrap();
        let load = |path: &Path| sentence(load_plan(path, &Overrides::default()));
        let too_big = "the scenario file is larger than 4 MiB (4194304 bytes), the most loadgen reads; put large request bodies in `bodyFile`s";
        let aliases = format!(
            "apiVersion: ricochet.dev/v1alpha1\nkind: LoadTest\nmetadata:\n  labels: {{a: &x v, {}}}\nspec: {{scenarios: []}}\n",
            (0..150)
                .map(|i| format!("k{i}: *x"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let cases = [
            (load(&big), format!("{}: {too_big}", big.display())),
            (load(Path::new("/dev/zero")), format!("/dev/zero: {too_big}")),
            (
                load(&latin1),
                format!(
                    "{}: the scenario file is not UTF-8 text (byte 7 is not valid UTF-8)",
                    latin1.display()
                ),
            ),
            (
                error_of(&format!("a: [{}]\n", "1,".repeat(250_001))),
                format!(
                    "x.yaml:1:{}: the document holds more than 250000 YAML nodes (values, lists and mappings), more than loadgen reads in a scenario file",
                    // The root mapping, `a`, the list and 249 997 items come before.
                    5 + 2 * 249_997
                ),
            ),
            (
                error_of(&format!("{}{}", "[".repeat(100), "]".repeat(100))),
                "x.yaml:1:65: the document nests lists and mappings more than 64 deep, more than loadgen reads in a scenario file".to_owned(),
            ),
            (
                error_of(&aliases),
                "x.yaml:6:1: the document holds too many aliases (`*name`), more than loadgen reads in a scenario file".to_owned(),
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(got, want)| got != want)
            .map(|(got, want)| format!(" want: {want}\n  got: {got}"))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
