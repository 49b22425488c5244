#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine, installing what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
cargo test --workspace --doc
