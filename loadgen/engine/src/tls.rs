//! TLS for `https://` targets: rustls on an explicit `ring` provider (no process-global
//! default), the system roots plus an optional CA file (the loader the telemetry backends
//! use, [`ricochet_verify::http::add_ca_file`]), an optional client certificate for mutual
//! TLS, and an explicit opt-out of certificate verification that every report flags.
//!
//! ALPN offers `http/1.1` (the engine's own HTTP/1.1 client speaks over the TLS stream),
//! or `h2` alone when the target asks for `http2` (hyper's HTTP/2 client then does).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ricochet_verify::http::{CaFileError, add_ca_file, add_system_roots};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// How an `https://` target's certificate is checked, and what loadgen presents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsPlan {
    /// PEM CA certificates trusted beside the system roots (`spec.target.caFile`).
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key for mutual TLS (`spec.target.clientCert`).
    pub client_cert: Option<ClientCertPlan>,
    /// Accept any server certificate (`spec.target.insecureSkipVerify`).
    pub insecure_skip_verify: bool,
}

/// A client certificate chain and its private key, PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertPlan {
    /// The chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key.
    pub key_file: PathBuf,
}

impl TlsPlan {
    /// Whether any TLS setting is given (they apply to `https://` targets only).
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some() || self.insecure_skip_verify
    }
}

/// Why the TLS settings of a target cannot be used: a file that cannot be read or holds
/// no usable PEM.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// `caFile`.
    #[error("cannot use CA file `{path}`: {reason}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `clientCert.certFile`.
    #[error("cannot use client certificate file `{path}`: {reason}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `clientCert.keyFile`, or a key that does not fit the certificate.
    #[error("cannot use client key file `{path}`: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl TlsFileError {
    /// The `spec.target` field at fault, e.g. `spec.target.caFile`.
    pub fn field(&self) -> &'static str {
        match self {
            TlsFileError::Ca { .. } => "spec.target.caFile",
            TlsFileError::Cert { .. } => "spec.target.clientCert.certFile",
            TlsFileError::Key { .. } => "spec.target.clientCert.keyFile",
        }
    }

    /// The reason alone (the field names the file's role).
    pub fn reason(&self) -> String {
        match self {
            TlsFileError::Ca { path, reason }
            | TlsFileError::Cert { path, reason }
            | TlsFileError::Key { path, reason } => format!("`{}`: {reason}", path.display()),
        }
    }
}

/// Which roots a configuration trusts besides the CA file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roots {
    /// The system's root certificates (a run).
    System,
    /// None (validation: only the files are checked).
    FilesOnly,
}

/// The client configuration for `tls`: every file read and checked now.
pub fn client_config(tls: &TlsPlan, roots: Roots) -> Result<rustls::ClientConfig, TlsFileError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFileError::Ca {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
    } else {
        let mut store = rustls::RootCertStore::empty();
        if roots == Roots::System {
            add_system_roots(&mut store);
        }
        if let Some(path) = &tls.ca_file {
            add_ca_file(&mut store, path).map_err(|e| TlsFileError::Ca {
                path: path.clone(),
                reason: match e {
                    CaFileError::Read(e) => e.to_string(),
                    CaFileError::Invalid(reason) => reason,
                },
            })?;
        }
        builder.with_root_certificates(store)
    };
    let mut config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let certs = read_certs(&c.cert_file)?;
            let key = read_key(&c.key_file)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsFileError::Key {
                    path: c.key_file.clone(),
                    reason: e.to_string(),
                })?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| e.to_string())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let err = |reason: String| TlsFileError::Cert {
        path: path.to_owned(),
        reason,
    };
    let pem = read(path).map_err(err)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let err = |reason: String| TlsFileError::Key {
        path: path.to_owned(),
        reason,
    };
    let pem = read(path).map_err(err)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        err(match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY block (PKCS#8, RSA or EC)".into()
            }
            e => e.to_string(),
        })
    })
}

/// The server name checked against the certificate and sent as SNI: the URL's host (an IP
/// address is checked against the certificate's IP addresses, and sent as no SNI).
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).ok()
}

/// `insecureSkipVerify`: any certificate is accepted; the handshake's signatures are still
/// checked, so the session keys are the peer's.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_name_their_field_and_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").expect("write");
        let missing = dir.path().join("missing.pem");
        let ca = TlsPlan {
            ca_file: Some(missing.clone()),
            ..TlsPlan::default()
        };
        let e = client_config(&ca, Roots::FilesOnly).expect_err("missing CA");
        assert_eq!(e.field(), "spec.target.caFile");
        assert!(e.reason().contains("missing.pem"), "{e}");
        let ca = TlsPlan {
            ca_file: Some(empty.clone()),
            ..TlsPlan::default()
        };
        let e = client_config(&ca, Roots::FilesOnly).expect_err("empty CA");
        assert!(e.reason().ends_with("no CERTIFICATE block"), "{e}");
        let cert = TlsPlan {
            client_cert: Some(ClientCertPlan {
                cert_file: empty,
                key_file: missing,
            }),
            ..TlsPlan::default()
        };
        let e = client_config(&cert, Roots::FilesOnly).expect_err("empty cert");
        assert_eq!(e.field(), "spec.target.clientCert.certFile");
        assert!(client_config(&TlsPlan::default(), Roots::FilesOnly).is_ok());
    }

    #[test]
    fn the_server_name_is_the_url_host() {
        assert!(matches!(
            server_name("echo.example"),
            Some(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("127.0.0.1"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]"),
            Some(ServerName::IpAddress(_))
        ));
    }
}
