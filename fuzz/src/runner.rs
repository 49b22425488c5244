//! The runner: feeds one target mutated inputs, each under `catch_unwind` and a clock,
//! counts panics and hangs, keeps the inputs that led somewhere new, and writes every
//! finding to disk.
//!
//! A hang is an input slower than [`Config::hang`]; an input still running after
//! [`Config::abort_after`] (an endless loop) is written out by a watchdog thread, which then
//! aborts the process, since a running thread cannot be stopped.

use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::mutate::mutate;
use crate::rng::{Rng, hash};

/// One parser under test.
#[derive(Clone, Copy)]
pub struct Target {
    /// Short name (`--target`).
    pub name: &'static str,
    /// The entry point it drives, for the report.
    pub entry: &'static str,
    /// Real inputs to start from (recorded answers, scenario files, encodings).
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Longest input generated, in bytes (above the parser's own limits where it has any).
    pub max_len: usize,
    /// Tokens of the format (keywords, field names, units).
    pub dictionary: &'static [&'static [u8]],
    /// A structure-aware generator of well-formed or nearly well-formed inputs.
    pub generate: Option<fn(&mut Rng) -> Vec<u8>>,
    /// Runs the parser on one input and returns a fingerprint of what it did (the kind of
    /// answer or error, not its echoed values): new fingerprints grow the corpus.
    pub run: fn(&[u8]) -> u64,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}

/// How long and how hard to fuzz one target.
#[derive(Clone, Debug)]
pub struct Config {
    /// Inputs to run (the seeds first, unmodified).
    pub inputs: u64,
    /// Seed of the mutation generator: the same seed replays the same inputs.
    pub seed: u64,
    /// An input slower than this is a hang.
    pub hang: Duration,
    /// An input still running after this is written out and the process aborted.
    pub abort_after: Duration,
    /// Most inputs kept for reaching a new fingerprint.
    pub corpus_cap: usize,
    /// Where findings are written (`<dir>/<target>/panic-<hash>.bin` and `.txt`); `None`:
    /// kept in the report only.
    pub findings: Option<PathBuf>,
    /// Shrink a panicking input before reporting it (at most this many attempts).
    pub minimize_budget: usize,
    /// Capture a backtrace with each panic. Off by default: resolving symbols takes long
    /// and loads the debug info into memory, which would count as the target's time and
    /// peak RSS; `ricochet-fuzz --replay FILE` prints the backtrace of one finding.
    pub backtraces: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            inputs: 10_000,
            seed: 1,
            hang: Duration::from_secs(1),
            abort_after: Duration::from_secs(60),
            corpus_cap: 2_048,
            findings: None,
            minimize_budget: 4_000,
            backtraces: false,
        }
    }
}

/// A panic or a hang.
#[derive(Clone, Debug)]
pub struct Finding {
    /// Panic or hang.
    pub kind: FindingKind,
    /// The input as generated.
    pub input: Vec<u8>,
    /// The smallest input found that panics at the same place (panics only).
    pub minimized: Option<Vec<u8>>,
    /// The panic message and location (and a backtrace for the first few), or the time
    /// taken.
    pub message: String,
    /// Time the input took.
    pub took: Duration,
    /// The file the input was written to.
    pub saved: Option<PathBuf>,
}

impl std::fmt::Display for Finding {
    /// `Panic after 2ms: <message>`, then the input, the minimized input and the file it
    /// was saved to, one per indented line (`-` when there is none).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let none = || "-".to_owned();
        write!(
            f,
            "{:?} after {:?}: {}\n  input: {}\n  minimized: {}\n  saved: {}",
            self.kind,
            self.took,
            self.message,
            escape(&self.input),
            self.minimized.as_deref().map_or_else(none, escape),
            self.saved
                .as_ref()
                .map_or_else(none, |p| p.display().to_string())
        )
    }
}

/// The kind of a [`Finding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// The target panicked.
    Panic,
    /// The input took longer than [`Config::hang`].
    Hang,
}

impl FindingKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Panic => "panic",
            Self::Hang => "hang",
        }
    }
}

/// What fuzzing one target found.
#[derive(Clone, Debug)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// Inputs run.
    pub inputs: u64,
    /// Inputs that panicked.
    pub panics: u64,
    /// Inputs slower than the hang bound.
    pub hangs: u64,
    /// The slowest input's time.
    pub slowest: Duration,
    /// Length of the slowest input.
    pub slowest_len: usize,
    /// Distinct fingerprints seen.
    pub outcomes: usize,
    /// Corpus size at the end (seeds and kept inputs).
    pub corpus: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Peak resident set size (`VmHWM`) in KiB while this target ran, when the kernel
    /// reports it (reset before the target where `/proc/self/clear_refs` allows).
    pub peak_rss_kib: Option<u64>,
    /// The first findings (at most 8 are kept in full).
    pub findings: Vec<Finding>,
}

const KEPT_FINDINGS: usize = 8;

thread_local! {
    /// Set while a target runs on this thread: the panic hook records instead of printing.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// Capture a backtrace with the next panic message.
    static WANT_BACKTRACE: Cell<bool> = const { Cell::new(false) };
    /// `message at file:line:column`, and the backtrace if one was wanted (unresolved:
    /// symbols are looked up after the input's clock stopped).
    static LAST_PANIC: RefCell<Option<(String, Option<Backtrace>)>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs (once per process) a panic hook that records the panics of fuzzed calls on the
/// calling thread and passes every other panic to the previous hook.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CAPTURING.get() {
                previous(info);
                return;
            }
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic payload)".to_owned());
            let at = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            let trace = WANT_BACKTRACE.get().then(Backtrace::force_capture);
            LAST_PANIC.set(Some((format!("{message} at {at}"), trace)));
        }));
    });
}

/// Runs `run` on `input` once: `Ok(fingerprint)` or `Err((message at location, backtrace))`
/// (an empty backtrace unless `backtrace`).
pub fn call(run: fn(&[u8]) -> u64, input: &[u8], backtrace: bool) -> Result<u64, (String, String)> {
    timed_call(run, input, backtrace).0
}

/// [`call`], and how long the target ran (without resolving the backtrace's symbols).
fn timed_call(
    run: fn(&[u8]) -> u64,
    input: &[u8],
    backtrace: bool,
) -> (Result<u64, (String, String)>, Duration) {
    install_hook();
    WANT_BACKTRACE.set(backtrace);
    CAPTURING.set(true);
    let start = Instant::now();
    let result = panic::catch_unwind(AssertUnwindSafe(|| run(input)));
    let took = start.elapsed();
    CAPTURING.set(false);
    let result = result.map_err(|_| {
        let (message, trace) = LAST_PANIC
            .take()
            .unwrap_or_else(|| ("(panic not recorded)".to_owned(), None));
        (message, trace.map(|t| t.to_string()).unwrap_or_default())
    });
    (result, took)
}

/// The input the watchdog is watching.
struct Watch {
    /// Bumped per input.
    generation: AtomicU64,
    /// Nanoseconds since `epoch` when the current input started.
    started: AtomicU64,
    input: Mutex<Vec<u8>>,
    done: AtomicBool,
    epoch: Instant,
}

/// Fuzzes `target` for `config.inputs` inputs on the calling thread.
pub fn run(target: &Target, config: &Config) -> Report {
    reset_peak_rss();
    let epoch = Instant::now();
    let watch = Watch {
        generation: AtomicU64::new(0),
        started: AtomicU64::new(u64::MAX),
        input: Mutex::new(Vec::new()),
        done: AtomicBool::new(false),
        epoch,
    };
    let mut report = Report {
        target: target.name,
        inputs: 0,
        panics: 0,
        hangs: 0,
        slowest: Duration::ZERO,
        slowest_len: 0,
        outcomes: 0,
        corpus: 0,
        elapsed: Duration::ZERO,
        peak_rss_kib: None,
        findings: Vec::new(),
    };
    std::thread::scope(|scope| {
        let watchdog = scope.spawn(|| watchdog(target, config, &watch));
        fuzz(target, config, &watch, &mut report);
        watch.done.store(true, Ordering::Release);
        watchdog.thread().unpark();
    });
    report.elapsed = epoch.elapsed();
    report.peak_rss_kib = peak_rss_kib();
    report
}

fn fuzz(target: &Target, config: &Config, watch: &Watch, report: &mut Report) {
    let mut rng = Rng::new(config.seed ^ hash(target.name.as_bytes()));
    let mut corpus: Vec<Vec<u8>> = (target.seeds)();
    corpus.retain(|s| s.len() <= target.max_len);
    let seeds = corpus.len();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut input = Vec::with_capacity(target.max_len);
    for i in 0..config.inputs {
        input.clear();
        let i = i as usize;
        if i < seeds {
            input.extend_from_slice(&corpus[i]);
        } else if let Some(generate) = target.generate.filter(|_| rng.one_in(4)) {
            input.extend(generate(&mut rng));
            if rng.one_in(2) {
                mutate(
                    &mut rng,
                    &mut input,
                    target.dictionary,
                    &corpus,
                    target.max_len,
                );
            }
            input.truncate(target.max_len);
        } else if corpus.is_empty() || rng.one_in(64) {
            let n = rng.small(256);
            input.extend((0..n).map(|_| rng.next_u64() as u8));
        } else {
            let picked: &Vec<u8> = rng.pick_ref(&corpus);
            input.extend_from_slice(picked);
            mutate(
                &mut rng,
                &mut input,
                target.dictionary,
                &corpus,
                target.max_len,
            );
        }

        {
            let mut watched = watch.input.lock().unwrap_or_else(|p| p.into_inner());
            watched.clear();
            watched.extend_from_slice(&input);
        }
        watch.generation.fetch_add(1, Ordering::AcqRel);
        watch
            .started
            .store(watch.epoch.elapsed().as_nanos() as u64, Ordering::Release);
        let (result, took) = timed_call(target.run, &input, config.backtraces);
        watch.started.store(u64::MAX, Ordering::Release);
        report.inputs += 1;
        if took > report.slowest {
            report.slowest = took;
            report.slowest_len = input.len();
        }
        if took > config.hang {
            report.hangs += 1;
            let finding = Finding {
                kind: FindingKind::Hang,
                input: input.clone(),
                minimized: None,
                message: format!("took {took:?} (bound {:?})", config.hang),
                took,
                saved: None,
            };
            keep(report, target, config, finding);
        }
        match result {
            Ok(fingerprint) => {
                if seen.insert(fingerprint) && corpus.len() < config.corpus_cap + seeds {
                    corpus.push(input.clone());
                }
            }
            Err((message, trace)) => {
                report.panics += 1;
                if report.findings.len() < KEPT_FINDINGS {
                    let minimized = (config.minimize_budget > 0)
                        .then(|| minimize(target.run, &input, &message, config.minimize_budget));
                    let message = if trace.is_empty() {
                        message
                    } else {
                        format!("{message}\n{trace}")
                    };
                    let finding = Finding {
                        kind: FindingKind::Panic,
                        input: input.clone(),
                        minimized,
                        message,
                        took,
                        saved: None,
                    };
                    keep(report, target, config, finding);
                }
            }
        }
    }
    report.outcomes = seen.len();
    report.corpus = corpus.len();
}

/// Records a finding in the report (the first few) and on disk.
fn keep(report: &mut Report, target: &Target, config: &Config, mut finding: Finding) {
    if report.findings.len() >= KEPT_FINDINGS {
        return;
    }
    if let Some(dir) = &config.findings {
        finding.saved = save(dir, target.name, &finding).ok();
    }
    report.findings.push(finding);
}

/// Writes `<dir>/<target>/<kind>-<hash>.bin` (the minimized input when there is one, the
/// original as `.orig.bin`) and a `.txt` with the message.
fn save(dir: &Path, target: &str, finding: &Finding) -> std::io::Result<PathBuf> {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir)?;
    let shown = finding.minimized.as_ref().unwrap_or(&finding.input);
    let stem = format!("{}-{:016x}", finding.kind.as_str(), hash(shown));
    let path = dir.join(format!("{stem}.bin"));
    std::fs::write(&path, shown)?;
    if finding.minimized.is_some() {
        std::fs::write(dir.join(format!("{stem}.orig.bin")), &finding.input)?;
    }
    std::fs::write(
        dir.join(format!("{stem}.txt")),
        format!(
            "target: {target}\nkind: {}\ntook: {:?}\ninput: {}\n\n{}\n",
            finding.kind.as_str(),
            finding.took,
            escape(shown),
            finding.message
        ),
    )?;
    Ok(path)
}

/// Shrinks `input` by deleting chunks (halving their size) while the target still panics
/// at the same place; at most `budget` calls.
pub fn minimize(run: fn(&[u8]) -> u64, input: &[u8], message: &str, budget: usize) -> Vec<u8> {
    let place = message.rsplit(" at ").next().unwrap_or("");
    let same = |candidate: &[u8]| matches!(call(run, candidate, false), Err((m, _)) if m.rsplit(" at ").next() == Some(place));
    let mut best = input.to_vec();
    let mut left = budget;
    let mut chunk = best.len().div_ceil(2).max(1);
    while left > 0 {
        let mut i = 0;
        let mut shrunk = false;
        while i < best.len() && left > 0 {
            let mut candidate = best.clone();
            candidate.drain(i..(i + chunk).min(best.len()));
            left -= 1;
            if same(&candidate) {
                best = candidate;
                shrunk = true;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 && !shrunk {
            break;
        }
        if !shrunk {
            chunk = chunk.div_ceil(2);
        }
    }
    best
}

/// Watches the fuzzing thread: an input running past `abort_after` is written out, then
/// the process aborts (a thread stuck in a loop cannot be stopped).
fn watchdog(target: &Target, config: &Config, watch: &Watch) {
    let tick = (config.abort_after / 20).clamp(Duration::from_millis(10), Duration::from_secs(1));
    while !watch.done.load(Ordering::Acquire) {
        std::thread::park_timeout(tick);
        let started = watch.started.load(Ordering::Acquire);
        if started == u64::MAX {
            continue;
        }
        let running = watch
            .epoch
            .elapsed()
            .saturating_sub(Duration::from_nanos(started));
        if running > config.abort_after && !watch.done.load(Ordering::Acquire) {
            let input = watch
                .input
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let finding = Finding {
                kind: FindingKind::Hang,
                input,
                minimized: None,
                message: format!(
                    "still running after {running:?}: endless loop? (process aborted)"
                ),
                took: running,
                saved: None,
            };
            let saved = config
                .findings
                .as_deref()
                .and_then(|d| save(d, target.name, &finding).ok());
            eprintln!(
                "ricochet-fuzz: target {} has run one input for {running:?}; input {} (saved to {}); aborting",
                target.name,
                escape(&finding.input),
                saved.map_or_else(|| "nowhere".to_owned(), |p| p.display().to_string())
            );
            std::process::abort();
        }
    }
}

/// Bytes as a Rust byte-string literal body (printable ASCII kept, the rest escaped), cut
/// at 2 KiB.
pub fn escape(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(2048)];
    let mut s: String = shown.escape_ascii().to_string();
    if bytes.len() > shown.len() {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}

/// `VmHWM` of this process in KiB (Linux).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0, `echo 5 > /proc/self/clear_refs`), so
/// the next reading is this target's peak; silently does nothing elsewhere.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics_on_bang(input: &[u8]) -> u64 {
        assert!(!input.contains(&b'!'), "a bang");
        input.len() as u64
    }

    #[test]
    fn minimize_keeps_only_the_byte_that_panics() {
        let input = b"lots of text around the ! and more after it";
        let message = call(panics_on_bang, input, false).unwrap_err().0;
        assert!(message.starts_with("a bang at "), "{message}");
        assert_eq!(minimize(panics_on_bang, input, &message, 10_000), b"!");
    }

    #[test]
    fn call_passes_fingerprints_through() {
        assert_eq!(call(panics_on_bang, b"abc", false), Ok(3));
    }

    #[test]
    fn escape_shows_bytes_as_a_literal() {
        assert_eq!(escape(b"a\n\xff\""), "a\\n\\xff\\\"");
    }
}
