//! `LoadTestRun`: one execution of a `LoadTest`, as a Job is one execution of a CronJob.
//!
//! The operator sets `Finished` to True once a run is over, passed or failed, and `Passed`
//! to True or False with it: a pipeline waits with `kubectl wait --for=condition=Finished
//! loadtestrun/NAME`, which returns at once either way, then reads `Passed`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cluster::Parallelism;
use crate::spec::LoadTestSpec;

/// One execution of a load test: the `LoadTest` it runs (by name, or inline) and overrides.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ricochet.dev",
    version = "v1alpha1",
    kind = "LoadTestRun",
    namespaced,
    shortname = "ltr",
    status = "LoadTestRunStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Verdict","type":"string","jsonPath":".status.verdict"}"#,
    printcolumn = r#"{"name":"P99","type":"string","jsonPath":".status.p99"}"#,
    printcolumn = r#"{"name":"Runners","type":"integer","jsonPath":".status.parallelism"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("has(self.loadTestRef) != has(self.spec)").message("set exactly one of loadTestRef and spec"))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadTestRunSpec {
    /// The `LoadTest` (same namespace) to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_test_ref: Option<LoadTestRef>,
    /// An inline `LoadTest` spec, instead of `loadTestRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Box<LoadTestSpec>>,
    /// Changes to the referenced spec for this run only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<RunOverrides>,
}

/// A reference to a `LoadTest` in the run's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadTestRef {
    /// `metadata.name` of the `LoadTest`.
    pub name: String,
}

/// Per-run changes to the spec, as `loadgen run`'s flags.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunOverrides {
    /// GA multiplier (`--multiplier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// Run every scenario for this long (`--duration`, e.g. `2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Runner pods for this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<Parallelism>,
}

/// Where a run is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunPhase {
    /// Runner Jobs created; waiting for every runner pod to be running.
    Pending,
    /// The start barrier is released; runners are generating load.
    Running,
    /// Every runner finished; the merged results passed all thresholds.
    Passed,
    /// A threshold failed on the merged results, or a runner failed or was lost.
    Failed,
}

impl RunPhase {
    /// Whether the run is over.
    pub fn is_finished(self) -> bool {
        matches!(self, RunPhase::Passed | RunPhase::Failed)
    }
}

/// Outcome of thresholds: `Unknown` when something could not be measured (fails closed).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Verdict {
    /// Every threshold held.
    Pass,
    /// A threshold failed.
    Fail,
    /// A threshold could not be judged.
    Unknown,
}

/// Where one runner is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunnerPhase {
    /// Its pod is not running yet.
    Pending,
    /// Its pod is running (waiting at the barrier, or generating load).
    Running,
    /// It exited 0 and wrote its partial results.
    Succeeded,
    /// It failed, or its pod was lost.
    Failed,
}

/// One runner of a run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerStatus {
    /// Index, 0-based.
    pub index: u32,
    /// Name of its Job.
    pub job: String,
    /// Its state.
    pub phase: RunnerPhase,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The verdict of one threshold on the merged results.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdVerdict {
    /// Metric expression with its filter, e.g. `http_req_duration{scenario:api}`.
    pub metric: String,
    /// The condition, e.g. `p(99)<800ms`.
    pub condition: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// The observed value, e.g. `612.3ms`, when it could be measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// Why it is `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where the run's reports are kept after its pods are gone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportLocation {
    /// ConfigMap (owned by the run) holding the reports.
    pub config_map: String,
    /// Its keys: `summary.json` (schema version 1), `report.md`, `junit.xml`.
    pub keys: Vec<String>,
    /// Where the operator also wrote the full reports, `report.html` included, when it
    /// runs with `--report-dir` (a mounted volume): `<dir>/<namespace>/<run>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
}

/// What the operator observed of a run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadTestRunStatus {
    /// Where the run is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,
    /// The thresholds' verdict on the merged results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Number of runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Each runner's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runners: Vec<RunnerStatus>,
    /// The instant every runner starts at (the released start barrier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Time>,
    /// When the run was created by the operator (its Jobs created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// p99 of `http_req_duration` over all runners, e.g. `612ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<String>,
    /// Merged counters: `http_reqs`, `http_req_failed`, `dropped_iterations`, ...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// Each threshold's verdict, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<ThresholdVerdict>,
    /// `Started`; once the run is over `Finished` (True, passed or failed), `Passed` (True
    /// or False, with the failed thresholds and their observed values) and `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the reports are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportLocation>,
    /// A sentence on the current state (why it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
