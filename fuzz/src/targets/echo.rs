//! Targets in `echo-server`: a request's parsing (`traceparent`, `baggage`,
//! `x-request-id`, `?delay=`, `?status=`, `/storm?width=&depth=`) through the real handler,
//! the admin API's chaos document, `OTEL_RESOURCE_ATTRIBUTES`.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use echo_server::{AppState, Chaos, ChaosSpec, Config};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;

use super::{and, outcome, shape};
use crate::rng::{Rng, hash};
use crate::runner::Target;

/// One request through `echo_server::handle` (routing, span from `traceparent`, tenant
/// from `baggage`, the route's query parameters).
pub const ECHO: Target = Target {
    name: "echo",
    entry: "echo_server::handle (polled once: a valid ?delay= leaves it sleeping)",
    max_len: 8 * 1024,
    seeds: echo_seeds,
    dictionary: ECHO_TOKENS,
    generate: Some(generate_echo),
    run: run_echo,
};

/// The admin API's `PUT /chaos` document, then the faults it sets applied to requests.
pub const CHAOS_SPEC: Target = Target {
    name: "chaos-spec",
    entry: "serde_json → echo_server::ChaosSpec::validate → Chaos::set/on_response/drop_telemetry",
    max_len: 2 * 1024,
    seeds: chaos_seeds,
    dictionary: &[
        b"\"latency\":",
        b"\"errors\":",
        b"\"telemetryDrop\":",
        b"\"delay\":",
        b"\"rate\":",
        b"\"status\":",
        b"\"route\":",
        b"\"statusClass\":",
        b"\"2xx\"",
        b"\"5xx\"",
        b"\"uniform:10ms:50ms\"",
        b"\"exp:20ms\"",
        b"\"25ms\"",
        b"\"/api/{*path}\"",
        b"\"exp:3s\"",
        b"\"uniform:0s:60s\"",
    ],
    generate: None,
    run: run_chaos,
};

/// `OTEL_RESOURCE_ATTRIBUTES` as the echo-server reads it.
pub const RESOURCE_ATTRIBUTES: Target = Target {
    name: "resource-attributes",
    entry: "echo_server::config::parse_resource_attributes",
    max_len: 1024,
    seeds: resource_seeds,
    dictionary: &[
        b"=",
        b",",
        b"%",
        b"%2C",
        b"%3D",
        b"%ff",
        b"%",
        b"service.name",
    ],
    generate: None,
    run: run_resource,
};

// ---- requests -----------------------------------------------------------------------------

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const ECHO_TOKENS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"/api",
    b"/api/",
    b"/echo",
    b"/storm",
    b"/metrics",
    b"/healthz",
    b"/readyz",
    b"/chat/stream",
    b"?delay=",
    b"&status=",
    b"?width=",
    b"&depth=",
    b"25ms",
    b"1h",
    b"60s",
    b"61s",
    b"0",
    b"100",
    b"10000",
    b"599",
    b"199",
    b"traceparent: ",
    b"tracestate: ",
    b"baggage: ",
    b"tenant.id=",
    b"x-request-id: ",
    b"x-tenant-id: ",
    b"00-",
    b"-01",
    b"ff-",
    b"4bf92f3577b34da6a3ce929d0e0e4736",
    b"00f067aa0ba902b7",
    b"00000000000000000000000000000000",
    b"accept: application/openmetrics-text",
];

fn echo_seeds() -> Vec<Vec<u8>> {
    [
        format!("GET /api?delay=25ms&status=503\ntraceparent: {TRACEPARENT}\n\n"),
        "GET /api?status=404\nbaggage: tenant.id=team-a,other=1\n\n".to_owned(),
        format!("GET /storm?width=3&depth=2\ntraceparent: {TRACEPARENT}\nx-request-id: r-1\n\n"),
        "POST /storm?width=10000&depth=1\n\n".to_owned(),
        format!("POST /echo?x=1\ncontent-type: application/json\ntraceparent: {TRACEPARENT}\ntracestate: a=b\n\n{{\"hello\":1}}"),
        "GET /api/v1/items?delay=0s\nx-tenant-id: t\n\n".to_owned(),
        "GET /metrics\naccept: application/openmetrics-text; version=1.0.0\n\n".to_owned(),
        "GET /healthz\n\n".to_owned(),
        "PUT /nowhere\n\n".to_owned(),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn generate_echo(rng: &mut Rng) -> Vec<u8> {
    const METHODS: &[&str] = &["GET", "POST", "HEAD", "DELETE"];
    const PATHS: &[&str] = &["/api", "/api/x", "/storm", "/echo", "/metrics", "/x"];
    const PARAMS: &[&str] = &[
        "delay=25ms",
        "delay=61s",
        "delay=",
        "delay=1y",
        "delay=-1s",
        "delay=1ns",
        "status=200",
        "status=199",
        "status=600",
        "status=65536",
        "status=",
        "width=3",
        "depth=2",
        "width=18446744073709551615",
        "depth=0",
        "width=-1",
        "x",
    ];
    const TRACEPARENTS: &[&str] = &[
        TRACEPARENT,
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "",
    ];
    let mut s = format!("{} {}", rng.pick(METHODS), rng.pick(PATHS));
    for i in 0..rng.below(4) {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(rng.pick(PARAMS));
    }
    s.push('\n');
    if rng.one_in(2) {
        s.push_str("traceparent: ");
        s.push_str(rng.pick(TRACEPARENTS));
        s.push('\n');
    }
    if rng.one_in(3) {
        s.push_str(rng.pick(&[
            "baggage: tenant.id=a\n",
            "baggage: tenant_id=%FF\n",
            "baggage: ,,=;\n",
            "tracestate: a=b,c=d\n",
            "tracestate: =\n",
            "x-request-id: \n",
        ]));
    }
    s.push('\n');
    s.into_bytes()
}

/// The request an input describes, or `None` where hyper would not have produced one.
fn request(input: &[u8]) -> Option<Request<Full<Bytes>>> {
    let (head, body) = match input.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&input[..i], &input[i + 2..]),
        None => (input, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next()?;
    let space = first.iter().position(|&b| b == b' ')?;
    let method = Method::from_bytes(&first[..space]).ok()?;
    let uri = Uri::try_from(&first[space + 1..]).ok()?;
    let mut req = Request::new(Full::new(Bytes::copy_from_slice(body)));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
        req.headers_mut().append(name, value);
    }
    Some(req)
}

/// A runtime (the `/api` delay is a Tokio timer) and the server state, per thread.
struct Server {
    runtime: tokio::runtime::Runtime,
    state: Arc<AppState>,
}

thread_local! {
    static SERVER: Option<Server> = {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok();
        runtime.and_then(|runtime| {
            let config = Config {
                seed: Some(1),
                ..Config::default()
            };
            let state = {
                let _entered = runtime.enter();
                AppState::new(config).ok()?
            };
            Some(Server { runtime, state })
        })
    };
}

fn run_echo(input: &[u8]) -> u64 {
    let Some(req) = request(input) else {
        return 0;
    };
    let parent = echo_server::telemetry::extract_parent(req.headers());
    if let Some(p) = &parent {
        assert!(p.is_valid(), "an invalid parent was extracted");
    }
    let tenant = echo_server::telemetry::tenant_from_baggage(req.headers());
    SERVER.with(|server| {
        let Some(server) = server else {
            return 0;
        };
        let _entered = server.runtime.enter();
        let mut handled = std::pin::pin!(echo_server::handle(server.state.clone(), req));
        let status = match handled
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(response) => response.status().as_u16(),
            // Sleeping on a valid `?delay=` (or reading a body that is not there yet).
            Poll::Pending => 1,
        };
        hash(format!("{status} {} {}", parent.is_some(), tenant.is_some()).as_bytes())
    })
}

// ---- chaos document -----------------------------------------------------------------------

fn chaos_seeds() -> Vec<Vec<u8>> {
    [
        r#"{"latency":{"delay":"uniform:10ms:50ms","route":"/api/{*path}"}}"#,
        r#"{"errors":{"rate":0.5,"status":503,"statusClass":"2xx"}}"#,
        r#"{"telemetryDrop":{"rate":1.0,"statusClass":"2xx"}}"#,
        r#"{"latency":{"delay":"exp:20ms"},"errors":{"rate":0.1},"telemetryDrop":{"rate":0.01,"route":"/storm"}}"#,
        "{}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn run_chaos(input: &[u8]) -> u64 {
    let spec = match serde_json::from_slice::<ChaosSpec>(input) {
        Ok(spec) => spec,
        Err(e) => return and(1, shape(&e.to_string())),
    };
    let valid = spec.validate().map_err(|e| e.to_string());
    if valid.is_ok() {
        let chaos = Chaos::new(hash(input));
        chaos.set(spec);
        for (route, workload, status) in [
            ("/api/{*path}", true, 200),
            ("/storm", true, 503),
            ("/healthz", false, 200),
        ] {
            let verdict = chaos.on_response(route, workload, status);
            if let Some(s) = verdict.error_status {
                assert!((400..=599).contains(&s), "injected status {s}");
            }
            let _ = chaos.drop_telemetry(route, workload, status);
        }
    }
    and(2, outcome(&valid, |()| 0))
}

// ---- OTEL_RESOURCE_ATTRIBUTES -------------------------------------------------------------

fn resource_seeds() -> Vec<Vec<u8>> {
    [
        "service.name=echo,deployment.environment=dev",
        "a=b%2Cc,d=%3D",
        "k=v,,x=y ",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn run_resource(input: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(input) else {
        return 0;
    };
    and(
        3,
        outcome(&echo_server::config::parse_resource_attributes(text), |v| {
            v.len().min(4) as u64
        }),
    )
}
