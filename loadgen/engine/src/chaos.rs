//! The chaos driver: applies a [`ChaosPlan`](crate::plan::chaos::ChaosPlan)'s timeline of faults through the
//! echo-server's admin API (`PUT /chaos`, bearer token) while the load runs, records the
//! times they were in force, and removes them (`DELETE /chaos`) when the timeline ends,
//! when the load ends, and when the run is interrupted.
//!
//! Overlapping events combine: at every start or end of an event the driver applies the
//! union of the events in force, a later-starting event winning for a fault both set.

use std::time::{Duration, Instant};

use bytes::Bytes;
use echo_server::ChaosSpec;
use http::{Method, Request, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ricochet_reports::model::ChaosEvent;
use ricochet_verify::Secret;
use tokio_util::sync::CancellationToken;

use crate::plan::chaos::ChaosEventPlan;

/// The admin API of a running echo-server.
#[derive(Debug, Clone)]
pub struct Admin {
    url: String,
    token: Secret,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Admin {
    /// An admin API at `url` (`http://host:port`) with its token.
    pub fn new(url: impl Into<String>, token: Secret) -> Self {
        Self {
            url: url.into(),
            token,
            // A fresh connection per call: calls are seconds apart, longer than the
            // echo-server keeps an idle connection, and a pooled one it closed meanwhile
            // fails the call ("faults may still be active").
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build_http(),
        }
    }

    async fn call(&self, method: Method, body: Bytes) -> Result<(), String> {
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("{}/chaos", self.url))
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.token.expose()),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the admin request: {e}"))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("admin API {} unreachable: {e}", self.url))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                Ok(())
            } else {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                Err(format!(
                    "admin API {} answered {method} /chaos with {status}: {text}",
                    self.url
                ))
            }
        };
        tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .map_err(|_| format!("admin API {} did not answer within 5s", self.url))?
    }

    /// Replaces the active faults.
    pub async fn apply(&self, spec: &ChaosSpec) -> Result<(), String> {
        let body = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
        self.call(Method::PUT, Bytes::from(body)).await
    }

    /// Removes every fault.
    pub async fn clear(&self) -> Result<(), String> {
        self.call(Method::DELETE, Bytes::new()).await
    }
}

/// The faults in force at `t`, later-starting events winning.
fn merged(events: &[ChaosEventPlan], t: Duration) -> ChaosSpec {
    let mut spec = ChaosSpec::default();
    for e in events {
        if e.at <= t && e.until.is_none_or(|u| t < u) {
            if e.fault.latency.is_some() {
                spec.latency = e.fault.latency.clone();
            }
            if e.fault.errors.is_some() {
                spec.errors = e.fault.errors.clone();
            }
            if e.fault.telemetry_drop.is_some() {
                spec.telemetry_drop = e.fault.telemetry_drop.clone();
            }
        }
    }
    spec
}

/// Runs the timeline from `start` until it ends or `stop` fires, then clears every fault.
/// Returns each event with the times (seconds since `start`) it was in force; an event the
/// admin API refused says so in its `fault`, and `errors` lists what went wrong.
pub async fn drive(
    events: Vec<ChaosEventPlan>,
    admin: Admin,
    start: Instant,
    stop: CancellationToken,
) -> (Vec<ChaosEvent>, Vec<String>) {
    let mut boundaries: Vec<Duration> = events
        .iter()
        .flat_map(|e| std::iter::once(e.at).chain(e.until))
        .collect();
    boundaries.sort();
    boundaries.dedup();
    let mut applied: Vec<Option<f64>> = vec![None; events.len()];
    let mut ended: Vec<Option<f64>> = vec![None; events.len()];
    let mut failed: Vec<Option<String>> = vec![None; events.len()];
    let mut errors = Vec::new();
    let mut touched = false;
    for b in boundaries {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until((start + b).into()) => {}
        }
        let spec = merged(&events, b);
        let result = if spec.is_empty() {
            admin.clear().await
        } else {
            admin.apply(&spec).await
        };
        let now = start.elapsed().as_secs_f64();
        touched = true;
        for (i, e) in events.iter().enumerate() {
            if e.at == b {
                match &result {
                    Ok(()) => applied[i] = Some(now),
                    Err(m) => failed[i] = Some(m.clone()),
                }
            }
            if e.until == Some(b) && applied[i].is_some() && ended[i].is_none() {
                ended[i] = Some(now);
            }
        }
        if let Err(m) = result {
            errors.push(m);
        }
    }
    // Events without `for` last until the load ends.
    if events.iter().any(|e| e.until.is_none()) {
        stop.cancelled().await;
    }
    // Also after a timeline that ended clean: a fault the admin API took while its answer
    // was lost must not outlive the run.
    if touched && let Err(m) = admin.clear().await {
        errors.push(format!("faults may still be active: {m}"));
    }
    let end = start.elapsed().as_secs_f64();
    let out = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match (&failed[i], applied[i]) {
            (Some(m), _) => Some(ChaosEvent {
                name: e.name.clone(),
                fault: format!("{} (not applied: {m})", e.label),
                start_secs: e.at.as_secs_f64(),
                end_secs: e.at.as_secs_f64(),
            }),
            (None, Some(a)) => Some(ChaosEvent {
                name: e.name.clone(),
                fault: e.label.clone(),
                start_secs: a,
                end_secs: ended[i].unwrap_or(end),
            }),
            (None, None) => None,
        })
        .collect();
    (out, errors)
}

#[cfg(test)]
mod tests {
    use ricochet_crds::FaultSpec;

    use super::*;
    use crate::plan::chaos::fault;

    fn event(at: u64, until: Option<u64>, f: FaultSpec) -> ChaosEventPlan {
        let (fault, label) = fault("f", &f).unwrap();
        ChaosEventPlan {
            at: Duration::from_secs(at),
            until: until.map(Duration::from_secs),
            fault,
            label,
            name: None,
        }
    }

    #[test]
    fn overlapping_events_combine_and_the_later_wins_per_fault() {
        let a = event(
            0,
            Some(10),
            FaultSpec {
                telemetry_drop_rate: Some(0.05),
                ..FaultSpec::default()
            },
        );
        let b = event(
            5,
            None,
            FaultSpec {
                telemetry_drop_rate: Some(0.5),
                error_rate: Some(0.1),
                ..FaultSpec::default()
            },
        );
        let events = vec![a, b];
        let at = |s| merged(&events, Duration::from_secs(s));
        assert_eq!(at(1).telemetry_drop.map(|d| d.rate), Some(0.05));
        assert!(at(1).errors.is_none());
        assert_eq!(at(6).telemetry_drop.map(|d| d.rate), Some(0.5));
        assert_eq!(at(6).errors.map(|e| e.rate), Some(0.1));
        assert_eq!(at(11).telemetry_drop.map(|d| d.rate), Some(0.5));
    }
}
