#!/usr/bin/env bash
# echo-server under a crowd of connections (not a test; issue #15 item 6). Release build on
# 127.0.0.1. A normal client makes REQUESTS sequential GETs /api/bench on one keep-alive
# connection, first alone (baseline), then while IDLE keep-alive connections (each made one
# request, then sits idle) and SLOW slowloris connections (a request line, then one header
# line a second, never finishing the head) are held open. Client: echo-server's
# examples/conn-crowd.rs. Prints p50/p99 both times and their ratio, and the server's RSS
# and open descriptors.
# The server runs with its header and idle timeouts raised to 10m so the crowd is held for
# the whole measurement (with the defaults, 10s / 60s, the server sheds it; that is the
# point of those timeouts, tested in echo-server/tests/limits.rs), telemetry on (spans made,
# nothing exported), the request log to /dev/null.
# Env: IDLE (default 10000), SLOW (default 500), REQUESTS (default 2000),
# SKIP_BUILD=1 to reuse the release binaries in $CARGO_TARGET_DIR (default target/).
set -euo pipefail

IDLE=${IDLE:-10000}
SLOW=${SLOW:-500}
REQUESTS=${REQUESTS:-2000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# Both sides hold IDLE + SLOW sockets.
need=$((IDLE + SLOW + 256))
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  echo "ulimit -n is $(ulimit -n) (hard limit); $need descriptors are needed" >&2
  exit 1
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

[ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build --release -q -p echo-server --bin echo-server --example conn-crowd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

PORT=$(free_port)
"$TARGET_DIR/release/echo-server" --listen "127.0.0.1:$PORT" \
  --header-read-timeout 10m --idle-timeout 10m --max-connections 20000 \
  >/dev/null 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
wait_port "$PORT"

echo "echo-server on 127.0.0.1:$PORT (pid $SERVER); ulimit -n $(ulimit -n); $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$TARGET_DIR/release/examples/conn-crowd" "127.0.0.1:$PORT" "$SERVER" "$IDLE" "$SLOW" "$REQUESTS"
