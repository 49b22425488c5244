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
//!
//! Limits (each refused with the limit named): a runner's peak arrival rate
//! [`MAX_RATE_PER_PROCESS`], its VUs [`MAX_VUS_PER_PROCESS`], a scenario's `maxInFlight`
//! and `maxConnections` [`MAX_IN_FLIGHT_PER_PROCESS`] (a plan with `parallelism` is judged
//! per runner, up to [`MAX_RUNNERS`]); rates at least [`MIN_RATE`]; every duration at most
//! [`MAX_DURATION`]; a `bodyFile` a regular file of at most [`MAX_BODY_BYTES`] in the
//! scenario file's folder (see [`BodyFiles`]); no userinfo in URLs and ports 1 to 65535;
//! no framing, connection or trace headers ([`RESERVED_HEADERS`]) in `headers`.

pub mod chaos;
pub mod output;
pub mod platform;
pub mod telemetry;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::num::NonZeroU32;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use ricochet_crds::{ExecutorKind, LoadTestSpec, Parallelism, RequestSpec, ScenarioSpec};

use ricochet_verify::plan::{SamplePolicy, TelemetryPlan};

use self::chaos::ChaosPlan;
use self::platform::PlatformPlan;
use crate::Exit;
use crate::duration::{format_duration, parse_duration};
use crate::thresholds::{Scope, Threshold, ThresholdContext, ThresholdField, parse_threshold};

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
    /// Query checks and alert drills.
    pub platform: PlatformPlan,
    /// Live outputs of loadgen's own metrics.
    pub output: Option<output::OutputPlan>,
    /// Where the embedded echo-server listens (`--embedded-listen`); `None`: an ephemeral
    /// loopback port.
    pub embedded_listen: Option<std::net::SocketAddr>,
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
    /// Where the replicas' run accounting is read (`spec.target.replicas`): base URLs
    /// whose hosts resolve to the replicas; empty for the target itself.
    pub replicas: Vec<http::Uri>,
    /// `https://` targets: CA file, client certificate, verification opt-out.
    pub tls: Box<crate::tls::TlsPlan>,
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
    /// The embedded echo-server listens here (`--embedded-listen`, loopback only), e.g. so
    /// that a local Prometheus can scrape it.
    pub embedded_listen: Option<std::net::SocketAddr>,
    /// Live outputs from the command line (`--output prometheus-rw=URL`, `--output
    /// otlp=URL`), added to `spec.output` (replacing an output of the same kind).
    pub outputs: Vec<String>,
}

/// How `bodyFile`s are treated while a plan is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFiles<'a> {
    /// Read each one, relative to `base_dir` (the scenario file's folder). Unless
    /// `allow_outside` (`--allow-body-files-outside`), a path that is absolute or leads
    /// out of `base_dir` (through `..` or a symbolic link) is refused.
    Read {
        /// The folder relative paths start from.
        base_dir: &'a Path,
        /// Read any path the document names.
        allow_outside: bool,
    },
    /// Check each path's shape (relative, no `..`) but read no file: bodies from files stay
    /// empty, and secret and CA file paths stay as written. For a process whose file
    /// system is not the runners' (the operator).
    Deferred,
}

impl<'a> From<&'a Path> for BodyFiles<'a> {
    /// Read body files under `base_dir`, none outside it.
    fn from(base_dir: &'a Path) -> Self {
        BodyFiles::Read {
            base_dir,
            allow_outside: false,
        }
    }
}

impl<'a> From<&'a PathBuf> for BodyFiles<'a> {
    /// Read body files under `base_dir`, none outside it.
    fn from(base_dir: &'a PathBuf) -> Self {
        base_dir.as_path().into()
    }
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
        // A fold from +0, not `sum()`, whose empty sum is -0.
        self.scenarios
            .iter()
            .filter_map(|s| s.executor.peak_rate())
            .fold(0.0, |total, rate| total + rate)
    }

    /// One line for `loadgen validate`: scenarios, total target rate, duration, target.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.scenarios.iter().map(|s| s.name.as_str()).collect();
        let vus: u64 = self
            .scenarios
            .iter()
            .filter_map(|s| s.executor.peak_vus())
            .map(u64::from)
            .sum();
        let rated = self
            .scenarios
            .iter()
            .any(|s| s.executor.peak_rate().is_some());
        let rate = format!("target rate {} req/s", round2(self.total_peak_rate()));
        let load = match (rated, vus) {
            (true, 0) => rate,
            (true, _) => format!("{rate} + {vus} VUs"),
            (false, _) => format!("{vus} VUs"),
        };
        let target = match &self.target {
            TargetPlan::Embedded => "embedded echo-server".to_owned(),
            TargetPlan::Url(url) => url.base.to_string(),
        };
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let mut platform = String::new();
        if !self.platform.queries.is_empty() {
            platform.push_str(&format!(
                ", {}",
                plural(self.platform.queries.len(), "query check")
            ));
        }
        if let Some(a) = &self.platform.alerts {
            platform.push_str(&format!(
                ", {} drilled",
                plural(a.expect.len() + a.silent.len(), "alert")
            ));
        }
        format!(
            "{}: {} scenario{} ({}), {load}, duration {}, {} threshold{}{platform}, target {target}",
            self.name,
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            format_duration(self.duration()),
            self.thresholds.len(),
            if self.thresholds.len() == 1 { "" } else { "s" },
        )
    }

    /// Refuses to run the whole plan in one process when its load is meant to be split
    /// over runners (`parallelism`) and is more than one process drives.
    pub fn check_one_process(&self) -> Result<(), PlanError> {
        let rate = self.total_peak_rate();
        if rate <= MAX_RATE_PER_PROCESS {
            return Ok(());
        }
        Err(PlanError {
            file: None,
            position: None,
            field: None,
            message: format!(
                "the scenarios ask for a peak of {} req/s, more than the {} req/s one loadgen process can drive; `loadgen operator` splits a plan with `parallelism` over runners in a cluster, or lower the rate with `--multiplier` to run it here",
                number(rate),
                number(MAX_RATE_PER_PROCESS)
            ),
        })
    }

    /// Validates `spec` into a plan; `body_files` says where `bodyFile`s (and relative
    /// secret and CA files) are found: a folder (`&Path`, files outside it refused) or
    /// [`BodyFiles::Deferred`]. Errors name the field but no file or line (see
    /// [`Plan::from_source`] for documents loaded from a file).
    pub fn from_spec<'a>(
        name: &str,
        spec: &LoadTestSpec,
        body_files: impl Into<BodyFiles<'a>>,
        overrides: &Overrides,
    ) -> Result<Plan, PlanError> {
        Checker {
            file: None,
            locate: None,
            body_files: body_files.into(),
        }
        .plan(name, spec, overrides)
    }

    /// Like [`Plan::from_spec`] with body files read from `bodies`, errors located in
    /// `file` through `locate`.
    pub fn from_source(
        name: &str,
        spec: &LoadTestSpec,
        file: &Path,
        locate: &dyn Locate,
        overrides: &Overrides,
        bodies: BodySource<'_>,
    ) -> Result<Plan, PlanError> {
        let body_files = match bodies {
            BodySource::Beside { allow_outside } => BodyFiles::Read {
                base_dir: file.parent().unwrap_or(Path::new(".")),
                allow_outside,
            },
            BodySource::Folder(base_dir) => BodyFiles::Read {
                base_dir,
                allow_outside: false,
            },
        };
        Checker {
            file: Some(file),
            locate: Some(locate),
            body_files,
        }
        .plan(name, spec, overrides)
    }
}

/// Where the `bodyFile`s of a scenario file are read from.
#[derive(Debug, Clone, Copy)]
pub enum BodySource<'a> {
    /// The scenario file's folder and below; with `allow_outside`
    /// (`--allow-body-files-outside`), any path.
    Beside {
        /// Read any path the document names.
        allow_outside: bool,
    },
    /// This folder and below, wherever the scenario file is: a runner in a cluster reads
    /// them from the ConfigMap `spec.runner.bodyFilesConfigMap` mounted there.
    Folder(&'a Path),
}

impl Default for BodySource<'_> {
    fn default() -> Self {
        BodySource::Beside {
            allow_outside: false,
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `x` for a message: to three decimals, or `1.5e-8`-style (four significant digits) when
/// that would hide it.
pub(crate) fn number(x: f64) -> String {
    if x.is_finite() && x != 0.0 && !(1e-3..1e15).contains(&x.abs()) {
        let text = format!("{x:.3e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        format!("{mantissa}e{exponent}")
    } else {
        format!("{}", (x * 1000.0).round() / 1000.0)
    }
}

/// The highest peak arrival rate one loadgen process is given, iterations per second
/// (all its scenarios together); beyond it, `parallelism` splits the load across runners.
pub const MAX_RATE_PER_PROCESS: f64 = 1_000_000.0;
/// The lowest rate loadgen schedules: one thousandth of an iteration per second, the
/// resolution at which [`Plan::segment`] splits rates.
pub const MIN_RATE: f64 = 0.001;
/// The most virtual users one loadgen process holds (all its scenarios together).
pub const MAX_VUS_PER_PROCESS: u64 = 100_000;
/// The most in-flight iterations (`maxInFlight`) and open connections (`maxConnections`)
/// one scenario may have in one loadgen process.
pub const MAX_IN_FLIGHT_PER_PROCESS: u32 = 100_000;
/// The most threshold windows a run split over runners may have, all windowed thresholds
/// together: each runner sends every closed window back in its partial result.
pub const MAX_SPLIT_WINDOWS: u32 = 720;
/// The most runners a run may be split across (`parallelism`).
pub const MAX_RUNNERS: u32 = 10_000;
/// The longest duration a document may give anything (scenario, stage, start time,
/// timeout, chaos event, threshold window) and the latest a scenario may end: 31 days.
pub const MAX_DURATION: Duration = Duration::from_secs(31 * 24 * 3600);
/// The largest request body: 16 MiB.
pub const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// `sample.perSecond` and `maxQueriesPerSecond` are at least this (one every 1000 s).
pub const MIN_PER_SECOND: f64 = 0.001;
/// The most `maxQueriesPerSecond` a run may send to its backends.
pub const MAX_QUERIES_PER_SECOND: f64 = 10_000.0;
/// The most of `maxQueriesPerSecond` query checks and alert reads may take; the rest is
/// the verifiers'.
pub const PLATFORM_SHARE: f64 = 0.5;
/// Headers the HTTP client writes itself (framing, connection, trace context), refused in
/// a request's `headers`.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "traceparent",
    "x-request-id",
];

/// The sentence for a duration `shown` that is longer than [`MAX_DURATION`].
fn too_long(shown: &str) -> String {
    format!(
        "`{shown}` is longer than {} days (`{}`), the longest duration loadgen accepts",
        MAX_DURATION.as_secs() / 86_400,
        format_duration(MAX_DURATION)
    )
}

/// Parses the duration written at `field`, at most [`MAX_DURATION`].
pub(crate) fn bounded_duration(field: &str, text: &str) -> Result<Duration, FieldError> {
    let d = parse_duration(text).map_err(|e| field_err(field, e.to_string()))?;
    if d > MAX_DURATION {
        return Err(field_err(field, too_long(text)));
    }
    Ok(d)
}

/// What is wrong with the authority of `url` (`scheme://authority/path`), if anything:
/// userinfo (refused without echoing it; `credentials` says where credentials go
/// instead) or a port outside 1 to 65535.
pub(crate) fn url_authority_problem(url: &str, credentials: &str) -> Option<String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if let Some((_, host)) = authority.rsplit_once('@') {
        let shown = match scheme {
            Some(scheme) => format!("{scheme}://{host}{tail}"),
            None => format!("{host}{tail}"),
        };
        return Some(format!(
            "userinfo (`user:password@`) is not allowed in a URL; write `{shown}` and {credentials}"
        ));
    }
    let port = match authority.rsplit_once(']') {
        Some((_, after)) => after.strip_prefix(':'),
        None => authority.rsplit_once(':').map(|(_, p)| p),
    }?;
    let valid = port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
    (!valid && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("`{url}` has port {port}; a port is a number from 1 to 65535"))
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

/// What set a scenario's peak rate, for the error that refuses it.
enum Blame {
    /// `--multiplier`, with its value.
    Flag(f64),
    /// A field of the document.
    Field(String),
}

/// What set scenario `path`'s peak rate (`--multiplier` when it multiplied a share, else
/// the field), and for a share how the rate derives from it.
fn rate_source(
    path: &str,
    sc: &ScenarioSpec,
    executor: &Executor,
    spec: &LoadTestSpec,
    overrides: &Overrides,
) -> (Blame, String) {
    if let Executor::RampingArrivalRate { start_rate, stages } = executor {
        // The stage (or start) at the peak, as written: a rate, or a fraction of the rate.
        let start = (
            format!("{path}.startRate"),
            *start_rate,
            sc.start_rate.unwrap_or(0.0),
        );
        let (field, _, written) =
            stages
                .iter()
                .zip(&sc.stages)
                .enumerate()
                .fold(start, |best, (k, (planned, spec))| {
                    if planned.target > best.1 {
                        (
                            format!("{path}.stages[{k}].target"),
                            planned.target,
                            spec.target,
                        )
                    } else {
                        best
                    }
                });
        // Absolute targets, or a peak beyond the full rate, are the stage's doing.
        if (sc.share.is_none() && sc.rate.is_none()) || written > 1.0 {
            return (Blame::Field(field), String::new());
        }
    }
    match (sc.share, &spec.traffic) {
        (Some(share), Some(traffic)) => {
            let multiplier = overrides
                .multiplier
                .or(traffic.multiplier)
                .unwrap_or(DEFAULT_MULTIPLIER);
            let note = format!(
                " ({} x gaBaselineRps {} x multiplier {})",
                number(share),
                number(traffic.ga_baseline_rps),
                number(multiplier)
            );
            match overrides.multiplier {
                Some(m) => (Blame::Flag(m), note),
                None => (Blame::Field(format!("{path}.share")), note),
            }
        }
        _ => (Blame::Field(format!("{path}.rate")), String::new()),
    }
}

/// The field that set the peak VUs of a VU executor: `vus` or the peak stage's `target`.
fn vus_field(path: &str, executor: &Executor) -> String {
    match executor {
        Executor::RampingVus { start_vus, stages } => {
            stages
                .iter()
                .enumerate()
                .fold(
                    (format!("{path}.vus"), f64::from(*start_vus)),
                    |best, (k, s)| {
                        if s.target > best.1 {
                            (format!("{path}.stages[{k}].target"), s.target)
                        } else {
                            best
                        }
                    },
                )
                .0
        }
        _ => format!("{path}.vus"),
    }
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

struct Checker<'a> {
    file: Option<&'a Path>,
    locate: Option<&'a dyn Locate>,
    body_files: BodyFiles<'a>,
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
        bounded_duration(field, text).map_err(|e| self.err(e.field, e.message))
    }

    /// The folder relative secret and CA file paths start from (as written when deferred).
    fn base_dir(&self) -> &Path {
        match self.body_files {
            BodyFiles::Read { base_dir, .. } => base_dir,
            BodyFiles::Deferred => Path::new(""),
        }
    }

    /// An error about a flag, in the context of this document.
    fn flag_err(&self, flag: &str, message: impl Into<String>) -> PlanError {
        PlanError {
            file: self.file.map(Path::to_path_buf),
            ..PlanError::flag(flag, message)
        }
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
        match overrides.duration {
            Some(d) if d.is_zero() => {
                return Err(PlanError::flag(
                    "--duration",
                    "must be longer than 0s, e.g. `10s`",
                ));
            }
            Some(d) if d > MAX_DURATION => {
                return Err(PlanError::flag("--duration", too_long(&format_duration(d))));
            }
            _ => {}
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
                return Err(self.flag_err(
                    "--multiplier",
                    "the scenario has no `spec.traffic`, so no rate derives from a multiplier; add `traffic: {gaBaselineRps: N}` and `share`s, or drop the flag",
                ));
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
            queries: spec.queries.iter().map(|q| q.name.clone()).collect(),
            alerts: spec.alerts.as_ref().map_or_else(Vec::new, |a| {
                let mut names: Vec<String> = Vec::new();
                let all = a.expect.iter().map(|e| &e.alert);
                for n in all.chain(a.silent.iter().map(|s| &s.alert)) {
                    if !names.contains(n) {
                        names.push(n.clone());
                    }
                }
                names
            }),
            chaos: spec.chaos.iter().filter_map(|c| c.name.clone()).collect(),
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
                if let ricochet_crds::ThresholdSpec::Detailed(d) = condition {
                    let window = matches!(threshold.scope, Scope::Window(w) if w > MAX_DURATION);
                    let late = threshold.delay_abort_eval > MAX_DURATION;
                    for (too_long_here, field, text) in [
                        (window, "window", &d.window),
                        (late, "delayAbortEval", &d.delay_abort_eval),
                    ] {
                        if too_long_here {
                            let text = text.as_deref().unwrap_or_default();
                            return Err(self.err(format!("{path}[{j}].{field}"), too_long(text)));
                        }
                    }
                }
                thresholds.push(threshold);
            }
        }

        let embedded = target == TargetPlan::Embedded;
        let field = |e: FieldError| self.err(e.field, e.message);
        let telemetry = match &spec.telemetry {
            Some(t) => {
                let p = telemetry::telemetry_plan(t, self.base_dir()).map_err(field)?;
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
            self.base_dir(),
        )
        .map_err(field)?;
        let platform = platform::platform_plan(
            &spec.queries,
            spec.alerts.as_ref(),
            &platform::Context {
                telemetry: telemetry.as_ref(),
                chaos: &chaos,
                phases: scenarios.iter().flat_map(ScenarioPlan::phases).collect(),
                load: scenarios
                    .iter()
                    .map(ScenarioPlan::end)
                    .max()
                    .unwrap_or_default(),
                base_dir: self.base_dir(),
            },
        )
        .map_err(field)?;
        let embedded_listen = match overrides.embedded_listen {
            Some(a) if !a.ip().is_loopback() => {
                return Err(PlanError::flag(
                    "--embedded-listen",
                    format!(
                        "`{a}` is not a loopback address; the embedded echo-server listens on 127.0.0.0/8 or [::1] only, e.g. `127.0.0.1:18080`"
                    ),
                ));
            }
            Some(_) if target != TargetPlan::Embedded => {
                return Err(PlanError::flag(
                    "--embedded-listen",
                    "applies to the embedded echo-server, but the scenario names `spec.target`; add `--embedded` or drop the flag",
                ));
            }
            a => a,
        };

        let mut output_spec = spec.output.clone().unwrap_or_default();
        for flag in &overrides.outputs {
            let bad = || {
                PlanError::flag(
                    "--output",
                    format!(
                        "`{flag}` is not an output; write `prometheus-rw=URL` (e.g. `prometheus-rw=http://127.0.0.1:9090/api/v1/write`) or `otlp=URL` (e.g. `otlp=http://127.0.0.1:4318`)"
                    ),
                )
            };
            let (kind, url) = flag.split_once('=').ok_or_else(bad)?;
            let backend = ricochet_crds::BackendSpec {
                url: url.to_owned(),
                tenant: None,
                bearer_token: None,
                basic_auth: None,
                ca_file: None,
                timeout: None,
            };
            match kind {
                "prometheus-rw" => {
                    let (trend_stats, native_histograms) = output_spec
                        .prometheus_remote_write
                        .take()
                        .map(|r| (r.trend_stats, r.native_histograms))
                        .unwrap_or_default();
                    output_spec.prometheus_remote_write = Some(ricochet_crds::RemoteWriteSpec {
                        backend,
                        trend_stats,
                        native_histograms,
                    });
                }
                "otlp" => output_spec.otlp = Some(backend),
                _ => return Err(bad()),
            }
        }
        let output = if spec.output.is_none() && overrides.outputs.is_empty() {
            None
        } else {
            output::output_plan(&output_spec, self.base_dir()).map_err(|e| {
                if overrides.outputs.is_empty() {
                    field(e)
                } else {
                    PlanError::flag("--output", format!("{}: {}", e.field, e.message))
                }
            })?
        };

        let mut plan = Plan {
            name: name.to_owned(),
            source: self.file.map(Path::to_path_buf),
            target,
            multiplier,
            scenarios,
            thresholds,
            telemetry,
            chaos,
            platform,
            output,
            embedded_listen,
        };
        self.process_limits(spec, &plan, overrides)?;
        self.fit_query_budget(spec, &mut plan)?;
        Ok(plan)
    }

    /// Holds the sampling to what `maxQueriesPerSecond` verifies within `settleTimeout`
    /// (per runner): an explicit `telemetry.sample` that does not fit is refused with the
    /// numbers; the default is lowered to fit.
    fn fit_query_budget(&self, spec: &LoadTestSpec, plan: &mut Plan) -> Result<(), PlanError> {
        let load = plan.duration();
        let runners =
            crate::segment::runner_count(spec.parallelism, spec.max_rate_per_runner, plan)
                .map_or(1, |n| n.get());
        let (mut arrivals, mut closed) = (0.0, false);
        for s in &plan.scenarios {
            match crate::schedule::RateProfile::of(&s.executor) {
                Some(p) => arrivals += p.total(),
                None => closed = true,
            }
        }
        let per_runner = arrivals / load.as_secs_f64().max(1e-9) / f64::from(runners);
        let explicit = spec.telemetry.as_ref().is_some_and(|t| t.sample.is_some());
        let platform = plan.platform.queries_per_second();
        let Some(t) = plan.telemetry.as_mut() else {
            return Ok(());
        };
        // Query checks and alert reads spend the same budget, ahead of the verifiers.
        if platform > 0.0 {
            let budget = t.max_queries_per_second;
            if platform > budget * PLATFORM_SHARE {
                return Err(self.err(
                    "spec.telemetry.maxQueriesPerSecond",
                    format!(
                        "is {}, but the query checks and alert reads alone ask {} queries/s, more than {}% of it; raise maxQueriesPerSecond or evaluate less often (`every`)",
                        number(budget),
                        number(platform),
                        number(PLATFORM_SHARE * 100.0)
                    ),
                ));
            }
        }
        let verifiers_budget = t.max_queries_per_second - platform;
        if !explicit {
            if !closed {
                let mut share = t.clone();
                share.max_queries_per_second = verifiers_budget / f64::from(runners);
                t.sample = match share.fitted_default(per_runner, load) {
                    // `perSecond` is the run's: each runner samples its part.
                    SamplePolicy::PerSecond(n) => SamplePolicy::PerSecond(n * f64::from(runners)),
                    rate => rate,
                };
            }
            return Ok(());
        }
        let samples = match t.sample {
            SamplePolicy::Rate(r) => r * per_runner,
            // VU scenarios' request rate is not known before the run: the cap counts.
            // `perSecond` is the run's: each runner samples its part.
            SamplePolicy::PerSecond(n) if closed => n / f64::from(runners),
            SamplePolicy::PerSecond(n) => (n / f64::from(runners)).min(per_runner),
        };
        // Each runner spends its share of the budget on its share of the samples.
        let mut share = t.clone();
        share.max_queries_per_second = verifiers_budget / f64::from(runners);
        share
            .check_budget(samples, load)
            .map_err(|e| self.err("spec.telemetry.sample", e.to_string()))
    }

    /// Checks what each runner (one process) is given against the per-process limits:
    /// arrival rate, VUs, in-flight iterations; and that every rate is at least
    /// [`MIN_RATE`].
    fn process_limits(
        &self,
        spec: &LoadTestSpec,
        plan: &Plan,
        overrides: &Overrides,
    ) -> Result<(), PlanError> {
        if let Some(Parallelism::Runners(n)) = spec.parallelism
            && n > MAX_RUNNERS
        {
            return Err(self.err(
                "spec.parallelism",
                format!("must be at most {MAX_RUNNERS} runners, got {n}"),
            ));
        }
        match spec.max_rate_per_runner {
            Some(max) if !(max.is_finite() && (MIN_RATE..=MAX_RATE_PER_PROCESS).contains(&max)) => {
                return Err(self.err(
                    "spec.maxRatePerRunner",
                    format!(
                        "must be a number from {MIN_RATE} to {} (iterations per second one loadgen process can drive), got {}",
                        number(MAX_RATE_PER_PROCESS),
                        number(max)
                    ),
                ));
            }
            None if spec.parallelism == Some(Parallelism::Auto) => {
                return Err(self.err(
                    "spec.parallelism",
                    "`auto` needs `spec.maxRatePerRunner` (the most iterations per second one runner is given), e.g. `maxRatePerRunner: 20000`",
                ));
            }
            _ => {}
        }
        let runners =
            crate::segment::runner_count(spec.parallelism, spec.max_rate_per_runner, plan)
                .map_err(|e| self.err("spec.parallelism", e.to_string()))?
                .get();
        let hint = match spec.parallelism {
            None => "use `parallelism` to split the load across runners".to_owned(),
            Some(Parallelism::Runners(n)) if n < MAX_RUNNERS => {
                "raise `parallelism` to split the load across more runners".to_owned()
            }
            Some(_) => format!("lower the load: a run has at most {MAX_RUNNERS} runners"),
        };
        if runners > 1 {
            self.split_windows(plan)?;
        }
        // `value unit[note][, per-runner unit for each of n runners], more than ...; hint`.
        let beyond = |value: f64, unit: &str, note: &str, limit: f64, verb: &str| {
            let each = if runners > 1 {
                let per = value / f64::from(runners);
                let per = if unit == "req/s" { per } else { per.ceil() };
                format!(", {} {unit} for each of {runners} runners", number(per))
            } else {
                String::new()
            };
            format!(
                "{} {unit}{note}{each}, more than the {} {unit} one loadgen process can {verb}; {hint}",
                number(value),
                number(limit)
            )
        };
        let over = |value: f64, limit: f64| value / f64::from(runners) > limit;
        let (mut total_rate, mut total_vus, mut total_concurrent) = (0.0, 0.0, 0.0);
        for (i, (sc, s)) in spec.scenarios.iter().zip(&plan.scenarios).enumerate() {
            let path = format!("spec.scenarios[{i}]");
            if let Some(peak) = s.executor.peak_rate() {
                total_rate += peak;
                let (blame, note) = rate_source(&path, sc, &s.executor, spec, overrides);
                let error = |message: String| match &blame {
                    Blame::Flag(m) => self.flag_err(
                        "--multiplier",
                        format!("{} gives {path} {message}", number(*m)),
                    ),
                    Blame::Field(field) => self.err(field, format!("gives {message}")),
                };
                if peak < MIN_RATE {
                    return Err(error(format!(
                        "a peak rate of {} req/s{note}, below {MIN_RATE} req/s (one iteration every {}s), the lowest rate loadgen schedules",
                        number(peak),
                        number(1.0 / MIN_RATE)
                    )));
                }
                let max = MAX_RATE_PER_PROCESS;
                if over(peak, max) {
                    let limit = beyond(peak, "req/s", &note, max, "drive");
                    return Err(error(format!("a peak rate of {limit}")));
                }
                if over(total_rate, max) {
                    let limit = beyond(total_rate, "req/s", "", max, "drive");
                    return Err(error(format!(
                        "all scenarios together a peak rate of {limit}"
                    )));
                }
            }
            if let Some(peak) = s.executor.peak_vus() {
                let peak = f64::from(peak);
                total_vus += peak;
                let field = vus_field(&path, &s.executor);
                let max = MAX_VUS_PER_PROCESS as f64;
                if over(peak, max) {
                    let limit = beyond(peak, "VUs", "", max, "hold");
                    return Err(self.err(field, format!("gives a peak of {limit}")));
                }
                if over(total_vus, max) {
                    let limit = beyond(total_vus, "VUs", "", max, "hold");
                    return Err(self.err(
                        field,
                        format!("gives all scenarios together a peak of {limit}"),
                    ));
                }
            }
            if let Some(n) = sc.max_in_flight {
                let max = f64::from(MAX_IN_FLIGHT_PER_PROCESS);
                if over(f64::from(n), max) {
                    let limit = beyond(f64::from(n), "in-flight iterations", "", max, "hold");
                    return Err(self.err(format!("{path}.maxInFlight"), format!("allows {limit}")));
                }
            }
            // What a run allocates tasks and connections for: each VU, and each arrival
            // scenario's `maxInFlight` (written or default), all scenarios together.
            let (concurrent, field) = match s.executor.peak_vus() {
                Some(vus) => (f64::from(vus), vus_field(&path, &s.executor)),
                None => (
                    f64::from(s.max_in_flight.get()),
                    format!("{path}.maxInFlight"),
                ),
            };
            total_concurrent += concurrent;
            let max = f64::from(MAX_IN_FLIGHT_PER_PROCESS);
            if over(total_concurrent, max) {
                let note = " (VUs plus each arrival-rate scenario's `maxInFlight`)";
                let limit = beyond(total_concurrent, "concurrent iterations", note, max, "hold");
                return Err(self.err(field, format!("gives all scenarios together {limit}")));
            }
        }
        Ok(())
    }

    /// A run split over runners sends each closed window of a windowed threshold to the
    /// operator in the runner's partial result (a ConfigMap of at most 1 MiB): refuses plans
    /// whose windows could not fit, naming the smallest window that would.
    fn split_windows(&self, plan: &Plan) -> Result<(), PlanError> {
        let run = plan.max_duration().as_secs_f64();
        let count = |w: Duration| (run / w.as_secs_f64().max(1e-3)).ceil();
        let windows: Vec<(&Threshold, Duration)> = plan
            .thresholds
            .iter()
            .filter_map(|t| match t.scope {
                Scope::Window(w) => Some((t, w)),
                _ => None,
            })
            .collect();
        let total: f64 = windows.iter().map(|(_, w)| count(*w)).sum();
        let max = MAX_SPLIT_WINDOWS as f64;
        if total <= max {
            return Ok(());
        }
        let (first, w) = windows[0];
        // Every windowed threshold at least this long keeps the total within the limit.
        let smallest = Duration::from_secs((run * windows.len() as f64 / max).ceil() as u64);
        Err(self.err(
            format!("spec.thresholds.{}", first.key),
            format!(
                "a window of `{}` over a run of `{}` gives {} windows across the windowed thresholds, more than the {MAX_SPLIT_WINDOWS} a run split over runners can send back to the operator; use windows of at least `{}`",
                format_duration(w),
                format_duration(plan.max_duration()),
                number(total),
                format_duration(smallest)
            ),
        ))
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
                    "`{}` is not a usable target URL, expected `http://HOST[:PORT][/PREFIX]` or `https://HOST[:PORT][/PREFIX]`, e.g. `http://echo-server.observability.svc:8080` (omit `target` for the embedded echo-server)",
                    t.url
                ),
            )
        };
        if let Some(problem) = url_authority_problem(
            &t.url,
            "send credentials in the requests' `headers` (e.g. `authorization`) instead",
        ) {
            return Err(self.err("spec.target.url", problem));
        }
        if let Some(admin) = &t.admin
            && let Some(problem) =
                url_authority_problem(&admin.url, "give the admin token as `token` instead")
        {
            return Err(self.err("spec.target.admin.url", problem));
        }
        let base: http::Uri = t.url.parse().map_err(|_| bad_url())?;
        let https = base.scheme_str() == Some("https");
        if !(https || base.scheme_str() == Some("http"))
            || base.authority().is_none()
            || base.query().is_some()
        {
            return Err(bad_url());
        }
        let tls = self.target_tls(t, https)?;
        let max_connections = match t.max_connections {
            None => NonZeroU32::new(DEFAULT_MAX_CONNECTIONS).unwrap_or(NonZeroU32::MIN),
            Some(n) if n > MAX_IN_FLIGHT_PER_PROCESS => {
                return Err(self.err(
                    "spec.target.maxConnections",
                    format!(
                        "must be at most {MAX_IN_FLIGHT_PER_PROCESS} (the most in-flight requests of a scenario one loadgen process holds), got {n}"
                    ),
                ));
            }
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
        let mut replicas = Vec::with_capacity(t.replicas.len());
        for (i, r) in t.replicas.iter().enumerate() {
            let field = format!("spec.target.replicas[{i}]");
            if let Some(problem) = url_authority_problem(r, "the accounting needs no credentials") {
                return Err(self.err(field, problem));
            }
            match r.parse::<http::Uri>() {
                Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => {
                    replicas.push(u)
                }
                _ => {
                    return Err(self.err(
                        field,
                        format!(
                            "`{r}` is not a usable replica URL, expected `http://HOST[:PORT]` whose host resolves to the echo-server's replicas, e.g. a headless Service `http://echo-server-headless.observability.svc:8080`"
                        ),
                    ));
                }
            }
        }
        Ok(TargetUrl {
            base,
            http2: t.http2,
            max_connections,
            timeout,
            replicas,
            tls: Box::new(tls),
        })
    }

    /// `spec.target`'s TLS fields: for `https://` targets only; each file read and checked
    /// now when files are read (a missing or unusable one is invalid input), paths
    /// relative to the scenario file's folder.
    fn target_tls(
        &self,
        t: &ricochet_crds::Target,
        https: bool,
    ) -> Result<crate::tls::TlsPlan, PlanError> {
        use crate::tls::{ClientCertPlan, Roots, TlsPlan, client_config};
        let base_dir = self.base_dir();
        let tls = TlsPlan {
            ca_file: t.ca_file.as_ref().map(|f| base_dir.join(f)),
            client_cert: t.client_cert.as_ref().map(|c| ClientCertPlan {
                cert_file: base_dir.join(&c.cert_file),
                key_file: base_dir.join(&c.key_file),
            }),
            insecure_skip_verify: t.insecure_skip_verify,
        };
        if !https {
            let field = if t.ca_file.is_some() {
                "spec.target.caFile"
            } else if t.client_cert.is_some() {
                "spec.target.clientCert"
            } else {
                "spec.target.insecureSkipVerify"
            };
            if tls.is_set() {
                return Err(self.err(
                    field,
                    format!(
                        "applies to `https://` targets only, and `{}` is plain HTTP; use an `https://` URL or drop the field",
                        t.url
                    ),
                ));
            }
            return Ok(tls);
        }
        if t.insecure_skip_verify && t.ca_file.is_some() {
            return Err(self.err(
                "spec.target.caFile",
                "is never used with `insecureSkipVerify: true`, which accepts any certificate; drop one of the two",
            ));
        }
        if matches!(self.body_files, BodyFiles::Read { .. }) {
            client_config(&tls, Roots::FilesOnly).map_err(|e| {
                self.err(
                    e.field(),
                    format!(
                        "cannot use {}; paths are relative to the scenario file",
                        e.reason()
                    ),
                )
            })?;
        }
        Ok(tls)
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
                        // A fraction of 0 stays 0, also of an infinite rate (refused later).
                        let of_rate = |fraction: f64| {
                            if fraction == 0.0 {
                                0.0
                            } else {
                                fraction * rate
                            }
                        };
                        start_rate = of_rate(start_rate);
                        for stage in &mut stages {
                            stage.target = of_rate(stage.target);
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
        // In seconds, so that a `startTime` scaled by `--duration` cannot overflow.
        let start = if overrides.duration.is_some() {
            start_time.as_secs_f64() * factor
        } else {
            start_time.as_secs_f64()
        };
        let end = start + executor.duration().as_secs_f64();
        if end > MAX_DURATION.as_secs_f64() {
            let shown = if end < 1e9 {
                format_duration(Duration::from_secs_f64(end))
            } else {
                format!("{}h", number(end / 3600.0))
            };
            return Err(self.err(
                path,
                format!(
                    "ends `{shown}` after the start of the run (`startTime` plus its duration), beyond the {} days (`{}`) a run may last",
                    MAX_DURATION.as_secs() / 86_400,
                    format_duration(MAX_DURATION)
                ),
            ));
        }
        start_time = Duration::try_from_secs_f64(start).unwrap_or(MAX_DURATION);

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
            if RESERVED_HEADERS.contains(&header_name.as_str()) {
                return Err(self.err(
                    &field,
                    format!(
                        "`{name}` may not be set here: loadgen's HTTP client sets the framing, connection and trace headers itself ({}); remove it",
                        RESERVED_HEADERS
                            .iter()
                            .map(|h| format!("`{h}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
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
            (None, Some(file)) => self.body_file(&format!("{path}.bodyFile"), file)?,
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

    /// The body read from `file` (`bodyFile` at `field`) as [`BodyFiles`] says: a regular
    /// file of at most [`MAX_BODY_BYTES`], by default in the scenario file's folder.
    fn body_file(&self, field: &str, file: &str) -> Result<Bytes, PlanError> {
        let (base_dir, allow_outside) = match self.body_files {
            BodyFiles::Read {
                base_dir,
                allow_outside,
            } => (Some(base_dir), allow_outside),
            BodyFiles::Deferred => (None, false),
        };
        let rule = if base_dir.is_some() {
            "a body file must lie in the scenario file's folder or below it (or pass `--allow-body-files-outside`)"
        } else {
            "a body file must lie in the scenario file's folder or below it"
        };
        let written = Path::new(file);
        if !allow_outside && (written.has_root() || written.is_absolute()) {
            return Err(self.err(field, format!("`{file}` is an absolute path; {rule}")));
        }
        if !allow_outside && written.components().any(|c| c == Component::ParentDir) {
            return Err(self.err(field, format!("`{file}` goes up a folder (`..`); {rule}")));
        }
        let Some(base_dir) = base_dir else {
            return Ok(Bytes::new());
        };
        let resolved = base_dir.join(file);
        let shown = format!("`{file}` (resolved to `{}`)", resolved.display());
        let cannot = |e: std::io::Error| {
            self.err(
                field,
                format!("cannot read {shown}: {e}; paths are relative to the scenario file"),
            )
        };
        let meta = std::fs::metadata(&resolved).map_err(cannot)?;
        if !allow_outside {
            let base = if base_dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base_dir
            };
            let real = resolved.canonicalize().map_err(cannot)?;
            if !real.starts_with(base.canonicalize().map_err(cannot)?) {
                return Err(self.err(
                    field,
                    format!(
                        "{shown} leads out of the scenario file's folder through a symbolic link, to `{}`; {rule}",
                        real.display()
                    ),
                ));
            }
        }
        let too_big = || {
            self.err(
                field,
                format!(
                    "{shown} is larger than {} MiB ({MAX_BODY_BYTES} bytes), the largest request body loadgen sends",
                    MAX_BODY_BYTES >> 20
                ),
            )
        };
        if !meta.is_file() {
            return Err(self.err(
                field,
                format!(
                    "{shown} is {}, not a regular file; a body file must be a regular file",
                    file_kind(&meta.file_type())
                ),
            ));
        }
        if meta.len() > MAX_BODY_BYTES {
            return Err(too_big());
        }
        // Read through a cap too: a file may grow, or report a size that is not its length.
        let mut body = Vec::new();
        std::fs::File::open(&resolved)
            .and_then(|f| f.take(MAX_BODY_BYTES + 1).read_to_end(&mut body))
            .map_err(cannot)?;
        if body.len() as u64 > MAX_BODY_BYTES {
            return Err(too_big());
        }
        Ok(Bytes::from(body))
    }
}

/// What a file that is not a regular file is, for messages.
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "a special file"
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

    const DRILL: &str = "\
apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: drill}
spec:
  scenarios:
    - name: api
      executor: ramping-arrival-rate
      rate: 20
      stages:
        - {target: 1, duration: 10s, name: baseline}
        - {target: 1, duration: 30s, name: fault}
      requests: [{name: echo, path: /api/echo}]
  chaos:
    - {name: errors, at: 10s, for: 20s, fault: {errorRate: 0.5}}
  telemetry:
    maxQueriesPerSecond: 20
    metrics: {prometheus: {url: \"http://127.0.0.1:9090\"}}
  queries:
    - {name: up, promql: 'up{job=\"echo\"}', every: 5s}
  thresholds:
    \"query{name:up}\": [{threshold: \"min>=1\", phase: errors}]
  alerts:
    alertmanager: {url: \"http://127.0.0.1:9093\"}
    receiver: {listen: \"127.0.0.1:9097\"}
    expect:
      - {alert: EchoServerHighErrorRate, during: errors, firesWithin: 1m, notifiesWithin: 2m, resolvesWithin: 3m}
    silent:
      - {alert: EchoServerHighErrorRate, during: baseline}
";

    #[test]
    fn outputs_come_from_the_spec_and_the_command_line() {
        let with_output = |output: &str| format!("{BASE}  output: {output}\n");
        let plan = plan_of(
            &with_output("{prometheusRemoteWrite: {url: \"http://127.0.0.1:9090/api/v1/write\", tenant: t, trendStats: [\"p(95)\", avg]}, flushInterval: 2s, naming: k6}"),
            &Overrides::default(),
        )
        .unwrap();
        let out = plan.output.unwrap();
        let (rw, stats) = out.remote_write.unwrap();
        assert_eq!(
            (rw.url.as_str(), rw.tenant.as_deref()),
            ("http://127.0.0.1:9090/api/v1/write", Some("t"))
        );
        assert_eq!(
            stats,
            [output::TrendStat::Percentile(95.0), output::TrendStat::Avg]
        );
        assert_eq!(stats[0].suffix(), "p95");
        assert_eq!(output::TrendStat::Percentile(99.9).suffix(), "p99_9");
        assert_eq!(
            (out.flush_interval, out.naming),
            (Duration::from_secs(2), output::Naming::K6)
        );

        let flagged = Overrides {
            outputs: vec![
                "otlp=http://127.0.0.1:4318".into(),
                "prometheus-rw=http://127.0.0.1:1/w".into(),
            ],
            ..Overrides::default()
        };
        let out = plan_of(BASE, &flagged).unwrap().output.unwrap();
        assert_eq!(out.otlp.unwrap().url, "http://127.0.0.1:4318");
        let (rw, stats) = out.remote_write.unwrap();
        assert_eq!(
            (rw.url.as_str(), stats),
            (
                "http://127.0.0.1:1/w",
                vec![output::TrendStat::Percentile(99.0)]
            )
        );
        assert!(
            plan_of(BASE, &Overrides::default())
                .unwrap()
                .output
                .is_none()
        );

        for (yaml, want) in [
            (with_output("{}"), "spec.output: names no output"),
            (
                with_output("{otlp: {url: \"http://x:4318\"}, naming: prom}"),
                "spec.output.naming: `prom` is not a naming",
            ),
            (
                with_output("{prometheusRemoteWrite: {url: \"http://x/w\", trendStats: [p99]}}"),
                "spec.output.prometheusRemoteWrite.trendStats[0]: `p99` is not a trend statistic",
            ),
            (
                with_output("{otlp: {url: \"http://u:pw@x:4318\"}}"),
                "spec.output.otlp.url",
            ),
            (
                with_output("{otlp: {url: \"http://x:4318\"}, flushInterval: 10ms}"),
                "spec.output.flushInterval: `10ms` is too short",
            ),
        ] {
            let e = error_of(&yaml);
            assert!(e.contains(want), "want `{want}` in {e}");
            assert!(!e.contains("pw@"), "{e}");
        }
        let bad = Overrides {
            outputs: vec!["influx=http://x".into()],
            ..Overrides::default()
        };
        let e = plan_of(BASE, &bad).unwrap_err().to_string();
        assert!(
            e.contains("--output: `influx=http://x` is not an output"),
            "{e}"
        );
    }

    #[test]
    fn queries_and_alert_drills_lower_into_windows_on_the_timeline() {
        let plan = plan_of(DRILL, &Overrides::default()).unwrap();
        let q = &plan.platform.queries[0];
        assert_eq!((q.name.as_str(), q.every), ("up", Duration::from_secs(5)));
        assert_eq!(q.backend.url, "http://127.0.0.1:9090");
        let a = plan.platform.alerts.as_ref().unwrap();
        let e = &a.expect[0];
        assert_eq!(
            (e.window.start, e.window.end),
            (Duration::from_secs(10), Duration::from_secs(30)),
            "`errors` is the chaos entry from 10s for 20s"
        );
        assert_eq!(
            (a.silent[0].window.start, a.silent[0].window.end),
            (Duration::ZERO, Duration::from_secs(10)),
            "`baseline` is the stage"
        );
        assert_eq!(a.every, Duration::from_secs(5));
        assert_eq!(a.last_deadline(), Duration::from_secs(30 + 180));
        // 1/5 for the query, 2/5 for Prometheus' and Alertmanager's alert reads.
        assert!((plan.platform.queries_per_second() - 0.6).abs() < 1e-9);
        assert_eq!(plan.thresholds[0].scope, Scope::Phase("errors".into()));
        assert!(
            plan.summary()
                .contains("1 threshold, 1 query check, 2 alerts drilled, target"),
            "{}",
            plan.summary()
        );
    }

    #[test]
    fn platform_check_mistakes_are_one_located_sentence() {
        let with = |from: &str, to: &str| {
            assert!(DRILL.contains(from), "{from}");
            DRILL.replacen(from, to, 1)
        };
        let cases = [
            (
                with("promql: 'up{job=\"echo\"}'", "promql: 'max(up'"),
                "x.yaml:19:18: spec.queries[0].promql: `(` at column 4 is never closed",
            ),
            (
                with("promql: 'up{job=\"echo\"}'", "logql: 'sum(x)'"),
                "spec.queries[0].logql: a LogQL query is asked of `spec.telemetry.logs.loki`",
            ),
            (
                with(", every: 5s}", ", every: 5s, logql: x}"),
                "spec.queries[0]: needs exactly one of `promql`",
            ),
            (
                with("every: 5s}", "every: 100ms}"),
                "spec.queries[0].every: `100ms` is too short",
            ),
            (
                with("{name: up,", "{name: \"bad name\",").replace(
                    "\"query{name:up}\": [{threshold: \"min>=1\", phase: errors}]",
                    "http_reqs: [\"count>0\"]",
                ),
                "spec.queries[0].name: `bad name` is not a valid query name",
            ),
            (
                with("name:up}", "name:down}"),
                "spec.thresholds.query{name:down}: no query is named `down`, expected one of `up`",
            ),
            (
                with("during: errors,", "during: nope,"),
                "spec.alerts.expect[0].during: `nope` names no chaos entry and no phase; name a `spec.chaos` entry (`name:`) or a stage; chaos names: `errors`; phases: `baseline`, `fault`",
            ),
            (
                with("firesWithin: 1m", "firesWithin: soon"),
                "spec.alerts.expect[0].firesWithin",
            ),
            (
                with("    receiver: {listen: \"127.0.0.1:9097\"}\n", ""),
                "spec.alerts.expect[0].notifiesWithin: needs loadgen's webhook receiver",
            ),
            (
                with("127.0.0.1:9097", "localhost"),
                "spec.alerts.receiver.listen: `localhost` is not an address to listen on",
            ),
            (
                with(
                    "    metrics: {prometheus: {url: \"http://127.0.0.1:9090\"}}\n",
                    "",
                ),
                "spec.queries[0].promql: a PromQL query is asked of `spec.telemetry.metrics.prometheus`",
            ),
            (
                with("maxQueriesPerSecond: 20", "maxQueriesPerSecond: 1"),
                "spec.telemetry.maxQueriesPerSecond: is 1, but the query checks and alert reads alone ask 0.6 queries/s, more than 50% of it",
            ),
            (
                with("{name: errors, at", "{name: baseline, at")
                    .replace("during: errors,", "during: baseline,")
                    .replace("phase: errors", "phase: baseline"),
                "",
            ),
        ];
        for (yaml, want) in cases {
            if want.is_empty() {
                // A chaos entry may share a stage's name: the chaos entry wins.
                let plan = plan_of(&yaml, &Overrides::default()).unwrap();
                let e = &plan.platform.alerts.unwrap().expect[0];
                assert_eq!(e.window.start, Duration::from_secs(10));
                continue;
            }
            let e = error_of(&yaml);
            assert!(e.contains(want), "want `{want}` in\n{e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn replica_urls_are_validated_and_kept() {
        let yaml = with_target(
            "{url: \"http://127.0.0.1:8080\", replicas: [\"http://echo-headless.ns.svc:8080\"]}",
        );
        let plan = plan_of(&yaml, &Overrides::default()).unwrap();
        let TargetPlan::Url(u) = &plan.target else {
            panic!("a URL target")
        };
        assert_eq!(u.replicas[0].host(), Some("echo-headless.ns.svc"));
        let e = error_of(&with_target(
            "{url: \"http://127.0.0.1:8080\", replicas: [\"ftp://x\"]}",
        ));
        assert!(
            e.contains("spec.target.replicas[0]: `ftp://x` is not a usable replica URL"),
            "{e}"
        );
    }

    // See: issue #14, item 6.
    #[test]
    fn sampling_that_outruns_the_query_budget_is_refused_with_the_numbers() {
        let tempo = |sample: &str| {
            with_target(&format!(
                "{{url: \"http://127.0.0.1:8080\"}}\n  telemetry: {{traces: {{tempo: {{url: \"http://127.0.0.1:3200\"}}}}{sample}}}"
            ))
            .replace("duration: 10s", "duration: 300s")
        };
        // 150 req/s, all sampled: 150 Tempo look-ups a second against 20.
        let e = error_of(&tempo(", sample: {rate: 1}"));
        assert!(
            e.starts_with("x.yaml:") && e.contains("spec.telemetry.sample: verifying 150.0 samples/s needs about 157.0 queries/s (tempo 157.0/s)"),
            "{e}"
        );
        assert!(
            e.contains("maxQueriesPerSecond 20 answers at most 22.0/s")
                && e.contains("set `sample: {perSecond: 15}`"),
            "{e}"
        );
        // What the sentence suggests fits.
        assert!(plan_of(&tempo(", sample: {perSecond: 15}"), &Overrides::default()).is_ok());
        assert!(plan_of(&tempo(", sample: {perSecond: 16}"), &Overrides::default()).is_err());
        // Without `sample`, the default is lowered to fit (a fifth of the budget spare)
        // instead of refused.
        let plan = plan_of(&tempo(""), &Overrides::default()).unwrap();
        assert_eq!(
            plan.telemetry.unwrap().sample,
            SamplePolicy::PerSecond(12.0)
        );
        // The embedded default spends no query budget: its default stands.
        let plan = plan_of(BASE, &Overrides::default()).unwrap();
        assert_eq!(
            plan.telemetry.unwrap().sample,
            SamplePolicy::PerSecond(100.0)
        );
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
                    "  target: {url: \"ftp://x:1\"}\n  traffic: {gaBaselineRps: 100}",
                ),
                "x.yaml:5:12: spec.target.url: `ftp://x:1` is not a usable target URL, expected `http://HOST[:PORT][/PREFIX]` or `https://HOST[:PORT][/PREFIX]`, e.g. `http://echo-server.observability.svc:8080` (omit `target` for the embedded echo-server)",
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
                "x.yaml:14:5: spec.thresholds.http_req_duraton: unknown metric `http_req_duraton`, expected one of `http_reqs`, `http_req_duration`, `http_req_waiting`, `http_req_service_duration`, `http_req_schedule_lag`, `http_req_blocked`, `http_req_connecting`, `http_req_tls_handshaking`, `http_stream_duration`, `http_req_failed`, `iterations`, `dropped_iterations`, `interrupted_iterations`, `data_sent`, `data_received`, `telemetry_trace_missing`, `telemetry_log_missing`, `telemetry_metric_missing`, `telemetry_trace_incomplete`, `telemetry_trace_unknown`, `telemetry_log_unknown`, `telemetry_metric_unknown`, `telemetry_trace_ingest_latency`, `telemetry_log_ingest_latency`, `telemetry_metric_ingest_latency`, `telemetry_trace_query_duration`, `telemetry_log_query_duration`, `telemetry_metric_query_duration`, `telemetry_trace_export_wait`, `telemetry_log_export_wait`, `telemetry_trace_backend_latency`, `telemetry_log_backend_latency`, `query`, `alert_time_to_fire`, `alert_time_to_notify`, `alert_time_to_resolve`, `alert_unexpected`",
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

    /// Compares each case's error with the sentence wanted; reports every mismatch at once.
    fn assert_sentences(cases: &[(String, &str)], overrides: &Overrides) {
        let got = |yaml: &str| match plan_of(yaml, overrides) {
            Ok(_) => "(valid)".to_owned(),
            Err(e) => e.to_string(),
        };
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(yaml, want)| got(yaml) != *want)
            .map(|(yaml, want)| format!("for:\n{yaml}\n want: {want}\n  got: {}", got(yaml)))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    }

    fn with_target(target: &str) -> String {
        with(
            "  traffic: {gaBaselineRps: 100}",
            &format!("  target: {target}\n  traffic: {{gaBaselineRps: 100}}"),
        )
    }

    // See: issue #15, items 1 and 2.
    #[test]
    fn each_bound_is_one_sentence_naming_the_value_and_the_limit() {
        let vus = |vus: &str| {
            BASE.replace("constant-arrival-rate", "constant-vus")
                .replace("share: 0.5", vus)
        };
        let second = |scenario: &str| {
            with(
                "        - {name: a, path: /x}\n",
                &format!("        - {{name: a, path: /x}}\n    - {scenario}\n"),
            )
        };
        let cases: Vec<(String, &str)> = vec![
            // 1. Ports and userinfo in URLs.
            (
                with_target("{url: \"http://127.0.0.1:99999\"}"),
                "x.yaml:5:12: spec.target.url: `http://127.0.0.1:99999` has port 99999; a port is a number from 1 to 65535",
            ),
            (
                with_target("{url: \"http://svc:0/api\"}"),
                "x.yaml:5:12: spec.target.url: `http://svc:0/api` has port 0; a port is a number from 1 to 65535",
            ),
            (
                with_target("{url: \"http://alice:s3cretpw@svc:8080/api\"}"),
                "x.yaml:5:12: spec.target.url: userinfo (`user:password@`) is not allowed in a URL; write `http://svc:8080/api` and send credentials in the requests' `headers` (e.g. `authorization`) instead",
            ),
            (
                with_target(
                    "{url: \"http://svc:8080\", admin: {url: \"http://root:hunter2@svc:9091\", token: {env: T}}}",
                ),
                "x.yaml:5:44: spec.target.admin.url: userinfo (`user:password@`) is not allowed in a URL; write `http://svc:9091` and give the admin token as `token` instead",
            ),
            (
                format!("{BASE}  telemetry:\n    traces: {{tempo: {{url: \"http://u:pw@tempo:3200\"}}}}\n"),
                "x.yaml:14:22: spec.telemetry.traces.tempo.url: userinfo (`user:password@`) is not allowed in a URL; write `http://tempo:3200` and give credentials as `basicAuth` or `bearerToken` (read from an environment variable or a file) instead",
            ),
            (
                format!("{BASE}  telemetry:\n    logs: {{loki: {{url: \"http://loki:65536\", selector: '{{app=\"x\"}}'}}}}\n"),
                "x.yaml:14:19: spec.telemetry.logs.loki.url: `http://loki:65536` has port 65536; a port is a number from 1 to 65535",
            ),
            // 2. Rates, shares and multipliers: finite, at least MIN_RATE, at most a process's.
            (
                with("share: 0.5", "rate: 1e12"),
                "x.yaml:9:7: spec.scenarios[0].rate: gives a peak rate of 1000000000000 req/s, more than the 1000000 req/s one loadgen process can drive; use `parallelism` to split the load across runners",
            ),
            (
                with("share: 0.5", "rate: 0.0001"),
                "x.yaml:9:7: spec.scenarios[0].rate: gives a peak rate of 1e-4 req/s, below 0.001 req/s (one iteration every 1000s), the lowest rate loadgen schedules",
            ),
            (
                with(
                    "  traffic: {gaBaselineRps: 100}",
                    "  traffic: {gaBaselineRps: 100, multiplier: 1e308}",
                ),
                "x.yaml:9:7: spec.scenarios[0].share: gives a peak rate of inf req/s (0.5 x gaBaselineRps 100 x multiplier 1e308), more than the 1000000 req/s one loadgen process can drive; use `parallelism` to split the load across runners",
            ),
            (
                second(
                    "{name: b, executor: constant-arrival-rate, rate: 999990, duration: 1s, requests: [{name: a, path: /x}]}",
                ),
                "x.yaml:13:50: spec.scenarios[1].rate: gives all scenarios together a peak rate of 1000140 req/s, more than the 1000000 req/s one loadgen process can drive; use `parallelism` to split the load across runners",
            ),
            (
                BASE.replace("executor: constant-arrival-rate\n      share: 0.5\n      duration: 10s", "executor: ramping-arrival-rate\n      rate: 100\n      stages: [{target: 1, duration: 5s}, {target: 20000, duration: 5s}]"),
                "x.yaml:10:44: spec.scenarios[0].stages[1].target: gives a peak rate of 2000000 req/s, more than the 1000000 req/s one loadgen process can drive; use `parallelism` to split the load across runners",
            ),
            (
                BASE.replace("  traffic: {gaBaselineRps: 100}", "  traffic: {gaBaselineRps: 100, multiplier: 1e308}").replace("executor: constant-arrival-rate\n      share: 0.5\n      duration: 10s", "executor: ramping-arrival-rate\n      share: 0.5\n      stages: [{target: 0, duration: 5s}, {target: 1, duration: 5s}]"),
                "x.yaml:9:7: spec.scenarios[0].share: gives a peak rate of inf req/s (0.5 x gaBaselineRps 100 x multiplier 1e308), more than the 1000000 req/s one loadgen process can drive; use `parallelism` to split the load across runners",
            ),
            (
                format!("{}  parallelism: 4\n", with("share: 0.5", "rate: 8000000")),
                "x.yaml:9:7: spec.scenarios[0].rate: gives a peak rate of 8000000 req/s, 2000000 req/s for each of 4 runners, more than the 1000000 req/s one loadgen process can drive; raise `parallelism` to split the load across more runners",
            ),
            (
                format!(
                    "{}  parallelism: auto\n  maxRatePerRunner: 1000000\n",
                    with("share: 0.5", "rate: 20000000000")
                ),
                "x.yaml:9:7: spec.scenarios[0].rate: gives a peak rate of 20000000000 req/s, 2000000 req/s for each of 10000 runners, more than the 1000000 req/s one loadgen process can drive; lower the load: a run has at most 10000 runners",
            ),
            (
                format!("{BASE}  parallelism: 20000\n"),
                "x.yaml:13:3: spec.parallelism: must be at most 10000 runners, got 20000",
            ),
            (
                format!("{BASE}  parallelism: auto\n"),
                "x.yaml:13:3: spec.parallelism: `auto` needs `spec.maxRatePerRunner` (the most iterations per second one runner is given), e.g. `maxRatePerRunner: 20000`",
            ),
            (
                format!("{BASE}  parallelism: auto\n  maxRatePerRunner: 2000000\n"),
                "x.yaml:14:3: spec.maxRatePerRunner: must be a number from 0.001 to 1000000 (iterations per second one loadgen process can drive), got 2000000",
            ),
            // 3. VUs, in-flight iterations and connections; durations.
            (
                vus("vus: 4000000000"),
                "x.yaml:9:7: spec.scenarios[0].vus: gives a peak of 4000000000 VUs, more than the 100000 VUs one loadgen process can hold; use `parallelism` to split the load across runners",
            ),
            (
                BASE.replace("executor: constant-arrival-rate\n      share: 0.5\n      duration: 10s", "executor: ramping-vus\n      stages: [{target: 10, duration: 5s}, {target: 100001, duration: 5s}]"),
                "x.yaml:9:45: spec.scenarios[0].stages[1].target: gives a peak of 100001 VUs, more than the 100000 VUs one loadgen process can hold; use `parallelism` to split the load across runners",
            ),
            (
                second(
                    "{name: b, executor: constant-vus, vus: 50000, duration: 1s, requests: [{name: a, path: /x}]}",
                )
                .replace("executor: constant-arrival-rate\n      share: 0.5", "executor: constant-vus\n      vus: 50001"),
                "x.yaml:13:41: spec.scenarios[1].vus: gives all scenarios together a peak of 100001 VUs, more than the 100000 VUs one loadgen process can hold; use `parallelism` to split the load across runners",
            ),
            (
                with("duration: 10s", "duration: 10s\n      maxInFlight: 4000000000"),
                "x.yaml:11:7: spec.scenarios[0].maxInFlight: allows 4000000000 in-flight iterations, more than the 100000 in-flight iterations one loadgen process can hold; use `parallelism` to split the load across runners",
            ),
            (
                second("{name: users, executor: constant-vus, vus: 99901, duration: 10s, requests: [{name: a, path: /x}]}")
                    .replace("duration: 10s\n      requests", "duration: 10s\n      maxInFlight: 100\n      requests"),
                "x.yaml:14:45: spec.scenarios[1].vus: gives all scenarios together 100001 concurrent iterations (VUs plus each arrival-rate scenario's `maxInFlight`), more than the 100000 concurrent iterations one loadgen process can hold; use `parallelism` to split the load across runners",
            ),
            (
                format!("{BASE}  parallelism: 2\n  thresholds:\n    http_reqs: [{{threshold: \"count>1\", window: 10ms}}]\n"),
                "x.yaml:15:5: spec.thresholds.http_reqs: a window of `10ms` over a run of `40s` gives 4000 windows across the windowed thresholds, more than the 720 a run split over runners can send back to the operator; use windows of at least `1s`",
            ),
            (
                with_target("{url: \"http://svc:8080\", maxConnections: 100001}"),
                "x.yaml:5:36: spec.target.maxConnections: must be at most 100000 (the most in-flight requests of a scenario one loadgen process holds), got 100001",
            ),
            (
                with("duration: 10s", "duration: 100000000h"),
                "x.yaml:10:7: spec.scenarios[0].duration: `100000000h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
            ),
            (
                with("duration: 10s", "duration: 10s\n      gracefulStop: 745h"),
                "x.yaml:11:7: spec.scenarios[0].gracefulStop: `745h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
            ),
            (
                with("duration: 10s", "duration: 400h\n      startTime: 400h"),
                "x.yaml:7:7: spec.scenarios[0]: ends `800h` after the start of the run (`startTime` plus its duration), beyond the 31 days (`744h`) a run may last",
            ),
            (
                BASE.replace("executor: constant-arrival-rate\n      share: 0.5\n      duration: 10s", "executor: ramping-arrival-rate\n      rate: 100\n      stages: [{target: 1, duration: 800h}]"),
                "x.yaml:10:28: spec.scenarios[0].stages[0].duration: `800h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
            ),
            (
                with_target("{url: \"http://svc:8080\", timeout: 1000h}"),
                "x.yaml:5:36: spec.target.timeout: `1000h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
            ),
            (
                format!("{BASE}  telemetry: {{sample: {{perSecond: 1e-300}}}}\n"),
                "x.yaml:13:24: spec.telemetry.sample.perSecond: must be a number from 0.001 to 1000000 (requests verified per second; `rate: 1` verifies every request), got 1e-300",
            ),
            (
                format!("{BASE}  telemetry: {{sample: {{perSecond: 2000000}}}}\n"),
                "x.yaml:13:24: spec.telemetry.sample.perSecond: must be a number from 0.001 to 1000000 (requests verified per second; `rate: 1` verifies every request), got 2000000",
            ),
            (
                format!("{BASE}  telemetry: {{sample: {{rate: .nan}}}}\n"),
                "x.yaml:13:24: spec.telemetry.sample.rate: must be a fraction > 0 and <= 1, got NaN",
            ),
            (
                format!("{BASE}  telemetry: {{maxQueriesPerSecond: 0}}\n"),
                "x.yaml:13:15: spec.telemetry.maxQueriesPerSecond: must be a number from 0.001 to 10000 (queries per second across all backends), got 0",
            ),
            (
                format!("{BASE}  telemetry: {{maxQueriesPerSecond: 1e5}}\n"),
                "x.yaml:13:15: spec.telemetry.maxQueriesPerSecond: must be a number from 0.001 to 10000 (queries per second across all backends), got 100000",
            ),
            (
                format!("{BASE}  telemetry: {{settleTimeout: 1000h}}\n"),
                "x.yaml:13:15: spec.telemetry.settleTimeout: `1000h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
            ),
            (
                format!("{BASE}  telemetry: {{pollInterval: 800h}}\n"),
                "x.yaml:13:15: spec.telemetry.pollInterval: `800h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
            ),
            (
                format!("{BASE}  telemetry:\n    traces: {{tempo: {{url: \"http://tempo:3200\", timeout: 0s}}}}\n"),
                "x.yaml:14:48: spec.telemetry.traces.tempo.timeout: must be longer than 0s, e.g. `10s`",
            ),
            (
                format!("{BASE}  telemetry: {{expectKeep: [{{name: slow, minLatency: 1000h, keep: 1}}]}}\n"),
                "x.yaml:13:41: spec.telemetry.expectKeep[0].minLatency: `1000h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
            ),
            (
                format!("{BASE}  chaos: [{{at: 1000h, fault: {{errorRate: 0.1}}}}]\n"),
                "x.yaml:13:12: spec.chaos[0].at: `1000h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
            ),
            (
                format!("{BASE}  thresholds:\n    http_reqs: [{{threshold: \"count>1\", window: 1000h}}]\n"),
                "x.yaml:14:40: spec.thresholds.http_reqs[0].window: `1000h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
            ),
            (
                format!("{BASE}  thresholds:\n    http_reqs: [{{threshold: \"count>1\", delayAbortEval: 1000h}}]\n"),
                "x.yaml:14:40: spec.thresholds.http_reqs[0].delayAbortEval: `1000h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
            ),
            // 4. Headers the client writes itself.
            (
                with("path: /x", "path: /x, headers: {Content-Length: \"5\"}"),
                "x.yaml:12:41: spec.scenarios[0].requests[0].headers.Content-Length: `Content-Length` may not be set here: loadgen's HTTP client sets the framing, connection and trace headers itself (`host`, `content-length`, `transfer-encoding`, `connection`, `keep-alive`, `proxy-connection`, `upgrade`, `te`, `trailer`, `traceparent`, `x-request-id`); remove it",
            ),
            // 5. Body files: the shape of the path, before any file is touched.
            (
                with("path: /x", "path: /x, bodyFile: /etc/passwd"),
                "x.yaml:12:31: spec.scenarios[0].requests[0].bodyFile: `/etc/passwd` is an absolute path; a body file must lie in the scenario file's folder or below it (or pass `--allow-body-files-outside`)",
            ),
            (
                with("path: /x", "path: /x, bodyFile: data/../../secret.json"),
                "x.yaml:12:31: spec.scenarios[0].requests[0].bodyFile: `data/../../secret.json` goes up a folder (`..`); a body file must lie in the scenario file's folder or below it (or pass `--allow-body-files-outside`)",
            ),
        ];
        assert_sentences(&cases, &Overrides::default());

        // Every reserved header, in any case.
        for name in RESERVED_HEADERS {
            let yaml = with(
                "path: /x",
                &format!("path: /x, headers: {{{}: v}}", name.to_uppercase()),
            );
            let want = format!("`{}` may not be set here", name.to_uppercase());
            assert!(
                error_of(&yaml).contains(&want),
                "{name}: {}",
                error_of(&yaml)
            );
        }
        // The password is in no sentence.
        let yaml = with_target("{url: \"http://alice:s3cretpw@svc:8080\"}");
        assert!(!error_of(&yaml).contains("s3cretpw"));
    }

    #[test]
    fn flags_are_bounded_like_the_fields_they_override() {
        let flag = |multiplier: Option<f64>, duration: Option<Duration>| Overrides {
            multiplier,
            duration,
            ..Overrides::default()
        };
        let cases = [
            (
                flag(Some(1e308), None),
                "x.yaml: --multiplier: 1e308 gives spec.scenarios[0] a peak rate of inf req/s (0.5 x gaBaselineRps 100 x multiplier 1e308), more than the 1000000 req/s one loadgen process can drive; use `parallelism` to split the load across runners",
            ),
            (
                flag(Some(30_000.0), None),
                "x.yaml: --multiplier: 30000 gives spec.scenarios[0] a peak rate of 1500000 req/s (0.5 x gaBaselineRps 100 x multiplier 30000), more than the 1000000 req/s one loadgen process can drive; use `parallelism` to split the load across runners",
            ),
            (
                flag(Some(1e-9), None),
                "x.yaml: --multiplier: 1e-9 gives spec.scenarios[0] a peak rate of 5e-8 req/s (0.5 x gaBaselineRps 100 x multiplier 1e-9), below 0.001 req/s (one iteration every 1000s), the lowest rate loadgen schedules",
            ),
            (
                flag(Some(f64::INFINITY), None),
                "--multiplier: must be a finite number > 0, got inf",
            ),
            (
                flag(None, Some(MAX_DURATION + Duration::from_secs(3600))),
                "--duration: `745h` is longer than 31 days (`744h`), the longest duration loadgen accepts",
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .map(|(overrides, want)| match plan_of(BASE, overrides) {
                Ok(_) => (want, "(valid)".to_owned()),
                Err(e) => (want, e.to_string()),
            })
            .filter(|(want, got)| *want != got)
            .map(|(want, got)| format!(" want: {want}\n  got: {got}"))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        // A `--duration` that scales `startTime` past the limit.
        let late = with("duration: 10s", "duration: 1s\n      startTime: 700h");
        assert_eq!(
            plan_of(&late, &flag(None, Some(Duration::from_secs(3600))))
                .unwrap_err()
                .to_string(),
            "x.yaml:7:7: spec.scenarios[0]: ends `2520001h` after the start of the run (`startTime` plus its duration), beyond the 31 days (`744h`) a run may last"
        );
        // ... so far past it that the end is no `Duration`.
        let later = with("duration: 10s", "duration: 1us\n      startTime: 744h");
        assert_eq!(
            plan_of(&later, &flag(None, Some(MAX_DURATION)))
                .unwrap_err()
                .to_string(),
            "x.yaml:7:7: spec.scenarios[0]: ends `1.993e15h` after the start of the run (`startTime` plus its duration), beyond the 31 days (`744h`) a run may last"
        );
    }

    #[test]
    fn a_plan_at_every_limit_is_valid() {
        let yaml = "\
apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: edge}
spec:
  target: {url: \"http://svc:65535/api\", maxConnections: 100000, timeout: 744h}
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 1000000
      duration: 743h
      startTime: 1h
      gracefulStop: 744h
      maxInFlight: 50000
      requests:
        - {name: a, path: /x, headers: {content-type: application/json, authorization: Bearer x}}
    - name: users
      executor: ramping-vus
      vus: 10
      stages: [{target: 50000, duration: 1s}]
      requests: [{name: a, path: /x}]
  telemetry:
    sample: {perSecond: 1000000}
    settleTimeout: 744h
    pollInterval: 744h
    maxQueriesPerSecond: 10000
    metrics: {prometheus: {url: \"http://prometheus:1\", timeout: 744h}}
  thresholds:
    http_reqs: [{threshold: \"count>1\", window: 744h, delayAbortEval: 744h}]
";
        let plan = plan_of(yaml, &Overrides::default()).unwrap();
        assert_eq!(plan.total_peak_rate(), MAX_RATE_PER_PROCESS);
        // Split over runners, the smallest window the refusal names is accepted.
        let split = format!(
            "{BASE}  parallelism: 2\n  thresholds:\n    http_reqs: [{{threshold: \"count>1\", window: 1s}}]\n"
        );
        plan_of(&split, &Overrides::default()).unwrap();
        assert_eq!(plan.max_duration(), MAX_DURATION + MAX_DURATION);

        let slow = with("share: 0.5", "rate: 0.001").replace("duration: 10s", "duration: 744h");
        let plan = plan_of(&slow, &Overrides::default()).unwrap();
        assert_eq!(plan.total_peak_rate(), MIN_RATE);

        // Split across runners, each runner's part is judged.
        for (extra, rate) in [
            ("  parallelism: 4\n", "rate: 4000000"),
            (
                "  parallelism: auto\n  maxRatePerRunner: 1000000\n",
                "rate: 4000000",
            ),
            ("  parallelism: 10000\n", "rate: 10000000000"),
        ] {
            let yaml = format!("{}{extra}", with("share: 0.5", rate));
            assert!(plan_of(&yaml, &Overrides::default()).is_ok(), "{extra}");
        }
        let exact = Overrides {
            multiplier: Some(20_000.0),
            duration: Some(MAX_DURATION),
            ..Overrides::default()
        };
        assert_eq!(
            plan_of(BASE, &exact).unwrap().total_peak_rate(),
            MAX_RATE_PER_PROCESS
        );
    }

    #[test]
    fn the_summary_of_vu_scenarios_alone_names_no_rate() {
        let yaml = BASE
            .replace("constant-arrival-rate", "constant-vus")
            .replace("share: 0.5", "vus: 7");
        assert_eq!(
            plan_of(&yaml, &Overrides::default()).unwrap().summary(),
            "t: 1 scenario (api), 7 VUs, duration 10s, 0 thresholds, target embedded echo-server"
        );
    }

    // See: issue #15, item 2.
    #[test]
    fn body_files_are_regular_files_of_at_most_16_mib_in_the_scenario_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let data = root.join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("body.json"), "{}").unwrap();
        let limit = MAX_BODY_BYTES as usize;
        std::fs::write(data.join("limit.bin"), vec![b'x'; limit]).unwrap();
        std::fs::write(data.join("big.bin"), vec![b'x'; limit + 1]).unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().canonicalize().unwrap().join("secret.txt");
        std::fs::write(&secret, "s").unwrap();
        std::os::unix::fs::symlink(&secret, data.join("link.txt")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(data.join("pipe"))
            .status()
            .unwrap();
        assert!(fifo.success());

        let scenario = root.join("x.yaml");
        let load = |file: &str, anywhere: bool| {
            let yaml = with("path: /x", &format!("path: /x, bodyFile: \"{file}\""));
            std::fs::write(&scenario, yaml).unwrap();
            let bodies = BodySource::Beside {
                allow_outside: anywhere,
            };
            crate::load::load_plan_with(&scenario, &Overrides::default(), bodies)
        };
        let body = |file: &str, anywhere: bool| match load(file, anywhere) {
            Ok(plan) => plan.scenarios[0].requests[0].body.clone(),
            Err(e) => panic!("{file}: {e}"),
        };
        assert_eq!(body("data/body.json", false), "{}");
        assert_eq!(body("data/limit.bin", false).len(), limit);
        assert_eq!(body("data/link.txt", true), "s");
        assert_eq!(body(&secret.display().to_string(), true), "s");

        let at = format!(
            "{}:12:31: spec.scenarios[0].requests[0].bodyFile: ",
            scenario.display()
        );
        let root = root.display();
        let rule = "a body file must lie in the scenario file's folder or below it (or pass `--allow-body-files-outside`)";
        let cases = [
            (
                "data/big.bin",
                false,
                format!("`data/big.bin` (resolved to `{root}/data/big.bin`) is larger than 16 MiB (16777216 bytes), the largest request body loadgen sends"),
            ),
            (
                "data",
                false,
                format!("`data` (resolved to `{root}/data`) is a directory, not a regular file; a body file must be a regular file"),
            ),
            (
                "data/pipe",
                false,
                format!("`data/pipe` (resolved to `{root}/data/pipe`) is a FIFO, not a regular file; a body file must be a regular file"),
            ),
            (
                "/dev/zero",
                true,
                "`/dev/zero` (resolved to `/dev/zero`) is a character device, not a regular file; a body file must be a regular file".to_owned(),
            ),
            (
                "data/link.txt",
                false,
                format!("`data/link.txt` (resolved to `{root}/data/link.txt`) leads out of the scenario file's folder through a symbolic link, to `{}`; {rule}", secret.display()),
            ),
            (
                "/dev/zero",
                false,
                format!("`/dev/zero` is an absolute path; {rule}"),
            ),
            (
                "data/missing.json",
                false,
                format!("cannot read `data/missing.json` (resolved to `{root}/data/missing.json`): No such file or directory (os error 2); paths are relative to the scenario file"),
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .map(|(file, anywhere, want)| {
                let got = match load(file, *anywhere) {
                    Ok(_) => "(valid)".to_owned(),
                    Err(e) => e.to_string(),
                };
                (file, format!("{at}{want}"), got)
            })
            .filter(|(_, want, got)| want != got)
            .map(|(file, want, got)| format!("{file}:\n want: {want}\n  got: {got}"))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn deferred_body_files_are_checked_for_shape_but_not_read() {
        let spec = |file: &str| -> LoadTestSpec {
            serde_saphyr::from_str(&format!(
                "scenarios: [{{name: a, executor: constant-vus, vus: 1, duration: 1s, requests: [{{name: r, path: /, bodyFile: \"{file}\"}}]}}]"
            ))
            .unwrap()
        };
        let plan = |file: &str, body_files: BodyFiles<'_>| {
            Plan::from_spec("t", &spec(file), body_files, &Overrides::default())
        };
        let deferred = plan("data/not-here.json", BodyFiles::Deferred).unwrap();
        assert!(deferred.scenarios[0].requests[0].body.is_empty());
        let field = "spec.scenarios[0].requests[0].bodyFile";
        let rule = "a body file must lie in the scenario file's folder or below it";
        for (file, want) in [
            (
                "/etc/passwd",
                format!("{field}: `/etc/passwd` is an absolute path; {rule}"),
            ),
            (
                "a/../../x",
                format!("{field}: `a/../../x` goes up a folder (`..`); {rule}"),
            ),
        ] {
            assert_eq!(
                plan(file, BodyFiles::Deferred).unwrap_err().to_string(),
                want
            );
        }
        // A folder given as a path reads, and refuses what lies outside it.
        let err = plan("/etc/passwd", Path::new("/").into()).unwrap_err();
        assert!(
            err.message.starts_with("`/etc/passwd` is an absolute path"),
            "{err}"
        );
    }

    #[test]
    fn a_plan_split_over_runners_is_not_run_whole_in_one_process() {
        let split = format!("{}  parallelism: 4\n", with("share: 0.5", "rate: 4000000"));
        let plan = plan_of(&split, &Overrides::default()).unwrap();
        assert_eq!(
            plan.check_one_process().unwrap_err().to_string(),
            "the scenarios ask for a peak of 4000000 req/s, more than the 1000000 req/s one loadgen process can drive; `loadgen operator` splits a plan with `parallelism` over runners in a cluster, or lower the rate with `--multiplier` to run it here"
        );
        let segment = plan.segment(0, NonZeroU32::new(4).unwrap()).unwrap();
        segment.check_one_process().unwrap();
        plan_of(&with("share: 0.5", "rate: 1000000"), &Overrides::default())
            .unwrap()
            .check_one_process()
            .unwrap();
    }

    #[test]
    fn a_runner_reads_body_files_from_its_mounted_folder_not_beside_the_spec() {
        let root = tempfile::tempdir().unwrap();
        let (spec_dir, bodies) = (root.path().join("spec"), root.path().join("bodies"));
        std::fs::create_dir_all(&spec_dir).unwrap();
        std::fs::create_dir_all(&bodies).unwrap();
        std::fs::write(spec_dir.join("order.json"), "beside").unwrap();
        std::fs::write(bodies.join("order.json"), "mounted").unwrap();
        let scenario = spec_dir.join("loadtest.yaml");
        let yaml = with("path: /x", "path: /x, bodyFile: order.json");
        std::fs::write(&scenario, &yaml).unwrap();
        let load = |bodies| crate::load::load_plan_with(&scenario, &Overrides::default(), bodies);
        let body = |plan: Plan| plan.scenarios[0].requests[0].body.clone();
        assert_eq!(body(load(BodySource::default()).unwrap()), "beside");
        assert_eq!(body(load(BodySource::Folder(&bodies)).unwrap()), "mounted");
        // The spec's own folder is outside the mounted one.
        std::fs::write(
            &scenario,
            with("path: /x", "path: /x, bodyFile: ../spec/order.json"),
        )
        .unwrap();
        let err = load(BodySource::Folder(&bodies)).unwrap_err();
        assert!(err.message.contains("goes up a folder"), "{err}");
    }
}
