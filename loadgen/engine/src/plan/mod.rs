//! A `LoadTest` spec validated into typed values: the [`Plan`] the engine runs.
//!
//! [`Plan::from_spec`] checks everything a user can get wrong and reports it as one
//! [`PlanError`] sentence naming the file, line, column and field, and what is valid.
//!
//! Defaults and derived values:
//! - rate of an arrival-rate scenario: its `rate`, or `share x traffic.gaBaselineRps x
//!   multiplier` (multiplier: `--multiplier`, else `traffic.multiplier`, else 3);
//! - `ramping-arrival-rate` with `share` or `rate`: `startRate` and stage `target`s are
//!   fractions of that rate (`1` = full rate); without them they are absolute rates (k6);
//! - `gracefulStop` 30s, `startTime` 0s, target `timeout` 60s, `maxConnections` 256;
//! - `maxInFlight`: arrival-rate executors `clamp(ceil(peak rate x 2s), 100, 10000)`, i.e.
//!   room for responses up to 2 s slow at the peak rate before iterations are dropped;
//!   VU executors the peak number of VUs (a VU has one iteration in flight);
//! - `--duration D`: every scenario lasts `D` — constant executors' `duration` becomes `D`,
//!   ramping stages are scaled by `D / sum(stages)`, and `startTime` by the same factor.

pub mod chaos;
pub mod telemetry;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use ricochet_crds::{ExecutorKind, LoadTestSpec, RequestSpec, ScenarioSpec};

use ricochet_verify::plan::TelemetryPlan;

use self::chaos::ChaosPlan;
use crate::Exit;
use crate::duration::{format_duration, parse_duration};
use crate::thresholds::{Threshold, ThresholdContext, ThresholdField, parse_threshold};

/// A field of `spec.telemetry` or `spec.chaos` that is wrong: its path and why (located
/// in the file by [`PlanError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Full field path, e.g. `spec.telemetry.sample.rate`.
    pub field: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// A validated load test, ready to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The LoadTest's `metadata.name` (or the file stem when absent).
    pub name: String,
    /// The scenario file, when loaded from one.
    pub source: Option<PathBuf>,
    /// Where the load goes.
    pub target: TargetPlan,
    /// The GA multiplier in force, when rates derive from `traffic`.
    pub multiplier: Option<f64>,
    /// Scenarios, run in parallel.
    pub scenarios: Vec<ScenarioPlan>,
    /// Thresholds, in the order written.
    pub thresholds: Vec<Threshold>,
    /// Telemetry round-trip verification (`None`: a remote target without
    /// `spec.telemetry`).
    pub telemetry: Option<TelemetryPlan>,
    /// Faults applied during the run.
    pub chaos: ChaosPlan,
}

/// Where the load goes.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetPlan {
    /// An echo-server started in-process on an ephemeral loopback port.
    Embedded,
    /// A running service.
    Url(TargetUrl),
}

/// A running service and how to talk to it.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetUrl {
    /// Base URI (scheme, authority, optional path prefix).
    pub base: http::Uri,
    /// Speak HTTP/2 (prior knowledge) instead of HTTP/1.1.
    pub http2: bool,
    /// Upper bound of open connections per scenario.
    pub max_connections: NonZeroU32,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// One scenario, validated.
#[derive(Clone, Debug)]
pub struct ScenarioPlan {
    /// Unique name (`scenario` tag).
    pub name: String,
    /// How iterations are scheduled.
    pub executor: Executor,
    /// Offset from the run's start.
    pub start_time: Duration,
    /// Time granted to in-flight iterations after the scenario ends.
    pub graceful_stop: Duration,
    /// Bound on concurrent iterations; beyond it iterations are dropped and counted.
    pub max_in_flight: NonZeroU32,
    /// Extra tags on every sample.
    pub tags: BTreeMap<String, String>,
    /// Requests, picked per iteration by weight.
    pub requests: Vec<RequestPlan>,
}

/// How a scenario schedules iterations.
#[derive(Clone, Debug, PartialEq)]
pub enum Executor {
    /// A fixed arrival rate (iterations per second, finite and > 0) for a duration.
    ConstantArrivalRate {
        /// Iterations per second.
        rate: f64,
        /// How long.
        duration: Duration,
    },
    /// An arrival rate ramped linearly through stages.
    RampingArrivalRate {
        /// Rate at the start (iterations per second, >= 0).
        start_rate: f64,
        /// Stages; `target` is a rate.
        stages: Vec<StagePlan>,
    },
    /// A fixed number of closed-loop virtual users for a duration.
    ConstantVus {
        /// Virtual users.
        vus: NonZeroU32,
        /// How long.
        duration: Duration,
    },
    /// A number of closed-loop virtual users ramped through stages.
    RampingVus {
        /// VUs at the start.
        start_vus: u32,
        /// Stages; `target` is a number of VUs.
        stages: Vec<StagePlan>,
    },
}

/// One stage of a ramping executor.
#[derive(Clone, Debug, PartialEq)]
pub struct StagePlan {
    /// Rate or VUs reached at the end of the stage (finite, >= 0).
    pub target: f64,
    /// Length of the stage.
    pub duration: Duration,
    /// Phase name that thresholds can be scoped to.
    pub name: Option<String>,
}

/// One request, validated.
#[derive(Clone, Debug)]
pub struct RequestPlan {
    /// Name (`name` tag).
    pub name: String,
    /// HTTP method.
    pub method: http::Method,
    /// Path and query appended to the target's base.
    pub path_and_query: String,
    /// Extra headers.
    pub headers: http::HeaderMap,
    /// Body (inline or read from `bodyFile`), empty when none.
    pub body: Bytes,
    /// Relative weight (>= 1).
    pub weight: NonZeroU32,
    /// Record time to first and last byte of a streamed response.
    pub stream: bool,
}

/// A line and column in a scenario file, both counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// Finds where a field such as `spec.scenarios[0].rate` was written in the source.
pub trait Locate {
    /// The position of `path`, or of its nearest ancestor that was written.
    fn locate(&self, path: &str) -> Option<Position>;
}

/// Command-line overrides applied on top of the document.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// Replaces `traffic.multiplier` (`--multiplier`); needs a `traffic` section.
    pub multiplier: Option<f64>,
    /// Every scenario lasts this long (`--duration`): constant executors' `duration` becomes
    /// it; ramping stages and `startTime` are scaled by the same factor.
    pub duration: Option<Duration>,
    /// Run against the embedded echo-server whatever `target` says (`--embedded`).
    pub embedded: bool,
}

/// Invalid input: one sentence naming the file, line, column and field (or flag), what is
/// wrong and what is valid. Maps to exit code 2.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub struct PlanError {
    /// The scenario file, when the plan came from one.
    pub file: Option<PathBuf>,
    /// Where the field was written, when known.
    pub position: Option<Position>,
    /// The field path (`spec.scenarios[0].rate`) or flag (`--multiplier`), when there is one.
    pub field: Option<String>,
    /// What is wrong and what is valid.
    pub message: String,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(p) = self.position {
                write!(f, ":{}:{}", p.line, p.column)?;
            }
            f.write_str(": ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl PlanError {
    /// The exit code of a command given this input: [`Exit::InvalidInput`].
    pub fn exit(&self) -> Exit {
        Exit::InvalidInput
    }

    /// An error about a command-line flag.
    pub fn flag(flag: &str, message: impl Into<String>) -> Self {
        PlanError {
            file: None,
            position: None,
            field: Some(flag.to_owned()),
            message: message.into(),
        }
    }
}

/// A named part of a scenario's timeline: consecutive stages with the same `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    /// The stage name, e.g. `steady`.
    pub name: String,
    /// Offset of the phase's start from the start of the run (includes `startTime`).
    pub start: Duration,
    /// Offset of the phase's end from the start of the run.
    pub end: Duration,
}

impl Executor {
    /// The k6 name of the executor, e.g. `constant-arrival-rate`.
    pub fn name(&self) -> &'static str {
        match self {
            Executor::ConstantArrivalRate { .. } => "constant-arrival-rate",
            Executor::RampingArrivalRate { .. } => "ramping-arrival-rate",
            Executor::ConstantVus { .. } => "constant-vus",
            Executor::RampingVus { .. } => "ramping-vus",
        }
    }

    /// How long the executor schedules iterations (without graceful stop).
    pub fn duration(&self) -> Duration {
        match self {
            Executor::ConstantArrivalRate { duration, .. }
            | Executor::ConstantVus { duration, .. } => *duration,
            Executor::RampingArrivalRate { stages, .. } | Executor::RampingVus { stages, .. } => {
                stages.iter().map(|s| s.duration).sum()
            }
        }
    }

    /// The stages of a ramping executor; empty for constant executors.
    pub fn stages(&self) -> &[StagePlan] {
        match self {
            Executor::RampingArrivalRate { stages, .. } | Executor::RampingVus { stages, .. } => {
                stages
            }
            _ => &[],
        }
    }

    /// The highest arrival rate (iterations per second) of an arrival-rate executor.
    pub fn peak_rate(&self) -> Option<f64> {
        match self {
            Executor::ConstantArrivalRate { rate, .. } => Some(*rate),
            Executor::RampingArrivalRate { start_rate, stages } => {
                Some(stages.iter().map(|s| s.target).fold(*start_rate, f64::max))
            }
            _ => None,
        }
    }

    /// The highest number of VUs of a VU executor.
    pub fn peak_vus(&self) -> Option<u32> {
        match self {
            Executor::ConstantVus { vus, .. } => Some(vus.get()),
            Executor::RampingVus { start_vus, stages } => Some(
                stages
                    .iter()
                    .map(|s| s.target as u32)
                    .fold(*start_vus, u32::max),
            ),
            _ => None,
        }
    }
}

impl ScenarioPlan {
    /// How long the scenario schedules iterations (without start time and graceful stop).
    pub fn duration(&self) -> Duration {
        self.executor.duration()
    }

    /// Offset from the start of the run at which the scenario stops scheduling iterations.
    pub fn end(&self) -> Duration {
        self.start_time + self.duration()
    }

    /// The named phases of the scenario, offsets from the start of the run; consecutive
    /// stages with the same name form one phase, unnamed stages none.
    pub fn phases(&self) -> Vec<Phase> {
        let mut phases: Vec<Phase> = Vec::new();
        let mut at = self.start_time;
        for stage in self.executor.stages() {
            let end = at + stage.duration;
            if let Some(name) = &stage.name {
                match phases.last_mut() {
                    Some(last) if last.name == *name && last.end == at => last.end = end,
                    _ => phases.push(Phase {
                        name: name.clone(),
                        start: at,
                        end,
                    }),
                }
            }
            at = end;
        }
        phases
    }
}

impl Plan {
    /// Planned length of the run: until the last scenario stops scheduling iterations.
    pub fn duration(&self) -> Duration {
        self.scenarios
            .iter()
            .map(ScenarioPlan::end)
            .max()
            .unwrap_or_default()
    }

    /// Upper bound of the run's length including every scenario's graceful stop.
    pub fn max_duration(&self) -> Duration {
        self.scenarios
            .iter()
            .map(|s| s.end() + s.graceful_stop)
            .max()
            .unwrap_or_default()
    }

    /// Every phase of every scenario, as `(scenario name, phase)`.
    pub fn phases(&self) -> Vec<(&str, Phase)> {
        self.scenarios
            .iter()
            .flat_map(|s| s.phases().into_iter().map(move |p| (s.name.as_str(), p)))
            .collect()
    }

    /// Sum of the arrival-rate scenarios' peak rates, iterations per second.
    pub fn total_peak_rate(&self) -> f64 {
        self.scenarios
            .iter()
            .filter_map(|s| s.executor.peak_rate())
            .sum()
    }

    /// One line for `loadgen validate`: scenarios, total target rate, duration, target.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.scenarios.iter().map(|s| s.name.as_str()).collect();
        let vus: u32 = self
            .scenarios
            .iter()
            .filter_map(|s| s.executor.peak_vus())
            .sum();
        let mut load = format!("target rate {} req/s", round2(self.total_peak_rate()));
        if vus > 0 {
            load.push_str(&format!(" + {vus} VUs"));
        }
        let target = match &self.target {
            TargetPlan::Embedded => "embedded echo-server".to_owned(),
            TargetPlan::Url(url) => url.base.to_string(),
        };
        format!(
            "{}: {} scenario{} ({}), {load}, duration {}, {} threshold{}, target {target}",
            self.name,
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            format_duration(self.duration()),
            self.thresholds.len(),
            if self.thresholds.len() == 1 { "" } else { "s" },
        )
    }

    /// Validates `spec` into a plan; `base_dir` resolves `bodyFile`s. Errors name the field
    /// but no file or line (see [`Plan::from_source`] for documents loaded from a file).
    pub fn from_spec(
        name: &str,
        spec: &LoadTestSpec,
        base_dir: &Path,
        overrides: &Overrides,
    ) -> Result<Plan, PlanError> {
        Checker {
            file: None,
            locate: None,
            base_dir,
        }
        .plan(name, spec, overrides)
    }

    /// Like [`Plan::from_spec`], with errors located in `file` through `locate`.
    pub fn from_source(
        name: &str,
        spec: &LoadTestSpec,
        file: &Path,
        locate: &dyn Locate,
        overrides: &Overrides,
    ) -> Result<Plan, PlanError> {
        let base_dir = file.parent().unwrap_or(Path::new("."));
        Checker {
            file: Some(file),
            locate: Some(locate),
            base_dir,
        }
        .plan(name, spec, overrides)
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound of open connections per scenario.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;
/// Default time granted to in-flight iterations after a scenario ends.
pub const DEFAULT_GRACEFUL_STOP: Duration = Duration::from_secs(30);
/// Default GA multiplier.
pub const DEFAULT_MULTIPLIER: f64 = 3.0;

/// Default `maxInFlight` of an arrival-rate scenario: room for 2 s responses at the peak
/// rate, at least 100 and at most 10 000.
pub fn default_max_in_flight(peak_rate: f64) -> NonZeroU32 {
    let n = (peak_rate * 2.0).ceil().clamp(100.0, 10_000.0) as u32;
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn executor_name(kind: ExecutorKind) -> &'static str {
    match kind {
        ExecutorKind::ConstantArrivalRate => "constant-arrival-rate",
        ExecutorKind::RampingArrivalRate => "ramping-arrival-rate",
        ExecutorKind::ConstantVus => "constant-vus",
        ExecutorKind::RampingVus => "ramping-vus",
    }
}

fn executor_fields(kind: ExecutorKind) -> &'static str {
    match kind {
        ExecutorKind::ConstantArrivalRate => "`rate` or `share`, and `duration`",
        ExecutorKind::RampingArrivalRate => {
            "`stages`, `startRate`, and optionally `rate` or `share`"
        }
        ExecutorKind::ConstantVus => "`vus` and `duration`",
        ExecutorKind::RampingVus => "`stages` and `vus` (VUs at the start)",
    }
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

struct Checker<'a> {
    file: Option<&'a Path>,
    locate: Option<&'a dyn Locate>,
    base_dir: &'a Path,
}

impl Checker<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> PlanError {
        let field = field.into();
        PlanError {
            file: self.file.map(Path::to_path_buf),
            position: self.locate.and_then(|l| l.locate(&field)),
            field: Some(field),
            message: message.into(),
        }
    }

    fn duration(&self, field: &str, text: &str) -> Result<Duration, PlanError> {
        parse_duration(text).map_err(|e| self.err(field, e.to_string()))
    }

    fn positive(&self, field: &str, value: f64, what: &str) -> Result<f64, PlanError> {
        if value.is_finite() && value > 0.0 {
            Ok(value)
        } else {
            Err(self.err(
                field,
                format!("must be a finite number > 0 ({what}), got {value}"),
            ))
        }
    }

    fn plan(
        &self,
        name: &str,
        spec: &LoadTestSpec,
        overrides: &Overrides,
    ) -> Result<Plan, PlanError> {
        if let Some(m) = overrides.multiplier
            && !(m.is_finite() && m > 0.0)
        {
            return Err(PlanError::flag(
                "--multiplier",
                format!("must be a finite number > 0, got {m}"),
            ));
        }
        if overrides.duration.is_some_and(|d| d.is_zero()) {
            return Err(PlanError::flag(
                "--duration",
                "must be longer than 0s, e.g. `10s`",
            ));
        }
        let (total_rate, multiplier) = match &spec.traffic {
            Some(traffic) => {
                let baseline = self.positive(
                    "spec.traffic.gaBaselineRps",
                    traffic.ga_baseline_rps,
                    "requests per second at GA",
                )?;
                let written = match traffic.multiplier {
                    Some(m) => self.positive(
                        "spec.traffic.multiplier",
                        m,
                        "a multiple of the GA baseline",
                    )?,
                    None => DEFAULT_MULTIPLIER,
                };
                let multiplier = overrides.multiplier.unwrap_or(written);
                (Some(baseline * multiplier), Some(multiplier))
            }
            None if overrides.multiplier.is_some() => {
                return Err(PlanError {
                    file: self.file.map(Path::to_path_buf),
                    ..PlanError::flag(
                        "--multiplier",
                        "the scenario has no `spec.traffic`, so no rate derives from a multiplier; add `traffic: {gaBaselineRps: N}` and `share`s, or drop the flag",
                    )
                });
            }
            None => (None, None),
        };

        let target = if overrides.embedded {
            TargetPlan::Embedded
        } else {
            match &spec.target {
                None => TargetPlan::Embedded,
                Some(t) => TargetPlan::Url(self.target(t)?),
            }
        };

        if spec.scenarios.is_empty() {
            return Err(self.err(
                "spec.scenarios",
                "needs at least one scenario, e.g. `[{name: api, executor: constant-arrival-rate, rate: 50, duration: 30s, requests: [{name: orders, path: /api/orders}]}]`",
            ));
        }
        let mut scenarios = Vec::with_capacity(spec.scenarios.len());
        let mut share_sum = 0.0;
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, sc) in spec.scenarios.iter().enumerate() {
            let path = format!("spec.scenarios[{i}]");
            self.name(&format!("{path}.name"), &sc.name, "scenario")?;
            if let Some(first) = names.insert(&sc.name, i) {
                return Err(self.err(
                    format!("{path}.name"),
                    format!(
                        "duplicate scenario name `{}` (spec.scenarios[{first}] has it too); scenario names must be unique",
                        sc.name
                    ),
                ));
            }
            if let Some(share) = sc.share {
                share_sum += share;
                if share_sum > 1.0 + 1e-9 {
                    return Err(self.err(
                        format!("{path}.share"),
                        format!(
                            "the shares add up to {} by this scenario; together they must be at most 1",
                            round2(share_sum)
                        ),
                    ));
                }
            }
            scenarios.push(self.scenario(&path, sc, total_rate, overrides)?);
        }

        let ctx = ThresholdContext {
            scenarios: scenarios.iter().map(|s| s.name.clone()).collect(),
            phases: scenarios
                .iter()
                .flat_map(|s| s.phases().into_iter().map(|p| p.name))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        let mut thresholds = Vec::new();
        // In the order written when the file is known (the spec's map is sorted by key).
        let mut keys: Vec<(&String, &Vec<ricochet_crds::ThresholdSpec>)> =
            spec.thresholds.iter().collect();
        if let Some(locate) = self.locate {
            keys.sort_by_key(|(key, _)| locate.locate(&format!("spec.thresholds.{key}")));
        }
        for (key, conditions) in keys {
            let path = format!("spec.thresholds.{key}");
            if conditions.is_empty() {
                return Err(self.err(
                    path,
                    "has no conditions, expected a list such as `[\"p(99)<800ms\"]`",
                ));
            }
            for (j, condition) in conditions.iter().enumerate() {
                let threshold = parse_threshold(key, condition, &ctx).map_err(|e| {
                    let detailed = matches!(condition, ricochet_crds::ThresholdSpec::Detailed(_));
                    let field = match (e.field, detailed) {
                        (ThresholdField::Key, _) => path.clone(),
                        (ThresholdField::Condition, false) => format!("{path}[{j}]"),
                        (ThresholdField::Condition, true) => format!("{path}[{j}].threshold"),
                        (ThresholdField::DelayAbortEval, _) => {
                            format!("{path}[{j}].delayAbortEval")
                        }
                        (ThresholdField::Window, _) => format!("{path}[{j}].window"),
                        (ThresholdField::Phase, _) => format!("{path}[{j}].phase"),
                    };
                    self.err(field, e.message)
                })?;
                thresholds.push(threshold);
            }
        }

        let embedded = target == TargetPlan::Embedded;
        let field = |e: FieldError| self.err(e.field, e.message);
        let telemetry = match &spec.telemetry {
            Some(t) => {
                let p = telemetry::telemetry_plan(t, self.base_dir).map_err(field)?;
                if p.uses_sink() && !embedded {
                    return Err(self.err(
                        "spec.telemetry",
                        "names no backend, and the embedded OTLP sink only hears the embedded echo-server: add `traces: {tempo: {url: ...}}`, `logs: {loki: {...}}` and/or `metrics: {prometheus: {...}}`, or remove `spec.target`",
                    ));
                }
                Some(p)
            }
            None if embedded => Some(telemetry::embedded_default()),
            None => None,
        };
        if telemetry.is_none()
            && let Some(th) = thresholds.iter().find(|t| t.metric.is_telemetry())
        {
            return Err(self.err(
                format!("spec.thresholds.{}", th.key),
                format!(
                    "`{}` needs telemetry verification: add `spec.telemetry` with the backends to ask",
                    th.metric
                ),
            ));
        }
        let chaos = ChaosPlan::from_spec(
            &spec.chaos,
            spec.target.as_ref().and_then(|t| t.admin.as_ref()),
            embedded,
            self.base_dir,
        )
        .map_err(field)?;

        Ok(Plan {
            name: name.to_owned(),
            source: self.file.map(Path::to_path_buf),
            target,
            multiplier,
            scenarios,
            thresholds,
            telemetry,
            chaos,
        })
    }

    fn name(&self, field: &str, name: &str, what: &str) -> Result<(), PlanError> {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(())
        } else {
            Err(self.err(
                field,
                format!(
                    "`{name}` is not a valid {what} name, expected letters, digits, `-`, `_` or `.`, e.g. `api`"
                ),
            ))
        }
    }

    fn target(&self, t: &ricochet_crds::Target) -> Result<TargetUrl, PlanError> {
        let bad_url = || {
            self.err(
                "spec.target.url",
                format!(
                    "`{}` is not a usable target URL, expected `http://HOST[:PORT][/PREFIX]`, e.g. `http://echo-server.observability.svc:8080` (omit `target` for the embedded echo-server)",
                    t.url
                ),
            )
        };
        let base: http::Uri = t.url.parse().map_err(|_| bad_url())?;
        if base.scheme_str() != Some("http") || base.authority().is_none() || base.query().is_some()
        {
            return Err(bad_url());
        }
        let max_connections = match t.max_connections {
            None => NonZeroU32::new(DEFAULT_MAX_CONNECTIONS).unwrap_or(NonZeroU32::MIN),
            Some(n) => NonZeroU32::new(n).ok_or_else(|| {
                self.err("spec.target.maxConnections", "must be at least 1, got 0")
            })?,
        };
        let timeout = match &t.timeout {
            None => DEFAULT_TIMEOUT,
            Some(text) => {
                let d = self.duration("spec.target.timeout", text)?;
                if d.is_zero() {
                    return Err(
                        self.err("spec.target.timeout", "must be longer than 0s, e.g. `30s`")
                    );
                }
                d
            }
        };
        Ok(TargetUrl {
            base,
            http2: t.http2,
            max_connections,
            timeout,
        })
    }

    fn scenario(
        &self,
        path: &str,
        sc: &ScenarioSpec,
        total_rate: Option<f64>,
        overrides: &Overrides,
    ) -> Result<ScenarioPlan, PlanError> {
        use ExecutorKind as K;
        let kind = sc.executor;
        let present = [
            (
                "share",
                sc.share.is_some(),
                matches!(kind, K::ConstantArrivalRate | K::RampingArrivalRate),
            ),
            (
                "rate",
                sc.rate.is_some(),
                matches!(kind, K::ConstantArrivalRate | K::RampingArrivalRate),
            ),
            (
                "startRate",
                sc.start_rate.is_some(),
                matches!(kind, K::RampingArrivalRate),
            ),
            (
                "vus",
                sc.vus.is_some(),
                matches!(kind, K::ConstantVus | K::RampingVus),
            ),
            (
                "stages",
                !sc.stages.is_empty(),
                matches!(kind, K::RampingArrivalRate | K::RampingVus),
            ),
            (
                "duration",
                sc.duration.is_some(),
                matches!(kind, K::ConstantArrivalRate | K::ConstantVus),
            ),
        ];
        for (field, is_present, allowed) in present {
            if is_present && !allowed {
                return Err(self.err(
                    format!("{path}.{field}"),
                    format!(
                        "`{field}` does not apply to executor `{}`, whose fields are {}",
                        executor_name(kind),
                        executor_fields(kind)
                    ),
                ));
            }
        }

        // The scenario's own rate, from `rate` or `share`.
        let base_rate = match (sc.rate, sc.share) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    format!("{path}.share"),
                    "set either `rate` (iterations per second) or `share` (a fraction of the traffic), not both",
                ));
            }
            (Some(rate), None) => {
                Some(self.positive(&format!("{path}.rate"), rate, "iterations per second")?)
            }
            (None, Some(share)) => {
                let field = format!("{path}.share");
                if !(share.is_finite() && share > 0.0 && share <= 1.0) {
                    return Err(self.err(
                        field,
                        format!("must be a fraction > 0 and <= 1 of the total rate, got {share}"),
                    ));
                }
                let total = total_rate.ok_or_else(|| {
                    self.err(
                        &field,
                        "a `share` needs `spec.traffic.gaBaselineRps` to take a share of; add `traffic: {gaBaselineRps: N}` or give an absolute `rate`",
                    )
                })?;
                Some(share * total)
            }
            (None, None) => None,
        };

        let scale = |d: Duration, factor: f64| Duration::from_secs_f64(d.as_secs_f64() * factor);
        let mut start_time = match &sc.start_time {
            Some(text) => self.duration(&format!("{path}.startTime"), text)?,
            None => Duration::ZERO,
        };
        let mut factor = 1.0;

        let executor = match kind {
            K::ConstantArrivalRate | K::ConstantVus => {
                let field = format!("{path}.duration");
                let text = sc.duration.as_deref().ok_or_else(|| {
                    self.err(
                        path,
                        format!(
                            "executor `{}` needs a `duration`, e.g. `duration: 5m`",
                            executor_name(kind)
                        ),
                    )
                })?;
                let mut duration = self.duration(&field, text)?;
                if duration.is_zero() {
                    return Err(self.err(field, "must be longer than 0s, e.g. `5m`"));
                }
                if let Some(d) = overrides.duration {
                    factor = d.as_secs_f64() / duration.as_secs_f64();
                    duration = d;
                }
                if kind == K::ConstantArrivalRate {
                    let rate = base_rate.ok_or_else(|| {
                        self.err(
                            path,
                            "executor `constant-arrival-rate` needs `rate` (iterations per second) or `share` (a fraction of `traffic.gaBaselineRps` x multiplier)",
                        )
                    })?;
                    Executor::ConstantArrivalRate { rate, duration }
                } else {
                    let vus = sc.vus.and_then(NonZeroU32::new).ok_or_else(|| {
                        self.err(
                            format!("{path}.vus"),
                            "executor `constant-vus` needs `vus` of at least 1, e.g. `vus: 10`",
                        )
                    })?;
                    Executor::ConstantVus { vus, duration }
                }
            }
            K::RampingArrivalRate | K::RampingVus => {
                let vus = kind == K::RampingVus;
                let mut stages = self.stages(path, sc, kind)?;
                let total: Duration = stages.iter().map(|s| s.duration).sum();
                if let Some(d) = overrides.duration {
                    factor = d.as_secs_f64() / total.as_secs_f64();
                    for stage in &mut stages {
                        stage.duration = scale(stage.duration, factor);
                    }
                }
                if vus {
                    let start_vus = sc.vus.unwrap_or(0);
                    if stages.iter().all(|s| s.target == 0.0) && start_vus == 0 {
                        return Err(self.err(
                            format!("{path}.stages"),
                            "never has a VU: every stage `target` is 0 and `vus` is 0",
                        ));
                    }
                    Executor::RampingVus { start_vus, stages }
                } else {
                    let mut start_rate = match sc.start_rate {
                        None => 0.0,
                        Some(r) if r.is_finite() && r >= 0.0 => r,
                        Some(r) => {
                            return Err(self.err(
                                format!("{path}.startRate"),
                                format!("must be a finite number >= 0, got {r}"),
                            ));
                        }
                    };
                    if let Some(rate) = base_rate {
                        start_rate *= rate;
                        for stage in &mut stages {
                            stage.target *= rate;
                        }
                    }
                    if stages.iter().all(|s| s.target == 0.0) && start_rate == 0.0 {
                        return Err(self.err(
                            format!("{path}.stages"),
                            "never has a rate above 0: every stage `target` is 0 and `startRate` is 0",
                        ));
                    }
                    Executor::RampingArrivalRate { start_rate, stages }
                }
            }
        };
        if overrides.duration.is_some() {
            start_time = scale(start_time, factor);
        }

        let graceful_stop = match &sc.graceful_stop {
            Some(text) => self.duration(&format!("{path}.gracefulStop"), text)?,
            None => DEFAULT_GRACEFUL_STOP,
        };
        let max_in_flight = match sc.max_in_flight {
            Some(n) => NonZeroU32::new(n).ok_or_else(|| {
                self.err(format!("{path}.maxInFlight"), "must be at least 1, got 0")
            })?,
            None => match (executor.peak_rate(), executor.peak_vus()) {
                (Some(rate), _) => default_max_in_flight(rate),
                (None, Some(vus)) => NonZeroU32::new(vus).unwrap_or(NonZeroU32::MIN),
                (None, None) => NonZeroU32::MIN,
            },
        };
        for tag in sc.tags.keys() {
            if tag.is_empty() || matches!(tag.as_str(), "scenario" | "name" | "method" | "status") {
                return Err(self.err(
                    format!("{path}.tags.{tag}"),
                    format!(
                        "the tag `{tag}` is set by loadgen; choose another name (`scenario`, `name`, `method` and `status` are reserved)"
                    ),
                ));
            }
        }
        if sc.requests.is_empty() {
            return Err(self.err(
                format!("{path}.requests"),
                "needs at least one request, e.g. `[{name: orders, method: GET, path: /api/orders}]`",
            ));
        }
        let mut requests = Vec::with_capacity(sc.requests.len());
        let mut request_names = BTreeSet::new();
        for (j, r) in sc.requests.iter().enumerate() {
            let rpath = format!("{path}.requests[{j}]");
            if !request_names.insert(r.name.as_str()) {
                return Err(self.err(
                    format!("{rpath}.name"),
                    format!(
                        "duplicate request name `{}` in scenario `{}`; request names must be unique within a scenario",
                        r.name, sc.name
                    ),
                ));
            }
            requests.push(self.request(&rpath, r)?);
        }

        Ok(ScenarioPlan {
            name: sc.name.clone(),
            executor,
            start_time,
            graceful_stop,
            max_in_flight,
            tags: sc.tags.clone(),
            requests,
        })
    }

    fn stages(
        &self,
        path: &str,
        sc: &ScenarioSpec,
        kind: ExecutorKind,
    ) -> Result<Vec<StagePlan>, PlanError> {
        if sc.stages.is_empty() {
            return Err(self.err(
                path,
                format!(
                    "executor `{}` needs `stages`, e.g. `stages: [{{target: 100, duration: 30s, name: ramp-up}}, {{target: 100, duration: 5m, name: steady}}]`",
                    executor_name(kind)
                ),
            ));
        }
        let mut stages = Vec::with_capacity(sc.stages.len());
        for (k, stage) in sc.stages.iter().enumerate() {
            let spath = format!("{path}.stages[{k}]");
            let target = stage.target;
            if !(target.is_finite() && target >= 0.0) {
                return Err(self.err(
                    format!("{spath}.target"),
                    format!("must be a finite number >= 0, got {target}"),
                ));
            }
            if kind == ExecutorKind::RampingVus && target.fract() != 0.0 {
                return Err(self.err(
                    format!("{spath}.target"),
                    format!("is a number of VUs and must be a whole number, got {target}"),
                ));
            }
            let duration = self.duration(&format!("{spath}.duration"), &stage.duration)?;
            if let Some(name) = &stage.name {
                self.name(&format!("{spath}.name"), name, "stage")?;
            }
            stages.push(StagePlan {
                target,
                duration,
                name: stage.name.clone(),
            });
        }
        if stages.iter().all(|s| s.duration.is_zero()) {
            return Err(self.err(
                format!("{path}.stages"),
                "last 0s in total; give at least one stage a `duration` longer than 0s",
            ));
        }
        Ok(stages)
    }

    fn request(&self, path: &str, r: &RequestSpec) -> Result<RequestPlan, PlanError> {
        if r.name.is_empty() {
            return Err(self.err(format!("{path}.name"), "must not be empty, e.g. `orders`"));
        }
        let method = match r.method.as_deref() {
            None => http::Method::GET,
            Some(m) if METHODS.contains(&m) => http::Method::from_bytes(m.as_bytes())
                .map_err(|_| self.err(format!("{path}.method"), "is not a method"))?,
            Some(m) => {
                return Err(self.err(
                    format!("{path}.method"),
                    format!(
                        "unknown HTTP method `{m}`, expected one of {}",
                        METHODS
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        };
        if !r.path.starts_with('/') || r.path.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(self.err(
                format!("{path}.path"),
                format!(
                    "`{}` is not a request path, expected a path starting with `/`, e.g. `/api/orders?delay=10ms`",
                    r.path
                ),
            ));
        }
        let mut headers = http::HeaderMap::new();
        for (name, value) in &r.headers {
            let field = format!("{path}.headers.{name}");
            let header_name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                self.err(
                    &field,
                    format!("`{name}` is not a valid header name, expected letters, digits and `-`, e.g. `x-tenant-id`"),
                )
            })?;
            let header_value = http::HeaderValue::from_str(value).map_err(|_| {
                self.err(
                    &field,
                    "is not a valid header value: visible ASCII characters and spaces only",
                )
            })?;
            headers.append(header_name, header_value);
        }
        let body = match (&r.body, &r.body_file) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    format!("{path}.bodyFile"),
                    "set either `body` or `bodyFile`, not both",
                ));
            }
            (Some(body), None) => Bytes::from(body.clone()),
            (None, Some(file)) => {
                let resolved = self.base_dir.join(file);
                let contents = std::fs::read(&resolved).map_err(|e| {
                    self.err(
                        format!("{path}.bodyFile"),
                        format!(
                            "cannot read `{file}` (resolved to `{}`): {e}; paths are relative to the scenario file",
                            resolved.display()
                        ),
                    )
                })?;
                Bytes::from(contents)
            }
            (None, None) => Bytes::new(),
        };
        let weight = match r.weight {
            None => NonZeroU32::MIN,
            Some(w) => NonZeroU32::new(w).ok_or_else(|| {
                self.err(
                    format!("{path}.weight"),
                    "must be at least 1 (a relative weight), got 0; remove the request to not send it",
                )
            })?,
        };
        Ok(RequestPlan {
            name: r.name.clone(),
            method,
            path_and_query: r.path.clone(),
            headers,
            body,
            weight,
            stream: r.stream,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::load::Document;

    const BASE: &str = "\
apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: t}
spec:
  traffic: {gaBaselineRps: 100}
  scenarios:
    - name: api
      executor: constant-arrival-rate
      share: 0.5
      duration: 10s
      requests:
        - {name: a, path: /x}
";

    fn plan_of(yaml: &str, overrides: &Overrides) -> Result<Plan, PlanError> {
        Document::parse(Path::new("x.yaml"), yaml)?.plan(overrides)
    }

    fn error_of(yaml: &str) -> String {
        match plan_of(yaml, &Overrides::default()) {
            Ok(plan) => panic!("expected an error, got a plan: {plan:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn with(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "{from}");
        BASE.replacen(from, to, 1)
    }

    #[test]
    fn the_base_document_is_valid_and_shares_the_tripled_baseline() {
        let plan = plan_of(BASE, &Overrides::default()).unwrap();
        assert_eq!(plan.name, "t");
        assert_eq!(plan.target, TargetPlan::Embedded);
        assert_eq!(plan.multiplier, Some(3.0));
        let s = &plan.scenarios[0];
        assert_eq!(
            s.executor,
            Executor::ConstantArrivalRate {
                rate: 150.0,
                duration: Duration::from_secs(10)
            }
        );
        assert_eq!(s.graceful_stop, DEFAULT_GRACEFUL_STOP);
        assert_eq!(s.max_in_flight.get(), 300);
        assert_eq!(s.requests[0].method, http::Method::GET);
        assert_eq!(s.requests[0].weight.get(), 1);
        assert_eq!(plan.duration(), Duration::from_secs(10));
    }

    #[test]
    fn each_user_error_is_one_located_sentence() {
        let cases: Vec<(String, &str)> = vec![
            (
                with("share: 0.5", "sahre: 0.5"),
                "x.yaml:9:7: spec.scenarios[0]: unknown field `sahre`, expected one of `name`, `executor`, `share`, `rate`, `startRate`, `vus`, `stages`, `duration`, `startTime`, `gracefulStop`, `maxInFlight`, `tags`, `requests`",
            ),
            (
                with("share: 0.5", "share: -0.5"),
                "x.yaml:9:7: spec.scenarios[0].share: must be a fraction > 0 and <= 1 of the total rate, got -0.5",
            ),
            (
                with("share: 0.5", "rate: -5"),
                "x.yaml:9:7: spec.scenarios[0].rate: must be a finite number > 0 (iterations per second), got -5",
            ),
            (
                with("share: 0.5", "rate: .nan"),
                "x.yaml:9:7: spec.scenarios[0].rate: must be a finite number > 0 (iterations per second), got NaN",
            ),
            (
                with("  traffic: {gaBaselineRps: 100}\n", ""),
                "x.yaml:8:7: spec.scenarios[0].share: a `share` needs `spec.traffic.gaBaselineRps` to take a share of; add `traffic: {gaBaselineRps: N}` or give an absolute `rate`",
            ),
            (
                with("share: 0.5", "share: 0.5\n      vus: 10"),
                "x.yaml:10:7: spec.scenarios[0].vus: `vus` does not apply to executor `constant-arrival-rate`, whose fields are `rate` or `share`, and `duration`",
            ),
            (
                with("      duration: 10s\n", ""),
                "x.yaml:7:7: spec.scenarios[0]: executor `constant-arrival-rate` needs a `duration`, e.g. `duration: 5m`",
            ),
            (
                with("duration: 10s", "duration: 5 minutes"),
                "x.yaml:10:7: spec.scenarios[0].duration: `5 minutes` is not a duration; expected a number and a unit (`us`, `ms`, `s`, `m` or `h`), e.g. `30s`, `1m30s` or `500ms`",
            ),
            (
                with(
                    "executor: constant-arrival-rate\n      share: 0.5\n      duration: 10s",
                    "executor: ramping-arrival-rate\n      share: 0.5",
                ),
                "x.yaml:7:7: spec.scenarios[0]: executor `ramping-arrival-rate` needs `stages`, e.g. `stages: [{target: 100, duration: 30s, name: ramp-up}, {target: 100, duration: 5m, name: steady}]`",
            ),
            (
                with(
                    "executor: constant-arrival-rate",
                    "executor: constant-arival-rate",
                ),
                "x.yaml:8:17: spec.scenarios[0].executor: unknown value `constant-arival-rate`, expected one of `constant-arrival-rate`, `ramping-arrival-rate`, `constant-vus`, `ramping-vus`",
            ),
            (
                with(
                    "        - {name: a, path: /x}\n",
                    "        - {name: a, path: /x}\n    - name: api\n      executor: constant-arrival-rate\n      share: 0.1\n      duration: 1s\n      requests: [{name: a, path: /x}]\n",
                ),
                "x.yaml:13:7: spec.scenarios[1].name: duplicate scenario name `api` (spec.scenarios[0] has it too); scenario names must be unique",
            ),
            (
                with(
                    "        - {name: a, path: /x}\n",
                    "        - {name: a, path: /x}\n    - name: chat\n      executor: constant-arrival-rate\n      share: 0.6\n      duration: 1s\n      requests: [{name: a, path: /x}]\n",
                ),
                "x.yaml:15:7: spec.scenarios[1].share: the shares add up to 1.1 by this scenario; together they must be at most 1",
            ),
            (
                with(
                    "      requests:\n        - {name: a, path: /x}\n",
                    "      requests: []\n",
                ),
                "x.yaml:11:7: spec.scenarios[0].requests: needs at least one request, e.g. `[{name: orders, method: GET, path: /api/orders}]`",
            ),
            (
                with("{name: a, path: /x}", "{name: a, method: FETCH, path: /x}"),
                "x.yaml:12:21: spec.scenarios[0].requests[0].method: unknown HTTP method `FETCH`, expected one of `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE`, `OPTIONS`",
            ),
            (
                with("path: /x", "path: api/orders"),
                "x.yaml:12:21: spec.scenarios[0].requests[0].path: `api/orders` is not a request path, expected a path starting with `/`, e.g. `/api/orders?delay=10ms`",
            ),
            (
                with("path: /x", "path: /x, bodyFile: missing.json"),
                "x.yaml:12:31: spec.scenarios[0].requests[0].bodyFile: cannot read `missing.json` (resolved to `missing.json`): No such file or directory (os error 2); paths are relative to the scenario file",
            ),
            (
                with("path: /x", "path: /x, weight: 0"),
                "x.yaml:12:31: spec.scenarios[0].requests[0].weight: must be at least 1 (a relative weight), got 0; remove the request to not send it",
            ),
            (
                with("path: /x", "path: /x, headers: {\"x tenant\": a}"),
                "x.yaml:12:41: spec.scenarios[0].requests[0].headers.x tenant: `x tenant` is not a valid header name, expected letters, digits and `-`, e.g. `x-tenant-id`",
            ),
            (
                with("path: /x", "path: /x, weight: -1"),
                "x.yaml:12:39: spec.scenarios[0].requests[0].weight: `-1` is not valid here, expected a whole number >= 0",
            ),
            (
                with("share: 0.5", "share: [0.5"),
                "x.yaml:10:15: YAML syntax error: illegal placement of ':' indicator",
            ),
            (
                with(
                    "apiVersion: ricochet.dev/v1alpha1",
                    "apiVersion: k6.io/v1alpha1",
                ),
                "x.yaml:1:1: apiVersion: `k6.io/v1alpha1` is not supported, expected `ricochet.dev/v1alpha1`",
            ),
            (
                with("kind: LoadTest", "kind: TestRun"),
                "x.yaml:2:1: kind: `TestRun` is not supported, expected `LoadTest`",
            ),
            (
                with(
                    "  traffic: {gaBaselineRps: 100}",
                    "  traffic: {gaBaselineRps: 0}",
                ),
                "x.yaml:5:13: spec.traffic.gaBaselineRps: must be a finite number > 0 (requests per second at GA), got 0",
            ),
            (
                with(
                    "  traffic: {gaBaselineRps: 100}",
                    "  target: {url: \"https://x:1\"}\n  traffic: {gaBaselineRps: 100}",
                ),
                "x.yaml:5:12: spec.target.url: `https://x:1` is not a usable target URL, expected `http://HOST[:PORT][/PREFIX]`, e.g. `http://echo-server.observability.svc:8080` (omit `target` for the embedded echo-server)",
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(yaml, want)| error_of(yaml) != *want)
            .map(|(yaml, want)| format!("for:\n{yaml}\n want: {want}\n  got: {}", error_of(yaml)))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    }

    #[test]
    fn threshold_errors_point_at_the_key_or_the_condition() {
        let doc = |thresholds: &str| format!("{BASE}  thresholds:\n{thresholds}");
        let cases = [
            (
                "    http_req_duraton: [\"p(99)<800ms\"]\n",
                "x.yaml:14:5: spec.thresholds.http_req_duraton: unknown metric `http_req_duraton`, expected one of `http_reqs`, `http_req_duration`, `http_req_waiting`, `http_req_service_duration`, `http_req_schedule_lag`, `http_req_blocked`, `http_stream_duration`, `http_req_failed`, `iterations`, `dropped_iterations`, `interrupted_iterations`, `data_sent`, `data_received`, `telemetry_trace_missing`, `telemetry_log_missing`, `telemetry_metric_missing`, `telemetry_trace_incomplete`, `telemetry_trace_unknown`, `telemetry_log_unknown`, `telemetry_metric_unknown`, `telemetry_trace_ingest_latency`, `telemetry_log_ingest_latency`, `telemetry_metric_ingest_latency`, `telemetry_trace_query_duration`, `telemetry_log_query_duration`, `telemetry_metric_query_duration`",
            ),
            (
                "    http_req_duration: [\"p(99)<800ms\", \"p(95)<2 seconds\"]\n",
                "x.yaml:14:40: spec.thresholds.http_req_duration[1]: unknown unit `seconds` in `p(95)<2 seconds`, expected `us`, `ms`, `s` or `m` (no unit means `ms`)",
            ),
            (
                "    http_req_duration{scenario:nope}: [\"p(99)<800ms\"]\n",
                "x.yaml:14:5: spec.thresholds.http_req_duration{scenario:nope}: no scenario is named `nope`, expected one of `api`",
            ),
            (
                "    http_req_failed:\n      - {threshold: \"rate<0.01\", phase: steady}\n",
                "x.yaml:15:34: spec.thresholds.http_req_failed[0].phase: no stage is named `steady`, expected one of the stage names: none",
            ),
            (
                "    http_req_failed:\n      - {threshold: \"rate<0.01\", abortOnFial: true}\n",
                "x.yaml:15:34: spec.thresholds.http_req_failed[0]: unknown field `abortOnFial`, expected one of `threshold`, `abortOnFail`, `delayAbortEval`, `window`, `phase`",
            ),
            (
                "    http_req_failed: []\n",
                "x.yaml:14:5: spec.thresholds.http_req_failed: has no conditions, expected a list such as `[\"p(99)<800ms\"]`",
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(t, want)| error_of(&doc(t)) != *want)
            .map(|(t, want)| format!("for:\n{t}\n want: {want}\n  got: {}", error_of(&doc(t))))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    }

    #[test]
    fn thresholds_keep_the_order_they_were_written_in() {
        let yaml = format!(
            "{BASE}  thresholds:\n    http_reqs: [count>1]\n    http_req_failed: [rate<0.1]\n    data_sent: [count>0]\n"
        );
        let plan = plan_of(&yaml, &Overrides::default()).unwrap();
        let keys: Vec<&str> = plan.thresholds.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["http_reqs", "http_req_failed", "data_sent"]);
    }

    #[test]
    fn document_level_mistakes_are_plain_sentences() {
        let cases = [
            (
                "",
                "x.yaml:1:1: the file is empty, expected a LoadTest document (`apiVersion`, `kind`, `metadata`, `spec`)",
            ),
            (
                "kind: LoadTest\nkind: LoadTest\n",
                "x.yaml:2:1: `kind` is written twice; each field may appear once",
            ),
            (
                "- a\n",
                "x.yaml:1:1: expected a mapping of fields (`key: value` lines or `{key: value}`)",
            ),
            (
                "apiVersion: ricochet.dev/v1alpha1\nkind: LoadTest\n",
                "x.yaml:2:1: missing field `spec`",
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(error_of(yaml), want, "for:\n{yaml}");
        }
        let two = format!("{BASE}---\n{BASE}");
        assert_eq!(
            error_of(&two),
            "x.yaml:14:1: the file holds more than one YAML document (`---`); a scenario file holds one LoadTest"
        );
    }

    #[test]
    fn flag_overrides_are_checked_and_applied() {
        let multiplied = Overrides {
            multiplier: Some(1.0),
            ..Overrides::default()
        };
        let plan = plan_of(BASE, &multiplied).unwrap();
        assert_eq!(plan.scenarios[0].executor.peak_rate(), Some(50.0));

        let zero = Overrides {
            multiplier: Some(0.0),
            ..Overrides::default()
        };
        assert_eq!(
            plan_of(BASE, &zero).unwrap_err().to_string(),
            "--multiplier: must be a finite number > 0, got 0"
        );
        let absolute =
            with("  traffic: {gaBaselineRps: 100}\n", "").replace("share: 0.5", "rate: 10");
        assert_eq!(
            plan_of(&absolute, &multiplied).unwrap_err().to_string(),
            "x.yaml: --multiplier: the scenario has no `spec.traffic`, so no rate derives from a multiplier; add `traffic: {gaBaselineRps: N}` and `share`s, or drop the flag"
        );

        let target = with(
            "  traffic:",
            "  target: {url: \"http://svc:8080\"}\n  traffic:",
        );
        let plan = plan_of(&target, &Overrides::default()).unwrap();
        let TargetPlan::Url(url) = &plan.target else {
            panic!("expected a URL target")
        };
        assert_eq!(url.timeout, DEFAULT_TIMEOUT);
        assert_eq!(url.max_connections.get(), DEFAULT_MAX_CONNECTIONS);
        let embedded = Overrides {
            embedded: true,
            ..Overrides::default()
        };
        assert_eq!(
            plan_of(&target, &embedded).unwrap().target,
            TargetPlan::Embedded
        );
    }

    const RAMP: &str = "\
apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: ramp}
spec:
  traffic: {gaBaselineRps: 100, multiplier: 2}
  scenarios:
    - name: api
      executor: ramping-arrival-rate
      share: 0.5
      startTime: 10s
      stages:
        - {name: ramp-up, target: 1, duration: 20s}
        - {name: steady, target: 1, duration: 30s}
        - {name: steady, target: 1, duration: 30s}
        - {target: 0, duration: 20s}
      requests: [{name: a, path: /x}]
  thresholds:
    http_req_duration: [{threshold: \"p(99)<800ms\", phase: steady}]
";

    #[test]
    fn ramping_stages_with_a_share_are_fractions_and_give_named_phases() {
        let plan = plan_of(RAMP, &Overrides::default()).unwrap();
        let s = &plan.scenarios[0];
        assert_eq!(s.executor.peak_rate(), Some(100.0));
        assert_eq!(s.executor.stages()[0].target, 100.0);
        assert_eq!(s.end(), Duration::from_secs(110));
        assert_eq!(plan.duration(), Duration::from_secs(110));
        assert_eq!(plan.max_duration(), Duration::from_secs(140));
        let secs = Duration::from_secs;
        assert_eq!(
            s.phases(),
            vec![
                Phase {
                    name: "ramp-up".into(),
                    start: secs(10),
                    end: secs(30)
                },
                Phase {
                    name: "steady".into(),
                    start: secs(30),
                    end: secs(90)
                },
            ]
        );
        assert_eq!(
            plan.thresholds[0].scope,
            crate::thresholds::Scope::Phase("steady".into())
        );
    }

    #[test]
    fn a_duration_override_scales_stages_and_start_time_proportionally() {
        let quick = Overrides {
            duration: Some(Duration::from_secs(10)),
            ..Overrides::default()
        };
        let plan = plan_of(RAMP, &quick).unwrap();
        let s = &plan.scenarios[0];
        assert_eq!(s.duration(), Duration::from_secs(10));
        assert_eq!(s.start_time, Duration::from_secs(1));
        assert_eq!(s.executor.stages()[0].duration, Duration::from_secs(2));
        assert_eq!(
            s.phases()[1].end - s.phases()[1].start,
            Duration::from_secs(6)
        );

        let plan = plan_of(BASE, &quick).unwrap();
        assert_eq!(plan.scenarios[0].duration(), Duration::from_secs(10));
    }

    #[test]
    fn vu_executors_take_vus_and_bound_in_flight_by_them() {
        let yaml = BASE
            .replace("constant-arrival-rate", "constant-vus")
            .replace("share: 0.5", "vus: 7");
        let plan = plan_of(&yaml, &Overrides::default()).unwrap();
        assert_eq!(plan.scenarios[0].max_in_flight.get(), 7);
        let yaml = BASE.replace("constant-arrival-rate", "constant-vus");
        assert_eq!(
            error_of(&yaml),
            "x.yaml:9:7: spec.scenarios[0].share: `share` does not apply to executor `constant-vus`, whose fields are `vus` and `duration`"
        );
    }

    #[test]
    fn every_file_under_scenarios_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let plan = crate::load::load_plan(&path, &Overrides::default());
                assert!(plan.is_ok(), "{}", plan.unwrap_err());
                seen += 1;
            }
        }
        assert!(
            seen >= 2,
            "found {seen} scenario files in {}",
            dir.display()
        );
    }
}
