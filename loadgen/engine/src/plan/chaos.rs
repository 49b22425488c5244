//! `spec.chaos` lowered into a [`ChaosPlan`]: each event's start, end and fault as the
//! echo-server's admin API takes it, and where that API is. [`crate::chaos`] drives it.

use std::time::Duration;

use echo_server::ChaosSpec;
use echo_server::chaos::{DropFault, ErrorFault, LatencyFault, StatusClass};
use echo_server::config::Distribution;
use ricochet_crds::{AdminSpec, ChaosEventSpec, FaultSpec};
use ricochet_verify::plan::SecretSource;

use super::telemetry::secret;
use super::{FieldError, bounded_duration, field_err as err};
use crate::duration::format_duration;

/// One fault of the timeline, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosEventPlan {
    /// Start, from the run's start.
    pub at: Duration,
    /// End, from the run's start (`None`: until the load ends).
    pub until: Option<Duration>,
    /// What the admin API is given.
    pub fault: ChaosSpec,
    /// `telemetryDropRate=0.05` etc., for reports.
    pub label: String,
    /// The entry's `name` (alert drills refer to it).
    pub name: Option<String>,
}

/// Where the admin API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminPlan {
    /// The embedded echo-server's own admin listener (address and token known at start).
    Embedded,
    /// A remote echo-server's admin API.
    Remote {
        /// Base URL (`http://...`).
        url: String,
        /// Bearer token source.
        token: SecretSource,
    },
}

/// `spec.chaos` and the admin API it needs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChaosPlan {
    /// Events, by start time.
    pub events: Vec<ChaosEventPlan>,
    /// The admin API (`None` without events).
    pub admin: Option<AdminPlan>,
}

impl ChaosPlan {
    /// Validates `spec.chaos`; `admin` is `spec.target.admin` (`None` with an embedded
    /// target, whose admin listener loadgen starts itself).
    pub fn from_spec(
        events: &[ChaosEventSpec],
        admin: Option<&AdminSpec>,
        embedded: bool,
        base_dir: &std::path::Path,
    ) -> Result<Self, FieldError> {
        if events.is_empty() {
            return Ok(Self::default());
        }
        let admin = if embedded {
            AdminPlan::Embedded
        } else {
            let Some(a) = admin else {
                return Err(err(
                    "spec.chaos",
                    "needs the echo-server's admin API: add `spec.target.admin: {url: http://echo-server-admin:9091, token: {env: ECHO_ADMIN_TOKEN}}`",
                ));
            };
            if !a.url.starts_with("http://") {
                return Err(err(
                    "spec.target.admin.url",
                    format!("`{}` must be an http:// URL of the admin listener", a.url),
                ));
            }
            let token = secret("spec.target.admin.token", &a.token, base_dir)?;
            AdminPlan::Remote {
                url: a.url.trim_end_matches('/').to_owned(),
                token,
            }
        };
        let mut out = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let path = format!("spec.chaos[{i}]");
            let at = bounded_duration(&format!("{path}.at"), &e.at)?;
            let until = match &e.for_ {
                None => None,
                Some(f) => {
                    let d = bounded_duration(&format!("{path}.for"), f)?;
                    if d.is_zero() {
                        return Err(err(format!("{path}.for"), "must be longer than 0s"));
                    }
                    Some(at + d)
                }
            };
            let (fault, label) = fault(&format!("{path}.fault"), &e.fault)?;
            if let Some(name) = &e.name
                && events[..i].iter().any(|o| o.name.as_ref() == Some(name))
            {
                return Err(err(
                    format!("{path}.name"),
                    format!("`{name}` names an earlier entry too; chaos names are unique"),
                ));
            }
            out.push(ChaosEventPlan {
                at,
                until,
                fault,
                label,
                name: e.name.clone(),
            });
        }
        out.sort_by_key(|e| e.at);
        Ok(Self {
            events: out,
            admin: Some(admin),
        })
    }
}

pub(crate) fn fault(path: &str, f: &FaultSpec) -> Result<(ChaosSpec, String), FieldError> {
    let class = match f.status_class.as_deref() {
        None => None,
        Some(c) => Some(
            StatusClass::try_from(c.to_owned())
                .map_err(|e| err(format!("{path}.statusClass"), e))?,
        ),
    };
    let route = f.route.clone();
    let rate = |field: &str, r: f64| {
        if (0.0..=1.0).contains(&r) {
            Ok(r)
        } else {
            Err(err(
                format!("{path}.{field}"),
                format!("must be a fraction between 0 and 1, got {r}"),
            ))
        }
    };
    let mut spec = ChaosSpec::default();
    let mut label = Vec::new();
    if let Some(r) = f.telemetry_drop_rate {
        spec.telemetry_drop = Some(DropFault {
            rate: rate("telemetryDropRate", r)?,
            route: route.clone(),
            status_class: class,
        });
        label.push(format!("telemetryDropRate={r}"));
    }
    if let Some(r) = f.error_rate {
        let status = f.error_status.unwrap_or(500);
        if !(400..=599).contains(&status) {
            return Err(err(
                format!("{path}.errorStatus"),
                format!("{status} is not an error status (400-599)"),
            ));
        }
        spec.errors = Some(ErrorFault {
            rate: rate("errorRate", r)?,
            status,
            route: route.clone(),
            status_class: class,
        });
        label.push(format!("errorRate={r} ({status})"));
    } else if f.error_status.is_some() {
        return Err(err(
            format!("{path}.errorStatus"),
            "is only meaningful with `errorRate`",
        ));
    }
    if let Some(l) = &f.latency {
        let delay: Distribution = l
            .parse()
            .map_err(|e: echo_server::Error| err(format!("{path}.latency"), e.to_string()))?;
        spec.latency = Some(LatencyFault {
            delay,
            route: route.clone(),
            status_class: class,
        });
        label.push(format!("latency={l}"));
    }
    if spec.is_empty() {
        return Err(err(
            path,
            "needs at least one of `telemetryDropRate`, `errorRate` or `latency`",
        ));
    }
    // The echo-server's own limits (delays within 60 s, known routes), checked here so a
    // drill is refused before it starts rather than answered 400 halfway through.
    spec.validate().map_err(|e| {
        let (field, written) = match e.field {
            "latency.delay" => ("latency", f.latency.clone().unwrap_or_default()),
            "errors.rate" => ("errorRate", e.value),
            "errors.status" => ("errorStatus", e.value),
            "telemetryDrop.rate" => ("telemetryDropRate", e.value),
            _ => ("route", f.route.clone().unwrap_or_default()),
        };
        err(
            format!("{path}.{field}"),
            format!("`{written}` is invalid: expected {}", e.expected),
        )
    })?;
    if let Some(r) = &route {
        label.push(format!("route={r}"));
    }
    if let Some(c) = class {
        label.push(format!("statusClass={}", c.as_str()));
    }
    Ok((spec, label.join(" ")))
}

/// `60s for 30s: telemetryDropRate=0.05`, for the plan summary.
pub fn describe(e: &ChaosEventPlan) -> String {
    match e.until {
        Some(u) => format!(
            "{} for {}: {}",
            format_duration(e.at),
            format_duration(u - e.at),
            e.label
        ),
        None => format!("{} until the end: {}", format_duration(e.at), e.label),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_validated_with_their_field() {
        let e = fault("spec.chaos[0].fault", &FaultSpec::default()).unwrap_err();
        assert_eq!(e.field, "spec.chaos[0].fault");
        let e = fault(
            "spec.chaos[0].fault",
            &FaultSpec {
                telemetry_drop_rate: Some(1.5),
                ..FaultSpec::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.field, "spec.chaos[0].fault.telemetryDropRate");
        let e = fault(
            "f",
            &FaultSpec {
                latency: Some("soon".into()),
                ..FaultSpec::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.field, "f.latency");
        let e = fault(
            "f",
            &FaultSpec {
                error_rate: Some(0.1),
                status_class: Some("7xx".into()),
                ..FaultSpec::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.field, "f.statusClass");
    }

    #[test]
    fn the_echo_servers_own_limits_are_checked_at_plan_time() {
        let e = fault(
            "f",
            &FaultSpec {
                latency: Some("90s".into()),
                ..FaultSpec::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.field, "f.latency");
        assert_eq!(
            e.message,
            "`90s` is invalid: expected a delay of at most 60s"
        );
        let e = fault(
            "f",
            &FaultSpec {
                error_rate: Some(0.1),
                route: Some("/nope".into()),
                ..FaultSpec::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.field, "f.route");
        assert!(
            e.message
                .starts_with("`/nope` is invalid: expected one of the route templates /echo"),
            "{}",
            e.message
        );
        fault(
            "f",
            &FaultSpec {
                latency: Some("exp:3s".into()),
                route: Some("/echo".into()),
                ..FaultSpec::default()
            },
        )
        .unwrap();
    }
}
