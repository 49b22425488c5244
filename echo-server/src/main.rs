//! The `echo-server` binary: flags -> config -> serve -> drain on SIGTERM/SIGINT -> flush.
//! Exit codes: 0 after a clean drain, 2 for invalid configuration (flags, `OTEL_*` and
//! `ECHO_*` variables, as clap's own usage errors), 1 for failures at run time.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use echo_server::{Cli, LogFormat, ProcessEnv};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_diagnostics(cli.log_format);
    let (listen, config) = match cli.into_config(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let listener = match echo_server::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot bind the listener on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match echo_server::start(config, listener).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the echo server: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    match serve(server).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(server: echo_server::Server) -> anyhow::Result<()> {
    tracing::info!(
        addr = %server.local_addr(),
        admin = ?server.admin_addr(),
        replica = server.state().replica(),
        "listening"
    );
    wait_for_signal().await?;
    tracing::info!("shutting down: draining in-flight requests and flushing telemetry");
    if let Err(e) = server.shutdown().await {
        tracing::error!(error = %e, "telemetry was not fully flushed");
    }
    Ok(())
}

fn init_diagnostics(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,hyper=warn,h2=warn,tonic=warn,reqwest=warn")
    });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT"),
        _ = term.recv() => Ok(()),
    }
}
