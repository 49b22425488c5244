//! k6-style thresholds: `metric{tag:value}: ["p(99)<800ms"]` parsed into [`Threshold`]s.

use std::collections::BTreeMap;
use std::time::Duration;

/// One parsed threshold condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// The metric key as written, e.g. `http_req_duration{scenario:api}`.
    pub key: String,
    /// The metric name, e.g. `http_req_duration`.
    pub metric: String,
    /// Tag filter: every tag must match for a sample to count.
    pub filter: BTreeMap<String, String>,
    /// The condition as written, e.g. `p(99)<800ms`.
    pub expression: String,
    /// What is computed from the metric.
    pub aggregation: Aggregation,
    /// How it is compared.
    pub comparison: Comparison,
    /// The limit, in milliseconds for durations, a fraction for `rate`, a number otherwise.
    pub limit: f64,
    /// Stop the run as soon as this fails.
    pub abort_on_fail: bool,
    /// No abort evaluation before this much of the run has passed.
    pub delay_abort_eval: Duration,
    /// Which samples are judged.
    pub scope: Scope,
}

/// What a threshold computes from its metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Aggregation {
    /// `p(N)`, N in 0..=100.
    Percentile(f64),
    /// `avg`.
    Avg,
    /// `med`.
    Med,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `count`.
    Count,
    /// `rate`: fraction of true samples (rate metrics) or per-second rate (counters).
    Rate,
}

/// Comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// Which samples a threshold judges.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    /// The whole run.
    Run,
    /// Every tumbling window of this length; the threshold fails if any window fails.
    Window(Duration),
    /// Only samples scheduled during the stages with this phase name.
    Phase(String),
}
