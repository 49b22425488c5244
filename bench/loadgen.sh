#!/usr/bin/env bash
# loadgen vs wrk on one client core, and loadgen's open-model accuracy at 20 000 req/s.
#
# Target: echo-server (release, --telemetry off, stdout to /dev/null) pinned to core 0;
# client pinned to core 1. Prints every figure and the ratios; exits 0 even when a
# target is missed (it is a measurement, not a test). Needs: wrk, taskset, python3,
# /usr/bin/time. Usage: [BIN=dir] [FIXED_RATE=20000] [FIXED_SECS=30] [FIXED_RUNS=3] bench/loadgen.sh [RUNS=3] [SECS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SECS=${2:-10}
FIXED_RATE=${FIXED_RATE:-20000}
FIXED_SECS=${FIXED_SECS:-30}
PORT=${PORT:-18080}
URL="http://127.0.0.1:$PORT"
PATH_Q="/api/bench"

command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
# BIN=dir with prebuilt loadgen and echo-server skips the build.
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p loadgen -p echo-server
  BIN=target/release
fi
WORK=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT

# TARGET=echo (default): echo-server; TARGET=nginx: nginx returning a static 200, so that
# the client core, not the target core, is the bottleneck.
TARGET=${TARGET:-echo}
if [ "$TARGET" = nginx ]; then
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx/pid;
error_log /dev/null crit;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server { listen 127.0.0.1:$PORT; location / { return 200 "ok"; } }
}
NGINX
  taskset -c 0 nginx -c "$WORK/nginx.conf" >/dev/null 2>&1 &
else
  taskset -c 0 "$BIN/echo-server" --listen "127.0.0.1:$PORT" --telemetry off >/dev/null 2>&1 &
fi
SERVER=$!
for _ in $(seq 50); do curl -fs "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$WORK/vus.yaml" <<YAML
apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: bench-vus}
spec:
  target: {url: "$URL", maxConnections: 64}
  scenarios:
    - name: max
      executor: constant-vus
      vus: 64
      duration: ${SECS}s
      gracefulStop: 2s
      requests: [{name: x, method: GET, path: "$PATH_Q"}]
YAML
cat >"$WORK/fixed.yaml" <<YAML
apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: bench-fixed}
spec:
  target: {url: "$URL", maxConnections: 256}
  scenarios:
    - name: fixed
      executor: constant-arrival-rate
      rate: $FIXED_RATE
      duration: ${FIXED_SECS}s
      gracefulStop: 5s
      requests: [{name: x, method: GET, path: "$PATH_Q"}]
YAML

# timed OUT CMD...: runs CMD with stdout to OUT, prints its cpu seconds (user+sys)
timed() { local out=$1; shift; /usr/bin/time -f "%U %S" -o "$WORK/time" "$@" >"$out" || true; awk 'END {print $1+$2}' "$WORK/time"; }

py() { python3 -c "$@"; }
RATIOS=(); CPURATIOS=()
for i in $(seq "$RUNS"); do
  WCPU=$(timed "$WORK/wrk.txt" taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "$URL$PATH_Q")
  WREQ=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
  WRPS=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
  rm -rf "$WORK/out"
  LCPU=$(timed /dev/null taskset -c 1 "$BIN/loadgen" run "$WORK/vus.yaml" --quiet --out "$WORK/out")
  read -r LREQ LRPS < <(py "import json;s=json.load(open('$WORK/out/summary.json'));n=s['metrics']['http_reqs']['count'];print(n, n/$SECS)")
  R=$(py "print(round($LRPS/$WRPS,3))")
  C=$(py "print(round(($LCPU/$LREQ)/($WCPU/$WREQ),3))")
  RATIOS+=("$R"); CPURATIOS+=("$C")
  echo "run $i: wrk ${WRPS} req/s (${WREQ} reqs, ${WCPU}s cpu) | loadgen $(printf %.0f "$LRPS") req/s (${LREQ} reqs, ${LCPU}s cpu) | rate ratio $R | cpu/req ratio $C"
done
MED=$(py "import statistics;print(statistics.median([$(IFS=,; echo "${RATIOS[*]}")]))")
CMED=$(py "import statistics;print(statistics.median([$(IFS=,; echo "${CPURATIOS[*]}")]))")
echo "median rate ratio loadgen/wrk: $MED (target >= 0.9)"
echo "median cpu-per-request ratio loadgen/wrk: $CMED (target <= 1.15)"

# Fixed rate, FIXED_RUNS times: achieved vs planned, scheduling lag (how late loadgen started
# each iteration), the wait for a pooled connection beside it (http_req_blocked: when the
# target core stalls, all 256 connections can be busy), RSS at 10 s and at the end, and the
# time the hypervisor took the client core away during the run (steal of cpu1 in
# /proc/stat): the lag cannot be shorter than the core's own stalls.
steal1() { awk '$1 == "cpu1" {print $9}' /proc/stat; }
# The floor, measured just before each run on the same core: a process that only reads the
# clock in a loop sees every stall of the core (hypervisor, interrupts, other processes);
# an arrival due during a stall cannot leave before it ends, whatever the dispatcher.
# Prints the p99 lag a zero-cost dispatcher would have had at FIXED_RATE.
floor_p99() {
  taskset -c 1 python3 - "$FIXED_SECS" "$FIXED_RATE" <<'PY'
import sys, time
secs, rate = float(sys.argv[1]), float(sys.argv[2])
now = time.perf_counter_ns
start = prev = now(); end = start + int(secs * 1e9); gaps = []
while prev < end:
    t = now()
    if t - prev > 20_000:
        gaps.append((prev, t))
    prev = t
step = 1e9 / rate; n = int(secs * rate)
lags = []  # arrivals inside a stall wait for its end; all others leave on time
for a, b in gaps:
    k = int((a - start) // step) + 1
    while k < n and start + k * step < b:
        lags.append((b - (start + k * step)) / 1e6); k += 1
lags.sort(reverse=True)
i = n // 100
print(round(lags[i] if i < len(lags) else 0.0, 3))
PY
}
LAGS=(); FLOORS=()
for i in $(seq "${FIXED_RUNS:-3}"); do
  FLOOR=$(floor_p99); FLOORS+=("$FLOOR")
  rm -rf "$WORK/out"
  S0=$(steal1)
  taskset -c 1 "$BIN/loadgen" run "$WORK/fixed.yaml" --quiet --out "$WORK/out" &
  LG=$!
  sleep 10; RSS10=$(awk '/VmRSS/ {print $2}' /proc/$LG/status)
  sleep $((FIXED_SECS - 11)); RSS30=$(awk '/VmRSS/ {print $2}' /proc/$LG/status)
  wait $LG || true
  STEAL_MS=$(( ($(steal1) - S0) * 1000 / $(getconf CLK_TCK) ))
  LAGS+=("$(py "import json;print(json.load(open('$WORK/out/summary.json'))['metrics']['http_req_schedule_lag']['trend']['p99'])")")
  py "
import json
s=json.load(open('$WORK/out/summary.json'))
m=s['metrics']; planned=$FIXED_RATE*$FIXED_SECS
n=m['http_reqs']['count']; d=s['droppedIterations']
lag=m['http_req_schedule_lag']['trend']; dur=m['http_req_duration']['trend']; blk=m['http_req_blocked']['trend']
print(f'fixed run $i, {$FIXED_RATE}/s x {$FIXED_SECS}s, pacing {s[\"run\"].get(\"pacing\")}: planned {planned}, completed {n} ({100*n/planned:.3f} %), dropped {d}, failed {m[\"http_req_failed\"][\"passes\"]}')
print(f'  achieved rate {n/$FIXED_SECS:.1f} req/s (target within 0.1 %: {abs(n-planned)/planned <= 0.001})')
print(f'  schedule lag p50 {lag[\"med\"]:.3f} ms p99 {lag[\"p99\"]:.3f} ms max {lag[\"max\"]:.3f} ms (target p99 < 1 ms: {lag[\"p99\"] < 1.0}); client core stolen by the hypervisor: $STEAL_MS ms; floor p99 just before: $FLOOR ms')
print(f'  waiting for a connection (http_req_blocked) p99 {blk[\"p99\"]:.3f} ms max {blk[\"max\"]:.3f} ms')
print(f'  http_req_duration p50 {dur[\"med\"]:.3f} ms p99 {dur[\"p99\"]:.3f} ms')
"
  echo "  RSS at 10 s: $((RSS10 / 1024)) MiB, at $((FIXED_SECS - 1)) s: $((RSS30 / 1024)) MiB (target < 100 MiB, not growing)"
done
echo "median schedule lag p99 over ${#LAGS[@]} fixed runs: $(py "import statistics;print(round(statistics.median([$(IFS=,; echo "${LAGS[*]}")]),3))") ms (target < 1 ms); median floor p99 of the core: $(py "import statistics;print(round(statistics.median([$(IFS=,; echo "${FLOORS[*]}")]),3))") ms"
