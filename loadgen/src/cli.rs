//! Command line: `loadgen run | validate`, errors mapped to exit codes.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// ricochet's load generator.
#[derive(Parser, Debug)]
#[command(name = "loadgen", version, about)]
pub struct Cli {}

/// Parses `args`, runs the command and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    match Cli::try_parse_from(args) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = err.print();
            ExitCode::from(2)
        }
    }
}
