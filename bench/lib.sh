# Helpers shared by bench/run.sh and bench/tls.sh (sourced, not run).
#
# Expects ROOT (the repository) to be set. Provides logging, prerequisite checks that say what is
# missing and how to install it (never installing anything), process bookkeeping with cleanup on
# exit, free ports, the release build, and wrk output parsing.

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export PATH="$PATH:/usr/sbin:/sbin"

SLUICE_BIN=${SLUICE_BIN:-$ROOT/target/release/sluice}
DEMO_BIN=${DEMO_BIN:-$ROOT/target/release/sluice-demo}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_WORK=${KEEP_WORK:-0}
READY_TIMEOUT=${READY_TIMEOUT:-60}

# require CMD:PACKAGE... : stops with the list of missing commands and the apt-get line that
# installs them.
require() {
  local missing=() packages=() pair cmd pkg
  for pair in "$@"; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 && continue
    missing+=("$cmd")
    packages+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  die "missing ${missing[*]}; install with: sudo apt-get install -y ${packages[*]}"
}

# build_release : builds sluice and sluice-demo (release) unless SKIP_BUILD=1.
build_release() {
  if [[ $SKIP_BUILD != 1 ]]; then
    log "building sluice and sluice-demo (release)"
    (cd "$ROOT" && cargo build --release -p sluice -p sluice-demo) >&2 || die "release build failed"
  fi
  [[ -x $SLUICE_BIN ]] || die "missing $SLUICE_BIN (build it, or set SLUICE_BIN)"
  [[ -x $DEMO_BIN ]] || die "missing $DEMO_BIN (build it, or set DEMO_BIN)"
}

# ---------------------------------------------------------------- processes
PIDS=()
WORK=""
# make_work TAG : a temporary directory removed on exit (kept with KEEP_WORK=1).
make_work() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-$1.XXXXXX")
  log "work directory: $WORK"
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ $KEEP_WORK == 1 ]]; then log "work directory kept: $WORK"; else rm -rf -- "$WORK"; fi
  fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# stop_pid PID : SIGTERM, up to 5 s, then SIGKILL (only processes this script started).
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

# spawn LOG CPUS CMD... : starts CMD in the background (pinned when CPUS is set); pid in SPAWNED.
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

# wait_for_log LOGFILE PATTERN PID : until PATTERN appears in LOGFILE (or PID exits, or timeout).
wait_for_log() {
  local i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  cat "$1" >&2
  return 1
}

# free_ports N : N free loopback ports on one line.
free_ports() { "$DEMO_BIN" load ports "$1"; }

# start_demo_backend PORT THREADS LOG : the fixed-response backend; ready when it listens.
start_demo_backend() {
  spawn "$3" "${LOAD_CPUS:-}" "$DEMO_BIN" bench --host 127.0.0.1 --port "$1" --threads "$2"
  wait_for_log "$3" '^listening on ' "$SPAWNED" || die "the demo backend did not start"
}

# ---------------------------------------------------------------- wrk
# Every wrk run uses --timeout 1s: a request not answered within 1 s is counted as a timeout, so
# "timeouts" is the number of requests slower than 1 s (stalls).
WRK_TIMEOUT=${WRK_TIMEOUT:-1s}
WRK_OUT=""
# wrk_run SECONDS URL [wrk args...] : leaves wrk's output in WRK_OUT.
wrk_run() {
  local secs=$1 url=$2
  shift 2
  local cmd=(timeout $((secs + 30)) wrk -t"${WRK_THREADS:-1}" -c"${CONNECTIONS:-64}" -d"${secs}s"
    --timeout "$WRK_TIMEOUT" --latency "$@" "$url")
  if [[ -n ${LOAD_CPUS:-} ]]; then cmd=(taskset -c "$LOAD_CPUS" "${cmd[@]}"); fi
  WRK_OUT=$("${cmd[@]}" 2>&1) || {
    log "wrk failed: $WRK_OUT"
    return 1
  }
}
wrk_rps() { awk '/^Requests\/sec:/ {print $2}' <<<"$WRK_OUT"; }
wrk_p99_ms() {
  awk '/^ +99%/ {
    v = $2; u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
    f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : 3600000
    printf "%.3f", v * f
  }' <<<"$WRK_OUT"
}
# Non-2xx/3xx responses and connect/read/write errors (timeouts are counted apart).
wrk_errors() {
  awk '/Non-2xx or 3xx responses:/ {e += $NF}
       /Socket errors:/ {gsub(/,/, ""); e += $4 + $6 + $8}
       END {print e + 0}' <<<"$WRK_OUT"
}
# Requests not answered within WRK_TIMEOUT.
wrk_timeouts() {
  awk '/Socket errors:/ {gsub(/,/, ""); t += $10} END {print t + 0}' <<<"$WRK_OUT"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'; }

# rss_kb PID : VmRSS of PID and its children, in kB.
rss_kb() {
  local pid=$1 p rss=0 v
  for p in "$pid" $(pgrep -P "$pid" 2>/dev/null || true); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    rss=$((rss + ${v:-0}))
  done
  echo "$rss"
}
