#!/usr/bin/env bash
# TLS termination: Sluice vs HAProxy on loopback, same backend, same threads, same certificate.
#
#   bench/tls.sh            (run.sh may call it as an extra scenario)
#
# Two measurements per proxy, both with wrk over HTTPS (HTTP/1.1, ECDSA P-256 certificate):
#   keep-alive   requests/s over long-lived TLS connections (the handshake cost amortised)
#   handshakes   requests/s with `Connection: close`: every request is a new TCP connection and
#                a full TLS handshake (wrk does not resume sessions), so this is handshakes/s
#
# Environment (defaults in brackets):
#   DURATION [10s]  WARMUP [2s]  THREADS [1]  CONNECTIONS [64]  WRK_THREADS [1]
#   ROUNDS [3]  rounds per proxy; the proxy order alternates each round and the median is reported
#   PROXIES ["haproxy sluice"]   SKIP_BUILD [0]   KEEP_WORK [0]
#   RESULTS [bench/results/tls-latest.txt]
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
PROXIES=${PROXIES:-haproxy sluice}
ROUNDS=${ROUNDS:-3}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_WORK=${KEEP_WORK:-0}
RESULTS=${RESULTS:-$ROOT/bench/results/tls-latest.txt}
SLUICE_BIN=${SLUICE_BIN:-$ROOT/target/release/sluice}
DEMO_BIN=${DEMO_BIN:-$ROOT/target/release/sluice-demo}
READY_TIMEOUT=60

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in wrk openssl python3 curl; do
  command -v "$tool" >/dev/null || die "missing $tool (apt-get install wrk openssl python3 curl)"
done
[[ " $PROXIES " == *" haproxy "* ]] && { command -v haproxy >/dev/null || die "missing haproxy"; }

if [[ $SKIP_BUILD != 1 ]]; then
  log "building release binaries"
  (cd "$ROOT" && cargo build --release -p sluice -p sluice-demo) >&2
fi
[[ -x $SLUICE_BIN && -x $DEMO_BIN ]] || die "missing $SLUICE_BIN or $DEMO_BIN"

WORK=$(mktemp -d /tmp/sluice-tls-bench.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  [[ $KEEP_WORK == 1 ]] && log "work directory kept: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

# Free loopback ports: the probe sockets are closed when python exits.
read -r BACKEND_PORT TLS_PORT API_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

# One ECDSA P-256 certificate for both proxies (combined PEM, as DFP and HAProxy use).
mkdir -p "$WORK/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench.local -addext subjectAltName=DNS:bench.local \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/certs/bench.pem"

wait_for() { # wait_for LOGFILE PATTERN PID
  local i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  cat "$1" >&2
  die "$(basename "$1" .log) did not start"
}

"$DEMO_BIN" bench --host 127.0.0.1 --port "$BACKEND_PORT" --threads "$THREADS" >"$WORK/backend.log" 2>&1 &
BACKEND_PID=$!
PIDS+=("$BACKEND_PID")
wait_for "$WORK/backend.log" '^listening on ' "$BACKEND_PID"

PROXY_PID=""
start_proxy() {
  case "$1" in
    haproxy)
      cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread $THREADS
    maxconn 4096
    tune.ssl.default-dh-param 2048
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s
frontend tls
    bind 127.0.0.1:$TLS_PORT ssl crt $WORK/certs/bench.pem alpn http/1.1
    default_backend app
backend app
    server app 127.0.0.1:$BACKEND_PORT
EOF
      haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
      PROXY_PID=$!
      ;;
    sluice)
      env -i PATH="$PATH" IP=127.0.0.1 PORT="$API_PORT" DEFAULT_PORTS="$TLS_PORT:ssl" \
        CERTS_DIR="$WORK/certs" SECRETS_DIR="$WORK/none" DATA_DIR="$WORK/data" \
        WORKER_THREADS="$THREADS" ENABLE_H2=false LOG_LEVEL=warn \
        "$SLUICE_BIN" proxy >"$WORK/sluice.log" 2>&1 &
      PROXY_PID=$!
      ;;
  esac
  PIDS+=("$PROXY_PID")
  local i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    if [[ $1 == sluice ]]; then
      curl -fsS "http://127.0.0.1:$API_PORT/v1/docker-flow-proxy/reconfigure?serviceName=app&servicePath=/&port=$BACKEND_PORT&outboundHostname=127.0.0.1" \
        >/dev/null 2>&1 || { sleep 0.1; continue; }
    fi
    curl -fsSk --resolve "bench.local:$TLS_PORT:127.0.0.1" "https://bench.local:$TLS_PORT/" >/dev/null 2>&1 && return 0
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$WORK/$1.log" >&2
  die "$1 did not serve https on $TLS_PORT"
}

stop_proxy() {
  kill -TERM "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
}

rps() { awk '/^Requests\/sec:/ {print $2}' <<<"$1"; }
errors() { awk '/Socket errors|Non-2xx/ {print}' <<<"$1" | tr '\n' ' '; }

declare -A RESULT
declare -A SAMPLES
measure() { # measure PROXY NAME [wrk args...]
  local proxy=$1 name=$2
  shift 2
  if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
    wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "$WARMUP" "$@" "https://127.0.0.1:$TLS_PORT/" >/dev/null 2>&1 || true
  fi
  local out
  out=$(wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "$DURATION" "$@" "https://127.0.0.1:$TLS_PORT/" 2>&1) || true
  local value
  value=$(rps "$out")
  SAMPLES[$proxy,$name]+="${value:-0} "
  log "$proxy $name: ${value:-n/a} req/s $(errors "$out")"
}

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

read -r -a ORDER <<<"$PROXIES"
for ((round = 1; round <= ROUNDS; round++)); do
  for proxy in "${ORDER[@]}"; do
    log "round $round: starting $proxy"
    start_proxy "$proxy"
    measure "$proxy" keepalive
    measure "$proxy" handshakes -H "Connection: close"
    stop_proxy
  done
  # Alternate the order so neither proxy always runs first.
  ORDER=("${ORDER[@]:1}" "${ORDER[0]}")
done
for key in "${!SAMPLES[@]}"; do
  RESULT[$key]=$(median <<<"${SAMPLES[$key]}")
done

mkdir -p "$(dirname "$RESULTS")"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'; }
{
  echo "TLS bench $(date -u +%FT%TZ): threads=$THREADS connections=$CONNECTIONS duration=$DURATION rounds=$ROUNDS (median) cert=ECDSA-P256"
  printf '  %-22s %14s %14s %10s\n' measurement haproxy sluice sluice/haproxy
  for name in keepalive handshakes; do
    label=$([[ $name == keepalive ]] && echo "keep-alive req/s" || echo "handshakes/s (close)")
    printf '  %-22s %14s %14s %10s\n' "$label" "${RESULT[haproxy,$name]:-n/a}" "${RESULT[sluice,$name]:-n/a}" \
      "$(ratio "${RESULT[sluice,$name]:-}" "${RESULT[haproxy,$name]:-}")"
  done
  for key in "${!SAMPLES[@]}"; do
    echo "  samples $key: ${SAMPLES[$key]}"
  done | sort
} | tee /dev/stderr >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
