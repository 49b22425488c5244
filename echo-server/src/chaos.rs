//! Runtime faults set through the admin API: added latency, injected errors and a
//! telemetry drop rate, each optionally scoped to a route and/or a status class.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Distribution, ERROR_STATUSES};
use crate::routes::Route;

/// Deterministic source of uniform numbers: SplitMix64 over (seed, draw number). Draws are
/// independent of which thread asks, so the number of hits over N draws depends only on
/// the seed.
#[derive(Debug)]
pub struct Dice {
    seed: u64,
    next: AtomicU64,
}

impl Dice {
    /// A source with this seed.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            next: AtomicU64::new(0),
        }
    }

    /// A uniform number in `[0, 1)`.
    pub fn uniform(&self) -> f64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && (p >= 1.0 || self.uniform() < p)
    }
}

/// A status class such as `2xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StatusClass(pub u8);

impl StatusClass {
    /// The class of `status`.
    pub fn of(status: u16) -> Self {
        Self((status / 100) as u8)
    }

    /// `"2xx"` etc.
    pub fn as_str(self) -> &'static str {
        match self.0 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        }
    }
}

impl TryFrom<String> for StatusClass {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_bytes() {
            [d @ b'2'..=b'5', b'x' | b'X', b'x' | b'X'] => Ok(Self(d - b'0')),
            _ => Err(format!(
                "invalid status class {s:?}: expected 2xx, 3xx, 4xx or 5xx (1xx are not final responses)"
            )),
        }
    }
}

impl From<StatusClass> for String {
    fn from(c: StatusClass) -> String {
        c.as_str().to_owned()
    }
}

/// Which requests a fault applies to: `route` (a route template such as `/api/{*path}`)
/// and `status_class` (e.g. `2xx`). Without a route, a fault applies to the workload routes
/// only (not `/healthz`, `/readyz`, `/metrics` unless named).
fn scope_matches(
    scope_route: &Option<String>,
    scope_class: Option<StatusClass>,
    route: &str,
    workload: bool,
    status: u16,
) -> bool {
    let route_ok = match scope_route {
        Some(r) => r == route,
        None => workload,
    };
    route_ok && scope_class.is_none_or(|c| c == StatusClass::of(status))
}

/// Added latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LatencyFault {
    /// `50ms`, `uniform:10ms:50ms` or `exp:20ms`.
    pub delay: Distribution,
    /// Only this route template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Only this status class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_class: Option<StatusClass>,
}

/// Injected errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ErrorFault {
    /// Fraction of matching requests answered with `status`.
    pub rate: f64,
    /// Status of the injected error (default 500).
    #[serde(default = "default_error_status")]
    pub status: u16,
    /// Only this route template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Only this status class (of the status the request would have had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_class: Option<StatusClass>,
}

fn default_error_status() -> u16 {
    500
}

/// Deliberately lost telemetry: matching requests emit neither span nor log (metrics still
/// count them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DropFault {
    /// Fraction of matching requests whose span and log are not emitted.
    pub rate: f64,
    /// Only this route template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Only this status class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_class: Option<StatusClass>,
}

/// The set of active faults, as `PUT /chaos` takes it and `GET /chaos` returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChaosSpec {
    /// Added latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyFault>,
    /// Injected errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorFault>,
    /// Telemetry drop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_drop: Option<DropFault>,
}

/// A fault field out of its range: which field, the value given and what is valid.
/// `PUT /chaos` answers it as a 400 with these three and the sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field} {value} is invalid: expected {expected}")]
pub struct InvalidFault {
    /// The field's path in the document, e.g. `latency.delay`.
    pub field: &'static str,
    /// The value given, as JSON would write it.
    pub value: String,
    /// What would be valid.
    pub expected: String,
}

impl ChaosSpec {
    /// Checks every field against the limits the query parameters have too: delays
    /// (every draw) within [`MAX_DELAY`](crate::config::MAX_DELAY), rates in `[0, 1]`, error statuses in
    /// [`ERROR_STATUSES`], routes among the server's route templates. Status classes are
    /// checked when the document is parsed.
    pub fn validate(&self) -> Result<(), InvalidFault> {
        let invalid = |field, value: String, expected: String| {
            Err(InvalidFault {
                field,
                value,
                expected,
            })
        };
        let rate = |field, r: f64| {
            if (0.0..=1.0).contains(&r) {
                Ok(())
            } else {
                invalid(field, r.to_string(), "a fraction between 0 and 1".into())
            }
        };
        let route = |field, r: &Option<String>| match r {
            Some(r) if !Route::TEMPLATES.contains(&r.as_str()) => invalid(
                field,
                format!("{r:?}"),
                format!("one of the route templates {}", Route::TEMPLATES.join(", ")),
            ),
            _ => Ok(()),
        };
        if let Some(l) = &self.latency {
            if let Some(expected) = l.delay.exceeds_max_delay() {
                return invalid(
                    "latency.delay",
                    format!("{:?}", l.delay.to_string()),
                    expected,
                );
            }
            route("latency.route", &l.route)?;
        }
        if let Some(e) = &self.errors {
            rate("errors.rate", e.rate)?;
            if !ERROR_STATUSES.contains(&e.status) {
                return invalid(
                    "errors.status",
                    e.status.to_string(),
                    format!(
                        "an error status between {} and {}",
                        ERROR_STATUSES.start(),
                        ERROR_STATUSES.end()
                    ),
                );
            }
            route("errors.route", &e.route)?;
        }
        if let Some(d) = &self.telemetry_drop {
            rate("telemetryDrop.rate", d.rate)?;
            route("telemetryDrop.route", &d.route)?;
        }
        Ok(())
    }

    /// Whether any fault is set.
    pub fn is_empty(&self) -> bool {
        self.latency.is_none() && self.errors.is_none() && self.telemetry_drop.is_none()
    }
}

/// The live fault set, cheap to consult on every request.
#[derive(Debug)]
pub struct Chaos {
    active: AtomicBool,
    spec: RwLock<Arc<ChaosSpec>>,
    dice: Dice,
}

/// What chaos does to one request.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Latency to add before answering.
    pub delay: Option<Duration>,
    /// Status to answer with instead.
    pub error_status: Option<u16>,
}

impl Chaos {
    /// No faults; draws from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            active: AtomicBool::new(false),
            spec: RwLock::new(Arc::default()),
            dice: Dice::new(seed),
        }
    }

    /// The current faults.
    pub fn get(&self) -> Arc<ChaosSpec> {
        match self.spec.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the faults (validate first).
    pub fn set(&self, spec: ChaosSpec) {
        let active = !spec.is_empty();
        match self.spec.write() {
            Ok(mut g) => *g = Arc::new(spec),
            Err(p) => *p.into_inner() = Arc::new(spec),
        }
        self.active.store(active, Ordering::Release);
    }

    fn current(&self) -> Option<Arc<ChaosSpec>> {
        self.active.load(Ordering::Acquire).then(|| self.get())
    }

    /// Latency and error faults for a request on `route` that would answer `status`.
    pub fn on_response(&self, route: &str, workload: bool, status: u16) -> Verdict {
        let Some(spec) = self.current() else {
            return Verdict::default();
        };
        let mut v = Verdict::default();
        if let Some(e) = &spec.errors
            && scope_matches(&e.route, e.status_class, route, workload, status)
            && self.dice.chance(e.rate)
        {
            v.error_status = Some(e.status);
        }
        let status = v.error_status.unwrap_or(status);
        if let Some(l) = &spec.latency
            && scope_matches(&l.route, l.status_class, route, workload, status)
        {
            // `set` does not insist on a validated spec: cap here too.
            v.delay = Some(l.delay.sample(self.dice.uniform()));
        }
        v
    }

    /// Whether the telemetry of a finished request is deliberately dropped.
    pub fn drop_telemetry(&self, route: &str, workload: bool, status: u16) -> bool {
        let Some(spec) = self.current() else {
            return false;
        };
        match &spec.telemetry_drop {
            Some(d) => {
                scope_matches(&d.route, d.status_class, route, workload, status)
                    && self.dice.chance(d.rate)
            }
            None => false,
        }
    }

    /// A uniform draw for other random choices (distributions).
    pub fn uniform(&self) -> f64 {
        self.dice.uniform()
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        self.dice.chance(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_hit_rate_is_close_to_p() {
        let d = Dice::new(7);
        let hits = (0..100_000).filter(|_| d.chance(0.2)).count();
        assert!((19_000..=21_000).contains(&hits), "{hits}");
    }

    #[test]
    fn scoped_drop_only_hits_its_status_class() {
        let c = Chaos::new(1);
        let spec: ChaosSpec =
            serde_json::from_str(r#"{"telemetryDrop":{"rate":1.0,"statusClass":"2xx"}}"#).unwrap();
        c.set(spec);
        assert!(c.drop_telemetry("/api/{*path}", true, 200));
        assert!(!c.drop_telemetry("/api/{*path}", true, 503));
        assert!(!c.drop_telemetry("/metrics", false, 200));
    }

    /// Every fault field out of range, and the exact sentence, field, value and range
    /// `PUT /chaos` answers with.
    #[test]
    fn every_fault_field_is_validated_with_field_value_and_range() {
        const RATE: &str = "a fraction between 0 and 1";
        let routes = format!("one of the route templates {}", Route::TEMPLATES.join(", "));
        let cases: &[(&str, &str, &str, &str)] = &[
            // See: issue #15 item 4 -- accepted, then panicked a worker converting the draw.
            (
                r#"{"latency":{"delay":"exp:500000000000years"}}"#,
                "latency.delay",
                r#""exp:500000000000years""#,
                "an exp: mean of at most 3s (draws reach 20x the mean, which must stay within 60s)",
            ),
            (
                r#"{"latency":{"delay":"exp:3001ms"}}"#,
                "latency.delay",
                r#""exp:3s 1ms""#,
                "an exp: mean of at most 3s (draws reach 20x the mean, which must stay within 60s)",
            ),
            (
                r#"{"latency":{"delay":"61s"}}"#,
                "latency.delay",
                r#""1m 1s""#,
                "a delay of at most 60s",
            ),
            (
                r#"{"latency":{"delay":"uniform:1s:90s"}}"#,
                "latency.delay",
                r#""uniform:1s:1m 30s""#,
                "an upper bound of at most 60s",
            ),
            (
                r#"{"latency":{"delay":"1ms","route":"/nope"}}"#,
                "latency.route",
                r#""/nope""#,
                &routes,
            ),
            (r#"{"errors":{"rate":1.5}}"#, "errors.rate", "1.5", RATE),
            (r#"{"errors":{"rate":-0.1}}"#, "errors.rate", "-0.1", RATE),
            (
                r#"{"errors":{"rate":0.1,"status":200}}"#,
                "errors.status",
                "200",
                "an error status between 400 and 599",
            ),
            (
                r#"{"errors":{"rate":0.1,"status":600}}"#,
                "errors.status",
                "600",
                "an error status between 400 and 599",
            ),
            (
                r#"{"errors":{"rate":0.1,"route":"/api"}}"#,
                "errors.route",
                r#""/api""#,
                &routes,
            ),
            (
                r#"{"telemetryDrop":{"rate":1.0000001}}"#,
                "telemetryDrop.rate",
                "1.0000001",
                RATE,
            ),
            (
                r#"{"telemetryDrop":{"rate":0.5,"route":"unmatched"}}"#,
                "telemetryDrop.route",
                r#""unmatched""#,
                &routes,
            ),
        ];
        for (raw, field, value, expected) in cases {
            let spec: ChaosSpec = serde_json::from_str(raw).unwrap();
            let e = spec.validate().unwrap_err();
            assert_eq!(
                (e.field, e.value.as_str(), e.expected.as_str()),
                (*field, *value, *expected),
                "{raw}"
            );
            assert_eq!(
                e.to_string(),
                format!("{field} {value} is invalid: expected {expected}")
            );
        }
        for raw in [
            r#"{"latency":{"delay":"60s","route":"/metrics"}}"#,
            r#"{"latency":{"delay":"exp:3s"}}"#,
            r#"{"latency":{"delay":"uniform:0s:60s"}}"#,
            r#"{"errors":{"rate":0,"status":400},"telemetryDrop":{"rate":1}}"#,
            r#"{"errors":{"rate":1,"status":599,"route":"/api/{*path}"}}"#,
        ] {
            let spec: ChaosSpec = serde_json::from_str(raw).unwrap();
            assert_eq!(spec.validate(), Ok(()), "{raw}");
        }
        let e = serde_json::from_str::<ChaosSpec>(r#"{"errors":{"rate":1,"statusClass":"1xx"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(r#"invalid status class "1xx": expected 2xx, 3xx, 4xx or 5xx"#),
            "{e}"
        );
    }

    #[test]
    fn route_templates_are_the_routes_templates() {
        let all = [
            Route::Echo,
            Route::Api,
            Route::ChatStream,
            Route::Storm,
            Route::Healthz,
            Route::Readyz,
            Route::Metrics,
        ];
        assert_eq!(all.map(Route::as_str), Route::TEMPLATES);
    }

    #[test]
    fn spec_round_trips_and_rejects_unknown_fields() {
        let raw = r#"{"latency":{"delay":"uniform:10ms:50ms","route":"/api/{*path}"},"errors":{"rate":0.1,"status":503},"telemetryDrop":{"rate":0.9,"statusClass":"2xx"}}"#;
        let spec: ChaosSpec = serde_json::from_str(raw).unwrap();
        spec.validate().unwrap();
        let back: ChaosSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(spec, back);
        assert!(serde_json::from_str::<ChaosSpec>(r#"{"latncy":{}}"#).is_err());
        let bad: ChaosSpec = serde_json::from_str(r#"{"errors":{"rate":1.5}}"#).unwrap();
        assert_eq!(bad.validate().unwrap_err().field, "errors.rate");
    }
}
