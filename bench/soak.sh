#!/usr/bin/env bash
# Soak (issue #15 item 6): bench/soak.yaml — 5 000 req/s constant arrival rate against the
# embedded echo-server, 100 sampled requests/s verified end to end — for DURATION (default
# 10m), with the release loadgen. Every INTERVAL seconds the script records the loadgen
# process's VmRSS (/proc/PID/status), open file descriptors (/proc/PID/fd) and threads into
# soak.csv. The embedded echo-server and OTLP sink run inside that process, so the RSS and
# fds cover generator, target, sink and verifiers together.
#
# At the end it prints requests (planned, completed, achieved rate, dropped and
# interrupted iterations, errors), the telemetry round trip from summary.json, and RSS, fd
# and thread start/end/min/max with the least-squares slope (per minute) over the steady
# window: from WARMUP seconds after start to the end of the load (not the settle wait and
# report writing after it). WARMUP defaults to 240 s: the embedded OTLP sink and the
# exemplar verifier remember the trace ids they have seen for the settle timeout plus a
# margin (95 s with bench/soak.yaml), so their tables reach their size in the first two
# minutes at 5 000 req/s; the slope from 60 s is printed too, for comparison. (Before
# 65b886d they kept up to 1 000 000 ids each and kept growing in steps; see
# bench/README.md, "Soak".)
#
# Exits 1 when a request failed, a sample did not settle found (missing, unknown,
# incomplete trace, or dropped before verification), the sampler fell behind its rate,
# the exporter refused or dropped anything, a loadgen threshold failed, |RSS slope| >
# RSS_TOL MiB/min, fd slope > FD_TOL fds/min (a falling count is the pool shrinking, not
# a leak), or the fds exceeded FD_MAX. The fd count
# is 2 × open connections (client and server end, both in this process) + ~22, and the
# pool's size follows the bursts up to its 256 connections, so the count swings between
# ~200 and ~534 and its slope over 6 minutes is noise of about ±7/min (1 sigma): hence
# FD_TOL 20/min and the bound FD_MAX 576, which any per-request, per-scrape or
# per-export leak crosses within a minute. Dropped iterations (the machine could not
# keep 5 000/s) are reported, not gated. A run shorter than 2 × WARMUP gets a WARMUP of
# a quarter of it and its slopes are printed but not gated (no steady window).
#
# Usage: [BIN=dir] [OUT=dir] [INTERVAL=5] [WARMUP=240] [RSS_TOL=0.5] [FD_TOL=20] [FD_MAX=576]
#        bench/soak.sh [DURATION=10m]          e.g. bench/soak.sh 30s
# BIN: directory with a release `loadgen` (default: cargo build --release -p loadgen and
# target/release). OUT: where soak.csv, soak.txt, loadgen.log and the run's reports go
# (default bench/out/soak-<UTC time>, ignored by git). REANALYZE=1 OUT=<that dir>
# recomputes the figures of an earlier run (same DURATION; e.g. another WARMUP) without
# running it again. Needs python3.
# The whole script is one brace group, so bash parses it before running any of it: an edit
# of this file during a 10-minute run cannot change what the run executes.
{
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-${DURATION:-10m}}
INTERVAL=${INTERVAL:-5}
WARMUP=${WARMUP:-240}
RSS_TOL=${RSS_TOL:-0.5}
FD_TOL=${FD_TOL:-20}
FD_MAX=${FD_MAX:-576}
SCENARIO=bench/soak.yaml
OUT=${OUT:-bench/out/soak-$(date -u +%Y%m%dT%H%M%SZ)}
REANALYZE=${REANALYZE:-0}
if [ -z "${BIN:-}" ] && [ "$REANALYZE" != 1 ]; then
  cargo build --release -q -p loadgen
  BIN=target/release
fi
SECS=$(python3 - "$DURATION" <<'PY'
import re, sys
d = sys.argv[1]
parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", d)
if not parts or "".join(n + u for n, u in parts) != d:
    sys.exit(f"DURATION `{d}`: expected e.g. 30s, 10m, 1m30s")
print(sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts))
PY
)
GATE_SLOPES=1
if python3 -c "import sys; sys.exit(0 if 2 * $WARMUP > $SECS else 1)"; then
  WARMUP=$(python3 -c "print($SECS / 4)")
  GATE_SLOPES=0
fi
if [ "$REANALYZE" = 1 ]; then # figures again from an earlier run's OUT (e.g. another WARMUP)
  RC=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['run']['exitCode'])" "$OUT/run/summary.json")
  echo "re-analysis of $OUT (DURATION must be that run's): steady window from ${WARMUP}s"
else
  mkdir -p "$OUT"
  "$BIN/loadgen" validate "$SCENARIO" >/dev/null

  {
    echo "soak: $SCENARIO for $DURATION (steady window from ${WARMUP}s$([ $GATE_SLOPES = 1 ] || echo ', run too short: slopes not gated')), sampling every ${INTERVAL}s into $OUT/soak.csv"
    echo "binary: $BIN/loadgen ($(stat -c '%y' "$BIN/loadgen" | cut -d. -f1)), HEAD $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null || echo ' + uncommitted changes')"
    echo "start: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  } | tee "$OUT/soak.txt"

  START=${EPOCHREALTIME/./}
  "$BIN/loadgen" run "$SCENARIO" --duration "$DURATION" --out "$OUT/run" >"$OUT/loadgen.log" 2>&1 &
  PID=$!
  SAMPLER=
  # Only our own children, and only while they have not been waited for (no reused PIDs).
  trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null; true' EXIT
  (
    echo "t_s,rss_kib,fds,threads"
    while [ -d "/proc/$PID" ]; do
      rss= threads=
      while read -r key value _; do
        case $key in VmRSS:) rss=$value ;; Threads:) threads=$value ;; esac
      done 2>/dev/null <"/proc/$PID/status" || break
      fds=$(ls "/proc/$PID/fd" 2>/dev/null | wc -l)
      [ -n "$rss" ] || break # exited (a zombie has no VmRSS)
      t=$(( ${EPOCHREALTIME/./} - START ))
      printf '%d.%d,%s,%s,%s\n' $((t / 1000000)) $((t / 100000 % 10)) "$rss" "$fds" "$threads"
      sleep "$INTERVAL"
    done
  ) >"$OUT/soak.csv" &
  SAMPLER=$!
  RC=0
  wait "$PID" || RC=$?
  PID=
  wait "$SAMPLER" 2>/dev/null || true
  SAMPLER=
  echo "end: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg), loadgen exit code $RC" | tee -a "$OUT/soak.txt"
fi

python3 - "$OUT" "$SECS" "$WARMUP" "$RSS_TOL" "$FD_TOL" "$FD_MAX" "$GATE_SLOPES" "$RC" <<'PY' | tee -a "$OUT/soak.txt"
import csv, json, re, sys
out, secs, warmup, rss_tol, fd_tol, fd_max, gate, rc = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "1", int(sys.argv[8])
fail = []
if rc != 0:
    fail.append(f"loadgen exited {rc} (see {out}/loadgen.log)")

rows = [(float(r["t_s"]), int(r["rss_kib"]) / 1024, int(r["fds"]), int(r["threads"])) for r in csv.DictReader(open(f"{out}/soak.csv"))]
steady = [r for r in rows if warmup <= r[0] <= secs]

def slope(points):  # least squares, per minute
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return 60 * sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else float("nan")

print(f"process samples: {len(rows)} over {rows[-1][0] if rows else 0:.0f}s; steady window {warmup:.0f}s..{secs:.0f}s: {len(steady)} samples")
if len(steady) < 3:
    fail.append("fewer than 3 samples in the steady window: no slope")
else:
    early = [r for r in rows if 60 <= r[0] <= secs]
    for i, name, unit, tol in ((1, "RSS", "MiB", rss_tol), (2, "open fds", "", fd_tol), (3, "threads", "", None)):
        s = slope([(r[0], r[i]) for r in steady])
        vals = [r[i] for r in rows]
        svals = [r[i] for r in steady]
        fmt = (lambda v: f"{v:.1f}") if i == 1 else (lambda v: f"{v:.0f}")
        per = f"{unit}/min" if unit else "per min"
        line = (f"{name:8} steady {fmt(steady[0][i])} -> {fmt(steady[-1][i])}{(' ' + unit) if unit else ''} (min {fmt(min(svals))} max {fmt(max(svals))}), slope {s:+.3f} {per}"
                + ((f" (gate slope <= {tol})" if i == 2 else f" (gate |slope| <= {tol})") if tol is not None and gate else "")
                + f"; whole run: max {fmt(max(vals))}, last {fmt(vals[-1])}")
        if warmup > 60 and len(early) >= 3:
            line += f"; slope from 60s {slope([(r[0], r[i]) for r in early]):+.3f}"
        print(line)
        # fds: only growth is a leak; a falling count is the pool shrinking after bursts.
        if tol is not None and gate and (s > tol if i == 2 else not abs(s) <= tol):
            fail.append(f"{name} slope {s:+.3f} per min beyond {tol}")
    if max(r[2] for r in rows) > fd_max:
        fail.append(f"open fds reached {max(r[2] for r in rows)}, above {fd_max}")

try:
    s = json.load(open(f"{out}/run/summary.json"))
except (OSError, ValueError) as e:
    fail.append(f"no summary.json: {e}")
    s = None
if s:
    m = s["metrics"]
    reqs = m["http_reqs"]["count"]
    rate = float(s["run"].get("targetRps") or 0)
    planned = rate * secs
    errors = m["http_req_failed"]["passes"]
    lag = (m.get("http_req_schedule_lag") or {}).get("trend") or {}
    dur = s["run"]["durationSecs"]
    print(f"requests: {reqs} of {planned:.0f} planned ({reqs / planned:.6f}), achieved {reqs / dur:.1f} req/s over {dur:.3f}s (target {rate:.0f}); "
          f"dropped_iterations {s['droppedIterations']}, interrupted_iterations {m['interrupted_iterations']['count']}, errors {errors} (http_req_failed)")
    if lag:
        print(f"schedule lag p50 {lag.get('med', float('nan')):.3f} ms, p99 {lag.get('p99', float('nan')):.3f} ms, max {lag.get('max', float('nan')):.3f} ms")
    if errors:
        fail.append(f"{errors} failed requests")
    t = s.get("telemetry") or {}
    dropped = t.get("samplesDropped", 0)
    print(f"telemetry: sampling {t.get('sampling')}, settle timeout {t.get('settleTimeoutSecs')}s, samples dropped before verification {dropped}")
    if dropped:
        fail.append(f"{dropped} samples dropped before verification")
    per_s = re.fullmatch(r"(\d+(?:\.\d+)?)/s", t.get("sampling") or "")
    for sig in t.get("signals", []):
        il = sig.get("ingestLatency") or {}
        print(f"  {sig['signal']:8} sampled {sig['sampled']:7} found {sig['found']:7} missing {sig['missing']} unknown {sig['unknown']} "
              f"incomplete {sig.get('incomplete', 0)} superseded {sig.get('superseded', 0)}; ingest p50 {il.get('med', float('nan')):.1f} ms p99 {il.get('p99', float('nan')):.1f} ms")
        for k in ("missing", "unknown", "incomplete"):
            if sig.get(k, 0):
                fail.append(f"{sig['signal']}: {sig[k]} {k}")
        for reason, n in (sig.get("unknownReasons") or {}).items():
            print(f"    unknown: {n} x {reason}")
        if sig["found"] == 0:
            fail.append(f"{sig['signal']}: nothing found")
        if per_s and sig["sampled"] < 0.95 * float(per_s.group(1)) * min(dur, secs):
            fail.append(f"{sig['signal']}: {sig['sampled']} sampled, below 95% of {per_s.group(0)} x {min(dur, secs):.0f}s")
    for e in t.get("exporter", []):
        print(f"  exporter {e['signal']}: accepted {e['accepted']} refused {e['refused']} dropped {e['dropped']}")
        if e["refused"] or e["dropped"]:
            fail.append(f"exporter {e['signal']}: refused {e['refused']} dropped {e['dropped']}")
    if t.get("requests"):
        r = t["requests"]
        print(f"  requests sent {r.get('sent')}, counted by the server {r.get('counted')} ({r.get('source')})")
    for th in s.get("thresholds", []):
        if th.get("verdict") != "pass":
            fail.append(f"threshold {th['metric']} {th['expression']}: {th.get('verdict')} ({th.get('reason', th.get('observed'))})")
print("SOAK PASSED" if not fail else "SOAK FAILED: " + "; ".join(fail))
sys.exit(1 if fail else 0)
PY
exit
}
