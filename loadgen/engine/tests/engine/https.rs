//! `https://` targets (issue #18, item 1): whole runs in-process against TLS servers on
//! 127.0.0.1:0 whose certificates a throwaway CA (rcgen) issued, loaded from LoadTest YAML
//! as a user writes it (caFile, clientCert, insecureSkipVerify), one load test at a time,
//! a hundred requests or so each.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ricochet_engine::Exit;
use ricochet_engine::load::load_plan;
use ricochet_engine::plan::Overrides;
use ricochet_engine::run::RunOutcome;
use ricochet_reports::model::{Outcome, Summary, Verdict};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

/// A CA, and a leaf it issued (for 127.0.0.1, also usable as a client certificate).
struct Issued {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    leaf_pem: String,
    key_pem: String,
    key_der: Vec<u8>,
}

fn issue(ca_name: &str) -> Issued {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca =
        rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("ca key"))
            .expect("ca");
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&key, &ca)
        .expect("leaf");
    Issued {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        leaf_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    }
}

/// A TLS server answering every request `200 ok` over HTTP/1.1, requiring a client
/// certificate issued by `client_ca` when given; counts completed handshakes.
async fn tls_server(server: &Issued, client_ca: Option<&Issued>) -> (SocketAddr, Arc<AtomicUsize>) {
    let (addr, handshakes, _) = tls_server_alpn(server, client_ca, false).await;
    (addr, handshakes)
}

/// [`tls_server`] offering `h2` alone by ALPN when `h2`, serving HTTP/2 then; also
/// counts the requests it answered over HTTP/2.
async fn tls_server_alpn(
    server: &Issued,
    client_ca: Option<&Issued>,
    h2: bool,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca.ca_pem.as_bytes()) {
                roots.add(cert.expect("ca pem")).expect("ca root");
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.clone()));
    let mut config = builder
        .with_single_cert(vec![server.leaf.clone()], key)
        .expect("server config");
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let h2_requests = Arc::new(AtomicUsize::new(0));
    let h2_counted = h2_requests.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = counted.clone();
            let h2_counted = h2_counted.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::Relaxed);
                let negotiated_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    if req.version() == hyper::Version::HTTP_2 {
                        h2_counted.fetch_add(1, Ordering::Relaxed);
                    }
                    async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    }
                });
                if negotiated_h2 {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                }
            });
        }
    });
    (addr, handshakes, h2_requests)
}

/// A LoadTest of 100 requests (100/s for 1 s) against `url`, with `target_extra` lines
/// under `spec.target` and `thresholds` lines under `spec.thresholds`, written to `dir`.
fn scenario(dir: &Path, url: &str, target_extra: &str, thresholds: &str) -> PathBuf {
    let yaml = format!(
        "apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {{name: https}}
spec:
  target:
    url: {url}
    timeout: 5s
{target_extra}
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: 100
      duration: 1s
      gracefulStop: 5s
      requests: [{{name: orders, path: /api/orders}}]
  thresholds:
    http_reqs: [\"count>0\"]
{thresholds}"
    );
    let path = dir.join("https.yaml");
    std::fs::write(&path, yaml).expect("write scenario");
    path
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write pem");
}

/// Loads and runs the LoadTest at `path` on `rt` (which keeps the test's server alive).
fn run_file_on(rt: &tokio::runtime::Runtime, path: &Path) -> RunOutcome {
    let plan = load_plan(path, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(crate::support::run(&plan))
}

fn trend_count(s: &Summary, key: &str) -> u64 {
    s.metrics.get(key).map_or(0, |m| m.count)
}

#[test]
fn a_trusted_https_target_is_loaded_and_its_handshakes_measured() {
    let _guard = crate::support::one_at_a_time();
    let pki = issue("ricochet test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "ca.pem", &pki.ca_pem);
    let rt = crate::support::runtime();
    let (addr, handshakes) = rt.block_on(tls_server(&pki, None));
    let path = scenario(
        dir.path(),
        &format!("https://{addr}"),
        "    caFile: ca.pem",
        "    http_req_tls_handshaking: [\"p(95)<5000\"]\n    http_req_connecting{scenario:api}: [\"max<5000\"]\n    http_req_failed: [\"rate==0\"]",
    );
    let out = run_file_on(&rt, &path);
    let s = &out.summary;
    assert_eq!(
        out.exit,
        Exit::Passed,
        "{:?} {:?}",
        out.message,
        s.thresholds
    );
    assert_eq!(s.run.outcome, Outcome::Passed);
    assert!(!s.run.insecure_skip_verify);
    let reqs = trend_count(s, "http_reqs");
    assert!((90..=101).contains(&reqs), "http_reqs {reqs}");
    // Every new connection did one handshake, the probe's included; keep-alive reuses.
    let tls = trend_count(s, "http_req_tls_handshaking");
    let connecting = trend_count(s, "http_req_connecting");
    assert!(tls >= 1 && tls < reqs, "tls_handshaking {tls} of {reqs}");
    assert_eq!(connecting, tls, "one TCP connect per handshake");
    assert_eq!(handshakes.load(Ordering::Relaxed), tls as usize + 1);
    let t = s.metrics["http_req_tls_handshaking"]
        .trend
        .as_ref()
        .expect("a trend");
    assert!(t.max > 0.0 && t.max < 5000.0, "{t:?}");
    for th in &s.thresholds {
        assert_eq!(th.verdict, Verdict::Pass, "{th:?}");
        assert!(th.observed.is_some(), "{th:?}");
    }
}

#[test]
fn an_untrusted_certificate_is_a_run_that_could_not_be_carried_out() {
    let _guard = crate::support::one_at_a_time();
    let trusted = issue("ricochet test CA");
    let other = issue("someone else's CA");
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "ca.pem", &trusted.ca_pem);
    let rt = crate::support::runtime();
    let (addr, handshakes) = rt.block_on(tls_server(&other, None));
    let path = scenario(
        dir.path(),
        &format!("https://{addr}"),
        "    caFile: ca.pem",
        "    http_req_tls_handshaking: [\"p(95)<5000\"]",
    );
    let out = run_file_on(&rt, &path);
    assert_eq!(out.exit, Exit::RunFailed, "{:?}", out.summary.thresholds);
    assert_eq!(out.summary.run.outcome, Outcome::Error);
    let want = format!(
        "cannot reach target https://{addr}: TLS handshake failed: invalid peer certificate: UnknownIssuer"
    );
    assert_eq!(out.summary.run.stop_reason.as_deref(), Some(want.as_str()));
    assert!(!out.summary.thresholds.is_empty());
    for th in &out.summary.thresholds {
        assert_eq!(th.verdict, Verdict::Unknown, "{th:?}");
    }
    assert_eq!(handshakes.load(Ordering::Relaxed), 0);
}

#[test]
fn insecure_skip_verify_loads_an_untrusted_target_and_every_summary_says_so() {
    let _guard = crate::support::one_at_a_time();
    let other = issue("someone else's CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = crate::support::runtime();
    let (addr, _) = rt.block_on(tls_server(&other, None));
    // A threshold that cannot pass: thresholds on the handshake are judged on real samples.
    let path = scenario(
        dir.path(),
        &format!("https://{addr}"),
        "    insecureSkipVerify: true",
        "    http_req_tls_handshaking: [\"min>60000\"]",
    );
    let out = run_file_on(&rt, &path);
    let s = &out.summary;
    assert!(s.run.insecure_skip_verify);
    assert_eq!(
        trend_count(s, "http_req_failed"),
        trend_count(s, "http_reqs")
    );
    assert_eq!(
        s.metrics["http_req_failed"].passes,
        Some(0),
        "no request failed"
    );
    assert!(trend_count(s, "http_req_tls_handshaking") >= 1);
    let th = s
        .thresholds
        .iter()
        .find(|t| t.metric == "http_req_tls_handshaking")
        .expect("threshold");
    assert_eq!(th.verdict, Verdict::Fail, "{th:?}");
    assert!(th.observed.is_some_and(|ms| ms < 60000.0), "{th:?}");
    assert_eq!(out.exit, Exit::ThresholdFailed);
    let json = ricochet_reports::to_json(s);
    assert!(json.contains("\"insecureSkipVerify\": true"), "{json}");
    let text = ricochet_reports::text::render(s, false);
    assert!(text.contains("TLS certificate was NOT verified"), "{text}");
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let _guard = crate::support::one_at_a_time();
    let pki = issue("ricochet test CA");
    let client = issue("ricochet client CA");
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "ca.pem", &pki.ca_pem);
    write(dir.path(), "tls.crt", &client.leaf_pem);
    write(dir.path(), "tls.key", &client.key_pem);
    let rt = crate::support::runtime();
    let (addr, _) = rt.block_on(tls_server(&pki, Some(&client)));
    let url = format!("https://{addr}");

    let without = scenario(dir.path(), &url, "    caFile: ca.pem", "");
    let out = run_file_on(&rt, &without);
    // TLS 1.3: the server checks the client's certificate after the client's handshake
    // is done, so the probe passes and each request meets the server's alert.
    assert_eq!(out.exit, Exit::RunFailed, "{:?}", out.summary.run);
    let reqs = trend_count(&out.summary, "http_reqs");
    assert!(reqs >= 90, "http_reqs {reqs}");
    let failed = &out.summary.metrics["http_req_failed"];
    assert_eq!(failed.errors.get("tls"), Some(&reqs), "{failed:?}");
    let reason = out.summary.run.stop_reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("failed the TLS handshake with")
            && reason.contains("received fatal alert: CertificateRequired"),
        "{reason}"
    );

    let with = scenario(
        dir.path(),
        &url,
        "    caFile: ca.pem\n    clientCert: {certFile: tls.crt, keyFile: tls.key}",
        "    http_req_failed: [\"rate==0\"]",
    );
    let out = run_file_on(&rt, &with);
    assert_eq!(out.exit, Exit::Passed, "{:?}", out.summary.thresholds);
    assert!(trend_count(&out.summary, "http_reqs") >= 90);
}

#[test]
fn tls_files_and_fields_are_checked_before_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "not-a-ca.pem", "hello\n");
    let err = |extra: &str, url: &str| {
        let path = scenario(dir.path(), url, extra, "");
        match load_plan(&path, &Overrides::default()) {
            Ok(_) => panic!("accepted: {extra}"),
            Err(e) => (e.to_string(), e.exit()),
        }
    };
    let shown = dir.path().join("missing.pem");
    let (msg, exit) = err("    caFile: missing.pem", "https://127.0.0.1:1");
    assert_eq!(exit, Exit::InvalidInput);
    let yaml = dir.path().join("https.yaml");
    assert!(msg.starts_with(&format!("{}:8:", yaml.display())), "{msg}");
    assert!(
        msg.contains(&format!(
            ": spec.target.caFile: cannot use `{}`: ",
            shown.display()
        )),
        "{msg}"
    );
    let (msg, _) = err("    caFile: not-a-ca.pem", "https://127.0.0.1:1");
    assert!(
        msg.contains("spec.target.caFile") && msg.contains("no CERTIFICATE block"),
        "{msg}"
    );
    let (msg, _) = err(
        "    clientCert: {certFile: not-a-ca.pem, keyFile: missing.pem}",
        "https://127.0.0.1:1",
    );
    assert!(
        msg.contains("spec.target.clientCert.certFile: cannot use"),
        "{msg}"
    );
    let (msg, _) = err("    insecureSkipVerify: true", "http://127.0.0.1:1");
    assert!(
        msg.contains("spec.target.insecureSkipVerify: applies to `https://` targets only"),
        "{msg}"
    );
}

#[test]
fn http2_over_tls_is_agreed_by_alpn_and_refused_by_a_server_without_it() {
    let _guard = crate::support::one_at_a_time();
    let pki = issue("ricochet test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "ca.pem", &pki.ca_pem);
    let rt = crate::support::runtime();
    let (addr, _, h2_requests) = rt.block_on(tls_server_alpn(&pki, None, true));
    let path = scenario(
        dir.path(),
        &format!("https://{addr}"),
        "    caFile: ca.pem\n    http2: true",
        "    http_req_failed: [\"rate==0\"]",
    );
    let out = run_file_on(&rt, &path);
    assert_eq!(
        out.exit,
        Exit::Passed,
        "{:?} {:?}",
        out.message,
        out.summary.thresholds
    );
    let reqs = trend_count(&out.summary, "http_reqs");
    assert!((90..=101).contains(&reqs), "http_reqs {reqs}");
    assert_eq!(
        h2_requests.load(Ordering::Relaxed) as u64,
        reqs,
        "every request went over HTTP/2"
    );

    // A server that speaks only HTTP/1.1 refuses the handshake: no load, the reason said.
    let (addr, _) = rt.block_on(tls_server(&pki, None));
    let path = scenario(
        dir.path(),
        &format!("https://{addr}"),
        "    caFile: ca.pem\n    http2: true",
        "",
    );
    let out = run_file_on(&rt, &path);
    assert_eq!(out.exit, Exit::RunFailed, "{:?}", out.message);
    let message = out.message.unwrap_or_default();
    assert!(
        message.contains("TLS handshake failed") && message.contains("NoApplicationProtocol"),
        "{message}"
    );
}
