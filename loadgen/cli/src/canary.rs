//! `loadgen canary`: the plan in back-to-back rounds until SIGTERM, with `/metrics`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use ricochet_engine::Exit;
use ricochet_engine::canary::{self, Canary, CanaryOptions};
use ricochet_engine::run::RunOutcome;
use tokio_util::sync::CancellationToken;

use crate::run::PacingArg;
use crate::{CommandResult, Failure, OverrideArgs, parse_duration_flag, runtime};

/// A round's length when `--duration` does not say.
const DEFAULT_ROUND: Duration = Duration::from_secs(3600);

/// Arguments of `loadgen canary`.
#[derive(Args, Debug, Clone)]
pub struct CanaryArgs {
    /// The LoadTest YAML file, e.g. scenarios/canary.yaml: a low, steady rate.
    pub scenario: PathBuf,
    /// Serve `/metrics` (and `/healthz`) on this address, e.g. `0.0.0.0:9464`.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: SocketAddr,
    /// The rolling window of the `ricochet_canary_window_*` series.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration_flag)]
    pub window: Duration,
    /// The `testid` label of every series (default `canary-<metadata.name>`).
    #[arg(long, env = "RICOCHET_TESTID")]
    pub testid: Option<String>,
    /// Overrides of the document; `--duration` is each round's length (default 1h).
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// How arrival-rate scenarios wait for each request's instant, as for `run`.
    #[arg(long, env = "RICOCHET_PACING", value_enum, default_value = "auto")]
    pub pacing: PacingArg,
}

/// `loadgen canary`: exit 2 at once on a configuration error (the plan, the address), 0
/// once stopped by SIGTERM or SIGINT.
pub(crate) fn canary(args: &CanaryArgs) -> CommandResult {
    let mut overrides = args.overrides.clone();
    let round = *overrides.duration.get_or_insert(DEFAULT_ROUND);
    let plan = overrides
        .load_plan(&args.scenario)
        .map_err(|e| Failure::new(e.exit(), e))?;
    plan.check_one_process()
        .map_err(|e| Failure::new(e.exit(), e))?;
    let opts = CanaryOptions {
        window: args.window,
        testid: args
            .testid
            .clone()
            .unwrap_or_else(|| format!("canary-{}", plan.name)),
        pacing: args.pacing.into(),
    };
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        let listener = canary::bind(args.metrics_addr).await.map_err(|e| {
            Failure::new(
                Exit::InvalidInput,
                format!("--metrics-addr {}: cannot listen: {e}", args.metrics_addr),
            )
        })?;
        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(listen_signals(shutdown.clone()));
        let c = Arc::new(Canary::new(plan, &opts));
        let server = tokio::spawn(canary::serve(listener, c.clone(), shutdown.clone()));
        eprintln!(
            "canary: serving /metrics on http://{}/metrics; rounds of {}, window {}",
            args.metrics_addr,
            ricochet_engine::duration::format_duration(round),
            ricochet_engine::duration::format_duration(opts.window),
        );
        let rounds = c.run(&opts, shutdown.clone(), print_round).await;
        shutdown.cancel();
        signals.abort();
        let _ = server.await;
        rounds.map_err(|e| Failure::new(e.exit(), e))
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let rounds = result?;
    eprintln!("canary: stopped after {rounds} finished rounds");
    Ok(Exit::Passed)
}

/// One line per finished round on stderr.
fn print_round(n: u64, outcome: &RunOutcome) {
    let run = &outcome.summary.run;
    let mut line = format!(
        "canary: round {n} {:?} after {:.1}s: {} requests",
        run.outcome,
        run.duration_secs,
        outcome
            .stats
            .series
            .values()
            .map(|s| s.requests)
            .sum::<u64>()
    )
    .to_lowercase();
    if let Some(t) = &outcome.telemetry {
        for (_, tally) in &t.signals {
            line.push_str(&format!(
                "; {}: {} found, {} missing, {} unknown",
                tally.signal.metric_label(),
                tally.found,
                tally.missing,
                tally.unknown
            ));
        }
    }
    if let Some(m) = &outcome.message {
        line.push_str(&format!(" ({m})"));
    }
    eprintln!("{line}");
}

/// SIGINT or SIGTERM stops the canary: the running round is cut short and the process
/// exits 0.
async fn listen_signals(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
    eprintln!("canary: stopping (signal received)");
    shutdown.cancel();
}
