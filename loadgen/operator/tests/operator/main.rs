//! `ricochet-operator`'s integration tests, one module per topic, over what `deploy/`
//! ships beside the operator: the Argo CD health check of LoadTestRuns, the Flagger and
//! Argo Rollouts gates and the RBAC of the operator and its runners.

mod argocd_health;
mod gates;
mod rbac;

use std::path::{Path, PathBuf};

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
