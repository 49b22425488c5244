//! ricochet's instrumented echo server.
