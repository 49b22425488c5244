//! End-to-end tests across ricochet's crates (one test binary, a module per topic).

mod run_local;
