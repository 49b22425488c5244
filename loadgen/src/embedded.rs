//! The embedded echo-server: started in-process on `127.0.0.1:0` when a plan names no
//! target (or `--embedded`), stopped when the run ends.

use std::net::SocketAddr;

/// The embedded server could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// Binding the loopback listener failed.
    #[error("cannot start the embedded echo-server: binding 127.0.0.1:0 failed: {0}")]
    Bind(#[source] std::io::Error),
    /// The server refused its configuration.
    #[error("cannot start the embedded echo-server: {0}")]
    Start(#[source] echo_server::Error),
}

/// A running embedded echo-server (quiet: no request log, no export).
#[derive(Debug)]
pub struct Embedded {
    server: echo_server::Server,
}

impl Embedded {
    /// Starts the server on an ephemeral loopback port.
    pub async fn start() -> Result<Self, EmbeddedError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(EmbeddedError::Bind)?;
        let server = echo_server::start(echo_server::Config::default(), listener)
            .await
            .map_err(EmbeddedError::Start)?;
        Ok(Self { server })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops it, letting in-flight requests finish.
    pub async fn stop(self) {
        let _ = self.server.shutdown().await;
    }
}
