//! A runner's partial results and their exact merge.
//!
//! Each runner writes its [`Stats`] as a [`Partial`]: every series keyed by *names*
//! (scenario, request) rather than plan indices — a runner whose part of a scenario is zero
//! does not run it, so indices differ between runners — with its counters and its
//! HdrHistograms serialized (V2 + DEFLATE, base64). The operator maps names back to the
//! whole run's plan and merges with `Histogram::add`: percentiles of the merged data are
//! those of one histogram over all samples; nothing is averaged.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use ricochet_crds::{ThresholdVerdict, Verdict};
use ricochet_reports::model::{ExporterCounts, ExporterSource, Verdict as ModelVerdict};
use serde::{Deserialize, Serialize};

use ricochet_engine::client::ErrorCause;
use ricochet_engine::evaluate::{TagIndex, judge};
use ricochet_engine::judge::{Evidence, PlatformEvidence, TelemetryEvidence, WindowTally, Windows};
use ricochet_engine::metric::Metric;
use ricochet_engine::plan::Plan;
use ricochet_engine::stats::{Hist, ScenarioCounters, ScenarioKey, SeriesKey, SeriesStats, Stats};
use ricochet_engine::telemetry::TelemetryJudge;
use ricochet_engine::thresholds::Scope;
use ricochet_reports::model::ThresholdResult;
use ricochet_verify::fate::MissingSplit;
use ricochet_verify::verification::Results;
use ricochet_verify::{ClassCounts, Signal, Tally};

/// Version of the [`Partial`] format.
pub const PARTIAL_VERSION: u32 = 2;

/// A partial result cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum PartialError {
    /// A histogram could not be serialized.
    #[error("cannot serialize a histogram of series {series}: {message}")]
    Serialize {
        /// Which series.
        series: String,
        /// The serializer's message.
        message: String,
    },
    /// A histogram could not be read back.
    #[error("runner {runner}: cannot read the `{field}` histogram of series {series}: {message}")]
    Deserialize {
        /// Which runner.
        runner: u32,
        /// Which series.
        series: String,
        /// Which histogram.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// A name does not exist in the run's plan.
    #[error("runner {runner}: {what} `{name}` is not in the run's plan")]
    UnknownName {
        /// Which runner.
        runner: u32,
        /// `scenario`, `request` or `error cause`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The document is not a partial result.
    #[error(
        "runner {runner}: the partial result is not valid JSON of format {PARTIAL_VERSION}: {message}"
    )]
    Format {
        /// Which runner.
        runner: u32,
        /// Why.
        message: String,
    },
}

/// One runner's measurements.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Partial {
    /// Format version ([`PARTIAL_VERSION`]).
    pub version: u32,
    /// Runner index.
    pub runner: u32,
    /// Seconds the runner's load ran (for counter rates).
    pub elapsed_seconds: f64,
    /// Per-series measurements.
    pub series: Vec<PartialSeries>,
    /// Per-scenario counters.
    pub scenarios: Vec<PartialScenario>,
    /// The runner's telemetry verification, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<PartialTelemetry>,
    /// Per closed window of each windowed threshold: the series it selected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<PartialWindow>,
    /// The windows were left out to fit the result into its ConfigMap
    /// ([`MAX_PARTIAL_BYTES`]); windowed thresholds are then unknown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub windows_omitted: bool,
    /// The runner's exporter counts from the echo-server's run accounting (each runner
    /// tags its requests with its own run id, so the runners' counts add up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exporter: Vec<ExporterCounts>,
    /// Where the runner read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter_source: Option<ExporterSource>,
    /// Runner 0's query checks and alert drills: their verdicts and what they saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PartialPlatform>,
}

/// The platform checks of a run, as runner 0 judged them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartialPlatform {
    /// The verdicts of the plan's `query` and `alert_*` thresholds.
    pub thresholds: Vec<ThresholdResult>,
    /// The verdicts of the drilled alerts' own bounds.
    pub expectations: Vec<ThresholdResult>,
    /// What the checks saw (`summary.json`'s `platform`).
    pub summary: ricochet_reports::model::PlatformSummary,
}

impl PartialPlatform {
    /// Runner 0's platform checks: `observed` judged on its `plan`'s thresholds.
    pub fn judge(
        plan: &Plan,
        observed: &ricochet_engine::platform::Observed,
        summary: ricochet_reports::model::PlatformSummary,
        seconds: f64,
    ) -> Self {
        Self {
            thresholds: plan
                .thresholds
                .iter()
                .filter(|th| th.metric.is_platform())
                .map(|th| {
                    ricochet_engine::summary::threshold_result(th, observed.judge(th, seconds))
                })
                .collect(),
            expectations: observed.expectation_results(),
            summary,
        }
    }

    /// Leaves out the query series' points (the charts), keeping every verdict: for a
    /// result that would not fit its ConfigMap otherwise.
    pub fn without_points(&mut self) {
        for q in &mut self.summary.queries {
            q.series.clear();
        }
    }
}

/// Largest partial result a runner writes (a ConfigMap holds at most 1 MiB).
pub const MAX_PARTIAL_BYTES: usize = 900 * 1024;

/// One closed window of one windowed threshold on one runner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartialWindow {
    /// The threshold's key, e.g. `http_req_duration{scenario:api}`.
    pub threshold: String,
    /// Its condition, e.g. `p(99)<800ms`.
    pub expression: String,
    /// Window length, seconds.
    pub window_secs: u32,
    /// Window index (`second / window_secs`).
    pub index: u32,
    /// The series the threshold selected in this window.
    pub series: Vec<PartialSeries>,
    /// The scenario counters it selected.
    pub scenarios: Vec<PartialScenario>,
}

impl PartialWindow {
    /// The closed windows a runner kept, as partial windows (`plan`: the runner's plan).
    pub fn from_closed(
        plan: &Plan,
        closed: &[ricochet_engine::aggregate::ClosedWindow],
    ) -> Result<Vec<Self>, PartialError> {
        closed
            .iter()
            .filter_map(|c| {
                let th = plan.thresholds.get(c.threshold)?;
                let Scope::Window(d) = th.scope else {
                    return None;
                };
                Some(
                    encode_stats(&c.stats, plan).map(|(series, scenarios)| PartialWindow {
                        threshold: th.key.clone(),
                        expression: th.expression.clone(),
                        window_secs: ricochet_engine::judge::window_secs(d),
                        index: c.index,
                        series,
                        scenarios,
                    }),
                )
            })
            .collect()
    }
}

/// Every runner's results merged: totals, telemetry tallies, and windows per windowed
/// threshold.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    /// All series and counters.
    pub stats: Stats,
    /// The longest runner's elapsed seconds.
    pub elapsed: f64,
    /// Telemetry tallies, when the runners verified.
    pub telemetry: Option<Results>,
    /// `(threshold index in the plan, window index)` → the merged window.
    pub windows: BTreeMap<(usize, u32), Stats>,
    /// The first runner whose windows were omitted, if any.
    pub windows_omitted: Option<u32>,
    /// The runners' exporter counts, added up per signal.
    pub exporter: Vec<ExporterCounts>,
    /// Where they were read, all runners together.
    pub exporter_source: Option<ExporterSource>,
    /// Runner 0's platform checks.
    pub platform: Option<PartialPlatform>,
}

/// Merges every runner's partial result exactly over the whole run's `plan`.
pub fn merge_run(plan: &Plan, partials: &[Partial]) -> Result<Merged, PartialError> {
    let (stats, elapsed) = merge_partials(plan, partials)?;
    let telemetry = merge_telemetry(plan, partials)?;
    let mut windows: BTreeMap<(usize, u32), Stats> = BTreeMap::new();
    for p in partials {
        for w in &p.windows {
            let Some(i) = plan.thresholds.iter().position(|th| {
                th.key == w.threshold
                    && th.expression == w.expression
                    && matches!(th.scope, Scope::Window(d) if ricochet_engine::judge::window_secs(d) == w.window_secs)
            }) else {
                continue;
            };
            let into = windows.entry((i, w.index)).or_default();
            merge_stats(p.runner, &w.series, &w.scenarios, plan, into)?;
        }
    }
    Ok(Merged {
        stats,
        elapsed,
        telemetry,
        windows,
        windows_omitted: partials
            .iter()
            .find(|p| p.windows_omitted)
            .map(|p| p.runner),
        exporter: merge_exporter(partials),
        exporter_source: merge_exporter_source(partials),
        platform: partials.iter().find_map(|p| p.platform.clone()),
    })
}

/// The runners' exporter counts added up per signal, in the order first seen.
fn merge_exporter(partials: &[Partial]) -> Vec<ExporterCounts> {
    let mut out: Vec<ExporterCounts> = Vec::new();
    for e in partials.iter().flat_map(|p| &p.exporter) {
        match out.iter_mut().find(|m| m.signal == e.signal) {
            Some(m) => {
                m.emitted += e.emitted;
                m.accepted += e.accepted;
                m.refused += e.refused;
                m.dropped += e.dropped;
                m.injected += e.injected;
            }
            None => out.push(e.clone()),
        }
    }
    out
}

/// Where the runners read their exporter counts: the replicas (each named once), every
/// unread reason, and the runs' requests added up.
fn merge_exporter_source(partials: &[Partial]) -> Option<ExporterSource> {
    let mut sources = partials.iter().filter_map(|p| p.exporter_source.as_ref());
    let mut out = sources.next()?.clone();
    for s in sources {
        for r in &s.replicas {
            if !out.replicas.contains(r) {
                out.replicas.push(r.clone());
            }
        }
        out.unread.extend(s.unread.iter().cloned());
        out.partial |= s.partial;
        out.requests += s.requests;
        out.chaos_dropped_requests += s.chaos_dropped_requests;
    }
    Some(out)
}

/// One runner's telemetry verification: its share of the samples, tallied per verifier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartialTelemetry {
    /// Requests the runner sampled.
    pub sampled: u64,
    /// Samples dropped because a verifier's queue was full.
    pub dropped: u64,
    /// Metric probes the runner sent.
    #[serde(default)]
    pub probes: u64,
    /// One tally per verifier.
    pub tallies: Vec<PartialTally>,
}

/// One verifier's tally, histograms serialized like the series'.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartialTally {
    /// `trace`, `log` or `metric`.
    pub signal: String,
    /// The backend, for reports.
    pub backend: String,
    /// Found samples.
    pub found: u64,
    /// Found but incomplete traces.
    pub incomplete: u64,
    /// Spans of found traces that were not the echo-server's own.
    #[serde(default)]
    pub extra_spans: u64,
    /// Missing samples.
    pub missing: u64,
    /// Unknown samples.
    pub unknown: u64,
    /// Superseded exemplars.
    pub superseded: u64,
    /// `[found, missing, unknown]` per keep class.
    pub by_class: Vec<[u64; 3]>,
    /// Unknown reasons with counts.
    pub unknown_reasons: BTreeMap<String, u64>,
    /// `telemetry_<signal>_ingest_latency`.
    pub ingest_latency: String,
    /// `telemetry_<signal>_query_duration`.
    pub query_duration: String,
    /// Ingest latency per second: `[found, sum µs]`.
    pub ingest_series: Vec<[u64; 2]>,
    /// Found probes first asked late.
    #[serde(default)]
    pub first_asked_late: u64,
    /// Found presence samples.
    #[serde(default)]
    pub presence_only: u64,
    /// Missing samples by export fate: `[refused, dropped, injected, after acceptance,
    /// unaccounted]`.
    #[serde(default)]
    pub missing_split: [u64; 5],
    /// `telemetry_<signal>_export_wait`.
    #[serde(default)]
    pub export_wait: Option<String>,
    /// `telemetry_<signal>_backend_latency`.
    #[serde(default)]
    pub backend_latency: Option<String>,
    /// `[found, missing, unknown]` per replica that served the requests.
    #[serde(default)]
    pub by_replica: BTreeMap<String, [u64; 3]>,
}

impl PartialTelemetry {
    /// A runner's verification results as a partial.
    pub fn from_results(r: &Results) -> Result<Self, PartialError> {
        let tallies = r
            .signals
            .iter()
            .map(|(backend, t)| {
                let label = format!("telemetry {}", t.signal.metric_label());
                Ok(PartialTally {
                    signal: t.signal.metric_label().to_owned(),
                    backend: backend.clone(),
                    found: t.found,
                    incomplete: t.incomplete,
                    extra_spans: t.extra_spans,
                    missing: t.missing,
                    unknown: t.unknown,
                    superseded: t.superseded,
                    by_class: t
                        .by_class
                        .iter()
                        .map(|c| [c.found, c.missing, c.unknown])
                        .collect(),
                    unknown_reasons: t.unknown_reasons.clone(),
                    ingest_latency: encode(&t.ingest_latency, &label)?,
                    query_duration: encode(&t.query_duration, &label)?,
                    ingest_series: t.ingest_series.iter().map(|(n, s)| [*n, *s]).collect(),
                    first_asked_late: t.first_asked_late,
                    presence_only: t.presence_only,
                    missing_split: {
                        let m = &t.missing_split;
                        [
                            m.refused,
                            m.dropped,
                            m.injected,
                            m.after_acceptance,
                            m.unaccounted,
                        ]
                    },
                    by_replica: t
                        .by_replica
                        .iter()
                        .map(|(r, c)| (r.clone(), [c.found, c.missing, c.unknown]))
                        .collect(),
                    export_wait: Some(encode(&t.export_wait, &label)?),
                    backend_latency: Some(encode(&t.backend_latency, &label)?),
                })
            })
            .collect::<Result<_, PartialError>>()?;
        Ok(Self {
            sampled: r.sampled,
            dropped: r.dropped,
            probes: r.probes,
            tallies,
        })
    }

    fn tallies(&self, runner: u32) -> Result<Vec<(String, Tally)>, PartialError> {
        self.tallies
            .iter()
            .map(|p| {
                let signal = match p.signal.as_str() {
                    "trace" => Signal::Traces,
                    "log" => Signal::Logs,
                    "metric" => Signal::Metrics,
                    other => {
                        return Err(PartialError::Format {
                            runner,
                            message: format!("unknown telemetry signal `{other}`"),
                        });
                    }
                };
                let label = format!("telemetry {}", p.signal);
                let mut t = Tally::new(signal);
                t.found = p.found;
                t.incomplete = p.incomplete;
                t.extra_spans = p.extra_spans;
                t.missing = p.missing;
                t.unknown = p.unknown;
                t.superseded = p.superseded;
                t.by_class = p
                    .by_class
                    .iter()
                    .map(|c| ClassCounts {
                        found: c[0],
                        missing: c[1],
                        unknown: c[2],
                    })
                    .collect();
                t.unknown_reasons = p.unknown_reasons.clone();
                t.ingest_latency = decode(&p.ingest_latency, runner, &label, "ingestLatency")?;
                t.query_duration = decode(&p.query_duration, runner, &label, "queryDuration")?;
                t.ingest_series = p.ingest_series.iter().map(|c| (c[0], c[1])).collect();
                t.first_asked_late = p.first_asked_late;
                t.by_replica = p
                    .by_replica
                    .iter()
                    .map(|(r, c)| {
                        let counts = ClassCounts {
                            found: c[0],
                            missing: c[1],
                            unknown: c[2],
                        };
                        (r.clone(), counts)
                    })
                    .collect();
                t.presence_only = p.presence_only;
                let [refused, dropped, injected, after_acceptance, unaccounted] = p.missing_split;
                t.missing_split = MissingSplit {
                    refused,
                    dropped,
                    injected,
                    after_acceptance,
                    unaccounted,
                };
                if let Some(h) = &p.export_wait {
                    t.export_wait = decode(h, runner, &label, "exportWait")?;
                }
                if let Some(h) = &p.backend_latency {
                    t.backend_latency = decode(h, runner, &label, "backendLatency")?;
                }
                Ok((p.backend.clone(), t))
            })
            .collect()
    }
}

/// Every runner's telemetry tallies merged per signal (exactly: counters added,
/// histograms merged), judged with the whole run's sampling classes; `None` when the plan
/// verifies no telemetry or no runner reported any.
pub fn merge_telemetry(plan: &Plan, partials: &[Partial]) -> Result<Option<Results>, PartialError> {
    let Some(tp) = &plan.telemetry else {
        return Ok(None);
    };
    let mut signals: Vec<(String, Tally)> = Vec::new();
    let (mut sampled, mut dropped, mut probes, mut any) = (0, 0, 0, false);
    for p in partials {
        let Some(t) = &p.telemetry else { continue };
        any = true;
        sampled += t.sampled;
        dropped += t.dropped;
        probes += t.probes;
        for (backend, tally) in t.tallies(p.runner)? {
            match signals.iter_mut().find(|(_, s)| s.signal == tally.signal) {
                Some((_, s)) => s.merge(&tally),
                None => signals.push((backend, tally)),
            }
        }
    }
    Ok(any.then(|| Results {
        signals,
        classes: tp.classes.clone(),
        sample: tp.sample,
        settle_timeout: tp.poll.settle_timeout,
        sampled,
        dropped,
        probes,
        probe_schedule: tp.poll.schedule(true),
    }))
}

/// One series, keyed by names.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartialSeries {
    /// Scenario name.
    pub scenario: String,
    /// Request name.
    pub request: String,
    /// HTTP status, 0 without a response.
    pub status: u16,
    /// Stage index + 1, 0 without stages.
    pub phase: u16,
    /// Completed requests.
    pub requests: u64,
    /// Failed requests.
    pub failed: u64,
    /// Bytes sent.
    pub data_sent: u64,
    /// Bytes received.
    pub data_received: u64,
    /// `http_req_duration`, V2+DEFLATE, base64.
    pub duration: String,
    /// `http_req_waiting`.
    pub waiting: String,
    /// `http_req_service_duration`.
    pub service: String,
    /// `http_req_schedule_lag`.
    pub schedule_lag: String,
    /// `http_req_blocked`.
    pub blocked: String,
    /// `http_stream_duration`, streamed requests only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// `http_req_connecting`, requests that opened their connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connecting: Option<String>,
    /// `http_req_tls_handshaking`, `https://` requests that opened their connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_handshaking: Option<String>,
    /// Requests without an answer by cause (`timeout`, `refused`, ...), when any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
}

/// One scenario's counters, keyed by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartialScenario {
    /// Scenario name.
    pub scenario: String,
    /// Stage index + 1, 0 without stages.
    pub phase: u16,
    /// Completed iterations.
    pub iterations: u64,
    /// Dropped iterations.
    pub dropped: u64,
    /// Interrupted iterations.
    pub interrupted: u64,
}

/// `stats` (indices of `plan`) as series and scenario counters keyed by names.
fn encode_stats(
    stats: &Stats,
    plan: &Plan,
) -> Result<(Vec<PartialSeries>, Vec<PartialScenario>), PartialError> {
    let index = TagIndex::new(plan);
    let mut keys: Vec<&SeriesKey> = stats.series.keys().collect();
    keys.sort();
    let mut series = Vec::with_capacity(keys.len());
    for key in keys {
        let s = &stats.series[key];
        let scenario = index.scenario_name(key.scenario).to_owned();
        let request = index.request_name(key.scenario, key.request).to_owned();
        let label = format!("{scenario}/{request}/{}/{}", key.status, key.phase);
        series.push(PartialSeries {
            duration: encode(&s.duration, &label)?,
            waiting: encode(&s.waiting, &label)?,
            service: encode(&s.service, &label)?,
            schedule_lag: encode(&s.schedule_lag, &label)?,
            blocked: encode(&s.blocked, &label)?,
            stream: s.stream.as_ref().map(|h| encode(h, &label)).transpose()?,
            connecting: s
                .connecting
                .as_ref()
                .map(|h| encode(h, &label))
                .transpose()?,
            tls_handshaking: s
                .tls_handshaking
                .as_ref()
                .map(|h| encode(h, &label))
                .transpose()?,
            errors: stats
                .errors
                .get(key)
                .map(|e| {
                    e.iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(c, n)| (c.name().to_owned(), n))
                        .collect()
                })
                .unwrap_or_default(),
            scenario,
            request,
            status: key.status,
            phase: key.phase,
            requests: s.requests,
            failed: s.failed,
            data_sent: s.data_sent,
            data_received: s.data_received,
        });
    }
    let mut skeys: Vec<&ScenarioKey> = stats.scenarios.keys().collect();
    skeys.sort();
    let scenarios = skeys
        .into_iter()
        .map(|k| {
            let c = stats.scenarios[k];
            PartialScenario {
                scenario: index.scenario_name(k.scenario).to_owned(),
                phase: k.phase,
                iterations: c.iterations,
                dropped: c.dropped,
                interrupted: c.interrupted,
            }
        })
        .collect();
    Ok((series, scenarios))
}

fn encode(h: &Hist, series: &str) -> Result<String, PartialError> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| PartialError::Serialize {
            series: series.to_owned(),
            message: format!("{e:?}"),
        })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

fn decode(
    text: &str,
    runner: u32,
    series: &str,
    field: &'static str,
) -> Result<Hist, PartialError> {
    let err = |message: String| PartialError::Deserialize {
        runner,
        series: series.to_owned(),
        field,
        message,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| err(e.to_string()))?;
    let mut h: Hist = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| err(format!("{e:?}")))?;
    h.auto(true);
    Ok(h)
}

impl Partial {
    /// `stats` of runner `runner`, whose plan is `plan`, as a partial result.
    pub fn from_stats(
        stats: &Stats,
        plan: &Plan,
        runner: u32,
        elapsed_seconds: f64,
    ) -> Result<Partial, PartialError> {
        let (series, scenarios) = encode_stats(stats, plan)?;
        Ok(Partial {
            version: PARTIAL_VERSION,
            runner,
            elapsed_seconds,
            series,
            scenarios,
            telemetry: None,
            windows: Vec::new(),
            windows_omitted: false,
            exporter: Vec::new(),
            exporter_source: None,
            platform: None,
        })
    }

    /// Reads the JSON a runner wrote.
    pub fn from_json(text: &str, runner: u32) -> Result<Partial, PartialError> {
        let p: Partial = serde_json::from_str(text).map_err(|e| PartialError::Format {
            runner,
            message: e.to_string(),
        })?;
        if p.version != PARTIAL_VERSION {
            return Err(PartialError::Format {
                runner,
                message: format!("version {} is not {PARTIAL_VERSION}", p.version),
            });
        }
        Ok(p)
    }

    /// The JSON a runner writes.
    pub fn to_json(&self) -> String {
        // Plain data (strings, integers, finite floats): serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Adds this partial result into `into`, whose indices are those of the whole run's `plan`.
    pub fn merge_into(&self, plan: &Plan, into: &mut Stats) -> Result<(), PartialError> {
        merge_stats(self.runner, &self.series, &self.scenarios, plan, into)
    }
}

/// Adds series and scenario counters keyed by names into `into`, whose indices are those of
/// the whole run's `plan`.
fn merge_stats(
    runner: u32,
    series: &[PartialSeries],
    scenarios: &[PartialScenario],
    plan: &Plan,
    into: &mut Stats,
) -> Result<(), PartialError> {
    let scenario_index = |name: &str| {
        plan.scenarios
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| PartialError::UnknownName {
                runner,
                what: "scenario",
                name: name.to_owned(),
            })
    };
    for s in series {
        let si = scenario_index(&s.scenario)?;
        let ri = plan.scenarios[si]
            .requests
            .iter()
            .position(|r| r.name == s.request)
            .ok_or_else(|| PartialError::UnknownName {
                runner,
                what: "request",
                name: s.request.clone(),
            })?;
        let label = format!("{}/{}/{}/{}", s.scenario, s.request, s.status, s.phase);
        let part = SeriesStats {
            requests: s.requests,
            failed: s.failed,
            data_sent: s.data_sent,
            data_received: s.data_received,
            duration: decode(&s.duration, runner, &label, "duration")?,
            waiting: decode(&s.waiting, runner, &label, "waiting")?,
            service: decode(&s.service, runner, &label, "service")?,
            schedule_lag: decode(&s.schedule_lag, runner, &label, "scheduleLag")?,
            blocked: decode(&s.blocked, runner, &label, "blocked")?,
            stream: s
                .stream
                .as_deref()
                .map(|t| decode(t, runner, &label, "stream"))
                .transpose()?,
            connecting: s
                .connecting
                .as_deref()
                .map(|t| decode(t, runner, &label, "connecting"))
                .transpose()?,
            tls_handshaking: s
                .tls_handshaking
                .as_deref()
                .map(|t| decode(t, runner, &label, "tlsHandshaking"))
                .transpose()?,
        };
        let key = SeriesKey {
            scenario: si as u16,
            request: ri as u16,
            status: s.status,
            phase: s.phase,
        };
        if !s.errors.is_empty() {
            let counts = into.errors.entry(key).or_default();
            for (name, n) in &s.errors {
                let cause = ErrorCause::ALL
                    .into_iter()
                    .find(|c| c.name() == name)
                    .ok_or_else(|| PartialError::UnknownName {
                        runner,
                        what: "error cause",
                        name: name.clone(),
                    })?;
                counts.add_n(cause, *n);
            }
        }
        into.series.entry(key).or_default().merge(&part);
    }
    for c in scenarios {
        let key = ScenarioKey {
            scenario: scenario_index(&c.scenario)? as u16,
            phase: c.phase,
        };
        let e: &mut ScenarioCounters = into.scenarios.entry(key).or_default();
        e.iterations += c.iterations;
        e.dropped += c.dropped;
        e.interrupted += c.interrupted;
    }
    Ok(())
}

/// Every runner's partial result merged into one [`Stats`] over the whole run's `plan`,
/// and the longest runner's elapsed seconds.
pub fn merge_partials(plan: &Plan, partials: &[Partial]) -> Result<(Stats, f64), PartialError> {
    let mut stats = Stats::default();
    let mut elapsed: f64 = 0.0;
    for p in partials {
        p.merge_into(plan, &mut stats)?;
        elapsed = elapsed.max(p.elapsed_seconds);
    }
    Ok((stats, elapsed))
}

/// The merged results judged: per-threshold verdicts (in the order written, then one per
/// declared keep class) and the run's verdict. Telemetry thresholds are judged on the
/// merged tallies (`telemetry`; unknown, failing closed, when no runner verified).
/// Windowed thresholds are judged on the merge of every runner's part of each window
/// (unknown, failing closed, when a runner's windows did not fit its ConfigMap).
pub fn judge_merged(plan: &Plan, merged: &Merged) -> (Vec<ThresholdVerdict>, Verdict) {
    let verdicts: Vec<ThresholdVerdict> = merged_threshold_results(plan, merged)
        .into_iter()
        .map(|r| ThresholdVerdict {
            metric: r.metric,
            condition: r.expression,
            verdict: match r.verdict {
                ModelVerdict::Pass => Verdict::Pass,
                ModelVerdict::Fail => Verdict::Fail,
                ModelVerdict::Unknown => Verdict::Unknown,
            },
            observed: r
                .observed
                .map(|v| format!("{}", (v * 10_000.0).round() / 10_000.0)),
            reason: r.reason,
        })
        .collect();
    let verdict = if verdicts.iter().any(|v| v.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if verdicts.iter().any(|v| v.verdict == Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Pass
    };
    (verdicts, verdict)
}

/// The merged results as a `summary.json` (schema version 1) of the whole run: metrics,
/// per-scenario distributions, thresholds, telemetry, judged on the exact merge of every
/// runner's partial result. Partials carry run totals, so the summary has no per-second
/// time series.
pub fn merged_summary(
    plan: &Plan,
    merged: &Merged,
    started_at: std::time::SystemTime,
    ended_at: std::time::SystemTime,
) -> ricochet_reports::model::Summary {
    use ricochet_reports::model::Outcome;
    let (stats, elapsed, telemetry) = (&merged.stats, merged.elapsed, merged.telemetry.as_ref());
    let results = merged_threshold_results(plan, merged);
    let passed = results.iter().all(|r| r.verdict == ModelVerdict::Pass);
    let mut agg = ricochet_engine::aggregate::Aggregator::new(plan);
    agg.totals = stats.clone();
    let (target, timeout) = match &plan.target {
        ricochet_engine::plan::TargetPlan::Url(u) => (
            u.base.to_string().trim_end_matches('/').to_owned(),
            u.timeout,
        ),
        ricochet_engine::plan::TargetPlan::Embedded => (
            "embedded echo-server (per runner)".to_owned(),
            ricochet_engine::plan::DEFAULT_TIMEOUT,
        ),
    };
    // A run that measured nothing never passes, split over runners or not.
    let no_answer =
        ricochet_engine::summary::Reach::of(stats).no_answer(&target, timeout, |_| None);
    let facts = ricochet_engine::summary::RunFacts {
        target,
        embedded: plan.target == ricochet_engine::plan::TargetPlan::Embedded,
        started_at,
        ended_at,
        duration_secs: elapsed,
        outcome: match (&no_answer, passed) {
            (Some(_), _) => Outcome::Error,
            (None, true) => Outcome::Passed,
            (None, false) => Outcome::Failed,
        },
        exit: match (&no_answer, passed) {
            (Some(_), _) => ricochet_engine::Exit::RunFailed,
            (None, true) => ricochet_engine::Exit::Passed,
            (None, false) => ricochet_engine::Exit::ThresholdFailed,
        },
        stop_reason: no_answer,
        pacing: None,
    };
    let mut summary = ricochet_engine::summary::build(plan, &facts, &agg, results);
    summary.telemetry = telemetry.map(|t| {
        let mut s = t.summary();
        s.exporter = merged.exporter.clone();
        s.exporter_source = merged.exporter_source.clone();
        s
    });
    summary.platform = merged.platform.as_ref().map(|p| p.summary.clone());
    summary
}

/// Every threshold judged on the merged data (in the order written, then one per declared
/// keep class).
fn merged_threshold_results(
    plan: &Plan,
    merged: &Merged,
) -> Vec<ricochet_reports::model::ThresholdResult> {
    let index = TagIndex::new(plan);
    // Each window judged on the merge of every runner's part of it.
    let mut tallies = WindowTally::for_thresholds(&plan.thresholds);
    for (&(i, w), acc) in &merged.windows {
        if let (Some(th), Some(tally)) = (plan.thresholds.get(i), tallies.get_mut(&i)) {
            let seconds = f64::from(tally.window_secs());
            tally.add(th, w, judge(th, acc, &index, None, seconds));
        }
    }
    let omitted = merged.windows_omitted.map(|runner| {
        format!(
            "runner {runner}'s per-window data did not fit its ConfigMap, so windows cannot be judged across runners; use a longer window"
        )
    });
    let evidence = Evidence {
        thresholds: &plan.thresholds,
        stats: &merged.stats,
        index: &index,
        seconds: merged.elapsed,
        windows: match &omitted {
            Some(reason) => Windows::Unavailable(reason),
            None => Windows::Tallied(&tallies),
        },
        telemetry: match &merged.telemetry {
            Some(r) => TelemetryEvidence::Verified(r),
            None => {
                TelemetryEvidence::Unavailable("no runner reported telemetry verification results")
            }
        },
        platform: PlatformEvidence::Unavailable(
            "runner 0, which runs the query checks and alert drills, reported none",
        ),
    };
    let platform = merged.platform.as_ref();
    let mut results: Vec<_> = plan
        .thresholds
        .iter()
        .enumerate()
        .map(|(i, th)| {
            let judged = platform.and_then(|p| {
                p.thresholds.iter().find(|r| {
                    th.metric.is_platform() && r.metric == th.key && r.expression == th.expression
                })
            });
            match judged {
                Some(r) => r.clone(),
                None => ricochet_engine::summary::threshold_result(th, evidence.judge_threshold(i)),
            }
        })
        .collect();
    if let Some(p) = platform {
        results.extend(p.expectations.iter().cloned());
    }
    if let Some(r) = &merged.telemetry {
        results.extend(r.class_results());
    }
    results
}

/// p99 of `http_req_duration` over every series, e.g. `612.3ms`; `None` without samples.
pub fn p99(stats: &Stats) -> Option<String> {
    let mut h = ricochet_engine::stats::new_hist();
    for s in stats.series.values() {
        ricochet_engine::stats::merge_hist(&mut h, &s.duration);
    }
    (!h.is_empty()).then(|| {
        format!(
            "{}ms",
            ricochet_engine::evaluate::ms(h.value_at_quantile(0.99))
        )
    })
}

/// Merged counters for the status: requests, failures, dropped and interrupted iterations.
pub fn counters(stats: &Stats) -> BTreeMap<String, u64> {
    let mut c = BTreeMap::new();
    c.insert(
        Metric::HttpReqs.name().into(),
        stats.series.values().map(|s| s.requests).sum(),
    );
    c.insert(
        Metric::HttpReqFailed.name().into(),
        stats.series.values().map(|s| s.failed).sum(),
    );
    c.insert(
        Metric::Iterations.name().into(),
        stats.scenarios.values().map(|s| s.iterations).sum(),
    );
    c.insert(
        Metric::DroppedIterations.name().into(),
        stats.scenarios.values().map(|s| s.dropped).sum(),
    );
    c.insert(
        Metric::InterruptedIterations.name().into(),
        stats.scenarios.values().map(|s| s.interrupted).sum(),
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ricochet_engine::plan::Overrides;
    use ricochet_engine::stats::{merge_hist, new_hist, record_duration};
    use std::path::Path;
    use std::time::Duration;

    fn plan() -> Plan {
        let spec: ricochet_crds::LoadTestSpec = serde_saphyr::from_str(
            "scenarios:\n- {name: api, executor: constant-arrival-rate, rate: 100, duration: 10s, requests: [{name: get, path: /a}, {name: post, method: POST, path: /b}]}\n- {name: chat, executor: constant-arrival-rate, rate: 10, duration: 10s, requests: [{name: stream, method: POST, path: /c, stream: true}]}\nthresholds:\n  http_req_duration{scenario:api}: [\"p(99)<800ms\"]\n  http_req_failed: [\"rate<0.01\"]\n",
        )
        .unwrap();
        Plan::from_spec("t", &spec, Path::new("."), &Overrides::default()).unwrap()
    }

    fn stats_of(samples: &[(u16, u64)]) -> Stats {
        let mut stats = Stats::default();
        for &(request, us) in samples {
            let key = SeriesKey {
                scenario: 0,
                request,
                status: 200,
                phase: 0,
            };
            let s = stats.series.entry(key).or_default();
            s.requests += 1;
            record_duration(&mut s.duration, Duration::from_micros(us));
            stats
                .scenarios
                .entry(ScenarioKey {
                    scenario: 0,
                    phase: 0,
                })
                .or_default()
                .iterations += 1;
        }
        stats
    }

    fn all_durations(stats: &Stats) -> Hist {
        let mut h = new_hist();
        for s in stats.series.values() {
            merge_hist(&mut h, &s.duration);
        }
        h
    }

    proptest! {
        // Merge exactness (issue 6): one recorded latency set split across N runners'
        // partial histograms, serialized and merged back, has the same p50/p99/max as
        // one histogram over all samples.
        #[test]
        fn merged_partials_have_the_percentiles_of_one_histogram_over_all_samples(
            samples in proptest::collection::vec((0u16..2, 1u64..60_000_000), 1..400),
            n in 1usize..9,
            assign in proptest::collection::vec(0usize..64, 400),
        ) {
            let plan = plan();
            let single = stats_of(&samples);
            let mut parts = vec![Vec::new(); n];
            for (i, s) in samples.iter().enumerate() {
                parts[assign[i] % n].push(*s);
            }
            let partials: Vec<Partial> = parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let json = Partial::from_stats(&stats_of(p), &plan, i as u32, 10.0).unwrap().to_json();
                    Partial::from_json(&json, i as u32).unwrap()
                })
                .collect();
            let (merged, _) = merge_partials(&plan, &partials).unwrap();
            let (a, b) = (all_durations(&merged), all_durations(&single));
            prop_assert_eq!(a.len(), b.len());
            for q in [0.5, 0.99, 1.0] {
                prop_assert_eq!(a.value_at_quantile(q), b.value_at_quantile(q));
            }
            prop_assert_eq!(a.max(), b.max());
            prop_assert_eq!(counters(&merged), counters(&single));
        }
    }

    #[test]
    fn runner_0_carries_the_platform_verdicts_and_the_merge_keeps_them() {
        let spec: ricochet_crds::LoadTestSpec = serde_saphyr::from_str(
            "scenarios:\n- {name: api, executor: constant-arrival-rate, rate: 100, duration: 10s, requests: [{name: get, path: /a}]}\ntelemetry: {metrics: {prometheus: {url: \"http://127.0.0.1:9\"}}}\nqueries: [{name: lag, promql: max(lag), every: 5s}]\nalerts: {expect: [{alert: A, during: steady, firesWithin: 1m}]}\nthresholds:\n  query{name:lag}: [\"max<10\"]\n  http_req_failed: [\"rate<0.01\"]\n",
        )
        .unwrap();
        let spec = ricochet_crds::LoadTestSpec {
            scenarios: vec![ricochet_crds::ScenarioSpec {
                executor: ricochet_crds::ExecutorKind::RampingArrivalRate,
                stages: vec![ricochet_crds::Stage {
                    target: 100.0,
                    duration: "10s".into(),
                    name: Some("steady".into()),
                }],
                rate: None,
                duration: None,
                ..spec.scenarios[0].clone()
            }],
            ..spec
        };
        let plan = Plan::from_spec("t", &spec, Path::new("."), &Overrides::default()).unwrap();
        let runners = std::num::NonZeroU32::new(2).unwrap();
        let (r0, r1) = (
            plan.segment(0, runners).unwrap(),
            plan.segment(1, runners).unwrap(),
        );
        assert!(
            !r0.platform.is_empty() && r1.platform.is_empty(),
            "runner 0 alone runs them"
        );
        assert_eq!(
            r0.thresholds.len(),
            1,
            "runner 0 judges the query threshold"
        );
        assert!(r1.thresholds.is_empty());

        let mut observed = ricochet_engine::platform::Observed::new(&r0);
        let summary = observed.summary(&["prometheus http://127.0.0.1:9/".into()]);
        let judged = |o: &ricochet_engine::platform::Observed| {
            PartialPlatform::judge(&r0, o, summary.clone(), 10.0)
        };
        let unknown = judged(&observed);
        assert_eq!(unknown.thresholds[0].verdict, ModelVerdict::Unknown);
        assert_eq!(
            unknown.expectations[0].metric,
            "alert_time_to_fire{alert:A}"
        );
        observed.queries[0].evaluations = 1;
        observed.queries[0].series = vec![(BTreeMap::new(), vec![(1.0, 4.0)])];
        let mut partials: Vec<Partial> = (0..2)
            .map(|i| Partial::from_stats(&stats_of(&[(0, 1000)]), &plan, i, 10.0).unwrap())
            .collect();
        partials[0].platform = Some(judged(&observed));
        let partials: Vec<Partial> = partials
            .iter()
            .map(|p| Partial::from_json(&p.to_json(), p.runner).unwrap())
            .collect();
        let merged = merge_run(&plan, &partials).unwrap();
        let now = std::time::SystemTime::now();
        let s = merged_summary(&plan, &merged, now, now);
        let lag = s
            .thresholds
            .iter()
            .find(|r| r.metric == "query{name:lag}")
            .unwrap();
        assert_eq!((lag.verdict, lag.observed), (ModelVerdict::Pass, Some(4.0)));
        assert!(
            s.thresholds
                .iter()
                .any(|r| r.metric == "alert_time_to_fire{alert:A}")
        );
        assert_eq!(s.platform.as_ref().unwrap().queries[0].name, "lag");

        // Without runner 0's platform result the query's verdict is unknown, saying why.
        let mut lost = partials;
        lost[0].platform = None;
        let s = merged_summary(&plan, &merge_run(&plan, &lost).unwrap(), now, now);
        let lag = s
            .thresholds
            .iter()
            .find(|r| r.metric == "query{name:lag}")
            .unwrap();
        assert_eq!(lag.verdict, ModelVerdict::Unknown);
        assert!(
            lag.reason.as_deref().unwrap().contains("runner 0"),
            "{lag:?}"
        );
    }

    #[test]
    fn a_split_run_whose_requests_all_went_unanswered_is_an_error_with_the_causes() {
        let plan = plan();
        let unanswered = |n: u64, cause: ErrorCause| {
            let mut stats = Stats::default();
            let key = SeriesKey {
                scenario: 0,
                request: 0,
                status: 0,
                phase: 0,
            };
            let s = stats.series.entry(key).or_default();
            s.requests = n;
            s.failed = n;
            stats.errors.entry(key).or_default().add_n(cause, n);
            stats
        };
        let partials: Vec<Partial> = [
            (0, unanswered(6, ErrorCause::Timeout)),
            (1, unanswered(4, ErrorCause::Reset)),
        ]
        .iter()
        .map(|(i, st)| {
            let p = Partial::from_stats(st, &plan, *i, 1.0).unwrap();
            // Through JSON, as a runner writes it and the operator reads it.
            Partial::from_json(&p.to_json(), *i).unwrap()
        })
        .collect();
        assert_eq!(
            partials[0].series[0].errors,
            BTreeMap::from([("timeout".to_owned(), 6)])
        );
        let merged = merge_run(&plan, &partials).unwrap();
        let errors = merged.stats.error_counts(|_| true);
        assert_eq!(
            (
                errors.get(ErrorCause::Timeout),
                errors.get(ErrorCause::Reset)
            ),
            (6, 4)
        );
        let now = std::time::SystemTime::now();
        let summary = merged_summary(&plan, &merged, now, now);
        assert_eq!(summary.run.outcome, ricochet_reports::model::Outcome::Error);
        let why = summary.run.stop_reason.unwrap_or_default();
        assert!(
            why.starts_with("no request got an answer: 6 of 10 timed out after 1m waiting on embedded echo-server"),
            "{why}"
        );
    }

    #[test]
    fn the_runners_exporter_counts_add_up_and_name_every_replica_once() {
        let counts = |emitted, injected| ExporterCounts {
            signal: "spans".into(),
            emitted,
            accepted: emitted - injected,
            refused: 0,
            dropped: 0,
            injected,
        };
        let source = |replicas: &[&str], requests, chaos| ExporterSource {
            replicas: replicas.iter().map(|r| (*r).to_owned()).collect(),
            unread: Vec::new(),
            partial: false,
            requests,
            chaos_dropped_requests: chaos,
        };
        let plan = plan();
        let mut a = Partial::from_stats(&Stats::default(), &plan, 0, 1.0).unwrap();
        let mut b = a.clone();
        b.runner = 1;
        a.exporter = vec![counts(100, 5)];
        a.exporter_source = Some(source(&["echo-0", "echo-1"], 100, 5));
        b.exporter = vec![counts(50, 2)];
        b.exporter_source = Some(source(&["echo-1"], 50, 2));
        let merged = merge_run(&plan, &[a, b]).unwrap();
        assert_eq!(merged.exporter, vec![counts(150, 7)]);
        assert_eq!(
            merged.exporter_source,
            Some(source(&["echo-0", "echo-1"], 150, 7))
        );
    }

    #[test]
    fn merged_results_are_judged_with_the_run_thresholds() {
        let plan = plan();
        let fast = stats_of(&[(0, 1_000); 50]);
        let slow = stats_of(&[(1, 900_000); 10]);
        let partials = [
            Partial::from_stats(&fast, &plan, 0, 10.0).unwrap(),
            Partial::from_stats(&slow, &plan, 1, 10.0).unwrap(),
        ];
        let merged = merge_run(&plan, &partials).unwrap();
        let (verdicts, verdict) = judge_merged(&plan, &merged);
        let stats = merged.stats;
        // Runner 0 alone would pass p99<800ms; merged, 10 of 60 samples at 900ms fail it.
        assert_eq!(verdicts[0].verdict, Verdict::Fail, "{verdicts:?}");
        assert_eq!(verdicts[1].verdict, Verdict::Pass);
        assert_eq!(verdict, Verdict::Fail);
        assert_eq!(counters(&stats)["http_reqs"], 60);
        assert!(p99(&stats).unwrap().starts_with("900"), "{:?}", p99(&stats));
    }

    #[test]
    fn a_partial_naming_an_unknown_scenario_is_refused_with_the_runner() {
        let plan = plan();
        let mut p = Partial::from_stats(&stats_of(&[(0, 5)]), &plan, 3, 1.0).unwrap();
        p.series[0].scenario = "nope".into();
        let err = merge_partials(&plan, &[p]).unwrap_err().to_string();
        assert_eq!(err, "runner 3: scenario `nope` is not in the run's plan");
        let err = Partial::from_json("{}", 2).unwrap_err().to_string();
        assert!(
            err.starts_with("runner 2: the partial result is not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn runners_telemetry_tallies_merge_exactly_and_are_judged_once() {
        let spec: ricochet_crds::LoadTestSpec = serde_saphyr::from_str(
            "scenarios:\n- {name: api, executor: constant-arrival-rate, rate: 100, duration: 10s, requests: [{name: get, path: /a}]}\ntelemetry: {sample: {rate: 1}}\nthresholds:\n  telemetry_trace_missing: [\"rate<0.003\"]\n  telemetry_trace_ingest_latency: [\"p(99)<1s\"]\n",
        )
        .unwrap();
        let plan = Plan::from_spec("t", &spec, Path::new("."), &Overrides::default()).unwrap();
        let tally = |found: u64, missing: u64, ms: u64| {
            let mut t = Tally::new(Signal::Traces);
            t.found = found;
            t.missing = missing;
            t.by_class = vec![ClassCounts {
                found,
                missing,
                unknown: 0,
            }];
            for _ in 0..found {
                record_duration(&mut t.ingest_latency, Duration::from_millis(ms));
            }
            t
        };
        let results = |t: Tally| Results {
            signals: vec![("sink".into(), t)],
            classes: Vec::new(),
            sample: ricochet_verify::plan::SamplePolicy::Rate(1.0),
            settle_timeout: Duration::from_secs(30),
            sampled: 100,
            dropped: 0,
            probes: 7,
            probe_schedule: Vec::new(),
        };
        let mut partials = Vec::new();
        for (i, t) in [tally(100, 0, 100), tally(90, 10, 300)]
            .into_iter()
            .enumerate()
        {
            let mut p = Partial::from_stats(&stats_of(&[(0, 5)]), &plan, i as u32, 10.0).unwrap();
            p.telemetry = Some(PartialTelemetry::from_results(&results(t)).unwrap());
            // Through JSON, as the operator reads it.
            partials.push(Partial::from_json(&p.to_json(), i as u32).unwrap());
        }
        let merged = merge_telemetry(&plan, &partials).unwrap().expect("merged");
        let t = &merged.signals[0].1;
        assert_eq!((t.found, t.missing, merged.sampled), (190, 10, 200));
        assert_eq!(t.ingest_latency.len(), 190);
        assert_eq!(
            t.ingest_latency.max(),
            tally(1, 0, 300).ingest_latency.max()
        );
        let mut run = merge_run(&plan, &partials).unwrap();
        let (verdicts, verdict) = judge_merged(&plan, &run);
        let by = |v: &[ThresholdVerdict], m: &str| {
            v.iter().find(|t| t.metric == m).cloned().expect("verdict")
        };
        let missing = by(&verdicts, "telemetry_trace_missing");
        assert_eq!(missing.verdict, Verdict::Fail, "{verdicts:?}");
        assert_eq!(missing.observed.as_deref(), Some("0.05"));
        let ingest = by(&verdicts, "telemetry_trace_ingest_latency");
        assert_eq!(ingest.verdict, Verdict::Pass, "{verdicts:?}");
        assert_eq!(verdict, Verdict::Fail);
        // Without any runner's telemetry the threshold fails closed.
        run.telemetry = None;
        let (verdicts, _) = judge_merged(&plan, &run);
        assert_eq!(
            by(&verdicts, "telemetry_trace_missing").verdict,
            Verdict::Unknown
        );
    }

    // See: issue #14. Every measurement the summary shows of a runner's tally reaches
    // the merged summary: a field left out of the partial would read as zero.
    #[test]
    fn every_summary_measurement_of_the_runners_tallies_survives_the_merge() {
        let spec: ricochet_crds::LoadTestSpec = serde_saphyr::from_str(
            "scenarios:\n- {name: api, executor: constant-arrival-rate, rate: 100, duration: 10s, requests: [{name: get, path: /a}]}\ntelemetry: {sample: {rate: 1}}\n",
        )
        .unwrap();
        let plan = Plan::from_spec("t", &spec, Path::new("."), &Overrides::default()).unwrap();
        let mut t = Tally::new(Signal::Traces);
        t.found = 10;
        t.missing = 7;
        t.extra_spans = 4;
        t.first_asked_late = 1;
        t.presence_only = 3;
        t.missing_split = MissingSplit {
            refused: 1,
            dropped: 1,
            injected: 2,
            after_acceptance: 2,
            unaccounted: 1,
        };
        for ms in [20, 40, 60, 80, 100, 120] {
            record_duration(&mut t.ingest_latency, Duration::from_millis(ms));
        }
        for ms in [10, 20, 30, 40, 50] {
            record_duration(&mut t.export_wait, Duration::from_millis(ms));
            record_duration(&mut t.backend_latency, Duration::from_millis(ms + 5));
        }
        let results = Results {
            signals: vec![("tempo http://tempo:3200".into(), t)],
            classes: Vec::new(),
            sample: ricochet_verify::plan::SamplePolicy::Rate(1.0),
            settle_timeout: Duration::from_secs(30),
            sampled: 17,
            dropped: 2,
            probes: 0,
            probe_schedule: Vec::new(),
        };
        let partials: Vec<Partial> = (0..2)
            .map(|i| {
                let mut p = Partial::from_stats(&stats_of(&[(0, 5)]), &plan, i, 10.0).unwrap();
                p.telemetry = Some(PartialTelemetry::from_results(&results).unwrap());
                Partial::from_json(&p.to_json(), i).unwrap()
            })
            .collect();
        let merged = merge_telemetry(&plan, &partials).unwrap().expect("merged");
        let summary = merged.summary();
        let s = &summary.signals[0];
        assert_eq!(
            (
                s.found,
                s.missing,
                s.extra_spans,
                s.first_asked_late,
                s.presence_only
            ),
            (20, 14, 8, 2, 6)
        );
        assert_eq!((s.latency_probes, s.acknowledged_probes), (12, 10), "{s:?}");
        let split = s.missing_split.expect("split");
        assert_eq!(
            [
                split.refused,
                split.dropped,
                split.injected,
                split.after_acceptance,
                split.unaccounted
            ],
            [2, 2, 4, 4, 2]
        );
        assert!(s.export_wait.is_some() && s.backend_latency.is_some());
        assert_eq!(summary.samples_dropped, 4);
        // The probe schedule is the whole run's policy, stated in the merged report.
        assert_eq!(summary.probe_schedule_ms.first(), Some(&25.0));
        assert_eq!(summary.probe_schedule_ms.last(), Some(&30_000.0));
    }

    // See: issue #15 item 3. The engine stops keeping closed windows once a lower bound
    // of their encoded size passes its budget; that is only right if the budget is this
    // limit and the bounds hold, so that the runner then finds them too large and says so.
    #[test]
    fn kept_windows_budget_is_the_partial_limit_and_its_size_bounds_hold() {
        use ricochet_engine::aggregate::{
            Aggregator, ClosedWindow, KEPT_WINDOWS_BUDGET_BYTES, WINDOW_MIN_BYTES,
            WINDOW_SCENARIO_MIN_BYTES, WINDOW_SERIES_MIN_BYTES,
        };
        assert_eq!(KEPT_WINDOWS_BUDGET_BYTES, MAX_PARTIAL_BYTES);
        // The shortest names a plan can have, one sample, one-character strings.
        let spec: ricochet_crds::LoadTestSpec = serde_saphyr::from_str(
            "scenarios:\n- {name: a, executor: constant-arrival-rate, rate: 1, duration: 24h, requests: [{name: b, path: /}]}\nthresholds:\n  http_reqs: [{threshold: \"count>0\", window: 1s}]\n",
        )
        .unwrap();
        let plan = Plan::from_spec("t", &spec, Path::new("."), &Overrides::default()).unwrap();
        let one = ClosedWindow {
            threshold: 0,
            index: 0,
            stats: stats_of(&[(0, 1)]),
        };
        let encoded = PartialWindow::from_closed(&plan, std::slice::from_ref(&one)).unwrap();
        let w = &encoded[0];
        assert!(serde_json::to_string(w).unwrap().len() >= one.min_encoded_bytes());
        let bare = PartialWindow {
            threshold: "x".into(),
            expression: "y".into(),
            window_secs: 1,
            index: 0,
            series: Vec::new(),
            scenarios: Vec::new(),
        };
        assert!(serde_json::to_string(&bare).unwrap().len() >= WINDOW_MIN_BYTES);
        assert!(serde_json::to_string(&w.series[0]).unwrap().len() >= WINDOW_SERIES_MIN_BYTES);
        assert!(serde_json::to_string(&w.scenarios[0]).unwrap().len() >= WINDOW_SCENARIO_MIN_BYTES);

        // A runner whose windows passed the budget writes a partial too large to carry
        // them, so it leaves them out and the operator judges the thresholds unknown.
        let mut agg = Aggregator::new(&plan);
        agg.keep_window_stats();
        agg.absorb(Vec::new(), 40_000);
        let kept = agg.closed_windows();
        assert!(kept.len() < 40_000, "bounded: {}", kept.len());
        let mut p = Partial::from_stats(&Stats::default(), &plan, 0, 40_000.0).unwrap();
        p.windows = PartialWindow::from_closed(&plan, kept).unwrap();
        assert!(p.to_json().len() > MAX_PARTIAL_BYTES);
    }

    #[test]
    fn windows_are_judged_on_every_runners_part_of_them() {
        let spec: ricochet_crds::LoadTestSpec = serde_saphyr::from_str(
            "scenarios:\n- {name: api, executor: constant-arrival-rate, rate: 100, duration: 10s, requests: [{name: get, path: /a}]}\nthresholds:\n  http_req_duration: [{threshold: \"p(99)<800ms\", window: 1s}]\n",
        )
        .unwrap();
        let plan = Plan::from_spec("t", &spec, Path::new("."), &Overrides::default()).unwrap();
        let window =
            |threshold: usize, index: u32, stats: Stats| ricochet_engine::aggregate::ClosedWindow {
                threshold,
                index,
                stats,
            };
        // Runner 0: fast in both windows; runner 1: fast, then slow in window 1 only.
        let closed = [
            vec![
                window(0, 0, stats_of(&[(0, 1_000); 50])),
                window(0, 1, stats_of(&[(0, 1_000); 50])),
            ],
            vec![
                window(0, 0, stats_of(&[(0, 2_000); 5])),
                window(0, 1, stats_of(&[(0, 900_000); 10])),
            ],
        ];
        let partials: Vec<Partial> = closed
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut p =
                    Partial::from_stats(&stats_of(&[(0, 1_000)]), &plan, i as u32, 2.0).unwrap();
                p.windows = PartialWindow::from_closed(&plan, c).unwrap();
                Partial::from_json(&p.to_json(), i as u32).unwrap()
            })
            .collect();
        let merged = merge_run(&plan, &partials).unwrap();
        assert_eq!(merged.windows.len(), 2);
        assert_eq!(
            merged.windows[&(0, 1)]
                .series
                .values()
                .next()
                .unwrap()
                .requests,
            60
        );
        let (verdicts, verdict) = judge_merged(&plan, &merged);
        assert_eq!(verdicts[0].verdict, Verdict::Fail, "{verdicts:?}");
        let reason = verdicts[0].reason.clone().unwrap_or_default();
        assert!(
            reason.starts_with("window 2 (1s–2s) failed first"),
            "{reason}"
        );
        assert_eq!(verdict, Verdict::Fail);
    }
}
