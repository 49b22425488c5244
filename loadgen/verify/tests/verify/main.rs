//! `ricochet-verify`'s integration tests: the verifiers against stub servers replaying
//! real backend responses (`tests/fixtures/backends/`), against constructed ingress,
//! gateway and auth-proxy answers (`tests/fixtures/backends/ingress/`), what counts as the
//! echo-server's own telemetry, and the embedded OTLP sink.

mod backends;
mod classify;
mod ownership;
mod platform;
mod sink;
