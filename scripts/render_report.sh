#!/usr/bin/env bash
# Render a report.html in headless Chromium to a PNG, as a reader would see it (offline).
#   scripts/render_report.sh out/evaluate/report.html [report.png] [width] [height]
# Needs the Debian package `chromium` (apt-get update && apt-get install -y chromium).
# Network is disabled: a self-contained report must render without it.
set -euo pipefail
html=${1:?usage: render_report.sh REPORT.html [OUT.png] [WIDTH] [HEIGHT]}
png=${2:-${html%.html}.png}
width=${3:-1280}
height=${4:-9000}
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$browser" ]]; then
  echo "chromium not found; install it: apt-get update && apt-get install -y chromium" >&2
  exit 2
fi
[[ -f "$html" ]] || { echo "no such report: $html" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
  --user-data-dir="$profile" --proxy-server="127.0.0.1:9" --proxy-bypass-list="<-loopback>" \
  --window-size="${width},${height}" --screenshot="$(realpath -m "$png")" \
  "file://$(realpath "$html")" >/dev/null 2>&1
[[ -s "$png" ]] || { echo "chromium wrote no screenshot to $png" >&2; exit 1; }
echo "$png"
