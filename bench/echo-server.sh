#!/usr/bin/env bash
# echo-server throughput benchmark (not a test). Release build; server pinned to core 0,
# wrk (and the OTLP sink) pinned to core 1. Three runs against the same path:
#   1. full instrumentation: spans + OTLP logs exported over gRPC to a local sink
#      (examples/otlp-sink.rs), the JSON request log written to stdout -> /dev/null;
#      the sink reads and acknowledges every export without decoding it (SINK_MODE=decode:
#      decodes every span and log record with tonic, as a collector would; that costs
#      the client core ~6 µs per request, which a real deployment spends elsewhere);
#   2. the same binary with --telemetry off;
#   3. nginx `return 200` (one worker, access log off) on the same core.
# Prints requests/s and the ratios 1/2 (target >= 0.75) and 1/3 (target >= 0.50).
# Env: DURATION per run (default 10s), ROUNDS (default 3), CONNS (default 64), SINK_MODE,
# PATH_UNDER_TEST (default /api/bench), SKIP_BUILD=1 to reuse the release binaries in
# $CARGO_TARGET_DIR (default target/).
# Each round runs full and off back to back (odd rounds full first, even rounds off
# first), then nginx.
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
PATH_UNDER_TEST=${PATH_UNDER_TEST:-/api/bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  apt-get update && apt-get install -y wrk nginx
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

[ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build --release -q -p echo-server --bin echo-server && cargo build --release -q -p echo-server --example otlp-sink)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN="$TARGET_DIR/release/echo-server"
SINK="$TARGET_DIR/release/examples/otlp-sink"

cpu_ticks() { # sum of utime+stime (clock ticks) of the given pids and their children
  local t=0 p
  for p in "$@" $(for q in "$@"; do pgrep -P "$q"; done); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat")))
  done
  echo "$t"
}
run_wrk() { # url pid -> "requests/s server-CPU-µs-per-request"
  local url=$1 pid=$2 before after out reqs
  taskset -c 1 wrk -t1 -c"$CONNS" -d3s "$url" >/dev/null   # warm-up
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" "$url")
  after=$(cpu_ticks "$pid")
  echo "$out" >>"$WORK/wrk.log"
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(python3 -c "print(round(($after-$before)/$(getconf CLK_TCK)*1e6/$reqs, 2))")"
}

SINK_PORT=$(free_port)
SINK_ARGS=(); [ "${SINK_MODE:-discard}" = decode ] || SINK_ARGS=(--discard)
taskset -c 1 "$SINK" "127.0.0.1:$SINK_PORT" "${SINK_ARGS[@]}" 2>"$WORK/sink.log" & PIDS+=($!)
wait_port "$SINK_PORT"

NGINX_PORT=$(free_port)
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  server { listen 127.0.0.1:$NGINX_PORT; location / { return 200 "ok\n"; } }
}
NGINX

bench_full() {
  local port; port=$(free_port)
  OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK_PORT" OTEL_EXPORTER_OTLP_PROTOCOL=grpc \
    taskset -c 0 "$BIN" --listen "127.0.0.1:$port" >/dev/null 2>>"$WORK/full.err" & local pid=$!
  wait_port "$port"
  run_wrk "http://127.0.0.1:$port$PATH_UNDER_TEST" "$pid"
  curl -s "http://127.0.0.1:$port/healthz" | python3 -c 'import json,sys; h=json.load(sys.stdin)["exporter"]; print("spans exported=%d failed=%d dropped=%d; logs exported=%d failed=%d dropped=%d" % (h["exported"],h["failed"],h["dropped"],h["logs"]["exported"],h["logs"]["failed"],h["logs"]["dropped"]))' >>"$WORK/health.log"
  kill -TERM "$pid"; wait "$pid" || true
}
bench_off() {
  local port; port=$(free_port)
  taskset -c 0 "$BIN" --listen "127.0.0.1:$port" --telemetry off >/dev/null 2>>"$WORK/off.err" & local pid=$!
  wait_port "$port"
  run_wrk "http://127.0.0.1:$port$PATH_UNDER_TEST" "$pid"
  kill -TERM "$pid"; wait "$pid" || true
}
bench_nginx() {
  taskset -c 0 nginx -c "$WORK/nginx.conf" -g 'daemon off;' & local pid=$!
  wait_port "$NGINX_PORT"
  run_wrk "http://127.0.0.1:$NGINX_PORT$PATH_UNDER_TEST" "$pid"
  kill -QUIT "$pid"; wait "$pid" || true
}

FULL=(); OFF=(); NGX=()
for round in $(seq "$ROUNDS"); do
  # Alternate which of full and off goes first, so that a drift of the machine's speed
  # within a round does not favour either.
  if [ $((round % 2)) = 1 ]; then
    FULL+=("$(bench_full)"); OFF+=("$(bench_off)")
  else
    OFF+=("$(bench_off)"); FULL+=("$(bench_full)")
  fi
  NGX+=("$(bench_nginx)")
  echo "round $round (req/s, server CPU µs/request): full=${FULL[-1]} off=${OFF[-1]} nginx=${NGX[-1]}"
done

echo "path=$PATH_UNDER_TEST duration=$DURATION connections=$CONNS rounds=$ROUNDS sink=${SINK_MODE:-discard}"
echo "exporter after each full run: $(paste -sd'|' "$WORK/health.log")"
python3 - "$(printf '%s;' "${FULL[@]}")" "$(printf '%s;' "${OFF[@]}")" "$(printf '%s;' "${NGX[@]}")" <<'PY'
import statistics, sys
def parse(a):
    rows = [r.split() for r in a.split(";") if r.strip()]
    return [float(r[0]) for r in rows], [float(r[1]) for r in rows]
(full, full_cpu), (off, off_cpu), (ngx, ngx_cpu) = (parse(a) for a in sys.argv[1:])
med = statistics.median
# Throughput ratios per round (the three runs of a round are back to back and share the
# machine's background load), then the median over rounds.
r_off = med(f / o for f, o in zip(full, off))
r_ngx = med(f / n for f, n in zip(full, ngx))
print(f"median req/s: full={med(full):.2f} off={med(off):.2f} nginx={med(ngx):.2f}")
print(f"full / off   = {r_off:.4f} req/s ratio (target >= 0.75: {'met' if r_off >= 0.75 else 'MISSED'})")
print(f"full / nginx = {r_ngx:.4f} req/s ratio (target >= 0.50: {'met' if r_ngx >= 0.50 else 'MISSED'})")
# Server CPU per request: independent of how much of core 0 other processes took.
print(f"median server CPU µs/request: full={med(full_cpu):.2f} off={med(off_cpu):.2f} nginx={med(ngx_cpu):.2f}")
print(f"CPU-efficiency ratios: off/full = {med(off_cpu)/med(full_cpu):.4f}, nginx/full = {med(ngx_cpu)/med(full_cpu):.4f}")
PY
