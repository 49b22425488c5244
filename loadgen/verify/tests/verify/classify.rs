//! "Is this the backend speaking?" Answers an ingress, an API gateway or an auth proxy
//! sends (the constructed fixtures of `tests/fixtures/backends/ingress/`: nginx's HTML
//! 404, a Basic 401, oauth2-proxy's login redirect, Kong's JSON 404 and 401) read as
//! unknown with a reason naming the URL and what came back, for Tempo, Jaeger, Loki and
//! Prometheus alike; only each backend's own not-found form reads as missing. Every
//! answer is served by a real HTTP server on 127.0.0.1:0.
//!
//! See: the issue "verdicts that hold in real deployments".

use ricochet_verify::loki::LokiVerifier;
use ricochet_verify::prometheus::{ExemplarVerifier, PrometheusClient};
use ricochet_verify::tempo::{TraceApi, TraceVerifier};
use ricochet_verify::{Endpoint, Outcome, Verifier};

use super::backends::{ABSENT, Canned, Stub, T1, T2, Want, ask, assert_outcome, backend};

/// A page a UI serves with 200 for any path (Grafana, Jaeger UI), where an API was meant.
fn ui_page(title: &str) -> Canned {
    Canned::new(
        200,
        "text/html; charset=UTF-8",
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n  <title>{title}</title>\n</head>\n<body><div id=\"root\"></div></body>\n</html>\n"
        ),
    )
}

/// The ingress answers every backend must read as unknown, with the words (beside the
/// backend's name) the reason must hold. `{api}` stands for the backend's name.
fn ingress_answers() -> Vec<(&'static str, Canned, Vec<&'static str>)> {
    vec![
        (
            "nginx 404",
            Canned::fixture("ingress/nginx-404.html"),
            vec!["answered 404 text/html “404 Not Found”, not {api}: check the URL's path prefix"],
        ),
        (
            "nginx basic-auth 401",
            Canned::fixture("ingress/nginx-401-basic-auth.html"),
            vec![
                "answered 401 text/html “401 Authorization Required”",
                "refused the query",
                "X-Scope-OrgID",
                "it asks for `Basic realm=\"Authentication Required\"`",
            ],
        ),
        (
            "oauth2-proxy 302",
            Canned::fixture("ingress/oauth2-proxy-302-login.html"),
            vec![
                "answered 302 to https://sso.example/oauth2/start: a login redirect, not {api}: check the URL and credentials",
            ],
        ),
        (
            "kong 404",
            Canned::fixture("ingress/kong-404-no-route.json"),
            vec![
                "answered 404 application/json `{\"message\":\"no Route matched with those values\"}`, not {api}: check the URL's path prefix",
            ],
        ),
        (
            "kong key-auth 401",
            Canned::fixture("ingress/kong-401-key-auth.json"),
            vec![
                "answered 401 application/json `{\"message\":\"No API key found in request\"}`",
                "refused the query",
                "it asks for `Key realm=\"kong\"`",
            ],
        ),
        (
            "a UI's page",
            ui_page("Grafana"),
            vec!["answered 200 text/html “Grafana”, not {api}: check the URL's path prefix"],
        ),
    ]
}

/// Asks `make(base)` about `ids` for every ingress answer, served under the wrong prefix
/// `/typo`: each outcome is unknown, names the URL asked and what came back, and only one
/// request was sent (no redirect followed, nothing retried).
async fn every_ingress_answer_is_unknown<V: Verifier>(
    api: &str,
    path: &str,
    ids: &[&str],
    make: impl Fn(Endpoint) -> V,
) {
    for (case, canned, words) in ingress_answers() {
        let stub = Stub::start(vec![canned]).await;
        let v = make(Endpoint::new(&format!("{}/typo", stub.url())).unwrap());
        let got = ask(&v, ids).await;
        let url = format!("{}/typo/{path}", stub.url());
        let mut want: Vec<String> = words.iter().map(|w| w.replace("{api}", api)).collect();
        want.push(format!("{url} answered"));
        for (i, o) in got.iter().enumerate() {
            let Outcome::Unknown { reason } = o else {
                panic!("{api}, {case}: sample {i}: got {o:?}, want unknown");
            };
            for w in &want {
                assert!(
                    reason.contains(w.as_str()),
                    "{api}, {case}: reason `{reason}` lacks `{w}`"
                );
            }
            // The login redirect's query (state, the return URL) stays out of reasons.
            assert!(!reason.contains("rd="), "{api}, {case}: {reason}");
        }
        assert_eq!(
            stub.seen().len(),
            1,
            "{api}, {case}: one request, nothing followed"
        );
    }
}

#[tokio::test]
async fn tempo_behind_an_ingress_answers_unknown_and_only_its_own_404_is_missing() {
    every_ingress_answer_is_unknown("Tempo", "api/traces/<trace-id>", &[T1], |ep| {
        TraceVerifier::tempo(backend("tempo", ep))
    })
    .await;
    // Tempo's own 404 `trace not found` (single-tenant, and for another tenant) is missing.
    for file in [
        "tempo-2.2.4-trace-not-found.txt",
        "tempo-2.2.4-mt-trace-by-id-other-tenant.txt",
    ] {
        let stub = Stub::start(vec![Canned::fixture(file)]).await;
        let v = TraceVerifier::tempo(backend("tempo", Endpoint::new(&stub.url()).unwrap()));
        assert_eq!(ask(&v, &[ABSENT]).await, vec![Outcome::Missing], "{file}");
    }
    // The same words under another status or content type are not Tempo's not-found.
    for canned in [
        Canned::new(404, "text/html", "trace not found"),
        Canned::new(404, "application/json", "\"trace not found\""),
        Canned::new(410, "text/plain; charset=utf-8", "trace not found"),
    ] {
        let stub = Stub::start(vec![canned.clone()]).await;
        let v = TraceVerifier::tempo(backend("tempo", Endpoint::new(&stub.url()).unwrap()));
        let got = ask(&v, &[ABSENT]).await;
        assert!(
            matches!(&got[0], Outcome::Unknown { .. }),
            "{canned:?}: {got:?}"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_never_followed_even_to_the_trace() {
    // A 307 to the very path that would answer with the trace: following it would read
    // found; the client must stop at the redirect and say where it points.
    let stub = Stub::start(vec![
        Canned {
            headers: vec![("location".into(), format!("/api/traces/{T1}"))],
            ..Canned::new(307, "text/html", "")
        },
        Canned::fixture("tempo-2.2.4-trace-by-id.json"),
    ])
    .await;
    let v = TraceVerifier::tempo(backend(
        "tempo",
        Endpoint::new(&format!("{}/old", stub.url())).unwrap(),
    ));
    let got = ask(&v, &[T1]).await;
    assert_outcome(
        "307",
        &got[0],
        &Want::Unknown(&[
            "/old/api/traces/<trace-id> answered 307 to http://127.0.0.1:",
            "/api/traces/<trace-id>: a redirect, not Tempo (redirects are not followed): check the URL",
        ]),
    );
    assert_eq!(stub.seen().len(), 1);
}

#[tokio::test]
async fn reasons_never_print_user_info_or_a_redirects_query() {
    let stub = Stub::start(vec![Canned {
        headers: vec![(
            "location".into(),
            "https://alice:s3cret@sso.example/login?token=abc123#frag".into(),
        )],
        ..Canned::new(302, "text/html", "")
    }])
    .await;
    let v = TraceVerifier::tempo(backend("tempo", Endpoint::new(&stub.url()).unwrap()));
    let got = ask(&v, &[T1]).await;
    assert_outcome(
        "302 with secrets",
        &got[0],
        &Want::Unknown(&[
            "answered 302 to https://sso.example/login: a login redirect, not Tempo: check the URL and credentials",
        ]),
    );
    let text = format!("{got:?}");
    for secret in ["alice", "s3cret", "token", "abc123", "frag"] {
        assert!(!text.contains(secret), "`{secret}` in {text}");
    }
}

#[tokio::test]
async fn jaeger_behind_an_ingress_answers_unknown_and_only_its_structured_404_is_missing() {
    every_ingress_answer_is_unknown("Jaeger", "api/traces/<trace-id>", &[T2], |ep| {
        TraceVerifier::new(backend("jaeger", ep), TraceApi::Jaeger, false)
    })
    .await;
    let not_found = r#"{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":404,"msg":"trace not found"}]}"#;
    let stub = Stub::start(vec![Canned::new(404, "application/json", not_found)]).await;
    let v = TraceVerifier::new(
        backend("jaeger", Endpoint::new(&stub.url()).unwrap()),
        TraceApi::Jaeger,
        false,
    );
    assert_eq!(ask(&v, &[ABSENT]).await, vec![Outcome::Missing]);
    // Tempo's plain-text not-found is not Jaeger's.
    let stub = Stub::start(vec![Canned::fixture("tempo-2.2.4-trace-not-found.txt")]).await;
    let v = TraceVerifier::new(
        backend("jaeger", Endpoint::new(&stub.url()).unwrap()),
        TraceApi::Jaeger,
        false,
    );
    assert_outcome(
        "tempo's 404 to jaeger",
        &ask(&v, &[ABSENT]).await[0],
        &Want::Unknown(&["answered 404 text/plain `trace not found`, not Jaeger"]),
    );
}

#[tokio::test]
async fn loki_behind_an_ingress_answers_unknown_and_only_an_empty_streams_answer_is_missing() {
    every_ingress_answer_is_unknown("Loki", "loki/api/v1/query_range", &[T1, T2], |ep| {
        LokiVerifier::new(backend("loki", ep), r#"{app="echo-server"}"#)
    })
    .await;
    let stub = Stub::start(vec![Canned::fixture("loki-2.9.9-query-range-empty.json")]).await;
    let v = LokiVerifier::new(
        backend("loki", Endpoint::new(&stub.url()).unwrap()),
        r#"{app="echo-server"}"#,
    );
    assert_eq!(
        ask(&v, &[T1, T2]).await,
        vec![Outcome::Missing, Outcome::Missing]
    );
}

#[tokio::test]
async fn prometheus_behind_an_ingress_answers_unknown_and_only_an_empty_result_is_missing() {
    let buckets = "http_server_request_duration_seconds_bucket";
    every_ingress_answer_is_unknown("Prometheus", "api/v1/query_exemplars", &[T1], |ep| {
        ExemplarVerifier::new(backend("prometheus", ep), buckets)
    })
    .await;
    // Prometheus' own answer to a wrong path is Go's plain-text 404: not its API either.
    let stub = Stub::start(vec![Canned::new(
        404,
        "text/plain; charset=utf-8",
        "404 page not found\n",
    )])
    .await;
    let v = ExemplarVerifier::new(
        backend(
            "prometheus",
            Endpoint::new(&format!("{}/prom", stub.url())).unwrap(),
        ),
        buckets,
    );
    assert_outcome(
        "go 404",
        &ask(&v, &[T1]).await[0],
        &Want::Unknown(&[
            "/prom/api/v1/query_exemplars answered 404 text/plain `404 page not found`, not Prometheus: check the URL's path prefix",
        ]),
    );
    // The instant-query client (RED totals) reads the same answers the same way.
    let stub = Stub::start(vec![Canned::fixture("ingress/nginx-404.html")]).await;
    let c = PrometheusClient::new(backend("prometheus", Endpoint::new(&stub.url()).unwrap()));
    let err = c.total("sum(up)").await.unwrap_err();
    assert!(
        err.reason
            .contains("/api/v1/query answered 404 text/html “404 Not Found”, not Prometheus"),
        "{}",
        err.reason
    );
    // An empty success answer is Prometheus saying "none": missing.
    let stub = Stub::start(vec![Canned::fixture(
        "prometheus-2.42-query-exemplars-empty.json",
    )])
    .await;
    let v = ExemplarVerifier::new(
        backend("prometheus", Endpoint::new(&stub.url()).unwrap()),
        buckets,
    );
    assert_eq!(ask(&v, &[T1]).await, vec![Outcome::Missing]);
}
