//! Remote write against stub endpoints: the request as sent, what is retried and what
//! is not, and TLS with a custom CA file.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost::Message as _;
use ricochet_output::remote_write::WriteRequest;
use ricochet_output::{Auth, Options, Output, Secret, Target};

use super::{always, batch, stub};

fn options() -> Options {
    Options {
        queue: 8,
        flush_interval: Duration::from_secs(2),
        resource: Vec::new(),
    }
}

#[tokio::test]
async fn a_push_carries_the_remote_write_headers_tenant_auth_and_a_snappy_body() {
    let stub = always(204, "").await;
    let target = Target::remote_write(format!("http://{}/api/v1/push", stub.addr))
        .with_tenant("team-a")
        .with_auth(Auth::Bearer(Secret::new("s3cret")));
    let output = Output::start(vec![target], options()).unwrap();
    output
        .offer(batch(SystemTime::now(), 3.0, 1.0, [1, 1, 1]))
        .unwrap();
    let reports = output.finish(Duration::from_secs(5)).await;

    assert_eq!(reports[0].batches_sent, 1, "{reports:?}");
    // 2 series + 3 buckets + _sum + _count.
    assert_eq!(reports[0].samples_sent, 7);
    assert_eq!(reports[0].first_error, None);
    let got = stub.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.path, "/api/v1/push");
    assert_eq!(req.headers["content-encoding"], "snappy");
    assert_eq!(req.headers["content-type"], "application/x-protobuf");
    assert_eq!(req.headers["x-prometheus-remote-write-version"], "0.1.0");
    assert_eq!(req.headers["x-scope-orgid"], "team-a");
    assert_eq!(req.headers["authorization"], "Bearer s3cret");
    assert!(
        req.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("ricochet-loadgen/")
    );
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&req.body)
        .expect("the body is snappy block-compressed");
    let write = WriteRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(write.timeseries.len(), 7);
}

#[tokio::test]
async fn a_4xx_is_not_retried_and_its_reason_names_the_url() {
    let stub = always(400, "out of order sample").await;
    let url = format!("http://{}/api/v1/write", stub.addr);
    let output = Output::start(vec![Target::remote_write(&url)], options()).unwrap();
    output
        .offer(batch(SystemTime::now(), 1.0, 1.0, [0, 0, 0]))
        .unwrap();
    let reports = output.finish(Duration::from_secs(5)).await;

    let r = &reports[0];
    assert_eq!(
        (r.batches_sent, r.batches_failed, r.batches_dropped),
        (0, 1, 0)
    );
    let err = r.first_error.as_deref().unwrap();
    assert!(err.contains(&url), "{err}");
    assert!(
        err.contains("400 Bad Request `out of order sample`"),
        "{err}"
    );
    assert_eq!(stub.received().len(), 1, "a 4xx must not be retried");
}

#[tokio::test]
async fn server_errors_are_retried_until_the_endpoint_accepts() {
    let stub = stub(
        Arc::new(|n| {
            if n < 2 {
                (503, "ingester unavailable")
            } else {
                (200, "")
            }
        }),
        None,
    )
    .await;
    let target = Target::remote_write(format!("http://{}/api/v1/write", stub.addr));
    let output = Output::start(vec![target], options()).unwrap();
    output
        .offer(batch(SystemTime::now(), 1.0, 1.0, [0, 0, 0]))
        .unwrap();
    let reports = output.finish(Duration::from_secs(5)).await;

    assert_eq!(reports[0].batches_sent, 1, "{reports:?}");
    assert_eq!(reports[0].batches_failed, 0);
    assert_eq!(stub.received().len(), 3, "two 503s, then the accepted try");
}

#[tokio::test]
async fn server_errors_count_as_failed_once_the_flush_interval_runs_out() {
    let stub = always(503, "").await;
    let url = format!("http://{}/api/v1/write", stub.addr);
    let options = Options {
        flush_interval: Duration::from_millis(500),
        ..options()
    };
    let output = Output::start(vec![Target::remote_write(&url)], options).unwrap();
    output
        .offer(batch(SystemTime::now(), 1.0, 1.0, [0, 0, 0]))
        .unwrap();
    let reports = output.finish(Duration::from_secs(5)).await;

    let r = &reports[0];
    assert_eq!((r.batches_sent, r.batches_failed), (0, 1), "{r:?}");
    let err = r.first_error.as_deref().unwrap();
    assert!(err.contains(&url) && err.contains("503"), "{err}");
    assert!(err.contains("gave up after"), "{err}");
    assert!(stub.received().len() > 1, "a 503 is retried");
}

/// A certificate for 127.0.0.1 issued by a throwaway CA: the acceptor and the CA's PEM.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ricochet test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.pem())
}

#[tokio::test]
async fn https_endpoints_are_trusted_through_a_custom_ca_file_only() {
    let (acceptor, ca_pem) = tls_acceptor();
    let stub = stub(Arc::new(|_| (204, "")), Some(acceptor)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let url = format!("https://{}/api/v1/write", stub.addr);
    let options = Options {
        flush_interval: Duration::from_millis(300),
        ..options()
    };
    let output = Output::start(
        vec![
            Target::remote_write(&url).with_ca_file(&ca_file),
            Target::remote_write(&url),
        ],
        options,
    )
    .unwrap();
    output
        .offer(batch(SystemTime::now(), 1.0, 1.0, [0, 0, 0]))
        .unwrap();
    let reports = output.finish(Duration::from_secs(5)).await;

    assert_eq!(reports[0].batches_sent, 1, "with the CA: {reports:?}");
    assert_eq!(reports[1].batches_failed, 1, "without the CA: {reports:?}");
    let err = reports[1].first_error.as_deref().unwrap();
    assert!(err.contains(&url) && err.contains("certificate"), "{err}");
}
