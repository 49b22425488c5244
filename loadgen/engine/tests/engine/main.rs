//! `ricochet-engine`'s integration tests: whole runs in-process against tiny servers on
//! 127.0.0.1:0, one load test at a time.

mod executors;
mod exit_paths;
mod https;
mod no_answer;
mod open_model;
mod platform_budget;
mod support;
