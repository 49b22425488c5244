//! The terminal's view of a run: an indicatif bar on a terminal, a plain line every few
//! seconds on stderr otherwise, only warnings with `--quiet`.

use std::io::IsTerminal;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ricochet_engine::progress::{Notice, ProgressSink, Snapshot};

/// How progress is shown.
#[derive(Debug)]
enum Mode {
    /// A bar on a terminal.
    Bar(ProgressBar),
    /// Plain lines every `every`.
    Lines {
        /// Interval between lines.
        every: Duration,
        /// Elapsed time of the last line.
        last: Option<Duration>,
    },
    /// Only warnings.
    Quiet,
}

/// Progress on stderr.
#[derive(Debug)]
pub struct Terminal(Mutex<Mode>);

impl Terminal {
    /// Picks the mode: quiet, a bar when stderr is a terminal, lines otherwise.
    pub fn new(quiet: bool, planned: Duration) -> Self {
        Self(Mutex::new(Self::mode(quiet, planned)))
    }

    /// Plain lines, for logs (runner pods).
    pub fn lines() -> Self {
        Self(Mutex::new(Mode::Lines {
            every: Duration::from_secs(5),
            last: None,
        }))
    }

    fn mode(quiet: bool, planned: Duration) -> Mode {
        if quiet {
            return Mode::Quiet;
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
            Mode::Bar(bar)
        } else {
            Mode::Lines {
                every: Duration::from_secs(5),
                last: None,
            }
        }
    }
}

impl ProgressSink for Terminal {
    fn update(&self, s: &Snapshot) {
        let mut mode = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *mode {
            Mode::Bar(bar) => {
                bar.set_position(s.elapsed.as_secs().min(s.planned.as_secs().max(1)));
                bar.set_message(s.line());
            }
            Mode::Lines { every, last } => {
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
            Mode::Quiet => {}
        }
    }

    fn finish(&self) {
        if let Mode::Bar(bar) = &*self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            bar.finish_and_clear();
        }
    }

    fn notice(&self, notice: &Notice) {
        let mode = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match (&*mode, notice) {
            (Mode::Quiet, Notice::Settling { .. } | Notice::WatchingAlerts { .. }) => {}
            (Mode::Bar(bar), _) => bar.println(notice.to_string()),
            _ => eprintln!("{notice}"),
        }
    }
}
