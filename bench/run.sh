#!/usr/bin/env bash
# Sluice vs HAProxy vs nginx on loopback, in one run. See bench/README.md.
#
#   bench/run.sh [a] [b] [c] [d]      (default: all scenarios)
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
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
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
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_WORK=${KEEP_WORK:-0}
RESULTS=${RESULTS:-$ROOT/bench/results/latest.txt}
SLUICE_BIN=${SLUICE_BIN:-$ROOT/target/release/sluice}
DEMO_BIN=${DEMO_BIN:-$ROOT/target/release/sluice-demo}

# Upper bounds that keep every loop finite.
READY_TIMEOUT=60       # seconds for a proxy or backend to come up
REGISTER_TIMEOUT=900   # seconds for registering the whole table in Sluice
CHURN_TIMEOUT=600      # seconds for the reconfigure calls of scenario c
CHURN_WRK_LIMIT=900    # seconds wrk may run in scenario c before it stops by itself

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- arguments
SCENARIOS=()
for arg in "$@"; do
  case "$arg" in
    a | b | c | d) SCENARIOS+=("$arg") ;;
    -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown scenario '$arg' (expected a, b, c or d)" ;;
  esac
done
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(a b c d)
# canonical order, no duplicates
mapfile -t SCENARIOS < <(printf '%s\n' "${SCENARIOS[@]}" | sort -u)
for p in $PROXIES; do
  case "$p" in haproxy | nginx | sluice) ;; *) die "unknown proxy '$p' in PROXIES" ;; esac
done
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer, got '$THREADS'"
[[ $SERVICES =~ ^[1-9][0-9]*$ && $SERVICES -le 99999 ]] || die "SERVICES must be 1..99999, got '$SERVICES'"
[[ $RECONFIGURE_CALLS =~ ^[1-9][0-9]*$ ]] || die "RECONFIGURE_CALLS must be a positive integer"
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $ROUNDS -le 10 ]] || die "ROUNDS must be 1..10"

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

# ---------------------------------------------------------------- processes
PIDS=()
WORK=""
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ $KEEP_WORK == 1 ]]; then log "work directory kept: $WORK"; else rm -rf -- "$WORK"; fi
  fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# Stops one process we started: SIGTERM, up to 5 s, then SIGKILL.
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# spawn LOG CPUS CMD... : starts CMD in the background (pinned when CPUS is set), records its pid in SPAWNED.
SPAWNED=""
spawn() {
  local logfile=$1 cpus=$2
  shift 2
  if [[ -n $cpus ]]; then
    taskset -c "$cpus" "$@" >"$logfile" 2>&1 &
  else
    "$@" >"$logfile" 2>&1 &
  fi
  SPAWNED=$!
  PIDS+=("$SPAWNED")
}

# Runs wrk in the foreground, pinned to LOAD_CPUS when set.
run_wrk() {
  if [[ -n $LOAD_CPUS ]]; then taskset -c "$LOAD_CPUS" "$@"; else "$@"; fi
}

# ---------------------------------------------------------------- prerequisites
install_missing() {
  local missing=() cmd pkg
  for cmd in haproxy:haproxy nginx:nginx wrk:wrk curl:curl python3:python3 taskset:util-linux; do
    pkg=${cmd#*:}
    cmd=${cmd%%:*}
    command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing missing packages: ${missing[*]}"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}
install_missing
export PATH="$PATH:/usr/sbin:/sbin"

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

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
log "work directory: $WORK"

# ---------------------------------------------------------------- helpers (python: keep-alive API clients)
cat >"$WORK/ports.py" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY

cat >"$WORK/api.py" <<'PY'
"""Keep-alive client for Sluice's DFP-compatible API.

register API_PORT BACKEND_PORT DEADLINE_S NAMES_FILE    one service per line, path = /NAME
churn    API_PORT BACKEND_PORT DEADLINE_S CALLS     add / update / remove of churn services, latency per call
"""
import http.client, sys, time, urllib.parse

API = "/v1/docker-flow-proxy"

class Client:
    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, path):
        """Returns the status, retrying once on a broken keep-alive connection."""
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.request("GET", path)
                resp = self.conn.getresponse()
                resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 1:
                    return 0
        return 0

def reconfigure(name, path, backend):
    q = urllib.parse.urlencode({"serviceName": name, "servicePath": path, "port": backend,
                                "outboundHostname": "127.0.0.1"})
    return f"{API}/reconfigure?{q}"

def register(port, backend, deadline, names_file):
    t0 = time.perf_counter()
    c = Client(port)
    ok = failed = 0
    with open(names_file) as f:
        names = [line.strip() for line in f if line.strip()]
    for name in names:
        if time.monotonic() > deadline:
            print(f"deadline reached after {ok} services", file=sys.stderr)
            return 1
        if c.get(reconfigure(name, "/" + name, backend)) == 200:
            ok += 1
        else:
            failed += 1
            if failed > 10:
                print(f"too many failures ({failed}), last service {name}", file=sys.stderr)
                return 1
    print(f"registered={ok} failed={failed} elapsed_s={time.perf_counter() - t0:.1f}")
    return 0 if failed == 0 else 1

def pct(sorted_ms, p):
    k = max(0, -(-len(sorted_ms) * p // 100) - 1)
    return sorted_ms[int(k)]

def churn(port, backend, deadline, calls):
    c = Client(port)
    lat, failed = [], 0
    for i in range(calls):
        if time.monotonic() > deadline:
            print(f"deadline reached after {i} calls", file=sys.stderr)
            break
        k, step = divmod(i, 3)
        name = f"churn{k}"
        if step == 0:
            path = reconfigure(name, "/" + name, backend)           # add
        elif step == 1:
            path = reconfigure(name, f"/{name},/{name}v2", backend)  # update
        else:
            path = f"{API}/remove?" + urllib.parse.urlencode({"serviceName": name})  # remove
        t0 = time.perf_counter()
        status = c.get(path)
        lat.append((time.perf_counter() - t0) * 1000.0)
        if status != 200:
            failed += 1
    lat.sort()
    if not lat:
        print("calls=0 failed=0 p50_ms=nan p99_ms=nan max_ms=nan")
        return 1
    print(f"calls={len(lat)} failed={failed} p50_ms={pct(lat, 50):.3f} p99_ms={pct(lat, 99):.3f} "
          f"max_ms={lat[-1]:.3f}")
    return 0 if failed == 0 and len(lat) == calls else 1

if __name__ == "__main__":
    cmd, port, backend, budget = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    deadline = time.monotonic() + budget
    if cmd == "register":
        sys.exit(register(port, backend, deadline, sys.argv[5]))
    if cmd == "churn":
        sys.exit(churn(port, backend, deadline, int(sys.argv[5])))
    sys.exit(f"unknown command {cmd}")
PY

# The table of scenario b/c/d: svc00001..svc<SERVICES>, zero-padded so no path is a prefix of another and the last one
# is also last in DFP's byte-wise order.
LAST_SVC=$(printf 'svc%05d' "$SERVICES")
printf 'svc%05d\n' $(seq 1 "$SERVICES") | LC_ALL=C sort >"$WORK/table.txt"

# $(...) waits for python to exit, so the probe sockets are closed before anything binds the ports.
PORTS=$(python3 "$WORK/ports.py" 3)
read -r BACKEND_PORT DATA_PORT API_PORT <<<"$PORTS"

# ---------------------------------------------------------------- backend
start_backend() {
  spawn "$WORK/backend.log" "$LOAD_CPUS" "$DEMO_BIN" bench --host 127.0.0.1 --port "$BACKEND_PORT" \
    --threads "$BACKEND_THREADS"
  local i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    grep -q '^listening on ' "$WORK/backend.log" 2>/dev/null && return 0
    kill -0 "$SPAWNED" 2>/dev/null || break
    sleep 0.1
  done
  cat "$WORK/backend.log" >&2
  die "backend did not start"
}

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
      spawn "$WORK/sluice.log" "$PROXY_CPUS" env PORT="$API_PORT" DEFAULT_PORTS="$DATA_PORT" \
        DATA_DIR="$WORK/sluice-data" WORKER_THREADS="$THREADS" "$SLUICE_BIN" proxy
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
      python3 "$WORK/api.py" register "$API_PORT" "$BACKEND_PORT" "$REGISTER_TIMEOUT" "$names" \
        >"$WORK/register.log" 2>&1 || {
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
WRK_OUT=""
# wrk_run SECONDS PATH : runs wrk, leaves its output in WRK_OUT.
wrk_run() {
  local secs=$1 path=$2
  WRK_OUT=$(run_wrk timeout $((secs + 30)) wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${secs}s" --latency \
    "http://127.0.0.1:$DATA_PORT$path" 2>&1) || {
    log "wrk failed: $WRK_OUT"
    return 1
  }
}
# Parsers of WRK_OUT.
wrk_rps() { awk '/^Requests\/sec:/ {print $2}' <<<"$WRK_OUT"; }
wrk_p99_ms() {
  awk '/^ +99%/ {
    v = $2; u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
    f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : 3600000
    printf "%.3f", v * f
  }' <<<"$WRK_OUT"
}
wrk_errors() {
  awk '/Non-2xx or 3xx responses:/ {e += $NF}
       /Socket errors:/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10}
       END {print e + 0}' <<<"$WRK_OUT"
}

# ---------------------------------------------------------------- results
declare -A RPS P99 ERRS RSS PSS NOTE
SUMMARY_LINES=()
add_summary() { SUMMARY_LINES+=("$*"); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'; }

# measure KEY PROXY NAMES_FILE PATH : start, warm up, measure ROUNDS times (median rps), stop.
measure_once() {
  local key=$1 proxy=$2 names=$3 path=$4
  log "[$key] $proxy: starting with $(wc -l <"$names") service(s)"
  if ! start_proxy "$proxy" "$names"; then
    NOTE[$key/$proxy]="failed to start"
    stop_proxy
    return 1
  fi
  if [[ $WARMUP_S -gt 0 ]]; then wrk_run "$WARMUP_S" "$path" || true; fi
  if ! wrk_run "$DURATION_S" "$path"; then
    NOTE[$key/$proxy]="wrk failed"
    stop_proxy
    return 1
  fi
  local rps p99 errs
  rps=$(wrk_rps)
  p99=$(wrk_p99_ms)
  errs=$(wrk_errors)
  log "[$key] $proxy: rps=$rps p99=${p99}ms errors=$errs"
  printf '%s %s %s\n' "$rps" "$p99" "$errs" >>"$WORK/rounds-$key-$proxy"
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
    local rps p99 errs
    read -r rps p99 errs < <(sort -n -k1,1 "$f" | awk '{l[NR] = $0} END {print l[int((NR + 1) / 2)]}')
    RPS[$key/$proxy]=$rps
    P99[$key/$proxy]=$p99
    ERRS[$key/$proxy]=$errs
  done
}

fmt_row() { printf '  %-9s %12s %10s %8s  %s\n' "$@"; }
report_throughput() {
  local key=$1 title=$2 proxy
  add_summary ""
  add_summary "$title"
  add_summary "$(fmt_row proxy rps p99_ms errors note)"
  local note
  for proxy in $PROXIES; do
    note=${NOTE[$key/$proxy]:-}
    if [[ $ROUNDS -gt 1 && -s $WORK/rounds-$key-$proxy ]]; then
      note+=${note:+; }$(awk 'NR == 1 || $1 < lo {lo = $1} NR == 1 || $1 > hi {hi = $1} END {printf "rps range %s..%s over %d rounds", lo, hi, NR}' "$WORK/rounds-$key-$proxy")
    fi
    add_summary "$(fmt_row "$proxy" "${RPS[$key/$proxy]:-n/a}" "${P99[$key/$proxy]:-n/a}" "${ERRS[$key/$proxy]:-n/a}" "$note")"
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
  if [[ -n $LOAD_CPUS ]]; then
    taskset -c "$LOAD_CPUS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${CHURN_WRK_LIMIT}s" --latency \
      "http://127.0.0.1:$DATA_PORT/svc1/x" >"$wrk_log" 2>&1 &
  else
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${CHURN_WRK_LIMIT}s" --latency \
      "http://127.0.0.1:$DATA_PORT/svc1/x" >"$wrk_log" 2>&1 &
  fi
  wrk_pid=$!
  PIDS+=("$wrk_pid")
  sleep 1
  churn=$(python3 "$WORK/api.py" churn "$API_PORT" "$BACKEND_PORT" "$CHURN_TIMEOUT" "$RECONFIGURE_CALLS" 2>&1) || true
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
  local errs rps p99
  errs=$(wrk_errors)
  rps=$(wrk_rps)
  p99=$(wrk_p99_ms)
  log "[c] churn: $churn; wrk: rps=$rps p99=${p99}ms errors=$errs"
  local calls failed p50c p99c maxc
  calls=$(sed -n 's/.*calls=\([0-9]*\).*/\1/p' <<<"$churn")
  failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$churn")
  p50c=$(sed -n 's/.*p50_ms=\([0-9.na]*\).*/\1/p' <<<"$churn")
  p99c=$(sed -n 's/.*p99_ms=\([0-9.na]*\).*/\1/p' <<<"$churn")
  maxc=$(sed -n 's/.*max_ms=\([0-9.na]*\).*/\1/p' <<<"$churn")
  add_summary "  wrk during the calls: rps ${rps:-n/a}, p99 ${p99:-n/a} ms, non-2xx + socket errors ${errs:-n/a} (target 0)"
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
    wrk_run "$warm" "/$LAST_SVC/x" || true
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

# ---------------------------------------------------------------- main
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
