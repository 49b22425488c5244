//! The library's error type.

use std::net::SocketAddr;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while configuring, starting or stopping the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot bind the {what} listener on {addr}: {source}")]
    Bind {
        /// Which listener ("admin").
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The local address of a listener could not be read.
    #[error("cannot read the local address of the {what} listener: {source}")]
    LocalAddr {
        /// Which listener ("main" or "admin").
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// `--admin-listen` was given without a token.
    #[error(
        "--admin-listen {addr} needs an admin token: pass --admin-token <TOKEN> or set ECHO_ADMIN_TOKEN (the admin port is never served unauthenticated)"
    )]
    AdminTokenMissing {
        /// The admin address that was asked for.
        addr: SocketAddr,
    },
    /// A configuration value (flag or environment variable) is invalid.
    #[error("invalid {name} value {value:?}: {reason}")]
    InvalidSetting {
        /// The flag or environment variable name.
        name: String,
        /// The value given.
        value: String,
        /// What would be valid.
        reason: String,
    },
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP {signal} exporter for {endpoint}: {reason}")]
    Exporter {
        /// "traces" or "logs".
        signal: &'static str,
        /// The endpoint it was built for.
        endpoint: String,
        /// The builder's message.
        reason: String,
    },
    /// Flushing or shutting down telemetry failed; each failure is listed.
    #[error("telemetry shutdown reported failures: {}", .0.join("; "))]
    TelemetryShutdown(Vec<String>),
    /// The operating system's random source failed (drawing an admin token).
    #[error("cannot draw an admin token from the operating system's random source: {0}")]
    Random(getrandom::Error),
    /// The request-log writer thread could not be started.
    #[error("cannot start the request-log writer thread: {0}")]
    LogWriter(std::io::Error),
}

impl Error {
    /// The binary's exit code for this error: 2 for invalid configuration (a flag, an
    /// environment variable, the exporter's endpoint), 1 for failures at run time.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::InvalidSetting { .. }
            | Self::AdminTokenMissing { .. }
            | Self::Exporter { .. } => 2,
            _ => 1,
        }
    }
}
