#!/usr/bin/env bash
# Sluice vs HAProxy vs nginx on loopback, in one run. See bench/README.md.
#
#   bench/run.sh [a] [b] [c] [d] [e] [m] [l]   (default: a b c d e m)
#
# Scenarios: a) one service; b) a large table; c) reconfigure churn under load; d) memory with a
# large table; e) the data-plane matrix: Sluice vs HAProxy alternating, nginx and sluice-demo
# backends, 1 and 2 threads, 50 and 500 connections, keep-alive and `Connection: close`, 1 KiB and
# 100 KiB responses; m) memory per idle client connection; l) the request log's cost: Sluice
# with and without DEBUG=true on scenario a's request, alternating, as a ratio (only when named).
# Every wrk run counts requests slower than 1 s (wrk --timeout 1s) in the column "timeouts".
#
# QUICK=1 is for iteration: 3 s runs, 1 s warm-up, and a reduced matrix (1 thread, 50
# connections, 1 KiB) in scenario e.
#
# Environment (defaults in brackets):
#   DURATION [10s]      wrk duration of each measured run (Ns or Nm)
#   WARMUP [2s]         wrk warm-up before each measured run (0 to skip)
#   THREADS [1]         worker threads of every proxy (HAProxy nbthread, nginx worker_processes, Sluice WORKER_THREADS)
#   BACKEND_THREADS [$THREADS]   threads of the `sluice-demo bench` backend
#   CONNECTIONS [64]    wrk connections;  WRK_THREADS [1]  wrk threads
#   SERVICES [10000]    size of the service table in b, c and d
#   RECONFIGURE_CALLS [1000]     reconfigure calls in c
#   ROUNDS [1]          measured rounds per proxy in a and b (the proxy order rotates; the median round is reported)
#   PROXIES ["haproxy nginx sluice"]   subset of proxies to run
#   PROXY_CPUS / LOAD_CPUS [unset]     taskset CPU lists for the proxies / for wrk and the backend
#   SKIP_BUILD [0]      1 = use the existing target/release binaries
#   KEEP_WORK [0]       1 = keep the temporary directory (configs, logs)
#   RESULTS [bench/results/latest.txt]  where the summary is written
#   IDLE_CONNECTIONS [5000]   idle client connections in m
#   MATRIX_ROUNDS [2]   in e, each combination runs HAProxy, Sluice, Sluice, HAProxy per round
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  DURATION=${DURATION:-3s}
  WARMUP=${WARMUP:-1s}
fi
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-5000}
MATRIX_ROUNDS=${MATRIX_ROUNDS:-2}
THREADS=${THREADS:-1}
BACKEND_THREADS=${BACKEND_THREADS:-$THREADS}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
SERVICES=${SERVICES:-10000}
RECONFIGURE_CALLS=${RECONFIGURE_CALLS:-1000}
ROUNDS=${ROUNDS:-1}
PROXIES=${PROXIES:-haproxy nginx sluice}
PROXY_CPUS=${PROXY_CPUS:-}
LOAD_CPUS=${LOAD_CPUS:-}
RESULTS=${RESULTS:-$ROOT/bench/results/latest.txt}

# Upper bounds that keep every loop finite (READY_TIMEOUT, for a proxy or backend to come up, is in lib.sh).
REGISTER_TIMEOUT=900   # seconds for registering the whole table in Sluice
CHURN_TIMEOUT=600      # seconds for the reconfigure calls of scenario c
CHURN_WRK_LIMIT=900    # seconds wrk may run in scenario c before it stops by itself


# ---------------------------------------------------------------- arguments
SCENARIOS=()
for arg in "$@"; do
  case "$arg" in
    a | b | c | d | e | m | l) SCENARIOS+=("$arg") ;;
    -h | --help) sed -n '2,34p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown scenario '$arg' (expected a, b, c, d, e, m or l)" ;;
  esac
done
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(a b c d e m)
# canonical order, no duplicates
mapfile -t SCENARIOS < <(printf '%s\n' "${SCENARIOS[@]}" | sort -u)
for p in $PROXIES; do
  case "$p" in haproxy | nginx | sluice) ;; *) die "unknown proxy '$p' in PROXIES" ;; esac
done
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer, got '$THREADS'"
[[ $SERVICES =~ ^[1-9][0-9]*$ && $SERVICES -le 99999 ]] || die "SERVICES must be 1..99999, got '$SERVICES'"
[[ $RECONFIGURE_CALLS =~ ^[1-9][0-9]*$ ]] || die "RECONFIGURE_CALLS must be a positive integer"
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $ROUNDS -le 10 ]] || die "ROUNDS must be 1..10"
[[ $MATRIX_ROUNDS =~ ^[1-9]$ ]] || die "MATRIX_ROUNDS must be 1..9"
[[ $IDLE_CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "IDLE_CONNECTIONS must be a positive integer"

# "10s" / "1m" / "10" -> seconds
to_secs() {
  local d=$1
  case "$d" in
    *m) echo $((${d%m} * 60)) ;;
    *s) echo "${d%s}" ;;
    *) echo "$d" ;;
  esac
}
DURATION_S=$(to_secs "$DURATION")
WARMUP_S=$(to_secs "$WARMUP")
[[ $DURATION_S =~ ^[1-9][0-9]*$ ]] || die "DURATION must look like 10s or 1m, got '$DURATION'"
[[ $WARMUP_S =~ ^[0-9]+$ ]] || die "WARMUP must look like 2s, got '$WARMUP'"

# ---------------------------------------------------------------- processes (cleanup, spawn, stop_pid: lib.sh)

# ---------------------------------------------------------------- prerequisites
require wrk:wrk curl:curl taskset:util-linux
for p in $PROXIES; do
  case "$p" in
    haproxy) require haproxy:haproxy ;;
    nginx) require nginx:nginx-light ;;
  esac
done
[[ " ${SCENARIOS[*]} " == *" e "* ]] && require haproxy:haproxy nginx:nginx-light

want_proxy() { [[ " $PROXIES " == *" $1 "* ]]; }

build() {
  [[ $SKIP_BUILD == 1 ]] && return 0
  if want_proxy sluice; then
    log "building sluice and sluice-demo (release)"
    if (cd "$ROOT" && cargo build --release -p sluice -p sluice-demo); then return 0; fi
    log "WARNING: building sluice failed; continuing without it"
    PROXIES=$(for p in $PROXIES; do [[ $p == sluice ]] || printf '%s ' "$p"; done)
    SLUICE_BUILD_FAILED=1
  fi
  log "building sluice-demo (release)"
  (cd "$ROOT" && cargo build --release -p sluice-demo) || die "cannot build sluice-demo"
}
SLUICE_BUILD_FAILED=0
build
[[ -x $DEMO_BIN ]] || die "missing $DEMO_BIN"
if want_proxy sluice && [[ ! -x $SLUICE_BIN ]]; then
  log "WARNING: $SLUICE_BIN missing; continuing without sluice"
  PROXIES=$(for p in $PROXIES; do [[ $p == sluice ]] || printf '%s ' "$p"; done)
  SLUICE_BUILD_FAILED=1
fi
[[ -n ${PROXIES// /} ]] || die "no proxy left to run"

make_work bench

# The table of scenario b/c/d: svc00001..svc<SERVICES>, zero-padded so no path is a prefix of another and the last one
# is also last in DFP's byte-wise order.
LAST_SVC=$(printf 'svc%05d' "$SERVICES")
printf 'svc%05d\n' $(seq 1 "$SERVICES") | LC_ALL=C sort >"$WORK/table.txt"

# $(...) waits for the probe to exit, so its sockets are closed before anything binds the ports.
read -r BACKEND_PORT DATA_PORT API_PORT NGINX_PORT HAPROXY_PORT <<<"$(free_ports 5)"

# ---------------------------------------------------------------- backend
start_backend() { start_demo_backend "$BACKEND_PORT" "$BACKEND_THREADS" "$WORK/backend.log"; }

# ---------------------------------------------------------------- proxy configs
# names file -> HAProxy config in DFP's shape: one acl + use_backend per service in sorted order, one backend each.
haproxy_config() {
  local names=$1 out=$2
  {
    cat <<EOF
global
    nbthread $THREADS
    maxconn 4096

defaults
    mode http
    balance roundrobin
    option http-keep-alive
    option redispatch
    maxconn 5000
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend services
    bind 127.0.0.1:$DATA_PORT
    mode http
    option forwardfor
EOF
    awk -v bp="$BACKEND_PORT" '{
      printf "    acl url_%s%s_1 path_beg /%s\n", $1, bp, $1
      printf "    use_backend %s-be%s_1 if url_%s%s_1\n", $1, bp, $1, bp
    }' "$names"
    awk -v bp="$BACKEND_PORT" '{
      printf "\nbackend %s-be%s_1\n    mode http\n    server %s 127.0.0.1:%s\n", $1, bp, $1, bp
    }' "$names"
  } >"$out"
}

# names file -> nginx config: one `location ^~ /NAME` per service, all proxying to one keep-alive upstream.
nginx_config() {
  local names=$1 dir=$2
  mkdir -p "$dir/logs" "$dir/tmp"
  {
    cat <<EOF
worker_processes $THREADS;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_timeout 60s;
    keepalive_requests 100000000;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    upstream demo_backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 256;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$DATA_PORT;
        location / { return 503; }
EOF
    awk '{ printf "        location ^~ /%s { proxy_pass http://demo_backend; }\n", $1 }' "$names"
    echo "    }"
    echo "}"
  } >"$dir/nginx.conf"
}

# ---------------------------------------------------------------- proxy lifecycle
PROXY_PID=""
LAST_REGISTER=""

# check_route PATH: the proxy answers 200 with the backend's body within READY_TIMEOUT.
check_route() {
  local path=$1 i code body
  for ((i = 0; i < READY_TIMEOUT * 5; i++)); do
    body=$(curl -s --max-time 2 -o - -w '\n%{http_code}' "http://127.0.0.1:$DATA_PORT$path" 2>/dev/null || true)
    code=${body##*$'\n'}
    if [[ $code == 200 && ${body%$'\n'*} == "Hello, World!" ]]; then return 0; fi
    [[ -n $PROXY_PID ]] && ! kill -0 "$PROXY_PID" 2>/dev/null && return 1
    sleep 0.2
  done
  log "route $path answered '$code' instead of 200 Hello, World!"
  return 1
}

# start_proxy NAME NAMES_FILE : starts the proxy with the services of NAMES_FILE; ready when the route of the last
# service answers.
start_proxy() {
  local proxy=$1 names=$2 probe
  probe=/$(tail -n 1 "$names")/x
  case "$proxy" in
    haproxy)
      haproxy_config "$names" "$WORK/haproxy.cfg"
      haproxy -c -q -f "$WORK/haproxy.cfg" >"$WORK/haproxy-check.log" 2>&1 || {
        cat "$WORK/haproxy-check.log" >&2
        return 1
      }
      spawn "$WORK/haproxy.log" "$PROXY_CPUS" haproxy -db -f "$WORK/haproxy.cfg"
      PROXY_PID=$SPAWNED
      ;;
    nginx)
      rm -rf "$WORK/nginx"
      nginx_config "$names" "$WORK/nginx"
      nginx -q -t -e "$WORK/nginx/logs/error.log" -p "$WORK/nginx/" -c "$WORK/nginx/nginx.conf" \
        >"$WORK/nginx-check.log" 2>&1 || {
        cat "$WORK/nginx-check.log" "$WORK/nginx/logs/error.log" >&2
        return 1
      }
      spawn "$WORK/nginx.log" "$PROXY_CPUS" nginx -e "$WORK/nginx/logs/error.log" -p "$WORK/nginx/" \
        -c "$WORK/nginx/nginx.conf" -g 'daemon off;'
      PROXY_PID=$SPAWNED
      ;;
    sluice)
      rm -rf "$WORK/sluice-data"
      mkdir -p "$WORK/sluice-data"
      # shellcheck disable=SC2086 # SLUICE_EXTRA_ENV: VAR=value words (scenario l)
      spawn "$WORK/sluice.log" "$PROXY_CPUS" env PORT="$API_PORT" DEFAULT_PORTS="$DATA_PORT" \
        DATA_DIR="$WORK/sluice-data" WORKER_THREADS="$THREADS" ${SLUICE_EXTRA_ENV:-} "$SLUICE_BIN" proxy
      PROXY_PID=$SPAWNED
      local i ok=0
      for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
        if curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$API_PORT/v1/docker-flow-proxy/ping"; then
          ok=1
          break
        fi
        kill -0 "$PROXY_PID" 2>/dev/null || break
        sleep 0.1
      done
      if [[ $ok != 1 ]]; then
        log "sluice did not become ready; last log lines:"
        tail -n 20 "$WORK/sluice.log" >&2
        return 1
      fi
      "$DEMO_BIN" load register --api "$API_PORT" --backend "$BACKEND_PORT" --deadline "$REGISTER_TIMEOUT" \
        "$names" >"$WORK/register.log" 2>&1 || {
        cat "$WORK/register.log" >&2
        return 1
      }
      LAST_REGISTER=$(cat "$WORK/register.log")
      log "sluice: $LAST_REGISTER"
      ;;
  esac
  check_route "$probe" || {
    log "$proxy does not route $probe; last log lines:"
    tail -n 20 "$WORK/$proxy.log" >&2 2>/dev/null || true
    return 1
  }
}

stop_proxy() {
  [[ -n $PROXY_PID ]] && stop_pid "$PROXY_PID"
  PROXY_PID=""
}

# ---------------------------------------------------------------- wrk
# wrk_path SECONDS PATH : wrk against the proxy under test (helpers in lib.sh).
wrk_path() { wrk_run "$1" "http://127.0.0.1:$DATA_PORT$2"; }

# ---------------------------------------------------------------- results
declare -A RPS P99 ERRS SLOW RSS PSS NOTE
SUMMARY_LINES=()
add_summary() { SUMMARY_LINES+=("$*"); }

# measure KEY PROXY NAMES_FILE PATH : start, warm up, measure ROUNDS times (median rps), stop.
measure_once() {
  local key=$1 proxy=$2 names=$3 path=$4
  log "[$key] $proxy: starting with $(wc -l <"$names") service(s)"
  if ! start_proxy "$proxy" "$names"; then
    NOTE[$key/$proxy]="failed to start"
    stop_proxy
    return 1
  fi
  if [[ $WARMUP_S -gt 0 ]]; then wrk_path "$WARMUP_S" "$path" || true; fi
  if ! wrk_path "$DURATION_S" "$path"; then
    NOTE[$key/$proxy]="wrk failed"
    stop_proxy
    return 1
  fi
  local rps p99 errs slow
  rps=$(wrk_rps)
  p99=$(wrk_p99_ms)
  errs=$(wrk_errors)
  slow=$(wrk_timeouts)
  log "[$key] $proxy: rps=$rps p99=${p99}ms errors=$errs timeouts=$slow"
  printf '%s %s %s %s\n' "$rps" "$p99" "$errs" "$slow" >>"$WORK/rounds-$key-$proxy"
  stop_proxy
}

# Rotates the proxy order by OFFSET.
rotated() {
  local offset=$1 n i
  local -a list
  read -r -a list <<<"$PROXIES"
  n=${#list[@]}
  for ((i = 0; i < n; i++)); do printf '%s ' "${list[$(((i + offset) % n))]}"; done
}

ROTATION=0
measure_all() {
  local key=$1 names=$2 path=$3 round proxy
  for ((round = 0; round < ROUNDS; round++)); do
    for proxy in $(rotated "$ROTATION"); do
      measure_once "$key" "$proxy" "$names" "$path" || log "[$key] $proxy: measurement failed"
    done
    ROTATION=$((ROTATION + 1))
  done
  for proxy in $PROXIES; do
    local f="$WORK/rounds-$key-$proxy"
    [[ -s $f ]] || continue
    # median round by rps (lower middle for an even count)
    local rps p99 errs slow
    read -r rps p99 errs slow < <(sort -n -k1,1 "$f" | awk '{l[NR] = $0} END {print l[int((NR + 1) / 2)]}')
    RPS[$key/$proxy]=$rps
    P99[$key/$proxy]=$p99
    ERRS[$key/$proxy]=$errs
    SLOW[$key/$proxy]=$slow
  done
}

fmt_row() { printf '  %-9s %12s %10s %8s %9s  %s\n' "$@"; }
report_throughput() {
  local key=$1 title=$2 proxy
  add_summary ""
  add_summary "$title"
  add_summary "$(fmt_row proxy rps p99_ms errors timeouts note)"
  local note
  for proxy in $PROXIES; do
    note=${NOTE[$key/$proxy]:-}
    if [[ $ROUNDS -gt 1 && -s $WORK/rounds-$key-$proxy ]]; then
      note+=${note:+; }$(awk 'NR == 1 || $1 < lo {lo = $1} NR == 1 || $1 > hi {hi = $1} END {printf "rps range %s..%s over %d rounds", lo, hi, NR}' "$WORK/rounds-$key-$proxy")
    fi
    add_summary "$(fmt_row "$proxy" "${RPS[$key/$proxy]:-n/a}" "${P99[$key/$proxy]:-n/a}" "${ERRS[$key/$proxy]:-n/a}" "${SLOW[$key/$proxy]:-n/a}" "$note")"
  done
  if want_proxy sluice; then
    local other
    for other in haproxy nginx; do
      want_proxy "$other" || continue
      add_summary "  sluice/$other: rps $(ratio "${RPS[$key/sluice]:-}" "${RPS[$key/$other]:-}"), p99 $(ratio "${P99[$key/sluice]:-}" "${P99[$key/$other]:-}")"
    done
  fi
}

# ---------------------------------------------------------------- scenarios
ONE="$WORK/one.txt"
echo svc1 >"$ONE"

scenario_a() {
  log "=== a: one service, HTTP/1.1 keep-alive, small responses"
  measure_all a "$ONE" /svc1/x
  report_throughput a "a) 1 service, keep-alive, GET /svc1/x (wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION)"
}

scenario_b() {
  log "=== b: $SERVICES services, request for the last one in DFP order ($LAST_SVC)"
  # The @1 reference comes from scenario a; measure it here when a is not part of this run.
  if [[ -z ${RPS[a/sluice]:-} && " ${SCENARIOS[*]} " != *" a "* ]]; then
    measure_all a "$ONE" /svc1/x
  fi
  LAST_REGISTER=""
  measure_all b "$WORK/table.txt" "/$LAST_SVC/x"
  local register_note=$LAST_REGISTER
  report_throughput b "b) $SERVICES services, GET /$LAST_SVC/x (last in DFP order)"
  local proxy
  for proxy in $PROXIES; do
    add_summary "  $proxy@$SERVICES / $proxy@1 rps: $(ratio "${RPS[b/$proxy]:-}" "${RPS[a/$proxy]:-}")"
  done
  [[ -z $register_note ]] || add_summary "  sluice table load through the API (one keep-alive connection): $register_note"
}

scenario_c() {
  log "=== c: $RECONFIGURE_CALLS reconfigure calls at $SERVICES services under load (sluice only)"
  add_summary ""
  add_summary "c) sluice: $RECONFIGURE_CALLS reconfigure calls (add/update/remove) at $SERVICES services while wrk drives GET /svc1/x"
  if ! want_proxy sluice; then
    add_summary "  skipped: sluice not part of this run (PROXIES, or it could not be built)"
    return 0
  fi
  local names="$WORK/table-plus-one.txt"
  {
    cat "$WORK/table.txt"
    echo svc1
  } >"$names"
  if ! start_proxy sluice "$names"; then
    add_summary "  FAILED: sluice did not start"
    stop_proxy
    return 0
  fi
  check_route /svc1/x || {
    add_summary "  FAILED: /svc1/x not routed"
    stop_proxy
    return 0
  }
  local wrk_log="$WORK/wrk-c.log" wrk_pid churn
  local wrk_cmd=(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${CHURN_WRK_LIMIT}s" --timeout "$WRK_TIMEOUT" --latency
    "http://127.0.0.1:$DATA_PORT/svc1/x")
  if [[ -n $LOAD_CPUS ]]; then wrk_cmd=(taskset -c "$LOAD_CPUS" "${wrk_cmd[@]}"); fi
  "${wrk_cmd[@]}" >"$wrk_log" 2>&1 &
  wrk_pid=$!
  PIDS+=("$wrk_pid")
  sleep 1
  churn=$("$DEMO_BIN" load churn --api "$API_PORT" --backend "$BACKEND_PORT" --deadline "$CHURN_TIMEOUT" \
    "$RECONFIGURE_CALLS" 2>&1) || true
  sleep 1
  # wrk prints its report when interrupted.
  kill -INT "$wrk_pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$wrk_pid" 2>/dev/null || break
    sleep 0.1
  done
  stop_pid "$wrk_pid"
  WRK_OUT=$(cat "$wrk_log")
  local errs rps p99 slow
  errs=$(wrk_errors)
  slow=$(wrk_timeouts)
  rps=$(wrk_rps)
  p99=$(wrk_p99_ms)
  log "[c] churn: $churn; wrk: rps=$rps p99=${p99}ms errors=$errs"
  local calls failed p50c p99c maxc
  calls=$(sed -n 's/.*calls=\([0-9]*\).*/\1/p' <<<"$churn")
  failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$churn")
  p50c=$(sed -n 's/.*p50_ms=\([0-9.na]*\).*/\1/p' <<<"$churn")
  p99c=$(sed -n 's/.*p99_ms=\([0-9.na]*\).*/\1/p' <<<"$churn")
  maxc=$(sed -n 's/.*max_ms=\([0-9.na]*\).*/\1/p' <<<"$churn")
  add_summary "  wrk during the calls: rps ${rps:-n/a}, p99 ${p99:-n/a} ms, non-2xx + socket errors ${errs:-n/a} (target 0), slower than 1 s ${slow:-n/a} (target 0)"
  add_summary "  reconfigure calls: ${calls:-0} made, ${failed:-n/a} failed; latency p50 ${p50c:-n/a} ms, p99 ${p99c:-n/a} ms, max ${maxc:-n/a} ms (target p99 < 10 ms)"
  [[ -n $calls ]] || add_summary "  churn client output: $churn"
  stop_proxy
}

# Sums VmRSS and Pss (kB) over PID and its children.
memory_of() {
  local pid=$1 p rss=0 pss=0 v
  for p in "$pid" $(pgrep -P "$pid" 2>/dev/null || true); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    rss=$((rss + ${v:-0}))
    v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
    pss=$((pss + ${v:-0}))
  done
  echo "$rss $pss"
}

scenario_d() {
  log "=== d: memory with $SERVICES services after a short warm-up"
  local proxy rss pss warm=$((WARMUP_S > 0 ? WARMUP_S : 2))
  for proxy in $(rotated "$ROTATION"); do
    log "[d] $proxy"
    if ! start_proxy "$proxy" "$WORK/table.txt"; then
      NOTE[d/$proxy]="failed to start"
      stop_proxy
      continue
    fi
    wrk_path "$warm" "/$LAST_SVC/x" || true
    sleep 1
    read -r rss pss < <(memory_of "$PROXY_PID")
    RSS[d/$proxy]=$rss
    PSS[d/$proxy]=$pss
    log "[d] $proxy: VmRSS ${rss} kB, Pss ${pss} kB"
    stop_proxy
  done
  ROTATION=$((ROTATION + 1))
  add_summary ""
  add_summary "d) memory with $SERVICES services after ${warm}s of load (all processes of the proxy)"
  add_summary "$(printf '  %-9s %12s %12s  %s' proxy VmRSS_MiB Pss_MiB note)"
  for proxy in $PROXIES; do
    add_summary "$(printf '  %-9s %12s %12s  %s' "$proxy" \
      "$(awk -v k="${RSS[d/$proxy]:-}" 'BEGIN { if (k == "") print "n/a"; else printf "%.1f", k / 1024 }')" \
      "$(awk -v k="${PSS[d/$proxy]:-}" 'BEGIN { if (k == "") print "n/a"; else printf "%.1f", k / 1024 }')" \
      "${NOTE[d/$proxy]:-}")"
  done
  if want_proxy sluice; then
    for proxy in haproxy nginx; do
      want_proxy "$proxy" || continue
      add_summary "  sluice/$proxy VmRSS: $(ratio "${RSS[d/sluice]:-}" "${RSS[d/$proxy]:-}")"
    done
  fi
}

# ---------------------------------------------------------------- e and m: Sluice and HAProxy side by side
# Both proxies run at once on their own ports, each with two routes: /b to an nginx backend
# (static 1 KiB and 100 KiB files), /d to the sluice-demo backend. Sluice reaches the nginx backend
# by name (`tasks.bknginx` in a HOSTS_FILE, `bknginx` itself through the system resolver), as on a
# Swarm, so name resolution is part of what is measured.
NGINX_BACKEND_PID=""
start_nginx_backend() {
  [[ -n $NGINX_BACKEND_PID ]] && return 0
  local dir="$WORK/nginx-backend"
  mkdir -p "$dir/logs" "$dir/tmp" "$dir/www/b"
  head -c 1024 /dev/zero | tr '\0' a >"$dir/www/b/1k"
  head -c 102400 /dev/zero | tr '\0' a >"$dir/www/b/100k"
  # nginx started as root serves files as an unprivileged user.
  chmod o+rx "$WORK" "$dir" "$dir/www" "$dir/www/b"
  chmod o+r "$dir/www/b/1k" "$dir/www/b/100k"
  cat >"$dir/nginx.conf" <<CONF
worker_processes $BACKEND_THREADS;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_timeout 60s;
    keepalive_requests 100000000;
    open_file_cache max=16;
    sendfile on;
    server {
        listen 127.0.0.1:$NGINX_PORT reuseport backlog=4096;
        root $dir/www;
        location = /b/empty { return 200; }
    }
}
CONF
  spawn "$WORK/nginx-backend.log" "$LOAD_CPUS" nginx -e "$dir/logs/error.log" -p "$dir/" -c "$dir/nginx.conf" \
    -g 'daemon off;'
  NGINX_BACKEND_PID=$SPAWNED
  local i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$NGINX_PORT/b/1k" && return 0
    kill -0 "$NGINX_BACKEND_PID" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 5 "$dir/logs/error.log" >&2
  die "the nginx backend did not start"
}

PAIR_HAPROXY=""
PAIR_SLUICE=""
# start_pair THREADS : HAProxy on HAPROXY_PORT and Sluice on DATA_PORT, both routing /b and /d.
start_pair() {
  local threads=$1
  cat >"$WORK/pair-haproxy.cfg" <<CONF
global
    nbthread $threads
    maxconn 9000

defaults
    mode http
    balance roundrobin
    option http-keep-alive
    option redispatch
    maxconn 9000
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend services
    bind 127.0.0.1:$HAPROXY_PORT
    acl url_b path_beg /b
    acl url_d path_beg /d
    use_backend bknginx if url_b
    use_backend bkdemo if url_d

backend bknginx
    server bknginx 127.0.0.1:$NGINX_PORT

backend bkdemo
    server bkdemo 127.0.0.1:$BACKEND_PORT
CONF
  spawn "$WORK/pair-haproxy.log" "$PROXY_CPUS" haproxy -db -f "$WORK/pair-haproxy.cfg"
  PAIR_HAPROXY=$SPAWNED
  echo "127.0.0.1 tasks.bknginx" >"$WORK/pair-hosts"
  rm -rf "$WORK/pair-data"
  mkdir -p "$WORK/pair-data"
  spawn "$WORK/pair-sluice.log" "$PROXY_CPUS" env PORT="$API_PORT" DEFAULT_PORTS="$DATA_PORT" \
    DATA_DIR="$WORK/pair-data" WORKER_THREADS="$threads" HOSTS_FILE="$WORK/pair-hosts" LOG_LEVEL=warn \
    "$SLUICE_BIN" proxy
  PAIR_SLUICE=$SPAWNED
  local i api="http://127.0.0.1:$API_PORT/v1/docker-flow-proxy"
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    curl -sf --max-time 2 -o /dev/null "$api/ping" && break
    kill -0 "$PAIR_SLUICE" 2>/dev/null || break
    sleep 0.1
  done
  curl -sf --max-time 5 -o /dev/null "$api/reconfigure?serviceName=bknginx&servicePath=/b&port=$NGINX_PORT" &&
    curl -sf --max-time 5 -o /dev/null \
      "$api/reconfigure?serviceName=bkdemo&servicePath=/d&port=$BACKEND_PORT&outboundHostname=127.0.0.1" || {
    tail -n 20 "$WORK/pair-sluice.log" >&2
    die "sluice did not accept the benchmark routes"
  }
  local port path
  for port in "$HAPROXY_PORT" "$DATA_PORT"; do
    for path in /b/1k /d/x; do
      for ((i = 0; i < READY_TIMEOUT * 5; i++)); do
        curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$port$path" && break
        sleep 0.2
      done
      curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$port$path" || die "127.0.0.1:$port$path does not answer 200"
    done
  done
}

stop_pair() {
  [[ -n $PAIR_HAPROXY ]] && stop_pid "$PAIR_HAPROXY"
  [[ -n $PAIR_SLUICE ]] && stop_pid "$PAIR_SLUICE"
  PAIR_HAPROXY=""
  PAIR_SLUICE=""
}

# syn_retransmits : SYNs the kernel sent again since the previous call (0 without nstat). On
# loopback a SYN is only sent again when the first got no answer (a full listen queue, or a
# TIME_WAIT socket of the server's that refused the port), and the retry comes 1 s later: a
# request of that connection is a stall. Runs never overlap, so the count is the run's.
syn_retransmits() {
  command -v nstat >/dev/null 2>&1 || { echo 0; return 0; }
  NSTAT_HISTORY="$WORK/nstat.history" nstat 2>/dev/null | awk '$1 == "TcpExtTCPSynRetrans" {n = $2} END {print n + 0}'
}

# pair_run PROXY KEY URL_PATH [wrk args...] : one measured wrk run, appended to $WORK/e-KEY-PROXY
# as "rps p99_ms errors timeouts syn_retransmits".
pair_run() {
  local proxy=$1 key=$2 path=$3 port
  shift 3
  port=$DATA_PORT
  [[ $proxy == haproxy ]] && port=$HAPROXY_PORT
  if [[ $WARMUP_S -gt 0 ]]; then wrk_run 1 "http://127.0.0.1:$port$path" "$@" || true; fi
  syn_retransmits >/dev/null
  wrk_run "$DURATION_S" "http://127.0.0.1:$port$path" "$@" || return 0
  printf '%s %s %s %s %s\n' "$(wrk_rps)" "$(wrk_p99_ms)" "$(wrk_errors)" "$(wrk_timeouts)" \
    "$(syn_retransmits)" >>"$WORK/e-$key-$proxy"
}

# Mean rps, mean p99, summed errors, timeouts and SYN retransmits of a rounds file.
pair_stats() {
  [[ -s $1 ]] || { echo "n/a n/a n/a n/a n/a"; return 0; }
  awk '{r += $1; p += $2; e += $3; t += $4; y += $5; n++} END {printf "%.0f %.3f %d %d %d", r / n, p / n, e, t, y}' "$1"
}

scenario_e() {
  local threads_list="1 2" conns_list="50 500" modes="keepalive close" targets="/b/1k /b/100k /d/x"
  if [[ $QUICK == 1 ]]; then
    threads_list=1 conns_list=50 targets="/b/1k /d/x"
  fi
  log "=== e: data-plane matrix (threads: $threads_list; connections: $conns_list; $modes; $targets)"
  start_nginx_backend
  add_summary ""
  add_summary "e) Sluice vs HAProxy, both running, runs alternating H S S H x$MATRIX_ROUNDS per row (wrk -t$WRK_THREADS -d$DURATION --timeout $WRK_TIMEOUT)"
  add_summary "   /b/*: nginx backend (1 KiB or 100 KiB file; Sluice resolves it by name); /d/x: sluice-demo bench (13 bytes)"
  add_summary "   >1s: requests not answered within 1 s (wrk timeouts; in close rows a connection whose SYN"
  add_summary "   had to be sent again counts too), summed over the runs; syn: SYNs sent again (nstat)"
  add_summary "$(printf '  %-3s %5s %-9s %-7s | %9s %9s %6s | %8s %8s %6s | %5s %5s | %5s %5s' thr conns mode path h_rps s_rps s/h h_p99ms s_p99ms s/h h_>1s s_>1s h_syn s_syn)"
  local threads conns mode path key round
  for threads in $threads_list; do
    start_pair "$threads"
    for conns in $conns_list; do
      for mode in $modes; do
        local extra=()
        [[ $mode == close ]] && extra=(-H "Connection: close")
        for path in $targets; do
          key="$threads-$conns-$mode-${path//\//_}"
          log "[e] threads=$threads connections=$conns $mode $path"
          for ((round = 0; round < MATRIX_ROUNDS; round++)); do
            CONNECTIONS=$conns pair_run haproxy "$key" "$path" "${extra[@]}"
            CONNECTIONS=$conns pair_run sluice "$key" "$path" "${extra[@]}"
            CONNECTIONS=$conns pair_run sluice "$key" "$path" "${extra[@]}"
            CONNECTIONS=$conns pair_run haproxy "$key" "$path" "${extra[@]}"
          done
          local hr hp he ht hy sr sp se st sy
          read -r hr hp he ht hy <<<"$(pair_stats "$WORK/e-$key-haproxy")"
          read -r sr sp se st sy <<<"$(pair_stats "$WORK/e-$key-sluice")"
          log "[e] haproxy rps=$hr p99=${hp}ms errors=$he timeouts=$ht syn=$hy | sluice rps=$sr p99=${sp}ms errors=$se timeouts=$st syn=$sy"
          add_summary "$(printf '  %-3s %5s %-9s %-7s | %9s %9s %6s | %8s %8s %6s | %5s %5s | %5s %5s' "$threads" "$conns" "$mode" "$path" \
            "$hr" "$sr" "$(ratio "$sr" "$hr")" "$hp" "$sp" "$(ratio "$sp" "$hp")" "$ht" "$st" "$hy" "$sy")"
          [[ $he == 0 && $se == 0 ]] || add_summary "      errors (non-2xx, connect/read/write): haproxy $he, sluice $se"
        done
      done
    done
    stop_pair
  done
}

# l) The request log's cost: Sluice alone on scenario a's request, DEBUG off and DEBUG=true in
# the order off, on, on, off per round (so drift over time hits both alike). Reports the mean
# rps of each, and the proxy's CPU time per request (utime+stime of the process over the
# measured run, divided by the requests wrk completed; the median run): on a shared machine
# the CPU cost per request is steadier than rps. The log goes to a file, as a container's stdout would.
proc_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

scenario_l() {
  if ! want_proxy sluice; then
    log "=== l: skipped (sluice is not in PROXIES)"
    return 0
  fi
  log "=== l: request log cost, DEBUG=true against DEBUG off"
  local round mode lines=0 before after requests tick_us
  tick_us=$((1000000 / $(getconf CLK_TCK)))
  for ((round = 0; round < ROUNDS; round++)); do
    for mode in off on on off; do
      if [[ $mode == on ]]; then SLUICE_EXTRA_ENV="DEBUG=true"; else SLUICE_EXTRA_ENV=""; fi
      if ! start_proxy sluice "$ONE"; then
        log "[l-$mode] sluice failed to start"
        stop_proxy
        continue
      fi
      if [[ $WARMUP_S -gt 0 ]]; then wrk_path "$WARMUP_S" /svc1/x || true; fi
      before=$(proc_cpu_ticks "$PROXY_PID")
      if wrk_path "$DURATION_S" /svc1/x; then
        after=$(proc_cpu_ticks "$PROXY_PID")
        requests=$(awk '/requests in/ {print $1}' <<<"$WRK_OUT")
        log "[l-$mode] rps=$(wrk_rps) errors=$(wrk_errors) cpu_us/request=$(awk -v t=$((after - before)) -v u="$tick_us" -v r="$requests" 'BEGIN {printf "%.2f", r ? t * u / r : 0}')"
        printf '%s %s %s %s\n' "$(wrk_rps)" "$((after - before))" "$requests" "$(wrk_errors)" >>"$WORK/l-$mode"
      fi
      if [[ $mode == on ]]; then lines=$(grep -c 'kind=http' "$WORK/sluice.log" || true); fi
      stop_proxy
    done
  done
  SLUICE_EXTRA_ENV=""
  local off_rps on_rps off_cpu on_cpu
  off_rps=$(awk '{s += $1} END {if (NR) printf "%.0f", s / NR}' "$WORK/l-off" 2>/dev/null || true)
  on_rps=$(awk '{s += $1} END {if (NR) printf "%.0f", s / NR}' "$WORK/l-on" 2>/dev/null || true)
  # CPU per request: the median run (a run slowed by a neighbour inflates its own figure).
  local median='{if ($3) print $2 * u / $3}'
  off_cpu=$(awk -v u="$tick_us" "$median" "$WORK/l-off" 2>/dev/null | sort -n | awk '{v[NR] = $1} END {if (NR) printf "%.2f", v[int((NR + 1) / 2)]}')
  on_cpu=$(awk -v u="$tick_us" "$median" "$WORK/l-on" 2>/dev/null | sort -n | awk '{v[NR] = $1} END {if (NR) printf "%.2f", v[int((NR + 1) / 2)]}')
  add_summary ""
  add_summary "l) request log cost: sluice, 1 service, GET /svc1/x (wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION), $((ROUNDS * 2)) runs each"
  add_summary "  DEBUG off: ${off_rps:-n/a} rps (mean), ${off_cpu:-n/a} us CPU/request (median run); DEBUG=true: ${on_rps:-n/a} rps, ${on_cpu:-n/a} us CPU/request"
  add_summary "  on/off: rps $(ratio "${on_rps:-}" "${off_rps:-}"), CPU per request $(ratio "${on_cpu:-}" "${off_cpu:-}") (last DEBUG run wrote $lines lines)"
}

scenario_m() {
  log "=== m: memory per idle client connection ($IDLE_CONNECTIONS connections)"
  start_nginx_backend
  start_pair 1
  add_summary ""
  add_summary "m) memory per idle client connection: VmRSS before and with $IDLE_CONNECTIONS connections that send nothing"
  add_summary "$(printf '  %-9s %12s %12s %14s' proxy before_kB with_kB bytes/conn)"
  local proxy pid port before after client
  for proxy in haproxy sluice; do
    pid=$PAIR_SLUICE port=$DATA_PORT
    [[ $proxy == haproxy ]] && pid=$PAIR_HAPROXY port=$HAPROXY_PORT
    sleep 1
    before=$(rss_kb "$pid")
    spawn "$WORK/idle-$proxy.log" "$LOAD_CPUS" "$DEMO_BIN" load idle "127.0.0.1:$port" "$IDLE_CONNECTIONS" --hold 120
    client=$SPAWNED
    if ! wait_for_log "$WORK/idle-$proxy.log" '^open=' "$client"; then
      add_summary "  $proxy: the idle client failed: $(tail -n 1 "$WORK/idle-$proxy.log")"
      continue
    fi
    sleep 2
    after=$(rss_kb "$pid")
    stop_pid "$client"
    log "[m] $proxy: VmRSS $before -> $after kB"
    add_summary "$(printf '  %-9s %12s %12s %14s' "$proxy" "$before" "$after" \
      "$(awk -v a="$after" -v b="$before" -v n="$IDLE_CONNECTIONS" 'BEGIN {printf "%.0f", (a - b) * 1024 / n}')")"
  done
  stop_pair
}

# ---------------------------------------------------------------- main
# Thousands of connections need as many descriptors: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
start_backend
log "backend on 127.0.0.1:$BACKEND_PORT, proxies on 127.0.0.1:$DATA_PORT, sluice API on 127.0.0.1:$API_PORT"
log "proxies: $PROXIES; scenarios: ${SCENARIOS[*]}"

for s in "${SCENARIOS[@]}"; do "scenario_$s"; done

HEADER=(
  "Sluice benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(uname -n) ($(nproc) CPUs, $(uname -r))"
  "proxies: $PROXIES | threads: $THREADS (backend $BACKEND_THREADS) | wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP) | rounds: $ROUNDS"
  "versions: $(haproxy -v 2>/dev/null | head -n 1 | awk '{print "haproxy", $3}'), $(nginx -v 2>&1 | sed 's/.*\///;s/^/nginx /'), $("$SLUICE_BIN" --version 2>/dev/null || echo 'sluice n/a')"
  "pinning: proxies ${PROXY_CPUS:-none}, wrk+backend ${LOAD_CPUS:-none}"
)
[[ $SLUICE_BUILD_FAILED == 1 ]] && HEADER+=("NOTE: sluice could not be built or found; its rows are missing")
mkdir -p "$(dirname "$RESULTS")"
{
  printf '%s\n' "${HEADER[@]}"
  printf '%s\n' "${SUMMARY_LINES[@]}"
} | tee "$RESULTS"
log "summary written to $RESULTS"
