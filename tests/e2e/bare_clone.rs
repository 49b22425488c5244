//! The test command must pass from a bare clone: nothing beside the repository, only the
//! tools `scripts/test.sh` installs. Two static checks over the repository's own files:
//! no test names a path that resolves outside the repository, and every program a test
//! starts is one that `scripts/test.sh` installs when absent (or one of the base image's).
//! CI (`.ci/run`) runs the whole suite on a fresh clone with nothing beside it; these
//! checks say which file broke that promise before a CI machine does.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// Programs every machine of this kind has without installing anything.
const BASE_IMAGE: &[&str] = &[
    "bash", "sh", "env", "kill", "timeout", "mkfifo", "python3", "cargo",
];

/// Programs that tests look up by name rather than through `Command::new("...")`.
const LOOKED_UP: &[(&str, &str)] = &[
    (
        "prometheus",
        "loadgen/cli/tests/cli/prometheus_roundtrip.rs",
    ),
    ("chromium", "reports/tests/browser.sh"),
];

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().expect("repository root")
}

/// Every source, script and data file of the repository that a test may read, skipping
/// build output and git's own folder.
fn repository_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !matches!(name, "target" | ".git") {
                    stack.push(path);
                }
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("rs" | "sh" | "toml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The folder a relative path in `file` is resolved against: the crate's manifest folder
/// for Rust (tests join paths onto `CARGO_MANIFEST_DIR`), the script's folder for shell.
fn base_of(file: &Path, root: &Path) -> PathBuf {
    let mut dir = file.parent().expect("file has a folder").to_path_buf();
    if file.extension().is_some_and(|e| e == "rs") {
        while dir.starts_with(root) && !dir.join("Cargo.toml").is_file() {
            dir.pop();
        }
    }
    dir
}

/// Resolves `..` and `.` lexically (the targets need not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Relative paths with a `..` segment in `text`: each maximal run of path characters that
/// starts with `../`.
fn parent_relative_paths(text: &str) -> Vec<&str> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "._-/".contains(c);
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("../") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let len = tail.find(|c| !is_path_char(c)).unwrap_or(tail.len());
        if !before.is_some_and(|c| is_path_char(c) && c != '/') {
            out.push(&tail[..len]);
        }
        rest = &tail[len..];
    }
    out
}

/// Where `text` (the contents of `file`) names a path outside `root`, one line each.
fn escapes(file: &Path, text: &str, root: &Path) -> Vec<String> {
    let base = base_of(file, root);
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for rel in parent_relative_paths(line) {
            let resolved = normalize(&base.join(rel));
            if !resolved.starts_with(root) {
                found.push(format!(
                    "{}:{}: `{rel}` resolves to {}",
                    file.display(),
                    n + 1,
                    resolved.display()
                ));
            }
        }
        let code = line.trim_start();
        let comment = code.starts_with("//") || code.starts_with('#');
        if !comment && (code.contains("shared/fixtures") || code.contains("\"/work/")) {
            found.push(format!(
                "{}:{}: names a path outside the repository (shared/fixtures or /work/)",
                file.display(),
                n + 1
            ));
        }
    }
    found
}

#[test]
fn no_file_names_a_path_outside_the_repository() {
    let root = repo_root();
    let this = Path::new(file!()).file_name().expect("file name");
    let mut found = Vec::new();
    for file in repository_files(&root) {
        if file.file_name() == Some(this) {
            continue; // its own examples below
        }
        let text = fs::read_to_string(&file).expect("utf-8 source");
        found.extend(escapes(&file, &text, &root));
    }
    assert!(
        found.is_empty(),
        "paths outside the repository:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_escape_check_sees_an_escape() {
    let root = repo_root();
    let file = root.join("loadgen/verify/tests/verify/backends.rs");
    // Built from parts, so this file itself names no path outside the repository.
    let up = "../".repeat(3);
    let bad = format!(
        r#"let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("{up}shared/fixtures/backends");"#
    );
    assert_eq!(escapes(&file, &bad, &root).len(), 2, "{bad}");
    let good =
        r#"let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/smoke.yaml");"#;
    assert_eq!(escapes(&file, good, &root), Vec::<String>::new());
    let absolute = format!(
        r#"let dir = Path::new("/{}/shared/fixtures/backends");"#,
        "work"
    );
    assert_eq!(escapes(&file, &absolute, &root).len(), 1, "{absolute}");
    let comment = "//! (copied from shared/fixtures into the repository)";
    assert_eq!(escapes(&file, comment, &root), Vec::<String>::new());
    let script = root.join("reports/tests/browser.sh");
    assert_eq!(
        escapes(&script, r#"cd "$(dirname "$0")/../..""#, &root).len(),
        0
    );
    assert_eq!(escapes(&script, &format!("cat {up}x"), &root).len(), 1);
}

/// The programs `scripts/test.sh` checks for (`command -v NAME`) and installs when absent.
fn installed_by_test_sh(root: &Path) -> Vec<String> {
    let text = fs::read_to_string(root.join("scripts/test.sh")).expect("scripts/test.sh");
    text.split("command -v ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Literal program names passed to `Command::new("...")` in `text`.
fn started_programs(text: &str) -> Vec<&str> {
    text.split("Command::new(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

#[test]
fn every_program_a_test_starts_is_installed_by_the_test_command() {
    let root = repo_root();
    let installed = installed_by_test_sh(&root);
    assert!(
        installed.iter().any(|p| p == "prometheus"),
        "parsed {installed:?}"
    );
    let mut wanted: Vec<(String, String)> = LOOKED_UP
        .iter()
        .map(|(p, f)| (p.to_string(), f.to_string()))
        .collect();
    let this = Path::new(file!()).file_name().expect("file name");
    for file in repository_files(&root) {
        if file.file_name() == Some(this) {
            continue; // its own examples below
        }
        let text = fs::read_to_string(&file).expect("utf-8 source");
        for program in started_programs(&text) {
            wanted.push((program.to_owned(), file.display().to_string()));
        }
    }
    for (_, file) in LOOKED_UP {
        assert!(root.join(file).is_file(), "{file} moved: update LOOKED_UP");
    }
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(p, _)| !BASE_IMAGE.contains(&p.as_str()) && !installed.contains(p))
        .map(|(p, f)| format!("{f} starts `{p}`, which scripts/test.sh does not install"))
        .collect();
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_program_check_sees_a_program_nobody_installs() {
    let text = r#"let out = Command::new("tempo").arg("-config.file=t.yaml").output();"#;
    assert_eq!(started_programs(text), vec!["tempo"]);
    let installed = installed_by_test_sh(&repo_root());
    assert!(installed.iter().any(|p| p == "promtool"), "{installed:?}");
    assert!(!installed.iter().any(|p| p == "tempo"));
}
