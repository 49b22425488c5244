//! Live progress: an indicatif bar on a terminal, a plain line every few seconds on
//! stderr otherwise, nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What the collector knows at a tick.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// Since the run's start.
    pub elapsed: Duration,
    /// Planned run length.
    pub planned: Duration,
    /// Completed requests so far.
    pub requests: u64,
    /// Requests per second over the last tick.
    pub achieved_rps: f64,
    /// Planned arrivals per second now (open-model scenarios), if any.
    pub target_rps: Option<f64>,
    /// Failed requests so far.
    pub errors: u64,
    /// Dropped iterations so far.
    pub dropped: u64,
    /// p99 of `http_req_duration` so far, ms.
    pub p99_ms: Option<f64>,
}

impl Snapshot {
    fn line(&self) -> String {
        let target = self
            .target_rps
            .map_or(String::new(), |t| format!("/{t:.0}"));
        let p99 = self.p99_ms.map_or("-".into(), |p| format!("{p:.2}ms"));
        format!(
            "{} reqs, {:.0}{target} req/s, {} errors, {} dropped, p99 {p99}",
            self.requests, self.achieved_rps, self.errors, self.dropped
        )
    }
}

/// How progress is shown.
#[derive(Debug)]
pub enum Progress {
    /// A bar on a terminal.
    Bar(ProgressBar),
    /// Plain lines every `every`.
    Lines {
        /// Interval between lines.
        every: Duration,
        /// Elapsed time of the last line.
        last: Option<Duration>,
    },
    /// Nothing.
    Quiet,
}

impl Progress {
    /// Picks the mode: quiet, a bar when stderr is a terminal, lines otherwise.
    pub fn new(quiet: bool, planned: Duration) -> Self {
        if quiet {
            return Progress::Quiet;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(planned.as_secs().max(1)),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s  {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                every: Duration::from_secs(5),
                last: None,
            }
        }
    }

    /// Shows a tick.
    pub fn update(&mut self, s: &Snapshot) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(s.elapsed.as_secs().min(s.planned.as_secs().max(1)));
                bar.set_message(s.line());
            }
            Progress::Lines { every, last } => {
                if last.is_none_or(|l| s.elapsed >= l + *every) {
                    *last = Some(s.elapsed);
                    eprintln!(
                        "[{:>4}s/{}s] {}",
                        s.elapsed.as_secs(),
                        s.planned.as_secs(),
                        s.line()
                    );
                }
            }
            Progress::Quiet => {}
        }
    }

    /// Clears the bar.
    pub fn finish(&mut self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }

    /// Prints a message above the bar (or as a line).
    pub fn println(&self, msg: &str) {
        match self {
            Progress::Bar(bar) => bar.println(msg),
            Progress::Lines { .. } => eprintln!("{msg}"),
            Progress::Quiet => {}
        }
    }
}
