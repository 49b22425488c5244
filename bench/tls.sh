#!/usr/bin/env bash
# What TLS costs loadgen: requests/s of the release loadgen (constant-vus, keep-alive) against
# one server over plain HTTP and over TLS, and their ratio (TLS / plain); with wrk installed
# (Debian package `wrk`, it speaks https), wrk against the same TLS port, and loadgen/wrk.
#
# Target: the engine's example `tls_bench_server` (hyper HTTP/1.1 `200 ok`, one thread,
# listening in clear and over TLS 1.3 with a certificate from a throwaway CA that loadgen
# trusts through `caFile`), pinned to core 0; the client pinned to core 1. The handshakes
# are a few per run (keep-alive), so the ratio is TLS's per-request cost (encryption, a
# record per request and per response) on both ends. A measurement, not a test: it prints
# the figures and exits 0. Needs: taskset, python3, curl.
# Usage: [BIN=dir] [VUS=64] bench/tls.sh [RUNS=3] [SECS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SECS=${2:-10}
VUS=${VUS:-64}
PLAIN_PORT=${PLAIN_PORT:-18180}
TLS_PORT=${TLS_PORT:-18443}
PATH_Q="/api/bench"

if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p loadgen
  cargo build --release -q -p ricochet-engine --example tls_bench_server
  BIN=target/release
fi
SERVER_BIN=${SERVER_BIN:-target/release/examples/tls_bench_server}
WORK=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT

taskset -c 0 "$SERVER_BIN" "$PLAIN_PORT" "$TLS_PORT" "$WORK/ca.pem" >/dev/null 2>&1 &
SERVER=$!
for _ in $(seq 50); do
  curl -fs --cacert "$WORK/ca.pem" "https://127.0.0.1:$TLS_PORT/" >/dev/null 2>&1 && break
  sleep 0.1
done

scenario() { # NAME URL EXTRA
  cat >"$WORK/$1.yaml" <<YAML
apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: bench-$1}
spec:
  target: {url: "$2", maxConnections: $VUS$3}
  scenarios:
    - name: max
      executor: constant-vus
      vus: $VUS
      duration: ${SECS}s
      gracefulStop: 2s
      requests: [{name: x, method: GET, path: "$PATH_Q"}]
YAML
}
scenario plain "http://127.0.0.1:$PLAIN_PORT" ""
scenario tls "https://127.0.0.1:$TLS_PORT" ", caFile: $WORK/ca.pem"

py() { python3 -c "$@"; }
rps() { # NAME: runs loadgen, prints requests/s
  rm -rf "$WORK/out"
  taskset -c 1 "$BIN/loadgen" run "$WORK/$1.yaml" --quiet --out "$WORK/out" >/dev/null 2>&1 || true
  py "import json;s=json.load(open('$WORK/out/summary.json'));m=s['metrics'];n=m['http_reqs']['count'];f=m['http_req_failed']['passes'];print(round(n/$SECS), f)"
}
PLAINS=(); TLSS=(); WRKS=()
for i in $(seq "$RUNS"); do
  read -r P PF < <(rps plain)
  read -r T TF < <(rps tls)
  PLAINS+=("$P"); TLSS+=("$T")
  LINE="run $i: loadgen plain $P req/s ($PF failed) | loadgen https $T req/s ($TF failed) | https/plain $(py "print(round($T/$P,3))")"
  if command -v wrk >/dev/null; then
    W=$(taskset -c 1 wrk -t1 -c"$VUS" -d"${SECS}s" "https://127.0.0.1:$TLS_PORT$PATH_Q" | awk '/Requests\/sec/ {print $2}')
    WRKS+=("$W")
    LINE="$LINE | wrk https $W req/s | loadgen/wrk https $(py "print(round($T/$W,3))")"
  fi
  echo "$LINE"
done
med() { py "import statistics;print(statistics.median([$(IFS=,; echo "$*")]))"; }
echo "median loadgen plain: $(med "${PLAINS[@]}") req/s; https: $(med "${TLSS[@]}") req/s; https/plain: $(py "print(round($(med "${TLSS[@]}")/$(med "${PLAINS[@]}"),3))")"
if [ "${#WRKS[@]}" -gt 0 ]; then
  echo "median wrk https: $(med "${WRKS[@]}") req/s; loadgen/wrk over https: $(py "print(round($(med "${TLSS[@]}")/$(med "${WRKS[@]}"),3))")"
fi
