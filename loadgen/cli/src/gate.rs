//! `loadgen gate`: a LoadTestRun from a LoadTest, awaited, its verdict as the exit code (Argo
//! Rollouts' Job provider, a CI step).

use std::time::Duration;

use clap::Args;
use ricochet_engine::Exit;
use ricochet_operator::gate::{GateError, GateOptions, GateOutcome, gate_in_cluster};

use crate::{CommandResult, Failure, parse_duration_flag, runtime};

/// Arguments of `loadgen gate`.
#[derive(Args, Debug, Clone)]
pub struct GateArgs {
    /// The LoadTest to run.
    #[arg(long, value_name = "NAME")]
    pub load_test: String,
    /// Namespace of the LoadTest and of the run.
    #[arg(long, env = "RICOCHET_NAMESPACE", default_value = "ricochet")]
    pub namespace: String,
    /// Name of the run; the same name finds the same run, so a retried gate waits for
    /// the run the first try started (e.g. `podinfo-<pod-template-hash>`).
    #[arg(long, value_name = "NAME")]
    pub run: String,
    /// Run against this URL instead of the LoadTest's `target.url` (e.g. the canary's
    /// Service).
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Give up (exit 3) when the run has not finished after this long.
    #[arg(long, default_value = "30m", value_parser = parse_duration_flag)]
    pub timeout: Duration,
    /// Time between two looks at the run.
    #[arg(long, default_value = "5s", value_parser = parse_duration_flag)]
    pub poll: Duration,
}

/// `loadgen gate`: 0 when the run passed, 1 when it failed, 2 when the LoadTest does not
/// exist, 3 when there is no verdict (API unreachable, timeout).
pub(crate) fn gate(args: &GateArgs) -> CommandResult {
    let opts = GateOptions {
        namespace: args.namespace.clone(),
        load_test: args.load_test.clone(),
        run: args.run.clone(),
        target: args.target.clone(),
        poll: args.poll,
        timeout: args.timeout,
    };
    let outcome = runtime()?.block_on(gate_in_cluster(&opts)).map_err(|e| {
        let exit = match e {
            GateError::NoLoadTest { .. } | GateError::NotOurs { .. } => Exit::InvalidInput,
            _ => Exit::RunFailed,
        };
        Failure::new(exit, format!("gate: {e}"))
    })?;
    match outcome {
        GateOutcome::Passed(sentence) => {
            println!("{sentence}");
            Ok(Exit::Passed)
        }
        GateOutcome::Failed(sentence) => Err(Failure::new(Exit::ThresholdFailed, sentence)),
    }
}
