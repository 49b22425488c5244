//! Shared helpers: one load test at a time within this binary, a runtime per test.

use std::sync::{Mutex, MutexGuard};

static LOAD: Mutex<()> = Mutex::new(());

/// Serializes load tests within this binary (the machine is small and shared).
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    LOAD.lock().unwrap_or_else(|p| p.into_inner())
}

/// A multi-threaded runtime like the CLI's.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}
