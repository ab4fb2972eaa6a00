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
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
PROXIES=${PROXIES:-haproxy sluice}
ROUNDS=${ROUNDS:-3}
RESULTS=${RESULTS:-$ROOT/bench/results/tls-latest.txt}


require wrk:wrk openssl:openssl curl:curl
[[ " $PROXIES " == *" haproxy "* ]] && require haproxy:haproxy
build_release
make_work tls-bench

read -r BACKEND_PORT TLS_PORT API_PORT <<<"$(free_ports 3)"

# One ECDSA P-256 certificate for both proxies (combined PEM, as DFP and HAProxy use).
mkdir -p "$WORK/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench.local -addext subjectAltName=DNS:bench.local \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/certs/bench.pem"

start_demo_backend "$BACKEND_PORT" "$THREADS" "$WORK/backend.log"

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
      spawn "$WORK/haproxy.log" "" haproxy -f "$WORK/haproxy.cfg" -db
      PROXY_PID=$SPAWNED
      ;;
    sluice)
      spawn "$WORK/sluice.log" "" env -i PATH="$PATH" IP=127.0.0.1 PORT="$API_PORT" DEFAULT_PORTS="$TLS_PORT:ssl" \
        CERTS_DIR="$WORK/certs" SECRETS_DIR="$WORK/none" DATA_DIR="$WORK/data" \
        WORKER_THREADS="$THREADS" ENABLE_H2=false LOG_LEVEL=warn \
        "$SLUICE_BIN" proxy
      PROXY_PID=$SPAWNED
      ;;
  esac
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

stop_proxy() { stop_pid "$PROXY_PID"; }

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
