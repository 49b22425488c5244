//! The platform checks' clients against recorded answers: PromQL and LogQL instant
//! queries (values, the backend's own errors, answers that are not the backend), and alert
//! state from Prometheus' rules and Alertmanager's API v2 (recorded from Debian's
//! prometheus 2.42 and prometheus-alertmanager 0.25 while an echo-server was down).

use ricochet_verify::alerts::AlertmanagerClient;
use ricochet_verify::http::Endpoint;
use ricochet_verify::prometheus::PrometheusClient;
use ricochet_verify::query::{Language, QueryClient};

use crate::backends::{Canned, Stub, backend, decoded_query};

async fn client(language: Language, answer: Canned) -> (QueryClient, Stub) {
    let stub = Stub::start(vec![answer]).await;
    let name = match language {
        Language::PromQl => "prometheus",
        Language::LogQl => "loki",
    };
    let c = QueryClient::new(language, backend(name, Endpoint::new(&stub.url()).unwrap()));
    (c, stub)
}

#[tokio::test]
async fn promql_and_logql_instant_queries_give_their_series_or_the_backends_own_error() {
    let (c, stub) = client(
        Language::PromQl,
        Canned::fixture("prometheus-2.42-query-sum-count.json"),
    )
    .await;
    let v = c.instant("sum(x)").await.unwrap();
    assert_eq!((v.len(), v[0].value), (1, 3.0));
    assert_eq!(
        stub.seen()[0].path_and_query.split('?').next(),
        Some("/api/v1/query")
    );

    let (c, stub) = client(
        Language::LogQl,
        Canned::fixture("loki-2.9.9-query-count-over-time-vector.json"),
    )
    .await;
    let logql = r#"count_over_time({app="echo-server"}[10m])"#;
    let v = c.instant(logql).await.unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].labels["app"], "echo-server");
    assert_eq!(v[0].value, 3.0);
    assert!(
        stub.seen()[0]
            .path_and_query
            .starts_with("/loki/api/v1/query?")
    );
    assert_eq!(decoded_query(&stub.seen()[0]), format!("query={logql}"));

    let (c, _) = client(
        Language::PromQl,
        Canned::fixture("prometheus-2.42-query-syntax-error.json"),
    )
    .await;
    let e = c.instant("sum(x").await.unwrap_err().reason;
    assert!(
        e.contains("400 bad_data") && e.contains("parse error"),
        "{e}"
    );

    let (c, _) = client(
        Language::LogQl,
        Canned::fixture("loki-2.9.9-query-range-syntax-error.txt"),
    )
    .await;
    let e = c.instant("{app=").await.unwrap_err().reason;
    assert!(
        e.contains("answered 400: parse error at line 1, col 24: syntax error"),
        "Loki's own message: {e}"
    );

    let (c, _) = client(
        Language::LogQl,
        Canned::fixture("loki-2.9.9-query-range-found.json"),
    )
    .await;
    let e = c
        .instant(r#"{app="echo-server"}"#)
        .await
        .unwrap_err()
        .reason;
    assert!(e.contains("must be a metric query"), "{e}");

    let (c, _) = client(
        Language::PromQl,
        Canned::new(
            404,
            "text/html",
            "<html><title>404 Not Found</title></html>",
        ),
    )
    .await;
    let e = c.instant("up").await.unwrap_err().reason;
    assert!(
        e.contains("not Prometheus: check the URL's path prefix"),
        "{e}"
    );
    let (c, _) = client(
        Language::LogQl,
        Canned::new(502, "text/html", "<html><title>Bad Gateway</title></html>"),
    )
    .await;
    let e = c.instant("sum(x)").await.unwrap_err().reason;
    assert!(e.contains("an HTML page, not Loki"), "{e}");
}

#[tokio::test]
async fn alert_state_is_read_from_prometheus_rules_and_alertmanager() {
    let stub = Stub::start(vec![Canned::fixture("prometheus-2.42-alerts-firing.json")]).await;
    let p = PrometheusClient::new(backend("prometheus", Endpoint::new(&stub.url()).unwrap()));
    let alerts = p.alerts().await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].labels["alertname"], "EchoServerDown");
    assert_eq!(alerts[0].state, "firing");

    let am = |file: &'static str| async move {
        let stub = Stub::start(vec![Canned::fixture(file)]).await;
        AlertmanagerClient::new(backend("alertmanager", Endpoint::new(&stub.url()).unwrap()))
            .alerts()
            .await
    };
    let active = am("alertmanager-0.25-alerts-active.json").await.unwrap();
    assert_eq!(
        (active[0].state.as_str(), active[0].silenced_by.len()),
        ("active", 0)
    );
    let silenced = am("alertmanager-0.25-alerts-silenced.json").await.unwrap();
    assert_eq!(silenced[0].state, "suppressed");
    assert_eq!(silenced[0].silenced_by.len(), 1);

    // Not Alertmanager: a proxy's page, or nothing listening.
    let stub = Stub::start(vec![Canned::new(
        404,
        "text/html",
        "<html><title>404 Not Found</title></html>",
    )])
    .await;
    let c = AlertmanagerClient::new(backend("alertmanager", Endpoint::new(&stub.url()).unwrap()));
    let e = c.alerts().await.unwrap_err().reason;
    assert!(e.contains("not Alertmanager"), "{e}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let c = AlertmanagerClient::new(backend("alertmanager", Endpoint::new(&url).unwrap()));
    let e = c.alerts().await.unwrap_err().reason;
    assert!(
        e.contains(&url.replace("http://", "")),
        "names where it asked: {e}"
    );
}
