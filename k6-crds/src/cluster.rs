//! The in-cluster part of a `LoadTest`: how many runner pods, on which schedule, with which
//! pod settings, and what is kept afterwards. `loadgen run` ignores all of it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, ResourceRequirements, Toleration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How many runner pods share a run: a number, or `auto` (the total peak rate divided by
/// `maxRatePerRunner`, rounded up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallelism {
    /// This many runners (at least 1).
    Runners(u32),
    /// `ceil(total peak rate / maxRatePerRunner)` runners.
    Auto,
}

impl Serialize for Parallelism {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Parallelism::Runners(n) => serializer.serialize_u32(*n),
            Parallelism::Auto => serializer.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Parallelism {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = Parallelism;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of runners (1 or more) or \"auto\"")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                match u32::try_from(v) {
                    Ok(n) if n >= 1 => Ok(Parallelism::Runners(n)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
                }
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "auto" {
                    Ok(Parallelism::Auto)
                } else if let Ok(n) = v.parse::<u64>() {
                    self.visit_u64(n)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for Parallelism {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Parallelism".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // A structural schema cannot say "integer >= 1 or the string auto" directly; the
        // int-or-string marker plus a CEL rule can.
        schemars::json_schema!({
            "description": "Runner pods sharing the run: a number (1 or more) or `auto` (total peak rate / `maxRatePerRunner`, rounded up).",
            "x-kubernetes-int-or-string": true,
            "x-kubernetes-validations": [{
                "rule": "type(self) == int ? self >= 1 : self == 'auto'",
                "message": "parallelism must be a number of runners (1 or more) or \"auto\""
            }]
        })
    }
}

/// What to do when a scheduled run is due while an earlier one is still running
/// (CronJob's `concurrencyPolicy`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Skip the new run (the default).
    #[default]
    Forbid,
    /// Delete the running run and start the new one.
    Replace,
    /// Run both.
    Allow,
}

/// Overrides of the runner pods' template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunnerTemplate {
    /// Container image of the runners (default: the operator's own image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy (`Always`, `IfNotPresent`, `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// CPU and memory requests and limits of each runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the runner pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the runner pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// ServiceAccount the runners run as (default `ricochet-runner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Extra environment variables (values or `valueFrom` Secret/ConfigMap keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Whole Secrets or ConfigMaps exposed as environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// ConfigMap holding the files that requests' `bodyFile`s name (each key a file name,
    /// e.g. from `kubectl create configmap NAME --from-file=order.json`), mounted read-only
    /// in every runner. In a cluster, body files are read from it and nowhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_files_config_map: Option<String>,
}

/// What is kept once a run has finished.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CleanupPolicy {
    /// Keep the runner Jobs and pods of a failed run for inspection (their logs).
    #[serde(default)]
    pub keep_on_failure: bool,
    /// Delete the finished run (and everything it owns but its report) this long after it
    /// finished; unset: keep it until the history limits remove it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u32>,
}

/// Default number of successful runs a scheduled `LoadTest` keeps.
pub const DEFAULT_SUCCESSFUL_RUNS_HISTORY_LIMIT: u32 = 3;
/// Default number of failed runs a scheduled `LoadTest` keeps.
pub const DEFAULT_FAILED_RUNS_HISTORY_LIMIT: u32 = 1;
