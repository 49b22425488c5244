#!/usr/bin/env bash
# Telemetry round trip at a high sample rate: can the embedded OTLP sink and the verifiers
# keep up with >= 5 000 sampled traces per second on this 2-core machine without the load
# generator's own rate falling below its target?
#
# One `loadgen run` (release) of an embedded-target scenario at RATE req/s for SECS
# seconds, every request sampled (`sample: {rate: 1}`), so the sampled-trace rate is the
# request rate; the embedded echo-server exports its spans and logs over OTLP/gRPC to the
# embedded sink in the same process. A baseline run of the same load samples 1 request per
# second (verification idle). Prints, for both: achieved vs target rate, dropped
# iterations, samples verified / found / missing / unknown / dropped per signal, trace
# ingest p99, the process's CPU seconds, and the ratios. A measurement, not a test: exits 0
# even when a target is missed.
# Usage: [BIN=dir] [RATE=5000] [SECS=20] bench/telemetry.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-5000}
SECS=${SECS:-20}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p loadgen
  BIN=target/release
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

scenario() { # name sample
  cat >"$WORK/$1.yaml" <<YAML
apiVersion: ricochet.dev/v1alpha1
kind: LoadTest
metadata: {name: bench-telemetry-$1}
spec:
  scenarios:
    - name: api
      executor: constant-arrival-rate
      rate: $RATE
      duration: ${SECS}s
      gracefulStop: 5s
      requests: [{name: orders, path: /api/orders}]
  telemetry:
    sample: $2
    settleTimeout: 20s
YAML
}
scenario full '{rate: 1}'
scenario idle '{perSecond: 1}'

run() { # name -> prints CPU seconds; summary in $WORK/$1/summary.json
  /usr/bin/time -f '%U %S' -o "$WORK/$1.time" "$BIN/loadgen" run "$WORK/$1.yaml" --out "$WORK/$1" --quiet >/dev/null 2>"$WORK/$1.err" || true
  awk '{print $1 + $2}' "$WORK/$1.time"
}

echo "uptime: $(uptime)"
CPU_IDLE=$(run idle)
CPU_FULL=$(run full)
python3 - "$WORK" "$RATE" "$SECS" "$CPU_IDLE" "$CPU_FULL" <<'PY'
import json, sys
work, rate, secs, cpu_idle, cpu_full = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
def load(name):
    return json.load(open(f"{work}/{name}/summary.json"))
for name, cpu in (("idle", cpu_idle), ("full", cpu_full)):
    s = load(name)
    reqs = s["metrics"]["http_reqs"]["count"]
    lag = s["metrics"].get("http_req_schedule_lag", {}).get("trend") or {}
    print(f"[{name}] requests {reqs} of {int(rate*secs)} planned ({reqs/(rate*secs):.4f}), "
          f"dropped_iterations {s['droppedIterations']}, load ran {s['run']['durationSecs']:.2f}s, "
          f"CPU {cpu:.2f}s, schedule lag p99 {lag.get('p99', float('nan')):.3f} ms")
    t = s.get("telemetry") or {}
    print(f"[{name}] samples dropped (queue full): {t.get('samplesDropped', 0)}")
    for sig in t.get("signals", []):
        il = sig.get("ingestLatency") or {}
        print(f"[{name}]   {sig['signal']:8} sampled {sig['sampled']:7} found {sig['found']:7} missing {sig['missing']:5} "
              f"unknown {sig['unknown']:5} superseded {sig.get('superseded', 0):6} ingest p50 {il.get('med', float('nan')):.1f} ms p99 {il.get('p99', float('nan')):.1f} ms")
full = load("full")
traces = next(x for x in full["telemetry"]["signals"] if x["signal"] == "traces")
reqs = full["metrics"]["http_reqs"]["count"]
print(f"sampled traces per second of load: {traces['sampled']/secs:.1f} (target >= 5000)")
print(f"verified (found+missing) traces per second of load: {(traces['found']+traces['missing'])/secs:.1f}")
print(f"load rate achieved / target with full verification: {reqs/(rate*secs):.4f} (target >= 1.0 minus dropped)")
print(f"CPU full / idle: {cpu_full/cpu_idle:.3f}")
PY
