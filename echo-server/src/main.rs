//! The `echo-server` binary: flags -> config -> serve -> drain on SIGTERM/SIGINT -> flush.

use anyhow::Context as _;
use clap::Parser as _;
use echo_server::{Cli, LogFormat, ProcessEnv};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_diagnostics(cli.log_format);
    let (listen, config) = cli
        .into_config(&ProcessEnv)
        .context("invalid configuration")?;
    let listener = echo_server::bind(listen)
        .with_context(|| format!("cannot bind the listener on {listen}"))?;
    let server = echo_server::start(config, listener)
        .await
        .context("cannot start the echo server")?;
    tracing::info!(addr = %server.local_addr(), admin = ?server.admin_addr(), "listening");
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
