//! Targets in `ricochet-engine`: threshold expressions, durations, scenario YAML to
//! `Plan`, the HTTP/1.1 response parser and chunked decoding.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ricochet_crds::{ThresholdDetail, ThresholdSpec};
use ricochet_engine::duration::{format_duration, parse_duration};
use ricochet_engine::fuzzing::h1_exchange;
use ricochet_engine::load::Document;
use ricochet_engine::metric::Metric;
use ricochet_engine::thresholds::{ThresholdContext, parse_threshold};
use ricochet_engine::{Overrides, PlanError};

use super::{and, corpus_dir, outcome, shape};
use crate::rng::{Rng, hash};
use crate::runner::Target;

/// `parse_threshold`: a key and a condition, plus the detailed form's options.
pub const THRESHOLD: Target = Target {
    name: "threshold",
    max_len: 1024,
    entry: "ricochet_engine::thresholds::parse_threshold",
    seeds: threshold_seeds,
    dictionary: THRESHOLD_TOKENS,
    generate: Some(generate_threshold),
    run: run_threshold,
};

/// `parse_duration`, and `format_duration` read back.
pub const DURATION: Target = Target {
    name: "duration",
    max_len: 256,
    entry: "ricochet_engine::duration::parse_duration",
    seeds: duration_seeds,
    dictionary: DURATION_TOKENS,
    generate: Some(generate_duration_bytes),
    run: run_duration,
};

/// A scenario file: YAML to `Document` to `Plan`.
pub const PLAN: Target = Target {
    name: "plan",
    max_len: 16 * 1024,
    entry: "ricochet_engine::load::Document::parse + Document::plan",
    seeds: plan_seeds,
    dictionary: PLAN_TOKENS,
    generate: None,
    run: run_plan,
};

/// The HTTP/1.1 client's response parsing: head, Content-Length, chunked, until close.
pub const H1: Target = Target {
    name: "h1",
    max_len: 80 * 1024,
    entry: "ricochet_engine::fuzzing::h1_exchange (h1::Conn::exchange on an in-memory peer)",
    seeds: h1_seeds,
    dictionary: H1_TOKENS,
    generate: Some(generate_h1),
    run: run_h1,
};

// ---- thresholds -------------------------------------------------------------------------

const AGGREGATIONS: &[&str] = &[
    "p(99)",
    "p(99.9)",
    "p(0)",
    "p(100)",
    "p(100.0001)",
    "p()",
    "p(-1)",
    "p(NaN)",
    "p(1e2)",
    "p( 50 )",
    "avg",
    "med",
    "min",
    "max",
    "count",
    "rate",
    "p(inf)",
    "",
];
const OPS: &[&str] = &[
    "<", "<=", ">", ">=", "==", "===", "!=", "=<", "<<", "=", "!",
];
const LIMITS: &[&str] = &[
    "0", "1", "0.01", "800", "1e3", "-1", "1.5e-3", "+5", "1e999", ".5", "5.", "e", "-", "1e",
    "0.003", "NaN",
];
const TREND_UNITS: &[&str] = &["", "ms", "s", "m", "us", "µs", "h", "x", " ms"];
const TAGS: &[&str] = &[
    "scenario",
    "name",
    "method",
    "status",
    "expected_response",
    "phase",
    "_x",
    "1a",
    "a.b-c",
];
const VALUES: &[&str] = &["api", "browse", "GET", "200", "true", "x", "", "{", "a:b"];

const THRESHOLD_TOKENS: &[&[u8]] = &[
    b"http_req_duration",
    b"http_req_failed",
    b"http_reqs",
    b"iterations",
    b"dropped_iterations",
    b"telemetry_trace_missing",
    b"telemetry_log_ingest_latency",
    b"{scenario:api}",
    b"{scenario:",
    b"p(",
    b")",
    b"avg",
    b"med",
    b"min",
    b"max",
    b"count",
    b"rate",
    b"<",
    b"<=",
    b">=",
    b"==",
    b"===",
    b"!=",
    b"ms",
    b"us",
    "µs".as_bytes(),
    b"s",
    b"m",
    b"h",
    b"1m",
    b"30s",
    b"steady",
    b"ramp-up",
    b"api",
    b"browse",
];

fn threshold_seeds() -> Vec<Vec<u8>> {
    [
        "http_req_duration\np(99)<800ms",
        "http_req_duration{scenario:api}\np(95)<=250",
        "http_req_failed\nrate<0.01",
        "http_reqs{scenario:browse,method:GET}\ncount>=100",
        "iterations\nrate>10",
        "http_req_duration\np(99.9)<1s\n10s\n1m\n",
        "http_req_duration\nmed<200ms\n\n\nsteady",
        "telemetry_trace_missing\nrate<0.001\n30s",
        "telemetry_log_ingest_latency\np(99)<5s",
        "data_received\ncount==0",
        "dropped_iterations\ncount!=0",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn generate_threshold(rng: &mut Rng) -> Vec<u8> {
    let metric = rng.pick(&Metric::ALL).name();
    let mut s = String::from(metric);
    if rng.one_in(3) {
        s.push('{');
        for i in 0..rng.range(1, 3) {
            if i > 0 {
                s.push(',');
            }
            s.push_str(rng.pick(TAGS));
            s.push(':');
            s.push_str(rng.pick(VALUES));
        }
        s.push('}');
    }
    s.push('\n');
    s.push_str(rng.pick(AGGREGATIONS));
    if rng.one_in(4) {
        s.push(' ');
    }
    s.push_str(rng.pick(OPS));
    s.push_str(rng.pick(LIMITS));
    s.push_str(rng.pick(TREND_UNITS));
    if rng.one_in(3) {
        for _ in 0..3 {
            s.push('\n');
            if rng.one_in(2) {
                s.push_str(&generate_duration(rng));
            } else {
                s.push_str(rng.pick(&["steady", "ramp-up", "", "x"]));
            }
        }
    }
    s.into_bytes()
}

fn run_threshold(input: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(input) else {
        return 0;
    };
    let mut lines = text.split('\n');
    let key = lines.next().unwrap_or("");
    let condition = lines.next().unwrap_or("").to_owned();
    let options: Vec<&str> = lines.collect();
    let option = |i: usize| {
        options
            .get(i)
            .filter(|s| !s.is_empty())
            .map(|s| (*s).to_owned())
    };
    let spec = if options.is_empty() {
        ThresholdSpec::Expression(condition)
    } else {
        ThresholdSpec::Detailed(ThresholdDetail {
            threshold: condition,
            abort_on_fail: true,
            delay_abort_eval: option(0),
            window: option(1),
            phase: option(2),
        })
    };
    let ctx = ThresholdContext {
        scenarios: vec!["api".into(), "browse".into()],
        phases: vec!["ramp-up".into(), "steady".into()],
        ..ThresholdContext::default()
    };
    let parsed = parse_threshold(key, &spec, &ctx);
    if let Ok(t) = &parsed {
        assert!(
            t.limit.is_finite() && t.limit >= 0.0,
            "limit {} of `{}`",
            t.limit,
            t.expression
        );
        let _ = t.comparison.holds(1.0, t.limit);
    }
    match &parsed {
        Ok(t) => hash(
            format!(
                "{:?}|{:?}|{}|{}|{}",
                t.metric,
                t.comparison,
                t.aggregation.label_kind(),
                t.filter.len(),
                scope_kind(&t.scope)
            )
            .as_bytes(),
        ),
        Err(e) => and(hash(format!("{:?}", e.field).as_bytes()), shape(&e.message)),
    }
}

fn scope_kind(scope: &ricochet_engine::thresholds::Scope) -> &'static str {
    use ricochet_engine::thresholds::Scope;
    match scope {
        Scope::Run => "run",
        Scope::Window(_) => "window",
        Scope::Phase(_) => "phase",
    }
}

trait LabelKind {
    fn label_kind(&self) -> &'static str;
}

impl LabelKind for ricochet_engine::thresholds::Aggregation {
    fn label_kind(&self) -> &'static str {
        use ricochet_engine::thresholds::Aggregation as A;
        match self {
            A::Percentile(_) => "p",
            A::Avg => "avg",
            A::Med => "med",
            A::Min => "min",
            A::Max => "max",
            A::Count => "count",
            A::Rate => "rate",
            A::Last => "last",
        }
    }
}

// ---- durations --------------------------------------------------------------------------

const DURATION_TOKENS: &[&[u8]] = &[
    b"us",
    "µs".as_bytes(),
    b"ms",
    b"s",
    b"m",
    b"h",
    b"0",
    b".",
    b"1.5",
    b"30",
    b"ns",
    b"d",
    b"584942417355y",
    b"5124095576030431h",
];

fn duration_seeds() -> Vec<Vec<u8>> {
    [
        "30s",
        "5m",
        "1m30s",
        "500ms",
        "1.5h",
        "0",
        "250us",
        "1µs",
        "1h2m3s4ms5us",
        "0s",
        "0.5s",
        "10",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn generate_duration(rng: &mut Rng) -> String {
    const NUMBERS: &[&str] = &[
        "0",
        "1",
        "1.5",
        ".5",
        "5.",
        "00",
        "999999999999",
        "1e3",
        "",
        "30",
        "0.000001",
        "5124095576030431",
        "18446744073709551615",
        "1.1.1",
    ];
    const UNITS: &[&str] = &["us", "µs", "ms", "s", "m", "h", "", "ns", "d", "S", " s"];
    let mut s = String::new();
    for _ in 0..rng.range(1, 4) {
        s.push_str(rng.pick(NUMBERS));
        s.push_str(rng.pick(UNITS));
    }
    s
}

fn generate_duration_bytes(rng: &mut Rng) -> Vec<u8> {
    generate_duration(rng).into_bytes()
}

/// Durations up to this long must read back from their rendering within a millisecond (the
/// rendering's resolution) and a microsecond (parse_duration sums in f64: at 10^8 s its
/// error is tens of nanoseconds).
const ROUND_TRIP_EXACT: Duration = Duration::from_secs(100 * 365 * 86_400);
const ROUND_TRIP_ERROR: Duration = Duration::from_micros(1_001);

fn run_duration(input: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(input) else {
        return 0;
    };
    let parsed = parse_duration(text);
    if let Ok(d) = parsed
        && d <= ROUND_TRIP_EXACT
    {
        let shown = format_duration(d);
        let back = parse_duration(&shown);
        assert!(
            matches!(back, Ok(b) if b.abs_diff(d) <= ROUND_TRIP_ERROR),
            "`{text}` parsed as {d:?}, rendered as `{shown}`, read back as {back:?}"
        );
    }
    outcome(&parsed, |d| {
        u64::from(d.is_zero())
            + 2 * u64::from(d.subsec_nanos() > 0)
            + 4 * (d.as_secs().ilog2_or_0())
    })
}

trait Ilog2OrZero {
    fn ilog2_or_0(self) -> u64;
}

impl Ilog2OrZero for u64 {
    fn ilog2_or_0(self) -> u64 {
        self.checked_ilog2().map_or(0, u64::from)
    }
}

// ---- scenario YAML -> Plan ----------------------------------------------------------------

const PLAN_TOKENS: &[&[u8]] = &[
    b"apiVersion: ",
    b"kind: LoadTest",
    b"metadata:",
    b"spec:",
    b"  ",
    b"- ",
    b": ",
    b"---",
    b"&a ",
    b"*a",
    b"<<: *a",
    b"!!str ",
    b"!!binary ",
    b"? ",
    b"|",
    b">-",
    b"'",
    b"#",
    b"target:",
    b"scenarios:",
    b"executor:",
    b"constant-arrival-rate",
    b"ramping-arrival-rate",
    b"constant-vus",
    b"ramping-vus",
    b"rate:",
    b"share:",
    b"vus:",
    b"duration:",
    b"stages:",
    b"startTime:",
    b"requests:",
    b"path:",
    b"method:",
    b"headers:",
    b"body:",
    b"bodyFile:",
    b"body.json",
    b"weight:",
    b"stream:",
    b"thresholds:",
    b"abortOnFail:",
    b"delayAbortEval:",
    b"window:",
    b"phase:",
    b"traffic:",
    b"gaBaselineRps:",
    b"multiplier:",
    b"telemetry:",
    b"sample:",
    b"chaos:",
    b"maxConnections:",
    b"maxInFlight:",
    b"gracefulStop:",
    b"timeout:",
    b"target: 0",
    b"1e400",
    b"0x10",
    b".inf",
    b"-.inf",
    b".nan",
    b"~",
    b"p(99)<800ms",
    b"http_req_duration",
    b"http://",
    b"embedded",
];

fn plan_seeds() -> Vec<Vec<u8>> {
    corpus_dir("plan")
}

/// Where the `plan` target's scenario "lives": a private temp dir holding `body.json`, so
/// `bodyFile` reads stay inside it.
struct PlanDir {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

thread_local! {
    static PLAN_DIR: Option<PlanDir> = tempfile::tempdir().ok().and_then(|dir| {
        std::fs::write(dir.path().join("body.json"), br#"{"hello":"world"}"#).ok()?;
        let file = dir.path().join("scenario.yaml");
        Some(PlanDir { _dir: dir, file })
    });
}

/// Confines every `bodyFile` to the plan's temp dir (its file name only): a fuzzed path
/// must not make the harness read `/dev/zero` or a FIFO.
fn confine_body_files(spec: &mut ricochet_crds::LoadTestSpec) {
    for scenario in &mut spec.scenarios {
        for request in &mut scenario.requests {
            if let Some(f) = &mut request.body_file {
                *f = Path::new(f.as_str()).file_name().map_or_else(
                    || "missing".to_owned(),
                    |n| n.to_string_lossy().into_owned(),
                );
            }
        }
    }
}

fn run_plan(input: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(input) else {
        return 0;
    };
    PLAN_DIR.with(|dir| {
        let Some(dir) = dir else {
            return 0;
        };
        let mut doc = match Document::parse(&dir.file, text) {
            Ok(doc) => doc,
            Err(e) => return plan_error_shape(&e),
        };
        confine_body_files(&mut doc.spec);
        let plain = doc.plan(&Overrides::default());
        // The command line's overrides, chosen by the input: `--multiplier` as clap reads an
        // f64 (NaN and infinities included), `--duration` as parse_duration allows.
        let h = hash(input);
        const MULTIPLIERS: &[f64] = &[0.0, 0.5, 1.0, 3.0, 1e9, -1.0, f64::NAN, f64::INFINITY];
        const DURATIONS: &[Duration] = &[
            Duration::ZERO,
            Duration::from_micros(1),
            Duration::from_secs(1),
            Duration::from_secs(86_400 * 365),
            Duration::from_secs(5_124_095_576_030_431),
        ];
        let overrides = Overrides {
            multiplier: (h & 1 == 1).then(|| MULTIPLIERS[(h >> 8) as usize % MULTIPLIERS.len()]),
            duration: (h & 2 == 2).then(|| DURATIONS[(h >> 16) as usize % DURATIONS.len()]),
            embedded: h & 4 == 4,
            embedded_listen: None,
            outputs: Vec::new(),
        };
        let overridden = doc.plan(&overrides);
        and(
            match &plain {
                Ok(p) => hash(format!("ok {}", p.scenarios.len()).as_bytes()),
                Err(e) => plan_error_shape(e),
            },
            match &overridden {
                Ok(_) => 1,
                Err(e) => plan_error_shape(e),
            },
        )
    })
}

fn plan_error_shape(e: &PlanError) -> u64 {
    and(
        hash(e.field.as_deref().unwrap_or("").as_bytes()),
        shape(&e.message),
    )
}

// ---- HTTP/1.1 responses -----------------------------------------------------------------

const H1_TOKENS: &[&[u8]] = &[
    b"HTTP/1.1 ",
    b"HTTP/1.0 ",
    b"200 OK",
    b"204",
    b"304",
    b"101",
    b"100 Continue\r\n\r\n",
    b"\r\n",
    b"\r\n\r\n",
    b"content-length: ",
    b"Content-Length:",
    b"transfer-encoding: ",
    b"chunked",
    b"gzip, chunked",
    b"chunked, gzip",
    b"connection: ",
    b"close",
    b"keep-alive",
    b"0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"10000000000000000\r\n",
    b";ext=1",
    b"x-t: 1\r\n",
];

fn h1_seeds() -> Vec<Vec<u8>> {
    let responses: [&[u8]; 9] = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-checksum: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 99\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nraw",
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nno",
    ];
    let mut seeds = Vec::new();
    for (i, r) in responses.iter().enumerate() {
        for flags in [0u8, 0x0a] {
            let mut s = vec![flags | u8::from(i == 6)];
            s.extend_from_slice(r);
            seeds.push(s);
        }
    }
    seeds
}

fn generate_h1(rng: &mut Rng) -> Vec<u8> {
    const STATUS: &[&str] = &[
        "HTTP/1.1 200 OK",
        "HTTP/1.0 200 OK",
        "HTTP/1.1 204 No Content",
        "HTTP/1.1 304 Not Modified",
        "HTTP/1.1 101 Switching Protocols",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK",
        "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK",
        "HTTP/1.1 999 X",
        "HTTP/1.1 200",
        "HTTP/2 200",
    ];
    const HEADERS: &[&str] = &[
        "transfer-encoding: chunked",
        "transfer-encoding: gzip, chunked",
        "transfer-encoding: chunked, gzip",
        "transfer-encoding: identity",
        "connection: close",
        "connection: keep-alive",
        "connection: upgrade, close",
        "x-a: b",
        "content-length:  7 ",
        "content-length: -1",
        "content-length: 18446744073709551616",
    ];
    let mut out = vec![rng.next_u64() as u8];
    out.extend_from_slice(rng.pick(STATUS).as_bytes());
    out.extend_from_slice(b"\r\n");
    let chunked = rng.one_in(2);
    for _ in 0..rng.below(4) {
        out.extend_from_slice(rng.pick(HEADERS).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let body: Vec<u8> = (0..rng.below(64))
        .map(|_| b'a' + rng.below(26) as u8)
        .collect();
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
        for piece in body.chunks(rng.range(1, 16)) {
            out.extend_from_slice(format!("{:x}", piece.len()).as_bytes());
            if rng.one_in(8) {
                out.extend_from_slice(b";name=value");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        if rng.one_in(3) {
            out.extend_from_slice(b"x-trailer: 1\r\n");
        }
        out.extend_from_slice(b"\r\n");
    } else {
        let claimed = if rng.one_in(4) {
            rng.below(128)
        } else {
            body.len()
        };
        out.extend_from_slice(format!("content-length: {claimed}\r\n\r\n").as_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// The response cut into `pieces` reads at positions drawn from its hash.
fn split(wire: &[u8], pieces: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(hash(wire));
    let mut cuts: Vec<usize> = (0..pieces).map(|_| rng.below(wire.len() + 1)).collect();
    cuts.extend([0, wire.len()]);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| wire[w[0]..w[1]].to_vec()).collect()
}

fn run_h1(input: &[u8]) -> u64 {
    let Some((&flags, wire)) = input.split_first() else {
        return 0;
    };
    let head = flags & 1 == 1;
    let pieces = usize::from((flags >> 1) & 0x0f);
    let whole = h1_exchange(vec![wire.to_vec()], head);
    if let Err(e) = &whole {
        assert!(!e.starts_with("pending"), "{e}");
    }
    if pieces > 0 {
        // Where the reads are cut must not change what is parsed (only whether unread
        // bytes follow, which decides reuse).
        let reads = split(wire, pieces);
        let n = reads.len();
        let cut = h1_exchange(reads, head);
        let strip = |r: &Result<(u16, u64, bool), String>| r.clone().map(|(s, n, _)| (s, n));
        assert_eq!(
            strip(&cut),
            strip(&whole),
            "the response parsed differently in {n} reads than in one"
        );
    }
    outcome(&whole, |(status, _, reusable)| {
        u64::from(*status / 100) * 2 + u64::from(*reusable)
    })
}
