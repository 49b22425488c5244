//! `ricochet-verify`'s integration tests: the verifiers against stub servers replaying
//! real backend responses (`tests/fixtures/backends/`), and the embedded OTLP sink.

mod backends;
mod sink;
