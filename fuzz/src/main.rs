//! `ricochet-fuzz`: fuzzes ricochet's parsers and prints, per target, inputs run, panics,
//! hangs, the slowest input and peak RSS. Exit code 1 when anything panicked or hung.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use ricochet_fuzz::{Config, Report, runner, targets};

/// Fuzz ricochet's parsers of user and network input.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Target to fuzz (`all`, or a name from `--list`).
    #[arg(long, default_value = "all")]
    target: String,
    /// Inputs per target (the seeds first).
    #[arg(long, default_value_t = 10_000)]
    inputs: u64,
    /// Seed of the mutations: the same seed replays the same inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// An input slower than this many milliseconds counts as a hang.
    #[arg(long, default_value_t = 1_000)]
    hang_ms: u64,
    /// Where panicking and hanging inputs are written.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/fuzz-findings"))]
    findings: PathBuf,
    /// Run one input file against `--target` and print what happened.
    #[arg(long, conflicts_with = "inputs")]
    replay: Option<PathBuf>,
    /// List the targets and their entry points.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(clean) => ExitCode::from(u8::from(!clean)),
        Err(e) => {
            eprintln!("ricochet-fuzz: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Returns whether every target ran clean.
fn run(cli: Cli) -> anyhow::Result<bool> {
    let all = targets::all();
    if cli.list {
        for t in &all {
            println!("{:<20} {}", t.name, t.entry);
        }
        return Ok(true);
    }
    let chosen: Vec<_> = if cli.target == "all" {
        all
    } else {
        let Some(t) = targets::find(&cli.target) else {
            let names: Vec<_> = all.iter().map(|t| t.name).collect();
            bail!(
                "no target `{}`; expected `all` or one of {}",
                cli.target,
                names.join(", ")
            );
        };
        vec![t]
    };
    if let Some(file) = &cli.replay {
        let [target] = chosen.as_slice() else {
            bail!("--replay needs one --target, not `all`");
        };
        let input =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        return Ok(match runner::call(target.run, &input, true) {
            Ok(fingerprint) => {
                println!("{}: no panic (outcome {fingerprint:016x})", target.name);
                true
            }
            Err((message, trace)) => {
                println!("{}: panic: {message}\n{trace}", target.name);
                false
            }
        });
    }
    let config = Config {
        inputs: cli.inputs,
        seed: cli.seed,
        hang: Duration::from_millis(cli.hang_ms),
        findings: Some(cli.findings),
        ..Config::default()
    };
    println!(
        "{:<20} {:>10} {:>7} {:>6} {:>10} {:>10} {:>9} {:>8} {:>9}",
        "target",
        "inputs",
        "panics",
        "hangs",
        "slowest",
        "peak RSS",
        "inputs/s",
        "outcomes",
        "time"
    );
    let mut reports = Vec::new();
    for target in &chosen {
        let r = runner::run(target, &config);
        print_row(&r);
        reports.push(r);
    }
    let (inputs, panics, hangs) = reports.iter().fold((0, 0, 0), |(i, p, h), r| {
        (i + r.inputs, p + r.panics, h + r.hangs)
    });
    let time: Duration = reports.iter().map(|r| r.elapsed).sum();
    println!(
        "{:<20} {inputs:>10} {panics:>7} {hangs:>6} {:>10} {:>10} {:>9} {:>8} {:>9}",
        "total",
        "",
        runner::peak_rss_kib().map_or("?".to_owned(), mib),
        "",
        "",
        format!("{:.1}s", time.as_secs_f64())
    );
    for r in &reports {
        for f in &r.findings {
            println!("\n{} {f}", r.target);
        }
    }
    Ok(panics == 0 && hangs == 0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn print_row(r: &Report) {
    let rate = r.inputs as f64 / r.elapsed.as_secs_f64().max(1e-9);
    println!(
        "{:<20} {:>10} {:>7} {:>6} {:>10} {:>10} {:>9.0} {:>8} {:>9}",
        r.target,
        r.inputs,
        r.panics,
        r.hangs,
        format!("{:.2}ms", r.slowest.as_secs_f64() * 1e3),
        r.peak_rss_kib.map_or("?".to_owned(), mib),
        rate,
        r.outcomes,
        format!("{:.1}s", r.elapsed.as_secs_f64())
    );
}
