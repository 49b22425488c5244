//! End-to-end tests across ricochet's crates (one test binary, a module per topic).

mod bare_clone;
mod run_local;
