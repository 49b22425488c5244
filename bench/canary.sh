#!/usr/bin/env bash
# Canary memory over time (issue #17): `loadgen canary` on scenarios/canary.yaml (its rate
# raised to RATE req/s, every request's trace, log line and exemplar verified against the
# embedded echo-server and OTLP sink) for DURATION (default 10m), in rounds of ROUND
# (default 2m, so totals are folded across several rounds), /metrics scraped every
# INTERVAL seconds as Prometheus would. The release loadgen's VmRSS (/proc/PID/status) is
# recorded at every scrape into canary.csv.
#
# Prints the requests and round-trip totals from the last scrape, RSS at the start of the
# steady window (WARMUP seconds, default 120: the sink's and verifiers' id tables fill
# within their retention, about a minute) and at the end, their ratio, the least-squares
# RSS slope over the steady window in MiB/min, and the peak RSS of each whole round with
# the slope of those peaks. Each round fills the embedded sink's and the verifiers' tables
# and frees them when it ends, so the RSS is a sawtooth whose phase biases the first
# slope; the peaks across rounds are what would grow with a leak. Exits 1 when the peak
# slope (or, with fewer than three whole rounds after the warm-up, the steady window's
# slope) exceeds RSS_TOL (default 0.5 MiB/min), a scrape failed, or nothing was found.
#
# Usage: [BIN=dir] [OUT=dir] [RATE=200] [ROUND=2m] [INTERVAL=10] [WARMUP=120] [RSS_TOL=0.5]
#        bench/canary.sh [DURATION=10m]          e.g. bench/canary.sh 3m
# BIN: directory with a release `loadgen` (default: cargo build --release -p loadgen).
# REANALYZE=1 OUT=<an earlier run's dir> prints the figures of that run again.
# OUT: where canary.csv, the last scrape and loadgen.log go (default
# bench/out/canary-<UTC time>). Needs python3 and curl.
{
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-${DURATION:-10m}}
RATE=${RATE:-200}
ROUND=${ROUND:-2m}
INTERVAL=${INTERVAL:-10}
WARMUP=${WARMUP:-120}
RSS_TOL=${RSS_TOL:-0.5}
OUT=${OUT:-bench/out/canary-$(date -u +%Y%m%dT%H%M%SZ)}
if [ "${REANALYZE:-0}" = 1 ]; then
  read -r FAILED RC < "$OUT/status"
else
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p loadgen
  BIN=target/release
fi
SECS=$(python3 -c '
import re, sys
d = sys.argv[1]
parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", d)
if not parts or "".join(n + u for n, u in parts) != d:
    sys.exit(f"DURATION `{d}`: expected e.g. 30s, 10m")
print(int(sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)))' "$DURATION")
mkdir -p "$OUT"
sed "s/^      rate: 5$/      rate: $RATE/" scenarios/canary.yaml > "$OUT/canary.yaml"
grep -q "rate: $RATE" "$OUT/canary.yaml" || { echo "could not set the rate in $OUT/canary.yaml" >&2; exit 1; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/loadgen" canary "$OUT/canary.yaml" --metrics-addr "127.0.0.1:$PORT" --duration "$ROUND" \
  >"$OUT/loadgen.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
echo "canary: $RATE req/s, rounds of $ROUND, for $DURATION (pid $PID, /metrics on :$PORT); RSS every ${INTERVAL}s into $OUT/canary.csv; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "secs,rss_kib" > "$OUT/canary.csv"
START=$(date +%s)
FAILED=0
while [ $(( $(date +%s) - START )) -lt "$SECS" ]; do
  sleep "$INTERVAL"
  kill -0 $PID 2>/dev/null || { echo "the canary exited early:" >&2; tail -5 "$OUT/loadgen.log" >&2; exit 1; }
  curl -sf "http://127.0.0.1:$PORT/metrics" > "$OUT/metrics.txt" || FAILED=$((FAILED + 1))
  echo "$(( $(date +%s) - START )),$(awk '/^VmRSS/ {print $2}' /proc/$PID/status)" >> "$OUT/canary.csv"
done
kill -TERM $PID
RC=0
wait $PID || RC=$?
trap - EXIT
echo "$FAILED $RC" > "$OUT/status"
fi
echo "canary exit code after SIGTERM: $RC; failed scrapes: $FAILED"
ROUND_SECS=$(python3 -c '
import re, sys
print(sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", sys.argv[1])))' "$ROUND")
python3 - "$OUT" "$WARMUP" "$RSS_TOL" "$FAILED" "$RC" "$ROUND_SECS" <<'PY'
import re, sys
out, warmup, tol, failed, rc = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
round_secs = float(sys.argv[6])
rows = [tuple(map(float, l.split(","))) for l in open(f"{out}/canary.csv").read().split("\n")[1:] if l]
text = open(f"{out}/metrics.txt").read()
def total(name, where=""):
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
               if l.startswith(name + "{") and where in l)
def rounds(o):
    return total("ricochet_canary_rounds_total", 'outcome="' + o + '"')
print(f"requests {total('ricochet_http_reqs_total'):.0f}; rounds "
      + ", ".join(f"{o} {rounds(o):.0f}" for o in ("passed", "failed", "error")))
for s in ("trace", "log", "metric"):
    w = f'signal="{s}"'
    print(f"  {s}: found {total('ricochet_telemetry_found_total', w):.0f}, missing {total('ricochet_telemetry_missing_total', w):.0f}, unknown {total('ricochet_telemetry_unknown_total', w):.0f}")
steady = [(t, kib / 1024) for t, kib in rows if t >= warmup]
if len(steady) < 3:
    sys.exit(f"only {len(steady)} samples after the {warmup:.0f}s warm-up: run longer")
def slope_per_min(points):
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mr = sum(r for _, r in points) / n
    return sum((t - mt) * (r - mr) for t, r in points) / sum((t - mt) ** 2 for t, _ in points) * 60
slope = slope_per_min(steady)
first, last = steady[0][1], steady[-1][1]
print(f"RSS: {rows[0][1] / 1024:.1f} MiB at {rows[0][0]:.0f}s, {first:.1f} MiB at {steady[0][0]:.0f}s (warm), "
      f"{last:.1f} MiB at {steady[-1][0]:.0f}s; end/warm ratio {last / first:.3f}; "
      f"max {max(r for _, r in steady):.1f} MiB")
print(f"RSS slope over the steady window: {slope:+.3f} MiB/min (tolerance ±{tol})")
# Each round grows the sink's and verifiers' tables, and frees them when it ends: the
# RSS is a sawtooth, so the peaks of whole rounds tell growth across rounds better.
peaks = {}
for t, kib in rows:
    k = int(t // round_secs)
    peaks[k] = max(peaks.get(k, 0.0), kib / 1024)
whole = [(k * round_secs, v) for k, v in sorted(peaks.items())
         if k * round_secs >= warmup and (k + 1) * round_secs <= rows[-1][0]]
if len(whole) >= 3:
    gated, what = slope_per_min(whole), "RSS peak slope across rounds"
    print("peak RSS per whole round after the warm-up: " + ", ".join(f"{v:.1f}" for _, v in whole)
          + f" MiB; slope {gated:+.3f} MiB/min (tolerance ±{tol}, gated)")
else:
    # Fewer than three whole rounds in the steady window: no sawtooth to see through.
    gated, what = slope, "RSS slope over the steady window"
    print(f"fewer than 3 whole rounds after the warm-up: the steady window's slope is gated")
bad = []
if abs(gated) > tol: bad.append(f"{what} beyond tolerance")
if failed: bad.append(f"{failed} scrapes failed")
if rc != 0: bad.append(f"exit code {rc} after SIGTERM")
if total("ricochet_telemetry_found_total") == 0: bad.append("nothing found")
if bad:
    sys.exit("FAIL: " + "; ".join(bad))
print("OK")
PY
}
