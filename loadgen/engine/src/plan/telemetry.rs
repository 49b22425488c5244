//! `spec.telemetry` lowered into the [`TelemetryPlan`] that `ricochet-verify` runs:
//! sampling, polling, the query budget, backends with their secrets' sources, keep classes.

use std::path::Path;
use std::time::Duration;

use echo_server::contract::{DURATION_METRIC, NOT_WORKLOAD_ROUTES, PROBE_METRIC, PROBE_SLOTS};
use ricochet_crds::{BackendSpec, KeepClass, SecretRef, TelemetrySpec};
use ricochet_verify::http::Endpoint;
use ricochet_verify::plan::{
    BackendPlan, KeepClassPlan, SamplePolicy, SecretFrom, SecretSource, ServerMetrics, StatusMatch,
    TelemetryPlan, TraceBackendPlan,
};

use super::{
    FieldError, MAX_QUERIES_PER_SECOND, MAX_RATE_PER_PROCESS, MIN_PER_SECOND, bounded_duration,
    field_err, number, url_authority_problem,
};

/// The embedded default: the sink and the echo-server's `/metrics`, `perSecond: 100`,
/// settle 30 s.
pub fn embedded_default() -> TelemetryPlan {
    TelemetryPlan::embedded_default(ServerMetrics {
        histogram: DURATION_METRIC.to_owned(),
        probe_routes: NOT_WORKLOAD_ROUTES
            .iter()
            .map(|r| (*r).to_owned())
            .collect(),
        probe_metric: PROBE_METRIC.to_owned(),
        probe_slots: PROBE_SLOTS,
    })
}

/// Validates `spec.telemetry`; `base_dir` resolves relative file paths.
pub fn telemetry_plan(spec: &TelemetrySpec, base_dir: &Path) -> Result<TelemetryPlan, FieldError> {
    const P: &str = "spec.telemetry";
    let mut plan = embedded_default();
    if let Some(s) = &spec.sample {
        plan.sample = match (s.rate, s.per_second) {
            (Some(r), None) if r > 0.0 && r <= 1.0 => SamplePolicy::Rate(r),
            (Some(r), None) => {
                return Err(field_err(
                    format!("{P}.sample.rate"),
                    format!("must be a fraction > 0 and <= 1, got {r}"),
                ));
            }
            (None, Some(n)) if (MIN_PER_SECOND..=MAX_RATE_PER_PROCESS).contains(&n) => {
                SamplePolicy::PerSecond(n)
            }
            (None, Some(n)) => {
                return Err(field_err(
                    format!("{P}.sample.perSecond"),
                    format!(
                        "must be a number from {MIN_PER_SECOND} to {} (requests verified per second; `rate: 1` verifies every request), got {}",
                        number(MAX_RATE_PER_PROCESS),
                        number(n)
                    ),
                ));
            }
            _ => {
                return Err(field_err(
                    format!("{P}.sample"),
                    "needs exactly one of `rate` (a fraction, e.g. 0.01) or `perSecond` (e.g. 100)",
                ));
            }
        };
    }
    let dur = |field: &str, text: &str| bounded_duration(&format!("{P}.{field}"), text);
    if let Some(t) = &spec.settle_timeout {
        plan.poll.settle_timeout = dur("settleTimeout", t)?;
        if plan.poll.settle_timeout.is_zero() {
            return Err(field_err(
                format!("{P}.settleTimeout"),
                "must be longer than 0s, e.g. `30s`",
            ));
        }
    }
    if let Some(t) = &spec.poll_interval {
        let d = dur("pollInterval", t)?;
        if d < Duration::from_millis(10) {
            return Err(field_err(
                format!("{P}.pollInterval"),
                "must be at least 10ms, e.g. `250ms`",
            ));
        }
        plan.poll.initial_interval = d;
        plan.poll.max_interval = plan.poll.max_interval.max(d);
    }
    if let Some(q) = spec.max_queries_per_second {
        if !(MIN_PER_SECOND..=MAX_QUERIES_PER_SECOND).contains(&q) {
            return Err(field_err(
                format!("{P}.maxQueriesPerSecond"),
                format!(
                    "must be a number from {MIN_PER_SECOND} to {} (queries per second across all backends), got {}",
                    number(MAX_QUERIES_PER_SECOND),
                    number(q)
                ),
            ));
        }
        plan.max_queries_per_second = q;
    }
    if let Some(t) = &spec.traces {
        plan.traces = Some(match (&t.tempo, &t.jaeger) {
            (Some(b), None) => {
                TraceBackendPlan::Tempo(backend(&format!("{P}.traces.tempo"), b, base_dir)?)
            }
            (None, Some(b)) => {
                TraceBackendPlan::Jaeger(backend(&format!("{P}.traces.jaeger"), b, base_dir)?)
            }
            _ => {
                return Err(field_err(
                    format!("{P}.traces"),
                    "needs exactly one of `tempo` or `jaeger`, e.g. `{tempo: {url: http://tempo:3200}}`",
                ));
            }
        });
    }
    if let Some(l) = &spec.logs {
        let f = format!("{P}.logs.loki");
        let sel = l.loki.selector.trim();
        if !(sel.starts_with('{') && sel.ends_with('}')) {
            return Err(field_err(
                format!("{f}.selector"),
                format!(
                    "`{sel}` is not a LogQL stream selector; expected e.g. `{{app=\"echo-server\"}}`"
                ),
            ));
        }
        plan.logs = Some((backend(&f, &l.loki.backend, base_dir)?, sel.to_owned()));
    }
    if let Some(m) = &spec.metrics {
        let f = format!("{P}.metrics.prometheus");
        let metric = m
            .prometheus
            .metric
            .clone()
            .unwrap_or_else(|| format!("{DURATION_METRIC}_bucket"));
        plan.metrics = Some((backend(&f, &m.prometheus.backend, base_dir)?, metric));
        if let Some(t) = &m.prometheus.scrape_interval {
            plan.scrape_interval = dur("metrics.prometheus.scrapeInterval", t)?;
            if plan.scrape_interval < Duration::from_secs(1) {
                return Err(field_err(
                    format!("{f}.scrapeInterval"),
                    "must be at least 1s: the interval at which Prometheus scrapes the echo-server, e.g. `15s`",
                ));
            }
        }
    }
    for (i, c) in spec.expect_keep.iter().enumerate() {
        plan.classes
            .push(keep_class(&format!("{P}.expectKeep[{i}]"), c)?);
    }
    if plan.classes.len() >= usize::from(u8::MAX) {
        return Err(field_err(
            format!("{P}.expectKeep"),
            "at most 254 classes are supported",
        ));
    }
    Ok(plan)
}

/// The source of a secret reference at `field`: exactly one of `env` and `file`.
pub fn secret(field: &str, s: &SecretRef, base_dir: &Path) -> Result<SecretSource, FieldError> {
    let from = match (&s.env, &s.file) {
        (Some(v), None) if !v.is_empty() => SecretFrom::Env(v.clone()),
        (None, Some(f)) if !f.is_empty() => SecretFrom::File(base_dir.join(f)),
        _ => {
            return Err(field_err(
                field,
                "needs exactly one of `env` (a variable name) or `file` (a path); secrets are never written in the document",
            ));
        }
    };
    Ok(SecretSource {
        field: field.to_owned(),
        from,
    })
}

pub(crate) fn backend(
    field: &str,
    b: &BackendSpec,
    base_dir: &Path,
) -> Result<BackendPlan, FieldError> {
    if let Some(problem) = url_authority_problem(
        &b.url,
        "give credentials as `basicAuth` or `bearerToken` (read from an environment variable or a file) instead",
    ) {
        return Err(field_err(format!("{field}.url"), problem));
    }
    Endpoint::new(&b.url).map_err(|e| field_err(format!("{field}.url"), e.to_string()))?;
    if let Some(t) = &b.tenant
        && !t.bytes().all(|c| (0x20..0x7f).contains(&c))
    {
        return Err(field_err(
            format!("{field}.tenant"),
            "must be printable ASCII (it is sent as X-Scope-OrgID)",
        ));
    }
    if b.bearer_token.is_some() && b.basic_auth.is_some() {
        return Err(field_err(
            field,
            "has both `bearerToken` and `basicAuth`; choose one",
        ));
    }
    let timeout = match &b.timeout {
        Some(t) => {
            let d = bounded_duration(&format!("{field}.timeout"), t)?;
            if d.is_zero() {
                return Err(field_err(
                    format!("{field}.timeout"),
                    "must be longer than 0s, e.g. `10s`",
                ));
            }
            d
        }
        None => Duration::from_secs(10),
    };
    Ok(BackendPlan {
        url: b.url.clone(),
        tenant: b.tenant.clone(),
        bearer: b
            .bearer_token
            .as_ref()
            .map(|s| secret(&format!("{field}.bearerToken"), s, base_dir))
            .transpose()?,
        basic: b
            .basic_auth
            .as_ref()
            .map(|a| {
                secret(
                    &format!("{field}.basicAuth.password"),
                    &a.password,
                    base_dir,
                )
                .map(|p| (a.username.clone(), p))
            })
            .transpose()?,
        ca_file: b.ca_file.as_ref().map(|f| base_dir.join(f)),
        timeout,
    })
}

fn keep_class(field: &str, c: &KeepClass) -> Result<KeepClassPlan, FieldError> {
    if c.name.trim().is_empty() {
        return Err(field_err(format!("{field}.name"), "must not be empty"));
    }
    if !(0.0..=1.0).contains(&c.keep) {
        return Err(field_err(
            format!("{field}.keep"),
            format!("must be a probability between 0 and 1, got {}", c.keep),
        ));
    }
    let status = match c.status.as_deref() {
        None => None,
        Some(s) => Some(parse_status(s).ok_or_else(|| {
            field_err(
                format!("{field}.status"),
                format!("`{s}` is neither a status (100-599) nor a class such as `5xx`"),
            )
        })?),
    };
    let min_latency = c
        .min_latency
        .as_deref()
        .map(|t| bounded_duration(&format!("{field}.minLatency"), t))
        .transpose()?;
    Ok(KeepClassPlan {
        name: c.name.clone(),
        keep: c.keep,
        status,
        min_latency,
        request: c.request.clone(),
    })
}

fn parse_status(s: &str) -> Option<StatusMatch> {
    let b = s.as_bytes();
    match b {
        [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => {
            Some(StatusMatch::Class(u16::from(d - b'0')))
        }
        _ => s
            .parse::<u16>()
            .ok()
            .filter(|n| (100..=599).contains(n))
            .map(StatusMatch::Exact),
    }
}

/// Spans a request's trace should hold: `width × depth + 1` for `/storm` (as the
/// echo-server reports), else 1.
pub fn expected_spans(path_and_query: &str) -> usize {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    if !path.trim_end_matches('/').ends_with("/storm") {
        return 1;
    }
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(1)
    };
    param("width")
        .saturating_mul(param("depth"))
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_paths_expect_width_times_depth_plus_one_spans() {
        assert_eq!(expected_spans("/api/orders"), 1);
        assert_eq!(expected_spans("/storm?width=10&depth=5"), 51);
        assert_eq!(expected_spans("/storm?depth=3"), 4);
        assert_eq!(expected_spans("/storm"), 2);
    }
}
