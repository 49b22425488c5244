//! One target's lane: a bounded queue, the task that sends each batch (retrying server
//! and connection errors with backoff for one flush interval), and its tally.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::http::{Answer, Poster};
use crate::model::Batch;
use crate::target::{Protocol, Target};
use crate::{Result, TargetReport, otlp, remote_write};

/// The first wait before a retry; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a lane turns a batch into a request body.
pub(crate) enum Encoding {
    RemoteWrite,
    Otlp {
        resource: Arc<[(String, String)]>,
        start: SystemTime,
    },
}

impl Encoding {
    fn encode(&self, batch: &Batch) -> Result<(Bytes, u64)> {
        match self {
            Self::RemoteWrite => remote_write::encode(batch),
            Self::Otlp { resource, start } => Ok(otlp::encode(batch, resource, *start)),
        }
    }
}

/// A lane's counts, shared by the caller's side and the task.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    samples: AtomicU64,
    /// The first reason a try went wrong: what the user needs to fix.
    first_send_error: OnceLock<String>,
    /// The first reason a batch was never tried (usually a consequence of the above).
    first_drop: OnceLock<String>,
}

impl Tally {
    fn send_error(&self, reason: impl FnOnce() -> String) {
        if self.first_send_error.get().is_none() {
            let _ = self.first_send_error.set(reason());
        }
    }

    fn drop_reason(&self, reason: impl FnOnce() -> String) {
        if self.first_drop.get().is_none() {
            let _ = self.first_drop.set(reason());
        }
    }

    /// The first send error, else the first drop reason.
    fn first_error(&self) -> Option<String> {
        self.first_send_error
            .get()
            .or_else(|| self.first_drop.get())
            .cloned()
    }
}

/// The caller's side of one target.
pub(crate) struct Lane {
    label: String,
    capacity: usize,
    tx: Option<mpsc::Sender<Arc<Batch>>>,
    tally: Arc<Tally>,
    /// `None` once the task has ended (a finished `JoinHandle` must not be polled again).
    task: Option<JoinHandle<()>>,
}

impl Lane {
    /// Builds the target's client and spawns its task on the current runtime.
    pub(crate) fn start(
        target: &Target,
        encoding: Encoding,
        capacity: usize,
        flush_interval: Duration,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let poster = Poster::new(target)?;
        let label = target.label();
        let (tx, rx) = mpsc::channel(capacity);
        let tally = Arc::new(Tally::default());
        let task = tokio::spawn(
            Sender {
                poster,
                encoding,
                flush_interval,
                tally: tally.clone(),
                label: label.clone(),
            }
            .run(rx, cancel),
        );
        Ok(Self {
            label,
            capacity,
            tx: Some(tx),
            tally,
            task: Some(task),
        })
    }

    /// Queues `batch` without waiting; a full queue drops it and counts it.
    pub(crate) fn offer(&self, batch: Arc<Batch>) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.tally.dropped.fetch_add(1, Ordering::Relaxed);
                self.tally.drop_reason(|| {
                    format!(
                        "{}: the queue of {} batches was full, so a batch was dropped (the endpoint is slower than the flush interval, or down)",
                        self.label, self.capacity
                    )
                });
            }
            Err(TrySendError::Closed(_)) => {
                self.tally.dropped.fetch_add(1, Ordering::Relaxed);
                self.tally.drop_reason(|| {
                    format!("{}: the sender stopped, so a batch was dropped", self.label)
                });
            }
        }
    }

    /// Closes the queue: the task sends what is left and ends.
    pub(crate) fn close(&mut self) {
        self.tx = None;
    }

    /// Waits for the task until `deadline`; false when it is still running.
    pub(crate) async fn wait_until(&mut self, deadline: Instant) -> bool {
        let Some(task) = &mut self.task else {
            return true;
        };
        let ended = tokio::time::timeout_at(deadline, task).await.is_ok();
        if ended {
            self.task = None;
        }
        ended
    }

    /// Waits for a cancelled task to count what it held, aborting it after `grace`.
    pub(crate) async fn stop(&mut self, grace: Duration) {
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(grace, &mut task).await.is_err()
        {
            task.abort();
        }
    }

    /// The lane's counts so far.
    pub(crate) fn report(&self) -> TargetReport {
        let t = &self.tally;
        TargetReport {
            target: self.label.clone(),
            batches_sent: t.sent.load(Ordering::Relaxed),
            batches_failed: t.failed.load(Ordering::Relaxed),
            batches_dropped: t.dropped.load(Ordering::Relaxed),
            samples_sent: t.samples.load(Ordering::Relaxed),
            first_error: t.first_error(),
        }
    }
}

/// The task of one target.
struct Sender {
    poster: Poster,
    encoding: Encoding,
    flush_interval: Duration,
    tally: Arc<Tally>,
    label: String,
}

enum Fate {
    Sent {
        samples: u64,
        warning: Option<String>,
    },
    Failed(String),
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Batch>>, cancel: CancellationToken) {
        loop {
            let batch = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                b = rx.recv() => match b {
                    Some(b) => b,
                    None => return,
                },
            };
            let fate = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    self.tally.failed.fetch_add(1, Ordering::Relaxed);
                    self.tally.send_error(|| {
                        format!(
                            "{}: the wait for the last pushes ran out while a batch was being sent",
                            self.label
                        )
                    });
                    break;
                }
                fate = self.deliver(&batch) => fate,
            };
            match fate {
                Fate::Sent { samples, warning } => {
                    self.tally.sent.fetch_add(1, Ordering::Relaxed);
                    self.tally.samples.fetch_add(samples, Ordering::Relaxed);
                    if let Some(w) = warning {
                        self.tally.send_error(|| format!("{}: {w}", self.label));
                    }
                }
                Fate::Failed(reason) => {
                    self.tally.failed.fetch_add(1, Ordering::Relaxed);
                    self.tally.send_error(|| reason);
                }
            }
        }
        // Cancelled: whatever is still queued was never tried.
        rx.close();
        let mut left = 0u64;
        while rx.try_recv().is_ok() {
            left += 1;
        }
        if left > 0 {
            self.tally.dropped.fetch_add(left, Ordering::Relaxed);
            self.tally.drop_reason(|| {
                format!(
                    "{}: the wait for the last pushes ran out with {left} batches still queued",
                    self.label
                )
            });
        }
    }

    /// Sends one batch: tries until accepted or refused, retrying server and connection
    /// errors with doubling backoff; no try starts later than one flush interval after the
    /// first.
    async fn deliver(&self, batch: &Batch) -> Fate {
        let (body, samples) = match self.encoding.encode(batch) {
            Ok(encoded) => encoded,
            Err(e) => return Fate::Failed(format!("{}: {e}", self.label)),
        };
        let deadline = Instant::now() + self.flush_interval;
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0u32;
        loop {
            tries += 1;
            match self.poster.post(body.clone()).await {
                Answer::Accepted(answer) => {
                    let warning = match self.encoding {
                        Encoding::Otlp { .. } => otlp::partial_success(&answer),
                        Encoding::RemoteWrite => None,
                    };
                    return Fate::Sent { samples, warning };
                }
                Answer::Rejected(reason) => return Fate::Failed(reason),
                Answer::Retry { reason, after } => {
                    let wait = after.unwrap_or(backoff).max(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if Instant::now() + wait >= deadline {
                        return Fate::Failed(format!(
                            "{reason} (gave up after {tries} {} within the {:?} flush interval)",
                            if tries == 1 { "try" } else { "tries" },
                            self.flush_interval
                        ));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// The encoding of `target`'s protocol.
pub(crate) fn encoding_for(
    target: &Target,
    resource: &Arc<[(String, String)]>,
    start: SystemTime,
) -> Encoding {
    match target.protocol {
        Protocol::RemoteWrite => Encoding::RemoteWrite,
        Protocol::Otlp => Encoding::Otlp {
            resource: resource.clone(),
            start,
        },
    }
}
