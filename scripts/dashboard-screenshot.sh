#!/usr/bin/env bash
# Renders the statistics dashboard in headless Chromium and writes a PNG screenshot.
#
#   scripts/dashboard-screenshot.sh [out.png]      (default: target/dashboard.png)
#
# It builds `sluice` and `sluice-demo`, starts two demo backends and a proxy with three
# services (one with a dead upstream, one behind basic auth), sends some traffic, then
# points Chromium at http://127.0.0.1:<port>/admin?stats. Needs Debian's `chromium`
# package (apt-get install -y chromium). Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/dashboard.png}"
command -v chromium >/dev/null || { echo "chromium is not installed (apt-get install -y chromium)" >&2; exit 1; }

cargo build -q -p sluice -p sluice-demo
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timeout waiting for $2 in $1" >&2; cat "$1" >&2; exit 1; }

demo1=$(free_port); demo2=$(free_port); dead=$(free_port); api=$(free_port); http=$(free_port)
target/debug/sluice-demo http --host 127.0.0.1 --port "$demo1" >"$work/demo1.log" 2>&1 & pids+=($!)
target/debug/sluice-demo http --host 127.0.0.1 --port "$demo2" >"$work/demo2.log" 2>&1 & pids+=($!)
wait_for "$work/demo1.log" "listening on"
wait_for "$work/demo2.log" "listening on"

env -i PATH="$PATH" PORT="$api" IP=127.0.0.1 DEFAULT_PORTS="$http" DATA_DIR="$work/data" \
    SECRETS_DIR="$work/secrets" STATS_USER=none STATS_PASS=none WORKER_THREADS=2 \
    target/debug/sluice proxy >"$work/proxy.log" 2>&1 & pids+=($!)
wait_for "$work/proxy.log" "api listener bound"

reconfigure() { curl -fsS -o /dev/null "http://127.0.0.1:$api/v1/docker-flow-proxy/reconfigure?$1"; }
reconfigure "serviceName=go-demo&servicePath=/demo/hello&port=$demo1&outboundHostname=127.0.0.1"
reconfigure "serviceName=go-demo-api&servicePath=/demo/person&serviceDomain=api.example.com&port=$demo2&outboundHostname=127.0.0.1&users=admin:password"
reconfigure "serviceName=legacy&servicePath=/legacy&port=$dead&outboundHostname=127.0.0.1"

for i in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$http/demo/hello"; done
for i in $(seq 10); do curl -s -o /dev/null "http://127.0.0.1:$http/demo/hello?n=$i"; done
for i in $(seq 30); do curl -s -o /dev/null -u admin:password -H 'Host: api.example.com' "http://127.0.0.1:$http/demo/person?id=7"; done
for i in $(seq 6); do curl -s -o /dev/null -H 'Host: api.example.com' "http://127.0.0.1:$http/demo/person?id=7"; done
for i in $(seq 4); do curl -s -o /dev/null "http://127.0.0.1:$http/legacy"; done
for i in $(seq 3); do curl -s -o /dev/null "http://127.0.0.1:$http/nowhere"; done
# Keep some traffic flowing while the page refreshes, so rates are not zero.
( for i in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$http/demo/hello"; sleep 0.02; done ) & pids+=($!)

mkdir -p "$(dirname "$out")"
chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --disable-dev-shm-usage \
    --user-data-dir="$work/profile" --hide-scrollbars --window-size=1600,900 \
    --virtual-time-budget=6000 --screenshot="$out" "http://127.0.0.1:$http/admin?stats" 2>"$work/chromium.log" \
    || { cat "$work/chromium.log" >&2; exit 1; }
echo "screenshot written to $out"
