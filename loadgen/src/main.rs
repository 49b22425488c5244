//! The `loadgen` binary: a thin shell over [`loadgen::cli::main`].

use std::process::ExitCode;

fn main() -> ExitCode {
    loadgen::cli::main(std::env::args_os())
}
