//! The embedded echo-server: started in-process on `127.0.0.1:0` when a plan names no
//! target (or `--embedded`), stopped when the run ends. With telemetry verification it
//! exports its spans and logs over OTLP/gRPC to the embedded sink; with `spec.chaos` its
//! admin listener runs on loopback behind a random bearer token from the OS CSPRNG.

use std::net::SocketAddr;

use ricochet_verify::Secret;

/// The embedded server could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// Binding the loopback listener failed.
    #[error("cannot start the embedded echo-server: binding {addr} failed: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server refused its configuration.
    #[error("cannot start the embedded echo-server: {0}")]
    Start(#[source] echo_server::Error),
}

/// The embedded server's chaos seed: fixed, so a drill's fault draws repeat from run to
/// run (the n-th request a fault applies to is hit or not alike every time).
pub const EMBEDDED_SEED: u64 = 0x7269_636f_6368_6574;

/// How to start the embedded server.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedOptions {
    /// Export spans and logs over OTLP/gRPC to this endpoint (`http://127.0.0.1:port`).
    pub otlp_grpc: Option<String>,
    /// Start the admin listener (for `spec.chaos`).
    pub admin: bool,
    /// Listen here instead of an ephemeral loopback port.
    pub listen: Option<SocketAddr>,
}

/// A running embedded echo-server (no request log).
#[derive(Debug)]
pub struct Embedded {
    server: echo_server::Server,
    admin_token: Option<Secret>,
}

impl Embedded {
    /// Starts the server on an ephemeral loopback port (or `opts.listen`).
    pub async fn start(opts: &EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let addr = opts.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener =
            echo_server::bind(addr).map_err(|source| EmbeddedError::Bind { addr, source })?;
        let mut config = echo_server::Config {
            seed: Some(EMBEDDED_SEED),
            ..echo_server::Config::default()
        };
        if let Some(endpoint) = &opts.otlp_grpc {
            config.telemetry.otlp = Some(echo_server::OtlpConfig {
                endpoint: endpoint.clone(),
                protocol: echo_server::OtlpProtocol::Grpc,
            });
        }
        let mut admin_token = None;
        if opts.admin {
            // 256 bits from the OS CSPRNG: the admin port is reachable by every local user.
            let token =
                echo_server::config::AdminToken::generate().map_err(EmbeddedError::Start)?;
            admin_token = Some(Secret::new(token.expose().to_owned()));
            config.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            config.admin_token = Some(token);
        }
        let server = echo_server::start(config, listener)
            .await
            .map_err(EmbeddedError::Start)?;
        Ok(Self {
            server,
            admin_token,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The admin API and its token, when started with one.
    pub fn admin(&self) -> Option<(SocketAddr, Secret)> {
        Some((self.server.admin_addr()?, self.admin_token.clone()?))
    }

    /// Stops it, letting in-flight requests finish and flushing its telemetry.
    pub async fn stop(self) {
        let _ = self.server.shutdown().await;
    }
}
