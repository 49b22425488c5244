#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine, installing what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

# loadgen/tests/prometheus_roundtrip.rs runs a real Prometheus (Debian's package). Install
# it when absent. The package may start its own service on :9090 (and the recommended
# node exporter, hence --no-install-recommends); that does not matter: the test starts
# its own prometheus on a free loopback port with a temp config and data dir.
if ! command -v prometheus >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus ]; then
  echo "scripts/test.sh: installing Debian's prometheus for the metrics round-trip test" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold prometheus
fi

cargo test --workspace --all-targets
cargo test --workspace --doc
