#!/usr/bin/env bash
# Opens the fixture's HTML report in headless Chromium and checks that it renders with
# no console errors and no network requests; saves a screenshot to look at.
#
#   reports/tests/browser.sh            # realistic fixture (2 scenarios, telemetry, chaos)
#   reports/tests/browser.sh large      # one-hour, ten-scenario run (downsampled charts)
#   reports/tests/browser.sh platform   # realistic + platform queries (a chart each) and alerts
#
# Needs Debian's `chromium` (apt-get install -y chromium) and python3 (to read Chromium's
# net log); exits 2 when it is missing,
# 1 when a check fails. Output: $TARGET/report-screenshot.png, $TARGET/report-fixture/.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$chromium" ]; then
  echo "browser.sh: chromium not found; install it with: apt-get install -y chromium" >&2
  exit 2
fi

out="$target/report-fixture"
rm -rf "$out"
cargo run --quiet -p ricochet-reports --example render_fixture -- "$out" "${1:-}" >/dev/null
html="$(cd "$out" && pwd)/report.html"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

flags=(--headless --no-sandbox --disable-gpu --disable-background-networking
  --disable-component-update --disable-sync --no-first-run --disable-default-apps
  --disable-extensions --user-data-dir="$work/profile" --enable-logging=stderr --v=0
  --log-net-log="$work/netlog.json" --net-log-capture-mode=Everything)

timeout 120 "$chromium" "${flags[@]}" --screenshot="$work/shot.png" --window-size=1280,2400 \
  "file://$html" >"$work/stdout.log" 2>"$work/stderr.log" || {
  echo "browser.sh: chromium failed; stderr:" >&2; cat "$work/stderr.log" >&2; exit 1; }
cp "$work/shot.png" "$target/report-screenshot.png"
timeout 120 "$chromium" "${flags[@]/--log-net-log=*/--log-net-log=$work/netlog2.json}" --dump-dom \
  "file://$html" >"$work/dom.html" 2>>"$work/stderr.log"

fail=0
if grep -E 'CONSOLE|Uncaught|Refused to|Content Security Policy' "$work/stderr.log"; then
  echo "browser.sh: console errors or blocked loads (above)" >&2; fail=1
fi
# Requests the page made: Chromium's own background traffic (component updates, time,
# accounts) has no origin as initiator; anything the page asks for has its (file) origin.
page_requests() {
  python3 - "$1" <<'PY'
import json, sys
log = json.load(open(sys.argv[1]))
kinds = {v: k for k, v in log["constants"]["logEventTypes"].items()}
for e in log["events"]:
    p = e.get("params") or {}
    if kinds.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in p \
            and p.get("initiator") != "not an origin" \
            and not p.get("url", "").startswith("file://"):
        print(p.get("initiator"), p.get("url"))
PY
}
for log in "$work/netlog.json" "$work/netlog2.json"; do
  if page_requests "$log" | grep .; then
    echo "browser.sh: the page made network requests (above)" >&2; fail=1
  fi
done
figures=$(grep -o '<figure class="chart"' "$work/dom.html" | wc -l)
svgs=$(grep -o '<svg' "$work/dom.html" | wc -l)
if [ "$figures" -lt 5 ] || [ "$figures" -ne "$svgs" ]; then
  echo "browser.sh: the rendered DOM has $figures chart figures and $svgs SVGs" >&2; fail=1
fi
if [ "$fail" -ne 0 ]; then exit 1; fi
echo "browser.sh: ok: $figures charts rendered, no console errors, no network requests; screenshot: $target/report-screenshot.png"
