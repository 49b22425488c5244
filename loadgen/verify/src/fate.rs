//! What the workload's own exporter did with a sample's telemetry: the *export ledger*.
//!
//! A backend can only say "I hold it" or "I don't". Whether a missing trace was refused
//! at export (the pipeline said no: backpressure, limits), dropped in the workload's own
//! queue, dropped on purpose by chaos, or lost after the pipeline accepted it, only the
//! workload knows; and only it knows when the export carrying a request's telemetry was
//! acknowledged, which splits ingest latency into the workload's export wait and the
//! backend's part. The echo-server keeps that ledger per run; the engine reads it through
//! [`ExportLedger`], so this crate stays free of the echo-server.

use std::fmt;
use std::time::SystemTime;

use crate::{BoxFuture, Sample, Signal};

/// The fate of one sample's items (spans or log records) at the workload's exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// Every item was acknowledged by the pipeline; `acked_at` is when the last was.
    Accepted {
        /// When the export carrying its last item was acknowledged.
        acked_at: SystemTime,
    },
    /// The pipeline refused an item (after the exporter's retries).
    Refused,
    /// An item was dropped in the workload's own export queue (full).
    Dropped,
    /// Chaos dropped its telemetry on purpose (`dropTelemetry`): injected loss.
    Injected,
    /// Its export has not been answered yet.
    Pending,
    /// The ledger does not know it (not tracked, forgotten, or could not be read).
    Unknown,
}

impl Export {
    /// True once the exporter's part is over (anything but pending or unknown).
    pub fn is_decided(self) -> bool {
        !matches!(self, Self::Pending | Self::Unknown)
    }
}

/// Where the export fates of samples are read (the echo-server's per-run ledger).
pub trait ExportLedger: Send + Sync + fmt::Debug {
    /// The fate of each sample's `signal` items, in order; [`Export::Unknown`] for any it
    /// cannot tell.
    fn fates<'a>(&'a self, signal: Signal, samples: &'a [Sample]) -> BoxFuture<'a, Vec<Export>>;
}

/// Missing samples by what the exporter did with them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MissingSplit {
    /// Refused at export: the pipeline said no.
    pub refused: u64,
    /// Dropped in the workload's export queue.
    pub dropped: u64,
    /// Dropped on purpose by chaos: injected loss.
    pub injected: u64,
    /// Lost after acceptance: the pipeline said yes and lost it.
    pub after_acceptance: u64,
    /// The ledger could not tell (no ledger, not tracked, still pending).
    pub unaccounted: u64,
}

impl MissingSplit {
    /// Counts one missing sample.
    pub fn add(&mut self, export: Option<Export>) {
        match export {
            Some(Export::Refused) => self.refused += 1,
            Some(Export::Dropped) => self.dropped += 1,
            Some(Export::Injected) => self.injected += 1,
            Some(Export::Accepted { .. }) => self.after_acceptance += 1,
            Some(Export::Pending | Export::Unknown) | None => self.unaccounted += 1,
        }
    }

    /// Adds another runner's split.
    pub fn merge(&mut self, o: &Self) {
        self.refused += o.refused;
        self.dropped += o.dropped;
        self.injected += o.injected;
        self.after_acceptance += o.after_acceptance;
        self.unaccounted += o.unaccounted;
    }
}
