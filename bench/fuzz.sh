#!/usr/bin/env bash
# Fuzzes every parser of user and network input (package ricochet-fuzz, release build):
# INPUTS inputs per target (default 1 000 000), one process per target so that each
# target's peak RSS is its own, JOBS targets at once (default 1; 2 on an idle 2-core box).
# Prints one row per target (inputs, panics, hangs, slowest input, peak RSS, rate), the
# findings if any (written to target/fuzz-findings/<target>/), the machine and wall time.
# Exits 1 if any target panicked or hung. An input slower than HANG_MS (default 1000) is a
# hang. Usage: [SEED=1] [HANG_MS=1000] [BIN=path] bench/fuzz.sh [INPUTS] [JOBS]
set -euo pipefail
cd "$(dirname "$0")/.."
INPUTS=${1:-1000000}
JOBS=${2:-1}
SEED=${SEED:-1}
HANG_MS=${HANG_MS:-1000}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p ricochet-fuzz
  BIN=${CARGO_TARGET_DIR:-target}/release/ricochet-fuzz
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "# bench/fuzz.sh $INPUTS $JOBS (seed $SEED, hang bound ${HANG_MS} ms)"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(rustc --version)"
START=$(date +%s)
"$BIN" --list | awk '{print $1}' >"$WORK/targets"
# One process per target; each writes its table (header, row, total) and findings.
xargs -P "$JOBS" -I{} sh -c \
  '"$0" --target "$1" --inputs "$2" --seed "$3" --hang-ms "$4" >"$5/$1.out" 2>&1; echo $? >"$5/$1.rc"' \
  "$BIN" {} "$INPUTS" "$SEED" "$HANG_MS" "$WORK" <"$WORK/targets"
WALL=$(( $(date +%s) - START ))

status=0
head -n1 "$(ls "$WORK"/*.out | head -n1)"
while read -r t; do
  awk -v t="$t" '$1 == t' "$WORK/$t.out"
  [ "$(cat "$WORK/$t.rc")" = 0 ] || status=1
done <"$WORK/targets"
awk '$1 != "target" && $1 != "total" && NF >= 9 && $2 ~ /^[0-9]+$/ {i += $2; p += $3; h += $4}
     END {printf "%-20s %10d %7d %6d\n", "all targets", i, p, h}' "$WORK"/*.out
echo "# wall time ${WALL} s"
for t in $(cat "$WORK/targets"); do
  if [ "$(cat "$WORK/$t.rc")" != 0 ]; then
    echo; echo "## $t"; sed -n '/^total/,$p' "$WORK/$t.out" | tail -n +2
  fi
done
exit $status
