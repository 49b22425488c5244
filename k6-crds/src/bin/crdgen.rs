//! Prints the `LoadTest` CRD as YAML: `cargo run -p ricochet-crds --bin crdgen > deploy/crds/loadtest.yaml`.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match ricochet_crds::crd_yaml() {
        Ok(yaml) => match std::io::stdout().write_all(yaml.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("crdgen: cannot write the CRD: {err}");
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            eprintln!("crdgen: {err}");
            ExitCode::FAILURE
        }
    }
}
