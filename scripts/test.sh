#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine, installing what the tests need
# from Debian's packages when absent:
# - prometheus: loadgen/cli/tests/cli/prometheus_roundtrip.rs runs a real Prometheus, as do
#   the alert drills, the live outputs' tests (loadgen/cli/tests/cli/live_output.rs and
#   loadgen/output/tests/output/prometheus.rs, with its remote-write receiver) and `promtool`
#   checks of deploy/monitoring. The package
#   may start its own service on :9090 (hence --no-install-recommends for the node
#   exporter); that does not matter: the test starts its own prometheus on a free
#   loopback port with a temp config and data dir.
# - chromium: reports/tests/browser.sh opens the HTML report in headless Chromium and
#   fails on console errors or network requests; the screenshot it takes is kept at
#   target/report-screenshot.png.
# - kubernetes-client (kubectl): loadgen/cli/tests/cli/deploy_manifests.rs renders every overlay with
#   `kubectl kustomize`.
# - prometheus-alertmanager (and its amtool): loadgen/cli/tests/cli/alert_drill.rs runs alert
#   drills against a real Alertmanager routing to loadgen's webhook receiver, and
#   monitoring_rules.rs checks deploy/monitoring's Alertmanager configs with `amtool`. Like
#   prometheus, the package's own service is not used: each test starts its own on a free port.
# - bsdutils (`script`): loadgen/cli/tests/cli/run_cli.rs runs loadgen on a pseudo-terminal
#   to check the live progress bar and the coloured summary.
# - lua5.4: loadgen/operator/tests/operator/argocd_health.rs runs deploy/argocd/health.lua,
#   the Argo CD health check of LoadTestRuns, on each recorded run under deploy/argocd/testdata.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ] || missing+=(prometheus)
[ -x /usr/bin/prometheus-alertmanager ] && command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
command -v lua5.4 >/dev/null 2>&1 || missing+=(lua5.4)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "scripts/test.sh: installing Debian packages the tests need: ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
fi

bash reports/tests/browser.sh
cargo test --workspace --all-targets
cargo test --workspace --doc
