//! Shared helpers: one load test at a time within this binary, a runtime per test, free
//! loopback ports.

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

/// A loopback port nothing listens on (now).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
