//! The target of `bench/tls.sh`: one tiny HTTP/1.1 server (hyper, `200 ok`, keep-alive)
//! listening twice, in clear and over TLS (rustls on ring, TLS 1.3, a certificate for
//! 127.0.0.1 from a throwaway rcgen CA), so that the two runs differ only by TLS.
//!
//! Usage: `tls_bench_server PLAIN_PORT TLS_PORT CA_PEM_OUT` (the CA's PEM is written to
//! `CA_PEM_OUT` before either port listens). Runs until killed.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve<S>(io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(|_req| async {
        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

fn acceptor(ca_out: &str) -> Result<tokio_rustls::TlsAcceptor, BoxError> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ricochet bench CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
    let key = rcgen::KeyPair::generate()?;
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&key, &ca)?;
    std::fs::write(ca_out, ca.pem())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [plain, tls, ca_out] = args.as_slice() else {
        return Err("usage: tls_bench_server PLAIN_PORT TLS_PORT CA_PEM_OUT".into());
    };
    let acceptor = acceptor(ca_out)?;
    let plain = TcpListener::bind(format!("127.0.0.1:{plain}")).await?;
    let tls = TcpListener::bind(format!("127.0.0.1:{tls}")).await?;
    let accept = |s: TcpStream| {
        let _ = s.set_nodelay(true);
        s
    };
    loop {
        tokio::select! {
            Ok((s, _)) = plain.accept() => {
                tokio::spawn(serve(accept(s)));
            }
            Ok((s, _)) = tls.accept() => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(s) = acceptor.accept(accept(s)).await {
                        serve(s).await;
                    }
                });
            }
        }
    }
}
