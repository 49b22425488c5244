//! The `loadgen` binary: a thin shell over [`loadgen::main`].

use std::process::ExitCode;

fn main() -> ExitCode {
    loadgen::main(std::env::args_os())
}
