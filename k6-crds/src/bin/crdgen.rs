//! Prints ricochet's CRDs as YAML, or writes one file per CRD:
//! `cargo run -p ricochet-crds --bin crdgen -- --write deploy/crds`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [] => ricochet_crds::all_crds_yaml()
            .map_err(|e| e.to_string())
            .and_then(|yaml| {
                std::io::stdout()
                    .write_all(yaml.as_bytes())
                    .map_err(|e| format!("cannot write the CRDs: {e}"))
            }),
        [flag, dir] if flag == "--write" => write_all(Path::new(dir)),
        _ => Err("usage: crdgen [--write DIR]".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("crdgen: {err}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(dir: &Path) -> Result<(), String> {
    for (name, yaml) in ricochet_crds::crd_files().map_err(|e| e.to_string())? {
        let path = dir.join(name);
        std::fs::write(&path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
