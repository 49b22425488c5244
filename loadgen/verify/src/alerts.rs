//! Alert drills' sources: Alertmanager's API v2 (`GET /api/v2/alerts`: is an alert
//! active, silenced or inhibited there?) and a webhook [`Receiver`] that an Alertmanager
//! route points at, so a drill sees the notification itself. Prometheus' rule state is
//! read by [`crate::prometheus::PrometheusClient::alerts`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{HttpBackend, Secret, Unavailable};
use crate::prometheus::string_map;

/// One alert as Alertmanager holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedAlert {
    /// Its labels, `alertname` among them.
    pub labels: BTreeMap<String, String>,
    /// `active`, `suppressed` (silenced or inhibited) or `unprocessed`.
    pub state: String,
    /// Silences that suppress it.
    pub silenced_by: Vec<String>,
    /// Alerts that inhibit it.
    pub inhibited_by: Vec<String>,
}

/// Alertmanager's API v2.
#[derive(Debug)]
pub struct AlertmanagerClient {
    backend: HttpBackend,
}

impl AlertmanagerClient {
    /// A client over `backend` (base URL `http://alertmanager:9093`).
    pub fn new(backend: HttpBackend) -> Self {
        Self { backend }
    }

    /// `alertmanager http://alertmanager:9093` (never credentials).
    pub fn describe(&self) -> String {
        format!("alertmanager {}", self.backend.base_for_display())
    }

    /// Every alert Alertmanager holds (active, silenced, inhibited).
    pub async fn alerts(&self) -> Result<Vec<ManagedAlert>, Unavailable> {
        let a = self
            .backend
            .get("api/v2/alerts", &[], "application/json")
            .await?;
        let took = vec![a.took];
        let parsed = (a.status.is_success() && a.is_json())
            .then(|| serde_json::from_slice::<Value>(&a.body).ok())
            .flatten()
            .and_then(|v| parse_managed_alerts(&v).ok());
        match parsed {
            Some(alerts) => Ok(alerts),
            None if a.status.is_client_error() && a.is_json() && a.status.as_u16() != 404 => {
                Err(Unavailable {
                    reason: format!(
                        "alertmanager ({}) answered {}: {}",
                        a.url,
                        a.status.as_u16(),
                        a.snippet()
                    ),
                    took,
                })
            }
            None => Err(Unavailable {
                reason: self.backend.foreign_reason(&a, "Alertmanager"),
                took,
            }),
        }
    }
}

/// Parses `GET /api/v2/alerts`' array.
pub fn parse_managed_alerts(v: &Value) -> Result<Vec<ManagedAlert>, String> {
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    v.as_array()
        .ok_or("the answer is not an array of alerts")?
        .iter()
        .map(|a| {
            let labels = string_map(a.get("labels")).ok_or("an alert has no `labels` object")?;
            let status = a.get("status").ok_or("an alert has no `status`")?;
            Ok(ManagedAlert {
                labels,
                state: status
                    .get("state")
                    .and_then(Value::as_str)
                    .ok_or("an alert has no `status.state`")?
                    .to_owned(),
                silenced_by: strings(status.get("silencedBy")),
                inhibited_by: strings(status.get("inhibitedBy")),
            })
        })
        .collect()
}

/// One alert of a webhook notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifiedAlert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// One webhook notification received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// When it arrived.
    pub received: Instant,
    /// The Alertmanager receiver it was sent for.
    pub receiver: String,
    /// Its alerts, each with its own status.
    pub alerts: Vec<NotifiedAlert>,
}

/// Parses Alertmanager's webhook payload (version 4).
pub fn parse_notification(body: &[u8], received: Instant) -> Result<Notification, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let alerts = v
        .get("alerts")
        .and_then(Value::as_array)
        .ok_or("no `alerts` array: not an Alertmanager webhook payload")?
        .iter()
        .map(|a| {
            Ok(NotifiedAlert {
                status: a
                    .get("status")
                    .and_then(Value::as_str)
                    .ok_or("an alert has no `status`")?
                    .to_owned(),
                labels: string_map(a.get("labels")).ok_or("an alert has no `labels`")?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Notification {
        received,
        receiver: v
            .get("receiver")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        alerts,
    })
}

/// Largest webhook body accepted (Alertmanager's default `max_alerts` is unbounded, but a
/// drill's groups are small).
pub const MAX_BODY: usize = 1 << 20;
/// Notifications kept; later ones are counted as refused.
pub const MAX_NOTIFICATIONS: usize = 10_000;

#[derive(Debug, Default)]
struct Inbox {
    notifications: Mutex<Vec<Notification>>,
    refused: AtomicU64,
}

/// A webhook receiver for Alertmanager: accepts `POST`s of its JSON payload on any path,
/// with a bearer token when one is set, and keeps what arrived.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    inbox: Arc<Inbox>,
    cancel: CancellationToken,
}

impl Receiver {
    /// Listens on `listen`; requests must carry `Authorization: Bearer <token>` when
    /// `token` is set.
    pub async fn start(listen: SocketAddr, token: Option<Secret>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let inbox = Arc::new(Inbox::default());
        let cancel = CancellationToken::new();
        tokio::spawn(accept_loop(listener, inbox.clone(), token, cancel.clone()));
        Ok(Self {
            addr,
            inbox,
            cancel,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every notification so far, in arrival order.
    pub fn notifications(&self) -> Vec<Notification> {
        self.inbox
            .notifications
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requests refused: wrong method or token, a body too large or not Alertmanager's.
    pub fn refused(&self) -> u64 {
        self.inbox.refused.load(Ordering::Relaxed)
    }

    /// Stops listening.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    inbox: Arc<Inbox>,
    token: Option<Secret>,
    cancel: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(_) => continue,
            },
        };
        let (inbox, token, cancel) = (inbox.clone(), token.clone(), cancel.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (inbox, token) = (inbox.clone(), token.clone());
                async move { Ok::<_, Infallible>(handle(&inbox, token.as_ref(), req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                () = cancel.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}

fn answer(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    r
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(
    inbox: &Inbox,
    token: Option<&Secret>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let refuse = |status, text| {
        inbox.refused.fetch_add(1, Ordering::Relaxed);
        answer(status, text)
    };
    if req.method() != Method::POST {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST Alertmanager webhooks here\n",
        );
    }
    if let Some(t) = token {
        let sent = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !sent.is_some_and(|s| same(s, t.expose().as_bytes())) {
            return refuse(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
        }
    }
    let received = Instant::now();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
    };
    let notification = match parse_notification(&body, received) {
        Ok(n) => n,
        Err(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "not an Alertmanager webhook payload\n",
            );
        }
    };
    let mut kept = inbox
        .notifications
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if kept.len() >= MAX_NOTIFICATIONS {
        drop(kept);
        return refuse(StatusCode::TOO_MANY_REQUESTS, "too many notifications\n");
    }
    kept.push(notification);
    answer(StatusCode::OK, "ok\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_payload_gives_each_alert_its_status_and_labels() {
        let body = br#"{"version":"4","groupKey":"{}:{}","status":"firing","receiver":"ricochet",
            "groupLabels":{},"commonLabels":{"alertname":"EchoServerHighErrorRate"},
            "alerts":[{"status":"firing","labels":{"alertname":"EchoServerHighErrorRate","service":"echo-server"},
                       "annotations":{},"startsAt":"2026-12-03T16:00:00Z","endsAt":"0001-01-01T00:00:00Z"},
                      {"status":"resolved","labels":{"alertname":"EchoServerDown"},"annotations":{}}]}"#;
        let n = parse_notification(body, Instant::now()).unwrap();
        assert_eq!(n.receiver, "ricochet");
        assert_eq!(n.alerts.len(), 2);
        assert_eq!(n.alerts[0].status, "firing");
        assert_eq!(n.alerts[0].labels["service"], "echo-server");
        assert_eq!(n.alerts[1].status, "resolved");
        assert!(parse_notification(br#"{"message":"hi"}"#, Instant::now()).is_err());
        assert!(parse_notification(b"<html>", Instant::now()).is_err());
    }

    #[test]
    fn alertmanager_alerts_say_whether_they_are_suppressed() {
        let v: Value = serde_json::from_str(
            r#"[{"labels":{"alertname":"A"},"status":{"state":"active","silencedBy":[],"inhibitedBy":[]},"receivers":[{"name":"r"}]},
                {"labels":{"alertname":"B"},"status":{"state":"suppressed","silencedBy":["s1"],"inhibitedBy":[]}}]"#,
        )
        .unwrap();
        let a = parse_managed_alerts(&v).unwrap();
        assert_eq!(a[0].state, "active");
        assert_eq!(a[1].silenced_by, ["s1"]);
        assert!(parse_managed_alerts(&serde_json::json!({"alerts": []})).is_err());
    }

    #[tokio::test]
    async fn the_receiver_keeps_authorised_notifications_and_counts_the_rest() {
        let r = Receiver::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(Secret::new("s3cret")),
        )
        .await
        .unwrap();
        let url = format!("http://{}/alerts", r.addr());
        let client = reqwest::Client::new();
        let body = r#"{"receiver":"ricochet","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"X"}}]}"#;
        let post = |auth: Option<&'static str>, body: String| {
            let mut req = client.post(&url).body(body);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            req.send()
        };
        assert_eq!(
            post(Some("Bearer s3cret"), body.into())
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            post(Some("Bearer wrong"), body.into())
                .await
                .unwrap()
                .status(),
            401
        );
        assert_eq!(post(None, body.into()).await.unwrap().status(), 401);
        assert_eq!(
            post(Some("Bearer s3cret"), "{}".into())
                .await
                .unwrap()
                .status(),
            400
        );
        assert_eq!(
            post(Some("Bearer s3cret"), "x".repeat(MAX_BODY + 1))
                .await
                .unwrap()
                .status(),
            413
        );
        let got = r.notifications();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].alerts[0].labels["alertname"], "X");
        assert_eq!(r.refused(), 4);
    }
}
