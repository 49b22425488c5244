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
#
# Since 54c9353: the embedded sink spends no query budget, so `rate: 1` is not refused by
# the plan-time budget check and every sample is a latency probe, which first waits for
# its export's acknowledgement in the echo-server's run ledger (asked every 20 ms over
# loopback) before its fine look-ups; exemplars are verified on metric probes only (64
# slots, each reused after 1 s against the echo-server's /metrics: about 64/s whatever the
# sampling). The script also prints the ledger's legs (export wait, backend part), the
# probe counts and the exporter's counts for the run.
#
# PACING (default `sleep`, passed as RICOCHET_PACING): since 6d41979 loadgen's default
# (`auto`) spins the dispatcher in the last 2 ms before each arrival; at 5 000/s arrivals
# are 0.2 ms apart, so it keeps one of the two cores busy whatever else the process does,
# and "CPU full / idle" would compare spinning with spinning. `sleep` makes the CPU figures
# the work itself; `PACING=auto` measures what a user gets by default.
# Usage: [BIN=dir] [RATE=5000] [SECS=20] [PACING=sleep|spin|auto] bench/telemetry.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-5000}
SECS=${SECS:-20}
export RICOCHET_PACING=${PACING:-sleep}
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
  local rc=0
  /usr/bin/time -f '%U %S' -o "$WORK/$1.time" "$BIN/loadgen" run "$WORK/$1.yaml" --out "$WORK/$1" --quiet >/dev/null 2>"$WORK/$1.err" || rc=$?
  if [ ! -f "$WORK/$1/summary.json" ]; then
    # No run (e.g. exit 2: the scenario was refused): say why instead of a Python trace.
    echo "[$1] loadgen run exited $rc without a summary: $(tail -3 "$WORK/$1.err")" >&2
    exit 1
  fi
  echo "[$1] loadgen run exit code $rc" >&2
  # /usr/bin/time writes "Command exited with non-zero status N" first when rc != 0.
  tail -1 "$WORK/$1.time" | awk '{print $1 + $2}'
}

echo "uptime: $(uptime); pacing: $RICOCHET_PACING"
CPU_IDLE=$(run idle)
CPU_FULL=$(run full)
python3 - "$WORK" "$RATE" "$SECS" "$CPU_IDLE" "$CPU_FULL" <<'PY'
import json, sys
work, rate, secs, cpu_idle, cpu_full = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
def load(name):
    return json.load(open(f"{work}/{name}/summary.json"))
def ms(trend, key):
    return (trend or {}).get(key, float("nan"))
for name, cpu in (("idle", cpu_idle), ("full", cpu_full)):
    s = load(name)
    reqs = s["metrics"]["http_reqs"]["count"]
    lag = s["metrics"].get("http_req_schedule_lag", {}).get("trend") or {}
    print(f"[{name}] requests {reqs} of {int(rate*secs)} planned ({reqs/(rate*secs):.4f}), "
          f"dropped_iterations {s['droppedIterations']}, load ran {s['run']['durationSecs']:.2f}s, "
          f"outcome {s['run'].get('outcome')}, pacing {s['run'].get('pacing')}, CPU {cpu:.2f}s, schedule lag p99 {lag.get('p99', float('nan')):.3f} ms")
    t = s.get("telemetry") or {}
    print(f"[{name}] sampling {t.get('sampling')}, samples dropped (queue full): {t.get('samplesDropped', 0)}, "
          f"metric probes sent: {t.get('metricProbes')}")
    for e in t.get("exporter", []):
        print(f"[{name}]   exporter {e['signal']:5} emitted {e.get('emitted', 0)} accepted {e['accepted']} "
              f"refused {e['refused']} dropped {e['dropped']} injected {e.get('injected', 0)}")
    for sig in t.get("signals", []):
        il = sig.get("ingestLatency")
        print(f"[{name}]   {sig['signal']:8} sampled {sig['sampled']:7} found {sig['found']:7} missing {sig['missing']:5} "
              f"unknown {sig['unknown']:5} superseded {sig.get('superseded', 0):6} "
              f"ingest p50 {ms(il, 'med'):.1f} ms p99 {ms(il, 'p99'):.1f} ms")
        print(f"[{name}]   {'':8} latency probes {sig.get('latencyProbes', 0)} (acknowledged {sig.get('acknowledgedProbes', 0)}, "
              f"first asked late {sig.get('firstAskedLate', 0)}), presence only {sig.get('presenceOnly', 0)}; "
              f"export wait p50/p99 {ms(sig.get('exportWait'), 'med'):.1f}/{ms(sig.get('exportWait'), 'p99'):.1f} ms, "
              f"backend p50/p99 {ms(sig.get('backendLatency'), 'med'):.1f}/{ms(sig.get('backendLatency'), 'p99'):.1f} ms")
        if sig.get("unknownReasons"):
            print(f"[{name}]   {'':8} unknown reasons: {sig['unknownReasons']}")
full = load("full")
traces = next(x for x in full["telemetry"]["signals"] if x["signal"] == "traces")
reqs = full["metrics"]["http_reqs"]["count"]
print(f"sampled traces per second of load: {traces['sampled']/secs:.1f} (target >= 5000)")
print(f"verified (found+missing) traces per second of load: {(traces['found']+traces['missing'])/secs:.1f}")
print(f"load rate achieved / target with full verification: {reqs/(rate*secs):.4f} (target >= 1.0 minus dropped)")
print(f"CPU full / idle: {cpu_full/cpu_idle:.3f}")
PY
